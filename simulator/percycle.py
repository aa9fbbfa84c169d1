"""Per-cycle model of the PE array and its feeders, computing values (small tiles only).

This is the slow, obviously-correct model of ``docs/architecture.md`` section 4: every
step, activation chunks move one PE right and weight chunks one PE down (OS), or
activations move right and partial sums move down through La-deep adder pipelines (WS).
Each PE selects its activations with its index muxes, forms the lane products, sums them
with the pairwise adder tree and accumulates, exactly as :mod:`nmsat.reference` specifies.
The controller follows the schedule rules of section 4.1, and the model checks every
physical hazard on the way (a dependent accumulation before its predecessor finished, a
shadow register overwritten before it was drained, operands of different chunks meeting,
a partial sum read before it was written), so an over-eager schedule raises
:class:`ScheduleHazard` instead of silently giving a number.

Stalls: a step that needs input (inside a feed window) runs only in a cycle whose
``in_valid`` is set; a step that writes results runs only in a cycle whose ``out_ready`` is
set; otherwise the whole array freezes for that cycle (global clock enable).

:func:`simulate` returns the output values (equal to :func:`nmsat.reference.engine_gemm`
bit for bit, tested), the cycle count (equal to :mod:`nmsat.dataflow.timing`, tested)
and per-cycle activity.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nmsat.arith import ceil_div
from nmsat.config import AcceleratorConfig
from nmsat.reference import _tree_sum_fp32, gemm_chunks, lane_map, skip_row_lists
from nmsat.types import NM, ActZero, Dataflow, DType

__all__ = ["PerCycleResult", "ScheduleHazard", "simulate"]


class ScheduleHazard(RuntimeError):
    """The schedule violated a data or structural dependency of the array."""


@dataclass(frozen=True)
class PerCycleResult:
    """Values, cycle count and per-cycle activity of one block.

    ``busy_pes[t]`` = PEs issuing an accumulation in cycle t; ``busy_lanes[t]`` = multiplier
    lanes with a real (non-idle) product; ``stalled[t]`` = the array was frozen.
    """

    out: np.ndarray
    cycles: int
    busy_pes: np.ndarray
    busy_lanes: np.ndarray
    stalled: np.ndarray


class _Operands:
    """Chunked operands: activation windows per (row, chunk) and weight slots per
    (column, chunk), laid out by :func:`nmsat.reference.lane_map`."""

    def __init__(self, a: np.ndarray, b, dtype: DType, lanes: int, window: int, nm: NM):
        self.dtype = dtype
        lm = lane_map(b, lanes, window, nm)
        self.kc = lm.k.shape[1]
        k_total = a.shape[1]
        step = nm.k_per_chunk(lanes, window)
        base = np.arange(self.kc) * step
        # Weight slot index into the chunk's activation window (-1 = idle lane).
        rel = np.where(lm.k >= 0, lm.k - base[None, :, None], -1)
        if (rel >= window).any():
            raise ValueError("a lane index falls outside the activation window")
        self.w_idx = rel  # [n, kc, P]
        num = np.float64 if dtype.is_float else np.int64
        self.w_val = lm.w.astype(num)
        apad = np.zeros((a.shape[0], self.kc * step + window), dtype=num)
        apad[:, :k_total] = a.astype(num)
        idx = base[:, None] + np.arange(window)[None, :]  # [kc, window]
        self.a_win = apad[:, idx]  # [m, kc, window]
        self.num = num


def _pe_products(act: np.ndarray, w_val: np.ndarray, w_idx: np.ndarray, ops: _Operands):
    """Lane products and the adder-tree sum for a set of PEs.

    act [X, window], w_val/w_idx [X, P] -> (tree sums [X], real-lane counts [X])."""
    idle = w_idx < 0
    sel = np.take_along_axis(act, np.where(idle, 0, w_idx), axis=1)
    if ops.dtype.is_float:
        prod = (sel * w_val).astype(np.float32)  # exact product rounded once to fp32
        prod[idle] = np.float32(0.0)  # idle lanes give exactly +0
        return _tree_sum_fp32(prod), (~idle).sum(1)
    prod = np.where(idle, 0, sel * w_val)
    return prod.sum(1), (~idle).sum(1)


def _acc_add(acc, tree, dtype: DType):
    if dtype.is_float:
        return (np.float32(acc) + np.float32(tree)).astype(np.float32)
    return np.int64((int(acc) + int(tree) + 2**31) % 2**32 - 2**31)


def _step_to_cycle(needs: list[tuple[bool, bool]], in_valid, out_ready):
    """Run the steps cycle by cycle under the masks: returns (cycle of each step, total,
    stalled flags)."""
    iv = np.asarray(in_valid, bool) if in_valid is not None else np.ones(0, bool)
    orr = np.asarray(out_ready, bool) if out_ready is not None else np.ones(0, bool)
    cyc, stalled = [], []
    t = 0
    for ni, no in needs:
        while True:
            ok_in = not ni or t >= len(iv) or iv[t]
            ok_out = not no or t >= len(orr) or orr[t]
            if ok_in and ok_out:
                break
            stalled.append(True)
            t += 1
        cyc.append(t)
        stalled.append(False)
        t += 1
    return cyc, t, np.array(stalled, bool)


def simulate(a: np.ndarray, b, *, cfg: AcceleratorConfig, dataflow: Dataflow | str,
             nm: NM | str = "1:1", interleave: bool = True, dtype: DType | str | None = None,
             acc: np.ndarray | None = None, in_valid=None, out_ready=None,
             _hooks: dict | None = None) -> PerCycleResult:
    """Run ``acc + A[m, k] @ B[k, n]`` on the array, step by step.

    ``a``, ``b`` hold values representable in ``dtype`` (default: the config's operand
    type); ``b`` may be a :class:`nmsat.reference.Compressed` along K. ``acc`` is the OUT
    half's contents (default +0). ``in_valid`` / ``out_ready`` are per-cycle masks (True
    past their end). With ``cfg.array.act_zero = skip`` a WS block streams, per K-tile,
    only the rows :func:`nmsat.reference.skip_row_lists` keeps.
    """
    dataflow = Dataflow.parse(dataflow)
    nm = NM.parse(nm)
    dtype = DType.parse(dtype or cfg.numerics.dtype)
    arr = cfg.array
    a = np.asarray(a)
    ops = _Operands(a, b, dtype, arr.macs_per_pe, arr.act_window, nm)
    if ops.kc != gemm_chunks(a.shape[1], arr.macs_per_pe, arr.act_window, nm):
        raise AssertionError("chunk count disagrees with reference.gemm_chunks")
    m, n = a.shape[0], ops.w_val.shape[0]
    out_dtype = np.float32 if dtype.is_float else np.int32
    out = np.zeros((m, n), out_dtype) if acc is None else np.array(acc, dtype=out_dtype)
    out = out.astype(np.float32 if dtype.is_float else np.int64)
    sim: _OS | _WS
    if dataflow is Dataflow.OS:
        sim = _OS(ops, out, arr.rows, arr.cols, arr.acc_latency, interleave)
    else:
        lists = None
        if ActZero.parse(arr.act_zero) is ActZero.SKIP:
            lists = skip_row_lists(a, arr.macs_per_pe, arr.act_window, nm, arr.rows)
        if interleave and arr.shadow_weights:
            from .percycle_shadow import WSShadow

            sim = WSShadow(ops, out, arr.rows, arr.cols, arr.acc_latency, lists,
                            arr.weight_load_ports)
        else:
            sim = _WS(ops, out, arr.rows, arr.cols, arr.acc_latency, interleave, lists)
    for name, v in (_hooks or {}).items():
        setattr(sim, name, v)
    needs, busy, lanes = sim.run()
    cyc, total, stalled = _step_to_cycle(needs, in_valid, out_ready)
    busy_c = np.zeros(total, np.int64)
    lanes_c = np.zeros(total, np.int64)
    busy_c[cyc] = busy
    lanes_c[cyc] = lanes
    res = sim.out.astype(np.float32) if dtype.is_float else sim.out.astype(np.int32)
    return PerCycleResult(res, total, busy_c, lanes_c, stalled)


# --------------------------------------------------------------------------- OS


class _OS:
    """Output stationary: PE(i, j) accumulates output (row of slot b, column j) in slot b."""

    def __init__(self, ops: _Operands, out: np.ndarray, R: int, C: int, La: int,
                 interleave: bool):
        self.ops, self.out, self.R, self.C, self.La = ops, out, R, C, La
        self.interleave = interleave
        # Feeder issue interval of dependent chunks; the schedule uses La. Tests lower it to
        # show that the accumulator hazard check fires.
        self.ii = La
        m, n = out.shape
        self.sigma = La if interleave else 1
        rb = ceil_div(m, R)
        pp = ceil_div(rb, self.sigma)
        nt = ceil_div(n, C)
        # Passes: (first output row, slots, first output column), column tiles outer.
        self.passes = []
        for t in range(nt):
            for p in range(pp):
                s = min(self.sigma, rb - p * self.sigma)
                self.passes.append((p * self.sigma * R, s, t * C))

    def run(self):
        """Step until every pass has drained: returns per step (needs input, needs output),
        busy PEs and busy lanes."""
        self._reset()
        needs, busy_l, lanes_l = [], [], []
        step = 0
        while self.done_passes < len(self.passes):
            self._control(step)
            self._to_shadow(step)
            need_out = self._drain(step)
            need_in = self._shift_and_feed(step)
            nb, nl = self._accumulate(step)
            needs.append((need_in, need_out))
            busy_l.append(nb)
            lanes_l.append(nl)
            step += 1
            if step > 10_000_000:  # pragma: no cover - a livelock is a model bug
                raise ScheduleHazard("OS schedule does not terminate")
        return needs, busy_l, lanes_l

    def _reset(self) -> None:
        """Empty array state, before the first step."""
        ops, R, C = self.ops, self.R, self.C
        W, P = ops.a_win.shape[2], ops.w_idx.shape[2]
        num = ops.num
        self.a_val = np.zeros((R, C, W), num)
        self.a_tag = np.full((R, C, 3), -1, np.int64)  # (pass, slot, chunk); -1 = empty
        self.w_val = np.zeros((R, C, P), num)
        self.w_idx = np.full((R, C, P), -1, np.int64)
        self.w_tag = np.full((R, C, 3), -1, np.int64)
        self.acc_val = np.zeros((R, C, self.sigma),
                                np.float32 if ops.dtype.is_float else np.int64)
        self.acc_ready = np.zeros((R, C, self.sigma), np.int64)  # step the last add completes
        self.acc_next = np.zeros((R, C, self.sigma), np.int64)  # next chunk expected
        self.acc_pass = np.full((R, C, self.sigma), -1, np.int64)
        self.sh_val = np.zeros_like(self.acc_val)
        self.sh_pass = np.full((R, C, self.sigma), -1, np.int64)  # -1 = empty
        self.starts: list[int] = []
        self.drains: list[int] = []  # drain start step per pass
        self.ends: dict[int, int] = {}
        self.q_next = 0  # next pass to start
        self.done_passes = 0

    def _control(self, step: int) -> None:
        """Controller: start the next pass when the schedule rule allows it."""
        kc, R, C, La = self.ops.kc, self.R, self.C, self.La
        q_next, starts, ends = self.q_next, self.starts, self.ends
        if q_next < len(self.passes):
            if q_next == 0:
                can = True
            elif not self.interleave:
                can = (q_next - 1) in ends and step >= ends[q_next - 1]
            else:
                # Accumulators free again (kc La after the previous start) and the
                # previous pass drained before this pass's results reach the shadow.
                prev = q_next - 1
                can = step >= starts[prev] + kc * La and step >= ends[prev] - kc * La
            if can:
                starts.append(step)
                s = self.passes[q_next][1]
                self.drains.append(step + kc * La + s + R + C - 3)
                ends[q_next] = self.drains[-1] + s * R
                self.q_next = q_next + 1

    def _to_shadow(self, step: int) -> None:
        """(a) accumulators whose final add completes now move to the shadow registers."""
        acc_pass, sh_pass = self.acc_pass, self.sh_pass
        fin = (acc_pass >= 0) & (self.acc_next == self.ops.kc) & (self.acc_ready == step)
        if fin.any():
            if (sh_pass[fin] >= 0).any():
                raise ScheduleHazard(f"step {step}: shadow register overwritten "
                                     f"before it was drained")
            self.sh_val[fin] = self.acc_val[fin]
            sh_pass[fin] = acc_pass[fin]
            acc_pass[fin] = -1

    def _drain(self, step: int) -> bool:
        """(b) drain: one row of C results per step, bottom row first. True if a pass is
        draining (the step writes results)."""
        R, C = self.R, self.C
        m, n = self.out.shape
        sh_pass = self.sh_pass
        need_out = False
        for q, d in enumerate(self.drains):
            s = self.passes[q][1]
            if d <= step < d + s * R:
                need_out = True
                x = step - d
                b, i = x // R, R - 1 - x % R
                if (sh_pass[i, :, b] != q).any():
                    raise ScheduleHazard(f"step {step}: drain of pass {q} found "
                                         f"PE row {i} slot {b} not ready")
                r0, _, c0 = self.passes[q]
                row = r0 + b * R + i
                cols = np.arange(c0, min(c0 + C, n))
                if row < m:
                    self.out[row, cols] = self.sh_val[i, : len(cols), b]
                sh_pass[i, :, b] = -1
                if x == s * R - 1:
                    self.done_passes += 1
        return need_out

    def _shift_and_feed(self, step: int) -> bool:
        """(c) shift operands one PE and inject at the edges. True if a pass is inside its
        feed window (the step needs input)."""
        ops, R, C, La = self.ops, self.R, self.C, self.La
        kc = ops.kc
        m, n = self.out.shape
        a_val, a_tag = self.a_val, self.a_tag
        w_val, w_idx, w_tag = self.w_val, self.w_idx, self.w_tag
        a_val[:, 1:], a_tag[:, 1:] = a_val[:, :-1].copy(), a_tag[:, :-1].copy()
        w_val[1:], w_idx[1:], w_tag[1:] = w_val[:-1].copy(), w_idx[:-1].copy(), \
            w_tag[:-1].copy()
        a_tag[:, 0] = -1
        w_tag[0] = -1
        need_in = False
        for q, st in enumerate(self.starts):
            r0, s, c0 = self.passes[q]
            if st <= step < st + (kc - 1) * La + s + max(R, C) - 1:
                need_in = True
            for i in range(R):  # activation of array row i
                c, b = divmod(step - st - i, self.ii)
                if step - st - i >= 0 and c < kc and b < s:
                    row = r0 + b * R + i
                    a_val[i, 0] = ops.a_win[row, c] if row < m else 0
                    a_tag[i, 0] = (q, b, c)
            for j in range(C):  # weight of array column j (re-sent for each slot)
                c, b = divmod(step - st - j, self.ii)
                if step - st - j >= 0 and c < kc and b < s:
                    col = c0 + j
                    if col < n:
                        w_val[0, j], w_idx[0, j] = ops.w_val[col, c], ops.w_idx[col, c]
                    else:
                        w_val[0, j], w_idx[0, j] = 0, -1
                    w_tag[0, j] = (q, b, c)
        return need_in

    def _accumulate(self, step: int) -> tuple[int, int]:
        """(d) PEs with both operands accumulate. Returns (busy PEs, busy lanes)."""
        ops, R, La = self.ops, self.R, self.La
        m, n = self.out.shape
        a_tag, w_tag = self.a_tag, self.w_tag
        acc_val, acc_pass, acc_next = self.acc_val, self.acc_pass, self.acc_next
        acc_ready = self.acc_ready
        av = a_tag[..., 0] >= 0
        wv = w_tag[..., 0] >= 0
        if (av != wv).any() or (a_tag[av] != w_tag[av]).any():
            raise ScheduleHazard(f"step {step}: activation and weight chunks mismatch")
        if not av.any():
            return 0, 0
        ii, jj = np.nonzero(av)
        tree, real = _pe_products(self.a_val[ii, jj], self.w_val[ii, jj], self.w_idx[ii, jj],
                                  ops)
        for x in range(len(ii)):
            i, j = ii[x], jj[x]
            q, b, c = a_tag[i, j]
            if c == 0:
                if acc_pass[i, j, b] >= 0:
                    raise ScheduleHazard(f"step {step}: PE({i},{j}) slot {b} still "
                                         f"holds pass {acc_pass[i, j, b]}")
                r0, _, c0 = self.passes[q]
                row, col = r0 + b * R + i, c0 + j
                init = self.out[row, col] if row < m and col < n else 0
                acc_val[i, j, b] = init
                acc_pass[i, j, b] = q
                acc_next[i, j, b] = 0
            elif acc_pass[i, j, b] != q or acc_next[i, j, b] != c:
                raise ScheduleHazard(f"step {step}: PE({i},{j}) got chunk {c} out "
                                     f"of order")
            elif step < acc_ready[i, j, b]:
                raise ScheduleHazard(f"step {step}: PE({i},{j}) slot {b} "
                                     f"accumulates before its previous add "
                                     f"completed (step {acc_ready[i, j, b]})")
            acc_val[i, j, b] = _acc_add(acc_val[i, j, b], tree[x], ops.dtype)
            acc_ready[i, j, b] = step + La
            acc_next[i, j, b] = c + 1
        return len(ii), int(real.sum())


# --------------------------------------------------------------------------- WS


class _WS:
    """Weight stationary: PE(i, j) holds chunk kt*R + i of column j; rows stream in.
    ``lists[kt]``: the rows K-tile kt streams, in order (default: every row)."""

    LOADED = 1  # ws_state of a shadow register holding a whole tile's chunk, unswapped

    def __init__(self, ops: _Operands, out: np.ndarray, R: int, C: int, La: int,
                 interleave: bool, lists: list[np.ndarray] | None = None):
        self.ops, self.out, self.R, self.C, self.La = ops, out, R, C, La
        self.interleave = interleave
        # Cycles taken off the interleaved tile-to-tile rules; tests set 1 to show the
        # hazard checks fire when a rule is broken.
        self.slack = 0
        # The partial-sum lag of dropped rows (act_zero = skip); tests switch it off to
        # show the hazard check fires.
        self.lag_rule = True
        m, n = out.shape
        kt = ceil_div(ops.kc, R)
        nt = ceil_div(n, C)
        self.tiles = [(t, k) for t in range(nt) for k in range(kt)]  # (col tile, K-tile)
        if lists is None:
            lists = [np.arange(m)] * kt
        self.rows = [[int(r) for r in lists[k]] for _, k in self.tiles]  # per tile

    def run(self):
        """Step until every tile's last partial sum is written: returns per step (needs
        input, needs output), busy PEs and busy lanes."""
        self._reset()
        needs, busy_l, lanes_l = [], [], []
        step = 0
        while self.finished < len(self.tiles):
            self._control(step)
            needs.append(self._needs(step))
            self._write_out(step)
            arriving = self._advance_psums()
            self._shift_and_feed(step)
            nb, nl = self._compute(step, *arriving)
            self._load_shadow(step)
            busy_l.append(nb)
            lanes_l.append(nl)
            step += 1
            if step > 10_000_000:  # pragma: no cover
                raise ScheduleHazard("WS schedule does not terminate")
        return needs, busy_l, lanes_l

    def _reset(self) -> None:
        """Empty array state, before the first step."""
        ops, R, C, La = self.ops, self.R, self.C, self.La
        W, P = ops.a_win.shape[2], ops.w_idx.shape[2]
        m, n = self.out.shape
        num = ops.num
        # Weights: active and shadow registers, (tile) tags; -1 = empty.
        self.wa_val = np.zeros((R, C, P), num)
        self.wa_idx = np.full((R, C, P), -1, np.int64)
        self.wa_tag = np.full((R, C), -1, np.int64)
        self.ws_val = np.zeros((R, C, P), num)
        self.ws_idx = np.full((R, C, P), -1, np.int64)
        self.ws_tag = np.full((R, C), -1, np.int64)
        self.ws_state = np.zeros((R, C), np.int64)  # 0 free, 1 loading/loaded
        self.a_val = np.zeros((R, C, W), num)
        self.a_tag = np.full((R, C, 2), -1, np.int64)  # (tile, row)
        self.accdt = np.float32 if ops.dtype.is_float else np.int64
        self.ps_val = np.zeros((R, C, La), self.accdt)  # psum delay lines, index 0 newest
        self.ps_tag = np.full((R, C, La, 2), -1, np.int64)
        self.written = np.full((m, n), -1, np.int64)  # step each OUT element was last written
        self.wtile = np.full((m, n), -1, np.int64)  # tile that last wrote it
        self.L = [len(x) for x in self.rows]
        self.loads: list[int] = []
        self.starts: list[int] = []
        self.finished = 0
        self.last_out: dict[int, int] = {}

    def _control(self, step: int) -> None:
        """Controller: activation-stream starts, then weight loads (a tile's shadow load
        may begin in the step the previous tile starts: the swap reads the shadow before
        the load's first shift overwrites it)."""
        R, C, La = self.R, self.C, self.La
        rows, L, T = self.rows, self.L, len(self.tiles)
        starts, loads = self.starts, self.loads
        t_start = len(starts)
        if t_start < T and t_start < len(loads):
            ok = step >= loads[t_start] + R
            if t_start > 0 and self.interleave:
                # Rows entered, and each row's partial sum from the previous K-tile
                # written before this tile reads it (a row may stream earlier here
                # than there when rows were dropped).
                dep = R * La + 1
                if self.tiles[t_start][1] > 0 and self.lag_rule:
                    prev = {r: j for j, r in enumerate(rows[t_start - 1])}
                    dep += max([0] + [prev[r] - j for j, r in enumerate(rows[t_start])
                                      if r in prev])
                ok = ok and step >= starts[-1] + L[t_start - 1] and (
                    step >= starts[-1] + dep - self.slack)
            if ok:
                starts.append(step)
                self.last_out[t_start] = step + L[t_start] + R * La + C - 1
        t_load = len(loads)
        if t_load < T:
            if t_load == 0:
                can = True
            elif not self.interleave:
                can = (t_load - 1) in self.last_out and step >= self.last_out[t_load - 1]
            else:
                can = len(starts) == t_load and (
                    step >= starts[-1] + (R - 1) * La + C - 1 - self.slack)
            if can:
                loads.append(step)

    def _needs(self, step: int) -> tuple[bool, bool]:
        """(needs input, needs output) of this step: a weight load or an activation
        stream is running; partial sums are leaving the bottom edge."""
        R, C, La, L = self.R, self.C, self.La, self.L
        need_in = any(ld <= step < ld + R for ld in self.loads) or any(
            st <= step < st + L[t] + (R - 1) * La for t, st in enumerate(self.starts))
        need_out = any(st + R * La <= step < st + L[t] + R * La + C - 1
                       for t, st in enumerate(self.starts))
        return need_in, need_out

    def _write_out(self, step: int) -> None:
        """(a) partial sums leaving the bottom edge are written to OUT."""
        R, C, La = self.R, self.C, self.La
        n = self.out.shape[1]
        bot_v = self.ps_val[R - 1, :, La - 1].copy()
        bot_t = self.ps_tag[R - 1, :, La - 1].copy()
        for j in range(C):
            t, x = bot_t[j]  # (tile, stream position)
            if t >= 0:
                r = self.rows[t][x]
                col = self.tiles[t][0] * C + j
                if col < n:
                    self.out[r, col] = bot_v[j]
                    self.written[r, col] = step
                    self.wtile[r, col] = t
                if x == self.L[t] - 1 and j == C - 1:
                    self.finished += 1

    def _advance_psums(self) -> tuple[np.ndarray, np.ndarray]:
        """Shift the partial-sum delay lines; returns the (values, tags) arriving at PE
        row i (from row i-1) this step."""
        ps_val, ps_tag, La = self.ps_val, self.ps_tag, self.La
        arriving_v = ps_val[:, :, La - 1].copy()
        arriving_t = ps_tag[:, :, La - 1].copy()
        ps_val[:, :, 1:] = ps_val[:, :, :-1].copy()
        ps_tag[:, :, 1:] = ps_tag[:, :, :-1].copy()
        ps_tag[:, :, 0] = -1
        return arriving_v, arriving_t

    def _shift_and_feed(self, step: int) -> None:
        """(c) activations shift right; inject row r of tile t at array row i."""
        ops, R, La = self.ops, self.R, self.La
        a_val, a_tag = self.a_val, self.a_tag
        a_val[:, 1:], a_tag[:, 1:] = a_val[:, :-1].copy(), a_tag[:, :-1].copy()
        a_tag[:, 0] = -1
        for t, st in enumerate(self.starts):
            ct, kt = self.tiles[t]
            for i in range(R):
                x = step - st - i * La  # stream position
                if 0 <= x < self.L[t]:
                    c = kt * R + i
                    a_val[i, 0] = ops.a_win[self.rows[t][x], c] if c < ops.kc else 0
                    a_tag[i, 0] = (t, x)

    def _compute(self, step: int, arriving_v: np.ndarray,
                 arriving_t: np.ndarray) -> tuple[int, int]:
        """(d) PEs: swap in shadow weights on a tile's first row, then add. Returns (busy
        PEs, busy lanes)."""
        ops, C = self.ops, self.C
        n = self.out.shape[1]
        rows, a_tag = self.rows, self.a_tag
        wa_val, wa_idx, wa_tag = self.wa_val, self.wa_idx, self.wa_tag
        ws_tag, ws_state = self.ws_tag, self.ws_state
        nb = nl = 0
        active = a_tag[..., 0] >= 0
        for i, j in zip(*np.nonzero(active)):
            t, x = a_tag[i, j]
            r = rows[t][x]
            if x == 0:
                if ws_tag[i, j] != t or ws_state[i, j] != self.LOADED:
                    raise ScheduleHazard(f"step {step}: PE({i},{j}) needs tile {t}'s "
                                         f"weights, shadow holds {ws_tag[i, j]}")
                wa_val[i, j], wa_idx[i, j], wa_tag[i, j] = \
                    self.ws_val[i, j], self.ws_idx[i, j], t
                ws_state[i, j] = 0
            if wa_tag[i, j] != t:
                raise ScheduleHazard(f"step {step}: PE({i},{j}) has tile "
                                     f"{wa_tag[i, j]}'s weights for tile {t}")
            ct = self.tiles[t][0]
            col = ct * C + j
            if i == 0:
                if col < n:
                    if self.written[r, col] >= step:
                        raise ScheduleHazard(f"step {step}: partial sum ({r},{col}) "
                                             f"read before it was written")
                    # the last earlier K-tile of this column tile that streamed row r
                    prev = [u for u in self._column_before(t) if r in rows[u]]
                    if prev and self.wtile[r, col] != prev[-1]:
                        raise ScheduleHazard(f"step {step}: partial sum ({r},{col}) of "
                                             f"tile {prev[-1]} was never written")
                    psum = self.out[r, col]
                else:
                    psum = self.accdt(0)
            else:
                if tuple(arriving_t[i - 1, j]) != (t, x):
                    raise ScheduleHazard(f"step {step}: PE({i},{j}) expected the "
                                         f"partial sum of ({t},{x}), got "
                                         f"{tuple(arriving_t[i - 1, j])}")
                psum = arriving_v[i - 1, j]
            if (wa_idx[i, j] == -2).all():  # no chunk: pass the partial sum through
                new = psum
            else:
                tree, real = _pe_products(self.a_val[i, j][None], wa_val[i, j][None],
                                          np.where(wa_idx[i, j] < 0, -1, wa_idx[i, j])[None],
                                          ops)
                new = _acc_add(psum, tree[0], ops.dtype)
                nb += 1
                nl += int(real[0])
            self.ps_val[i, j, 0] = new
            self.ps_tag[i, j, 0] = (t, x)
        return nb, nl

    def _column_before(self, t: int) -> range | list[int]:
        """The tiles before ``t`` of its column tile, in order (its earlier K-tiles)."""
        return range(t - self.tiles[t][1], t)

    def _load_shadow(self, step: int) -> None:
        """(e) shadow weight loading (after this step's swaps read the shadows): shift
        down, bottom row's chunk first."""
        ops, R, C = self.ops, self.R, self.C
        n = self.out.shape[1]
        ws_val, ws_idx, ws_tag, ws_state = self.ws_val, self.ws_idx, self.ws_tag, self.ws_state
        for t, ld in enumerate(self.loads):
            x = step - ld
            if 0 <= x < R:
                if x == 0:
                    if (ws_state == 1).any():
                        raise ScheduleHazard(f"step {step}: shadow weights of tile "
                                             f"{ws_tag.max()} overwritten before use")
                    ws_state[:] = 1
                ct, kt = self.tiles[t]
                i_src = R - 1 - x  # array row whose chunk enters now
                c = kt * R + i_src
                ws_val[1:], ws_idx[1:] = ws_val[:-1].copy(), ws_idx[:-1].copy()
                for j in range(C):
                    col = ct * C + j
                    if c < ops.kc and col < n:
                        ws_val[0, j], ws_idx[0, j] = ops.w_val[col, c], ops.w_idx[col, c]
                    else:
                        ws_val[0, j], ws_idx[0, j] = 0, -2  # -2: no chunk here
                if x == R - 1:
                    ws_tag[:] = t

