"""Stall attribution: why a unit waited, and where every cycle of a run goes.

A unit with an instruction pending that cannot start is stalled; the waiting cycles go
to the cause of the dependency that was satisfied last (:data:`STREAM_CAUSE`): a load or
store completion is ``memory``, a SORE completion is ``sore``, an engine or vector-engine
completion is ``dependency``. A completion that was itself held up carries its own wait's
cause on (:class:`~nmsat.simulator.streams.Streams` stores it), so causes follow the
critical chain. A barrier passes on the cause of its latest unit.

Transfers (:class:`TransferCauses`): a transfer whose issue was held by a dependency
carries that cause if the channel was free for it; one that waited for a channel busy
with an earlier transfer waited for bandwidth (``memory``), unless the two were issued in
the same cycle (released by one event, such as a SORE barrier; then it shares the other's
cause); one bound by its buffer's DMA port waited for bandwidth too. The DMA is stalled
while nothing is in flight and its next descriptor waits.

:class:`Ledger` accumulates the stall cycles per (unit, layer, phase, cause), the engine's
timeline per (layer, phase) and the logged intervals; :func:`attribute_wall_time`
partitions a run's cycles over (layer, phase).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from nmsat.types import Phase

from .program_walk import (
    ENGINE,
    S_ENG,
    S_FACT,
    S_FWGT,
    S_LACT,
    S_LOAD,
    S_LWGT,
    S_SO,
    S_ST,
    S_WU,
    UNITS,
)

__all__ = ["OWN_CAUSE", "STREAM_CAUSE", "Interval", "Ledger", "TransferCauses",
           "attribute_wall_time"]

if TYPE_CHECKING:
    from nmsat.dataflow.memory import Issued

    from .program_walk import Cursor
    from .system import SystemRun

MEMORY, SORE_CAUSE, VECTOR, DEPENDENCY = "memory", "sore", "vector", "dependency"
OWN_CAUSE = {"engine": DEPENDENCY, "sore": SORE_CAUSE, "wu": DEPENDENCY}
"""The cause an instruction's completion carries when it did not wait itself. A
vector-engine op's completion always carries ``vector``, whether it waited or not
(:func:`nmsat.simulator.units.vector_causes`): a unit waiting for it waits for the vector
work itself (normalisation, pooling, softmax, activation, residual add). Unlike a load's,
a vector op's own wait is not passed on: it waits for the result it reads (the engine's
output, perhaps itself held up by memory), and that wait ended before the unit that
needs the op began waiting for it."""


STREAM_CAUSE = {S_LOAD: MEMORY, S_LACT: MEMORY, S_LWGT: MEMORY, S_ST: MEMORY,
                S_SO: SORE_CAUSE, S_FACT: DEPENDENCY, S_FWGT: DEPENDENCY, S_ENG: DEPENDENCY,
                S_WU: DEPENDENCY}
"""The cause a wait for a completion of each stream is charged to by default."""


@dataclass(frozen=True)
class Interval:
    """A logged interval of one unit (``dma0``.. for DRAM channels)."""

    unit: str
    start: int
    end: int
    layer: str
    phase: str
    kind: str


class Ledger:
    """Stall cycles, the engine's timeline and the logged intervals of one run.

    Accumulations inside a loop are also logged on the cursor, so that a skipped period
    can add its last period's amounts again (:meth:`Cursor.skip`).
    """

    def __init__(self, record: bool) -> None:
        self.record = record
        self.stall: dict[str, dict[tuple[str, str, str], int]] = {u: {} for u in UNITS}
        self.etime: dict[tuple[str, str], int] = {}
        self.intervals: list[Interval] = []

    def acc(self, cur: Cursor, d: dict, key: tuple, amount: int) -> None:
        if amount:
            d[key] = d.get(key, 0) + amount
            if len(cur.frames) > 1:
                cur.log.append((d, key, amount))

    def log(self, unit: str, start: int, end: int, key: tuple[str, str], kind: str) -> None:
        if self.record and end > start:
            self.intervals.append(Interval(unit, start, end, key[0], key[1], kind))

    def stalled(self, unit: str, cur: Cursor, key: tuple[str, str], since: int, until: int,
                cause: str) -> None:
        """``unit`` waited from ``since`` to ``until`` for ``cause`` before the
        instruction of (layer, phase) ``key``. The engine's wait also goes to its
        timeline: to ``sore`` when the SORE held it up, to ``vector`` when the vector
        engine did (the layer stays the waiting one, as for the SORE: its input was not
        ready), else to the waiting phase."""
        self.acc(cur, self.stall[unit], (key[0], key[1], cause), until - since)
        if unit == ENGINE:
            ek = (key[0], Phase.SORE.value if cause == SORE_CAUSE
                  else VECTOR if cause == VECTOR else key[1])
            self.acc(cur, self.etime, ek, until - since)
        self.log(unit, since, until, key, f"stall:{cause}")


class TransferCauses:
    """The cause each DMA completion carries, and what the channels remember of it."""

    def __init__(self, channels: int) -> None:
        self.issue_cause = [MEMORY, MEMORY]  # per queue: what bound the last issue
        self.done_cause = [MEMORY, MEMORY]  # per queue: what bound the last completion
        self.bus_cause = [MEMORY] * channels  # per channel: its last transfer's cause
        self.bus_issue = [-1] * channels  # release stamp of each channel's last transfer
        self.stamp = [-1, -1]  # per queue: release stamp of its last descriptor

    def completion(self, q: int, issue: int, held: bool, cause: str, t: Issued,
                   behind: bool = False) -> str:
        """The cause transfer ``t`` of queue ``q``, issued at ``issue``, carries.
        ``held``: its dependencies (not the queue order) decided the issue time;
        ``cause``: the cause of the binding dependency; ``behind``: issued right behind
        its queue's previous descriptor (one per cycle), which then shares its release
        stamp, as two descriptors released by one event are.

        The completion's own cause follows whatever bound it: the channel busy with an
        earlier transfer (that transfer's cause), the issue (the dependency's cause, or
        the previous issue's), the buffer port (bandwidth), or nothing (memory)."""
        icause = cause if held else self.issue_cause[q]
        self.issue_cause[q] = icause
        stamp = self.stamp[q] = self.stamp[q] if behind else issue
        done = max(issue, t.after)
        own = self.done_cause[q] if t.after > issue else icause
        for sp in t.spans:
            ch = sp.channel
            if sp.queued:
                # Waiting for a channel busy with an earlier transfer is waiting for
                # bandwidth, unless both were released by one event (e.g. a SORE barrier;
                # the same stamp): then it shares its cause.
                ccause = self.bus_cause[ch] if self.bus_issue[ch] == stamp else MEMORY
            else:
                ccause = icause
            self.bus_cause[ch] = ccause
            self.bus_issue[ch] = stamp
            if sp.end > done:
                done, own = sp.end, ccause
        if t.port_end > done:  # the buffer's port, not DRAM, bounds this transfer
            own = MEMORY
        self.done_cause[q] = own
        return own

    def state(self, now: int, busy: list[bool]) -> tuple:
        """What must match exactly for two timing states to repeat: the queues' causes,
        and for each channel busy past ``now``'s horizon its cause and whether its last
        transfer was issued now."""
        return (tuple(self.issue_cause), tuple(self.done_cause),
                tuple((c, bi == now, bi == self.stamp[0], bi == self.stamp[1]) if b else None
                      for b, c, bi in zip(busy, self.bus_cause, self.bus_issue)))

    def shift(self, d: int) -> None:
        self.bus_issue = [bi + d for bi in self.bus_issue]
        self.stamp = [x + d for x in self.stamp]


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
