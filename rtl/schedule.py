"""Block schedules of the two dataflows (docs/architecture.md section 4.1), as strategies.

A schedule turns one COMPUTE block (m rows, kc chunks, nt column tiles, interleave) into
per-step *beats* for the array: which activation windows and weight slots to read from
the buffers, their tags, the WS weight-load shifts, the OS drain, and the feed/drain
windows in which a step needs an input beat or the output port (they gate the engine's
clock enable). Both strategies drive the same :func:`beat_layout`; the engine and the
array are shared. ``start`` is the cycle the engine accepts the COMPUTE (step -1).

The buffers have synchronous read ports (block RAM), so a beat's buffer addresses
(``act_addr``, ``w_addr``) and the activation tag's row/column tile (``nrow``, ``nct``,
which address OUT) are those of the *next* step: every state register has a next value
(:class:`_State`: what it holds after the next enabled clock edge), and the address logic
is evaluated on those. In the ``start`` cycle they are step 0's, from the command payload
and the reset assignments. The rest of the beat (tags, windows, drain) is the current
step's. The engine disables the reads on a frozen cycle so the data of the repeated step
is held.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, ResetSignal, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .array import tag_layouts
from .layouts import EngineShape

__all__ = ["CNT", "DIM", "OSSchedule", "Schedule", "WSSchedule", "beat_layout"]

DIM = 24  # m, n, k field width of the COMPUTE instruction
CNT = DIM + 8  # step counters


def beat_layout(shape: EngineShape, addr_bits: int, row_bits: int, ct_bits: int):
    atag, _, _ = tag_layouts(shape, row_bits, ct_bits)
    return data.StructLayout({
        "atag": atag, "act_addr": data.ArrayLayout(addr_bits, shape.rows),
        "act_rot": range(shape.rows), "w_valid": 1, "w_addr": addr_bits, "ws_shift": 1,
        "drain": 1, "drain_slot": atag["slot"].shape, "drain_row": row_bits,
        "drain_ct": ct_bits, "feed": 1, "drain_win": 1, "busy": 1,
        "nrow": row_bits, "nct": ct_bits} | (
        # the (column tile, chunk) of w_addr: the WGT address of an engine built with
        # shadow weights (R x chains banks, layouts.wgt_shadow_location)
        {"w_ct": DIM, "w_chunk": DIM} if shape.shadow else {}))


class _State:
    """Registers with explicit next values. ``reg(...)`` makes a register and its next
    value ``nx(reg)`` (combinational, defaulting to the register); the logic assigns
    ``nx(reg)`` in the comb domain and the register loads it at every (enabled) edge.
    Evaluating an expression on the next values gives the next step's value of it."""

    def __init__(self, m: Module):
        self.m, self._next = m, {}

    def reg(self, shape, name: str):
        cur, nxt = Signal(shape, name=name), Signal(shape, name=f"{name}_nx")
        # The reset term (the register's own reset value, so no change in behaviour) makes
        # every next-value process depend on a signal that changes: Icarus does not run
        # an ``always @*`` block at time 0, and one whose inputs never change stays X.
        self.m.d.comb += nxt.eq(Mux(ResetSignal(), 0, cur))
        self.m.d.sync += cur.eq(nxt)
        self._next[id(cur)] = nxt
        return cur

    def nx(self, reg):
        return self._next[id(reg)]


def _max(a, b):
    return Mux(a > b, a, b)


class Schedule(wiring.Component):
    """Common ports: block parameters in (held while busy), beats out."""

    def __init__(self, shape: EngineShape, addr_bits: int, row_bits: int, ct_bits: int,
                 extra: dict | None = None):
        self.shape = shape
        super().__init__({"start": In(1), "interleave": In(1), "m": In(DIM), "kc": In(DIM),
                          "kcr": In(DIM), "nt": In(DIM), "kt": In(DIM),
                          "beat": Out(beat_layout(shape, addr_bits, row_bits, ct_bits))}
                         | (extra or {}))

    def act_read(self, m: Module, rows_base, chunk):
        """ACT bank k holds window (row, c) with (row + c) mod R == k at address
        row * kcr + c // R (:func:`nmsat.rtl.layouts.act_location`). Called with the next
        step's rows and chunk (synchronous reads)."""
        R = self.shape.rows
        for k in range(R):
            i = (k - chunk) % R  # the array row that bank k serves
            m.d.comb += self.beat.act_addr[k].eq((rows_base + i) * self.kcr + chunk // R)


class OSSchedule(Schedule):
    """Output stationary: passes of s <= sigma row blocks per column tile; slot b of chunk c
    is injected at S + c La + b; the pass's drain starts kc La + s + R + C - 3 after S and
    moves one array row per step; the next pass starts one period after S."""

    def elaborate(self, platform) -> Module:
        m = Module()
        sh, bt = self.shape, self.beat
        R, C, la = sh.rows, sh.cols, sh.acc_latency
        st = _State(m)
        reg, N = st.reg, st.nx
        sigma = Mux(self.interleave, la, 1)
        rb = (self.m + (R - 1)) // R
        run, ct, rb0 = reg(1, "run"), reg(DIM, "ct"), reg(DIM, "rb0")
        s_q, u_b, u_c = reg(range(la + 1), "s_q"), reg(range(la), "u_b"), reg(DIM, "u_c")
        timer, feed = reg(CNT, "timer"), reg(CNT, "feed")
        pend = [[reg(CNT, f"p{i}_cnt"), reg(range(la + 1), f"p{i}_s"), reg(DIM, f"p{i}_rb"),
                 reg(DIM, f"p{i}_ct"), reg(1, f"p{i}_on")] for i in range(2)]
        wp = reg(1, "wp")
        d_on, d_b, d_i = reg(1, "d_on"), reg(range(la + 1), "d_b"), reg(range(R), "d_i")
        d_s, d_rb, d_ct = reg(range(la + 1), "d_s"), reg(DIM, "d_rb"), reg(DIM, "d_ct")

        def begin(rb_first, col):
            s = Signal(range(la + 1), name="s_new")
            m.d.comb += s.eq(Mux(rb - rb_first < sigma, rb - rb_first, sigma))
            stmts = [N(run).eq(1), N(rb0).eq(rb_first), N(ct).eq(col), N(s_q).eq(s),
                     N(u_b).eq(0), N(u_c).eq(0), N(timer).eq(0), N(wp).eq(~wp),
                     N(feed).eq(_max(feed - (feed != 0),
                                     (self.kc - 1) * la + s + max(R, C) - 1))]
            for i in range(2):
                with m.If(wp == i):
                    m.d.comb += [N(pend[i][0]).eq(self.kc * la + s + R + C - 4),
                                 N(pend[i][1]).eq(s), N(pend[i][2]).eq(rb_first),
                                 N(pend[i][3]).eq(col), N(pend[i][4]).eq(1)]
            return stmts

        inject = run & (u_c < self.kc) & (u_b < s_q)
        at = bt.atag
        m.d.comb += [at.valid.eq(inject), at.first.eq(u_c == 0), at.last.eq(u_c == self.kc - 1),
                     at.slot.eq(u_b), at.lastslot.eq(u_b == s_q - 1), at.row.eq((rb0 + u_b) * R),
                     at.ct.eq(ct), bt.w_valid.eq(inject), bt.act_rot.eq(u_c % R)]
        # buffer addresses and the OUT row/column tile of the next step
        if sh.shadow:
            m.d.comb += [bt.w_ct.eq(N(ct)), bt.w_chunk.eq(N(u_c))]
        m.d.comb += [bt.w_addr.eq(N(ct) * self.kc + N(u_c)), bt.nrow.eq((N(rb0) + N(u_b)) * R),
                     bt.nct.eq(N(ct))]
        self.act_read(m, (N(rb0) + N(u_b)) * R, N(u_c))
        # ---- pass sequencing
        period = Mux(self.interleave,
                     _max(self.kc * la, s_q * (R + 1) + R + C - 3), self.kc * la + 2 * R + C - 2)
        more_rows = rb0 + s_q < rb
        more = more_rows | (ct + 1 < self.nt)
        with m.If(self.start):
            m.d.comb += [N(wp).eq(0), N(feed).eq(0), N(d_on).eq(0), N(pend[0][4]).eq(0),
                         N(pend[1][4]).eq(0)]
            m.d.comb += begin(0, 0)
        with m.Elif(run):
            m.d.comb += [N(timer).eq(timer + 1), N(feed).eq(feed - (feed != 0)),
                         N(u_b).eq(Mux(u_b == la - 1, 0, u_b + 1)),
                         N(u_c).eq(u_c + (u_b == la - 1))]
            with m.If(more & (timer == period - 1)):
                m.d.comb += begin(Mux(more_rows, rb0 + s_q, 0), Mux(more_rows, ct, ct + 1))
            with m.Elif(~more & (u_c >= self.kc)):
                m.d.comb += N(run).eq(0)
        with m.Else():
            m.d.comb += N(feed).eq(feed - (feed != 0))
        # ---- drains: pending countdowns, then s R steps of one array row each
        for p_cnt, p_s, p_rb, p_ct, p_on in pend:
            with m.If(p_on & ~self.start):
                m.d.comb += N(p_cnt).eq(p_cnt - 1)
                with m.If(p_cnt == 0):
                    m.d.comb += [N(p_on).eq(0), N(d_on).eq(1), N(d_b).eq(0), N(d_i).eq(0),
                                 N(d_s).eq(p_s), N(d_rb).eq(p_rb), N(d_ct).eq(p_ct)]
        with m.If(d_on & ~self.start):
            m.d.comb += N(d_i).eq(Mux(d_i == R - 1, 0, d_i + 1))
            with m.If(d_i == R - 1):
                m.d.comb += N(d_b).eq(d_b + 1)
                with m.If(d_b == d_s - 1):
                    m.d.comb += N(d_on).eq(0)
        m.d.comb += [bt.drain.eq(d_on), bt.drain_slot.eq(d_b),
                     bt.drain_row.eq((d_rb + d_b) * R + (R - 1) - d_i), bt.drain_ct.eq(d_ct),
                     bt.feed.eq(feed != 0), bt.drain_win.eq(d_on),
                     bt.busy.eq(run | d_on | pend[0][4] | pend[1][4] | (feed != 0))]
        return m


class WSSchedule(Schedule):
    """Weight stationary: tiles (column tile outer, K-tile inner) load R weight rows in R
    steps, then stream the m activation rows; the next load / stream start NL / NS steps
    after this tile's stream start A_t (no interleave: after its end).

    ``rowlist_depth`` (``act_zero = skip`` builds only): tile (ct, kt) streams the
    ``m_kt`` rows of K-tile kt's row list (:mod:`nmsat.rtl.rowlist`, looked up through
    the ``lookup`` port) instead of rows 0 .. m - 1, and the next tile's stream waits for
    its lag too; otherwise the hardware is the plain schedule."""

    def __init__(self, shape: EngineShape, addr_bits: int, row_bits: int, ct_bits: int,
                 rowlist_depth: int | None = None):
        from .rowlist import rowlist_lookup

        self.skip = rowlist_depth is not None
        extra = ({"lookup": Out(wiring.Signature(rowlist_lookup(rowlist_depth)))}
                 if self.skip else {})
        super().__init__(shape, addr_bits, row_bits, ct_bits, extra)

    def elaborate(self, platform) -> Module:
        m = Module()
        sh, bt = self.shape, self.beat
        R, C, la = sh.rows, sh.cols, sh.acc_latency
        st = _State(m)
        reg, N = st.reg, st.nx
        l_on, l_s, l_kt = reg(1, "l_on"), reg(range(R), "l_s"), reg(DIM, "l_kt")
        l_ct, a_on, a_r = reg(DIM, "l_ct"), reg(1, "a_on"), reg(DIM, "a_r")
        a_kt, a_ct = reg(DIM, "a_kt"), reg(DIM, "a_ct")
        ev = {k: (reg(CNT, f"{k}_cd"), reg(1, f"{k}_armed"))
              for k in ("load", "stream", "drain")}
        a_feed, d_rem = reg(CNT, "a_feed"), reg(CNT, "d_rem")

        def position(v):
            """Weight-load chunk/column tile and streamed row/K-tile/column tile of the step
            whose registers are ``v(reg)`` (the current step: identity; the next: N)."""
            fl = v(ev["load"][1]) & (v(ev["load"][0]) == 0)
            fs = v(ev["stream"][1]) & (v(ev["stream"][0]) == 0)
            ls = Mux(fl, 0, v(l_s))
            return {"fire_load": fl, "fire_stream": fs, "ls": ls,
                    "chunk": v(l_kt) * R + (R - 1) - ls, "ar": Mux(fs, 0, v(a_r)),
                    "kt": Mux(fs, v(l_kt), v(a_kt)), "ct": Mux(fs, v(l_ct), v(a_ct))}

        now, nxt = position(lambda r: r), position(N)
        # Stream length of the current tile, its rows (position -> row), and the lag of
        # the next K-tile (docs/architecture.md 4.1, WS with skipped rows).
        last_kt = l_kt + 1 >= self.kt
        if self.skip:
            lk = self.lookup
            m.d.comb += [lk.cnt_addr.eq(now["kt"]), lk.lag_addr.eq(l_kt + 1),
                         lk.now_addr.eq(now["ar"] * self.kcr + now["kt"]),
                         lk.nx_addr.eq(nxt["ar"] * self.kcr + nxt["kt"])]
            mm, row_now, row_nx = lk.cnt, lk.now_row, lk.nx_row
            lag = Mux(last_kt, 0, lk.lag)
        else:
            mm, row_now, row_nx, lag = self.m, now["ar"], nxt["ar"], 0
        fire = {k: armed & (cd == 0) for k, (cd, armed) in ev.items()}
        for cd, armed in ev.values():
            with m.If(armed & ~self.start):
                m.d.comb += N(cd).eq(cd - 1)
                with m.If(cd == 0):
                    m.d.comb += N(armed).eq(0)
        # ---- weight load (shadow chain), current position
        ls = now["ls"]
        lon = fire["load"] | l_on
        m.d.comb += [bt.ws_shift.eq(lon), bt.w_valid.eq(lon & (now["chunk"] < self.kc)),
                     bt.w_addr.eq(N(l_ct) * self.kc + nxt["chunk"])]
        if sh.shadow:
            m.d.comb += [bt.w_ct.eq(N(l_ct)), bt.w_chunk.eq(nxt["chunk"])]
        with m.If(lon & ~self.start):
            m.d.comb += [N(l_s).eq(Mux(ls == R - 1, 0, ls + 1)), N(l_on).eq(ls != R - 1)]
        # ---- activation stream of the current tile
        ar = now["ar"]
        aon = fire["stream"] | a_on
        at = bt.atag
        m.d.comb += [at.valid.eq(aon), at.swap.eq(ar == 0), at.row.eq(row_now),
                     at.ct.eq(now["ct"]), bt.act_rot.eq(row_now % R), bt.nrow.eq(row_nx),
                     bt.nct.eq(nxt["ct"])]
        for k in range(R):
            m.d.comb += bt.act_addr[k].eq(row_nx * self.kcr + nxt["kt"])
        with m.If(aon & ~self.start):
            m.d.comb += [N(a_r).eq(ar + 1), N(a_on).eq(ar != mm - 1)]
        # ---- tile sequencing at the stream start A_t
        more = ~last_kt | (l_ct + 1 < self.nt)
        nl = Mux(self.interleave, (R - 1) * la + C - 1, mm + R * la + C - 1)
        ns = Mux(self.interleave, _max(_max(mm, (R - 1) * la + R + C - 1), R * la + 1 + lag),
                 mm + R * la + C - 1 + R)
        af = Mux(fire["stream"], _max(a_feed, mm + (R - 1) * la), a_feed)
        dr = Mux(fire["drain"], _max(d_rem, mm + C - 1), d_rem)
        m.d.comb += [N(a_feed).eq(af - (af != 0)), N(d_rem).eq(dr - (dr != 0))]
        with m.If(fire["stream"] & ~self.start):
            m.d.comb += [N(a_kt).eq(l_kt), N(a_ct).eq(l_ct), N(ev["drain"][0]).eq(R * la - 1),
                         N(ev["drain"][1]).eq(1),
                         N(l_kt).eq(Mux(last_kt, 0, l_kt + 1)), N(l_ct).eq(l_ct + last_kt)]
            with m.If(more):
                m.d.comb += [N(ev["load"][0]).eq(nl - 1), N(ev["load"][1]).eq(1),
                             N(ev["stream"][0]).eq(ns - 1), N(ev["stream"][1]).eq(1)]
        with m.If(self.start):
            m.d.comb += [N(l_on).eq(0), N(a_on).eq(0), N(l_kt).eq(0), N(l_ct).eq(0),
                         N(a_feed).eq(0), N(d_rem).eq(0), N(ev["load"][0]).eq(0),
                         N(ev["load"][1]).eq(1), N(ev["stream"][0]).eq(R),
                         N(ev["stream"][1]).eq(1), N(ev["drain"][1]).eq(0)]
        m.d.comb += [bt.feed.eq(lon | (af != 0)), bt.drain_win.eq(dr != 0),
                     bt.busy.eq(l_on | a_on | (a_feed != 0) | (d_rem != 0) | ev["load"][1]
                                | ev["stream"][1] | ev["drain"][1])]  # registers only
        return m
