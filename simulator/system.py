"""SimPy system model: the accelerator's units executing a tile program concurrently.

The program is the dataflow compiler's :class:`~nmsat.dataflow.isa.Program`, run with the
execution model of ``docs/isa.md``. Four SimPy processes:

``engine``
    The tensor engine: ``COMPUTE`` (busy for :func:`nmsat.simulator.tile_model.compute_cycles`)
    and ``RELEASE`` (zero cycles).
``dma``
    One DMA engine with two in-order descriptor queues, ``LOAD`` and ``STORE``. A descriptor
    is issued once its dependencies are met and the previous one of its queue was issued;
    when both queue heads are ready the earlier-ready one goes first (a tie: the load).
    Several requests may be in flight. Each of the ``dram.channels`` channels has its own
    data bus of ``dram.bytes_per_cycle``; a transfer is rounded up to ``dram.burst_bytes``
    bursts striped over the channels (address interleaving, first burst on channel 0),
    its first byte leaves a channel ``dram.latency_cycles`` after issue, and it completes
    when its last channel finishes (completions are reported in queue order). Loads and
    stores share the channels. A transfer also streams through its buffer's DMA port
    (``banks x bank_bytes_per_cycle`` bytes per cycle, half that with one port per bank),
    from its first byte on, after the buffer's previous transfer: it completes no earlier
    than that (``docs/architecture.md`` section 7).
``sore``
    The sparse online reduction engine (``SORE``).
``wu``
    The weight-update / vector engine (``WEIGHT_UPDATE``, ``VECTOR``).

The SORE and vector engine stream their operands from DRAM themselves: an instruction
takes ``max(lane cycles, latency + bytes / (channels x bytes_per_cycle))``. Their traffic
is not arbitrated against the DMA's tile traffic (for the zoo models it is well under
1% of the DMA's bytes; see ``docs/simulator.md``).

Synchronisation is the ISA's: the ACT, WGT and OUT buffers are rings of halves (two when
``double_buffered``, else one). The n-th ``LOAD`` into a buffer waits for the (n-2)-th
half to be freed (``COMPUTE`` with ``pop`` or ``RELEASE``); a ``COMPUTE`` reads the oldest
filled halves; a ``COMPUTE`` writing output group s waits for ``STORE`` number s-2; a
``STORE`` waits for the engine instruction before it; a ``BARRIER`` holds every later
instruction until the named units' earlier instructions completed.

Loops and extrapolation
    Every process walks the program with its own cursor; a loop without any instruction of
    a process is stepped over in O(1). Inside a loop, when every participating process has
    finished iteration ``i``, the model compares the complete timing state with the state
    after iteration ``i - p`` (for p = 1..:data:`MAX_PERIOD`): the processes' clocks,
    positions and pending barriers, the DMA's channel state, and the recent completion
    times of every synchronisation stream the loop reads or writes. All updates are of the
    max-plus form ``max(a + x, b + y)`` and every decision compares times, so if the new
    state equals the old one shifted by ``d`` cycles (integers, exactly), every later
    iteration repeats the one ``p`` before it ``d`` cycles later. Each process then skips
    ``q`` whole periods at its next boundary: its clock advances ``q*d``, its counters
    ``q`` periods, its busy/stall cycles grow by ``q`` times those of its last period, and
    the skipped completions are answered as ``base + m*d``.
    ``tests/test_system_extrapolation.py`` checks the result is identical to simulating
    every iteration, on random programs.

Stall attribution
    A unit with an instruction pending that cannot start is stalled; the waiting cycles
    go to the cause of the dependency that was satisfied last: a load or store completion
    is ``memory``, a SORE completion is ``sore``, an engine or vector-engine completion is
    ``dependency``. A barrier passes on the cause of its latest unit. A transfer whose
    issue was held by a dependency carries that cause if the channel was free for it;
    one that waited for a channel busy with an earlier transfer waited for bandwidth
    (``memory``), unless the two were issued in the same cycle (released by one event,
    such as a SORE barrier; then it shares the other's cause). The DMA is stalled while
    nothing is in flight and its next descriptor waits.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from dataclasses import dataclass, field

import simpy
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
from nmsat.simulator import tile_model
from nmsat.simulator.roofline import attribution
from nmsat.workloads.layers import OpKind

from nmsat.config import AcceleratorConfig
from nmsat.types import Phase

MAX_PERIOD = 6
"""Longest period (in loop iterations) the steady-state detector looks for."""
MIN_SKIP_COUNT = 5
"""Loops shorter than this are always simulated iteration by iteration."""
MAX_PROBE = 40
"""Iterations of a loop after which the detector stops looking for a steady state."""

# Counters: how many instructions of each kind precede a position in execution order.
(C_LOAD, C_LACT, C_LWGT, C_PACT, C_PWGT, C_ENG, C_ST, C_SO, C_WU) = range(9)
NCOUNT = 9
# Streams of completion times, indexed by sequence number.
S_LOAD, S_LACT, S_LWGT, S_FACT, S_FWGT, S_ENG, S_ST, S_SO, S_WU = range(9)
NSTREAM = 9
_STREAM_OF_COUNTER = {C_LOAD: S_LOAD, C_LACT: S_LACT, C_LWGT: S_LWGT, C_PACT: S_FACT,
                      C_PWGT: S_FWGT, C_ENG: S_ENG, C_ST: S_ST, C_SO: S_SO, C_WU: S_WU}
MEMORY, SORE_CAUSE, DEPENDENCY = "memory", "sore", "dependency"
_OWN_CAUSE = {"engine": DEPENDENCY, "sore": SORE_CAUSE, "wu": DEPENDENCY}
STREAM_CAUSE = {S_LOAD: MEMORY, S_LACT: MEMORY, S_LWGT: MEMORY, S_ST: MEMORY,
                S_SO: SORE_CAUSE, S_FACT: DEPENDENCY, S_FWGT: DEPENDENCY, S_ENG: DEPENDENCY,
                S_WU: DEPENDENCY}
_UNIT_STREAM = ((int(Unit.LOAD), S_LOAD, C_LOAD), (int(Unit.ENGINE), S_ENG, C_ENG),
                (int(Unit.STORE), S_ST, C_ST), (int(Unit.SORE), S_SO, C_SO),
                (int(Unit.WU), S_WU, C_WU))

# Cursor kinds (which instructions a cursor executes) and the processes that own them.
K_ENGINE, K_LOAD, K_STORE, K_SORE, K_WU = range(5)
_BARRIER = -1
ENGINE, DMA, SORE, WU = "engine", "dma", "sore", "wu"
UNITS: tuple[str, ...] = (ENGINE, DMA, SORE, WU)
_PROC_KINDS = {ENGINE: (K_ENGINE,), DMA: (K_LOAD, K_STORE), SORE: (K_SORE,), WU: (K_WU,)}

_VECTOR_PASSES = {OpKind.NORM: 2, OpKind.SOFTMAX: 2, OpKind.ACT: 1, OpKind.POOL: 1,
                  OpKind.ADD: 1}
"""Passes over the data a vector op makes on the lanes: normalisation and softmax need
statistics (mean/variance, max/sum) before they can transform, the others one pass."""


def _kind_of(ins) -> int | None:
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


def _delta(ins) -> tuple[int, ...]:
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


def _reads(ins) -> set[int]:
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
        return {s for u, s, _ in _UNIT_STREAM if int(ins.units) & u}
    return set()


def _add(a, b, times: int = 1) -> tuple[int, ...]:
    return tuple(x + y * times for x, y in zip(a, b))


_ZERO = (0,) * NCOUNT


class _Node:
    """A loop of the program tree (the root is a loop of count 1)."""

    __slots__ = ("nid", "count", "items", "delta", "own", "reads", "writes", "last_barrier",
                 "has_barrier")

    def __init__(self, nid: int, count: int) -> None:
        self.nid = nid
        self.count = count
        self.items: list = []  # instruction indices and child _Nodes
        self.delta = _ZERO  # counter increments of one iteration
        self.own: set[int] = set()  # cursor kinds with instructions inside
        self.reads: set[int] = set()
        self.writes: set[int] = set()
        # (units, counters after the last barrier up to the end of one iteration), or None
        # Per unit (index into _UNIT_STREAM): instructions of that unit after the last
        # barrier naming it, to the end of one iteration; None: no such barrier inside.
        self.last_barrier: list[int | None] = [None] * len(_UNIT_STREAM)
        self.has_barrier = False


def _build_tree(prog: Program) -> _Node:
    instrs = prog.instructions
    nodes = [0]

    def build(start: int, end: int, count: int) -> _Node:
        node = _Node(nodes[0], count)
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
        delta = _ZERO
        for it in node.items:
            if isinstance(it, _Node):
                delta = _add(delta, it.delta, it.count)
                node.own |= it.own
                node.reads |= it.reads
                node.writes |= it.writes
            else:
                ins = instrs[it]
                delta = _add(delta, _delta(ins))
                k = _kind_of(ins)
                if k is not None:
                    node.own.add(k)
                node.reads |= _reads(ins)
                node.has_barrier |= isinstance(ins, Barrier)
        node.has_barrier |= any(isinstance(x, _Node) and x.has_barrier for x in node.items)
        node.delta = delta
        node.writes |= {_STREAM_OF_COUNTER[c] for c in range(NCOUNT) if delta[c]}
        tail = _ZERO
        for it in reversed(node.items):
            for u, (mask, _, cn) in enumerate(_UNIT_STREAM):
                if node.last_barrier[u] is not None:
                    continue
                if isinstance(it, _Node):
                    if it.last_barrier[u] is not None:
                        node.last_barrier[u] = tail[cn] + it.last_barrier[u]
                elif isinstance(instrs[it], Barrier) and int(instrs[it].units) & mask:
                    node.last_barrier[u] = tail[cn]
            if isinstance(it, _Node):
                tail = _add(tail, it.delta, it.count)
            else:
                tail = _add(tail, _delta(instrs[it]))
        return node

    return build(0, len(instrs), 1)


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Interval:
    """A logged interval of one unit (``dma0``.. for DRAM channels)."""

    unit: str
    start: int
    end: int
    layer: str
    phase: str
    kind: str


@dataclass
class SystemRun:
    """Timing of one program run.

    ``busy[unit][(layer, phase)]`` and ``stall[unit][(layer, phase, cause)]`` are cycles
    (DMA busy = channel-cycles). ``engine_time[(layer, phase)]`` partitions the engine's
    timeline from 0 to its last completion: busy cycles, and stalls charged to ``sore``
    when the SORE caused them, else to the waiting instruction's phase.
    """

    total_cycles: int = 0
    engine_end: int = 0
    unit_end: dict[str, int] = field(default_factory=dict)
    busy: dict[str, dict[tuple[str, str], int]] = field(default_factory=dict)
    stall: dict[str, dict[tuple[str, str, str], int]] = field(default_factory=dict)
    engine_time: dict[tuple[str, str], int] = field(default_factory=dict)
    channel_busy: list[int] = field(default_factory=list)
    intervals: list[Interval] = field(default_factory=list)
    jumps: list[tuple[int, int, int, int]] = field(default_factory=list)
    simulated_instructions: int = 0
    tail_key: tuple[str, str] = ("", "")


# --------------------------------------------------------------------------- cursor


class _Frame:
    __slots__ = ("node", "it", "child", "key", "marks", "entry", "depth")

    def __init__(self, node: _Node, key, entry) -> None:
        self.node = node
        self.it = 0
        self.child = 0
        self.key = key
        self.entry = entry
        self.depth = 0
        self.marks: dict[tuple, int] = {}


class _Cursor:
    """Walks the program for one instruction kind, counting every instruction it passes.

    :meth:`next` stops *at* the next own instruction (the position before it);
    :meth:`commit` moves past it once executed. ``barrier`` is the latest barrier passed:
    (units, counters there, ids of the loop frames it was passed in).
    """

    def __init__(self, sim: _Sim, kind: int, root: _Node) -> None:
        self.sim = sim
        self.kind = kind
        self.counters = list(_ZERO)
        # Per unit: (count of its instructions before the latest barrier naming it, ids
        # of the loop frames that barrier was passed in); None: no such barrier yet.
        self.barrier: list[tuple[int, frozenset] | None] = [None] * len(_UNIT_STREAM)
        self.frames = [_Frame(root, (root.nid, _ZERO), _ZERO)]
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
        while self.frames:
            f = self.frames[-1]
            node = f.node
            if f.child >= len(node.items):
                # End of an iteration.
                f.it += 1
                f.child = 0
                if len(self.frames) > 1:
                    sim.iteration_done(self, f)
                if f.it >= node.count:
                    self.frames.pop()
                    if self.frames:
                        self.frames[-1].child += 1
                continue
            item = node.items[f.child]
            if isinstance(item, _Node):
                if self.kind in item.own:
                    key = (item.nid, tuple(self.counters))
                    nf = _Frame(item, key, tuple(self.counters))
                    nf.depth = len(self.frames)
                    self.frames.append(nf)
                    sim.loop_entered(self, key, item)
                    continue
                if item.has_barrier:
                    exit_c = _add(self.counters, item.delta, item.count)
                    ids = self._ids()
                    for u, (_, _, cn) in enumerate(_UNIT_STREAM):
                        tail = item.last_barrier[u]
                        if tail is not None:
                            self.barrier[u] = (exit_c[cn] - tail, ids)
                self.counters = list(_add(self.counters, item.delta, item.count))
                f.child += 1
                continue
            kind = sim.kinds[item]
            if kind == self.kind:
                if self.mark_on_stop:
                    self.mark()
                return item
            f.child += 1
            if kind == _BARRIER:
                units = sim.barrier_units[item]
                ids = self._ids()
                for u, (mask, _, cn) in enumerate(_UNIT_STREAM):
                    if units & mask:
                        self.barrier[u] = (self.counters[cn], ids)
            d = sim.deltas[item]
            if d is not _ZERO:
                for c in range(NCOUNT):
                    if d[c]:
                        self.counters[c] += d[c]
        self.done = True
        return None

    def subpos(self, depth: int) -> tuple:
        """Position relative to the frame at ``depth``: its child and everything deeper."""
        fr = self.frames
        return (fr[depth].child,) + tuple((g.it, g.child) for g in fr[depth + 1:])

    def mark(self) -> None:
        """Remember the accumulation log length at this position, in every loop frame
        long enough to be skipped (see :data:`MIN_SKIP_COUNT`)."""
        n = len(self.log)
        fr = self.frames
        for depth in range(1, len(fr)):
            f = fr[depth]
            if f.node.count >= MIN_SKIP_COUNT:
                f.marks.setdefault((f.it,) + self.subpos(depth), n)

    def commit(self, idx: int) -> None:
        d = self.sim.deltas[idx]
        for c in range(NCOUNT):
            if d[c]:
                self.counters[c] += d[c]
        self.frames[-1].child += 1

    def frame_of(self, key) -> _Frame | None:
        for f in self.frames:
            if f.key == key:
                return f
        return None

    def can_skip(self, frame: _Frame, p: int) -> bool:
        return (frame.it - p,) + self.subpos(frame.depth) in frame.marks

    def skip(self, frame: _Frame, q: int, p: int) -> None:
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
        self.counters = list(_add(self.counters, delta, span))
        for u, (_, _, cn) in enumerate(_UNIT_STREAM):
            b = self.barrier[u]
            if b is not None and id(frame) in b[1]:
                self.barrier[u] = (b[0] + delta[cn] * span, b[1])
        frame.it += span
        # Loop instances inside the skipped frame are now later instances.
        for g in self.frames[frame.depth + 1:]:
            g.entry = _add(g.entry, delta, span)
            old = g.key
            g.key = (g.node.nid, g.entry)
            self.sim.rename_instance(self, old, g.key, g.node)
            g.marks.clear()
        frame.marks.clear()
        self.mark()


# --------------------------------------------------------------------------- simulation


@dataclass(frozen=True)
class _Jump:
    i: int  # iteration whose state proved the period
    p: int  # period, iterations
    d: int  # cycles per period
    span: int  # iterations every process skips


class _Instance:
    """Book-keeping of one execution of a loop (for steady-state detection)."""

    __slots__ = ("node", "kinds", "finished", "states", "jump", "windows")

    def __init__(self, node: _Node, kinds: set[int]) -> None:
        self.node = node
        self.kinds = kinds
        self.finished: dict[int, int] = defaultdict(int)
        self.states: dict[int, tuple] = {}
        self.windows: dict[int, tuple | None] = {}
        self.jump: _Jump | None = None


class _Sim:
    def __init__(self, prog: Program, cfg: AcceleratorConfig, extrapolate: bool,
                 record: bool) -> None:
        self.prog = prog
        self.cfg = cfg
        self.extrapolate = extrapolate
        self.record = record
        self.instrs = prog.instructions
        self.deltas = [_delta(ins) for ins in self.instrs]
        self.kinds = [(_BARRIER if isinstance(ins, Barrier) else _kind_of(ins))
                      for ins in self.instrs]
        self.barrier_units = [int(ins.units) if isinstance(ins, Barrier) else 0
                              for ins in self.instrs]
        self.root = _build_tree(prog)
        self.env = simpy.Environment()
        d = cfg.dram
        self.channels, self.latency = d.channels, d.latency_cycles
        self.burst, self.bpc = d.burst_bytes, d.bytes_per_cycle
        b = cfg.buffers
        self.halves = {S_FACT: 2 if b.activation.double_buffered else 1,
                       S_FWGT: 2 if b.weight.double_buffered else 1,
                       S_ST: 2 if b.output.double_buffered else 1}
        self.rec: list[dict[int, int]] = [dict() for _ in range(NSTREAM)]
        # A completion that was itself held up by a dependency passes that dependency's
        # cause on (a load held by a SORE barrier makes the engine's wait a SORE stall).
        self.rcause: list[dict[int, str]] = [dict() for _ in range(NSTREAM)]
        self.count = [0] * NSTREAM  # next sequence number per stream (incl. skipped)
        self.segments: list[list[tuple[int, int, int, int]]] = [[] for _ in range(NSTREAM)]
        self.waiters: dict[tuple[int, int], list[simpy.Event]] = {}
        self.instances: dict[tuple, _Instance] = {}
        self.attr = attribution(prog)
        self.recipes = self._recipes()
        self.puts = self._puts()
        self.cycles = self._cycles()
        self.cursors = {k: _Cursor(self, k, self.root) for k in range(5)}
        self.proc_of_kind = {k: p for p, ks in _PROC_KINDS.items() for k in ks}
        self.clock = {u: 0 for u in UNITS}  # completion time of the last op, per process
        self.busy = {u: {} for u in UNITS}
        self.stall = {u: {} for u in UNITS}
        self.etime: dict = {}
        self.bus = [0] * self.channels
        # Each buffer's DMA port (docs/architecture.md 7): a transfer streams through it at
        # banks x bank_bytes_per_cycle (one of two ports; every other cycle with one port),
        # and transfers into / out of one buffer take turns on it.
        bufs = {Buffer.ACT: b.activation, Buffer.WGT: b.weight, Buffer.OUT: b.output}
        self.port_rate = {k: (v.banks * v.bank_bytes_per_cycle, 1 if v.ports > 1 else 2)
                          for k, v in bufs.items()}  # (bytes, cycles)
        self.port = {k: 0 for k in bufs}
        self.chan_busy = [0] * self.channels
        self.last_issue = [0, 0]
        self.issue_cause = [MEMORY, MEMORY]
        self.done_cause = [MEMORY, MEMORY]
        self.bus_cause = [MEMORY] * self.channels
        self.bus_issue = [-1] * self.channels  # issue time of each channel's last transfer
        self.last_done = [0, 0]
        self.dma_end = 0
        self.intervals: list[Interval] = []
        self.jumps: list = []
        self.executed = 0
        self.last_key: dict[str, tuple[str, str]] = {}
        self.pending_jump: dict[str, list[tuple]] = {u: [] for u in UNITS}
        self.dma_heads: list = [None, None]
        self.dma_deps: list = [None, None]

    # ------------------------------------------------------------------ static tables

    def _stream_cycles(self, nbytes: int) -> int:
        """Cycles to stream ``nbytes`` over all channels, first byte after the latency."""
        if nbytes <= 0:
            return 0
        bursts = -(-nbytes // self.burst)
        per = -(-bursts // self.channels)
        return self.latency + -(-(per * self.burst) // self.bpc)

    def _cycles(self) -> list[int]:
        cfg = self.cfg
        out = [0] * len(self.instrs)
        lanes = cfg.weight_update.lanes
        for i, ins in enumerate(self.instrs):
            if isinstance(ins, Compute):
                out[i] = tile_model.compute_cycles(ins, cfg)
            elif isinstance(ins, Sore):
                out[i] = max(tile_model.sore_cycles(ins, cfg),
                             self._stream_cycles(ins.read_bytes + ins.write_bytes))
            elif isinstance(ins, WeightUpdate):
                out[i] = max(tile_model.weight_update_cycles(ins, cfg),
                             self._stream_cycles(ins.read_bytes + ins.write_bytes))
            elif isinstance(ins, Vector):
                lane = (-(-ins.elements // lanes) * _VECTOR_PASSES[ins.kind]
                        + cfg.weight_update.pipeline_latency)
                out[i] = max(lane, self._stream_cycles(ins.read_bytes + ins.write_bytes))
        return out

    # ------------------------------------------------------------------ streams

    def _resolve(self, s: int, n: int) -> tuple[int, int]:
        """(real sequence number, cycle shift) holding completion ``n`` of stream ``s``."""
        shift = 0
        segs = self.segments[s]
        while segs:
            # Segments are in increasing order; the base of a skipped completion can lie
            # in an earlier (inner loop's) skipped range, hence the loop.
            j = bisect.bisect_left(segs, (n,)) - 1
            if j < 0:
                break
            start, length, per, d = segs[j]
            if not start < n <= start + length:
                break
            m = -(-(n - start) // per)
            n -= m * per
            shift += m * d
        return n, shift

    def _get(self, s: int, n: int):
        """Generator: completion time of ``n`` of stream ``s`` (waits until scheduled)."""
        segs = self.segments[s]
        if not segs or n > segs[-1][0] + segs[-1][1]:
            t = self.rec[s].get(n)
            if t is not None:
                return t
        while True:
            real, shift = self._resolve(s, n)
            t = self.rec[s].get(real)
            if t is not None:
                return t + shift
            ev = self.env.event()
            self.waiters.setdefault((s, real), []).append(ev)
            yield ev

    def _peek(self, s: int, n: int) -> int | None:
        segs = self.segments[s]
        if not segs or n > segs[-1][0] + segs[-1][1]:
            return self.rec[s].get(n)
        real, shift = self._resolve(s, n)
        t = self.rec[s].get(real)
        return None if t is None else t + shift

    def _cause(self, s: int, n: int) -> str:
        """Cause a wait for completion ``n`` of stream ``s`` is charged to."""
        real, _ = self._resolve(s, n)
        return self.rcause[s].get(real, STREAM_CAUSE[s])

    def _put(self, s: int, t: int, cause: str) -> None:
        n = self.count[s]
        self.count[s] = n + 1
        self.rec[s][n] = t
        if cause != STREAM_CAUSE[s]:
            self.rcause[s][n] = cause
        ws = self.waiters.pop((s, n), None)
        if ws:
            for ev in ws:
                ev.succeed()

    def _recipes(self) -> list[tuple[tuple[int, int, int], ...]]:
        """Per instruction: (stream, counter, back) triples; the instruction waits for
        completion ``counters[counter] - back`` of the stream when that is >= 0."""
        h = self.halves
        out = []
        for ins in self.instrs:
            if isinstance(ins, Load):
                r = ((S_FACT, C_LACT, h[S_FACT]),) if ins.buffer is Buffer.ACT else (
                    (S_FWGT, C_LWGT, h[S_FWGT]),)
            elif isinstance(ins, Compute):
                r = ((S_LACT, C_PACT, 0), (S_LWGT, C_PWGT, 0), (S_ST, C_ST, h[S_ST]))
            elif isinstance(ins, Release):
                r = ((S_LACT, C_PACT, 0),) if ins.buffer is Buffer.ACT else (
                    (S_LWGT, C_PWGT, 0),)
            elif isinstance(ins, Store):
                r = ((S_ENG, C_ENG, 1),)
            else:
                r = ()
            out.append(r)
        return out

    def _puts(self) -> list[tuple[int, ...]]:
        """Per instruction: the streams its completion is recorded in."""
        out = []
        for ins in self.instrs:
            if isinstance(ins, Compute):
                r = (S_ENG,) + ((S_FACT,) if ins.pop_a else ()) + ((S_FWGT,) if ins.pop_b else ())
            elif isinstance(ins, Release):
                r = (S_ENG, S_FACT if ins.buffer is Buffer.ACT else S_FWGT)
            elif isinstance(ins, Load):
                r = (S_LOAD, S_LACT if ins.buffer is Buffer.ACT else S_LWGT)
            elif isinstance(ins, Store):
                r = (S_ST,)
            elif isinstance(ins, Sore):
                r = (S_SO,)
            elif isinstance(ins, (WeightUpdate, Vector)):
                r = (S_WU,)
            else:
                r = ()
            out.append(r)
        return out

    def _deps(self, kind: int, idx: int, cur: _Cursor) -> list[tuple[int, int]]:
        """(stream, sequence number) pairs instruction ``idx`` waits for, at the cursor's
        counters (which are the counts before it)."""
        c = cur.counters
        deps = []
        for st, cn, back in self.recipes[idx]:
            n = c[cn] - back
            if n >= 0:
                deps.append((st, n))
        for u, b in enumerate(cur.barrier):
            if b is not None and b[0] > 0:
                deps.append((_UNIT_STREAM[u][1], b[0] - 1))
        return deps

    def _ready(self, deps):
        """Generator: (time all deps are done, cause of the latest)."""
        ready, binding = 0, None
        for s, n in deps:
            t = yield from self._get(s, n)
            if t > ready:
                ready, binding = t, (s, n)
        return ready, (self._cause(*binding) if binding else DEPENDENCY)

    # ------------------------------------------------------------------ accounting

    def _acc(self, cur: _Cursor, d: dict, key: tuple, amount: int) -> None:
        if amount:
            d[key] = d.get(key, 0) + amount
            if len(cur.frames) > 1:
                cur.log.append((d, key, amount))

    def _log(self, unit: str, start: int, end: int, key: tuple[str, str], kind: str) -> None:
        if self.record and end > start:
            self.intervals.append(Interval(unit, start, end, key[0], key[1], kind))

    # ------------------------------------------------------------------ processes

    def _seq_proc(self, unit: str):
        """Engine, SORE and vector engine: one in-order queue, busy for the op's cycles."""
        env = self.env
        cur = self.cursors[_PROC_KINDS[unit][0]]
        is_engine = unit == ENGINE
        while True:
            shift = self._maybe_jump(unit)
            if shift:
                yield env.timeout(shift)
            idx = cur.next()
            if idx is None:
                break
            self.executed += 1
            ins = self.instrs[idx]
            key = self.attr[idx]
            deps = self._deps(cur.kind, idx, cur)
            ready, binding = 0, None
            for s_, n_ in deps:  # fast path: every dependency already scheduled
                t_ = self._peek(s_, n_)
                if t_ is None:
                    binding = False
                    break
                if t_ > ready:
                    ready, binding = t_, (s_, n_)
            if binding is False:
                ready, cause = yield from self._ready(deps)
            else:
                cause = self._cause(*binding) if binding else DEPENDENCY
            now = env.now
            prev = self.clock[unit]
            start = max(prev, ready)
            if start > prev:
                self._acc(cur, self.stall[unit], (key[0], key[1], cause), start - prev)
                if is_engine:
                    ek = (key[0], Phase.SORE.value if cause == SORE_CAUSE else key[1])
                    self._acc(cur, self.etime, ek, start - prev)
                self._log(unit, prev, start, key, f"stall:{cause}")
            cyc = self.cycles[idx]
            done = start + cyc
            self.clock[unit] = done
            if cyc and self.record:
                self._log(unit, start, done, key, type(ins).__name__.lower())
            own = cause if start > prev else _OWN_CAUSE[unit]
            for st in self.puts[idx]:
                self._put(st, done, own)
            cur.commit(idx)
            cur.mark()
            self.last_key[unit] = key
            if done > now:
                yield env.timeout(done - now)
        self.clock[unit] = max(self.clock[unit], env.now)

    def _dma_issue(self, q: int, idx: int, cur: _Cursor, held: bool, cause: str) -> None:
        """Issue the head of queue ``q`` now. ``held``: its dependencies (not the queue
        order) decided the issue time; ``cause``: the cause of the binding dependency.

        The completion's own cause follows whatever bound it: the channel busy with an
        earlier transfer (that transfer's cause), the issue (the dependency's cause, or
        the previous issue's), or nothing (a plain transfer: memory)."""
        env = self.env
        ins = self.instrs[idx]
        key = self.attr[idx]
        issue = env.now
        idle_from = max(self.dma_end, self.last_issue[q])
        if issue > idle_from:
            self._acc(cur, self.stall[DMA], (key[0], key[1], cause), issue - idle_from)
            self._log(DMA, idle_from, issue, key, f"stall:{cause}")
        icause = cause if held else self.issue_cause[q]
        self.issue_cause[q] = icause
        self.last_issue[q] = issue
        bursts = -(-ins.bytes // self.burst)
        base, extra = divmod(bursts, self.channels)
        first = issue + self.latency
        done = max(issue, self.last_done[q])
        own = self.done_cause[q] if self.last_done[q] > issue else icause
        kind = "load" if q == 0 else "store"
        for ch in range(self.channels):
            nb = base + (1 if ch < extra else 0)
            if not nb:
                continue
            cyc = -(-(nb * self.burst) // self.bpc)
            b = self.bus[ch]
            if b > first:
                # Waiting for a channel busy with an earlier transfer is waiting for
                # bandwidth, unless that transfer was issued in this same cycle (both
                # released by one event, e.g. a SORE barrier): then it shares its cause.
                s = b
                ccause = self.bus_cause[ch] if self.bus_issue[ch] == issue else MEMORY
            else:
                s, ccause = first, icause
            e = s + cyc
            self.bus[ch] = e
            self.bus_cause[ch] = ccause
            self.bus_issue[ch] = issue
            if self.record:
                self._log(f"dma{ch}", s, e, key, kind)
            if e > done:
                done, own = e, ccause
        buf = ins.buffer if isinstance(ins, Load) else Buffer.OUT
        ps = max(first, self.port[buf])
        nbytes, per = self.port_rate[buf]
        pe = ps + -(-ins.bytes * per // nbytes)
        self.port[buf] = pe
        if pe > done:  # the buffer's port, not DRAM, bounds this transfer: bandwidth
            done, own = pe, MEMORY
        self.last_done[q] = done
        self.done_cause[q] = own
        if done > self.dma_end:
            self.dma_end = done
        for st in self.puts[idx]:
            self._put(st, done, own)
        cur.commit(idx)
        self.last_key[DMA] = key

    def _dma_proc(self):
        env = self.env
        curs = (self.cursors[K_LOAD], self.cursors[K_STORE])
        heads: list[int | None] = [None, None]
        deps: list = [None, None]
        for q in (0, 1):
            heads[q] = curs[q].next()
            if heads[q] is not None:
                deps[q] = self._deps(curs[q].kind, heads[q], curs[q])
        self.dma_heads = heads
        self.dma_deps = deps
        known: list = [None, None]  # (ready time, cause) once every dependency is known
        wait_ev: list = [None, None]  # pending wake-up for a head with an unknown dependency

        def resolve(q: int) -> None:
            ready, cause = 0, DEPENDENCY
            for s_, n in deps[q]:
                t_ = self._peek(s_, n)
                if t_ is None:
                    if wait_ev[q] is None or wait_ev[q].triggered:
                        real, _ = self._resolve(s_, n)
                        ev = env.event()
                        self.waiters.setdefault((s_, real), []).append(ev)
                        wait_ev[q] = ev
                    return
                if t_ > ready:
                    ready, cause = t_, self._cause(s_, n)
            held = ready > 0 and ready >= self.last_issue[q]
            known[q] = (max(ready, self.last_issue[q]), cause, held)
            wait_ev[q] = None

        while heads[0] is not None or heads[1] is not None:
            shift = self._maybe_jump(DMA)
            if shift:
                for q in (0, 1):
                    known[q] = wait_ev[q] = None
                    if heads[q] is not None:
                        deps[q] = self._deps(curs[q].kind, heads[q], curs[q])
                yield env.timeout(shift)
            for q in (0, 1):
                if heads[q] is not None and known[q] is None:
                    resolve(q)
            cand = [(known[q][0], q) for q in (0, 1) if known[q] is not None]
            evs = [ev for ev in wait_ev if ev is not None]
            if not cand:
                yield simpy.AnyOf(env, evs)
                continue
            t, q = min(cand)
            if t > env.now:
                # Wait for the earliest known head, unless an unknown one resolves first.
                to = env.timeout(t - env.now)
                yield simpy.AnyOf(env, evs + [to]) if evs else to
                continue
            self.executed += 1
            self._dma_issue(q, heads[q], curs[q], known[q][2], known[q][1])
            heads[q] = curs[q].next()
            deps[q] = (self._deps(curs[q].kind, heads[q], curs[q])
                       if heads[q] is not None else None)
            known[q] = wait_ev[q] = None
        self.clock[DMA] = self.dma_end

    # ------------------------------------------------------------------ steady state

    def loop_entered(self, cur: _Cursor, key, node: _Node) -> None:
        if key not in self.instances:
            self.instances[key] = _Instance(node, set(node.own))

    def _has_jump(self, key) -> bool:
        inst = self.instances.get(key)
        return inst is not None and inst.jump is not None

    def rename_instance(self, cur: _Cursor, old, new, node: _Node) -> None:
        """A cursor skipped into a later instance of an inner loop: carry its pending
        jump (if any) over to the new instance."""
        inst = self.instances.get(old)
        if new not in self.instances:
            ni = _Instance(node, set(node.own))
            if inst is not None and inst.jump is not None:
                ni.jump = inst.jump
            self.instances[new] = ni
        unit = self.proc_of_kind[cur.kind]
        pend = self.pending_jump[unit]
        if old in pend:
            pend.remove(old)
            if new not in pend:
                pend.append(new)

    def iteration_done(self, cur: _Cursor, frame: _Frame) -> None:
        inst = self.instances.get(frame.key)
        if inst is None:
            inst = self.instances[frame.key] = _Instance(frame.node, set(frame.node.own))
        if inst.jump is not None:
            return
        i = frame.it - 1
        inst.finished[i] += 1
        if inst.finished[i] < len(inst.kinds):
            return
        del inst.finished[i]
        if not self.extrapolate or frame.node.count - i < MIN_SKIP_COUNT or i > MAX_PROBE:
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
        return [u for u, ks in _PROC_KINDS.items() if any(k in inst.kinds for k in ks)]

    def _state(self, key, inst: _Instance):
        """The timing state now: (times that must all shift by the same d, values that
        must match exactly, iteration indices that must advance by p, counts with their
        growth per iteration, constant completion times that must not bind); None if
        it cannot be captured (a cursor left the loop, a completion not yet scheduled)."""
        now = self.env.now
        times: list[int] = [now]
        exact: list = []
        its: list[int] = []
        counts: list[tuple[int, int]] = []
        fixed: list[int] = []
        node = inst.node
        for u, ks in _PROC_KINDS.items():
            part = [k for k in ks if k in inst.kinds]
            if not part:
                continue
            if u == DMA:
                lim = now + self.latency
                times.extend(max(b, lim) for b in self.bus)
                times.extend(max(b, lim) for b in self.port.values())
                times.append(self.dma_end)
                times.extend(max(x, now) for x in self.last_done)
                exact.append((tuple(self.issue_cause), tuple(self.done_cause),
                              tuple((c, bi == now) if b > lim else None
                                    for b, c, bi in zip(self.bus, self.bus_cause,
                                                        self.bus_issue))))
                for q, k in ((0, K_LOAD), (1, K_STORE)):
                    if k not in inst.kinds:
                        # A queue outside the loop must sit at the same instruction.
                        exact.append(("idle", q, self.dma_heads[q]))
            else:
                times.append(self.clock[u])
            for k in part:
                cur = self.cursors[k]
                f = cur.frame_of(key)
                if f is None:
                    return None
                exact.append((k, cur.subpos(f.depth), tuple(
                    (g.key in self.pending_jump[u], self._has_jump(g.key))
                    for g in cur.frames[f.depth + 1:])))
                its.append(f.it)
                counts.extend(zip(cur.counters, node.delta))
                for u, b in enumerate(cur.barrier):
                    if b is None:
                        exact.append(None)
                        continue
                    inside = id(f) in b[1]
                    cn, st = _UNIT_STREAM[u][2], _UNIT_STREAM[u][1]
                    exact.append(inside)
                    counts.append((b[0], node.delta[cn] if inside else 0))
                    if not inside and b[0] > 0:
                        t = self._peek(st, b[0] - 1)
                        if t is None:
                            return None
                        fixed.append(t)
        reads = self._next_reads()
        entry = key[1]
        for st in sorted(node.reads | node.writes):
            n = self.count[st]
            first = entry[self._counter_of(st)]
            # Completions from before the loop that a cursor can still wait for (an
            # earlier barrier's) never move: they must be equal and already past.
            for j in sorted({r for r in reads[st] if r < first}):
                t = self._peek(st, j)
                if t is None:
                    return None
                fixed.append(t)
            # From the loop's own completions, every one a cursor can still read.
            low = min([r for r in reads[st] if r >= first] + [n])
            counts.append((n, node.delta[self._counter_of(st)]))
            counts.append((n - low, 0))
        return times, exact, its, counts, fixed

    def _next_reads(self) -> list[list[int]]:
        """Per stream, the sequence numbers the cursors' next waits need (reads only move
        forward, so nothing older is ever read again)."""
        h = self.halves
        out: list[list[int]] = [[] for _ in range(NSTREAM)]
        for cur in self.cursors.values():
            if cur.done:
                continue
            c = cur.counters
            if cur.kind == K_LOAD:
                out[S_FACT].append(c[C_LACT] - h[S_FACT])
                out[S_FWGT].append(c[C_LWGT] - h[S_FWGT])
            elif cur.kind == K_ENGINE:
                out[S_LACT].append(c[C_PACT])
                out[S_LWGT].append(c[C_PWGT])
                out[S_ST].append(c[C_ST] - h[S_ST])
            elif cur.kind == K_STORE:
                out[S_ENG].append(c[C_ENG] - 1)
            for u, b in enumerate(cur.barrier):
                if b is not None:
                    out[_UNIT_STREAM[u][1]].append(b[0] - 1)
        return [[r for r in rs if r >= 0] for rs in out]

    def _windows(self, state, node: _Node):
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
                t = self._peek(st, j)
                if t is None:
                    return None
                (moving if per else fixed).append(t)
                causes.append(self._cause(st, j))
        return moving, fixed, causes

    @staticmethod
    def _counter_of(s: int) -> int:
        return {S_LOAD: C_LOAD, S_LACT: C_LACT, S_LWGT: C_LWGT, S_FACT: C_PACT,
                S_FWGT: C_PWGT, S_ENG: C_ENG, S_ST: C_ST, S_SO: C_SO, S_WU: C_WU}[s]

    @staticmethod
    def _period(old, new, p: int) -> int | None:
        """d if ``new`` is ``old`` shifted by d cycles and p iterations, else None."""
        t0, e0, i0, c0, f0 = old
        t1, e1, i1, c1, f1 = new
        if len(t0) != len(t1) or e0 != e1 or len(c0) != len(c1) or len(f0) != len(f1):
            return None
        d = t1[0] - t0[0]
        if d <= 0 or any(b - a != d for a, b in zip(t0, t1)):
            return None
        if any(b - a != p for a, b in zip(i0, i1)):
            return None
        if any(nb - na != p * g for (na, g), (nb, _) in zip(c0, c1)):
            return None
        # Completions that do not move with the loop must be equal and already past
        # (so they can never bind a later instruction: every start is >= now).
        if f0 != f1 or any(t > t0[0] for t in f0):
            return None
        return d

    def _maybe_jump(self, unit: str) -> int:
        """Skip the proven periods for ``unit`` once each of its cursors in the loop is
        at or past iteration i + p; returns the cycles to advance its clock (0: none)."""
        pend = self.pending_jump[unit]
        if not pend:
            return 0
        total = 0
        for key in list(pend):
            inst = self.instances[key]
            j = inst.jump
            frames = []
            ready = True
            for k in _PROC_KINDS[unit]:
                if k not in inst.kinds:
                    continue
                cur = self.cursors[k]
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
                    st = _STREAM_OF_COUNTER[c]
                    if per and _kind_produces(cur.kind, st):
                        start = before[c] - 1
                        self.segments[st].append((start, q * per, per, j.d))
                        self.count[st] = before[c] + q * per
                        self._rewake(st, start, q * per)
            now = self.env.now
            kinds = {cur.kind for cur, _ in frames}
            if unit == DMA:
                lim = now + self.latency
                self.bus = [max(b, lim) + shift for b in self.bus]
                self.port = {k: max(b, lim) + shift for k, b in self.port.items()}
                self.bus_issue = [bi + shift for bi in self.bus_issue]
                self.dma_end += shift
                for q_, k in ((0, K_LOAD), (1, K_STORE)):
                    if k in kinds:
                        self.last_issue[q_] += shift
                        self.last_done[q_] = max(self.last_done[q_], now) + shift
            else:
                self.clock[unit] += shift
            self.jumps.append((unit, inst.node.nid, j.p, q, j.d))
            if self.record:
                # One interval stands for the skipped iterations on the timeline.
                cur0 = frames[0][0]
                idx = self._first_own(cur0, frames[0][1])
                key = self.attr[idx] if idx is not None else ("", "")
                self._log(unit, now, now + shift, key, f"repeat x{j.span}")
            total += shift
        return total

    def _first_own(self, cur: _Cursor, frame: _Frame) -> int | None:
        """An instruction of ``cur``'s kind in ``frame``'s loop body (for labels)."""
        stack = [frame.node]
        while stack:
            node = stack.pop()
            for it in node.items:
                if isinstance(it, _Node):
                    stack.append(it)
                elif self.kinds[it] == cur.kind:
                    return it
        return None

    def _other_queue_waits(self, inst: _Instance, span: int) -> bool:
        """A DMA queue with no instruction in the loop must be done, or wait for a
        completion the loop produces after the skipped iterations (else it could issue
        in the middle of them and share the channels)."""
        node = inst.node
        for q, k in ((0, K_LOAD), (1, K_STORE)):
            if k in inst.kinds or self.dma_heads[q] is None:
                continue
            ok = False
            for st, n in self.dma_deps[q] or ():
                per = node.delta[self._counter_of(st)]
                if per and st in node.writes and n >= self.count[st] + span * per:
                    ok = True
            if not ok:
                return False
        return True

    def _rewake(self, s: int, start: int, length: int) -> None:
        for key in [k for k in self.waiters if k[0] == s and start < k[1] <= start + length]:
            for ev in self.waiters.pop(key):
                ev.succeed()

    # ------------------------------------------------------------------ run

    def _static_busy(self) -> tuple[dict[str, dict[tuple[str, str], int]], list[int]]:
        """Busy cycles do not depend on timing: each instruction's cycles (per channel for
        transfers) times the number of times it executes."""
        busy: dict[str, dict[tuple[str, str], int]] = {u: {} for u in UNITS}
        chan = [0] * self.channels
        unit_of = {K_ENGINE: ENGINE, K_LOAD: DMA, K_STORE: DMA, K_SORE: SORE, K_WU: WU}
        for idx, ins, times in self.prog.executions():
            kind = self.kinds[idx]
            if kind is None or kind == _BARRIER:
                continue
            u = unit_of[kind]
            key = self.attr[idx]
            if u == DMA:
                bursts = -(-ins.bytes // self.burst)
                base, extra = divmod(bursts, self.channels)
                cyc = 0
                for ch in range(self.channels):
                    nb = base + (1 if ch < extra else 0)
                    if nb:
                        c = -(-(nb * self.burst) // self.bpc)
                        chan[ch] += c * times
                        cyc += c
            else:
                cyc = self.cycles[idx]
            if cyc:
                busy[u][key] = busy[u].get(key, 0) + cyc * times
        return busy, chan

    def run(self) -> SystemRun:
        procs = {}
        kinds_present = set(self.root.own)
        for u in UNITS:
            if any(k in kinds_present for k in _PROC_KINDS[u]):
                procs[u] = self.env.process(self._dma_proc() if u == DMA
                                            else self._seq_proc(u))
        self.env.run()
        for u, p in procs.items():
            if p.is_alive or not all(self.cursors[k].done for k in _PROC_KINDS[u]
                                     if k in kinds_present):
                raise RuntimeError(f"deadlock: the {u} unit never finished the program "
                                   f"(a wait that nothing satisfies)")
        out = SystemRun()
        out.unit_end = {u: self.clock[u] for u in procs}
        out.total_cycles = max(out.unit_end.values(), default=0)
        out.engine_end = out.unit_end.get(ENGINE, 0)
        busy, chan = self._static_busy()
        out.busy = busy
        out.stall = {u: dict(v) for u, v in self.stall.items()}
        etime = dict(self.etime)
        for key, cyc in busy[ENGINE].items():
            etime[key] = etime.get(key, 0) + cyc
        out.engine_time = etime
        out.channel_busy = chan
        out.intervals = self.intervals
        out.jumps = self.jumps
        out.simulated_instructions = self.executed
        if out.unit_end:
            last = max(procs, key=lambda u: (out.unit_end[u], -UNITS.index(u)))
            out.tail_key = self.last_key.get(last, ("", ""))
        return out


def _kind_produces(kind: int, s: int) -> bool:
    return {K_ENGINE: (S_ENG, S_FACT, S_FWGT), K_LOAD: (S_LOAD, S_LACT, S_LWGT),
            K_STORE: (S_ST,), K_SORE: (S_SO,), K_WU: (S_WU,)}[kind].__contains__(s)


def run(prog: Program, cfg: AcceleratorConfig, *, extrapolate: bool = True,
        record: bool = True) -> SystemRun:
    """Run tile program ``prog`` on ``cfg``'s units and return its timing.

    Parameters
    ----------
    prog
        A tile program (:mod:`nmsat.dataflow.isa`).
    cfg
        The accelerator.
    extrapolate
        Skip whole periods of loops once their steady state is proven (exact, see the
        module docstring). ``False`` simulates every iteration.
    record
        Log every unit's busy and stall intervals for the timeline (skipped periods are
        not logged interval by interval).
    """
    return _Sim(prog, cfg, extrapolate, record).run()


def attribute_wall_time(r: SystemRun) -> dict[tuple[str, str], int]:
    """Partition ``[0, total_cycles)`` into (layer, phase) cycles.

    Up to the engine's last completion each cycle belongs to what the engine was doing or
    waiting for (``engine_time``); the tail after it (the last weight updates and stores,
    typically) goes to the last instruction of the unit that finishes last.
    """
    out: dict[tuple[str, str], int] = dict(r.engine_time)
    covered = sum(out.values())
    if covered != r.engine_end:  # pragma: no cover - an accounting bug
        raise AssertionError(f"engine timeline {covered} != engine end {r.engine_end}")
    tail = r.total_cycles - r.engine_end
    if tail > 0:
        out[r.tail_key] = out.get(r.tail_key, 0) + tail
    return out
