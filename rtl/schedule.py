"""Block schedules of the two dataflows (docs/architecture.md section 4.1), as strategies.

A schedule turns one COMPUTE block (m rows, kc chunks, nt column tiles, interleave) into
per-step *beats* for the array: which activation windows and weight slots to read from
the buffers, their tags, the WS weight-load shifts, the OS drain, and the feed/drain
windows in which a step needs an input beat or the output port (they gate the engine's
clock enable). Both strategies drive the same :func:`beat_layout`; the engine and the
array are shared. ``start`` is the cycle the engine accepts the COMPUTE (step -1).
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .array import tag_layouts
from .layouts import EngineShape

DIM = 24  # m, n, k field width of the COMPUTE instruction
CNT = DIM + 8  # step counters


def beat_layout(shape: EngineShape, addr_bits: int, row_bits: int, ct_bits: int):
    atag, _, _ = tag_layouts(shape, row_bits, ct_bits)
    return data.StructLayout({
        "atag": atag, "act_addr": data.ArrayLayout(addr_bits, shape.rows),
        "act_rot": range(shape.rows), "w_valid": 1, "w_addr": addr_bits, "ws_shift": 1,
        "drain": 1, "drain_slot": atag["slot"].shape, "drain_row": row_bits,
        "drain_ct": ct_bits, "feed": 1, "drain_win": 1, "busy": 1})


def _max(a, b):
    return Mux(a > b, a, b)


class Schedule(wiring.Component):
    """Common ports: block parameters in (held while busy), beats out."""

    def __init__(self, shape: EngineShape, addr_bits: int, row_bits: int, ct_bits: int):
        self.shape = shape
        super().__init__({"start": In(1), "interleave": In(1), "m": In(DIM), "kc": In(DIM),
                          "kcr": In(DIM), "nt": In(DIM), "kt": In(DIM),
                          "beat": Out(beat_layout(shape, addr_bits, row_bits, ct_bits))})

    def act_read(self, m: Module, rows_base, chunk, rot):
        """ACT bank k holds window (row, c) with (row + c) mod R == k at address
        row * kcr + c // R (:func:`nmsat.rtl.layouts.act_location`)."""
        R = self.shape.rows
        for k in range(R):
            i = (k - chunk) % R  # the array row that bank k serves
            m.d.comb += self.beat.act_addr[k].eq((rows_base + i) * self.kcr + chunk // R)
        m.d.comb += self.beat.act_rot.eq(rot)


class OSSchedule(Schedule):
    """Output stationary: passes of s <= sigma row blocks per column tile; slot b of chunk c
    is injected at S + c La + b; the pass's drain starts kc La + s + R + C - 3 after S and
    moves one array row per step; the next pass starts one period after S."""

    def elaborate(self, platform) -> Module:
        m = Module()
        sh, bt = self.shape, self.beat
        R, C, la = sh.rows, sh.cols, sh.acc_latency
        sigma = Mux(self.interleave, la, 1)
        rb = (self.m + (R - 1)) // R
        run, ct, rb0, s_q = Signal(), Signal(DIM), Signal(DIM), Signal(range(la + 1))
        u_b, u_c, timer, feed = Signal(range(la)), Signal(DIM), Signal(CNT), Signal(CNT)
        pend = [[Signal(CNT, name=f"p{i}_cnt"), Signal(range(la + 1), name=f"p{i}_s"),
                 Signal(DIM, name=f"p{i}_rb"), Signal(DIM, name=f"p{i}_ct"),
                 Signal(name=f"p{i}_on")] for i in range(2)]
        wp = Signal()
        d_on, d_b, d_i = Signal(), Signal(range(la + 1)), Signal(range(R))
        d_s, d_rb, d_ct = Signal(range(la + 1)), Signal(DIM), Signal(DIM)

        def begin(rb_first, col):
            s = Signal(range(la + 1), name="s_new")
            m.d.comb += s.eq(Mux(rb - rb_first < sigma, rb - rb_first, sigma))
            stmts = [run.eq(1), rb0.eq(rb_first), ct.eq(col), s_q.eq(s), u_b.eq(0),
                     u_c.eq(0), timer.eq(0), wp.eq(~wp),
                     feed.eq(_max(feed - (feed != 0), (self.kc - 1) * la + s + max(R, C) - 1))]
            for i in range(2):
                with m.If(wp == i):
                    m.d.sync += [pend[i][0].eq(self.kc * la + s + R + C - 4),
                                 pend[i][1].eq(s), pend[i][2].eq(rb_first),
                                 pend[i][3].eq(col), pend[i][4].eq(1)]
            return stmts

        inject = run & (u_c < self.kc) & (u_b < s_q)
        at = bt.atag
        m.d.comb += [at.valid.eq(inject), at.first.eq(u_c == 0), at.last.eq(u_c == self.kc - 1),
                     at.slot.eq(u_b), at.lastslot.eq(u_b == s_q - 1), at.row.eq((rb0 + u_b) * R),
                     at.ct.eq(ct), bt.w_valid.eq(inject), bt.w_addr.eq(ct * self.kc + u_c)]
        self.act_read(m, (rb0 + u_b) * R, u_c, u_c % R)
        # ---- pass sequencing
        period = Mux(self.interleave,
                     _max(self.kc * la, s_q * (R + 1) + R + C - 3), self.kc * la + 2 * R + C - 2)
        more_rows = rb0 + s_q < rb
        more = more_rows | (ct + 1 < self.nt)
        with m.If(self.start):
            m.d.sync += [wp.eq(0), feed.eq(0), d_on.eq(0), pend[0][4].eq(0), pend[1][4].eq(0)]
            m.d.sync += begin(0, 0)
        with m.Elif(run):
            m.d.sync += [timer.eq(timer + 1), feed.eq(feed - (feed != 0)),
                         u_b.eq(Mux(u_b == la - 1, 0, u_b + 1)),
                         u_c.eq(u_c + (u_b == la - 1))]
            with m.If(more & (timer == period - 1)):
                m.d.sync += begin(Mux(more_rows, rb0 + s_q, 0), Mux(more_rows, ct, ct + 1))
            with m.Elif(~more & (u_c >= self.kc)):
                m.d.sync += run.eq(0)
        with m.Else():
            m.d.sync += feed.eq(feed - (feed != 0))
        # ---- drains: pending countdowns, then s R steps of one array row each
        for p_cnt, p_s, p_rb, p_ct, p_on in pend:
            with m.If(p_on & ~self.start):
                m.d.sync += p_cnt.eq(p_cnt - 1)
                with m.If(p_cnt == 0):
                    m.d.sync += [p_on.eq(0), d_on.eq(1), d_b.eq(0), d_i.eq(0), d_s.eq(p_s),
                                 d_rb.eq(p_rb), d_ct.eq(p_ct)]
        with m.If(d_on & ~self.start):
            m.d.sync += d_i.eq(Mux(d_i == R - 1, 0, d_i + 1))
            with m.If(d_i == R - 1):
                m.d.sync += d_b.eq(d_b + 1)
                with m.If(d_b == d_s - 1):
                    m.d.sync += d_on.eq(0)
        m.d.comb += [bt.drain.eq(d_on), bt.drain_slot.eq(d_b),
                     bt.drain_row.eq((d_rb + d_b) * R + (R - 1) - d_i), bt.drain_ct.eq(d_ct),
                     bt.feed.eq(feed != 0), bt.drain_win.eq(d_on),
                     bt.busy.eq(run | d_on | pend[0][4] | pend[1][4] | (feed != 0))]
        return m


class WSSchedule(Schedule):
    """Weight stationary: tiles (column tile outer, K-tile inner) load R weight rows in R
    steps, then stream the m activation rows; the next load / stream start NL / NS steps
    after this tile's stream start A_t (no interleave: after its end)."""

    def elaborate(self, platform) -> Module:
        m = Module()
        sh, bt = self.shape, self.beat
        R, C, la = sh.rows, sh.cols, sh.acc_latency
        mm = self.m
        l_on, l_s, l_kt, l_ct = Signal(), Signal(range(R)), Signal(DIM), Signal(DIM)
        a_on, a_r, a_kt, a_ct = Signal(), Signal(DIM), Signal(DIM), Signal(DIM)
        ev = {k: (Signal(CNT, name=f"{k}_cd"), Signal(name=f"{k}_armed"))
              for k in ("load", "stream", "drain")}
        a_feed, d_rem = Signal(CNT), Signal(CNT)
        fire = {k: armed & (cd == 0) for k, (cd, armed) in ev.items()}
        for k, (cd, armed) in ev.items():
            with m.If(armed & ~self.start):
                m.d.sync += cd.eq(cd - 1)
                with m.If(cd == 0):
                    m.d.sync += armed.eq(0)
        # ---- weight load (shadow chain), current position
        ls = Mux(fire["load"], 0, l_s)
        lon = fire["load"] | l_on
        chunk = l_kt * R + (R - 1) - ls
        m.d.comb += [bt.ws_shift.eq(lon), bt.w_valid.eq(lon & (chunk < self.kc)),
                     bt.w_addr.eq(l_ct * self.kc + chunk)]
        with m.If(lon & ~self.start):
            m.d.sync += [l_s.eq(Mux(ls == R - 1, 0, ls + 1)), l_on.eq(ls != R - 1)]
        # ---- activation stream of the current tile
        ar = Mux(fire["stream"], 0, a_r)
        aon = fire["stream"] | a_on
        kt_now = Mux(fire["stream"], l_kt, a_kt)
        ct_now = Mux(fire["stream"], l_ct, a_ct)
        at = bt.atag
        m.d.comb += [at.valid.eq(aon), at.swap.eq(ar == 0), at.row.eq(ar), at.ct.eq(ct_now)]
        for k in range(R):
            m.d.comb += bt.act_addr[k].eq(ar * self.kcr + kt_now)
        m.d.comb += bt.act_rot.eq(ar % R)
        with m.If(aon & ~self.start):
            m.d.sync += [a_r.eq(ar + 1), a_on.eq(ar != mm - 1)]
        # ---- tile sequencing at the stream start A_t
        last_kt = l_kt + 1 >= self.kt
        more = ~last_kt | (l_ct + 1 < self.nt)
        nl = Mux(self.interleave, (R - 1) * la + C - 1, mm + R * la + C - 1)
        ns = Mux(self.interleave, _max(_max(mm, (R - 1) * la + R + C - 1), R * la + 1),
                 mm + R * la + C - 1 + R)
        af = Mux(fire["stream"], _max(a_feed, mm + (R - 1) * la), a_feed)
        dr = Mux(fire["drain"], _max(d_rem, mm + C - 1), d_rem)
        m.d.sync += [a_feed.eq(af - (af != 0)), d_rem.eq(dr - (dr != 0))]
        with m.If(fire["stream"] & ~self.start):
            m.d.sync += [a_kt.eq(l_kt), a_ct.eq(l_ct), ev["drain"][0].eq(R * la - 1),
                         ev["drain"][1].eq(1),
                         l_kt.eq(Mux(last_kt, 0, l_kt + 1)), l_ct.eq(l_ct + last_kt)]
            with m.If(more):
                m.d.sync += [ev["load"][0].eq(nl - 1), ev["load"][1].eq(1),
                             ev["stream"][0].eq(ns - 1), ev["stream"][1].eq(1)]
        with m.If(self.start):
            m.d.sync += [l_on.eq(0), a_on.eq(0), l_kt.eq(0), l_ct.eq(0), a_feed.eq(0),
                         d_rem.eq(0), ev["load"][0].eq(0), ev["load"][1].eq(1),
                         ev["stream"][0].eq(R), ev["stream"][1].eq(1), ev["drain"][1].eq(0)]
        m.d.comb += [bt.feed.eq(lon | (af != 0)), bt.drain_win.eq(dr != 0),
                     bt.busy.eq(l_on | a_on | (a_feed != 0) | (d_rem != 0) | ev["load"][1]
                                | ev["stream"][1] | ev["drain"][1])]  # registers only
        return m
