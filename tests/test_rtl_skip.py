# amaranth: UnusedElaboratable=no
# (first line: Amaranth's per-file switch; these tests build engines to read their ports,
# geometry or constructor errors without elaborating them)
"""``act_zero = skip`` on the RTL (Amaranth simulator): WS blocks with all-zero K-tile
row slices stream only the rows of each K-tile's row list. Values equal
``reference.engine_gemm(..., skip_rows=R)`` bit for bit and busy cycles equal
``timing.block_cycles`` with the block's ``ws_skip_stream``, with and without stalls;
without the option the engine's Verilog is unchanged."""

import numpy as np
import pytest

from nmsat.config import SMALL
from nmsat.dataflow.timing import block_cycles
from nmsat.rtl.engine import TensorEngine
from nmsat.rtl.fp import same_bits
from nmsat.rtl.tb.engine_amsim import BlockRun, run_blocks
from nmsat.rtl.tb.engine_model import ws_stream
from nmsat.rtl.tb.tiles import encode, random_operands, random_skip_tile, random_tile
from nmsat.types import Dataflow

SKIP = {"array.act_zero": "skip"}


def check(cfg, eng, runs):
    """Cycles and values of every run; returns (rows dropped, cycles saved) over them."""
    dropped = saved = 0
    for r in runs:
        (m, n), k = r.tile.expected.shape, r.tile.a.shape[1]
        df = Dataflow.parse(r.dataflow)
        stream = ws_stream(eng.shape, r.tile)
        want = block_cycles(df, m, n, k, r.tile.nm, r.interleave, cfg, r.in_valid,
                            r.out_ready, stream)
        name = (r.dataflow, r.interleave, str(r.tile.nm), (m, k, n))
        assert r.cycles == want, name
        if r.store:
            assert same_bits(r.out, r.tile.expected, r.tile.expected.dtype != np.float32).all(), \
                name
        if stream is not None:
            dropped += sum(m - x for x in stream.lengths)
            saved += block_cycles(df, m, n, k, r.tile.nm, r.interleave, cfg) - \
                block_cycles(df, m, n, k, r.tile.nm, r.interleave, cfg, stream=stream)
    return dropped, saved


def skip_runs(rng, shape, count, patterns, max_dim=10):
    """WS blocks with zero row slices (probability 0, 0.4 or 0.8; every third block a
    K-tile with no nonzero row), interleave alternating, every other block stalled."""
    runs = []
    for i in range(count):
        m, n = (int(x) for x in rng.integers(1, max_dim + 1, 2))
        k = int(rng.integers(8, 6 * max_dim))
        nm = patterns[i % len(patterns)]
        p_zero = (0.0, 0.4, 0.8)[i % 3]
        empty = 1 if i % 3 == 2 else None
        stall = i % 2 == 1
        runs.append(BlockRun(random_skip_tile(rng, shape, m, k, n, nm, p_zero, empty),
                             "ws", bool((i // 2) % 2),
                             rng.random(800) < 0.7 if stall else None,
                             rng.random(800) < 0.7 if stall else None))
    return runs


@pytest.mark.parametrize("la", [1, 2])
def test_skip_int_blocks(la):
    cfg = SMALL.replace(**{"array.acc_latency": la, **SKIP})
    eng = TensorEngine(cfg, "int8")
    rng = np.random.default_rng(40 + la)
    runs = skip_runs(rng, eng.shape, 12, ["1:1", "2:4", "2:8"])
    dropped, saved = check(cfg, eng, run_blocks(eng, runs, seed=la))
    assert dropped > 0 and saved > 0


def test_skip_fp16_blocks():
    cfg = SMALL.replace(**{"array.rows": 2, "array.cols": 2, **SKIP})
    eng = TensorEngine(cfg, "fp16")
    rng = np.random.default_rng(9)
    runs = skip_runs(rng, eng.shape, 6, ["1:1", "2:4", "2:8"], max_dim=7)
    dropped, _ = check(cfg, eng, run_blocks(eng, runs, seed=3))
    assert dropped > 0


def test_skip_edge_blocks_and_os_on_the_same_engine():
    """A block whose every K-tile is zero (one row each), one with nothing to drop, the
    lag case (a row streaming first in K-tile 1 but last in K-tile 0), one row, and OS
    blocks (OS never skips) on the skip engine, back to back with accumulation."""
    cfg = SMALL.replace(**{"array.acc_latency": 2, **SKIP})
    eng = TensorEngine(cfg, "int8")
    sh = eng.shape
    rng = np.random.default_rng(12)
    zero = np.zeros((5, 40), np.int8)
    lag = random_operands(rng, sh.dtype, (9, 40))
    lag[:8, 16:32] = 0  # K-tile 1 (R = 4 chunks of P = 4) holds row 8 only
    full = random_operands(rng, sh.dtype, (6, 20))
    full[full == 0] = 1
    b = lambda k, n: random_operands(rng, sh.dtype, (k, n))
    runs = [BlockRun(encode(sh, zero, b(40, 6), "1:1", skip=True), "ws", True),
            BlockRun(encode(sh, full, b(20, 5), "2:4", skip=True), "ws", True),
            BlockRun(encode(sh, lag, b(40, 3), "1:1", skip=True), "ws", True),
            BlockRun(encode(sh, lag, b(40, 3), "1:1", skip=True), "ws", False),
            BlockRun(encode(sh, lag[:1], b(40, 2), "1:1", skip=True), "ws", True),
            BlockRun(random_tile(rng, sh, 6, 24, 5, "2:8"), "os", True)]
    a1, b1 = random_operands(rng, sh.dtype, (6, 32)), b(32, 5)
    a1[2:, :] = 0
    t1 = encode(sh, a1, b1, "2:4", skip=True)
    t2 = encode(sh, a1, b1, "2:4", acc=t1.expected.astype(np.uint32).view(np.int32), skip=True)
    runs += [BlockRun(t1, "ws", True, store=False), BlockRun(t2, "ws", True, load=False)]
    check(cfg, eng, run_blocks(eng, runs, seed=4))
    assert ws_stream(sh, runs[0].tile).lengths == (1,) * 6  # 3 K-tiles x 2 column tiles
    assert ws_stream(sh, runs[2].tile).lags[1] == 8


def test_verilog_unchanged_without_skip():
    """The row lists exist only in act_zero = skip builds: a gate build is the none
    build's Verilog, and the skip build adds exactly the row-list load stream's ports."""
    from nmsat.rtl.generate import ports, to_verilog

    gate = SMALL.replace(**{"array.act_zero": "gate"})
    assert (to_verilog(TensorEngine(gate, "int8"), "e")
            == to_verilog(TensorEngine(SMALL, "int8"), "e"))
    base = ports(TensorEngine(SMALL, "int8"))
    skip = ports(TensorEngine(SMALL.replace(**SKIP), "int8"))
    assert [p for p in skip if not p["name"].startswith("rowlist_load")] == base
    assert {p["name"] for p in skip} - {p["name"] for p in base} == \
        {"rowlist_load__payload", "rowlist_load__valid", "rowlist_load__ready"}
