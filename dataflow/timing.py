"""Fast tile model: closed-form cycle counts of tile-program instructions.

The timing laws of the engine, the SORE and the weight-update engine, on the dataflow floor
so that the compiler (which prices tilings with them) and both back ends (the system model
and the RTL testbenches) read one definition without importing each other.

The formulas are those of ``docs/architecture.md`` section 4.1; tests
(``tests/test_tile_model_*.py``) prove them equal, cycle for cycle, to the per-cycle model
(:mod:`nmsat.simulator.percycle`), which moves the operands through the array.

Without stalls a compute block costs O(1). With stall masks (input gaps and output
backpressure, for RTL verification of single blocks) the block's step windows are built in
closed form (O(tiles)) and mapped onto cycles with prefix sums of the masks, never by
stepping through cycles.

Terms (all in cycles = *steps* when nothing stalls)
    R, C    array rows and columns; La accumulator latency; P multipliers per PE.
    kc      chunks of the block's K range (:func:`nmsat.reference.gemm_chunks`).
    OS      sigma = La with interleave else 1 (accumulator slots per pass); rb = ceil(m/R)
            row blocks per column tile; pp = ceil(rb/sigma) passes per column tile, all
            with sigma slots but the last with s_r = rb - (pp-1) sigma; nt = ceil(n/C).
    WS      kt = ceil(kc/R) K-tiles; nt = ceil(n/C); tiles = nt * kt; m rows stream.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from nmsat.arith import ceil_div
from nmsat.config import AcceleratorConfig
from nmsat.dataflow.isa import Compute, Sore, WeightUpdate
from nmsat.reference import gemm_chunks
from nmsat.types import NM, Dataflow

__all__ = ["Geometry", "WSStream", "block_cycles", "chunks", "compute_cycles", "map_stalls",
           "os_cycles", "os_windows", "sore_cycles", "weight_update_cycles", "ws_cycles",
           "ws_row_lag", "ws_skip_stream", "ws_stream_cycles", "ws_stream_windows", "ws_windows"]


@dataclass(frozen=True)
class Geometry:
    """The array parameters the timing depends on."""

    rows: int
    cols: int
    lanes: int
    window: int
    acc_latency: int
    shadow: bool = False  # array.shadow_weights: row-wave weight preload (section 4.1)
    ports: int = 1  # array.weight_load_ports: shadow load chains per PE row

    @classmethod
    def of(cls, cfg: AcceleratorConfig) -> Geometry:
        a = cfg.array
        return cls(a.rows, a.cols, a.macs_per_pe, a.act_window, a.acc_latency,
                   a.shadow_weights, a.weight_load_ports)

    @property
    def segment(self) -> int:
        """Columns of one shadow load chain (``ceil(C / ports)``; more ports than columns
        act as one per column): the steps one tile's weights take to enter a PE row with
        shadow weights."""
        return ceil_div(self.cols, min(self.ports, self.cols))

    def os_slots(self, interleave: bool) -> int:
        """Accumulator slots (row blocks) one output-stationary pass interleaves: sigma =
        La with interleave mapping, else 1."""
        return self.acc_latency if interleave else 1

    def os_passes(self, m: int, interleave: bool) -> int:
        """Output-stationary passes per column tile: ceil(ceil(m / R) / sigma); each pass
        streams the block's weights once."""
        return ceil_div(ceil_div(m, self.rows), self.os_slots(interleave))


def chunks(k: int, nm: NM, g: Geometry) -> int:
    """PE cycles per output for a K range (the block's kc)."""
    return gemm_chunks(k, g.lanes, g.window, nm)


# --------------------------------------------------------------------------- OS


def _os_terms(m: int, n: int, k: int, nm: NM, interleave: bool, g: Geometry):
    kc = chunks(k, nm, g)
    sigma = g.os_slots(interleave)
    rb = ceil_div(m, g.rows)
    pp = g.os_passes(m, interleave)
    s_r = rb - (pp - 1) * sigma
    nt = ceil_div(n, g.cols)
    return kc, sigma, rb, pp, s_r, nt


def _os_period(s: int, kc: int, g: Geometry) -> int:
    """Interleaved OS: stream start of pass q+1 minus that of pass q, when pass q has s
    slots: max(kc La, s (R + 1) + R + C - 3) (accumulators free / shadow drained)."""
    R, C, La = g.rows, g.cols, g.acc_latency
    return max(kc * La, s * (R + 1) + R + C - 3)


def os_cycles(m: int, n: int, k: int, nm: NM, interleave: bool, g: Geometry) -> int:
    """Cycles of an OS block without stalls."""
    R, C, La = g.rows, g.cols, g.acc_latency
    kc, sigma, rb, pp, s_r, nt = _os_terms(m, n, k, nm, interleave, g)
    if not interleave:
        return nt * rb * (kc * La + 2 * R + C - 2)
    start_last = nt * (pp - 1) * _os_period(sigma, kc, g) + (nt - 1) * _os_period(s_r, kc, g)
    return start_last + kc * La + s_r * (R + 1) + R + C - 3


def os_windows(m: int, n: int, k: int, nm: NM, interleave: bool, g: Geometry):
    """(feed windows, drain windows) of an OS block as [start, end) step arrays."""
    R, C, La = g.rows, g.cols, g.acc_latency
    kc, sigma, _, pp, s_r, nt = _os_terms(m, n, k, nm, interleave, g)
    s = np.full(nt * pp, sigma, dtype=np.int64)
    s[pp - 1::pp] = s_r
    if interleave:
        period = np.maximum(kc * La, s * (R + 1) + R + C - 3)
    else:
        period = np.full(s.shape, kc * La + 2 * R + C - 2, dtype=np.int64)
    start = np.concatenate([[0], np.cumsum(period)[:-1]])
    feed = np.stack([start, start + (kc - 1) * La + s + max(R, C) - 1], 1)
    d0 = start + kc * La + s + R + C - 3
    drain = np.stack([d0, d0 + s * R], 1)
    return feed, drain


# --------------------------------------------------------------------------- WS


def _ws_terms(m: int, n: int, k: int, nm: NM, g: Geometry):
    kc = chunks(k, nm, g)
    return kc, ceil_div(kc, g.rows) * ceil_div(n, g.cols)


def _ws_period(m: int, g: Geometry) -> int:
    """Interleaved WS: activation-stream start of tile t+1 minus that of tile t:
    the rows stream (m), the shadow-weight reload ((R-1) La + C - 1 after the last
    swap, then R), and the K-tile partial-sum dependency (R La + 1)."""
    R, C, La = g.rows, g.cols, g.acc_latency
    return max(m, (R - 1) * La + R + C - 1, R * La + 1)


def ws_cycles(m: int, n: int, k: int, nm: NM, interleave: bool, g: Geometry) -> int:
    """Cycles of a WS block without stalls."""
    R, C, La = g.rows, g.cols, g.acc_latency
    _, tiles = _ws_terms(m, n, k, nm, g)
    tile = R + m + R * La + C - 1
    if interleave and g.shadow:
        kt = ceil_div(chunks(k, nm, g), R)
        nt = ceil_div(n, C)
        p = max(m, g.segment)
        last = g.segment + (kt - 1) * max(nt * p, R * La + 1) + (nt - 1) * p
        return last + m + R * La + C - 1
    if not interleave:
        return tiles * tile
    return (tiles - 1) * _ws_period(m, g) + tile


def ws_windows(m: int, n: int, k: int, nm: NM, interleave: bool, g: Geometry):
    """(input windows, output windows) of a WS block: weight loads and activation
    streams need input; partial sums leaving the bottom edge need the output port."""
    R, C, La = g.rows, g.cols, g.acc_latency
    _, tiles = _ws_terms(m, n, k, nm, g)
    if interleave and g.shadow:
        return ws_stream_windows(WSStream.dense(m, tiles), interleave, g, ceil_div(n, C))
    t = np.arange(tiles, dtype=np.int64)
    if interleave:
        a = R + t * _ws_period(m, g)
        load = np.where(t == 0, 0, a - _ws_period(m, g) + (R - 1) * La + C - 1)
    else:
        a = R + t * (R + m + R * La + C - 1)
        load = a - R
    feed = np.concatenate([np.stack([load, load + R], 1),
                           np.stack([a, a + m + (R - 1) * La], 1)])
    out = np.stack([a + R * La, a + m + R * La + C - 1], 1)
    return feed, out


# ------------------------------------------------------------- WS with act_zero = skip


@dataclass(frozen=True)
class WSStream:
    """Per-tile stream of a WS block under ``act_zero = skip`` (tiles column tile outer,
    K-tile inner). ``lengths[t]`` = rows tile t streams (``m_t``); ``lags[t]`` = how many
    stream steps earlier than in tile t - 1 some row that both stream enters tile t (0 for
    the first K-tile of a column tile): that row's partial sum must be in the output
    buffer before tile t reads it back, so tile t starts at least ``R La + 1 + lag`` after
    tile t - 1. Without dropped rows every length is m and every lag 0."""

    lengths: tuple[int, ...]
    lags: tuple[int, ...]

    def __post_init__(self) -> None:
        if len(self.lengths) != len(self.lags) or not self.lengths:
            raise ValueError("a WS stream needs one length and one lag per tile")
        if min(self.lengths) < 1 or min(self.lags) < 0:
            raise ValueError("WS stream lengths must be at least 1 and lags at least 0")

    @classmethod
    def dense(cls, m: int, tiles: int) -> WSStream:
        return cls((m,) * tiles, (0,) * tiles)


def ws_row_lag(prev: np.ndarray, cur: np.ndarray) -> int:
    """max over rows in both increasing lists of (position in ``prev`` - position in
    ``cur``), at least 0."""
    both, ip, ic = np.intersect1d(prev, cur, assume_unique=True, return_indices=True)
    return int(max(0, (ip - ic).max())) if both.size else 0


def ws_skip_stream(a: np.ndarray, n: int, nm: NM | str, g: Geometry) -> WSStream:
    """The :class:`WSStream` of a WS block ``a[m, k] x [k, n]`` whose feeder drops the
    rows :func:`nmsat.reference.skip_row_lists` drops (the one function the simulator,
    the RTL testbench and the tests use)."""
    from nmsat.reference import skip_row_lists

    lists = skip_row_lists(a, g.lanes, g.window, nm, g.rows)
    lens = [len(x) for x in lists]
    lags = [0] + [ws_row_lag(p, c) for p, c in itertools.pairwise(lists)]
    nt = ceil_div(n, g.cols)
    return WSStream(tuple(lens) * nt, tuple(lags) * nt)


def _ws_shadow_starts(s: WSStream, g: Geometry, nt: int):
    """Shadow weights (``g.shadow``, interleave): tiles run K-tile outer, column tile
    inner (sequence u = kt nt + ct; ``s`` is indexed ct kt_count + kt). Returns (A_u, the
    stream starts, and A_{u-1} with A_{-1} = 0, from which tile u's weights load) in
    sequence order, and the sequence's lengths:

    ``A_0 = Cs``; ``A_u = max(A_{u-1} + max(L_{u-1}, Cs), A_{u-nt} + R La + 1 + lag_u)``
    (the second term for kt >= 1), Cs = ``g.segment``. Solved round by round (one round
    per K-tile) with running maxima: O(K-tiles) array operations."""
    R, La, cs = g.rows, g.acc_latency, g.segment
    T = len(s.lengths)
    if T % nt:
        raise ValueError(f"a WS stream of {T} tiles is not {nt} column tiles of K-tiles")
    kt_n = T // nt
    perm = (np.arange(nt)[None, :] * kt_n + np.arange(kt_n)[:, None]).ravel()
    L = np.asarray(s.lengths, np.int64)[perm]
    lag = np.asarray(s.lags, np.int64)[perm]
    p = np.maximum(L, cs)
    P = np.concatenate([[0], np.cumsum(p)])  # P_u = sum of p_v for v < u
    a = np.zeros(T, np.int64)
    a[:nt] = cs + P[:nt]
    for r in range(1, kt_n):
        u = np.arange(r * nt, (r + 1) * nt)
        dep = a[u - nt] + R * La + 1 + lag[u]
        chain = a[u[0] - 1] + p[u[0] - 1] - P[u[0]]
        a[u] = np.maximum(chain, np.maximum.accumulate(dep - P[u])) + P[u]
    prev = np.concatenate([[0], a[:-1]])
    return a, prev, L


def _ws_stream_starts(s: WSStream, interleave: bool, g: Geometry):
    """(activation-stream starts A_t, weight-load starts) of the tiles of ``s``."""
    R, C, La = g.rows, g.cols, g.acc_latency
    L = np.asarray(s.lengths, np.int64)
    if not interleave:
        a = R + np.concatenate([[0], np.cumsum(R + L + R * La + C - 1)[:-1]])
        return a, a - R
    delta = np.maximum(np.maximum(L[:-1], (R - 1) * La + R + C - 1),
                       R * La + 1 + np.asarray(s.lags[1:], np.int64))
    a = R + np.concatenate([[0], np.cumsum(delta)])
    load = np.concatenate([[0], a[:-1] + (R - 1) * La + C - 1])
    return a, load


def ws_stream_cycles(s: WSStream, interleave: bool, g: Geometry, nt: int = 1) -> int:
    """Cycles of a WS block with per-tile stream lengths, without stalls: the last tile
    ends at ``A_last + L_last + R La + C - 1`` (no interleave: the sum of the tiles'
    ``R + L_t + R La + C - 1``). ``nt``: the block's column tiles (the tile order of
    shadow weights depends on it)."""
    if interleave and g.shadow:
        a, _, L = _ws_shadow_starts(s, g, nt)
        return int(a[-1] + L[-1]) + g.rows * g.acc_latency + g.cols - 1
    a, _ = _ws_stream_starts(s, interleave, g)
    return int(a[-1]) + s.lengths[-1] + g.rows * g.acc_latency + g.cols - 1


def ws_stream_windows(s: WSStream, interleave: bool, g: Geometry, nt: int = 1):
    """:func:`ws_windows` with per-tile stream lengths. With shadow weights tile u's
    weights enter PE row i during [A_{u-1} + i La, A_{u-1} + i La + C) (every load chain
    of the row, back to back)."""
    R, C, La = g.rows, g.cols, g.acc_latency
    if interleave and g.shadow:
        a, prev, L = _ws_shadow_starts(s, g, nt)
        ld = (prev[:, None] + np.arange(R)[None, :] * La).ravel()
        feed = np.concatenate([np.stack([ld, ld + C], 1),
                               np.stack([a, a + L + (R - 1) * La], 1)])
        out = np.stack([a + R * La, a + L + R * La + C - 1], 1)
        return feed, out
    a, load = _ws_stream_starts(s, interleave, g)
    L = np.asarray(s.lengths, np.int64)
    feed = np.concatenate([np.stack([load, load + R], 1),
                           np.stack([a, a + L + (R - 1) * La], 1)])
    out = np.stack([a + R * La, a + L + R * La + C - 1], 1)
    return feed, out


# --------------------------------------------------------------------------- stalls


def _union(w: np.ndarray) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for s, e in sorted(map(tuple, w.tolist())):
        if e <= s:
            continue
        if out and s <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return out


def map_stalls(total_steps: int, feed: np.ndarray, drain: np.ndarray,
               in_valid: np.ndarray | None, out_ready: np.ndarray | None) -> int:
    """Cycles to execute ``total_steps`` steps when a step inside a feed window needs
    ``in_valid[cycle]`` and one inside a drain window needs ``out_ready[cycle]`` (the whole
    array freezes otherwise). Masks are True past their end. Segment-wise, using prefix
    sums: O(windows + log(mask length)) per segment, independent of the step count."""
    iv = np.ones(0, bool) if in_valid is None else np.asarray(in_valid, bool)
    orr = np.ones(0, bool) if out_ready is None else np.asarray(out_ready, bool)
    n = max(len(iv), len(orr))
    iv = np.concatenate([iv, np.ones(n - len(iv), bool)])
    orr = np.concatenate([orr, np.ones(n - len(orr), bool)])
    ok = {0: np.ones(n, bool), 1: iv, 2: orr, 3: iv & orr}
    cum = {c: np.concatenate([[0], np.cumsum(v)]) for c, v in ok.items()}
    # Boundaries where the (needs_in, needs_out) class can change.
    fu, du = _union(feed), _union(drain)
    pts = {0, total_steps}
    for s, e in fu + du:
        pts.update((min(s, total_steps), min(e, total_steps)))
    bounds = sorted(pts)
    fs = np.array([w[0] for w in fu] or [0]), np.array([w[1] for w in fu] or [0])
    ds = np.array([w[0] for w in du] or [0]), np.array([w[1] for w in du] or [0])

    def inside(x: int, w: tuple[np.ndarray, np.ndarray], present: bool) -> bool:
        if not present:
            return False
        i = np.searchsorted(w[0], x, side="right") - 1
        return bool(i >= 0 and x < w[1][i])

    cycle = 0
    for lo, hi in itertools.pairwise(bounds):
        if hi <= lo:
            continue
        cls = int(inside(lo, fs, bool(fu))) + 2 * int(inside(lo, ds, bool(du)))
        need = hi - lo
        c = cum[cls]
        if cycle < n:
            avail = int(c[n] - c[cycle])
            if avail >= need:
                # the cycle index of the need-th ok cycle at or after `cycle`
                idx = int(np.searchsorted(c, c[cycle] + need, side="left"))
                cycle = idx
                continue
            need -= avail
            cycle = n
        cycle += need
    return cycle


# --------------------------------------------------------------------------- API


def block_cycles(dataflow: Dataflow, m: int, n: int, k: int, nm: NM, interleave: bool,
                 cfg: AcceleratorConfig | Geometry, in_valid: np.ndarray | None = None,
                 out_ready: np.ndarray | None = None, stream: WSStream | None = None) -> int:
    """Cycles of one compute block ``[m, k] x [k, n]``, optionally under stall masks.
    ``stream``: a WS block's per-tile stream lengths under ``act_zero = skip``
    (:func:`ws_skip_stream`); OS blocks never skip and must not pass one."""
    g = cfg if isinstance(cfg, Geometry) else Geometry.of(cfg)
    nm = NM.parse(nm)
    if stream is not None:
        if dataflow is not Dataflow.WS:
            raise ValueError("only WS blocks stream per-tile row lists (OS cannot skip)")
        tiles = _ws_terms(m, n, k, nm, g)[1]
        if len(stream.lengths) != tiles or max(stream.lengths) > m:
            raise ValueError(f"the WS stream has {len(stream.lengths)} tiles of at most "
                             f"{max(stream.lengths)} rows; the block has {tiles} of {m}")
        steps = ws_stream_cycles(stream, interleave, g, ceil_div(n, g.cols))
    elif dataflow is Dataflow.OS:
        steps = os_cycles(m, n, k, nm, interleave, g)
    else:
        steps = ws_cycles(m, n, k, nm, interleave, g)
    if in_valid is None and out_ready is None:
        return steps
    if stream is not None:
        feed, drain = ws_stream_windows(stream, interleave, g, ceil_div(n, g.cols))
    else:
        win = os_windows if dataflow is Dataflow.OS else ws_windows
        feed, drain = win(m, n, k, nm, interleave, g)
    return map_stalls(steps, feed, drain, in_valid, out_ready)


def compute_cycles(instr: Compute, cfg: AcceleratorConfig) -> int:
    """Engine busy cycles of one execution of a COMPUTE instruction (no stalls)."""
    return block_cycles(instr.dataflow, instr.m, instr.n, instr.k, instr.nm,
                        instr.interleave, cfg)


def sore_cycles(instr: Sore, cfg: AcceleratorConfig) -> int:
    """``ceil(groups / lanes) * M * cycles_per_weight + pipeline_latency``
    (``docs/architecture.md`` section 5)."""
    s = cfg.sore
    return ceil_div(instr.groups, s.lanes) * instr.nm.m * s.cycles_per_weight + s.pipeline_latency


def weight_update_cycles(instr: WeightUpdate, cfg: AcceleratorConfig) -> int:
    """``ceil(weights / lanes) + pipeline_latency`` (section 6; DRAM time is the system
    model's)."""
    w = cfg.weight_update
    return ceil_div(instr.weights, w.lanes) + w.pipeline_latency
