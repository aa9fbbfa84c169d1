"""The N:M processing element: A:1 activation muxes, P multipliers, pairwise tree, accumulator.

docs/architecture.md section 3.1. :class:`ChunkDot` is the datapath from one chunk to its
tree sum, combinational or with register stages between its operations; :class:`NMPE`
wraps it with stream ports and the La-cycle accumulator for stand-alone use; the systolic
array cells reuse :class:`ChunkDot`, staged by :func:`dot_stages`.
"""

from __future__ import annotations

from amaranth.hdl import Const, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .layouts import EngineShape
from .stages import F32_ADD_NS, F32_MUL_NS, balanced_cuts


def lane_select(shape: EngineShape, lane: int, mode, index) -> tuple[Signal, Signal]:
    """(window position, idle) of multiplier ``lane`` for the runtime ``mode`` code.

    Dense (mode 0): position ``lane``. Pattern N:M: with g = min(P // N, A // M) groups per
    chunk, lanes below gN take ``(lane // N) * M + index``; the others are idle.
    """
    cases = [(0, Const(lane), Const(0))]
    for code, nm in enumerate(shape.patterns, start=1):
        g = nm.groups_per_chunk(shape.lanes, shape.window)
        if lane < g * nm.n:
            cases.append((code, (lane // nm.n) * nm.m + index[:max(1, nm.index_bits)]
                          if nm.index_bits else Const((lane // nm.n) * nm.m), Const(0)))
        else:
            cases.append((code, Const(0), Const(1)))
    pos, idle = Const(0), Const(1)
    for code, p, i in reversed(cases):
        pos, idle = Mux(mode == code, p, pos), Mux(mode == code, i, idle)
    return pos, idle


# Delays of the PE's operations for placing register stages, from the measured estimates
# in :mod:`.stages`: an fp32 add, and a multiplier at the fp32 one's (an upper bound: the
# PE's fp16 products are exact and need no rounding). They pick where the cuts go, never
# a result.
MUL_DELAY = F32_MUL_NS
ADD_DELAY = F32_ADD_NS


def dot_stages(lanes: int, registers: int) -> tuple[int, ...]:
    """Where a chunk's path through a PE takes ``registers`` register stages.

    The path is the multiplier, the log2(P) levels of the product tree and the accumulate
    add, in that order; the result is, per operation before the accumulate add, the number
    of registers after it (so the add is in the last stage). With at least one register
    per boundary every operation gets its own stage and the rest delay the tree's sum;
    with fewer, the cuts minimise the longest stage (delays :data:`MUL_DELAY`,
    :data:`ADD_DELAY`), and of equal plans the one whose cuts lie latest, where the
    values are narrower (P/2^k sums after level k).
    """
    levels = max(0, (lanes - 1).bit_length())
    ops = [MUL_DELAY] + [ADD_DELAY] * levels + [ADD_DELAY]  # ..., the accumulate add
    bounds = len(ops) - 1
    if registers >= bounds:
        return (1,) * (bounds - 1) + (1 + registers - bounds,) if bounds else ()
    # latest cuts first: compare the last cut, then the one before, larger is better
    cuts = balanced_cuts(ops, registers, lambda cs: tuple(-c for c in reversed(cs)))
    return tuple(int(b + 1 in cuts) for b in range(bounds))


class ChunkDot(wiring.Component):
    """Tree sum of one chunk (``act`` window, weight ``w`` slots, ``mode``).

    Idle lanes give exactly +0; the P products are summed pairwise, an odd level padded
    with +0 (reference ``_tree_sum_fp32``). ``stages`` (:func:`dot_stages`) puts that many
    registers after the multipliers and after each tree level: ``sum`` is then the sum of
    the chunk presented ``sum(stages)`` clock steps before; empty, it is combinational.
    """

    def __init__(self, shape: EngineShape, stages: tuple[int, ...] = ()):
        self.shape, self.stages = shape, stages
        super().__init__({"act": In(shape.window_layout), "w": In(shape.slots_layout),
                          "mode": In(shape.mode_bits), "sum": Out(32)})

    def _cut(self, m: Module, level: list, op: int) -> list:
        """``level`` through the registers that follow operation ``op``."""
        for r in range(self.stages[op] if op < len(self.stages) else 0):
            regs = [Signal(32, name=f"s{op}_{r}_{i}") for i in range(len(level))]
            m.d.sync += [q.eq(v) for q, v in zip(regs, level)]
            level = regs
        return level

    def elaborate(self, platform) -> Module:
        m = Module()
        num = self.shape.numeric
        level = []
        for p in range(self.shape.lanes):
            pos, idle = lane_select(self.shape, p, self.mode, self.w[p].index)
            a = Signal(num.width, name=f"a{p}")
            m.d.comb += a.eq(self.act[pos])
            prod = num.mul(m, a, self.w[p].value)
            level.append(Mux(idle, 0, prod))
        level = self._cut(m, level, 0)
        depth = 0
        while len(level) > 1:
            if len(level) % 2:
                level.append(Const(0, 32))
            depth += 1
            level = [num.tree_add(m, level[i], level[i + 1], depth)
                     for i in range(0, len(level), 2)]
            level = self._cut(m, level, depth)
        m.d.comb += self.sum.eq(level[0])
        return m


class NMPE(wiring.Component):
    """One PE as a stream unit: chunks in (``first``/``last`` delimit a dot product),
    the accumulated fp32/int32 result out after the ``last`` chunk.

    The accumulate takes La cycles, so a chunk is accepted at most every La cycles (no
    interleave in a stand-alone PE): ``acc = acc + tree`` from +0, chunks in order.
    """

    def __init__(self, shape: EngineShape):
        self.shape = shape
        super().__init__({"mode": In(shape.mode_bits),
                          "chunk": In(stream.Signature(shape.chunk_layout)),
                          "result": Out(stream.Signature(32))})

    def elaborate(self, platform) -> Module:
        m = Module()
        m.submodules.dot = dot = ChunkDot(self.shape)
        la = self.shape.acc_latency
        acc = Signal(32)
        busy = Signal(range(la))  # accumulator stages still in flight
        pending = Signal()  # acc holds a finished dot product
        m.d.comb += [dot.act.eq(self.chunk.payload.act), dot.w.eq(self.chunk.payload.w),
                     dot.mode.eq(self.mode)]
        total = self.shape.numeric.add(m, Mux(self.chunk.payload.first, 0, acc), dot.sum)
        m.d.comb += [self.result.valid.eq(pending & (busy == 0)),
                     self.chunk.ready.eq((busy == 0) & (~pending | self.result.ready))]
        with m.If(self.result.valid & self.result.ready):
            m.d.sync += pending.eq(0)
        with m.If(busy != 0):
            m.d.sync += busy.eq(busy - 1)
        with m.If(self.chunk.valid & self.chunk.ready):
            m.d.sync += [acc.eq(total), busy.eq(la - 1), pending.eq(self.chunk.payload.last)]
        m.d.comb += self.result.payload.eq(acc)
        return m


__all__ = ["MUL_DELAY", "ADD_DELAY", "NMPE", "ChunkDot", "dot_stages", "lane_select"]
