"""Loops without simulating every iteration: the steady-state detector.

Every process walks the program with its own cursor (:mod:`.program_walk`). Inside a
loop, when every participating process has finished iteration ``i``, the detector
compares the complete timing state with the state after iteration ``i - p`` (for p =
1..:data:`MAX_PERIOD`): the processes' clocks, positions and pending barriers, the DMA's
and memory model's state (:meth:`.dma.DmaService.state`), and the recent completion times
of every synchronisation stream the loop reads or writes. All updates are of the
max-plus form ``max(a + x, b + y)`` and every decision compares times, so if the new
state equals the old one shifted by ``d`` cycles (integers, exactly), every later
iteration repeats the one ``p`` before it ``d`` cycles later. Each process then skips
``q`` whole periods at its next boundary (:meth:`SteadyState.maybe_jump`): its clock
advances ``q*d``, its counters ``q`` periods, its busy/stall cycles grow by ``q`` times
those of its last period, and the skipped completions are answered as ``base + m*d``
(:meth:`.streams.Streams.skip`). ``tests/test_system_extrapolation.py`` checks the result
is identical to simulating every iteration, on random programs.
"""

from __future__ import annotations

import operator
from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .program_walk import (
    C_ENG,
    C_LACT,
    C_LOAD,
    C_LWGT,
    C_PACT,
    C_PWGT,
    C_SO,
    C_ST,
    C_WU,
    DMA,
    K_ENGINE,
    K_LOAD,
    K_SORE,
    K_STORE,
    K_WU,
    MIN_SKIP_COUNT,
    NCOUNT,
    NSTREAM,
    PROC_KINDS,
    S_ENG,
    S_FACT,
    S_FWGT,
    S_LACT,
    S_LOAD,
    S_LWGT,
    S_SO,
    S_ST,
    S_WU,
    STREAM_OF_COUNTER,
    UNIT_STREAM,
    Cursor,
    Frame,
    Node,
)

__all__ = ["MAX_PERIOD", "MAX_PROBE", "SteadyState"]

if TYPE_CHECKING:
    from .system import _Sim

MAX_PERIOD = 6
"""Longest period (in loop iterations) the steady-state detector looks for."""
MAX_PROBE = 40
"""Iterations of a loop after which the detector stops looking for a steady state."""

@dataclass(frozen=True)
class _Jump:
    i: int  # iteration whose state proved the period
    p: int  # period, iterations
    d: int  # cycles per period
    span: int  # iterations every process skips


class _Instance:
    """Book-keeping of one execution of a loop (for steady-state detection)."""

    __slots__ = ("node", "kinds", "finished", "states", "jump", "windows", "streams",
                 "parts", "stream_counters")

    def __init__(self, node: Node, kinds: set[int]) -> None:
        self.node = node
        self.kinds = kinds
        self.streams = tuple(sorted(node.reads | node.writes))  # the loop's streams
        # (stream, its counter) of the loop's streams; (unit, its kinds in the loop)
        self.stream_counters = tuple((st, _COUNTER_OF[st]) for st in self.streams)
        self.parts = tuple((u, tuple(k for k in ks if k in kinds))
                           for u, ks in PROC_KINDS.items() if any(k in kinds for k in ks))
        self.finished: dict[int, int] = defaultdict(int)
        self.states: dict[int, tuple] = {}
        self.windows: dict[int, tuple | None] = {}
        self.jump: _Jump | None = None




class SteadyState:
    """Finds proven periods of loops and makes every process skip them."""

    def __init__(self, sim: _Sim) -> None:
        self.sim = sim
        self.instances: dict[tuple, _Instance] = {}
        self.pending_jump: dict[str, list[tuple]] = {u: [] for u in PROC_KINDS}
        self.jumps: list = []

    def loop_entered(self, cur: Cursor, key, node: Node) -> None:
        if key not in self.instances:
            self.instances[key] = _Instance(node, set(node.own))

    def _has_jump(self, key) -> bool:
        inst = self.instances.get(key)
        return inst is not None and inst.jump is not None

    def rename_instance(self, cur: Cursor, old, new, node: Node) -> None:
        """A cursor skipped into a later instance of an inner loop: carry its pending
        jump (if any) over to the new instance."""
        inst = self.instances.get(old)
        if new not in self.instances:
            ni = _Instance(node, set(node.own))
            if inst is not None and inst.jump is not None:
                ni.jump = inst.jump
            self.instances[new] = ni
        unit = self.sim.proc_of_kind[cur.kind]
        pend = self.pending_jump[unit]
        if old in pend:
            pend.remove(old)
            if new not in pend:
                pend.append(new)

    def iteration_done(self, cur: Cursor, frame: Frame) -> None:
        inst = frame.inst
        if inst is None:  # instances are never replaced: the frame keeps its key's record
            inst = self.instances.get(frame.key)
            if inst is None:
                inst = self.instances[frame.key] = _Instance(frame.node, set(frame.node.own))
            frame.inst = inst
        if inst.jump is not None:
            return
        i = frame.it - 1
        inst.finished[i] += 1
        if inst.finished[i] < len(inst.kinds):
            return
        del inst.finished[i]
        if not self.sim.extrapolate or frame.node.count - i < MIN_SKIP_COUNT or i > MAX_PROBE:
            # Too few iterations left for a skip to pay for the comparison, or no steady
            # state after many tries: simulate the rest as it comes.
            return
        state = self._state(frame.key, inst)
        if state is None:
            inst.states.clear()
            return
        inst.states[i] = state
        inst.states.pop(i - MAX_PERIOD - 1, None)
        inst.windows.pop(i - MAX_PERIOD - 1, None)
        for p in range(1, MAX_PERIOD + 1):
            old = inst.states.get(i - p)
            if old is None:
                continue
            dd = self._period(old, state, p)
            if dd is None:
                continue
            w0 = inst.windows.get(i - p)
            if w0 is None:
                w0 = inst.windows[i - p] = self._windows(old, inst.node)
            w1 = inst.windows.get(i)
            if w1 is None:
                w1 = inst.windows[i] = self._windows(state, inst.node)
            if (w0 is None or w1 is None or len(w0[0]) != len(w1[0]) or w0[1] != w1[1]
                    or w0[2] != w1[2]
                    or any(b - a != dd for a, b in zip(w0[0], w1[0]))
                    or any(t > old[0][0] for t in w0[1])):
                continue
            # All processes skip the same span; leave the last iterations real so the
            # loop's exit (when the leading unit moves on to later work) is simulated.
            its = state[2]
            gap = max(its) - min(its)
            last = max(its) + 1
            q = (frame.node.count - 1 - last - gap - 1) // p
            if q < 1:
                return
            span = q * p
            if DMA in self._units_of(inst) and not self._other_queue_waits(inst, span):
                return
            inst.jump = _Jump(i, p, dd, span)
            inst.states.clear()
            for u in self._units_of(inst):
                self.pending_jump[u].append(frame.key)
            return

    @staticmethod
    def _units_of(inst: _Instance) -> list[str]:
        return [u for u, ks in PROC_KINDS.items() if any(k in inst.kinds for k in ks)]

    def _state(self, key, inst: _Instance):
        """The timing state now: (times that must all shift by the same d, values that
        must match exactly, iteration indices that must advance by p, counts with their
        growth per iteration, constant completion times that must not bind); None if
        it cannot be captured (a cursor left the loop, a completion not yet scheduled)."""
        sim = self.sim
        now = int(sim.env.now)
        times: list[int] = [now]
        exact: list = []
        its: list[int] = []
        counts: list[tuple[int, int]] = []
        fixed: list[int] = []
        node = inst.node
        delta = node.delta
        pending_jump = self.pending_jump
        for u, part in inst.parts:
            if u == DMA:
                # The memory model's and the DMA's state; a queue outside the loop must
                # sit at the same instruction.
                dt, de = sim.dma.state(now, inst.kinds)
                times.extend(dt)
                exact.extend(de)
            else:
                times.append(sim.clock[u])
            for k in part:
                cur = sim.cursors[k]
                f = cur.frame_of(key)
                if f is None:
                    return None
                exact.append((k, cur.subpos(f.depth), tuple(
                    (g.key in pending_jump[u], self._has_jump(g.key))
                    for g in cur.frames[f.depth + 1:])))
                its.append(f.it)
                counts.extend(zip(cur.counters, delta))
                for bu, b in enumerate(cur.barrier):
                    if b is None:
                        exact.append(None)
                        continue
                    inside = id(f) in b[1]
                    cn, st = UNIT_STREAM[bu][2], UNIT_STREAM[bu][1]
                    exact.append(inside)
                    counts.append((b[0], delta[cn] if inside else 0))
                    if not inside and b[0] > 0:
                        t = self.sim.streams.peek(st, b[0] - 1)
                        if t is None:
                            return None
                        fixed.append(t)
        reads = self._next_reads()
        entry = key[1]
        streams = self.sim.streams
        scount = streams.count
        for st, c in inst.stream_counters:
            n = scount[st]
            first = entry[c]
            low = n
            before = None
            for r in reads[st]:
                if r < first:
                    if before is None:
                        before = set()
                    before.add(r)
                elif r < low:
                    low = r
            # Completions from before the loop that a cursor can still wait for (an
            # earlier barrier's) never move: they must be equal and already past.
            if before is not None:
                for j in sorted(before):
                    t = streams.peek(st, j)
                    if t is None:
                        return None
                    fixed.append(t)
            # From the loop's own completions, every one a cursor can still read.
            counts.append((n, delta[c]))
            counts.append((n - low, 0))
        return times, exact, its, counts, fixed

    def _next_reads(self) -> list[list[int]]:
        """Per stream, the sequence numbers the cursors' next waits need (reads only move
        forward, so nothing older is ever read again)."""
        h = self.sim.halves
        out: list[list[int]] = [[] for _ in range(NSTREAM)]
        for cur in self.sim.cursors.values():
            if cur.done:
                continue
            c = cur.counters
            # (stream, sequence number) of each wait; negative numbers are no wait
            reads: tuple[tuple[int, int], ...]
            if cur.kind == K_LOAD:
                reads = ((S_FACT, c[C_LACT] - h[S_FACT]), (S_FWGT, c[C_LWGT] - h[S_FWGT]))
            elif cur.kind == K_ENGINE:
                reads = ((S_LACT, c[C_PACT]), (S_LWGT, c[C_PWGT]), (S_ST, c[C_ST] - h[S_ST]))
            elif cur.kind == K_STORE:
                reads = ((S_ENG, c[C_ENG] - 1),)
            else:
                reads = ()
            for st, r in reads:
                if r >= 0:
                    out[st].append(r)
            for st, b in zip(_BARRIER_STREAMS, cur.barrier):
                if b is not None and b[0] > 0:
                    out[st].append(b[0] - 1)
        return out

    def _windows(self, state, node: Node):
        """The recent completions of the loop's streams at a captured state (completions
        never change once scheduled, so this can be read later): (moving, fixed) times,
        or None if one is not scheduled yet."""
        moving: list[int] = []
        fixed: list[int] = []
        counts = state[3]
        streams = sorted(node.reads | node.writes)
        causes: list[str] = []
        tail = counts[len(counts) - 2 * len(streams):]
        for k, st in enumerate(streams):
            (n, per), (window, _) = tail[2 * k], tail[2 * k + 1]
            if window > 4096:
                return None
            for j in range(n - window, n):
                t = self.sim.streams.peek(st, j)
                if t is None:
                    return None
                (moving if per else fixed).append(t)
                causes.append(self.sim.streams.cause(st, j))
        return moving, fixed, causes

    @staticmethod
    def _counter_of(s: int) -> int:
        return _COUNTER_OF[s]

    @staticmethod
    def _period(old, new, p: int) -> int | None:
        """d if ``new`` is ``old`` shifted by d cycles and p iterations, else None."""
        t0, e0, i0, c0, f0 = old
        t1, e1, i1, c1, f1 = new
        if len(t0) != len(t1) or e0 != e1 or len(c0) != len(c1) or len(f0) != len(f1):
            return None
        d = t1[0] - t0[0]
        # every time moved by d, every iteration index by p (element-wise differences)
        if d <= 0 or list(map(operator.sub, t1, t0)) != [d] * len(t0):
            return None
        if list(map(operator.sub, i1, i0)) != [p] * min(len(i0), len(i1)):
            return None
        if any(nb - na != p * g for (na, g), (nb, _) in zip(c0, c1)):
            return None
        # Completions that do not move with the loop must be equal and already past
        # (so they can never bind a later instruction: every start is >= now).
        if f0 != f1 or any(t > t0[0] for t in f0):
            return None
        return d

    def maybe_jump(self, unit: str) -> int:
        """Skip the proven periods for ``unit`` once each of its cursors in the loop is
        at or past iteration i + p; returns the cycles to advance its clock (0: none)."""
        pend = self.pending_jump[unit]
        if not pend:
            return 0
        total = 0
        for key in list(pend):
            inst = self.instances[key]
            j = inst.jump
            if j is None:  # pragma: no cover - only loops with a proven jump are pending
                raise AssertionError("a pending loop without a jump")
            frames = []
            ready = True
            for k in PROC_KINDS[unit]:
                if k not in inst.kinds:
                    continue
                cur = self.sim.cursors[k]
                f = cur.frame_of(key)
                if f is None:  # pragma: no cover - the span leaves room for every cursor
                    raise AssertionError("a cursor left a loop before taking its proven skip")
                if f.it < j.i + j.p or not cur.can_skip(f, j.p):
                    ready = False
                    break
                frames.append((cur, f))
            if not ready:
                continue
            pend.remove(key)
            q = j.span // j.p
            shift = q * j.d
            for cur, f in frames:
                if f.it + j.span > f.node.count - 1:  # pragma: no cover - guarded by span
                    raise AssertionError("skip past the end of a loop")
                before = tuple(cur.counters)
                cur.skip(f, q, j.p)
                for c in range(NCOUNT):
                    per = f.node.delta[c] * j.p
                    st = STREAM_OF_COUNTER[c]
                    if per and _kind_produces(cur.kind, st):
                        start = before[c] - 1
                        self.sim.streams.skip(st, start, q * per, per, j.d)
            now = int(self.sim.env.now)
            kinds = {cur.kind for cur, _ in frames}
            if unit == DMA:
                self.sim.dma.shift(now, shift, kinds)
            else:
                self.sim.clock[unit] += shift
            self.jumps.append((unit, inst.node.nid, j.p, q, j.d))
            if self.sim.ledger.record:
                # One interval stands for the skipped iterations on the timeline.
                cur0 = frames[0][0]
                idx = self._first_own(cur0, frames[0][1])
                key = self.sim.attr[idx] if idx is not None else ("", "")
                self.sim.ledger.log(unit, now, now + shift, key, f"repeat x{j.span}")
            total += shift
        return total

    def _first_own(self, cur: Cursor, frame: Frame) -> int | None:
        """An instruction of ``cur``'s kind in ``frame``'s loop body (for labels)."""
        stack = [frame.node]
        while stack:
            node = stack.pop()
            for it in node.items:
                if isinstance(it, Node):
                    stack.append(it)
                elif self.sim.kinds[it] == cur.kind:
                    return it
        return None

    def _other_queue_waits(self, inst: _Instance, span: int) -> bool:
        """A DMA queue with no instruction in the loop must be done, or wait for a
        completion the loop produces after the skipped iterations (else it could issue
        in the middle of them and share the channels)."""
        node = inst.node
        for q, k in ((0, K_LOAD), (1, K_STORE)):
            if k in inst.kinds or self.sim.dma.heads[q] is None:
                continue
            ok = False
            for st, n in self.sim.dma.deps[q] or ():
                per = node.delta[self._counter_of(st)]
                if per and st in node.writes and n >= self.sim.streams.count[st] + span * per:
                    ok = True
            if not ok:
                return False
        return True



_COUNTER_OF = {S_LOAD: C_LOAD, S_LACT: C_LACT, S_LWGT: C_LWGT, S_FACT: C_PACT,
               S_FWGT: C_PWGT, S_ENG: C_ENG, S_ST: C_ST, S_SO: C_SO, S_WU: C_WU}
"""The counter whose value is the next sequence number of each stream."""

_BARRIER_STREAMS = tuple(st for _, st, _ in UNIT_STREAM)
"""The stream a barrier naming each unit (index into ``UNIT_STREAM``) waits on."""

_PRODUCES = {K_ENGINE: (S_ENG, S_FACT, S_FWGT), K_LOAD: (S_LOAD, S_LACT, S_LWGT),
             K_STORE: (S_ST,), K_SORE: (S_SO,), K_WU: (S_WU,)}


def _kind_produces(kind: int, s: int) -> bool:
    return s in _PRODUCES[kind]


