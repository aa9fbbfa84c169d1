# amaranth: UnusedElaboratable=no
# (first line: Amaranth's per-file switch; these tests build engines to read their ports,
# geometry or constructor errors without elaborating them)
"""Tensor engine (Amaranth simulator): block values equal reference.engine_gemm bit for bit
and busy cycles equal timing.block_cycles, with and without stall masks, for OS/WS,
interleave on/off, N:M patterns and accumulator latencies."""

import numpy as np
import pytest

from nmsat.arith import ceil_div
from nmsat.config import SMALL
from nmsat.dataflow.timing import block_cycles
from nmsat.rtl.engine import TensorEngine
from nmsat.rtl.fp import same_bits
from nmsat.rtl.tb.engine_amsim import BlockRun, run_blocks
from nmsat.rtl.tb.tiles import encode, random_tile
from nmsat.types import Dataflow

PATTERNS = ["1:1", "1:4", "2:4", "2:8", "1:8", "4:8"]


def random_runs(rng, shape, count, stalls=True, max_dim=12):
    runs = []
    for i in range(count):
        m, k, n = (int(x) for x in rng.integers(1, max_dim + 1, 3))
        stall = stalls and i % 2 == 1
        runs.append(BlockRun(random_tile(rng, shape, m, 3 * k, n, PATTERNS[i % 6]),
                             ["os", "ws"][(i // 2) % 2], bool(rng.integers(2)),
                             rng.random(600) < 0.7 if stall else None,
                             rng.random(600) < 0.7 if stall else None))
    return runs


def check(cfg, runs):
    for r in runs:
        (m, n), k = r.tile.expected.shape, r.tile.a.shape[1]
        want = block_cycles(Dataflow.parse(r.dataflow), m, n, k, r.tile.nm, r.interleave, cfg,
                            r.in_valid, r.out_ready)
        assert r.cycles == want, (r.dataflow, r.interleave, str(r.tile.nm), (m, k, n))
        if r.store:  # otherwise the next block accumulates into OUT
            assert same_bits(r.out, r.tile.expected, r.tile.expected.dtype != np.float32).all()


@pytest.mark.parametrize("la", [1, 2, 3])
def test_engine_int_blocks_match_reference_and_tile_model(la):
    cfg = SMALL.replace(**{"array.acc_latency": la})
    eng = TensorEngine(cfg, "int16" if la == 2 else "int8")
    rng = np.random.default_rng(10 + la)
    check(cfg, run_blocks(eng, random_runs(rng, eng.shape, 12), seed=la))


def test_engine_edge_shapes():
    """m, n, k of 1, shapes that do not divide the array, K not a whole chunk."""
    eng = TensorEngine(SMALL, "int8")
    rng = np.random.default_rng(3)
    runs = [BlockRun(random_tile(rng, eng.shape, m, k, n, nm), df, il)
            for (m, k, n, nm, df, il) in [(1, 1, 1, "1:1", "os", False),
                                          (1, 1, 1, "2:8", "ws", True),
                                          (5, 7, 5, "2:4", "os", True),
                                          (4, 9, 4, "1:8", "ws", False),
                                          (17, 5, 3, "4:8", "ws", True)]]
    check(SMALL, run_blocks(eng, runs))


def test_blocks_accumulate_into_out():
    """A K range split over two COMPUTEs: the second starts from OUT (OS: accumulator
    init; WS: top partial sum) and gives engine_gemm(..., acc=first) bit for bit."""
    from nmsat.rtl.tb.tiles import encode, random_operands

    cfg = SMALL.replace(**{"array.acc_latency": 2})
    eng = TensorEngine(cfg, "bf16")
    rng = np.random.default_rng(8)
    runs = []
    for df in ("os", "ws"):
        a1, a2 = (random_operands(rng, eng.shape.dtype, (5, 16)) for _ in range(2))
        b1, b2 = (random_operands(rng, eng.shape.dtype, (16, 3)) for _ in range(2))
        t1 = encode(eng.shape, a1, b1, "2:8")
        t2 = encode(eng.shape, a2, b2, "2:8", acc=t1.expected.astype(np.uint32).view(np.float32))
        runs += [BlockRun(t1, df, True, store=False), BlockRun(t2, df, False)]
    run_blocks(eng, runs)
    for r in runs[1::2]:
        assert same_bits(r.out, r.tile.expected).all(), r.dataflow


def test_wrong_geometry_is_rejected():
    with pytest.raises(ValueError, match="array.rows must be a power of two"):
        TensorEngine(SMALL.replace(**{"array.rows": 3}), "int8")


@pytest.mark.slow(seconds=30)
def test_engine_float_blocks():
    cfg = SMALL.replace(**{"array.acc_latency": 2})
    eng = TensorEngine(cfg, "bf16")
    rng = np.random.default_rng(7)
    check(cfg, run_blocks(eng, random_runs(rng, eng.shape, 4, max_dim=6), seed=1))


# ---- synchronous buffer reads: addressed one step ahead, held on frozen cycles


def _stalled_ends(cfg, r: BlockRun) -> BlockRun:
    """``r`` with in_valid low in the first two cycles (step 0, in a feed window, repeats)
    and out_ready low in the two cycles of the last step (in a drain window)."""
    (m, n), k = r.tile.expected.shape, r.tile.a.shape[1]
    t = block_cycles(Dataflow.parse(r.dataflow), m, n, k, r.tile.nm, r.interleave, cfg)
    iv, orr = np.ones(t + 8, bool), np.ones(t + 8, bool)
    iv[:2] = False
    orr[t + 1:t + 3] = False
    r.in_valid, r.out_ready = iv, orr
    return r


def test_stalls_on_the_first_and_last_step_back_to_back():
    """Each block frozen on its first step (buffer data of step 0 held two cycles) and its
    last step, then the next COMPUTE on the same buffers (no loads) in the first idle cycle,
    OS then WS and back, accumulating into OUT; the STORE follows the last COMPUTE at once.
    A read timed one step off, or not held on a frozen cycle, breaks the values."""
    cfg = SMALL.replace(**{"array.acc_latency": 2})
    eng = TensorEngine(cfg, "int8")
    rng = np.random.default_rng(21)
    runs = []
    for il in (False, True):
        a = random_tile(rng, eng.shape, 6, 40, 7, "2:4")  # kc 5 > R: two WS K-tiles
        acc = None
        for i, df in enumerate(("os", "ws", "os")):
            t = encode(eng.shape, a.a, a.b, "2:4", acc=acc)
            runs.append(_stalled_ends(cfg, BlockRun(t, df, il, store=i == 2, load=i == 0)))
            acc = t.expected.astype(np.uint32).view(np.int32)
    check(cfg, run_blocks(eng, runs))
    for r in runs:
        (m, n), k = r.tile.expected.shape, r.tile.a.shape[1]
        free = block_cycles(Dataflow.parse(r.dataflow), m, n, k, r.tile.nm, r.interleave, cfg)
        assert r.cycles == free + 4  # both stalls hit the block
    assert [r.out is not None for r in runs] == [False, False, True] * 2


def test_ws_partial_sum_read_in_the_step_after_its_write():
    """2 x 2 array, La = 2, WS interleaved: Delta = R La + 1, so a row's partial sum leaves
    the bottom of a column at step s and is read back at its top at step s + 1 for the next
    K-tile. The OUT read port must be transparent (a non-transparent one reads the stale
    word), with and without stalls."""
    cfg = SMALL.replace(**{"array.rows": 2, "array.cols": 2, "array.acc_latency": 2})
    eng = TensorEngine(cfg, "int8")
    rng = np.random.default_rng(5)
    runs = [BlockRun(random_tile(rng, eng.shape, m, 4 * 8, 3, "1:1"), "ws", True,
                     *((rng.random(200) < 0.7, rng.random(200) < 0.7) if stall else ()))
            for m in (1, 4, 5) for stall in (False, True)]
    check(cfg, run_blocks(eng, runs, seed=2))


@pytest.mark.parametrize("nm", ["1:1", "2:8"])
def test_load_beats_fill_the_banks(nm):
    """A load beat carries a whole row's K-tile (ACT: R chunks) or a column tile's chunk
    (WGT: C columns), so a block takes m x ceil(kc / R) ACT and ceil(n / C) x kc WGT beats,
    every word once; only a last partial K-tile or column tile leaves enables clear."""
    from nmsat.rtl.layouts import EngineShape
    from nmsat.rtl.tb.engine_model import load_beats, load_words

    shape = EngineShape.from_config(SMALL, "int8")
    R, C = shape.rows, shape.cols
    m, k, n = 5, 72, 6
    tile = random_tile(np.random.default_rng(3), shape, m, k, n, nm)
    kc = tile.act.shape[1]
    lw = load_words(shape, tile)
    assert len(lw.act) == m * ceil_div(kc, R) and len(lw.wgt) == ceil_div(n, C) * kc
    assert sum(w is not None for b in lw.act for w in b.words) == m * kc
    assert sum(w is not None for b in lw.wgt for w in b.words) == n * kc
    assert sum(None in b.words for b in lw.wgt) == kc * (n % C > 0)
    with pytest.raises(ValueError, match="two words for bank 1 at address 7"):
        load_beats([(1, 7, 0), (2, 7, 0), (1, 7, 5)], 4)
