"""The closed-form tile model equals the per-cycle model cycle for cycle (random shapes,
N:M patterns, dataflows, accumulator latencies, interleave, stall masks), and the
closed forms of docs/architecture.md section 4.1 hold."""

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nmsat.arith import ceil_div
from nmsat.config import SMALL, VCU1525
from nmsat.dataflow import timing
from nmsat.dataflow.isa import Compute, Sore, SoreView, WeightUpdate
from nmsat.reference import engine_gemm, gemm_chunks
from nmsat.simulator.percycle import simulate
from nmsat.types import NM, Dataflow

PATTERNS = ["1:1", "1:2", "1:4", "2:4", "2:8", "1:8", "4:8", "3:4"]


@st.composite
def blocks(draw, stalls: bool, shadow: bool = False):
    rows, cols = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    lanes = draw(st.sampled_from([1, 2, 4]))
    window = draw(st.sampled_from([w for w in (1, 2, 4, 8, 16) if w >= lanes]))
    la = draw(st.integers(1, 5))
    nm = draw(st.sampled_from([p for p in PATTERNS
                               if NM.parse(p).n <= lanes and NM.parse(p).m <= window]))
    m, n, k = draw(st.integers(1, 13)), draw(st.integers(1, 9)), draw(st.integers(1, 48))
    cfg = SMALL.replace(**{"array.rows": rows, "array.cols": cols,
                           "array.macs_per_pe": lanes, "array.act_window": window,
                           "array.acc_latency": la, "array.nm_patterns": []})
    df = draw(st.sampled_from([Dataflow.OS, Dataflow.WS]))
    inter = draw(st.booleans())
    if shadow:  # shadow weights change interleaved WS blocks only
        cfg = cfg.replace(**{"array.shadow_weights": True,
                             "array.weight_load_ports": draw(st.integers(1, cols))})
        df, inter = Dataflow.WS, draw(st.sampled_from([True, True, True, False]))
    iv = orr = None
    if stalls:
        seed = draw(st.integers(0, 2**31))
        rng = np.random.default_rng(seed)
        length = draw(st.integers(0, 600))
        iv = rng.random(length) < draw(st.floats(0.2, 1.0))
        orr = rng.random(draw(st.integers(0, 600))) < draw(st.floats(0.2, 1.0))
    return cfg, df, inter, NM.parse(nm), m, n, k, iv, orr


def _run(cfg, df, inter, nm, m, n, k, iv, orr):
    rng = np.random.default_rng(m * 1000 + n * 100 + k)
    a = rng.integers(-3, 4, (m, k))
    b = rng.integers(-3, 4, (k, n))
    res = simulate(a, b, cfg=cfg, dataflow=df, nm=nm, interleave=inter, dtype="int8",
                   in_valid=iv, out_ready=orr)
    fast = timing.block_cycles(df, m, n, k, nm, inter, cfg, iv, orr)
    return res, fast


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(blocks(stalls=False))
def test_fast_equals_percycle(case):
    res, fast = _run(*case)
    assert res.cycles == fast


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(blocks(stalls=True))
def test_fast_equals_percycle_under_stalls(case):
    res, fast = _run(*case)
    assert res.cycles == fast


def test_single_tile_formulas():
    """Section 4: OS kc La + 2R + C - 2; WS R + m + R La + C - 1 (one array tile)."""
    cfg = VCU1525
    R, C, La = 16, 16, 4
    for k in (4, 64, 1000):
        kc = gemm_chunks(k, 4, 16, "1:1")
        assert timing.block_cycles(Dataflow.OS, 16, 16, k, NM(1, 1), False, cfg) == \
            kc * La + 2 * R + C - 2
    for m in (1, 16, 300):
        assert timing.block_cycles(Dataflow.WS, m, 16, 64, NM(1, 1), False, cfg) == \
            R + m + R * La + C - 1


def test_interleave_never_slower_and_reaches_peak_on_large_blocks():
    cfg = VCU1525
    peak = cfg.array.peak_macs_per_cycle
    for df in (Dataflow.OS, Dataflow.WS):
        for nm in (NM(1, 1), NM(2, 8), NM(2, 4)):
            for (m, n, k) in ((64, 16, 4096), (1024, 64, 1024), (7, 3, 50)):
                on = timing.block_cycles(df, m, n, k, nm, True, cfg)
                off = timing.block_cycles(df, m, n, k, nm, False, cfg)
                assert on <= off
    # A big dense block is within 10% of the peak with interleave.
    c = Compute(Dataflow.OS, NM(1, 1), 4096, 256, 4096)
    assert c.macs / timing.compute_cycles(c, cfg) > 0.9 * peak


@settings(max_examples=200, deadline=None)
@given(st.sampled_from([Dataflow.OS, Dataflow.WS]), st.booleans(),
       st.sampled_from(["1:1", "2:8", "2:4", "1:4", "4:8", "1:8"]),
       st.integers(1, 5000), st.integers(1, 2000), st.integers(1, 5000))
def test_physics_cycles_at_least_macs_over_peak(df, inter, nm, m, n, k):
    c = Compute(df, NM.parse(nm), m, n, k, inter)
    cyc = timing.compute_cycles(c, VCU1525)
    assert cyc * VCU1525.array.peak_macs_per_cycle >= c.macs
    # and never below the sparse peak: K per cycle is capped by the window
    kpc = VCU1525.array.k_per_cycle(NM.parse(nm))
    assert cyc * VCU1525.array.pes * kpc >= c.dense_macs


def test_sore_and_weight_update_cycles():
    cfg = VCU1525
    s = Sore(0, 1, SoreView.FF, NM(2, 8), weights=8 * 100, groups=100, read_bytes=1600,
             write_bytes=500)
    assert timing.sore_cycles(s, cfg) == math.ceil(100 / 32) * 8 + 4
    w = WeightUpdate(0, weights=1000, read_bytes=12000, write_bytes=10000)
    assert timing.weight_update_cycles(w, cfg) == math.ceil(1000 / 16) + 8


def test_stall_mapping_examples():
    """A hand-checked case: one feed step that is invalid for 3 cycles."""
    cfg = SMALL.replace(**{"array.rows": 1, "array.cols": 1, "array.acc_latency": 1})
    free = timing.block_cycles(Dataflow.OS, 1, 1, 4, NM(1, 1), False, cfg)
    assert free == 1 + 2 + 1 - 2  # kc La + 2R + C - 2 with kc = 1
    iv = np.array([False, False, False])
    assert timing.block_cycles(Dataflow.OS, 1, 1, 4, NM(1, 1), False, cfg, iv) == free + 3
    # output backpressure only delays the drain step
    orr = np.array([True, False, False])
    assert timing.block_cycles(Dataflow.OS, 1, 1, 4, NM(1, 1), False, cfg, None, orr) \
        == free + 2


@pytest.mark.parametrize("df", [Dataflow.OS, Dataflow.WS])
def test_large_blocks_are_fast(df):
    import time
    t = time.perf_counter()
    for i in range(2000):
        timing.block_cycles(df, 50000 + i, 4096, 4608, NM(2, 8), True, VCU1525)
    assert time.perf_counter() - t < 1.0


def test_ws_shadow_load_in_the_start_step_regression():
    """R = C = 1: the next tile's shadow load starts in the very step the current tile
    starts ((R - 1) La + C - 1 = 0); with input gaps the two models once disagreed."""
    cfg = SMALL.replace(**{"array.rows": 1, "array.cols": 1, "array.macs_per_pe": 1,
                           "array.act_window": 1, "array.acc_latency": 1,
                           "array.nm_patterns": []})
    iv = np.array([0, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0], bool)
    res, fast = _run(cfg, Dataflow.WS, True, NM(1, 1), 1, 1, 3, iv, np.array([], bool))
    # steps needing input: 0, 1, 3, 5 (loads at 0, 1, 3; rows at 1, 3, 5); 7 steps
    assert res.cycles == fast == 15


# ---- act_zero = skip: WS blocks stream, per K-tile, only rows with a nonzero activation


def zero_row_slices(rng, a: np.ndarray, cfg, nm, p_zero: float, empty_tile: bool):
    """``a`` with each (row, K-tile slice) set to zero with probability ``p_zero`` (zeros
    of either sign for floats), and one whole K-tile zero when ``empty_tile``."""
    arr = cfg.array
    kpc = nm.k_per_chunk(arr.macs_per_pe, arr.act_window)
    span = arr.rows * kpc
    a = a.copy()
    kts = ceil_div(a.shape[1], span)
    for kt in range(kts):
        sl = slice(kt * span, (kt + 1) * span)
        for r in range(a.shape[0]):
            if rng.random() < p_zero:
                a[r, sl] = 0
        if empty_tile and kt == kts // 2:
            a[:, sl] = 0
    if a.dtype.kind == "f":  # signed zeros: -0 is zero for the detector too
        a = np.where((a == 0) & (rng.random(a.shape) < 0.5), -0.0, a).astype(a.dtype)
    return a


@st.composite
def skip_blocks(draw, stalls: bool, shadow: bool = False):
    cfg, _, inter, nm, m, n, k, iv, orr = draw(blocks(stalls, shadow))
    cfg = cfg.replace(**{"array.act_zero": "skip"})
    dtype = draw(st.sampled_from(["int8", "fp16"]))
    seed = draw(st.integers(0, 2**31))
    p_zero = draw(st.sampled_from([0.0, 0.3, 0.7, 1.0]))
    return cfg, inter, nm, m, n, k, iv, orr, dtype, seed, p_zero, draw(st.booleans())


def _run_skip(cfg, inter, nm, m, n, k, iv, orr, dtype, seed, p_zero, empty_tile):
    from nmsat.reference import engine_gemm, quantize

    rng = np.random.default_rng(seed)
    a = rng.integers(-3, 4, (m, k))
    b = rng.integers(-3, 4, (k, n))
    if dtype == "fp16":
        a, b = quantize(a * 1.5, dtype), quantize(b * 0.75, dtype)
    a = zero_row_slices(rng, a, cfg, nm, p_zero, empty_tile)
    res = simulate(a, b, cfg=cfg, dataflow=Dataflow.WS, nm=nm, interleave=inter,
                   dtype=dtype, in_valid=iv, out_ready=orr)
    g = timing.Geometry.of(cfg)
    stream = timing.ws_skip_stream(a, n, nm, g)
    fast = timing.block_cycles(Dataflow.WS, m, n, k, nm, inter, cfg, iv, orr, stream)
    want = engine_gemm(a, b, dtype, g.lanes, g.window, nm, skip_rows=g.rows)
    same = (res.out.view(np.uint32) == want.view(np.uint32)) if dtype == "fp16" else \
        res.out == want
    return res, fast, stream, bool(same.all())


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(skip_blocks(stalls=False))
def test_ws_skip_fast_equals_percycle(case):
    res, fast, _, same = _run_skip(*case)
    assert res.cycles == fast
    assert same


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(skip_blocks(stalls=True))
def test_ws_skip_fast_equals_percycle_under_stalls(case):
    res, fast, _, same = _run_skip(*case)
    assert res.cycles == fast
    assert same


def test_ws_skip_without_zero_rows_is_the_dense_timing():
    """No all-zero slice: every tile streams m rows, lag 0, today's formula."""
    cfg = SMALL.replace(**{"array.acc_latency": 2, "array.act_zero": "skip"})
    g = timing.Geometry.of(cfg)
    a = np.arange(1, 7 * 50 + 1).reshape(7, 50)
    s = timing.ws_skip_stream(a, 9, NM(2, 4), g)
    assert s == timing.WSStream.dense(7, len(s.lengths))
    for inter in (False, True):
        assert timing.block_cycles(Dataflow.WS, 7, 9, 50, NM(2, 4), inter, cfg,
                                       stream=s) == \
            timing.block_cycles(Dataflow.WS, 7, 9, 50, NM(2, 4), inter, cfg)


def test_ws_skip_example_and_the_lag_rule():
    """R = 2, C = 1, La = 1, P = A = 1, three K-tiles: K-tile 0 streams rows 0-5, K-tile 1
    only row 5 (lag 5: row 5's partial sum leaves K-tile 0 at A_0 + 5 + R La and is read
    at A_1 + 0), K-tile 2 is all zero (row 0). Without the lag term the per-cycle model
    reads a partial sum before it is written."""
    from nmsat.simulator.percycle import ScheduleHazard

    cfg = SMALL.replace(**{"array.rows": 2, "array.cols": 1, "array.macs_per_pe": 1,
                           "array.act_window": 1, "array.acc_latency": 1,
                           "array.nm_patterns": [], "array.act_zero": "skip"})
    a = np.zeros((6, 6), np.int64)
    a[:, 0] = 1
    a[5, 2] = 1
    b = np.ones((6, 1), np.int64)
    g = timing.Geometry.of(cfg)
    s = timing.ws_skip_stream(a, 1, NM(1, 1), g)
    assert s == timing.WSStream((6, 1, 1), (0, 5, 0))
    # A_0 = 2; Delta_1 = max(6, (R-1) La + R + C - 1 = 3, R La + 1 + 5 = 8) = 8;
    # Delta_2 = max(1, 3, 3) = 3; end = A_2 + L_2 + R La + C - 1 = 13 + 1 + 2 = 16
    assert timing.block_cycles(Dataflow.WS, 6, 1, 6, NM(1, 1), True, cfg, stream=s) == 16
    res = simulate(a, b, cfg=cfg, dataflow=Dataflow.WS, nm="1:1", interleave=True,
                   dtype="int8")
    assert res.cycles == 16 and res.out[:, 0].tolist() == [1, 1, 1, 1, 1, 2]
    with pytest.raises(ScheduleHazard, match=r"step 8: partial sum \(5,0\) of tile 0"):
        simulate(a, b, cfg=cfg, dataflow=Dataflow.WS, nm="1:1", interleave=True,
                 dtype="int8", _hooks={"lag_rule": False})
    # without skipping the same block streams 6 rows per K-tile
    dense = cfg.replace(**{"array.act_zero": "none"})
    assert simulate(a, b, cfg=dense, dataflow=Dataflow.WS, nm="1:1", interleave=True,
                    dtype="int8").cycles == \
        timing.block_cycles(Dataflow.WS, 6, 1, 6, NM(1, 1), True, dense) == 2 + 2 * 6 + 6 + 2


def test_ws_skip_stream_must_fit_the_block():
    cfg = SMALL
    with pytest.raises(ValueError, match="OS cannot skip"):
        timing.block_cycles(Dataflow.OS, 4, 4, 8, NM(1, 1), True, cfg,
                                stream=timing.WSStream((4,), (0,)))
    with pytest.raises(ValueError, match="the block has 1 of 4"):
        timing.block_cycles(Dataflow.WS, 4, 4, 8, NM(1, 1), True, cfg,
                                stream=timing.WSStream((4, 4), (0, 0)))


# ---- shadow weights (array.shadow_weights): row-wave weight preload, K-tile outer order


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(blocks(stalls=False, shadow=True))
def test_shadow_fast_equals_percycle(case):
    res, fast = _run(*case)
    assert res.cycles == fast
    cfg, _, _, nm, m, n, k = case[:7]
    rng = np.random.default_rng(m * 1000 + n * 100 + k)
    a, b = rng.integers(-3, 4, (m, k)), rng.integers(-3, 4, (k, n))
    g = timing.Geometry.of(cfg)
    assert (res.out == engine_gemm(a, b, "int8", g.lanes, g.window, nm)).all()


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(blocks(stalls=True, shadow=True))
def test_shadow_fast_equals_percycle_under_stalls(case):
    res, fast = _run(*case)
    assert res.cycles == fast


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(skip_blocks(stalls=True, shadow=True))
def test_shadow_ws_skip_fast_equals_percycle(case):
    res, fast, _, same = _run_skip(*case)
    assert res.cycles == fast
    assert same


def _shadow_cfg(R, C, La, ports, **kw):
    return SMALL.replace(**{"array.rows": R, "array.cols": C, "array.macs_per_pe": 1,
                            "array.act_window": 1, "array.acc_latency": La,
                            "array.nm_patterns": [], "array.shadow_weights": True,
                            "array.weight_load_ports": ports, **kw})


def test_shadow_closed_form_by_hand():
    """R = C = 2, La = 3, one port (Cs = 2), m = 1, n = 6 (nt = 3), k = 4 (kt = 2):
    p = max(1, 2) = 2; A_0 = 2, A_1 = 4, A_2 = 6; the second K-tile waits for the
    partial sums: A_3 = A_0 + R La + 1 = 9, A_4 = 11, A_5 = 13; the block ends at
    A_5 + m + R La + C - 1 = 13 + 1 + 6 + 1 = 21."""
    cfg = _shadow_cfg(2, 2, 3, 1)
    assert timing.block_cycles(Dataflow.WS, 1, 6, 4, NM(1, 1), True, cfg) == 21
    res = simulate(np.ones((1, 4), np.int64), np.ones((4, 6), np.int64), cfg=cfg,
                   dataflow="ws", interleave=True, dtype="int8")
    assert res.cycles == 21 and res.out.tolist() == [[4] * 6]


@pytest.mark.parametrize("rule", ["load", "dependency"])
def test_shadow_rules_are_tight(rule):
    """One step less on the load rule (A_u >= A_{u-1} + Cs) or on the partial-sum rule
    (A_u >= A_{u-nt} + R La + 1) breaks a dependency the per-cycle model detects."""
    from nmsat.simulator.percycle import ScheduleHazard

    if rule == "load":  # m = 1, many column tiles: the loads set the pace
        cfg, m, n, k = _shadow_cfg(3, 4, 1, 1), 1, 40, 6
        match = "needs tile"
    else:  # one column tile: every K-tile waits for the previous one's partial sums
        cfg, m, n, k = _shadow_cfg(3, 2, 2, 2), 2, 2, 12
        match = "read before it was written"
    a = np.ones((m, k), np.int64)
    b = np.ones((k, n), np.int64)
    ok = simulate(a, b, cfg=cfg, dataflow="ws", interleave=True, dtype="int8")
    assert ok.cycles == timing.block_cycles(Dataflow.WS, m, n, k, NM(1, 1), True, cfg)
    with pytest.raises(ScheduleHazard, match=match):
        simulate(a, b, cfg=cfg, dataflow="ws", interleave=True, dtype="int8",
                 _hooks={"slack": 1})


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 64), st.integers(1, 64), st.integers(1, 8), st.integers(1, 16),
       st.integers(1, 300), st.integers(1, 3000), st.integers(1, 3000))
def test_shadow_never_slower_than_the_column_chain(R, C, La, ports, m, n, k):
    """Shadow weights never make an interleaved WS block slower, but for the first load:
    a row chain of Cs = ceil(C / ports) columns against a column chain of R rows."""
    g0 = timing.Geometry(R, C, 1, 1, La)
    g1 = timing.Geometry(R, C, 1, 1, La, True, min(ports, C))
    assert timing.block_cycles(Dataflow.WS, m, n, k, NM(1, 1), True, g1) <= \
        timing.block_cycles(Dataflow.WS, m, n, k, NM(1, 1), True, g0) + \
        max(0, g1.segment - R)


def test_shadow_gemv_at_most_10_cycles_per_weight_block():
    """Issue 17: a dense 8 x 8 WS array with shadow weights takes at most 10 cycles per
    8 x 8 weight block on a 1 x 512 x 1000 GEMV (Gemmini: about 8). One multiplier per
    PE, vcu1525's La = 4; 64 x 125 = 8,000 blocks."""
    cfg = VCU1525.replace(**{"array.rows": 8, "array.cols": 8, "array.macs_per_pe": 1,
                             "array.act_window": 1, "array.nm_patterns": [],
                             "array.shadow_weights": True, "array.weight_load_ports": 1})
    blocks_ = ceil_div(512, 8) * ceil_div(1000, 8)
    cyc = timing.block_cycles(Dataflow.WS, 1, 1000, 512, NM(1, 1), True, cfg)
    # A_last = 8 + 63 max(125 x 8, 33) + 124 x 8; + 1 + 32 + 7
    assert cyc == 8 + 63 * 1000 + 124 * 8 + 1 + 32 + 7 == 64040
    assert cyc / blocks_ <= 10
    off = timing.block_cycles(Dataflow.WS, 1, 1000, 512, NM(1, 1), True,
                              cfg.replace(**{"array.shadow_weights": False}))
    assert off / blocks_ > 40  # (R - 1) La + R + C - 1 = 43 per block without
