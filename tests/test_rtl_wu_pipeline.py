"""The weight-update engine's register stages spread through its datapath (rtl/wu.py
``stage_plan``), in Amaranth's simulator: for pipeline latencies 1, 2, 3, 5, 8 and 12,
random fp32 words (subnormals, +-0, Inf, NaN, fp16 ties), random input gaps, output
backpressure and ``lr`` / ``momentum`` changing while beats are in flight, every cycle's
``inp.ready`` and ``out.valid`` equal an L-slot pipeline that moves when
``~out.valid | out.ready``, each beat comes out in order, L cycles after it was accepted
when nothing stalls it, and bit for bit equal to ``reference.weight_update`` (and its fp16
copy) with the ``lr`` and ``momentum`` present when it was accepted. A probe beat's
intermediate values sit in the stage registers (a structural check: the logic is not all
before the first register)."""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.sim import Simulator

from nmsat.config import SMALL
from nmsat.reference import quantize, weight_update
from nmsat.rtl.cocotb_parts.wu_tb import corner_floats
from nmsat.rtl.fp import same_bits
from nmsat.rtl.wu import OPS, WeightUpdateEngine, stage_plan

F32 = np.float32


def _cfg(latency: int, lanes: int = 2):
    return SMALL.replace(**{"weight_update.pipeline_latency": latency,
                            "weight_update.lanes": lanes})


def _bits(x) -> int:
    return int(np.asarray(x, F32).view(np.uint32))


def _words(rng, n: int, zeros: float = 0.0) -> np.ndarray:
    """fp32 words: the cocotb bench's corner values, with some Inf and NaN."""
    x = corner_floats(rng, n, zeros).view(np.uint32).copy()
    special = rng.random(n)
    x[special < 0.04] = 0x7F800000 | (rng.integers(0, 2, (special < 0.04).sum()) << 31)
    x[(special >= 0.04) & (special < 0.06)] = 0x7FC00000
    x[(special >= 0.06) & (special < 0.07)] = 0xFF812345  # a NaN with a payload
    return x


def _scalar(rng) -> int:
    return _bits(rng.choice([rng.random(), rng.random() * 1e-3, 0.0, 1.0, -0.5,
                             float(np.uint32(rng.integers(1, 1 << 23)).view(F32))]))


def run(latency: int, beats: int, seed: int, gap: float, ready_p: float, change: float):
    """Drive ``beats`` random beats; per cycle check the handshake against the L-slot model.
    Returns (per beat: its words, lr, momentum, acceptance cycle), the outputs in order with
    their cycles."""
    dut = WeightUpdateEngine(_cfg(latency))
    L, lanes = dut.latency, dut.lanes
    rng = np.random.default_rng(seed)
    data = [np.stack([_words(rng, lanes), _words(rng, lanes, 0.3), _words(rng, lanes, 0.3)])
            for _ in range(beats)]
    acc, got = [], []

    async def bench(ctx):
        lr, mu = _scalar(rng), _scalar(rng)
        slots = [None] * L  # the model: beat index or None, stage 0 first
        cycle = 0
        while len(got) < beats:
            if rng.random() < change:
                lr = _scalar(rng)
            if rng.random() < change:
                mu = _scalar(rng)
            ctx.set(dut.lr, lr)
            ctx.set(dut.momentum, mu)
            offer = len(acc) < beats and rng.random() >= gap
            ctx.set(dut.inp.valid, offer)
            if offer:
                w, v, g = data[len(acc)]
                ctx.set(dut.inp.payload, [{"w": int(a), "v": int(b), "g": int(c)}
                                          for a, b, c in zip(w, v, g)])
            ready = ready_p >= 1 or rng.random() < ready_p
            ctx.set(dut.out.ready, ready)
            move = slots[-1] is None or ready
            assert ctx.get(dut.inp.ready) == move, cycle
            assert ctx.get(dut.out.valid) == (slots[-1] is not None), cycle
            if slots[-1] is not None and ready:
                assert slots[-1] == len(got), cycle
                got.append((ctx.get(dut.out.payload), cycle))
            if move:
                new = None
                if offer:
                    new = len(acc)
                    acc.append((lr, mu, cycle))
                slots = [new] + slots[:-1]
            await ctx.tick()
            cycle += 1
            assert cycle < 20 * (beats + L) + 100, "the engine stalled"

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return data, acc, got


def check_values(data, acc, got) -> None:
    for k, ((w, v, g), (lr, mu, _), (out, _)) in enumerate(zip(data, acc, got)):
        with np.errstate(all="ignore"):
            w_ref, v_ref = weight_update(w.view(F32), g.view(F32), v.view(F32),
                                         float(np.uint32(lr).view(F32)),
                                         float(np.uint32(mu).view(F32)))
            h_ref = quantize(w_ref, "fp16").astype(F32).view(np.uint32)
            h_got = np.array([x["w16"] for x in out], np.uint16).view(np.float16).astype(F32)
        assert same_bits(np.array([x["w"] for x in out], np.uint32), w_ref.view(np.uint32)).all(), k
        assert same_bits(np.array([x["v"] for x in out], np.uint32), v_ref.view(np.uint32)).all(), k
        assert same_bits(h_got.view(np.uint32), h_ref).all(), k


@pytest.mark.parametrize("latency", [1, 2, 3, 5, 8, 12])
def test_pipeline_latency_and_values(latency):
    # no backpressure: each beat comes out exactly L cycles after it was accepted
    data, acc, got = run(latency, 24, seed=latency, gap=0.3, ready_p=1.0, change=0.3)
    assert [c for _, c in got] == [a[2] + latency for a in acc]
    check_values(data, acc, got)
    # backpressure and gaps: the handshake follows the model every cycle (checked in run)
    data, acc, got = run(latency, 24, seed=100 + latency, gap=0.4, ready_p=0.5, change=0.3)
    check_values(data, acc, got)


def test_stage_plan():
    names = [op.result for op in OPS]
    assert names == ["mv", "vn", "lrv", "wn", "w16"]
    assert stage_plan(0) == stage_plan(1) == ((0, 1, 2, 3, 4),)
    assert stage_plan(2) == ((0, 1), (2, 3, 4))
    assert stage_plan(3) == ((0, 1), (2, 3), (4,))
    assert stage_plan(4) == ((0,), (1,), (2,), (3, 4))
    assert stage_plan(8) == ((0,), (1,), (2,), (3,), (4,), (), (), ())


def _fields(reg) -> tuple[set, set]:
    """(shared, per-lane) field names of a stage register."""
    layout = reg.shape()
    lane = layout["lane"].shape.elem_shape
    return {n for n, _ in layout if n != "lane"}, {n for n, _ in lane}


@pytest.mark.parametrize("latency", [5, 8])
def test_stage_registers_hold_intermediates(latency):
    """A probe beat through an idle pipeline: after cycle s+1 stage s holds the s-th
    operation's result (fl(mu v), v', fl(lr v'), w', fp16(w')), computed with the lr taken
    with the beat although the port has changed since."""
    dut = WeightUpdateEngine(_cfg(latency))
    w, v, g = F32([1.5, -3e-39]), F32([0.25, 7.0]), F32([-0.125, 1e-3])
    lr, mu = F32(0.01), F32(0.9)
    mv = (mu * v).astype(F32)
    vn = (mv + g).astype(F32)
    lrv = (lr * vn).astype(F32)
    wn = (w - lrv).astype(F32)
    with np.errstate(all="ignore"):
        want = [("mv", mv), ("vn", vn), ("lrv", lrv), ("wn", wn),
                ("w16", wn.astype(np.float16))]
    seen = []
    # what each register holds: only what later stages read (lr until its multiply)
    held = [({"lr"}, {"w", "g", "mv"}), ({"lr"}, {"w", "vn"}), (set(), {"w", "vn", "lrv"}),
            (set(), {"vn", "wn"})] + [(set(), {"vn", "wn", "w16"})] * (latency - 4)
    assert [_fields(reg) for _, reg in dut.stages] == held

    async def bench(ctx):
        ctx.set(dut.out.ready, 1)
        ctx.set(dut.lr, _bits(lr))
        ctx.set(dut.momentum, _bits(mu))
        ctx.set(dut.inp.valid, 1)
        ctx.set(dut.inp.payload, [{"w": _bits(a), "v": _bits(b), "g": _bits(c)}
                                  for a, b, c in zip(w, v, g)])
        await ctx.tick()
        ctx.set(dut.inp.valid, 0)
        ctx.set(dut.lr, _bits(F32(7.0)))  # a later lr must not reach the in-flight beat
        ctx.set(dut.momentum, _bits(F32(-2.0)))
        for s in range(latency):
            valid, reg = dut.stages[s]
            assert ctx.get(valid) == 1
            for s2 in range(latency):
                assert ctx.get(dut.stages[s2][0]) == (s2 == s)
            lanes = ctx.get(reg)["lane"]
            if s < len(want):
                name, vals = want[s]
                seen.append(name)
                assert [lane[name] for lane in lanes] == list(vals.view(
                    np.uint16 if name == "w16" else np.uint32)), (s, name)
            else:  # delay stages carry the results
                assert [lane["wn"] for lane in lanes] == list(wn.view(np.uint32))
            assert ctx.get(dut.out.valid) == (s == latency - 1)
            if s < latency - 1:
                await ctx.tick()
        out = ctx.get(dut.out.payload)
        assert [x["w"] for x in out] == list(wn.view(np.uint32))
        assert [x["v"] for x in out] == list(vn.view(np.uint32))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert seen == ["mv", "vn", "lrv", "wn", "w16"]
