"""AXI4 and AXI4-Lite building blocks of the accelerator top (:mod:`nmsat.rtl.top`).

Signal names follow the AMBA AXI4 specification (ARM IHI 0022, ``ARADDR``, ``RDATA``,
...) in lower case behind a prefix (``m_axi_`` for the memory master, ``s_axil_`` for the
control slave), the convention of Xilinx IP and of ``cocotbext-axi``'s
``AxiBus.from_prefix`` / ``AxiLiteBus.from_prefix``.

:class:`AxiParams` fixes the master's geometry from the config (:func:`axi_params`).
:class:`BurstReader` turns read *runs* (a start address and a length in bus beats) into
INCR bursts of at most ``burst_beats`` beats from the run's start that never cross a
4 KiB page (a run that starts on a ``burst_beats x data_bytes`` boundary: bursts aligned
to it; one that starts inside a burst: whole bursts from there, the one that would reach
into the next page cut at it), with at most ``outstanding`` bursts in flight, and hands
the R data on in order. :class:`BurstWriter` does the same for writes:
AW bursts from runs, W beats from a data stream (``wlast`` per burst), and counts the B
responses. :class:`Upsizer` gathers bus beats into a wider word.
"""

from __future__ import annotations

from typing import NamedTuple

from amaranth.hdl import Array, Cat, Module, Mux, Signal
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from nmsat.config import AcceleratorConfig
from nmsat.dataflow.machine import outstanding_reads

__all__ = ["PAGE_BYTES", "AxiParams", "BurstReader", "BurstWriter", "Upsizer",
           "axi_lite_members", "axi_master_members", "axi_params", "burst_lengths",
           "outstanding_reads", "run_layout"]

ADDR_BITS = 32
"""Byte-address width of the memory master (4 GiB), ``m_axi_araddr`` / ``awaddr``."""

PAGE_BYTES = 4096
"""AXI4's address boundary that no burst crosses (ARM IHI 0022, A3.4.1)."""


class AxiParams(NamedTuple):
    """The memory master's geometry."""

    data_bytes: int  # RDATA / WDATA width in bytes
    burst_beats: int  # beats of one INCR burst at most (ARLEN + 1)
    outstanding: int  # read bursts in flight at most
    addr_bits: int = ADDR_BITS

    @property
    def size_code(self) -> int:
        """``ARSIZE`` / ``AWSIZE``: log2 of the bytes per beat."""
        return self.data_bytes.bit_length() - 1


def axi_params(cfg: AcceleratorConfig) -> AxiParams:
    """:class:`AxiParams` from the config: the data bus is one DRAM channel's
    ``dram.bytes_per_cycle`` (a beat per cycle is the channel's sustained bandwidth), a
    burst is ``dram.burst_bytes`` (the DRAM's transfer granularity), and
    :func:`outstanding_reads` bursts are in flight. Raises ``ValueError`` naming the field
    when AXI cannot carry it (a power-of-two width of 1 to 128 bytes, 1 to 256 beats per
    burst, a burst within 4 KiB)."""
    d = cfg.dram
    db = d.bytes_per_cycle
    if db & (db - 1) or not 1 <= db <= 128:
        raise ValueError(f"dram.bytes_per_cycle = {db} is not an AXI data width (a power of "
                         f"two from 1 to 128 bytes)")
    if d.burst_bytes % db or d.burst_bytes & (d.burst_bytes - 1) or d.burst_bytes > 4096:
        raise ValueError(f"dram.burst_bytes = {d.burst_bytes} must be a power of two, a "
                         f"multiple of dram.bytes_per_cycle ({db}) and at most 4096 (AXI "
                         f"bursts do not cross 4 KiB)")
    beats = d.burst_bytes // db
    if beats > 256:
        raise ValueError(f"dram.burst_bytes / dram.bytes_per_cycle = {beats} beats exceeds "
                         f"AXI4's 256-beat burst")
    return AxiParams(db, beats, outstanding_reads(cfg))


def burst_lengths(addr: int, beats: int, p: AxiParams) -> list[int]:
    """The beats of each burst :class:`BurstReader` and :class:`BurstWriter` issue for a
    run of ``beats`` bus beats at byte address ``addr`` (the law of ``_bursts``)."""
    out, page_beats = [], PAGE_BYTES // p.data_bytes
    while beats:
        room = page_beats - (addr // p.data_bytes) % page_beats
        n = min(beats, p.burst_beats, room)
        out.append(n)
        addr, beats = addr + n * p.data_bytes, beats - n
    return out


def axi_lite_members(addr_bits: int, prefix: str = "s_axil_") -> dict:
    """An AXI4-Lite slave's ports (32-bit data)."""
    m = {"awaddr": In(addr_bits), "awprot": In(3), "awvalid": In(1), "awready": Out(1),
         "wdata": In(32), "wstrb": In(4), "wvalid": In(1), "wready": Out(1),
         "bresp": Out(2), "bvalid": Out(1), "bready": In(1),
         "araddr": In(addr_bits), "arprot": In(3), "arvalid": In(1), "arready": Out(1),
         "rdata": Out(32), "rresp": Out(2), "rvalid": Out(1), "rready": In(1)}
    return {prefix + k: v for k, v in m.items()}


def axi_master_members(p: AxiParams, prefix: str = "m_axi_") -> dict:
    """An AXI4 master's ports (one ID bit, always 0: every burst in order)."""
    a, w = p.addr_bits, p.data_bytes * 8
    m = {"awid": Out(1), "awaddr": Out(a), "awlen": Out(8), "awsize": Out(3),
         "awburst": Out(2), "awvalid": Out(1), "awready": In(1),
         "wdata": Out(w), "wstrb": Out(p.data_bytes), "wlast": Out(1), "wvalid": Out(1),
         "wready": In(1),
         "bid": In(1), "bresp": In(2), "bvalid": In(1), "bready": Out(1),
         "arid": Out(1), "araddr": Out(a), "arlen": Out(8), "arsize": Out(3),
         "arburst": Out(2), "arvalid": Out(1), "arready": In(1),
         "rid": In(1), "rdata": In(w), "rresp": In(2), "rlast": In(1), "rvalid": In(1),
         "rready": Out(1)}
    return {prefix + k: v for k, v in m.items()}


def run_layout(addr_bits: int) -> data.StructLayout:
    """A run: ``beats`` consecutive bus beats from byte address ``addr``."""
    return data.StructLayout({"addr": addr_bits, "beats": 24})


def _bursts(m: Module, p: AxiParams, run, addr: Signal, left: Signal, length: Signal) -> None:
    """``length``: beats of the next burst of a run at ``addr`` with ``left`` beats: up to
    ``burst_beats``, and up to the next 4 KiB page (AXI4: a burst does not cross one). A
    run that starts on a burst boundary gets bursts aligned to ``burst_beats``; one that
    starts inside a burst gets whole bursts from its start, split only at a page."""
    page_beats = PAGE_BYTES // p.data_bytes
    assert p.burst_beats & (p.burst_beats - 1) == 0 and p.burst_beats <= page_beats, \
        "burst_beats is a power of two within a page (axi_params)"
    lp = page_beats.bit_length() - 1
    beat_no = addr[p.size_code:]
    room = Signal(range(page_beats + 1))
    m.d.comb += room.eq(page_beats - (beat_no[:lp] if lp else 0))
    m.d.comb += length.eq(left)
    with m.If((left > p.burst_beats) & (room >= p.burst_beats)):
        m.d.comb += length.eq(p.burst_beats)
    with m.Elif(left > room):
        m.d.comb += length.eq(room)


class BurstReader(wiring.Component):
    """Read runs into AXI4 bursts (see the module docstring). ``runs`` in, ``data`` out
    (the R beats in order); ``bursts_in_flight`` for the status registers."""

    def __init__(self, p: AxiParams):
        self.p = p
        super().__init__({
            "runs": In(stream.Signature(run_layout(p.addr_bits))),
            "data": Out(stream.Signature(p.data_bytes * 8)),
            **{k: v.flip() for k, v in axi_master_members(p, "").items()
               if k.startswith(("ar", "r")) and not k.startswith("rid")},
            "rid": In(1), "busy": Out(1), "addr_free": Out(1)})

    def elaborate(self, platform) -> Module:
        m = Module()
        p = self.p
        addr, left = Signal(p.addr_bits), Signal(24)
        length = Signal(range(p.burst_beats + 1))
        _bursts(m, p, self.runs, addr, left, length)
        inflight = Signal(range(p.outstanding + 1))
        on = Signal()
        ar = self.arvalid & self.arready
        # the next run is taken with the current one's last burst: back-to-back bursts
        free = ~on | (ar & (left == length))
        m.d.comb += self.addr_free.eq(free)  # no burst of a taken run left after this cycle
        m.d.comb += [self.arid.eq(0), self.arsize.eq(p.size_code), self.arburst.eq(1),
                     self.araddr.eq(addr), self.arlen.eq(length - 1),
                     self.arvalid.eq(on & (inflight < p.outstanding)),
                     self.runs.ready.eq(free)]
        with m.If(ar):
            m.d.sync += [addr.eq(addr + (length << p.size_code)), left.eq(left - length)]
            with m.If(left == length):
                m.d.sync += on.eq(0)
        with m.If(self.runs.valid & free & (self.runs.payload.beats != 0)):
            m.d.sync += [addr.eq(self.runs.payload.addr), left.eq(self.runs.payload.beats),
                         on.eq(1)]
        last = self.rvalid & self.rready & self.rlast
        m.d.sync += inflight.eq(inflight + ar - last)
        m.d.comb += [self.data.valid.eq(self.rvalid), self.data.payload.eq(self.rdata),
                     self.rready.eq(self.data.ready), self.busy.eq(on | (inflight != 0))]
        return m


class BurstWriter(wiring.Component):
    """Write runs into AXI4 bursts: ``runs`` give the AW bursts, ``data`` the W beats in
    the same order (``strb``, valid with ``data``, their byte enables: all ones unless
    driven); ``issued`` counts AW bursts sent (registered: not yet the one sent this
    cycle), ``acked`` B responses received. ``runs`` is ready (``addr_free``) while no run
    is taken and in the cycle of a run's last AW burst; ``run_done`` pulses with the last
    AW burst of a run that came with ``runs_last`` (a transfer's last run)."""

    def __init__(self, p: AxiParams, queue: int = 16):
        self.p, self.queue = p, queue
        super().__init__({
            "runs": In(stream.Signature(run_layout(p.addr_bits))),
            "data": In(stream.Signature(p.data_bytes * 8)),
            "strb": In(p.data_bytes, init=(1 << p.data_bytes) - 1),
            **{k: v.flip() for k, v in axi_master_members(p, "").items()
               if k.startswith(("aw", "w", "b"))},
            "runs_last": In(1), "run_done": Out(1),
            "issued": Out(32), "acked": Out(32), "addr_free": Out(1)})

    def elaborate(self, platform) -> Module:
        m = Module()
        p = self.p
        addr, left = Signal(p.addr_bits), Signal(24)
        length = Signal(range(p.burst_beats + 1))
        _bursts(m, p, self.runs, addr, left, length)
        on, last_run = Signal(), Signal()
        # burst lengths from the AW side to the W side (wlast)
        m.submodules.lens = lens = fifo.SyncFIFOBuffered(width=9, depth=self.queue)
        aw = self.awvalid & self.awready
        # the next run is taken with the current one's last burst: back-to-back bursts
        # (one-beat bursts issue an AW every cycle, across runs too)
        free = ~on | (aw & (left == length))
        m.d.comb += [self.addr_free.eq(free), self.run_done.eq(aw & (left == length) & last_run)]
        m.d.comb += [self.awid.eq(0), self.awsize.eq(p.size_code), self.awburst.eq(1),
                     self.awaddr.eq(addr), self.awlen.eq(length - 1),
                     self.awvalid.eq(on & lens.w_rdy), self.runs.ready.eq(free)]
        m.d.comb += [lens.w_en.eq(aw), lens.w_data.eq(length)]
        with m.If(aw):
            m.d.sync += [addr.eq(addr + (length << p.size_code)), left.eq(left - length),
                         self.issued.eq(self.issued + 1)]
            with m.If(left == length):
                m.d.sync += on.eq(0)
        with m.If(self.runs.valid & free & (self.runs.payload.beats != 0)):
            m.d.sync += [addr.eq(self.runs.payload.addr), left.eq(self.runs.payload.beats),
                         on.eq(1), last_run.eq(self.runs_last)]
        beat = Signal(9)
        last = lens.r_rdy & (beat + 1 == lens.r_data)
        m.d.comb += [self.wvalid.eq(self.data.valid & lens.r_rdy), self.wdata.eq(self.data.payload),
                     self.wstrb.eq(self.strb), self.wlast.eq(last),
                     self.data.ready.eq(self.wready & lens.r_rdy)]
        w = self.wvalid & self.wready
        with m.If(w):
            m.d.sync += beat.eq(beat + 1)
            with m.If(last):
                m.d.sync += beat.eq(0)
        m.d.comb += lens.r_en.eq(w & last)
        m.d.comb += self.bready.eq(1)
        with m.If(self.bvalid):
            m.d.sync += self.acked.eq(self.acked + 1)
        return m


class Upsizer(wiring.Component):
    """Bus beats of ``in_bytes`` into words of up to ``out_bytes``: ``n`` (set with the
    first beat of a word, at least 1) beats fill slots 0..n-1 of ``data``; the word is
    valid in the cycle of its n-th beat, which passes straight through (so a LOAD's last
    buffer write is a cycle before its completion pulse, not in the same cycle)."""

    def __init__(self, in_bytes: int, out_bytes: int):
        assert out_bytes % in_bytes == 0
        self.slots = out_bytes // in_bytes
        self.in_bytes = in_bytes
        super().__init__({
            "i": In(stream.Signature(in_bytes * 8)), "n": In(range(self.slots + 1)),
            "o": Out(stream.Signature(out_bytes * 8))})

    def elaborate(self, platform) -> Module:
        m = Module()
        regs = [Signal(self.in_bytes * 8, name=f"slot{k}") for k in range(self.slots)]
        slots = Array(regs)
        k = Signal(range(self.slots + 1))
        last = Signal()
        m.d.comb += [last.eq(k + 1 >= self.n),
                     self.o.valid.eq(self.i.valid & last),
                     self.i.ready.eq(~last | self.o.ready),
                     self.o.payload.eq(Cat(*(Mux(k == j, self.i.payload, regs[j])
                                             for j in range(self.slots))))]
        with m.If(self.i.valid & self.i.ready):
            with m.If(last):
                m.d.sync += k.eq(0)
            with m.Else():
                m.d.sync += [slots[k].eq(self.i.payload), k.eq(k + 1)]
        return m
