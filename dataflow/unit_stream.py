"""The law of a unit that streams its operands over an AXI4 master of its own on the
accelerator top (the SORE's ``rtl/sore_stream.py``, the weight update's
``rtl/wu_stream.py``), item by item: its cycles from the cycle it takes an instruction to
the last write's B response, as the system model charges them under ``dram.dma =
word_slots`` (:mod:`.sore_stream`, :mod:`.wu_stream` give the items).

**The pipeline** (the RTL's registers, ``docs/rtl.md``): the command is taken in cycle 0;
from cycle 1 the read runs of each item are offered in order to a burst reader
(:class:`~nmsat.rtl.axi.BurstReader`: a run taken as the last burst of the one before
issues, its bursts' ARs one a cycle from the next cycle, at most
:func:`~nmsat.dataflow.machine.outstanding_reads` bursts in flight) while fewer than
``slots`` items are between their first read and the lanes' last beat of them; the lanes
take an item from the cycle after its last data beat, one beat a cycle, ``beats`` beats,
once the lanes are free and the item ``slots`` before it has been acknowledged by DRAM
(its output slot free); a beat's result leaves ``latency`` cycles after it; an item's
write runs are offered from the cycle after its last result to a burst writer
(:class:`~nmsat.rtl.axi.BurstWriter`, AWs as the reader's ARs). Every burst is a
transfer of the unit's own DRAM channel (a fresh :func:`~nmsat.dataflow.memory.
memory_model`: the unit's port is not arbitrated against the DMA's, as the system model
has never arbitrated the SORE's and vector engine's streams, ``docs/simulator.md``), in
handshake order (an AR before an AW of the same cycle): a read burst's beats from its
span's start, a write burst's B response at its span's start plus its beats. The unit
completes in the cycle of the last write burst's B response.
"""

from __future__ import annotations

from nmsat.config import AcceleratorConfig

from .machine import outstanding_reads
from .memory import memory_model

__all__ = ["accepts", "stream_law"]


def _bursts(nbytes: int, burst: int, data_bytes: int) -> list[int]:
    """Beats of each burst of a run of ``nbytes`` that starts on a burst or inside one with
    the run inside it (the chunk-row runs are powers of two on their own multiples)."""
    full, rest = divmod(nbytes, burst)
    return [burst // data_bytes] * full + ([rest // data_bytes] if rest else [])


def accepts(check, cfg: AcceleratorConfig) -> bool:
    """Whether ``check(cfg)`` (a unit's ``check_*_stream``, raising ``ValueError`` naming
    the field) passes: the top of ``cfg`` has that unit's stream."""
    try:
        check(cfg)
    except ValueError:
        return False
    return True


def stream_law(items: int, reads: list[int], writes: list[int], beats: int, latency: int,
               slots: int, cfg: AcceleratorConfig) -> int:
    """Cycles of ``items`` items, each read as the runs of ``reads`` bytes, taken by the
    lanes in ``beats`` beats of ``latency`` cycles' pipeline, and written as the runs of
    ``writes`` bytes (each run a power of two bytes on a multiple of itself, or whole
    bursts from a burst's start), with ``slots`` items in flight (module docstring)."""
    return _Law(items, reads, writes, beats, latency, slots, cfg).run()


class _Law:
    """The event law of :func:`stream_law`. A handshake's cycle is known once what it
    waits for is known; the earliest known one is served next (one that waits for an
    unknown quantity waits, through it, for a handshake of an earlier cycle)."""

    def __init__(self, items: int, reads: list[int], writes: list[int], beats: int,
                 latency: int, nslots: int, cfg: AcceleratorConfig):
        d = cfg.dram
        self.items, self.beats = items, beats
        self.S, self.o, self.lat = nslots, outstanding_reads(cfg), latency
        self.db = d.bytes_per_cycle
        self.mem = memory_model(cfg)
        # the bursts of one item's runs: (first of its run, beats)
        self.rb = [(i == 0, b) for nb in reads
                   for i, b in enumerate(_bursts(nb, d.burst_bytes, d.bytes_per_cycle))]
        self.wb = [(i == 0, b) for nb in writes
                   for i, b in enumerate(_bursts(nb, d.burst_bytes, d.bytes_per_cycle))]
        R = items
        self.last_beat: list[int | None] = [None] * R
        self.b_last: list[int | None] = [None] * R
        self.data_end: list[int | None] = [None] * R
        self.ar: list[int] = []  # AR cycle of each read burst served
        self.rlast: list[int] = []  # its last data beat
        self.run_taken = -(1 << 40)  # cycle the reader took the last run
        self.w_taken = -(1 << 40)
        self.aw: list[int] = []  # AW cycle of each write burst served
        self._taken = self._wtaken = 0  # the run taken with the handshake just computed

    def _ar_cycle(self) -> int | None:
        k, per = len(self.ar), len(self.rb)
        if k == self.items * per:
            return None
        r, (first, _) = k // per, self.rb[k % per]
        t = self.ar[-1] + 1 if self.ar else 1
        if first:  # the run: offered once its chunk-row's slot is free, in order
            lb = self.last_beat[r - self.S] if r >= self.S else 0
            if lb is None:
                return None
            free = 1 if r < self.S else lb + 1
            self._taken = max(free, self.run_taken + 1, self.ar[-1] if self.ar else 0)
            t = max(t, self._taken + 1)
        if k >= self.o:  # at most o bursts in flight
            t = max(t, self.rlast[k - self.o] + 1)
        return t

    def _aw_cycle(self) -> int | None:
        k, per = len(self.aw), len(self.wb)
        if k == self.items * per:
            return None
        r, (first, _) = k // per, self.wb[k % per]
        if not first:
            return self.aw[-1] + 1
        lb = self._lanes(r)
        if lb is None:
            return None
        self._wtaken = max(lb + self.lat + 1, self.w_taken + 1, self.aw[-1] if self.aw else 0)
        return self._wtaken + 1

    def _lanes(self, r: int) -> int | None:
        """The last lane beat of chunk-row r, once its data, the lanes and its output slot
        are known."""
        if self.last_beat[r] is not None:
            return self.last_beat[r]
        prev = self.last_beat[r - 1] if r else 0
        credit = 0 if r < self.S else self.b_last[r - self.S]
        data = self.data_end[r]
        if data is None or prev is None or credit is None:
            return None
        last = max(data + 1, prev + 1, credit + 1) + self.beats - 1
        self.last_beat[r] = last
        return last

    def run(self) -> int:
        per_r, per_w = len(self.rb), len(self.wb)
        while True:
            ta, tw = self._ar_cycle(), self._aw_cycle()
            if ta is None and tw is None:
                break
            if ta is not None and (tw is None or ta <= tw):
                k = len(self.ar)
                if self.rb[k % per_r][0]:
                    self.run_taken = self._taken
                beats = self.rb[k % per_r][1]
                start = self.mem.transfer(ta, beats * self.db)[0].start
                self.ar.append(ta)
                self.rlast.append(start + beats - 1)
                if (k + 1) % per_r == 0:
                    self.data_end[k // per_r] = self.rlast[-1]
            else:
                assert tw is not None
                k = len(self.aw)
                if self.wb[k % per_w][0]:
                    self.w_taken = self._wtaken
                beats = self.wb[k % per_w][1]
                start = self.mem.transfer(tw, beats * self.db)[0].start
                self.aw.append(tw)
                if (k + 1) % per_w == 0:
                    self.b_last[k // per_w] = start + beats
        done = self.b_last[-1]
        if done is None:  # pragma: no cover - a dependency cycle in the law
            raise AssertionError("unit stream law: an item was never written")
        return done
