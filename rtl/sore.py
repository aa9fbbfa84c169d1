"""The sparse online reduction engine (docs/architecture.md section 5).

:class:`SoreLane`: a streaming top-N-of-M sorter. It reads one weight per cycle and keeps
the N best (magnitude, index) pairs of the group so far, sorted by magnitude; a new weight
is inserted only where it is *strictly* greater (so of equal magnitudes the lower index
wins, ``reference.nm_mask``). After the group's M-th weight (or a ``last`` that ends a
trailing partial group of r < M) it emits the N kept (value, index) pairs in increasing
index order (``reference.compress``: a partial group's missing slots are value 0 at the
lowest unkept positions), ``pipeline_latency`` cycles later.

:class:`Sore`: ``lanes`` lanes fed in parallel, lane l taking group ``base + l`` of a beat,
so one view of G groups takes ``ceil(G / lanes) x M + pipeline_latency`` cycles. The FF and
BP views are the same hardware fed in two orders (along the input dimension, then along
the output dimension; :func:`nmsat.rtl.tb.sore_model.view_groups`).

Magnitude: fp16/bf16 bit pattern with the sign cleared, compared as unsigned (equal to
float comparison; +0 = -0); int8/int16: the absolute value. NaN is not expected (the
reference rejects it).
"""

from __future__ import annotations

from amaranth.hdl import Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from nmsat.config import AcceleratorConfig
from nmsat.types import DType

__all__ = ["Sore", "SoreLane", "sore_layouts"]


def sore_layouts(width: int, n_max: int, idx_bits: int, lanes: int):
    slot = data.StructLayout({"value": width, "index": idx_bits})
    group = data.ArrayLayout(slot, n_max)
    inp = data.StructLayout({"w": data.ArrayLayout(width, lanes), "last": 1})
    out = data.ArrayLayout(group, lanes)
    return slot, group, inp, out


class SoreLane(wiring.Component):
    """One lane; ``n`` and ``m`` (the pattern) are run-time inputs, n <= n_max, m <= m_max."""

    def __init__(self, dtype: DType, n_max: int, m_max: int):
        self.dtype, self.n_max, self.m_max = DType.parse(dtype), n_max, m_max
        self.width = 8 if self.dtype is DType.INT8 else 16
        self.idx_bits = max(1, (m_max - 1).bit_length())
        _, group, _, _ = sore_layouts(self.width, n_max, self.idx_bits, 1)
        super().__init__({"n": In(range(n_max + 1)), "m": In(range(m_max + 1)),
                          "w": In(stream.Signature(data.StructLayout({"value": self.width,
                                                                      "last": 1}))),
                          "group": Out(stream.Signature(group))})

    def magnitude(self, v):
        if self.dtype.is_float:
            return v[:self.width - 1]
        s = v.as_signed()
        return Mux(s < 0, -s, s).as_unsigned()[:self.width]

    def elaborate(self, m_=None) -> Module:
        m = Module()
        N = self.n_max
        mag = [Signal(self.width, name=f"mag{s}") for s in range(N)]
        val = [Signal(self.width, name=f"val{s}") for s in range(N)]
        idx = [Signal(self.idx_bits, name=f"idx{s}") for s in range(N)]
        ok = [Signal(name=f"ok{s}") for s in range(N)]
        pos = Signal(range(self.m_max + 1))
        x = self.w.payload.value
        xm = self.magnitude(x)
        take = self.w.valid & self.w.ready
        beats = [~ok[s] | (xm > mag[s]) for s in range(N)]  # strictly greater replaces
        end = take & ((pos == self.m - 1) | self.w.payload.last)
        m.d.comb += self.w.ready.eq(~self.group.valid | self.group.ready)
        with m.If(take):
            m.d.sync += pos.eq(Mux(end, 0, pos + 1))
            for s in range(N):
                prev_beats = beats[s - 1] if s else Const(0)
                with m.If((s < self.n) & beats[s] & ~prev_beats):
                    m.d.sync += [mag[s].eq(xm), val[s].eq(x), idx[s].eq(pos), ok[s].eq(1)]
                with m.Elif((s < self.n) & prev_beats & (s > 0)):
                    p = s - 1 if s else 0
                    m.d.sync += [mag[s].eq(mag[p]), val[s].eq(val[p]), idx[s].eq(idx[p]),
                                 ok[s].eq(ok[p])]
        # emit: the group's final list (including this last weight) in index order
        fin = [(Signal.like(val[s], name=f"fv{s}"), Signal.like(idx[s], name=f"fi{s}"),
                Signal(name=f"fo{s}")) for s in range(N)]
        for s in range(N):
            prev_beats = beats[s - 1] if s else Const(0)
            src = s - 1 if s else 0
            ins = (s < self.n) & beats[s] & ~prev_beats
            shift = (s < self.n) & prev_beats & (s > 0)
            m.d.comb += [fin[s][0].eq(Mux(ins, x, Mux(shift, val[src], val[s]))),
                         fin[s][1].eq(Mux(ins, pos, Mux(shift, idx[src], idx[s]))),
                         fin[s][2].eq(Mux(ins, 1, Mux(shift, ok[src], ok[s])))]
        with m.If(end):
            m.d.sync += [o.eq(0) for o in ok]
        out = Signal(self.group.payload.shape())
        count = sum(f[2] for f in fin)
        for r in range(N):  # output slot r: the kept entry with r kept indices below it
            m.d.comb += [out[r].value.eq(0), out[r].index.eq(r)]
            for s in range(N):
                below = sum((fin[t][2] & (fin[t][1] < fin[s][1])) for t in range(N) if t != s)
                with m.If(fin[s][2] & (below == r)):
                    m.d.comb += [out[r].value.eq(fin[s][0]), out[r].index.eq(fin[s][1])]
            with m.If(r >= count):  # a partial group's padding slots: value 0, index r
                m.d.comb += [out[r].value.eq(0), out[r].index.eq(r)]
        with m.If(self.group.valid & self.group.ready):
            m.d.sync += self.group.valid.eq(0)
        with m.If(end):
            m.d.sync += [self.group.valid.eq(1), self.group.payload.eq(out)]
        return m


class Sore(wiring.Component):
    """``sore.lanes`` lanes in lock step plus ``pipeline_latency - 1`` output stages (each
    lane's own register is the first), for the config's N:M patterns and operand type."""

    def __init__(self, cfg: AcceleratorConfig, dtype: DType | str | None = None):
        self.dtype = DType.parse(dtype or cfg.numerics.dtype)
        pats = cfg.array.patterns
        self.n_max = max(p.n for p in pats)
        self.m_max = max(p.m for p in pats)
        self.lanes = cfg.sore.lanes
        self.latency = cfg.sore.pipeline_latency
        if cfg.sore.cycles_per_weight != 1 or self.latency < 1:
            raise ValueError("the RTL SORE needs sore.cycles_per_weight = 1 and "
                             f"sore.pipeline_latency >= 1, not {cfg.sore.cycles_per_weight} "
                             f"and {self.latency}")
        self.width = 8 if self.dtype is DType.INT8 else 16
        self.idx_bits = max(1, (self.m_max - 1).bit_length())
        _, _, lin, lout = sore_layouts(self.width, self.n_max, self.idx_bits, self.lanes)
        super().__init__({"n": In(range(self.n_max + 1)), "m": In(range(self.m_max + 1)),
                          "inp": In(stream.Signature(lin)), "out": Out(stream.Signature(lout))})

    def elaborate(self, platform) -> Module:
        m = Module()
        lanes = [SoreLane(self.dtype, self.n_max, self.m_max) for _ in range(self.lanes)]
        move = ~self.out.valid | self.out.ready
        head = Signal(self.out.payload.shape())
        for i, ln in enumerate(lanes):
            m.submodules[f"lane{i}"] = ln
            m.d.comb += [ln.n.eq(self.n), ln.m.eq(self.m), ln.w.valid.eq(self.inp.valid),
                         ln.w.payload.value.eq(self.inp.payload.w[i]),
                         ln.w.payload.last.eq(self.inp.payload.last),
                         ln.group.ready.eq(move), head[i].eq(ln.group.payload)]
        m.d.comb += self.inp.ready.eq(lanes[0].w.ready)
        valid = lanes[0].group.valid
        for s in range(self.latency - 1):
            v, d = Signal(name=f"sv{s}"), Signal.like(head, name=f"sd{s}")
            with m.If(move):
                m.d.sync += [v.eq(valid), d.eq(head)]
            valid, head = v, d
        m.d.comb += [self.out.valid.eq(valid), self.out.payload.eq(head)]
        return m
