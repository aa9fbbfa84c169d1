"""A layer's whole training step as one program on the RTL (cocotb, Icarus): the RTL
SORE generates the FF and BP masks, the engine runs FF, BP and WG, the RTL weight-update
engine updates the fp32 master weights from the engine's gradient; every tensor the step
writes (y, dx, dW, the masked FF/BP weights, master, velocity, working copy) equals
``reference.train_step`` bit for bit, and the program's cycles, each phase's engine
cycles and each SORE / WEIGHT_UPDATE instruction's (issue, completion) equal the system
model's. The first case is lane-bound SOREs and a DRAM-bound update; the second streams
the SOREs from a slow DRAM too, with every buffer double-buffered."""

import pytest

from nmsat.rtl.tb.train_run import run_train_step
from nmsat.simulator import system

pytestmark = pytest.mark.rtl


@pytest.mark.slow(seconds=40)
@pytest.mark.parametrize(("nm", "dram_bpc", "double"), [("2:8", 16, False), ("2:4", 2, True)])
def test_layer_training_step_on_the_rtl(small_2x2, nm, dram_bpc, double):
    over = {f"buffers.{b}.double_buffered": double for b in ("activation", "weight", "output")}
    cfg = small_2x2[1].replace(**over, **{"dram.bytes_per_cycle": dram_bpc})
    rep = run_train_step("mlp", cfg, "fc3", system_model=system.run, nm=nm, sim="icarus",
                         seed=3)
    assert rep["tile_errors"] == [] and rep["error"] == 0
    tensors = rep["layers"]["fc3"]["tensors"]
    assert set(tensors) == {"fc3.y", "fc3.dx", "fc3.dw", "fc3.w", "fc3.w.master",
                            "fc3.w.velocity", "fc3.w.ff", "fc3.w.bp"}
    assert rep["mismatches"] == 0, tensors
    assert set(rep["phases"]) == {f"fc3/{p}" for p in ("ff", "bp", "wg", "sore", "wu")}
    for name, row in rep["phases"].items():
        assert row["mismatched_instructions"] == 0, (name, row)
        assert row["rtl_cycles"] == row["model_cycles"] > 0, (name, row)
    assert rep["rtl_program_cycles"] == rep["model_program_cycles"]
    assert rep["engine_stall"] == rep["model_engine_stall"]


def test_training_steps_refuse_what_they_do_not_check(small_2x2):
    """Refused before any build: a convolution layer (its reference step is not wired)."""
    with pytest.raises(ValueError, match="linear layers only.*conv2"):
        run_train_step("cnn", small_2x2[1], "conv2", system_model=system.run)
