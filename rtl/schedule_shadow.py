"""The WS block schedule with shadow weights (``array.shadow_weights``, docs/architecture.md
4.1 and 4.2): interleaved WS blocks on an engine built with the preload.

Tiles run K-tile outer, column tile inner (sequence u = kt nt + ct). Tile u's activation
stream starts at A_u: ``A_0 = Cs``, then ``A_u = A_{u-1} + p`` with ``p = max(m, Cs)``,
except that the first tile of a K-tile round also waits for the partial sums of the
round before (``A_{u-nt} + R La + 1``); with every tile streaming m rows this is
``max(nt p, R La + 1) - (nt - 1) p`` after the round's last tile (the closed form of
``timing.ws_cycles``). Tile u's weights are loaded by the array's row chains
(:meth:`nmsat.rtl.array.SystolicArray._chains`): the schedule only injects the load wave
token, on tile u-1's first row (``atag.load``; for tile 0 on an empty beat in step 0),
and the chains follow it. The feed windows of the loads (``load_feed``) and the drain
windows (partial sums at the bottom edge) come from the array; this schedule gives the
activation-stream windows.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux

from .schedule import CNT, DIM, Schedule, _max, _State

__all__ = ["WSShadowSchedule"]


class WSShadowSchedule(Schedule):
    """Weight stationary with the shadow-weight preload (interleaved blocks only)."""

    def elaborate(self, platform) -> Module:
        m = Module()
        sh, bt = self.shape, self.beat
        R, C, la, cs = sh.rows, sh.cols, sh.acc_latency, sh.chain_cols
        st = _State(m)
        reg, N = st.reg, st.nx
        n_ct, n_kt = reg(DIM, "n_ct"), reg(DIM, "n_kt")  # the next tile to stream
        a_on, a_r, a_ct, a_kt = reg(1, "a_on"), reg(DIM, "a_r"), reg(DIM, "a_ct"), reg(DIM, "a_kt")
        cd, armed, tok0 = reg(CNT, "s_cd"), reg(1, "s_armed"), reg(1, "tok0")
        a_feed, tail = reg(CNT, "a_feed"), reg(CNT, "tail")

        def position(v):
            """Streamed row / K-tile / column tile of the step whose registers are v(reg)."""
            fs = v(armed) & (v(cd) == 0)
            return {"fire": fs, "ar": Mux(fs, 0, v(a_r)), "kt": Mux(fs, v(n_kt), v(a_kt)),
                    "ct": Mux(fs, v(n_ct), v(a_ct))}

        now, nxt = position(lambda r: r), position(N)
        fire = now["fire"]
        p = _max(self.m, cs)
        ntp = self.nt * p
        d = R * la + 1
        round_delta = Mux(ntp >= d, p, d - (ntp - p))
        last_ct = n_ct + 1 >= self.nt
        more = ~last_ct | (n_kt + 1 < self.kt)
        with m.If(armed & ~self.start):
            m.d.comb += N(cd).eq(cd - 1)
            with m.If(cd == 0):
                m.d.comb += N(armed).eq(0)
        # ---- activation stream of the current tile
        ar, aon, at = now["ar"], fire | a_on, bt.atag
        m.d.comb += [at.valid.eq(aon), at.swap.eq(ar == 0), at.row.eq(ar), at.ct.eq(now["ct"]),
                     at.load.eq(tok0 | (fire & more)), bt.act_rot.eq(ar % R),
                     bt.nrow.eq(nxt["ar"]), bt.nct.eq(nxt["ct"])]
        for k in range(R):
            m.d.comb += bt.act_addr[k].eq(nxt["ar"] * self.kcr + nxt["kt"])
        with m.If(aon & ~self.start):
            m.d.comb += [N(a_r).eq(ar + 1), N(a_on).eq(ar != self.m - 1)]
        # ---- tile sequencing at the stream start A_u
        af = Mux(fire, _max(a_feed, self.m + (R - 1) * la), a_feed)
        tl = Mux(fire, _max(tail, self.m + R * la + C - 1), tail)
        m.d.comb += [N(a_feed).eq(af - (af != 0)), N(tail).eq(tl - (tl != 0)), N(tok0).eq(0)]
        with m.If(fire & ~self.start):
            m.d.comb += [N(a_kt).eq(n_kt), N(a_ct).eq(n_ct),
                         N(n_ct).eq(Mux(last_ct, 0, n_ct + 1)), N(n_kt).eq(n_kt + last_ct)]
            with m.If(more):
                m.d.comb += [N(cd).eq(Mux(last_ct, round_delta, p) - 1), N(armed).eq(1)]
        with m.If(self.start):
            m.d.comb += [N(a_on).eq(0), N(n_ct).eq(0), N(n_kt).eq(0), N(a_feed).eq(0),
                         N(tail).eq(0), N(cd).eq(cs), N(armed).eq(1), N(tok0).eq(1)]
        m.d.comb += [bt.feed.eq(af != 0), bt.drain_win.eq(0),
                     bt.busy.eq(a_on | armed | tok0 | (a_feed != 0) | (tail != 0))]
        return m
