"""Mask generation and the weight update on the accelerator top: the SORE streams the
dense working copy over its own AXI4 master and writes the compressed views in the WGT
layout the GEMM's LOADs read (``rtl/sore_stream.py``, ``dataflow/sore_stream.py``); the
weight-update engine streams the gradient, master weights and velocity over another and
writes them back with the fp16 working copy (``rtl/wu_stream.py``,
``dataflow/wu_stream.py``). Per program: what the units wrote word for word against the
host's packing of ``reference.compress`` and ``reference.weight_update``, the GEMM's
outputs against the golden executor, ``CYCLES`` equal to the system model's total
(``dram.dma = word_slots``: the streams' law) and ``ENGINE_STALL`` to its engine
stall."""

import pytest

from nmsat.config import PRESETS
from nmsat.dataflow import isa
from nmsat.dataflow.compiler import CompileOptions, compile_layer
from nmsat.rtl.tb.program import random_dram
from nmsat.rtl.tb.top_run import run_top_programs
from nmsat.simulator import system
from nmsat.types import Mode, Phase
from nmsat.workloads.zoo import load

pytestmark = pytest.mark.rtl

CASES = (  # (layer, phase, pattern): the SORE alone, a GEMM after its masks, the update;
    # each unit runs twice in the session (its state between commands)
    ("fc3", Phase.SORE, "2:8"), ("fc3", Phase.FF, "2:4"), ("fc3", Phase.BP, "2:8"),
    ("fc3", Phase.WU, "2:8"), ("fc3", Phase.WU, "2:4"))


def _programs(cfg):
    wl = load("mlp")
    out = []
    for layer, phase, nm in CASES:
        prog = compile_layer(wl.workload, layer, phase, cfg,
                             CompileOptions(method="bdwp", nm=nm, mode=Mode.TRAIN), masks=True)
        assert any(isinstance(i, (isa.Sore, isa.WeightUpdate)) for i in prog.instructions)
        out.append((prog, cfg, random_dram(prog, cfg.numerics.operand, len(out) + 3)))
    return out


def _check(runs, reps):
    for (prog, _, _), rep in zip(runs, reps):
        stores = {i.tensor for i in prog.instructions if isinstance(i, isa.Store)}
        stall = sum(rep["model_engine_stall"].values())
        what = f"{dict(prog.meta)['layer']} {dict(prog.meta)['phase']}"
        assert rep["irq"] and not rep["error"], what
        assert rep["mismatches"] == 0, (what, rep["first_mismatches"])
        assert rep["unit_words"] > 0, what
        assert rep["words"] == sum(prog.tensors[t].rows * prog.tensors[t].cols
                                   for t in stores) + rep["unit_words"], what
        assert rep["cycle_difference"] == 0, (what, rep["rtl_program_cycles"],
                                              rep["model_program_cycles"])
        assert rep["registers"]["ENGINE_STALL"] == stall, what


@pytest.mark.slow(seconds=300)
def test_masks_and_update_on_the_top_small():
    """``small`` (4 x 4, 4 SORE and 4 update lanes, 16 B/cycle, 64-byte bursts, latency
    10)."""
    cfg = PRESETS["small"].replace(**{"dram.dma": "word_slots"})
    runs = _programs(cfg)
    _check(runs, run_top_programs(runs, "icarus", system_model=system.run))


@pytest.mark.slow(seconds=300)
def test_masks_and_update_on_the_top_other_lanes_slow_dram():
    """Two SORE lanes (two lane blocks per 2:8 chunk-row), a 2-cycle SORE pipeline,
    8 update lanes (two beats per 16-weight super-block) behind a 3-cycle pipeline, and a
    DRAM of 32-byte bursts and 37 cycles of latency, so the streams wait on memory."""
    cfg = PRESETS["small"].replace(**{
        "dram.dma": "word_slots", "sore.lanes": 2, "sore.pipeline_latency": 2,
        "weight_update.lanes": 8, "weight_update.pipeline_latency": 3,
        "dram.burst_bytes": 32, "dram.latency_cycles": 37})
    runs = _programs(cfg)
    _check(runs, run_top_programs(runs, "icarus", system_model=system.run))
