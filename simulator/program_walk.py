"""The program as the system model walks it: counters, completion streams, the loop tree
and one cursor per instruction kind.

Every instruction kind (engine, load, store, SORE, vector engine) has a :class:`Cursor`
that walks the program in execution order, counting every instruction it passes
(``C_*`` counters: loads, loads per buffer, frees per buffer, engine, stores, SORE,
vector). A dependency is "completion number ``counter - back`` of stream ``S_*``"
(:mod:`nmsat.simulator.units` lists which, per instruction). A loop without any
instruction of the cursor's kind is stepped over in O(1) (:class:`Node` carries its
counter increments); loops with some are entered, and the cursor tells the steady-state
detector (:mod:`nmsat.simulator.steady_state`) when it enters a loop and finishes an
iteration, and skips whole periods when told to (:meth:`Cursor.skip`).
"""

from __future__ import annotations

import operator
from typing import TYPE_CHECKING, Any

from nmsat.dataflow.isa import (
    Barrier,
    Buffer,
    Compute,
    Load,
    Loop,
    Program,
    Release,
    Sore,
    Store,
    Unit,
    Vector,
    WeightUpdate,
)

__all__ = ["BARRIER", "MIN_SKIP_COUNT", "NCOUNT", "NSTREAM", "PROC_KINDS", "STREAM_OF_COUNTER",
           "UNITS", "UNIT_STREAM", "ZERO", "Cursor", "Frame", "Node", "add", "build_tree",
           "delta_of", "kind_of", "reads_of"]

if TYPE_CHECKING:
    from .system import _Sim

MIN_SKIP_COUNT = 5
"""Loops shorter than this are always simulated iteration by iteration."""

# Counters: how many instructions of each kind precede a position in execution order.
(C_LOAD, C_LACT, C_LWGT, C_PACT, C_PWGT, C_ENG, C_ST, C_SO, C_WU) = range(9)
NCOUNT = 9
# Streams of completion times, indexed by sequence number.
S_LOAD, S_LACT, S_LWGT, S_FACT, S_FWGT, S_ENG, S_ST, S_SO, S_WU = range(9)
NSTREAM = 9
STREAM_OF_COUNTER = {C_LOAD: S_LOAD, C_LACT: S_LACT, C_LWGT: S_LWGT, C_PACT: S_FACT,
                      C_PWGT: S_FWGT, C_ENG: S_ENG, C_ST: S_ST, C_SO: S_SO, C_WU: S_WU}
UNIT_STREAM = ((int(Unit.LOAD), S_LOAD, C_LOAD), (int(Unit.ENGINE), S_ENG, C_ENG),
                (int(Unit.STORE), S_ST, C_ST), (int(Unit.SORE), S_SO, C_SO),
                (int(Unit.WU), S_WU, C_WU))

# Cursor kinds (which instructions a cursor executes) and the processes that own them.
K_ENGINE, K_LOAD, K_STORE, K_SORE, K_WU = range(5)
BARRIER = -1
ENGINE, DMA, SORE, WU = "engine", "dma", "sore", "wu"
UNITS: tuple[str, ...] = (ENGINE, DMA, SORE, WU)
PROC_KINDS = {ENGINE: (K_ENGINE,), DMA: (K_LOAD, K_STORE), SORE: (K_SORE,), WU: (K_WU,)}

def kind_of(ins) -> int | None:
    if isinstance(ins, (Compute, Release)):
        return K_ENGINE
    if isinstance(ins, Load):
        return K_LOAD
    if isinstance(ins, Store):
        return K_STORE
    if isinstance(ins, Sore):
        return K_SORE
    if isinstance(ins, (WeightUpdate, Vector)):
        return K_WU
    return None


def delta_of(ins) -> tuple[int, ...]:
    d = [0] * NCOUNT
    if isinstance(ins, Load):
        d[C_LOAD] = 1
        d[C_LACT if ins.buffer is Buffer.ACT else C_LWGT] = 1
    elif isinstance(ins, Compute):
        d[C_ENG] = 1
        d[C_PACT] = int(ins.pop_a)
        d[C_PWGT] = int(ins.pop_b)
    elif isinstance(ins, Release):
        d[C_ENG] = 1
        d[C_PACT if ins.buffer is Buffer.ACT else C_PWGT] = 1
    elif isinstance(ins, Store):
        d[C_ST] = 1
    elif isinstance(ins, Sore):
        d[C_SO] = 1
    elif isinstance(ins, (WeightUpdate, Vector)):
        d[C_WU] = 1
    return tuple(d)


def reads_of(ins) -> set[int]:
    """Streams an instruction's dependencies read."""
    if isinstance(ins, Load):
        return {S_FACT if ins.buffer is Buffer.ACT else S_FWGT}
    if isinstance(ins, Compute):
        return {S_LACT, S_LWGT, S_ST}
    if isinstance(ins, Release):
        return {S_LACT if ins.buffer is Buffer.ACT else S_LWGT}
    if isinstance(ins, Store):
        return {S_ENG}
    if isinstance(ins, Barrier):
        return {s for u, s, _ in UNIT_STREAM if int(ins.units) & u}
    return set()


def add(a, b, times: int = 1) -> tuple[int, ...]:
    if times == 1:
        return tuple(map(operator.add, a, b))
    return tuple([x + y * times for x, y in zip(a, b)])


ZERO = (0,) * NCOUNT


class Node:
    """A loop of the program tree (the root is a loop of count 1)."""

    __slots__ = ("nid", "count", "items", "delta", "own", "reads", "writes", "last_barrier",
                 "has_barrier")

    def __init__(self, nid: int, count: int) -> None:
        self.nid = nid
        self.count = count
        self.items: list = []  # instruction indices and child _Nodes
        self.delta = ZERO  # counter increments of one iteration
        self.own: set[int] = set()  # cursor kinds with instructions inside
        self.reads: set[int] = set()
        self.writes: set[int] = set()
        # (units, counters after the last barrier up to the end of one iteration), or None
        # Per unit (index into UNIT_STREAM): instructions of that unit after the last
        # barrier naming it, to the end of one iteration; None: no such barrier inside.
        self.last_barrier: list[int | None] = [None] * len(UNIT_STREAM)
        self.has_barrier = False


def build_tree(prog: Program, deltas: list[tuple[int, ...]] | None = None) -> Node:
    """The program's loop tree; ``deltas``: :func:`delta_of` of every instruction, if the
    caller has them."""
    instrs = prog.instructions
    if deltas is None:
        deltas = [delta_of(ins) for ins in instrs]
    nodes = [0]

    def build(start: int, end: int, count: int) -> Node:
        node = Node(nodes[0], count)
        nodes[0] += 1
        i = start
        while i < end:
            ins = instrs[i]
            if isinstance(ins, Loop):
                child = build(i + 1, i + 1 + ins.body, ins.count)
                node.items.append(child)
                i += 1 + ins.body
            else:
                node.items.append(i)
                i += 1
        delta = ZERO
        for it in node.items:
            if isinstance(it, Node):
                delta = add(delta, it.delta, it.count)
                node.own |= it.own
                node.reads |= it.reads
                node.writes |= it.writes
            else:
                ins = instrs[it]
                delta = add(delta, deltas[it])
                k = kind_of(ins)
                if k is not None:
                    node.own.add(k)
                node.reads |= reads_of(ins)
                node.has_barrier |= isinstance(ins, Barrier)
        node.has_barrier |= any(isinstance(x, Node) and x.has_barrier for x in node.items)
        node.delta = delta
        node.writes |= {STREAM_OF_COUNTER[c] for c in range(NCOUNT) if delta[c]}
        tail = ZERO
        # last_barrier stays None for every unit without a barrier inside
        for it in reversed(node.items) if node.has_barrier else ():
            for u, (mask, _, cn) in enumerate(UNIT_STREAM):
                if node.last_barrier[u] is not None:
                    continue
                if isinstance(it, Node):
                    inner = it.last_barrier[u]
                    if inner is not None:
                        node.last_barrier[u] = tail[cn] + inner
                elif isinstance(instrs[it], Barrier) and int(instrs[it].units) & mask:
                    node.last_barrier[u] = tail[cn]
            if isinstance(it, Node):
                tail = add(tail, it.delta, it.count)
            else:
                tail = add(tail, deltas[it])
        return node

    return build(0, len(instrs), 1)


class Frame:
    __slots__ = ("node", "it", "child", "key", "marks", "entry", "depth", "inst")

    def __init__(self, node: Node, key, entry) -> None:
        self.node = node
        self.it = 0
        self.child = 0
        self.key = key
        self.entry = entry
        self.depth = 0
        self.marks: dict[tuple, int] = {}
        # the steady-state detector's record of this loop instance (of ``key``), once
        # looked up; None again whenever ``key`` changes
        self.inst: Any = None


class Cursor:
    """Walks the program for one instruction kind, counting every instruction it passes.

    :meth:`next` stops *at* the next own instruction (the position before it);
    :meth:`commit` moves past it once executed. ``barrier`` is the latest barrier passed:
    (units, counters there, ids of the loop frames it was passed in).
    """

    def __init__(self, sim: _Sim, kind: int, root: Node) -> None:
        self.sim = sim
        self.kind = kind
        self.counters = list(ZERO)
        # Per unit: (count of its instructions before the latest barrier naming it, ids
        # of the loop frames that barrier was passed in); None: no such barrier yet.
        self.barrier: list[tuple[int, frozenset] | None] = [None] * len(UNIT_STREAM)
        # the (stream, number) waits the barriers above impose (units.deps), or None when
        # a barrier changed since they were listed
        self.barrier_deps: list[tuple[int, int]] | None = []
        self.frames = [Frame(root, (root.nid, ZERO), ZERO)]
        self.log: list[tuple[dict, object, int]] = []  # accumulations, for skipped periods
        self.done = False
        # Where skips can happen: the DMA skips with its queue heads fetched, the other
        # units between instructions.
        self.mark_on_stop = kind in (K_LOAD, K_STORE)

    def _ids(self) -> frozenset:
        return frozenset(id(f) for f in self.frames)

    def next(self):
        """The next own instruction's index (the cursor stays before it), or None."""
        sim = self.sim
        frames = self.frames
        kinds = sim.kinds
        steps = sim.delta_steps
        own = self.kind
        while frames:
            counters = self.counters
            f = frames[-1]
            node = f.node
            items = node.items
            end = len(items)
            child = f.child
            # Instructions of other kinds: count them and move on.
            while child < end:
                item = items[child]
                if item.__class__ is Node:
                    break
                kind = kinds[item]
                if kind == own:
                    f.child = child
                    if self.mark_on_stop:
                        self.mark()
                    return item
                child += 1
                if kind == BARRIER:
                    units = sim.barrier_units[item]
                    ids = self._ids()
                    for u, (mask, _, cn) in enumerate(UNIT_STREAM):
                        if units & mask:
                            self.barrier[u] = (counters[cn], ids)
                    self.barrier_deps = None
                for c, v in steps[item]:
                    counters[c] += v
            f.child = child
            if child >= end:
                # End of an iteration.
                f.it += 1
                f.child = 0
                if len(frames) > 1:
                    sim.steady.iteration_done(self, f)
                if f.it >= node.count:
                    frames.pop()
                    if frames:
                        frames[-1].child += 1
                continue
            item = items[child]
            if own in item.own:
                key = (item.nid, tuple(counters))
                nf = Frame(item, key, key[1])
                nf.depth = len(frames)
                frames.append(nf)
                sim.steady.loop_entered(self, key, item)
                continue
            if item.has_barrier:
                exit_c = add(counters, item.delta, item.count)
                ids = self._ids()
                for u, (_, _, cn) in enumerate(UNIT_STREAM):
                    tail = item.last_barrier[u]
                    if tail is not None:
                        self.barrier[u] = (exit_c[cn] - tail, ids)
                self.barrier_deps = None
            count = item.count
            for c, v in enumerate(item.delta):
                if v:
                    counters[c] += v * count
            f.child = child + 1
        self.done = True
        return None

    def subpos(self, depth: int) -> tuple:
        """Position relative to the frame at ``depth``: its child and everything deeper."""
        fr = self.frames
        if depth + 1 == len(fr):
            return (fr[depth].child,)
        return (fr[depth].child,) + tuple((g.it, g.child) for g in fr[depth + 1:])

    def mark(self) -> None:
        """Remember the accumulation log length at this position, in every loop frame
        long enough to be skipped (see :data:`MIN_SKIP_COUNT`)."""
        n = len(self.log)
        fr = self.frames
        # (f.it,) + self.subpos(depth) of every frame, built from the innermost out
        tail: tuple = ()
        for depth in range(len(fr) - 1, 0, -1):
            f = fr[depth]
            pos = (f.it, f.child)
            if f.node.count >= MIN_SKIP_COUNT:
                f.marks.setdefault(pos + tail, n)
            tail = (pos,) + tail

    def commit(self, idx: int) -> None:
        counters = self.counters
        for c, v in self.sim.delta_steps[idx]:
            counters[c] += v
        self.frames[-1].child += 1

    def frame_of(self, key) -> Frame | None:
        for f in self.frames:
            if f.key == key:
                return f
        return None

    def can_skip(self, frame: Frame, p: int) -> bool:
        return (frame.it - p,) + self.subpos(frame.depth) in frame.marks

    def skip(self, frame: Frame, q: int, p: int) -> None:
        """Skip ``q`` periods of ``p`` iterations of ``frame`` from the current position
        (anywhere inside it), adding the last period's accumulations ``q`` times."""
        span = q * p
        mark = frame.marks[(frame.it - p,) + self.subpos(frame.depth)]
        agg: dict[tuple[int, object], list] = {}
        for d, key, amount in self.log[mark:]:
            e = agg.get((id(d), key))
            if e is None:
                agg[(id(d), key)] = [d, key, amount]
            else:
                e[2] += amount
        for d, key, amount in agg.values():
            d[key] = d.get(key, 0) + amount * q
            self.log.append((d, key, amount * q))
        delta = frame.node.delta
        self.counters = list(add(self.counters, delta, span))
        for u, (_, _, cn) in enumerate(UNIT_STREAM):
            b = self.barrier[u]
            if b is not None and id(frame) in b[1]:
                self.barrier[u] = (b[0] + delta[cn] * span, b[1])
        self.barrier_deps = None
        frame.it += span
        # Loop instances inside the skipped frame are now later instances.
        for g in self.frames[frame.depth + 1:]:
            g.entry = add(g.entry, delta, span)
            old = g.key
            g.key = (g.node.nid, g.entry)
            g.inst = None
            self.sim.steady.rename_instance(self, old, g.key, g.node)
            g.marks.clear()
        frame.marks.clear()
        self.mark()


