"""Whole layer programs on the accelerator top (``rtl/top.py``) as a host drives it, under
cocotb with ``cocotbext-axi``: the program, DMA descriptors and tensors are written into
an ``AxiRam`` (the DRAM, each burst timed by the system model's memory model), the
registers over ``AxiLiteMaster``, and ``irq`` ends the run. The top fetches the program
over AXI4, its DMA moves every LOAD and STORE as AXI4 bursts, and the STOREd words equal
the golden executor bit for bit; the read and write beats are the DMA layouts' (counted
here from the layout law, not from the RTL); the first LOAD's AR comes
``DMA_REQUEST_CYCLES`` after its command and its first beat ``dram.latency_cycles``
after that; and the program's cycles (``CYCLES``) equal the system model's with
``dram.dma = word_slots`` (difference 0), the `small` preset's DRAM (16 bytes per cycle,
64-byte bursts, latency 10; the engine still waits on memory) on its 2 x 2 variant. The
layers include fc2 at 2:4, whose STOREs from column tiles 1 to 3 start inside 64-byte
bursts (the 2 x 2 engine's STORE blocks are 16 bytes; the host refused them until the DMA
cut runs into whole bursts from their start);
``test_rtl_top_random.py`` adds random programs on a slower DRAM."""

import pytest

from nmsat.arith import ceil_div
from nmsat.dataflow import isa
from nmsat.dataflow.compiler import CompileOptions, compile_layer
from nmsat.dataflow.machine import DMA_REQUEST_CYCLES
from nmsat.rtl.axi import axi_params
from nmsat.rtl.layouts import EngineShape
from nmsat.rtl.tb.program import random_dram
from nmsat.rtl.tb.top_run import run_top_programs
from nmsat.rtl.top import word_slot
from nmsat.simulator import system
from nmsat.types import Phase
from nmsat.workloads.zoo import load

pytestmark = pytest.mark.rtl  # the testbench stops a run after max_cycles: no hang


def _bus_beats(prog: isa.Program, cfg) -> tuple[int, int]:
    """(read, write) bus beats of the program's LOADs and STOREs by the DMA layouts."""
    sh, p = EngineShape.from_config(cfg), axi_params(cfg)
    R, C = sh.rows, sh.cols
    wa, ww = word_slot(sh.window_layout.size, p), word_slot(sh.slots_layout.size, p)
    rd = wr = 0
    for ins, _, _ in prog.unrolled():
        if isinstance(ins, isa.Store):
            wr += ceil_div(ins.rows, R) * ceil_div(ins.cols, C) * R * C * 4
        elif isinstance(ins, isa.Load):
            kpc = ins.nm.k_per_chunk(sh.lanes, sh.window)
            if ins.buffer is isa.Buffer.WGT:
                rd += ceil_div(ins.cols, C) * ceil_div(ins.rows, kpc) * C * ww
            else:
                rd += ins.rows * ceil_div(ceil_div(ins.cols, kpc), R) * R * wa
    return rd // p.data_bytes, wr // p.data_bytes


@pytest.mark.slow(seconds=370)
def test_layer_programs_run_on_the_top(small_2x2):
    cfg = small_2x2[1].replace(**{"dram.dma": "word_slots"})
    runs = []
    for workload, layer, batch, nm in (("mlp", "fc2", 2, "2:4"), ("mlp", "fc1", 2, "2:8"),
                                       ("cnn", "conv1", 1, "1:1"), ("cnn", "conv2", 1, "2:4")):
        wl = load(workload, batch=batch)
        prog = compile_layer(wl.workload, layer, Phase.FF, cfg,
                             CompileOptions(method="dense" if nm == "1:1" else "bdwp", nm=nm,
                                            batch=batch, layer_nm=tuple(wl.layer_nm.items())))
        runs.append((prog, cfg, random_dram(prog, cfg.numerics.operand, 3)))
    reps = run_top_programs(runs, "icarus", system_model=system.run)
    for (prog, _, _), rep in zip(runs, reps):
        assert rep["irq"] and not rep["error"]
        assert rep["words"] == sum(t.rows * t.cols for t in prog.tensors if t.name.endswith(".y"))
        assert rep["mismatches"] == 0
        regs = rep["registers"]
        assert regs["PROG_LEN"] == len(prog.instructions) and regs["STATUS"] & 2
        assert (regs["READ_BEATS"], regs["WRITE_BEATS"]) == _bus_beats(prog, cfg)
        n_ld = sum(isinstance(i, isa.Load) for i, _, _ in prog.unrolled())
        n_st = sum(isinstance(i, isa.Store) for i, _, _ in prog.unrolled())
        assert len(rep["rtl_transfers"]["load"]) == n_ld
        assert len(rep["rtl_transfers"]["store"]) == n_st
        axi = rep["axi"]
        assert axi["ar"][0] - rep["rtl_transfers"]["load"][0][0] == DMA_REQUEST_CYCLES[
            "word_slots"][0]
        assert axi["r"][0] - axi["ar"][0] == cfg.dram.latency_cycles
        assert regs["CYCLES"] == rep["rtl_program_cycles"] > 0
        assert regs["ENGINE_STALL"] == sum(rep["model_engine_stall"].values())
        assert rep["cycle_difference"] == 0, (prog.listing(), rep["rtl_transfers"],
                                              rep["model_transfers"])
        # the engine waited on memory: the slow DRAM is what the cycles test
        assert rep["model_engine_stall"].get("memory", 0) > 0
