"""Completion streams: when the n-th load, free, engine op, store, ... completed.

Every dependency in the system model is "completion ``n`` of stream ``s``" (the ``S_*``
streams of :mod:`nmsat.simulator.program_walk`). :class:`Streams` records each
completion time once it is scheduled, with the stall cause a wait for it is charged to
(:mod:`nmsat.simulator.stalls`), and wakes the processes waiting for it. When the
steady-state detector skips periods of a loop, the skipped completions are not stored:
a segment ``(start, length, per, d)`` answers completion ``n`` in it as completion
``n - m * per`` plus ``m * d`` cycles.
"""

from __future__ import annotations

import bisect

import simpy

from nmsat.arith import ceil_div

from .program_walk import NSTREAM
from .stalls import DEPENDENCY, STREAM_CAUSE

__all__ = ["Streams"]

_NO_SEGMENT = -(1 << 62)
"""``Streams.seg_end`` of a stream without skipped completions (below every number)."""


class Streams:
    """Completion times and causes of every stream, and the processes waiting for them."""

    def __init__(self, env: simpy.Environment) -> None:
        self.env = env
        self.rec: list[dict[int, int]] = [dict() for _ in range(NSTREAM)]
        # A completion that was itself held up by a dependency passes that dependency's
        # cause on (a load held by a SORE barrier makes the engine's wait a SORE stall).
        self.rcause: list[dict[int, str]] = [dict() for _ in range(NSTREAM)]
        self.count = [0] * NSTREAM  # next sequence number per stream (incl. skipped)
        self.segments: list[list[tuple[int, int, int, int]]] = [[] for _ in range(NSTREAM)]
        # per stream, the last skipped sequence number (its last segment's end): a
        # completion after it is stored as itself (no segment to resolve)
        self.seg_end: list[int] = [_NO_SEGMENT] * NSTREAM
        # per stream: sequence number -> the events of the processes waiting for it
        self.waiters: list[dict[int, list[simpy.Event]]] = [{} for _ in range(NSTREAM)]
        self._default_cause = [STREAM_CAUSE[s] for s in range(NSTREAM)]

    def resolve(self, s: int, n: int) -> tuple[int, int]:
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
            m = ceil_div(n - start, per)
            n -= m * per
            shift += m * d
        return n, shift

    def get(self, s: int, n: int):
        """Generator: completion time of ``n`` of stream ``s`` (waits until scheduled)."""
        if n > self.seg_end[s]:
            t = self.rec[s].get(n)
            if t is not None:
                return t
        while True:
            real, shift = self.resolve(s, n)
            t = self.rec[s].get(real)
            if t is not None:
                return t + shift
            ev = self.env.event()
            self.waiters[s].setdefault(real, []).append(ev)
            yield ev

    def peek(self, s: int, n: int) -> int | None:
        """Completion time of ``n`` of stream ``s``, or None if not scheduled yet."""
        if n > self.seg_end[s]:
            return self.rec[s].get(n)
        real, shift = self.resolve(s, n)
        t = self.rec[s].get(real)
        return None if t is None else t + shift

    def cause(self, s: int, n: int) -> str:
        """Cause a wait for completion ``n`` of stream ``s`` is charged to."""
        if n > self.seg_end[s]:
            return self.rcause[s].get(n, self._default_cause[s])
        real, _ = self.resolve(s, n)
        return self.rcause[s].get(real, STREAM_CAUSE[s])

    def put(self, s: int, t: int, cause: str) -> None:
        """Record the next completion of stream ``s``: at ``t``, carrying ``cause``."""
        n = self.count[s]
        self.count[s] = n + 1
        self.rec[s][n] = t
        if cause != self._default_cause[s]:
            self.rcause[s][n] = cause
        waiting = self.waiters[s]
        if waiting:
            ws = waiting.pop(n, None)
            if ws:
                for ev in ws:
                    ev.succeed()

    def wait_event(self, s: int, n: int) -> simpy.Event:
        """An event that fires when completion ``n`` of ``s`` (or its real base) is put."""
        real, _ = self.resolve(s, n)
        ev = self.env.event()
        self.waiters[s].setdefault(real, []).append(ev)
        return ev

    def ready(self, deps):
        """Generator: (time all deps are done, cause of the latest)."""
        ready, binding = 0, None
        for s, n in deps:
            t = yield from self.get(s, n)
            if t > ready:
                ready, binding = t, (s, n)
        return ready, (self.cause(*binding) if binding else DEPENDENCY)

    def skip(self, s: int, start: int, length: int, per: int, d: int) -> None:
        """Completions ``start + 1 .. start + length`` of ``s`` repeat the ones ``per``
        before them ``d`` cycles later; wake whoever waits for one of them."""
        self.segments[s].append((start, length, per, d))
        self.seg_end[s] = start + length
        self.count[s] = start + 1 + length
        waiting = self.waiters[s]
        for n in [n for n in waiting if start < n <= start + length]:
            for ev in waiting.pop(n):
                ev.succeed()
