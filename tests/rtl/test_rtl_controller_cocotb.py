"""Whole layer programs on the RTL tile controller (cocotb, Icarus): the compiled program
is written into the instruction memory and runs from ``start`` to ``done``; the testbench
is only the DMA (LOAD tiles written as engine words, STOREs collected) with the system
model's DMA timing. Values equal the golden executor, every COMPUTE takes
``timing.compute_cycles``, every LOAD/STORE tile is the program's, and the whole
program takes exactly the system model's cycles (DRAM fast, and slow enough to stall),
with the buffers single-buffered and double-buffered (the presets' rings of two halves)."""

import pytest

from nmsat.dataflow.compiler import CompileOptions, compile_layer
from nmsat.rtl.tb.controller_run import run_controller_program
from nmsat.rtl.tb.program import random_dram
from nmsat.simulator import system
from nmsat.types import Phase
from nmsat.workloads.zoo import load

pytestmark = pytest.mark.rtl

def _buffering(double: bool) -> dict:
    return {f"buffers.{b}.double_buffered": double for b in ("activation", "weight", "output")}


@pytest.mark.slow(seconds=60)
@pytest.mark.parametrize(("workload", "layer", "batch", "nm", "dram_bpc", "double"), [
    ("mlp", "fc2", 2, "2:8", 16, False), ("cnn", "conv2", 1, "2:8", 2, False),
    ("mlp", "fc2", 2, "2:4", 2, False), ("mlp", "fc2", 2, "2:8", 16, True),
    ("cnn", "conv2", 1, "2:4", 2, True)])
def test_layer_program_runs_on_the_controller(small_2x2, workload, layer, batch, nm, dram_bpc,
                                              double):
    cfg = small_2x2[1].replace(**_buffering(double), **{"dram.bytes_per_cycle": dram_bpc})
    wl = load(workload, batch=batch)
    prog = compile_layer(wl.workload, layer, Phase.FF, cfg,
                         CompileOptions(method=wl.method or "bdwp", nm=nm, batch=batch,
                                        layer_nm=tuple(wl.layer_nm.items())))
    rep = run_controller_program(prog, cfg, random_dram(prog, cfg.numerics.operand, 5),
                                 sim="icarus", system_model=system.run)
    assert rep["tile_errors"] == [] and rep["error"] == 0
    assert rep["words"] == sum(t.rows * t.cols for t in prog.tensors if t.name.endswith(".y"))
    assert rep["mismatches"] == 0
    assert [c["rtl_cycles"] for c in rep["computes"]] == [c["model_cycles"]
                                                           for c in rep["computes"]]
    # start to done: the system model's cycles, no port held a transfer past its timing
    assert rep["program_cycles"] == rep["system_cycles"]
    assert rep["load_port_cycles"] == rep["store_port_cycles"] == 0



_HOIST_RUNS: dict = {}


def _hoist_runs(small_2x2):
    """The digits MLP's whole inference pass (three GEMMs behind barriers, 2:8, DRAM 16
    B/cycle, double-buffered) with and without weight-load hoisting, in one session."""
    if not _HOIST_RUNS:
        from nmsat.dataflow.inference import ActDensity, compile_inference
        from nmsat.rtl.tb.controller_run import run_controller_programs

        cfg = small_2x2[1].replace(**_buffering(True), **{"dram.bytes_per_cycle": 16})
        wl = load("mlp", batch=2)
        runs = []
        for hoist in (True, False):
            _, prog = compile_inference(wl.workload, cfg, "2:8", 2, ActDensity.dense(),
                                        hoist_weights=hoist)
            runs.append((prog, cfg, random_dram(prog, cfg.numerics.operand, 5)))
        reps = run_controller_programs(runs, sim="icarus", system_model=system.run)
        _HOIST_RUNS.update(zip((True, False), zip(runs, reps)))
    return _HOIST_RUNS


@pytest.mark.slow(seconds=120)
def test_hoisted_inference_pass_runs_on_the_controller(small_2x2):
    """Each later layer's first weight LOAD is issued before its BARRIER
    (``nmsat.dataflow.hoist``); the RTL's counter-based ring waits run the hoisted program
    value-exact, with the program's tiles and every COMPUTE's cycles, and the hoist saves
    cycles (start to done equals the system model: the next test)."""
    from nmsat.dataflow.hoist import hoisted_loads

    runs = _hoist_runs(small_2x2)
    for hoist, ((prog, _, _), rep) in runs.items():
        assert len(hoisted_loads(prog)) == (2 if hoist else 0)  # fc2's and fc3's blocks
        assert rep["tile_errors"] == [] and rep["error"] == 0
        assert rep["words"] == sum(t.rows * t.cols for t in prog.tensors
                                   if t.name.endswith(".y"))
        assert rep["mismatches"] == 0
        assert [c["rtl_cycles"] for c in rep["computes"]] == [c["model_cycles"]
                                                               for c in rep["computes"]]
        assert rep["load_port_cycles"] == rep["store_port_cycles"] == 0
    gap = {h: rep["program_cycles"] - rep["system_cycles"] for h, (_, rep) in runs.items()}
    assert 0 <= gap[True] <= gap[False], gap
    # the hoist saves the exposed first weight block at both boundaries
    assert runs[True][1]["program_cycles"] < runs[False][1]["program_cycles"]


def test_whole_inference_pass_is_cycle_exact_on_the_controller(small_2x2):
    for _, rep in _hoist_runs(small_2x2).values():
        assert rep["program_cycles"] == rep["system_cycles"]
