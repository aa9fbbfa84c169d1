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


@pytest.mark.parametrize(("nm", "dram_bpc", "double"), [
    ("2:4", 2, True), ("2:8", 16, True), ("2:4", 16, False)])
def test_hoisted_inference_pass_runs_on_the_controller(small_2x2, nm, dram_bpc, double):
    """A whole inference pass of the digits MLP (three GEMMs behind barriers): each later
    layer's first weight LOAD is issued before its BARRIER (``nmsat.dataflow.hoist``), and
    the RTL's counter-based ring waits run the hoisted program value-exact and cycle for
    cycle with the system model."""
    from nmsat.dataflow.inference import ActDensity, compile_inference
    from nmsat.dataflow.isa import Barrier, Buffer, Load

    cfg = small_2x2[1].replace(**_buffering(double), **{"dram.bytes_per_cycle": dram_bpc})
    wl = load("mlp", batch=2)
    _, prog = compile_inference(wl.workload, cfg, nm, 2, ActDensity.dense())
    ins = prog.instructions
    hoisted = [i for i in range(1, len(ins) - 1) if isinstance(ins[i], Load)
               and ins[i].buffer is Buffer.WGT and isinstance(ins[i + 1], Barrier)]
    assert len(hoisted) == 2  # fc2's and fc3's first weight blocks
    rep = run_controller_program(prog, cfg, random_dram(prog, cfg.numerics.operand, 5),
                                 sim="icarus", system_model=system.run)
    assert rep["tile_errors"] == [] and rep["error"] == 0
    assert rep["words"] == sum(t.rows * t.cols for t in prog.tensors if t.name.endswith(".y"))
    assert rep["mismatches"] == 0
    assert [c["rtl_cycles"] for c in rep["computes"]] == [c["model_cycles"]
                                                           for c in rep["computes"]]
    assert rep["program_cycles"] == rep["system_cycles"]
    assert rep["load_port_cycles"] == rep["store_port_cycles"] == 0
