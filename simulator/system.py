"""SimPy system model: the accelerator's units running a tile program concurrently.

The units are SimPy processes:

* ``engine`` - the N:M sparse tensor engine. A compute instruction occupies it for the
  cycles given by :mod:`nmsat.simulator.tile_model`.
* ``dma`` - the DMA engine. It issues transfer descriptors in program order and keeps
  several in flight: each DRAM channel has its own data bus (``dram.bytes_per_cycle``),
  a request's first byte arrives ``dram.latency_cycles`` after it is issued, transfers
  are rounded up to ``dram.burst_bytes`` and striped burst by burst across the channels
  (address interleaving). A transfer completes when its last channel finishes.
* ``sore`` - the sparse online reduction engine (mask generation).
* ``wu`` - the weight-update vector engine (also non-GEMM vector ops).
* ``ctl`` - the tile controller's barriers (zero-cycle ops that join dependencies).

Each unit runs its own instructions in program order; an instruction starts when the
unit is free and all its dependencies have completed. Double buffering is expressed as
dependencies too: a load into a buffer half depends on the last instruction that read
that half (see :mod:`nmsat.simulator.lowering`), so a load may start only after the
engine released the half.

Repeated blocks
    Programs use repeat counts, so a layer's tile loop is one :class:`Block` whose body
    runs ``repeat`` times. All timing updates are of the max-plus form
    ``t = max(a + x, b + y)``, so if the complete timing state after iteration ``i`` (the
    issue and completion times of every op that later iterations can depend on, and
    each unit's internal state) equals the state after iteration ``i - p`` shifted by a
    constant ``d``, every later iteration repeats iteration ``(j - p)`` shifted by ``d``.
    The model checks exactly this equality (integers, no tolerance) and then skips
    ``q`` whole periods: each unit, having finished iteration ``J``, advances its clock by
    ``q * d`` and adds ``q`` times its busy and stall cycles of the last period.
    ``tests/test_system_extrapolation.py`` proves the result identical to simulating
    every repetition on random programs. Simulation cost therefore depends on the
    number of distinct blocks, not on the batch size.

Stall attribution
    When a unit has an instruction pending but cannot start it, the waiting cycles are
    charged to the dependency that completed last (the binding one): a DMA transfer is
    ``memory``, a SORE op is ``sore``, anything else (engine, weight update, a barrier
    joining those) is ``dependency``. A barrier passes on the cause of its own binding
    dependency.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field

import simpy

from nmsat.config import AcceleratorConfig
from nmsat.simulator.energy import ZERO_COUNTS, ActivityCounts
from nmsat.types import Phase

ENGINE, DMA, SORE, WU, CTL = "engine", "dma", "sore", "wu", "ctl"
UNITS: tuple[str, ...] = (ENGINE, DMA, SORE, WU, CTL)

MEMORY, SORE_CAUSE, DEPENDENCY = "memory", "sore", "dependency"
_CAUSE_OF_UNIT = {DMA: MEMORY, SORE: SORE_CAUSE, ENGINE: DEPENDENCY, WU: DEPENDENCY,
                  CTL: DEPENDENCY}

MAX_PERIOD = 8
"""Longest period (in iterations) the steady-state detector looks for."""


@dataclass(frozen=True)
class OpRef:
    """An op of an earlier block, in that block's last iteration."""

    block: int
    op: int


@dataclass(frozen=True)
class SimOp:
    """One instruction of a lowered program, for one unit.

    Parameters
    ----------
    unit
        One of :data:`UNITS`.
    cycles
        Busy cycles (engine, sore, wu; 0 for ctl). Unused for DMA.
    nbytes
        Bytes of a DMA transfer (before burst rounding). Unused for other units.
    deps
        ``(body index, iteration distance)`` pairs: this op of iteration ``i`` waits for
        body op ``index`` of iteration ``i - distance``. Distance 0 must name an earlier
        body op. A pair whose iteration would be negative is ignored.
    ext
        Ops of earlier blocks (their last iteration) this op waits for. They constrain
        every iteration; since each unit issues in order, they are checked on the first.
    layer, phase, kind
        Attribution: which layer and phase the op belongs to, and what it is
        (``load``, ``store``, ``compute``, ``sore``, ``wu``, ``vector``, ``barrier``).
    counts
        Activity of one execution, for the energy model.
    dense_macs
        Dense-equivalent MACs of one execution (effective utilisation).
    """

    unit: str
    cycles: int = 0
    nbytes: int = 0
    deps: tuple[tuple[int, int], ...] = ()
    ext: tuple[OpRef, ...] = ()
    layer: str = ""
    phase: Phase = Phase.FF
    kind: str = "compute"
    counts: ActivityCounts = ZERO_COUNTS
    dense_macs: int = 0

    def __post_init__(self) -> None:
        if self.unit not in UNITS:
            raise ValueError(f"SimOp.unit must be one of {', '.join(UNITS)}, not {self.unit!r}")
        for name in ("cycles", "nbytes", "dense_macs"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 0:
                raise ValueError(f"SimOp.{name} must be a non-negative integer, not {v!r}")
        for d in self.deps:
            if len(d) != 2 or d[1] < 0:
                raise ValueError(f"SimOp.deps entries are (index, distance >= 0), not {d!r}")


@dataclass(frozen=True)
class Block:
    """A body of ops run ``repeat`` times in a row."""

    ops: tuple[SimOp, ...]
    repeat: int = 1

    def __post_init__(self) -> None:
        if not isinstance(self.repeat, int) or self.repeat < 1:
            raise ValueError(f"Block.repeat must be a positive integer, not {self.repeat!r}")
        if not self.ops:
            raise ValueError("Block.ops must not be empty")
        for i, op in enumerate(self.ops):
            for k, dist in op.deps:
                if not 0 <= k < len(self.ops):
                    raise ValueError(f"op {i}: dependency index {k} outside the body "
                                     f"(0..{len(self.ops) - 1})")
                if dist == 0 and k >= i:
                    raise ValueError(f"op {i}: a same-iteration dependency must name an "
                                     f"earlier op, not {k}")

    @property
    def window(self) -> int:
        """Iterations of history later iterations can reach (max distance + 1)."""
        return 1 + max((d for op in self.ops for _, d in op.deps), default=0)


@dataclass(frozen=True)
class SysProgram:
    """A lowered program: blocks in program order."""

    blocks: tuple[Block, ...]

    def __post_init__(self) -> None:
        for b, blk in enumerate(self.blocks):
            for i, op in enumerate(blk.ops):
                for ref in op.ext:
                    if not 0 <= ref.block < b:
                        raise ValueError(f"block {b} op {i}: external dependency on block "
                                         f"{ref.block}, which is not an earlier block")
                    if not 0 <= ref.op < len(self.blocks[ref.block].ops):
                        raise ValueError(f"block {b} op {i}: external dependency on op "
                                         f"{ref.op} of block {ref.block}, which has "
                                         f"{len(self.blocks[ref.block].ops)} ops")


@dataclass(frozen=True)
class Interval:
    """A logged interval: unit (``dma0``.. for channels), cycles, attribution, kind."""

    unit: str
    start: int
    end: int
    layer: str
    phase: str
    kind: str


@dataclass
class SystemRun:
    """Timing of one program run (mutable while the simulation fills it in).

    ``busy[unit][(layer, phase)]`` and ``stall[unit][(layer, phase, cause)]`` are cycles;
    ``engine_time[(layer, phase)]`` partitions the engine's timeline from 0 to its last
    completion (its busy cycles, and its stalls charged to ``sore`` when the cause is
    the SORE, else to the waiting op's phase).
    """

    total_cycles: int = 0
    engine_end: int = 0
    unit_end: dict[str, int] = field(default_factory=dict)
    busy: dict[str, dict[tuple[str, str], int]] = field(default_factory=dict)
    stall: dict[str, dict[tuple[str, str, str], int]] = field(default_factory=dict)
    engine_time: dict[tuple[str, str], int] = field(default_factory=dict)
    channel_busy: list[int] = field(default_factory=list)
    intervals: list[Interval] = field(default_factory=list)
    steady: list[Interval] = field(default_factory=list)
    jumps: list[tuple[int, int, int, int, int]] = field(default_factory=list)
    simulated_ops: int = 0
    tail_key: tuple[str, str] = ("", "")


@dataclass(frozen=True)
class _Jump:
    J: int  # last real iteration before the skipped range
    p: int  # period in iterations
    q: int  # periods skipped
    d: int  # cycles per period

    @property
    def span(self) -> int:
        return self.q * self.p

    @property
    def shift(self) -> int:
        return self.q * self.d


class _Acc:
    """Per-unit, per-iteration busy/stall accumulator (needed to scale skipped periods)."""

    __slots__ = ("busy", "stall", "etime")

    def __init__(self) -> None:
        self.busy: dict[tuple[str, str], int] = defaultdict(int)
        self.stall: dict[tuple[str, str, str], int] = defaultdict(int)
        self.etime: dict[tuple[str, str], int] = defaultdict(int)


def _add_into(dst: dict, src: dict, times: int = 1) -> None:
    for k, v in src.items():
        dst[k] = dst.get(k, 0) + v * times


class _Sim:
    """One run of a :class:`SysProgram` (use :func:`run`)."""

    def __init__(self, prog: SysProgram, cfg: AcceleratorConfig, extrapolate: bool,
                 record: bool) -> None:
        self.prog = prog
        self.cfg = cfg
        self.extrapolate = extrapolate
        self.record = record
        self.env = simpy.Environment()
        dram = cfg.dram
        self.channels = dram.channels
        self.latency = dram.latency_cycles
        self.burst = dram.burst_bytes
        self.bpc = dram.bytes_per_cycle
        self.bus_free = [0] * self.channels
        self.channel_busy = [0] * self.channels
        self.last_issue = 0
        self.dma_end = 0
        nblocks = len(prog.blocks)
        # Per block: iteration -> list of done times / issue times / causes (None = not yet).
        self.done: list[dict[int, list]] = [dict() for _ in range(nblocks)]
        self.issue: list[dict[int, list]] = [dict() for _ in range(nblocks)]
        self.cause: list[dict[int, list]] = [dict() for _ in range(nblocks)]
        self.snap: list[dict[int, dict[str, tuple]]] = [dict() for _ in range(nblocks)]
        self.finished_units: list[dict[int, int]] = [defaultdict(int) for _ in range(nblocks)]
        self.waiters: dict[tuple[int, int, int], list[simpy.Event]] = {}
        self.jumps: dict[int, _Jump] = {}
        self.cur_iter: dict[str, tuple[int, int]] = {}
        # Static structure: each unit's ops per block.
        self.unit_ops: list[dict[str, tuple[int, ...]]] = []
        for blk in prog.blocks:
            per: dict[str, list[int]] = defaultdict(list)
            for i, op in enumerate(blk.ops):
                per[op.unit].append(i)
            self.unit_ops.append({u: tuple(v) for u, v in per.items()})
        self.out = SystemRun()
        self.out.busy = {u: defaultdict(int) for u in UNITS}
        self.out.stall = {u: defaultdict(int) for u in UNITS}
        self.out.engine_time = defaultdict(int)
        self.acc: dict[str, dict[tuple[int, int], _Acc]] = {u: {} for u in UNITS}
        self.ops_run = 0
        self.last_key: dict[str, tuple[str, str]] = {}

    # ------------------------------------------------------------------ time lookup

    def _map(self, b: int, it: int) -> tuple[int, int]:
        """(real iteration, cycle shift) holding iteration ``it``'s times."""
        j = self.jumps.get(b)
        if j is not None and j.J < it <= j.J + j.span:
            return it - j.span, j.shift
        return it, 0

    def _lookup(self, b: int, it: int, k: int) -> tuple[int, str] | None:
        real, shift = self._map(b, it)
        row = self.done[b].get(real)
        if row is None or row[k] is None:
            return None
        return row[k] + shift, self.cause[b][real][k]

    def _wait(self, b: int, it: int, k: int):
        """Generator: block until (b, it, k) has a scheduled completion; return it."""
        got = self._lookup(b, it, k)
        while got is None:
            real, _ = self._map(b, it)
            ev = self.env.event()
            self.waiters.setdefault((b, real, k), []).append(ev)
            yield ev
            got = self._lookup(b, it, k)
        return got

    def _row(self, table: list[dict[int, list]], b: int, it: int) -> list:
        row = table[b].get(it)
        if row is None:
            row = [None] * len(self.prog.blocks[b].ops)
            table[b][it] = row
        return row

    def _record(self, b: int, it: int, k: int, issue: int, done: int, cause: str) -> None:
        self._row(self.issue, b, it)[k] = issue
        self._row(self.done, b, it)[k] = done
        self._row(self.cause, b, it)[k] = cause
        ws = self.waiters.pop((b, it, k), None)
        if ws:
            for ev in ws:
                ev.succeed()

    # ------------------------------------------------------------------ unit processes

    def _deps(self, b: int, it: int, op: SimOp):
        """Generator: wait until every dependency is scheduled; return (ready, cause)."""
        ready, cause = -1, DEPENDENCY
        for k, dist in op.deps:
            src = it - dist
            if src < 0:
                continue
            t, c = yield from self._wait(b, src, k)
            if t > ready:
                ready, cause = t, c
        if it == 0:
            for ref in op.ext:
                last = self.prog.blocks[ref.block].repeat - 1
                t, c = yield from self._wait(ref.block, last, ref.op)
                if t > ready:
                    ready, cause = t, c
        return ready, cause

    def _acc(self, unit: str, b: int, it: int) -> _Acc:
        key = (b, it)
        a = self.acc[unit].get(key)
        if a is None:
            a = self.acc[unit][key] = _Acc()
        return a

    def _log(self, unit: str, start: int, end: int, op: SimOp, kind: str) -> None:
        if end > start:
            self.out.intervals.append(Interval(unit, start, end, op.layer, op.phase.value, kind))

    def _exec_seq(self, unit: str, b: int, it: int, k: int, op: SimOp, acc: _Acc):
        env = self.env
        now = env.now
        ready, cause = yield from self._deps(b, it, op)
        start = max(now, ready)
        stall = start - now
        layer, phase = op.layer, op.phase.value
        if stall:
            acc.stall[(layer, phase, cause)] += stall
            if unit == ENGINE:
                acc.etime[(layer, "sore" if cause == SORE_CAUSE else phase)] += stall
            if self.record:
                self._log(unit, now, start, op, f"stall:{cause}")
        done = start + op.cycles
        own_cause = cause if unit == CTL else _CAUSE_OF_UNIT[unit]
        self._record(b, it, k, start, done, own_cause)
        if op.cycles:
            acc.busy[(layer, phase)] += op.cycles
            if unit == ENGINE:
                acc.etime[(layer, phase)] += op.cycles
            if self.record:
                self._log(unit, start, done, op, op.kind)
        if done > env.now:
            yield env.timeout(done - env.now)

    def _exec_dma(self, b: int, it: int, k: int, op: SimOp, acc: _Acc):
        env = self.env
        ready, cause = yield from self._deps(b, it, op)
        if ready > env.now:
            yield env.timeout(ready - env.now)
        issue = env.now
        # The DMA is idle (stalled) once everything issued has drained.
        idle_from = self.dma_end
        if issue > idle_from:
            acc.stall[(op.layer, op.phase.value, cause)] += issue - idle_from
        self.last_issue = issue
        bursts = -(-op.nbytes // self.burst) if op.nbytes else 0
        base, extra = divmod(bursts, self.channels)
        done = issue
        first = issue + self.latency
        for c in range(self.channels):
            nb = base + (1 if c < extra else 0)
            if not nb:
                continue
            cyc = -(-(nb * self.burst) // self.bpc)
            s = max(first, self.bus_free[c])
            e = s + cyc
            self.bus_free[c] = e
            self.channel_busy[c] += cyc
            acc.busy[(op.layer, op.phase.value)] += cyc
            if self.record:
                self._log(f"dma{c}", s, e, op, op.kind)
            if e > done:
                done = e
        if done > self.dma_end:
            self.dma_end = done
        self._record(b, it, k, issue, done, MEMORY)

    def _unit(self, unit: str):
        env = self.env
        blocks = self.prog.blocks
        for b, blk in enumerate(blocks):
            idxs = self.unit_ops[b].get(unit)
            if not idxs:
                continue
            ops = blk.ops
            it = 0
            while it < blk.repeat:
                self.cur_iter[unit] = (b, it)
                acc = self._acc(unit, b, it)
                for k in idxs:
                    self.ops_run += 1
                    if unit == DMA:
                        yield from self._exec_dma(b, it, k, ops[k], acc)
                    else:
                        yield from self._exec_seq(unit, b, it, k, ops[k], acc)
                self._commit(unit, acc)
                if unit == DMA:
                    lim = self.last_issue + self.latency
                    self.snap[b].setdefault(it, {})[unit] = (
                        self.last_issue, (self.dma_end,) + tuple(max(f, lim) for f in self.bus_free))
                self._unit_finished_iteration(b, it)
                j = self.jumps.get(b)
                if j is not None and j.J == it:
                    self._apply_jump(unit, b, j)
                    if unit == DMA:
                        # Shift the clamped channel state (a bus free before the next
                        # request's first byte cannot bind, see _state).
                        lim = self.last_issue + self.latency
                        self.bus_free = [max(f, lim) + j.shift for f in self.bus_free]
                        self.last_issue += j.shift
                        self.dma_end += j.shift
                    yield env.timeout(j.shift)
                    it += j.span
                self._prune(unit, b, it)
                it += 1
            if unit != DMA:
                self.out.unit_end[unit] = env.now
            last = ops[idxs[-1]]
            self.last_key[unit] = (last.layer, last.phase.value)
        if unit == DMA:
            self.out.unit_end[DMA] = self.dma_end

    def _commit(self, unit: str, acc: _Acc) -> None:
        _add_into(self.out.busy[unit], acc.busy)
        _add_into(self.out.stall[unit], acc.stall)
        if unit == ENGINE:
            _add_into(self.out.engine_time, acc.etime)

    def _apply_jump(self, unit: str, b: int, j: _Jump) -> None:
        """Charge ``q`` more periods of this unit's busy and stall cycles, and log them."""
        start = self.env.now if unit != DMA else max(self.bus_free)
        for it in range(j.J - j.p + 1, j.J + 1):
            a = self.acc[unit][(b, it)]
            _add_into(self.out.busy[unit], a.busy, j.q)
            _add_into(self.out.stall[unit], a.stall, j.q)
            if unit == ENGINE:
                _add_into(self.out.engine_time, a.etime, j.q)
        if unit == DMA:
            # Per-channel busy cycles of the period, from the channel counters' growth.
            per = self._dma_period_channel_busy(b, j)
            for c, cyc in enumerate(per):
                self.channel_busy[c] += cyc * j.q
        op = self.prog.blocks[b].ops[self.unit_ops[b][unit][0]]
        name = unit if unit != DMA else "dma"
        self.out.steady.append(Interval(name, start, start + j.shift, op.layer,
                                        op.phase.value, f"steady x{j.span}"))

    def _dma_period_channel_busy(self, b: int, j: _Jump) -> list[int]:
        blk = self.prog.blocks[b]
        per = [0] * self.channels
        for k in self.unit_ops[b][DMA]:
            op = blk.ops[k]
            bursts = -(-op.nbytes // self.burst) if op.nbytes else 0
            base, extra = divmod(bursts, self.channels)
            for c in range(self.channels):
                nb = base + (1 if c < extra else 0)
                if nb:
                    per[c] += -(-(nb * self.burst) // self.bpc)
        return [x * j.p for x in per]

    def _prune(self, unit: str, b: int, it: int) -> None:
        accs = self.acc[unit]
        old = (b, it - MAX_PERIOD - 1)
        accs.pop(old, None)

    # ------------------------------------------------------------------ steady state

    def _unit_finished_iteration(self, b: int, it: int) -> None:
        fin = self.finished_units[b]
        fin[it] += 1
        if fin[it] == len(self.unit_ops[b]):
            del fin[it]
            if self.extrapolate and b not in self.jumps:
                self._detect(b, it)

    def _state(self, b: int, i: int, w: int) -> list[int] | None:
        out: list[int] = []
        for t in range(i - w + 1, i + 1):
            d, s = self.done[b].get(t), self.issue[b].get(t)
            if d is None or s is None:
                return None
            out.extend(d)
            out.extend(s)
        snap = self.snap[b].get(i)
        if snap is not None:
            for u in sorted(snap):
                last, bus = snap[u]
                out.append(last)
                out.extend(bus)
        return out

    def _detect(self, b: int, i: int) -> None:
        blk = self.prog.blocks[b]
        w = blk.window
        cur = self._state(b, i, w)
        if cur is None:
            return
        for p in range(1, MAX_PERIOD + 1):
            if i - p - w + 1 < 0:
                break
            prev = self._state(b, i - p, w)
            if prev is None or len(prev) != len(cur):
                continue
            # Stall causes propagate through barriers, so they are state too.
            if any(self.cause[b][i - t] != self.cause[b][i - p - t] for t in range(w)):
                continue
            d = cur[0] - prev[0]
            if d < 0 or any(x - y != d for x, y in zip(cur, prev)):
                continue
            # Every unit of the block must be able to stop after the same iteration J.
            J = i + p
            for u in self.unit_ops[b]:
                ub, uit = self.cur_iter.get(u, (b, 0))
                if ub == b:
                    J = max(J, uit)
            q = (blk.repeat - 1 - J) // p
            if q < 1:
                return
            jump = _Jump(J=J, p=p, q=q, d=d)
            self.jumps[b] = jump
            self.out.jumps.append((b, J, p, q, d))
            # Waiters on iterations that are now virtual wait for their base instead.
            for key in [k for k in self.waiters if k[0] == b and J < k[1] <= J + jump.span]:
                evs = self.waiters.pop(key)
                if self._lookup(b, key[1], key[2]) is not None:
                    for ev in evs:
                        ev.succeed()
                else:
                    self.waiters.setdefault((b, key[1] - jump.span, key[2]), []).extend(evs)
            return

    # ------------------------------------------------------------------ run

    def run(self) -> SystemRun:
        present = {op.unit for blk in self.prog.blocks for op in blk.ops}
        for u in UNITS:
            if u in present:
                self.env.process(self._unit(u))
        self.env.run()
        if self.waiters:
            key = next(iter(self.waiters))
            raise RuntimeError(f"deadlock: block {key[0]} iteration {key[1]} op {key[2]} "
                               f"never scheduled (a dependency cycle in the program)")
        for u in UNITS:
            if u in present and u not in self.out.unit_end:
                raise RuntimeError(f"unit {u} did not finish its program (deadlock)")
        out = self.out
        out.total_cycles = max(out.unit_end.values(), default=0)
        out.engine_end = out.unit_end.get(ENGINE, 0)
        if out.unit_end:
            # The unit that ends last (ties: UNITS order) owns the tail.
            last_unit = max(UNITS, key=lambda u: (out.unit_end.get(u, -1), -UNITS.index(u)))
            out.tail_key = self.last_key[last_unit]
        out.channel_busy = list(self.channel_busy)
        out.simulated_ops = self.ops_run
        out.busy = {u: dict(v) for u, v in out.busy.items()}
        out.stall = {u: dict(v) for u, v in out.stall.items()}
        out.engine_time = dict(out.engine_time)
        return out


def run(prog: SysProgram, cfg: AcceleratorConfig, *, extrapolate: bool = True,
        record: bool = True) -> SystemRun:
    """Run ``prog`` on ``cfg``'s units; return its timing.

    Parameters
    ----------
    prog
        A lowered program (:func:`nmsat.simulator.lowering.lower` builds one from a tile
        program).
    cfg
        The accelerator (DRAM channels, bandwidth, latency and burst size are read here;
        op cycles were fixed by the lowering).
    extrapolate
        Skip whole periods of a repeated block once its steady state is proven (exact;
        see the module docstring). ``False`` simulates every repetition.
    record
        Log every unit's busy and stall intervals (and one ``steady`` interval per unit
        for each skipped range) for the timeline.
    """
    return _Sim(prog, cfg, extrapolate, record).run()


def static_counts(prog: SysProgram) -> dict[tuple[str, str], tuple[ActivityCounts, int]]:
    """(layer, phase) -> (activity counts, dense-equivalent MACs) of the whole program.

    Counts do not depend on timing, so they are summed statically: each block's body
    times its repeat count.
    """
    out: dict[tuple[str, str], tuple[ActivityCounts, int]] = {}
    for blk in prog.blocks:
        for op in blk.ops:
            key = (op.layer, op.phase.value)
            c, dm = out.get(key, (ZERO_COUNTS, 0))
            out[key] = (c + op.counts.scaled(blk.repeat), dm + op.dense_macs * blk.repeat)
    return out


def attribute_wall_time(r: SystemRun) -> dict[tuple[str, str], int]:
    """Partition ``[0, total_cycles)`` into (layer, phase) cycles.

    Up to the engine's last completion, each cycle belongs to what the engine was doing
    or waiting for (``engine_time``). The tail after it (the last weight update and its
    stores, typically) is charged to the last instruction of the unit that finishes
    last: a rule that depends only on the program and the end times, so extrapolated
    and fully simulated runs attribute it identically.
    """
    out: dict[tuple[str, str], int] = dict(r.engine_time)
    tail = r.total_cycles - r.engine_end
    if tail > 0:
        key = r.tail_key
        out[key] = out.get(key, 0) + tail
    return out


def burst_cycles(cfg: AcceleratorConfig, nbytes: int) -> int:
    """Data-bus cycles of an ``nbytes`` transfer striped over all channels (the slowest
    channel's share), excluding latency."""
    if nbytes <= 0:
        return 0
    bursts = -(-nbytes // cfg.dram.burst_bytes)
    per = math.ceil(bursts / cfg.dram.channels)
    return -(-(per * cfg.dram.burst_bytes) // cfg.dram.bytes_per_cycle)
