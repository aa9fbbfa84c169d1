"""DRAM and DMA timing: the one definition the system model and the RTL testbench share.

This module is the *memory-model seam*. Everything here is a pure timing function of
integer cycle times and byte counts (no SimPy, no cocotb), so the SimPy system model
(:mod:`nmsat.simulator.dma`) and the RTL testbench's DRAM
(:mod:`nmsat.rtl.tb.cocotb_controller`, from a cocotb coroutine) apply the same object.

A :class:`MemoryModel` answers one question: a transfer of ``nbytes`` issued at cycle
``t`` occupies which channels from when to when (:meth:`MemoryModel.transfer`). A
transfer is rounded up to ``dram.burst_bytes`` bursts striped over ``dram.channels``
channels (address interleaving: burst b on channel b mod channels, from channel 0), so a
channel's share of a transfer is consecutive in that channel's address space. How a
channel serves its share is the model's:

``simple`` (:class:`SimpleDram`)
    Each channel is a data bus of ``dram.bytes_per_cycle``; the first byte leaves
    ``dram.latency_cycles`` after issue, after the channel's previous transfer.
``row_buffer`` (:class:`RowBufferDram`)
    The same bus, and each channel has ``dram.banks`` banks with one open row of
    ``dram.row_bytes``. A transfer's share opens its rows afresh (a row miss:
    precharge ``dram.t_rp_cycles`` + activate ``dram.t_rcd_cycles``; the column latency is
    in ``latency_cycles``), and every further row of it is a miss too; the bursts within
    a row are row hits. With two or more banks the controller activates the next row's
    bank while the current row streams (consecutive rows map to different banks), so a
    row miss only shows where a row streams for less than the miss; with one bank every
    row waits for its precharge and activate after the previous row's data.

:class:`BufferPorts` is the other half of a transfer's path: each buffer's DMA port,
through which a transfer streams its beats (one word per bank per beat;
:func:`nmsat.dataflow.machine.port_cycles`, ``docs/architecture.md`` section 7) from its
first byte on, after the buffer's previous transfer. :class:`Dma` puts the two together
with the DMA's in-order completions per queue (0: loads, 1: stores; one per cycle): its
:meth:`Dma.issue` is the completion cycle of a LOAD or STORE.

From a cocotb coroutine (the RTL testbench's DRAM), time is the testbench's cycle count
and the model is called as it is from the simulator::

    dma = Dma.from_config(cfg)
    ...
    t = dma.issue(0, cycle, nbytes, Buffer.ACT, port_cycles)  # a LOAD seen at ``cycle``
    # complete it at t.done; per channel, t.spans give each channel's first and last
    # data cycle (to pace an AXI slave's read beats, for example)

Adding a DRAM model: subclass :class:`StripedDram` and write :meth:`StripedDram.serve`
(one channel's share of one transfer), or implement :class:`MemoryModel` directly;
add its name to :data:`MODELS`, its parameters to ``DramConfig`` (``nmsat/config.py``)
with their sources, and the docs (``docs/simulator.md``). Nothing in the system model
changes. The model must keep the max-plus form the system model's loop extrapolation
relies on: every time it returns is a max of (input times + constants), and
:meth:`MemoryModel.state` lists every time it remembers.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol, runtime_checkable

from nmsat.arith import ceil_div
from nmsat.config import DRAM_MODELS, AcceleratorConfig

from .isa import Buffer
from .machine import DMA_ISSUE_INTERVAL, DMA_REQUEST_CYCLES

__all__ = ["MODELS", "BufferPorts", "Dma", "Issued", "MemoryModel", "RowBufferDram",
           "SimpleDram", "Span", "StripedDram", "memory_model"]


class Span(NamedTuple):
    """One channel's part of a transfer: data on the channel's bus in ``[start, end)``;
    ``queued``: the channel was still busy with an earlier transfer when this one could
    have started (it waited for bandwidth)."""

    channel: int
    start: int
    end: int
    queued: bool


@runtime_checkable
class MemoryModel(Protocol):
    """The DRAM: the operations the system model and the testbench need.

    Times are integer accelerator cycles. :meth:`transfer` changes the model's state
    (the channels' occupancy); the other methods do not.
    """

    channels: int

    def transfer(self, t: int, nbytes: int) -> tuple[Span, ...]:
        """Serve ``nbytes`` issued at ``t``: the channels' spans, in channel order."""
        ...

    def first_byte(self, t: int) -> int:
        """The earliest cycle the first byte of a transfer issued at ``t`` can arrive."""
        ...

    def data_cycles(self, nbytes: int) -> tuple[int, ...]:
        """Per channel, the cycles its bus carries data of one ``nbytes`` transfer
        (independent of time: the DMA's busy channel-cycles)."""
        ...

    def stream_cycles(self, nbytes: int) -> int:
        """Cycles from issue to the last byte of ``nbytes`` on idle channels (how the
        SORE and vector engine stream their operands)."""
        ...

    def state(self, now: int) -> tuple[list[int], list[bool]]:
        """The remembered times seen from cycle ``now`` (times no transfer issued at or
        after ``now`` can tell apart are equal), and per channel whether it is busy past
        them. Two states whose times differ by one constant behave the same, shifted."""
        ...

    def shift(self, now: int, d: int) -> None:
        """Move the state seen from ``now`` ``d`` cycles later (a skipped period)."""
        ...


class StripedDram:
    """Bursts striped over channels; :meth:`serve` is how one channel serves its share.

    Each channel remembers one time, ``ready``: the earliest cycle it can deliver the
    first byte of a new transfer (the end of its previous transfer's data, plus whatever
    that transfer leaves to do).
    """

    def __init__(self, channels: int, bytes_per_cycle: int, latency: int, burst: int) -> None:
        self.channels = channels
        self.bpc = bytes_per_cycle
        self.latency = latency
        self.burst = burst
        self.ready = [0] * channels
        self._share_memo: dict[int, tuple[tuple[int, int], ...]] = {}
        self._cycles_memo: dict[int, tuple[tuple[int, int], ...]] = {}

    def serve(self, ready: int, t: int, nbytes: int) -> tuple[int, int, int]:
        """One channel, free from ``ready``, serves ``nbytes`` issued at ``t``:
        (first data cycle, end of data, the channel's new ``ready``)."""
        raise NotImplementedError

    def first_byte(self, t: int) -> int:
        return t + self.latency

    def _shares(self, nbytes: int) -> list[int]:
        """Bytes per channel (whole bursts; 0: the channel is not used)."""
        base, extra = divmod(ceil_div(nbytes, self.burst), self.channels)
        return [(base + (1 if ch < extra else 0)) * self.burst for ch in range(self.channels)]

    def _used(self, nbytes: int) -> tuple[tuple[int, int], ...]:
        """(channel, bytes) of the channels a transfer of ``nbytes`` uses (memoised:
        :meth:`_shares` depends on ``nbytes`` alone)."""
        used = self._share_memo.get(nbytes)
        if used is None:
            used = self._share_memo[nbytes] = tuple(
                (ch, share) for ch, share in enumerate(self._shares(nbytes)) if share)
        return used

    def transfer(self, t: int, nbytes: int) -> tuple[Span, ...]:
        first = self.first_byte(t)
        out = []
        for ch, share in self._used(nbytes):
            r = self.ready[ch]
            s, e, self.ready[ch] = self.serve(r, t, share)
            out.append(Span(ch, s, e, r > first))
        return tuple(out)

    def data_cycles(self, nbytes: int) -> tuple[int, ...]:
        return tuple(ceil_div(share, self.bpc) for share in self._shares(nbytes))

    def stream_cycles(self, nbytes: int) -> int:
        if nbytes <= 0:
            return 0
        return max(self.serve(0, 0, share)[1] for share in self._shares(nbytes) if share)

    def state(self, now: int) -> tuple[list[int], list[bool]]:
        lim = self.first_byte(now)
        return [max(r, lim) for r in self.ready], [r > lim for r in self.ready]

    def shift(self, now: int, d: int) -> None:
        lim = self.first_byte(now)
        self.ready = [max(r, lim) + d for r in self.ready]


class SimpleDram(StripedDram):
    """Latency, then the channel's bus at ``bytes_per_cycle`` (``dram.model = "simple"``)."""

    def serve(self, ready: int, t: int, nbytes: int) -> tuple[int, int, int]:
        s = max(ready, t + self.latency)
        e = s + ceil_div(nbytes, self.bpc)
        return s, e, e

    def transfer(self, t: int, nbytes: int) -> tuple[Span, ...]:
        # StripedDram.transfer with serve inline (the system model's hottest call)
        first = t + self.latency
        ready = self.ready
        out = []
        for ch, cyc in self._cycles(nbytes):
            r = ready[ch]
            s = max(r, first)
            ready[ch] = e = s + cyc
            out.append(Span(ch, s, e, r > first))
        return tuple(out)

    def _cycles(self, nbytes: int) -> tuple[tuple[int, int], ...]:
        """(channel, data cycles) of the channels a transfer of ``nbytes`` uses
        (memoised: it depends on ``nbytes`` alone)."""
        used = self._cycles_memo.get(nbytes)
        if used is None:
            used = self._cycles_memo[nbytes] = tuple((ch, ceil_div(share, self.bpc))
                                        for ch, share in self._used(nbytes))
        return used


class RowBufferDram(StripedDram):
    """Banks with an open row each: row hits stream, row misses precharge and activate
    (``dram.model = "row_buffer"``; the module docstring states the policy)."""

    def __init__(self, channels: int, bytes_per_cycle: int, latency: int, burst: int,
                 banks: int, row_bytes: int, miss_cycles: int) -> None:
        super().__init__(channels, bytes_per_cycle, latency, burst)
        self.banks = banks
        self.row_bytes = row_bytes
        self.miss = miss_cycles

    def first_byte(self, t: int) -> int:
        return t + self.latency + self.miss

    def serve(self, ready: int, t: int, nbytes: int) -> tuple[int, int, int]:
        bpc, rb, miss = self.bpc, self.row_bytes, self.miss
        s = start = max(ready, t + self.latency + self.miss)
        lo, end = 0, start
        while lo < nbytes:
            hi = min(lo + rb, nbytes)  # to the end of this row
            if lo:  # a further row: its bank was activated one row ahead, or (one bank) now
                start = max(end, start + miss) if self.banks > 1 else end + miss
            end = start + ceil_div(hi, bpc) - ceil_div(lo, bpc)
            lo = hi
        # With one bank the next transfer's activate waits for this one's data.
        return s, end, end if self.banks > 1 else end + miss


MODELS = DRAM_MODELS
"""Values of ``dram.model``: ``simple`` (:class:`SimpleDram`), ``row_buffer``
(:class:`RowBufferDram`)."""


def memory_model(cfg: AcceleratorConfig) -> StripedDram:
    """The DRAM model ``cfg.dram`` selects, with its parameters."""
    d = cfg.dram
    model = d.model
    if model == "simple":
        return SimpleDram(d.channels, d.bytes_per_cycle, d.latency_cycles, d.burst_bytes)
    if model == "row_buffer":
        return RowBufferDram(d.channels, d.bytes_per_cycle, d.latency_cycles, d.burst_bytes,
                             d.banks, d.row_bytes, d.t_rp_cycles + d.t_rcd_cycles)
    raise ValueError(f"dram.model must be one of {', '.join(MODELS)}, not {model!r}")


class BufferPorts:
    """Each buffer's DMA port, transfers of one buffer taking turns on it; a transfer
    occupies it for its port cycles (its beats of the buffer's words, one or two cycles
    each: :func:`nmsat.dataflow.machine.port_cycles`, ``docs/architecture.md`` section 7)."""

    def __init__(self) -> None:
        self.free = {b: 0 for b in Buffer}

    def transfer(self, buffer: Buffer, first: int, cycles: int) -> int:
        """A transfer of ``cycles`` port cycles through ``buffer``'s port from cycle
        ``first`` on: the cycle its last beat is done."""
        end = max(first, self.free[buffer]) + cycles
        self.free[buffer] = end
        return end

    def state(self, lim: int) -> list[int]:
        return [max(f, lim) for f in self.free.values()]

    def shift(self, lim: int, d: int) -> None:
        self.free = {k: max(f, lim) + d for k, f in self.free.items()}


class Issued(NamedTuple):
    """A LOAD or STORE's timing: ``done`` is its completion; ``after`` the earliest it
    may complete behind the queue's previous completion (in queue order, one per cycle:
    ``machine.DMA_ISSUE_INTERVAL``), ``spans`` the DRAM channels,
    ``port_end`` the buffer port's last byte."""

    done: int
    after: int
    spans: tuple[Span, ...]
    port_end: int


class Dma:
    """The DMA engine's timing: a DRAM model, the buffers' ports, two in-order queues.
    ``request``: per queue (loads, stores), cycles from a descriptor's issue to its first
    DRAM request (``machine.DMA_REQUEST_CYCLES`` of ``dram.dma``)."""

    def __init__(self, memory: MemoryModel, ports: BufferPorts,
                 request: tuple[int, int] = (0, 0)) -> None:
        self.memory = memory
        self.ports = ports
        self.request = request
        self.last_done = [0, 0]

    @classmethod
    def from_config(cls, cfg: AcceleratorConfig) -> Dma:
        return cls(memory_model(cfg), BufferPorts(), DMA_REQUEST_CYCLES[cfg.dram.dma])

    def issue(self, q: int, t: int, nbytes: int, buffer: Buffer, port_cycles: int,
              tail: int = 0) -> Issued:
        """Issue a transfer of ``nbytes`` into (a load, ``q = 0``) or out of (a store,
        ``q = 1``) ``buffer`` at cycle ``t``, occupying the buffer's port for
        ``port_cycles`` (``machine.port_cycles`` of the LOAD or STORE); ``nbytes`` and
        ``tail`` are ``machine.dma_bytes`` and ``machine.dma_tail_cycles`` (its data ends
        ``tail`` cycles before its last burst frees the channel)."""
        last = self.last_done[q]
        after = last + DMA_ISSUE_INTERVAL if last else 0
        r = t + self.request[q]
        spans = self.memory.transfer(r, nbytes)
        port_end = self.ports.transfer(buffer, self.memory.first_byte(r), port_cycles)
        done = max(t, after, port_end)
        for s in spans:
            if s.end - tail > done:
                done = s.end - tail
        self.last_done[q] = done
        return Issued(done, after, spans, port_end)
