"""The sparse online reduction engine (SORE): streaming top-N-of-M mask generation.

docs/architecture.md section 5. A :class:`SoreLane` reads one weight per
``sore.cycles_per_weight`` cycles, keeps the N best (magnitude, index) pairs of the group
in a list sorted by magnitude (strictly greater replaces, so the lower index wins ties),
and ``sore.pipeline_latency`` cycles after the group's M-th weight emits the N kept
values in increasing index order with their indices. :class:`Sore` runs L =
``sore.lanes`` lanes in lock step on beats of L weights, one group per lane per round.

Selection follows ``nmsat.reference.nm_mask`` / ``compress``: the magnitude of a float is
its bit pattern with the sign cleared, compared unsigned (+0 = -0), of an integer its
absolute value; a trailing partial group is fed padded with ``pad`` weights, which lose
every comparison (zeros included) and come out as value 0 at their own index, exactly the
reference's padding slots. NaN is not rejected in hardware: its pattern sorts above Inf.

The N:M pattern is chosen at run time (``mode`` = index into ``array.nm_patterns``); the
list is as long as the largest N and the indices as wide as the largest M need.

The weight beats come in *view order* (:func:`view_order`), the gather the SORE's DRAM
reader performs: round t holds groups tL .. tL+L-1 of the view, beat i of a round element
i of each. Groups are numbered in row-major order of the compressed tensor: FF view of
``W[out, in]`` (groups along ``in``) row by row; BP view (groups along ``out``) by block of
M rows, then column, so a round's beat is L consecutive weights of one row of ``W``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from nmsat.config import AcceleratorConfig
from nmsat.dataflow.isa import SoreView
from nmsat.types import NM, DType

from .layouts import EngineShape


@dataclass(frozen=True)
class SoreShape:
    """Parameters of one SORE build (from ``AcceleratorConfig``)."""

    lanes: int
    cycles_per_weight: int
    pipeline_latency: int
    patterns: tuple[NM, ...]
    dtype: DType
    slot_layout: data.StructLayout  # {value, index}: the engine's weight slot, reused

    @classmethod
    def from_config(cls, cfg: AcceleratorConfig, lanes: int | None = None) -> "SoreShape":
        s = cfg.sore
        eng = EngineShape.from_config(cfg)
        if not eng.patterns:
            raise ValueError("the SORE needs at least one N:M pattern in array.nm_patterns")
        return cls(s.lanes if lanes is None else lanes, s.cycles_per_weight,
                   s.pipeline_latency, eng.patterns, eng.dtype, eng.slot_layout)

    @property
    def width(self) -> int:
        return 8 if self.dtype is DType.INT8 else 16

    @property
    def nmax(self) -> int:
        return max(p.n for p in self.patterns)

    @property
    def mmax(self) -> int:
        return max(p.m for p in self.patterns)

    @property
    def index_bits(self) -> int:
        return self.slot_layout.size - self.width

    @property
    def mode_bits(self) -> int:
        return max(1, (len(self.patterns) - 1).bit_length())

    def mode_code(self, nm: NM | str) -> int:
        """The ``mode`` input selecting pattern ``nm``: its position in ``array.nm_patterns``."""
        nm = NM.parse(nm)
        if nm not in self.patterns:
            raise ValueError(f"N:M pattern {nm} is not supported by this SORE "
                             f"({', '.join(map(str, self.patterns))})")
        return self.patterns.index(nm)

    def view_cycles(self, groups: int, nm: NM | str) -> int:
        """``ceil(groups / L) x M x cycles_per_weight + pipeline_latency`` (section 5)."""
        nm = NM.parse(nm)
        return (-(-groups // self.lanes) * nm.m * self.cycles_per_weight
                + self.pipeline_latency)

    # ---- layouts
    @property
    def weight_layout(self) -> data.StructLayout:
        """One weight into a lane: its bits and whether it pads a partial group."""
        return data.StructLayout({"value": self.width, "pad": 1})

    @property
    def beat_layout(self) -> data.ArrayLayout:
        return data.ArrayLayout(self.weight_layout, self.lanes)

    @property
    def group_layout(self) -> data.ArrayLayout:
        """A lane's result: N kept slots in increasing index order (slots >= N are zero)."""
        return data.ArrayLayout(self.slot_layout, self.nmax)

    @property
    def masks_layout(self) -> data.ArrayLayout:
        return data.ArrayLayout(self.group_layout, self.lanes)

    @property
    def entry_layout(self) -> data.StructLayout:
        """A kept-list entry: comparison key {magnitude, not pad}, value, index, occupied."""
        return data.StructLayout({"key": self.width + 1, "value": self.width,
                                  "index": self.index_bits, "used": 1})

    @property
    def list_layout(self) -> data.ArrayLayout:
        return data.ArrayLayout(self.entry_layout, self.nmax)


def pattern_field(shape: SoreShape, mode, field: str):
    """Runtime N or M (``field``) of the pattern selected by ``mode``."""
    value = Const(getattr(shape.patterns[-1], field))
    for code in reversed(range(len(shape.patterns) - 1)):
        value = Mux(mode == code, getattr(shape.patterns[code], field), value)
    return value


# --------------------------------------------------------------------------- components


class TopNInsert(wiring.Component):
    """Combinational: insert (key, value, index) into the kept list sorted by key.

    The new entry goes in front of the first entry it strictly exceeds (or the first free
    one) among the first ``n``; later entries shift down and the last falls off. ``fresh``
    treats the list as empty (the first weight of a group).
    """

    def __init__(self, shape: SoreShape):
        self.shape = shape
        e = shape.entry_layout
        super().__init__({"kept": In(shape.list_layout), "fresh": In(1), "mode": In(shape.mode_bits),
                          "entry": In(e), "out": Out(shape.list_layout)})

    def elaborate(self, platform) -> Module:
        m = Module()
        n = pattern_field(self.shape, self.mode, "n")
        prev_gt, prev = Const(0), self.kept[0]  # entry 0 never shifts in a predecessor
        for e in range(self.shape.nmax):
            cur = self.kept[e]
            occ = cur.used & ~self.fresh
            gt = Signal(name=f"gt{e}")
            m.d.comb += gt.eq((~occ | (self.entry.key > cur.key)) & (e < n))
            with m.If(gt & ~prev_gt):
                m.d.comb += self.out[e].eq(self.entry)
            with m.Elif(gt):
                m.d.comb += [self.out[e].eq(prev), self.out[e].used.eq(prev.used & ~self.fresh)]
            with m.Else():
                m.d.comb += [self.out[e].eq(cur), self.out[e].used.eq(occ)]
            prev_gt, prev = gt, cur
        return m


class IndexOrder(wiring.Component):
    """Combinational: the occupied list entries as slots in increasing index order.

    Entry e goes to slot rank(e) = the number of occupied entries with a lower index
    (indices within a group are distinct).
    """

    def __init__(self, shape: SoreShape):
        self.shape = shape
        super().__init__({"kept": In(shape.list_layout), "slots": Out(shape.group_layout)})

    def elaborate(self, platform) -> Module:
        m = Module()
        k, nmax = self.kept, self.shape.nmax
        for s in range(nmax):
            value, index = Const(0, self.shape.width), Const(0, 1)
            for e in range(nmax):
                rank = sum((k[f].used & (k[f].index < k[e].index)).as_unsigned()
                           for f in range(nmax) if f != e) if nmax > 1 else Const(0)
                hit = k[e].used & (rank == s)
                value, index = Mux(hit, k[e].value, value), Mux(hit, k[e].index, index)
            m.d.comb += [self.slots[s].value.eq(value), self.slots[s].index.eq(index)]
        return m


class Delay(wiring.Component):
    """A stream delayed by ``depth`` register stages (0: a wire); stalls as a whole.

    Every stage shifts when the output is empty or taken, so a beat entering in cycle t
    leaves in cycle t + depth unless the consumer holds the output.
    """

    def __init__(self, layout, depth: int):
        self.depth = depth
        super().__init__({"i": In(stream.Signature(layout)), "o": Out(stream.Signature(layout))})

    def elaborate(self, platform) -> Module:
        m = Module()
        if self.depth == 0:
            wiring.connect(m, wiring.flipped(self.i), wiring.flipped(self.o))
            return m
        shape = self.i.payload.shape()
        regs = [Signal(shape, name=f"stage{d}") for d in range(self.depth)]
        valid = [Signal(name=f"valid{d}") for d in range(self.depth)]
        advance = ~self.o.valid | self.o.ready
        m.d.comb += [self.i.ready.eq(advance), self.o.valid.eq(valid[-1]),
                     self.o.payload.eq(regs[-1])]
        with m.If(advance):
            m.d.sync += [regs[0].eq(self.i.payload), valid[0].eq(self.i.valid)]
            for d in range(1, self.depth):
                m.d.sync += [regs[d].eq(regs[d - 1]), valid[d].eq(valid[d - 1])]
        return m


class SoreLane(wiring.Component):
    """One streaming top-N-of-M sorter: weights in (one per ``cycles_per_weight`` cycles
    of presence), one group result out ``pipeline_latency`` cycles after its M-th weight.

    A weight is taken in the ``cycles_per_weight``-th cycle it is offered; a group's last
    weight waits if the output pipeline is held.
    """

    def __init__(self, shape: SoreShape):
        self.shape = shape
        super().__init__({"mode": In(shape.mode_bits),
                          "weights": In(stream.Signature(shape.weight_layout)),
                          "group": Out(stream.Signature(shape.group_layout))})

    def elaborate(self, platform) -> Module:
        m = Module()
        sh = self.shape
        m.submodules.insert = ins = TopNInsert(sh)
        m.submodules.order = order = IndexOrder(sh)
        m.submodules.delay = delay = Delay(sh.group_layout, sh.pipeline_latency)
        kept = Signal(sh.list_layout)
        pos = Signal(range(sh.mmax))
        phase = Signal(range(sh.cycles_per_weight))
        w = self.weights.payload
        ok = phase == sh.cycles_per_weight - 1
        last = pos == pattern_field(sh, self.mode, "m") - 1
        m.d.comb += [ins.kept.eq(kept), ins.fresh.eq(pos == 0), ins.mode.eq(self.mode),
                     ins.entry.key.eq(Cat(self._magnitude(w.value), ~w.pad)),
                     ins.entry.value.eq(Mux(w.pad, 0, w.value)),
                     ins.entry.index.eq(pos), ins.entry.used.eq(1),
                     order.kept.eq(ins.out), delay.i.payload.eq(order.slots),
                     delay.i.valid.eq(self.weights.valid & ok & last),
                     self.weights.ready.eq(ok & (~last | delay.i.ready))]
        wiring.connect(m, wiring.flipped(self.group), delay.o)
        with m.If(self.weights.valid & self.weights.ready):
            m.d.sync += [kept.eq(ins.out), pos.eq(Mux(last, 0, pos + 1)), phase.eq(0)]
        with m.Elif(self.weights.valid & ~ok):
            m.d.sync += phase.eq(phase + 1)
        return m

    def _magnitude(self, value) -> Signal:
        """Unsigned magnitude, ``width`` bits: floats clear the sign, integers take |x|."""
        width = self.shape.width
        if self.shape.dtype.is_float:
            return Cat(value[:width - 1], Const(0, 1))
        return Mux(value[width - 1], -value.as_signed(), value)[:width]


class Sore(wiring.Component):
    """L lanes in lock step: a beat of L weights in (lane l's in slot l), a beat of L
    group results out per round (``docs/architecture.md`` section 5).

    All lanes see the same ``valid``, ``ready`` and ``mode``, so their control state is
    identical and lane 0's handshake stands for all.
    """

    def __init__(self, shape: SoreShape):
        self.shape = shape
        super().__init__({"mode": In(shape.mode_bits),
                          "weights": In(stream.Signature(shape.beat_layout)),
                          "masks": Out(stream.Signature(shape.masks_layout))})

    def elaborate(self, platform) -> Module:
        m = Module()
        lanes = [SoreLane(self.shape) for _ in range(self.shape.lanes)]
        for i, lane in enumerate(lanes):
            m.submodules[f"lane{i}"] = lane
            m.d.comb += [lane.mode.eq(self.mode), lane.weights.valid.eq(self.weights.valid),
                         lane.weights.payload.eq(self.weights.payload[i]),
                         lane.group.ready.eq(self.masks.ready),
                         self.masks.payload[i].eq(lane.group.payload)]
        m.d.comb += [self.weights.ready.eq(lanes[0].weights.ready),
                     self.masks.valid.eq(lanes[0].group.valid)]
        return m


# --------------------------------------------------------------------------- host side


def _view_axis(view: SoreView) -> int:
    return 1 if view is SoreView.FF else 0


def view_groups(shape: tuple[int, int], nm: NM | str, view: SoreView) -> int:
    """Groups of one view of ``W[out, in]`` (a partial group counts as whole)."""
    nm = NM.parse(nm)
    ax = _view_axis(view)
    return shape[1 - ax] * -(-shape[ax] // nm.m)


def _group_coords(shape: tuple[int, int], nm: NM, view: SoreView, g: np.ndarray):
    """(row, column) of element 0 of groups ``g`` and the per-element (row, col) step."""
    ax = _view_axis(view)
    gq = -(-shape[ax] // nm.m)
    if view is SoreView.FF:  # row-major over [out, groups along in]
        return g // gq, (g % gq) * nm.m, (0, 1)
    return (g // shape[1]) * nm.m, g % shape[1], (1, 0)  # block of M rows, then column


def view_order(w_bits: np.ndarray, nm: NM | str, view: SoreView, lanes: int) -> list[list[tuple[int, int]]]:
    """The weight beats of one view: per beat, L (value bits, pad) pairs.

    ``w_bits`` holds ``W[out, in]`` as unsigned bit patterns. Beat ``t * M + i`` holds
    element i of groups ``t * L + l``; elements past the matrix edge and lanes past the last
    group are pads.
    """
    nm = NM.parse(nm)
    w_bits = np.asarray(w_bits)
    if w_bits.ndim != 2:
        raise ValueError(f"the SORE views a 2-D weight matrix, not {w_bits.ndim}-D")
    total = view_groups(w_bits.shape, nm, view)
    rounds = -(-total // lanes)
    g = np.arange(rounds * lanes).reshape(rounds, lanes)
    r0, c0, (dr, dc) = _group_coords(w_bits.shape, nm, view, g)
    beats = []
    for t in range(rounds):
        for i in range(nm.m):
            r, c = r0[t] + i * dr, c0[t] + i * dc
            live = (g[t] < total) & (r < w_bits.shape[0]) & (c < w_bits.shape[1])
            beats.append([(int(w_bits[r[l], c[l]]) if live[l] else 0, int(not live[l]))
                          for l in range(lanes)])
    return beats


def assemble(results: list[list[list[tuple[int, int]]]], shape: tuple[int, int],
             nm: NM | str, view: SoreView) -> tuple[np.ndarray, np.ndarray]:
    """(value bits, indices) of the compressed view from the SORE's output beats.

    ``results[t][l]`` is lane l's list of (value, index) slots in round t; the arrays have
    ``reference.compress(W, nm, axis)``'s layout (slot s of group q at q * N + s).
    """
    nm = NM.parse(nm)
    ax = _view_axis(view)
    out_shape = list(shape)
    out_shape[ax] = -(-shape[ax] // nm.m) * nm.n
    values = np.zeros(out_shape, np.uint64)
    indices = np.zeros(out_shape, np.uint64)
    total = view_groups(shape, nm, view)
    for t, beat in enumerate(results):
        for lane, slots in enumerate(beat):
            g = t * len(beat) + lane
            if g >= total:
                continue
            r, c, _ = _group_coords(shape, nm, view, np.array(g))
            for s, (v, i) in enumerate(slots[:nm.n]):
                at = (int(r), int(c) // nm.m * nm.n + s) if ax == 1 else \
                    (int(r) // nm.m * nm.n + s, int(c))
                values[at], indices[at] = v, i
    return values, indices


__all__ = ["SoreShape", "SoreLane", "Sore", "TopNInsert", "IndexOrder", "Delay",
           "view_order", "view_groups", "assemble"]
