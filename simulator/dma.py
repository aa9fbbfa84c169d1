"""The memory service: the DMA engine's SimPy process over a memory model.

One DMA engine with two in-order descriptor queues, ``LOAD`` (queue 0) and ``STORE`` (queue
1). A descriptor is issued once its dependencies are met, a cycle after the previous one of
its queue (``machine.DMA_ISSUE_INTERVAL``) and not before the controller dispatched it
(``machine.dispatch_floors``); when both queue heads are ready the earlier-ready one goes
first (a tie: the load). Several requests may be in flight. When a transfer completes is the
memory model's answer (:class:`nmsat.dataflow.memory.Dma`: the DRAM model selected by
``dram.model``, the buffers' DMA ports, completions in queue order); this module only
decides *when* each descriptor issues, and charges the waits (:mod:`.stalls`).

The RTL testbench's DRAM applies the same :class:`~nmsat.dataflow.memory.Dma` object, so
the DRAM timing is defined once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import simpy

from nmsat.dataflow import machine
from nmsat.dataflow.isa import Buffer, Load, Store
from nmsat.dataflow.memory import Dma

from .program_walk import DMA, K_LOAD, K_STORE, Cursor
from .stalls import DEPENDENCY, TransferCauses
from .units import deps

__all__ = ["DmaService"]

if TYPE_CHECKING:
    from .system import _Sim


class DmaService:
    """Issues the LOAD and STORE queues' descriptors on the memory model."""

    def __init__(self, sim: _Sim, dma: Dma) -> None:
        self.sim = sim
        self.dma = dma
        self.causes = TransferCauses(dma.memory.channels)
        self.last_issue = [0, 0]
        self.next_issue = [0, 0]  # one descriptor per queue per cycle
        self.end = 0  # the latest completion so far
        self.heads: list[int | None] = [None, None]  # queue heads (instruction indices)
        self.deps: list = [None, None]  # and their dependencies
        # per instruction: the buffer a LOAD fills or a STORE drains (None: no transfer)
        self.buffers = [ins.buffer if isinstance(ins, Load) else
                        Buffer.OUT if isinstance(ins, Store) else None
                        for ins in sim.instrs]

    def _issue(self, q: int, idx: int, cur: Cursor, held: bool, cause: str) -> None:
        """Issue the head of queue ``q`` now. ``held``: its dependencies (not the queue
        order) decided the issue time; ``cause``: the cause of the binding dependency."""
        sim = self.sim
        key = sim.attr[idx]
        issue = int(sim.env.now)
        last_issue = self.last_issue[q]
        idle_from = self.end if self.end > last_issue else last_issue
        if issue > idle_from:
            sim.ledger.stalled(DMA, cur, key, idle_from, issue, cause)
        behind = not held and issue == self.next_issue[q]  # right behind its predecessor
        self.last_issue[q] = issue
        self.next_issue[q] = issue + machine.DMA_ISSUE_INTERVAL
        buf = self.buffers[idx]
        if buf is None:  # pragma: no cover - the DMA queues hold transfers only
            raise AssertionError(sim.instrs[idx])
        t = self.dma.issue(q, issue, sim.dma_bytes[idx], buf, sim.port_cycles[idx],
                           sim.dma_tail[idx])
        own = self.causes.completion(q, issue, held, cause, t, behind)
        if sim.ledger.record:
            kind = "load" if q == 0 else "store"
            for sp in t.spans:
                sim.ledger.log(f"dma{sp.channel}", sp.start, sp.end, key, kind)
        done = t.done
        if done > self.end:
            self.end = done
        put = sim.streams.put
        for st in sim.puts[idx]:
            put(st, done, own)
        cur.commit(idx)
        sim.last_key[DMA] = key

    def process(self):
        """SimPy process: issue descriptors in queue order as their dependencies allow."""
        sim = self.sim
        env, streams = sim.env, sim.streams
        curs = (sim.cursors[K_LOAD], sim.cursors[K_STORE])
        heads, dl = self.heads, self.deps
        for q in (0, 1):
            heads[q] = curs[q].next()
            if heads[q] is not None:
                dl[q] = deps(sim.recipes[heads[q]], curs[q])
        known: list = [None, None]  # (ready time, cause) once every dependency is known
        wait_ev: list = [None, None]  # pending wake-up for a head with an unknown dependency

        rec, seg_end = streams.rec, streams.seg_end

        def resolve(q: int) -> None:
            ready, cause = 0, DEPENDENCY
            for s_, n in dl[q]:
                # streams.peek, its common case inline
                t_ = rec[s_].get(n) if n > seg_end[s_] else streams.peek(s_, n)
                if t_ is None:
                    if wait_ev[q] is None or wait_ev[q].triggered:
                        wait_ev[q] = streams.wait_event(s_, n)
                    return
                if t_ > ready:
                    ready, cause = t_, streams.cause(s_, n)
            held = ready > 0 and ready >= self.next_issue[q]
            floor = sim.floor[heads[q]]  # the controller's dispatch (machine.dispatch_floors)
            if floor > ready and floor >= self.next_issue[q]:
                ready, cause, held = floor, DEPENDENCY, False
            known[q] = (max(ready, self.next_issue[q]), cause, held)
            wait_ev[q] = None

        pending = sim.steady.pending_jump[DMA]
        while heads[0] is not None or heads[1] is not None:
            shift = sim.steady.maybe_jump(DMA) if pending else 0
            if shift:
                for q in (0, 1):
                    known[q] = wait_ev[q] = None
                    if heads[q] is not None:
                        dl[q] = deps(sim.recipes[heads[q]], curs[q])
                yield env.timeout(shift)
            if heads[0] is not None and known[0] is None:
                resolve(0)
            if heads[1] is not None and known[1] is None:
                resolve(1)
            k0, k1 = known
            # the earlier-ready known head (a tie: the load), as min((t, q), ...)
            if k0 is not None and (k1 is None or k0[0] <= k1[0]):
                t, q = k0[0], 0
            elif k1 is not None:
                t, q = k1[0], 1
            else:
                yield simpy.AnyOf(env, [ev for ev in wait_ev if ev is not None])
                continue
            if t > env.now:
                # Wait for the earliest known head, unless an unknown one resolves first.
                evs = [ev for ev in wait_ev if ev is not None]
                to = env.timeout(t - env.now)
                yield simpy.AnyOf(env, evs + [to]) if evs else to
                continue
            sim.executed += 1
            self._issue(q, heads[q], curs[q], known[q][2], known[q][1])
            heads[q] = curs[q].next()
            dl[q] = deps(sim.recipes[heads[q]], curs[q]) if heads[q] is not None else None
            known[q] = wait_ev[q] = None
        sim.clock[DMA] = self.end

    # ------------------------------------------------------------------ steady state

    def state(self, now: int, kinds: set[int]) -> tuple[list[int], list]:
        """The DMA's timing state at ``now`` for the steady-state detector: times that
        must all shift by one d, and values that must match exactly. ``kinds``: the
        cursor kinds inside the loop (a queue outside it must sit at the same head)."""
        mem, ports = self.dma.memory, self.dma.ports
        times, busy = mem.state(now)
        times = times + ports.state(mem.first_byte(now))
        times.append(self.end)
        times.extend(max(x, now) for x in self.dma.last_done)
        times.extend(max(x, now) for x in self.next_issue)
        exact: list = [self.causes.state(now, busy)]
        for q, k in ((0, K_LOAD), (1, K_STORE)):
            if k not in kinds:
                exact.append(("idle", q, self.heads[q]))
        return times, exact

    def shift(self, now: int, d: int, kinds: set[int]) -> None:
        """Skip ``d`` cycles of a proven period at ``now``; ``kinds``: the queues that
        took part (by cursor kind)."""
        mem = self.dma.memory
        lim = mem.first_byte(now)
        mem.shift(now, d)
        self.dma.ports.shift(lim, d)
        self.causes.shift(d)
        self.end += d
        for q, k in ((0, K_LOAD), (1, K_STORE)):
            if k in kinds:
                self.last_issue[q] += d
                self.next_issue[q] = max(self.next_issue[q], now) + d
                self.dma.last_done[q] = max(self.dma.last_done[q], now) + d
