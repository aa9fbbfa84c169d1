"""Fixed whole programs on the RTL tile controller (cocotb, Icarus) that random runs found
wrong, kept so they stay right; and the watchdog that stops a hung program."""

import pytest

from nmsat.dataflow.compiler import CompileOptions, compile_layer
from nmsat.rtl.tb.controller_run import (
    WATCHDOG_FACTOR,
    WATCHDOG_MARGIN,
    RtlHangError,
    run_controller_program,
    watchdog_cycles,
)
from nmsat.rtl.tb.program import random_dram
from nmsat.simulator import system
from nmsat.types import Dataflow, Phase
from nmsat.workloads.layers import Conv2d, Linear, Workload

pytestmark = pytest.mark.rtl

BUFFERS = ("activation", "weight", "output")


def _check(rep: dict, prog) -> None:
    assert rep["tile_errors"] == [] and rep["error"] == 0
    assert rep["words"] == sum(t.rows * t.cols for t in prog.tensors if t.name.endswith(".y"))
    assert rep["mismatches"] == 0
    assert [c["rtl_cycles"] for c in rep["computes"]] == [c["model_cycles"]
                                                           for c in rep["computes"]]
    assert rep["program_cycles"] == rep["system_cycles"]


def test_a_store_issued_while_the_previous_one_streams(small_2x2):
    """NMSAT_RANDOM_SEED=1692556225, program 28: OUT double-buffered, a 16 x 7 STORE (32
    store beats on the 2 x 2 engine) and then, after a 2-row COMPUTE on the other OUT half,
    a 2 x 7 STORE issued while the first still streams. The testbench kept one STORE
    collecting beats, so the second's command took the first's remaining beats ("22 store
    beats for 2 x 7, not 4") and the first never completed; the store stream belongs to
    the STOREs in issue order."""
    cfg = small_2x2[1].replace(**{f"buffers.{b}.double_buffered": True for b in BUFFERS},
                               **{f"buffers.{b}.kib": 2 for b in BUFFERS},
                               **{"dram.channels": 3, "dram.bytes_per_cycle": 2,
                                  "dram.latency_cycles": 17, "dram.burst_bytes": 64,
                                  "buffers.activation.ports": 1, "buffers.weight.ports": 1,
                                  "buffers.output.ports": 2})
    layer = Conv2d("L", in_ch=2, out_ch=7, in_h=6, in_w=8, kh=2, kw=3, stride=2, padding=0)
    opts = CompileOptions(method="bdwp", nm="1:4", batch=2, interleave=True,
                          offline_schedule=False, fixed_dataflow=Dataflow.OS)
    prog = compile_layer(Workload("rand", (layer,), 2), "L", Phase.FF, cfg, opts)
    stores = [(s.rows, s.cols) for s, _, _ in prog.unrolled() if type(s).__name__ == "Store"]
    assert stores == [(16, 7), (2, 7)]  # the shape that found it
    rep = run_controller_program(prog, cfg, random_dram(prog, cfg.numerics.operand, 28),
                                 sim="icarus", system_model=system.run)
    _check(rep, prog)
    assert rep["load_port_cycles"] == rep["store_port_cycles"] == 0


def test_the_watchdog_stops_a_hung_program(small_2x2):
    """A DMA that never completes a LOAD leaves the controller waiting forever: the run
    stops at watchdog_cycles(the system model's total) with one error naming the program,
    the bound and what was in flight, instead of stalling."""
    cfg = small_2x2[1]
    layer = Linear("L", in_features=8, out_features=2, tokens=1)
    prog = compile_layer(Workload("rand", (layer,), 1), "L", Phase.FF, cfg,
                         CompileOptions(method="dense", nm="1:1", batch=1))
    total = system.run(prog, cfg, extrapolate=False, record=False).total_cycles
    bound = watchdog_cycles(total)
    assert bound == WATCHDOG_FACTOR * total + WATCHDOG_MARGIN
    with pytest.raises(RtlHangError) as err:
        run_controller_program(prog, cfg, random_dram(prog, cfg.numerics.operand, 1),
                               sim="icarus", system_model=system.run, fault="no_load_done")
    msg = str(err.value)
    assert "\n" not in msg
    assert f"program 1 of 1 on the {cfg.name} controlled engine" in msg
    assert f"did not signal done within {bound} cycles" in msg
    assert f"no done after {bound} cycles" in msg and "LOADs" in msg


def test_the_layer_replay_watchdog_stops_a_hung_store(small_2x2):
    """The layer replay (``nmsat rtl run`` without --controller) has the same bound per
    operation: a store port that never takes a beat stops the run with one error."""
    from nmsat.rtl.tb.program import run_program

    cfg = small_2x2[1]
    layer = Linear("L", in_features=8, out_features=2, tokens=1)
    prog = compile_layer(Workload("rand", (layer,), 1), "L", Phase.FF, cfg,
                         CompileOptions(method="dense", nm="1:1", batch=1))
    with pytest.raises(RtlHangError) as err:
        run_program(prog, cfg, random_dram(prog, cfg.numerics.operand, 1), sim="icarus",
                    fault="store_never_ready")
    from nmsat.rtl.layouts import EngineShape
    from nmsat.rtl.tb.engine_model import store_beats

    bound = watchdog_cycles(store_beats(EngineShape.from_config(cfg), 1, 2))
    msg = str(err.value)
    assert "\n" not in msg and f"(store) did not finish within {bound} cycles" in msg
