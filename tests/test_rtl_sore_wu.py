"""SORE lanes / multi-lane SORE (FF and BP views) and the weight-update engine against the
reference model, with their cycle formulas (Amaranth simulator)."""

import numpy as np
import pytest

from nmsat import reference as ref
from nmsat.arith import ceil_div
from nmsat.config import SMALL
from nmsat.rtl.fp import same_bits
from nmsat.rtl.sore import Sore
from nmsat.rtl.tb.amsim import run_clocked
from nmsat.rtl.tb.sore_model import beats, expected_groups, view_groups
from nmsat.rtl.tb.tiles import random_operands
from nmsat.rtl.wu import WeightUpdateEngine
from nmsat.types import NM, DType


def run_sore(cfg, dtype, groups_bits, nm, ready_p=1.0, seed=0):
    dut = Sore(cfg, dtype)
    rng = np.random.default_rng(seed)
    blocks = beats(groups_bits, dut.lanes)
    got, times = [], {}

    clock = {"t": 0}

    async def feed(ctx):
        ctx.set(dut.n, nm.n)
        ctx.set(dut.m, nm.m)
        times["start"] = clock["t"]
        for blk in blocks:
            for words in blk:
                ctx.set(dut.inp.payload.w, words)
                ctx.set(dut.inp.valid, 1)
                await ctx.tick().until(dut.inp.ready)
        ctx.set(dut.inp.valid, 0)
        while len(got) < len(blocks):
            await ctx.tick()
        times["cycles"] = times["end"] - times["start"]

    async def sink(ctx):
        while True:
            r = ready_p >= 1 or rng.random() < ready_p
            ctx.set(dut.out.ready, r)
            _, _, v, p = await ctx.tick().sample(dut.out.valid, dut.out.payload)
            clock["t"] += 1
            if v and r:
                got.append(p)
                times["end"] = clock["t"]

    run_clocked(dut, feed, "sore", extra=[sink], background=True)
    return dut, got, times


@pytest.mark.parametrize("dtype", ["fp16", "bf16", "int8"])
@pytest.mark.parametrize("nm", ["1:4", "2:4", "2:8", "1:8", "4:8"])
def test_sore_views_equal_reference_compress(dtype, nm):
    nm = NM.parse(nm)
    dt = DType.parse(dtype)
    rng = np.random.default_rng(len(dtype) * 10 + nm.m + nm.n)
    w = random_operands(rng, dt, (6, 13), special=0.2)  # 13: a trailing partial group
    w[0, :5] = w[0, 0]  # ties: the lower index must win
    for axis in (1, 0):  # FF view (along the input dim), BP view (along the output dim)
        groups = view_groups(dt_bits(dt, w), nm, axis)
        _, got, _ = run_sore(SMALL, dt, groups, nm, ready_p=0.6, seed=axis)
        vals, idx = expected_groups(w, nm, axis, dt)
        flat = [g for blk in got for g in blk][:len(vals)]
        gv = np.array([[s["value"] for s in g[:nm.n]] for g in flat], np.uint64)
        gi = np.array([[s["index"] for s in g[:nm.n]] for g in flat])
        assert np.array_equal(gi, idx), axis
        assert np.array_equal(gv, vals.astype(np.uint64)), axis


def dt_bits(dt, w):
    from nmsat.rtl.fp import Numeric

    return Numeric(dt).to_bits(w)


def test_sore_cycles_follow_formula():
    nm = NM.parse("2:8")
    groups = np.arange(11 * 8, dtype=np.uint64).reshape(11, 8) % 300
    _, _, t = run_sore(SMALL, DType.FP16, groups, nm)
    cfg = SMALL.sore
    lanes_blocks = ceil_div(11, cfg.lanes)
    assert t["cycles"] == lanes_blocks * nm.m * cfg.cycles_per_weight + cfg.pipeline_latency


def test_weight_update_engine_matches_reference():
    rng = np.random.default_rng(4)
    dut = WeightUpdateEngine(SMALL)
    n = 4 * dut.lanes + 3
    w = (rng.standard_normal(n) * np.exp2(rng.integers(-20, 5, n))).astype(np.float32)
    g = (rng.standard_normal(n) * np.exp2(rng.integers(-30, 5, n))).astype(np.float32)
    v = (rng.standard_normal(n) * np.exp2(rng.integers(-30, 5, n))).astype(np.float32)
    w[:3] = [np.float32(1e-40), np.float32(65519.0), np.float32(-3e38)]  # subnormal, fp16 edges
    g[:3] = [np.float32(1e-41), np.float32(0.0), np.float32(-3e38)]
    lr, mu = 0.01, 0.9
    w_ref, v_ref = ref.weight_update(w, g, v, lr, mu)
    got, cyc = [], {}
    beats_ = [(w[i:i + dut.lanes], v[i:i + dut.lanes], g[i:i + dut.lanes])
              for i in range(0, n, dut.lanes)]

    async def bench(ctx):
        ctx.set(dut.lr, int(np.float32(lr).view(np.uint32)))
        ctx.set(dut.momentum, int(np.float32(mu).view(np.uint32)))
        ctx.set(dut.out.ready, 1)
        c = 0
        for bw, bv, bg in beats_:
            pad = dut.lanes - len(bw)
            lanes = [{"w": int(x), "v": int(y), "g": int(z)} for x, y, z in zip(
                *(np.concatenate([a, np.zeros(pad, np.float32)]).view(np.uint32)
                  for a in (bw, bv, bg)))]
            ctx.set(dut.inp.payload, lanes)
            ctx.set(dut.inp.valid, 1)
            await ctx.tick()
            c += 1
            if ctx.get(dut.out.valid):
                got.append(ctx.get(dut.out.payload))
        ctx.set(dut.inp.valid, 0)
        while len(got) < len(beats_):
            await ctx.tick()
            c += 1
            if ctx.get(dut.out.valid):
                got.append(ctx.get(dut.out.payload))
        cyc["n"] = c

    run_clocked(dut, bench, "wu")
    flat = [lane for beat in got for lane in beat][:n]
    assert same_bits(np.array([x["w"] for x in flat]), w_ref.view(np.uint32)).all()
    assert same_bits(np.array([x["v"] for x in flat]), v_ref.view(np.uint32)).all()
    with np.errstate(over="ignore"):
        w16 = w_ref.astype(np.float16).view(np.uint16)
    assert np.array_equal(np.array([x["w16"] for x in flat], np.uint16), w16)
    # cycles from the first input beat to the last output beat, both included
    assert cyc["n"] + 1 == ceil_div(n, dut.lanes) + SMALL.weight_update.pipeline_latency
