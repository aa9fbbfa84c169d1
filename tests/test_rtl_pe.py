"""The N:M PE (Amaranth simulator) against reference.engine_gemm for single dot products."""

import numpy as np
import pytest

from nmsat.config import SMALL
from nmsat.rtl.fp import same_bits
from nmsat.rtl.layouts import EngineShape
from nmsat.rtl.pe import NMPE
from nmsat.rtl.tb.amsim import run_clocked
from nmsat.rtl.tb.tiles import random_tile
from nmsat.types import DType

PATTERNS = ["1:1", "1:4", "2:4", "2:8", "1:8", "4:8"]


def chunk_payload(t, row, col, c):
    return {"act": [int(x) for x in t.act[row, c]],
            "w": [{"value": int(v), "index": int(i)}
                  for v, i in zip(t.w_value[col, c], t.w_index[col, c])],
            "first": c == 0, "last": c == t.chunks - 1}


def run_pe(shape, tiles, seed=None):
    """Feed each tile's (row 0, column 0) chunk stream through one NMPE; return the
    results and the cycles from first chunk to result. ``seed``: random input gaps and
    output backpressure."""
    dut = NMPE(shape)
    rng = np.random.default_rng(seed)
    results = []

    async def feed(ctx):
        for t in tiles:
            ctx.set(dut.mode, shape.mode_code(t.nm))
            for c in range(t.chunks):
                while seed is not None and rng.random() < 0.3:
                    ctx.set(dut.chunk.valid, 0)
                    await ctx.tick()
                ctx.set(dut.chunk.payload, chunk_payload(t, 0, 0, c))
                ctx.set(dut.chunk.valid, 1)
                await ctx.tick().until(dut.chunk.ready)
            ctx.set(dut.chunk.valid, 0)
        while len(results) < len(tiles):
            await ctx.tick()

    async def sink(ctx):
        while True:
            ready = seed is None or rng.random() < 0.6
            ctx.set(dut.result.ready, ready)
            _, _, valid, payload = await ctx.tick().sample(dut.result.valid, dut.result.payload)
            if valid and ready:
                results.append(payload)

    run_clocked(dut, feed, "nmpe", extra=[sink], background=True)
    return results


@pytest.mark.parametrize("dtype", list(DType))
@pytest.mark.parametrize("nm", PATTERNS)
def test_pe_dot_products(dtype, nm):
    shape = EngineShape.from_config(SMALL, dtype)
    rng = np.random.default_rng(hash((dtype.value, nm)) % 2**32)
    tiles = [random_tile(rng, shape, 1, int(rng.integers(1, 40)), 1, nm) for _ in range(6)]
    got = run_pe(shape, tiles)
    exp = [int(t.expected[0, 0]) for t in tiles]
    assert same_bits(np.array(got), np.array(exp), dtype.is_float).all(), (got, exp)


@pytest.mark.parametrize("nm", ["1:1", "2:8"])
def test_pe_gaps_backpressure_and_latency(nm):
    for la in (1, 3):
        shape = EngineShape.from_config(SMALL.replace(**{"array.acc_latency": la}), "bf16")
        rng = np.random.default_rng(la)
        tiles = [random_tile(rng, shape, 1, int(rng.integers(1, 40)), 1, nm) for _ in range(8)]
        got = run_pe(shape, tiles, seed=la)
        exp = [int(t.expected[0, 0]) for t in tiles]
        assert same_bits(np.array(got), np.array(exp)).all()


def test_int8_tree_extremes():
    """The int8 product tree's narrow adders (``Numeric.tree_add``) at the extremes:
    every lane -128 x -128 (sum 2^16) or -128 x 127, dense mode, int32 result exact."""
    from nmsat.rtl.pe import ChunkDot
    from nmsat.rtl.tb.amsim import run_comb

    shape = EngineShape.from_config(SMALL, "int8")
    lanes, window = shape.lanes, shape.window
    cases = [([-128] * window, [-128] * lanes), ([-128] * window, [127] * lanes),
             ([127] * window, [127] * lanes), ([-128, 127] * (window // 2), [-128] * lanes)]
    vecs = [{"act": [a & 0xFF for a in act], "w": [{"value": w & 0xFF, "index": 0} for w in ws],
             "mode": 0} for act, ws in cases]
    out = run_comb(ChunkDot(shape), vecs, ["sum"])
    exp = [sum(a * w for a, w in zip(act[:lanes], ws)) % 2**32 for act, ws in cases]
    assert [o[0] for o in out] == exp


def test_dot_stage_plans():
    """Where the PE's La - 1 registers go (hand-derived plans; a multiplier is ~0.7 of an
    add, rtl/stages.py):
    at least one per boundary: one after every operation, the rest after the tree; fewer:
    the longest stage is as short as it can be, and of equal plans the cuts lie latest."""
    from nmsat.rtl.pe import dot_stages

    assert dot_stages(4, 0) == (0, 0, 0)
    assert dot_stages(1, 3) == (3,)  # multiplier, then the accumulate add
    assert dot_stages(4, 3) == (1, 1, 1)  # mul | level 1 | level 2 | add
    assert dot_stages(4, 5) == (1, 1, 3)
    assert dot_stages(8, 3) == (0, 1, 1, 1)  # mul + level 1 (1.7) | 2 | 3 | add
    assert dot_stages(8, 1) == (0, 0, 1, 0)  # mul + 1 + 2 (2.7) | 3 + add (2)
    assert dot_stages(8, 2) == (0, 1, 0, 1)  # 1.7 | 2 | 1
    assert dot_stages(4, 1) == (0, 1, 0)  # mul + 1 (1.7) | 2 + add (2)
    for lanes in (1, 2, 4, 8, 16):
        for regs in range(9):
            plan = dot_stages(lanes, regs)
            assert sum(plan) == regs and len(plan) == 1 + (lanes - 1).bit_length()


@pytest.mark.parametrize("dtype", [DType.FP16, DType.BF16, DType.INT8])
@pytest.mark.parametrize("regs", [1, 2, 3, 5])
def test_staged_chunk_dot_is_the_combinational_one_delayed(dtype, regs):
    """A ChunkDot with register stages gives, every step, the combinational ChunkDot's sum
    of the chunk presented ``regs`` steps before, under a new random chunk (window, slots,
    pattern) every step; and the stages really are registers: within a step the staged
    output does not follow the current chunk."""
    from nmsat.rtl.pe import ChunkDot, dot_stages
    from nmsat.rtl.tb.amsim import run_comb

    shape = EngineShape.from_config(SMALL, dtype)
    rng = np.random.default_rng(regs * 7 + len(dtype.value))
    vecs = []
    for i in range(40):
        nm = PATTERNS[i % len(PATTERNS)]
        t = random_tile(rng, shape, 1, shape.window, 1, nm)
        vecs.append(dict(chunk_payload(t, 0, 0, 0), mode=shape.mode_code(t.nm)))
    vecs = [{k: v for k, v in vec.items() if k in ("act", "w", "mode")} for vec in vecs]
    comb = [o[0] for o in run_comb(ChunkDot(shape), vecs, ["sum"])]
    dut = ChunkDot(shape, dot_stages(shape.lanes, regs))
    got = []

    async def bench(ctx):
        for vec in vecs:
            for port, value in vec.items():
                ctx.set(getattr(dut, port), value)
            got.append(ctx.get(dut.sum))
            await ctx.tick()

    run_clocked(dut, bench, "staged_dot")
    assert same_bits(np.array(got[regs:]), np.array(comb[:-regs]), dtype.is_float).all()
    assert sum(g != c for g, c in zip(got[regs:], comb[regs:])) > len(vecs) // 2
