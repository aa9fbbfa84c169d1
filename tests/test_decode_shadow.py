"""Shadow-weight preload (array.shadow_weights, docs/architecture.md 4.2) beyond the tile
model (tests/test_tile_model_equivalence.py): the weight buffer's DMA beats, the area it
adds, the planner's choice, and batch-1 decode at DRAM speed on vcu1525."""

import dataclasses

import pytest
from hoist_slack import ratio_slack

from nmsat.config import SMALL, VCU1525
from nmsat.dataflow import machine
from nmsat.dataflow.inference import compile_inference
from nmsat.dataflow.isa import Buffer, Compute, Load
from nmsat.simulator import area
from nmsat.simulator.inference import InferenceOptions, simulate_inference
from nmsat.types import NM, Dataflow
from nmsat.workloads import llm


def _wgt_load(rows: int, cols: int, nm: str) -> Load:
    return Load(tensor=0, row0=0, col0=0, rows=rows, cols=cols, bytes=rows * cols,
                buffer=Buffer.WGT, nm=NM.parse(nm))


@pytest.mark.parametrize("ports, beats_per_tile", [(1, 16), (2, 8), (4, 4), (16, 1), (64, 1)])
def test_weight_beats_with_shadow_weights(ports, beats_per_tile):
    """R x ports banks, one chunk each per beat: a (K-tile, column tile) of R x C chunks
    takes ceil(C / ports) beats. 1,000 x 100 at 2:4 (8 K per chunk): kc = 125, 8 K-tiles,
    7 column tiles. Without shadow weights: C banks, ceil(n / C) x kc beats."""
    cfg = VCU1525.replace(**{"array.weight_load_ports": ports})
    ld = _wgt_load(1000, 100, "2:4")
    assert machine.port_beats(ld, cfg) == 7 * 8 * beats_per_tile
    off = cfg.replace(**{"array.shadow_weights": False})
    assert machine.port_beats(ld, off) == 7 * 125


def test_area_of_shadow_weights():
    """vcu1525: 256 PEs x 2 wave-token FFs + 64 chains x a 76-bit chunk (4 x (16 + 3)) head
    register; 256 x 38 LUTs of shadow-input muxes. Nothing without the feature."""
    assert area.shadow_weight_extra(VCU1525) == {"ff": 512 + 64 * 76, "lut": 256 * 38}
    assert area.shadow_weight_extra(SMALL) == {}
    off = VCU1525.replace(**{"array.shadow_weights": False})
    on, base = area.estimate(VCU1525), area.estimate(off)
    if on is None:  # no calibration table for the operand type
        pytest.skip("the area model is not calibrated for fp16")
    assert (on.ff - base.ff, on.lut - base.lut, on.dsp, on.bram) == \
        (512 + 64 * 76, 256 * 38, base.dsp, base.bram)


def test_calibration_points_have_no_shadow_weights():
    """The synthesised designs have no shadow-weight preload, so their configs say so."""
    cal = area.calibration()
    if cal is None:
        pytest.skip("no calibration table")
    assert all(not p.config.array.shadow_weights for p in cal.points)


def _decode_computes(cfg):
    s = dataclasses.replace(llm.PRESETS["gpt2_small"], layers=1)
    w = llm.workload(s, llm.LlmPhase.DECODE, 1, kv_len=16)
    _, prog = compile_inference(w, cfg, "2:4")
    return [i for i in prog.instructions if isinstance(i, Compute) and i.nm == NM(2, 4)]


def test_planner_picks_ws_for_gemv_with_shadow_weights():
    """A batch-1 projection: OS on the column-chain array (WS tiles wait 91 cycles), WS
    with shadow weights, in blocks split so loads overlap compute."""
    on = _decode_computes(VCU1525)
    off = _decode_computes(VCU1525.replace(**{"array.shadow_weights": False}))
    assert on and all(c.dataflow is Dataflow.WS and c.m == 1 for c in on)
    assert off and all(c.dataflow is Dataflow.OS for c in off)
    # the fused 768 x 2304 q/k/v projection is split (about 2 MB of 2:4 weights; 1 MiB
    # halves), in blocks smaller than a 768 x 768 projection
    assert on[0].n * on[0].k < 768 * 768


@pytest.mark.parametrize("nm", ["2:4", "2:8"])
def test_llama_7b_decode_is_dram_bound_on_vcu1525(nm):
    """Issue 17: every weight projection of a 7B decode step (batch 1, KV 2,048) takes at
    most 1 / 0.9 of its DRAM time, and its N:M speedup is at most its byte ratio (up to
    the DRAM latency at the layer's two boundaries)."""
    r = simulate_inference("llama_7b", VCU1525, InferenceOptions(
        nm=nm, phase="decode", kv_len=2048, batch=1))
    proj = [x for x in r.layers if x.weight_bytes > 0 and x.total_cycles]
    lat = VCU1525.dram.latency_cycles
    assert len(proj) == 32 * 7 + 1
    for x in proj:
        assert x.dram_cycles >= 0.9 * x.total_cycles, x.name
        assert x.bound == x.dense_bound == "memory", x.name
        # as in test_inference_memory: a layer's attributed time can move by the next
        # layer's first load latency at each boundary, and by a hoisted first weight
        # block (nmsat.dataflow.hoist)
        ratio = x.dense_dram_bytes / x.dram_bytes
        assert x.dense_total_cycles <= ratio * x.total_cycles + 2 * lat + \
            ratio_slack("llama_7b", nm, VCU1525, ratio, kv=2048), x.name
    assert r.speedup_vs_dense <= r.weight_byte_ratio


def test_rtl_check_config_refuses_what_the_shadow_rtl_does_not_build():
    """The generated engine builds shadow weights (rtl/array.py, rtl/schedule_shadow.py):
    `nmsat rtl` keeps them on, and refuses in one line a load-port count that is not a power
    of two and shadow weights with act_zero = skip."""
    from nmsat.commands.rtl import check_config

    check_config(VCU1525)
    check_config(SMALL.replace(**{"array.shadow_weights": True, "array.weight_load_ports": 2}))
    with pytest.raises(ValueError, match="array.weight_load_ports = 3"):
        check_config(VCU1525.replace(**{"array.weight_load_ports": 3}))
    with pytest.raises(ValueError, match="act_zero = skip"):
        check_config(VCU1525.replace(**{"array.act_zero": "skip"}))
    check_config(VCU1525.replace(**{"array.act_zero": "skip", "array.shadow_weights": False}))
