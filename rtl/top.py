"""The accelerator top a host drives: AXI4-Lite control, an AXI4 memory master, the tile
controller and tensor engine (:class:`~nmsat.rtl.controller.ControlledEngine`), and a
hardware DMA for LOAD and STORE (``docs/rtl.md``, "Top level").

The host writes into DRAM a tile program (one 64-byte line per encoded instruction,
``docs/isa.md``), a *DMA descriptor table* (one 64-byte line per tensor id of the program,
:func:`descriptor_line`) and the tensors in the engine's word layouts
(:mod:`nmsat.rtl.dma_layout`), sets ``PROG_ADDR``, ``PROG_LEN``, ``DESC_ADDR`` and
``DESC_COUNT`` over AXI4-Lite (:data:`REGISTERS`) and writes ``CONTROL.start``. The top
then fetches the descriptors and the program over AXI4 (bursts, ``fetch`` cycles), starts
the controller and runs the program: the controller's LOAD commands become AXI4 read
bursts whose data the DMA writes into the ACT or WGT half as load-port beats, its STOREs
drain the engine's store stream into AXI4 write bursts. ``STATUS.done`` (and ``irq`` when
``CONTROL.irq_enable``) rises when the controller is done; ``CYCLES`` holds the program's
cycles from ``start`` of the controller to ``done`` (the system model's time base), the
other counters where they went.

DMA addressing (per tensor id one descriptor for its ACT or STORE view and one for its
WGT view, a LOAD into WGT using the second: ``base``, ``stride`` in bytes, ``kpc`` the K
elements per chunk of the LOAD's pattern, one of :func:`chunk_sizes`); ``WS`` is a
buffer's word slot in DRAM (:func:`word_slot`), a port beat is ``banks`` consecutive
slots:

* ACT LOAD of rows ``r0..`` and K ``c0..`` (``c0`` a multiple of kpc): per tile row u a
  run of ``ceil(kc / R)`` beats from ``base + (r0 + u) * stride + (c0 / kpc) * WS``
  (``kc = ceil(cols / kpc)`` chunks); the beat's slot i goes to bank ``(u + i) mod R``
  (:func:`~nmsat.rtl.layouts.act_location`), enabled while chunk ``j R + i < kc``.
* WGT LOAD of K ``r0..`` (a multiple of kpc) and columns ``c0..`` (a multiple of C): per
  column tile u a run of ``kc`` beats from ``base + (c0 / C + u) * stride + (r0 / kpc) *
  C * WS``; slot i goes to bank i, enabled while column ``u C + i < cols``.
* STORE of rows ``r0..`` and columns ``c0..`` (a multiple of C): per row block u a run
  of ``ceil(cols / C)`` store blocks of ``R C 4`` bytes (the engine's store beat, 32-bit
  words by row) from ``base + (r0 // R + u) * stride + (c0 / C) R C 4``; the block's row
  j carries the tile's row ``j - r0 mod R`` and its byte enables are on for the tile's
  rows only (a STORE that starts inside a row block must end in it: ``STATUS.error``).

A LOAD's beats go to ``half * depth`` onwards of its buffer, one per port beat in order,
a port beat in the cycle of its last bus beat; its completion pulses the cycle after its
last beat is written; a STORE completes in the cycle of its last burst's B response.
"""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Module, Mux, Signal
from amaranth.lib import data, fifo, wiring
from amaranth.lib.wiring import Out

from nmsat.arith import ceil_div
from nmsat.config import AcceleratorConfig
from nmsat.dataflow import isa
from nmsat.types import NM, DType

from .axi import (
    AxiParams,
    BurstReader,
    BurstWriter,
    Upsizer,
    axi_lite_members,
    axi_master_members,
    axi_params,
)
from .controller import ControlledEngine
from .layouts import EngineShape
from .sore_stream import SoreStream, attach, sore_port
from .wu_stream import WuStream, attach_wu, wu_port

__all__ = ["DESC_BYTES", "DESC_FIELDS", "DESC_NAMES", "LINE_BYTES", "MAX_TENSORS", "REGISTERS",
           "SORE_PREFIX", "TOP_NAME", "WU_PREFIX", "AcceleratorTop", "beat_bytes", "check_beats",
           "chunk_sizes", "descriptor_line", "register", "word_slot"]

TOP_NAME = "nmsat_top"
WU_PREFIX = "m_axi_wu_"
"""The weight-update stream's AXI4 master (its own DRAM port, as the SORE's)."""
SORE_PREFIX = "m_axi_sore_"
"""The SORE stream's AXI4 master (its own DRAM port, not arbitrated against the DMA's,
as the system model has it: :mod:`nmsat.dataflow.sore_stream`)."""
LINE_BYTES = isa.INSTR_BITS // 8
"""An instruction in DRAM: one 64-byte line (the ISA's fixed 512-bit encoding)."""
DESC_BYTES = LINE_BYTES
"""A DMA descriptor in DRAM: one line (:func:`descriptor_line`)."""
MAX_TENSORS = 16
"""Descriptors the DMA holds (tensor ids 0..15): a layer program references its input,
weight and output (and their gradients in training); 16 leaves room. Decided."""
ADDR = 32  # bits of a descriptor field
DESC_NAMES = ("base", "stride", "kpc", "wbase", "wstride", "wkpc", "rows", "cols",
              "gbase", "gstride", "mbase", "vbase")
"""A tensor's descriptor line, 32-bit little-endian fields in this order: base, stride
and kpc of its ACT or STORE view, of its WGT view, its rows and columns (a SORE's or
weight update's working copy ``[in, out]``), and for a working copy a WEIGHT_UPDATE
updates: the base and stride of its gradient (the WG STORE's layout of ``[out, in]``)
and the bases of its fp32 master weights and velocity (the gradient's layout)."""
DESC_FIELDS = tuple(4 * i for i in range(len(DESC_NAMES)))
"""Byte offsets of :data:`DESC_NAMES` in a descriptor line."""

REGISTERS: tuple[tuple[str, int, str, str], ...] = (
    ("CONTROL", 0x00, "rw", "bit 0: start (write 1; reads 0); bit 1: irq_enable"),
    ("STATUS", 0x04, "r/w1c", "bit 0: busy; bit 1: done (write 1 to clear); bit 2: error "
                              "(controller error, a tensor id beyond the descriptors, "
                              "a descriptor kpc that is none of the engine's chunk sizes, "
                              "or a STORE that starts inside a row block and leaves it)"),
    ("PROG_ADDR", 0x08, "rw", "byte address of the program (64-byte lines)"),
    ("PROG_LEN", 0x0C, "rw", "instructions in the program"),
    ("DESC_ADDR", 0x10, "rw", "byte address of the DMA descriptor table (64-byte lines)"),
    ("DESC_COUNT", 0x14, "rw", "descriptors (tensor ids 0..DESC_COUNT-1)"),
    ("CYCLES", 0x18, "r", "program cycles: controller start to done (the system model's "
                          "total_cycles)"),
    ("FETCH_CYCLES", 0x1C, "r", "cycles fetching descriptors and program before start"),
    ("ENGINE_BUSY", 0x20, "r", "cycles the tensor engine computes or drains (system model: "
                               "engine busy)"),
    ("ENGINE_WAIT", 0x24, "r", "cycles the engine is idle while a LOAD or STORE is in the "
                               "DMA (the system model's engine stall, cause memory, counts "
                               "only cycles with an engine instruction pending: this is its "
                               "upper bound)"),
    ("LOAD_BUSY", 0x28, "r", "cycles a LOAD is in the DMA (address or data side)"),
    ("STORE_BUSY", 0x2C, "r", "cycles a STORE is in the DMA"),
    ("READ_BEATS", 0x30, "r", "AXI read data beats during the program"),
    ("WRITE_BEATS", 0x34, "r", "AXI write data beats during the program"),
    ("ENGINE_STALL", 0x38, "r", "cycles the engine is idle before each of its instructions "
                                "starts, from the program's start to its last engine "
                                "instruction's start: the system model's engine stall "
                                "(all causes)"),
    ("LR", 0x3C, "rw", "learning rate of WEIGHT_UPDATE (fp32 bits)"),
    ("MOMENTUM", 0x40, "rw", "momentum of WEIGHT_UPDATE (fp32 bits)"),
)
"""The AXI4-Lite register map: (name, byte offset, access, meaning); 32-bit registers,
counters cleared by ``start``."""


def register(name: str) -> int:
    """Byte offset of register ``name``."""
    for n, off, _, _ in REGISTERS:
        if n == name:
            return off
    raise KeyError(name)


def word_slot(bits: int, p: AxiParams) -> int:
    """Bytes one buffer word of ``bits`` occupies in DRAM: the next power of two, at
    least one bus beat (so every run starts on a beat)."""
    b = max(1, ceil_div(bits, 8))
    return max(1 << (b - 1).bit_length(), p.data_bytes)


def beat_bytes(sh: EngineShape, p: AxiParams) -> dict[str, int]:
    """Bytes of one buffer-port beat: an ACT word per row, a WGT word per column (each in
    its :func:`word_slot`), a STORE block of fp32 results, a program/descriptor line."""
    return {"act": sh.rows * word_slot(sh.window_layout.size, p),
            "wgt": sh.cols * word_slot(sh.slots_layout.size, p),
            "store": sh.rows * sh.cols * 4, "line": LINE_BYTES}


def check_beats(beats: dict[str, int], p: AxiParams) -> None:
    """Raise ``ValueError`` naming ``dram.bytes_per_cycle`` unless the AXI bus width
    divides every beat of :func:`beat_bytes`."""
    for k, v in beats.items():
        if v % p.data_bytes:
            raise ValueError(f"dram.bytes_per_cycle = {p.data_bytes} does not divide the "
                             f"{v}-byte {k} beat of this engine")


def chunk_sizes(sh: EngineShape) -> tuple[int, ...]:
    """The K elements per ACT window (``kpc``) of the engine's dense mode and of each of
    its patterns: the values a descriptor's ``kpc`` can take."""
    return tuple(sorted({nm.k_per_chunk(sh.lanes, sh.window)
                         for nm in (NM.parse("1:1"), *sh.patterns)}))


def descriptor_line(base: int, stride: int, kpc: int,
                    wgt: tuple[int, int, int] = (0, 0, 1),
                    dims: tuple[int, int] = (0, 0),
                    wu: tuple[int, int, int, int] = (0, 0, 0, 0)) -> bytes:
    """One tensor's DMA descriptors as its 64-byte line (:data:`DESC_NAMES`): ``base``,
    ``stride``, ``kpc`` of its ACT or STORE view, those of its WGT view (``wgt``), its
    rows and columns (``dims``) and its weight update's gradient base and stride, master
    and velocity bases (``wu``)."""
    line = bytearray(DESC_BYTES)
    for off, v in zip(DESC_FIELDS, (base, stride, kpc, *wgt, *dims, *wu)):
        line[off:off + 4] = int(v).to_bytes(4, "little")
    return bytes(line)


class AcceleratorTop(wiring.Component):
    """The whole accelerator behind AXI (module docstring). Ports: ``s_axil_*`` (AXI4-Lite
    slave, 32-bit), ``m_axi_*`` (AXI4 master, :func:`~nmsat.rtl.axi.axi_params`), ``irq``."""

    def __init__(self, cfg: AcceleratorConfig, dtype=None, depth: int = 256,
                 shared_cells: bool = False):
        self.cfg, self.depth = cfg, depth
        self.p = p = axi_params(cfg)
        # shared_cells: the engine's cells as instances of two shared modules (synthesis)
        self.core = ControlledEngine(cfg, dtype, depth, shared_cells=shared_cells)
        sh = self.shape = self.core.shape
        self.ws = {"act": word_slot(sh.window_layout.size, p),
                   "wgt": word_slot(sh.slots_layout.size, p)}
        self.beat_bytes = beat_bytes(sh, p)
        check_beats(self.beat_bytes, p)
        # the SORE's memory side, where the config's patterns allow it
        self.sore_stream = (SoreStream(cfg, sh, p, self.core.sore_unit) if sore_port(cfg)
                            else None)
        # the update's memory side: its engine writes an fp16 working copy
        self.wu_stream = (WuStream(cfg, sh, p, self.core.wu_unit)
                          if wu_port(cfg) and sh.dtype is DType.FP16 else None)
        ports = {**axi_lite_members(8), **axi_master_members(p), "irq": Out(1)}
        if self.sore_stream is not None:
            ports.update(axi_master_members(p, SORE_PREFIX))
        if self.wu_stream is not None:
            ports.update(axi_master_members(p, WU_PREFIX))
        super().__init__(ports)

    def elaborate(self, platform) -> Module:
        m = Module()
        p = self.p
        m.submodules.core = core = self.core
        m.submodules.rd = rd = BurstReader(p)
        m.submodules.wr = wr = BurstWriter(p)
        up_bytes = max(self.beat_bytes["act"], self.beat_bytes["wgt"], LINE_BYTES)
        m.submodules.up = up = Upsizer(p.data_bytes, up_bytes)
        for name, member in axi_master_members(p, "").items():
            unit = rd if name.startswith(("ar", "r")) else wr
            port = getattr(self, "m_axi_" + name)
            if member.flow is Out:
                m.d.comb += port.eq(getattr(unit, name))
            else:
                m.d.comb += getattr(unit, name).eq(port)
        regs = self._lite(m)
        desc = [Array(Signal(ADDR, name=f"desc_{f}{t}") for t in range(MAX_TENSORS))
                for f in DESC_NAMES]
        running = self._fetch(m, regs, rd, up, desc, core)
        if self.sore_stream is not None:
            attach(m, self.sore_stream, self, SORE_PREFIX, desc, core, regs["error"])
        if self.wu_stream is not None:
            attach_wu(m, self.wu_stream, self, WU_PREFIX, desc, core)
        # address-phase order: every LOAD and STORE command gets a stamp in command order
        # (a LOAD before a STORE of the same cycle); one transfer at a time issues its
        # AR or AW bursts, the oldest first, so DRAM sees each transfer's bursts together
        # and in issue order, as the system model's one channel queue serves them
        self._seq = Signal(8)
        self._ld_fire, self._st_fire = Signal(), Signal()
        self._ld_ok, self._st_ok = Signal(), Signal()
        load_busy = self._load(m, rd, up, desc, core, running, regs)
        store_busy = self._store(m, wr, desc, core, regs)
        m.d.sync += self._seq.eq(self._seq + self._ld_fire + self._st_fire)
        older = lambda a, b: (a - b)[:8].as_signed() < 0
        m.d.comb += [
            self._ld_ok.eq(wr.addr_free & ~(self._st_pending &
                                             older(self._st_stamp, self._ld_stamp))),
            self._st_ok.eq(rd.addr_free & ~(self._ld_pending &
                                             older(self._ld_stamp, self._st_stamp)))]
        self._counters(m, regs, core, running, load_busy, store_busy, rd, wr)
        return m

    # ---- AXI4-Lite registers
    def _lite(self, m: Module) -> dict:
        regs = {n: Signal(32, name=n.lower()) for n, _, _, _ in REGISTERS}
        regs["start"], regs["irq_en"] = Signal(), Signal()
        regs["done"], regs["error"], regs["busy"] = Signal(), Signal(), Signal()
        s = lambda n: getattr(self, "s_axil_" + n)
        # writes: take AW and W together, answer on B
        take_w = s("awvalid") & s("wvalid") & ~s("bvalid")
        m.d.comb += [s("awready").eq(take_w), s("wready").eq(take_w), s("bresp").eq(0)]
        with m.If(s("bvalid") & s("bready")):
            m.d.sync += s("bvalid").eq(0)
        m.d.sync += regs["start"].eq(0)
        with m.If(take_w):
            m.d.sync += s("bvalid").eq(1)
            with m.Switch(s("awaddr")[2:]):
                with m.Case(register("CONTROL") >> 2):
                    m.d.sync += [regs["start"].eq(s("wdata")[0]), regs["irq_en"].eq(s("wdata")[1])]
                with m.Case(register("STATUS") >> 2):
                    with m.If(s("wdata")[1]):
                        m.d.sync += regs["done"].eq(0)
                for n in ("PROG_ADDR", "PROG_LEN", "DESC_ADDR", "DESC_COUNT", "LR", "MOMENTUM"):
                    with m.Case(register(n) >> 2):
                        m.d.sync += regs[n].eq(s("wdata"))
        # reads: one cycle
        take_r = s("arvalid") & ~s("rvalid")
        m.d.comb += [s("arready").eq(take_r), s("rresp").eq(0)]
        with m.If(s("rvalid") & s("rready")):
            m.d.sync += s("rvalid").eq(0)
        with m.If(take_r):
            m.d.sync += s("rvalid").eq(1)
            with m.Switch(s("araddr")[2:]):
                for n, off, _, _ in REGISTERS:
                    with m.Case(off >> 2):
                        if n == "CONTROL":
                            m.d.sync += s("rdata").eq(regs["irq_en"] << 1)
                        elif n == "STATUS":
                            m.d.sync += s("rdata").eq(Cat(regs["busy"], regs["done"],
                                                          regs["error"]))
                        else:
                            m.d.sync += s("rdata").eq(regs[n])
                with m.Default():
                    m.d.sync += s("rdata").eq(0)
        m.d.comb += self.irq.eq(regs["done"] & regs["irq_en"])
        return regs

    # ---- descriptor and program fetch, then run
    def _fetch(self, m: Module, regs, rd, up, desc, core) -> Signal:
        """Returns ``running`` (the controller runs the program)."""
        p = self.p
        per_line = LINE_BYTES // p.data_bytes
        lines = Signal(32)  # lines consumed
        running, fetching = Signal(), Signal()
        self._fetching = fetching
        issue = Signal(2)  # runs still to issue: 2 desc then prog, 1 prog, 0 none
        with m.If(regs["start"] & ~regs["busy"]):
            m.d.sync += [regs["busy"].eq(1), fetching.eq(1), issue.eq(2), lines.eq(0),
                         regs["done"].eq(0), regs["error"].eq(0)]
        # the fetch runs go to the reader while fetching (the load DMA's after)
        self._fetch_run = Signal(data.StructLayout({"addr": p.addr_bits, "beats": 24}))
        self._fetch_valid = Signal()
        fr = self._fetch_run
        with m.If(fetching & (issue == 2)):
            m.d.comb += [fr.addr.eq(regs["DESC_ADDR"]),
                         fr.beats.eq(regs["DESC_COUNT"] * per_line), self._fetch_valid.eq(1)]
            with m.If(rd.runs.ready):
                m.d.sync += issue.eq(1)
        with m.Elif(fetching & (issue == 1)):
            m.d.comb += [fr.addr.eq(regs["PROG_ADDR"]),
                         fr.beats.eq(regs["PROG_LEN"] * per_line), self._fetch_valid.eq(1)]
            with m.If(rd.runs.ready):
                m.d.sync += issue.eq(0)
        total = regs["DESC_COUNT"] + regs["PROG_LEN"]
        line = up.o.payload
        with m.If(fetching):
            m.d.comb += [up.n.eq(per_line), up.i.valid.eq(rd.data.valid),
                         up.i.payload.eq(rd.data.payload), rd.data.ready.eq(up.i.ready)]
        is_desc = lines < regs["DESC_COUNT"]
        with m.If(fetching & up.o.valid):
            m.d.comb += up.o.ready.eq(is_desc | core.prog.ready)
            with m.If(is_desc):
                for f, off in zip(desc, DESC_FIELDS):
                    m.d.sync += f[lines[:4]].eq(line[off * 8: off * 8 + ADDR])
                with m.If(lines >= MAX_TENSORS):
                    m.d.sync += regs["error"].eq(1)
            with m.Else():
                m.d.comb += [core.prog.valid.eq(1),
                             core.prog.payload.addr.eq(lines - regs["DESC_COUNT"]),
                             core.prog.payload.data.eq(line[:isa.INSTR_BITS])]
            with m.If(up.o.ready):
                m.d.sync += lines.eq(lines + 1)
        with m.If(fetching & (issue == 0) & (lines == total) & ~rd.busy):
            m.d.sync += [fetching.eq(0), running.eq(1)]
            m.d.comb += [core.start.eq(1)]
        m.d.comb += [core.length.eq(regs["PROG_LEN"]), core.lr.eq(regs["LR"]),
                     core.momentum.eq(regs["MOMENTUM"])]
        with m.If(running & core.done):
            m.d.sync += [running.eq(0), regs["busy"].eq(0), regs["done"].eq(1)]
        with m.If(core.error):
            m.d.sync += regs["error"].eq(1)
        return running

    # ---- LOAD: descriptors -> read runs -> port beats
    def _load(self, m: Module, rd, up, desc, core, running, regs) -> Signal:
        sh, p = self.shape, self.p
        R, C = sh.rows, sh.cols
        g = _geometry(self.cfg, sh)
        cmd = core.load_cmd.payload
        entry_l = data.StructLayout({"wgt": 1, "half": 1, "addr": p.addr_bits,
                                     "stride": ADDR, "runs": 24, "beats": 24, "kc": 24,
                                     "cols": 24, "total": 48, "stamp": 8})
        m.submodules.ld_ar = ar_q = fifo.SyncFIFO(width=entry_l.size, depth=4)
        m.submodules.ld_dat = dat_q = fifo.SyncFIFO(width=entry_l.size, depth=4)
        m.submodules.ld_gate = gate_q = fifo.SyncFIFO(width=entry_l.size, depth=4)
        # stage 1: the command's tile against its descriptor (registered), stage 2: push
        t = cmd.tensor
        ok_t = t < MAX_TENSORS
        wgt = cmd.buffer[0]
        # the tensor's WGT view has a descriptor of its own (its ACT one is the other)
        base, stride, kpc = (Mux(wgt, dw[t[:4]], da[t[:4]]) for da, dw in zip(desc[:3], desc[3:]))
        e = data.View(entry_l, Signal(entry_l.size))
        kc, chunk0, ok_kpc = Signal(24), Signal(24), Signal()
        k0 = Mux(wgt, cmd.r0, cmd.c0)
        kext = Mux(wgt, cmd.rows, cmd.cols)
        # kpc is one of the engine's chunk sizes (dense and each pattern, known here): a
        # division by a constant per case (a shift for a power of two), not a divider
        # for any 32-bit kpc; a descriptor with another kpc sets STATUS.error
        with m.Switch(kpc):
            for size in chunk_sizes(sh):
                with m.Case(size):
                    m.d.comb += [kc.eq((kext + size - 1) // size), chunk0.eq(k0 // size),
                                 ok_kpc.eq(1)]
        ws_a, ws_w = self.ws["act"], self.ws["wgt"]
        with m.If(wgt):
            u0 = cmd.c0 // C
            m.d.comb += [e.runs.eq((cmd.cols + C - 1) // C), e.beats.eq(kc),
                         e.addr.eq(base + u0 * stride + chunk0 * (C * ws_w))]
        with m.Else():
            m.d.comb += [e.runs.eq(cmd.rows), e.beats.eq((kc + R - 1) // R),
                         e.addr.eq(base + cmd.r0 * stride + chunk0 * ws_a)]
        m.d.comb += [e.wgt.eq(wgt), e.half.eq(cmd.half), e.stride.eq(stride), e.kc.eq(kc),
                     e.cols.eq(cmd.cols), e.total.eq(e.runs * e.beats), e.stamp.eq(self._seq)]
        staged, held = Signal(), data.View(entry_l, Signal(entry_l.size))
        m.d.comb += core.load_cmd.ready.eq(~staged)
        m.d.comb += self._ld_fire.eq(core.load_cmd.valid & ~staged)
        with m.If(core.load_cmd.valid & ~staged):
            m.d.sync += [staged.eq(1), held.eq(e)]
            with m.If(~ok_t | ~ok_kpc):
                m.d.sync += regs["error"].eq(1)
        push = staged & ar_q.w_rdy & dat_q.w_rdy & gate_q.w_rdy
        m.d.comb += [ar_q.w_data.eq(held), dat_q.w_data.eq(held), gate_q.w_data.eq(held),
                     ar_q.w_en.eq(push), dat_q.w_en.eq(push), gate_q.w_en.eq(push)]
        with m.If(push):
            m.d.sync += staged.eq(0)
        # address side: one run per tile row (ACT) / column tile (WGT)
        a = data.View(entry_l, ar_q.r_data)
        addr, runs_left, astride = Signal(p.addr_bits), Signal(24), Signal(ADDR)
        on = Signal()
        stamp = Signal(8)  # the stamp of the LOAD in the run register
        # the oldest LOAD whose bursts are still to issue, and its stamp
        self._ld_pending = Signal()
        self._ld_stamp = Signal(8)
        m.d.comb += [self._ld_pending.eq(on | ar_q.r_rdy | staged),
                     self._ld_stamp.eq(Mux(on, stamp, Mux(ar_q.r_rdy, a.stamp, held.stamp)))]
        nbus = Mux(a.wgt, self.beat_bytes["wgt"] // p.data_bytes,
                   self.beat_bytes["act"] // p.data_bytes)
        cur_beats = Signal(24)
        present = on & ~self._fetching & self._ld_ok
        with m.If(~self._fetching):
            m.d.comb += [rd.runs.valid.eq(present), rd.runs.payload.addr.eq(addr),
                         rd.runs.payload.beats.eq(cur_beats)]
        with m.Else():
            m.d.comb += [rd.runs.valid.eq(self._fetch_valid),
                         rd.runs.payload.eq(self._fetch_run)]
        run_last = present & rd.runs.ready & (runs_left == 1)
        with m.If(present & rd.runs.ready):
            m.d.sync += [addr.eq(addr + astride), runs_left.eq(runs_left - 1)]
            with m.If(runs_left == 1):
                m.d.sync += on.eq(0)
        m.d.comb += ar_q.r_en.eq((~on | run_last) & ar_q.r_rdy)
        with m.If((~on | run_last) & ar_q.r_rdy):
            m.d.sync += [on.eq(a.runs != 0), addr.eq(a.addr), runs_left.eq(a.runs),
                         cur_beats.eq(a.beats * nbus), astride.eq(a.stride),
                         stamp.eq(a.stamp)]
        # data side: bus beats -> port beats (upsizer) -> the ACT / WGT load port. The
        # input gate (bus beats per LOAD, the upsizer's beats per port beat) and the port
        # side each take their next LOAD as their current one ends, without a gap.
        nbq = Mux(data.View(entry_l, gate_q.r_data).wgt, self.beat_bytes["wgt"] // p.data_bytes,
                  self.beat_bytes["act"] // p.data_bytes)
        in_left = Signal(48)  # bus beats of the current LOAD still to take
        n_cur = Signal.like(up.n)
        take = up.i.valid & up.i.ready & ~self._fetching
        with m.If(take):
            m.d.sync += in_left.eq(in_left - 1)
        with m.If(((in_left == 0) | ((in_left == 1) & take)) & gate_q.r_rdy):
            m.d.comb += gate_q.r_en.eq(1)
            m.d.sync += [in_left.eq(data.View(entry_l, gate_q.r_data).total * nbq),
                         n_cur.eq(nbq)]
        with m.If(~self._fetching):
            m.d.comb += [up.n.eq(n_cur), up.i.valid.eq(rd.data.valid & (in_left != 0)),
                         up.i.payload.eq(rd.data.payload),
                         rd.data.ready.eq(up.i.ready & (in_left != 0))]
        have = self._port_write(m, up, dat_q, entry_l, core, g)
        busy = Signal()
        m.d.comb += busy.eq(staged | ar_q.r_rdy | on | have | dat_q.r_rdy)
        return busy

    def _port_write(self, m: Module, up, dat_q, entry_l, core, g) -> Signal:
        """Port beats of the LOAD at the head of ``dat_q`` into its buffer; returns
        ``have`` (a LOAD is being written)."""
        sh = self.shape
        R, C = sh.rows, sh.cols
        beat = up.o.payload
        d = data.View(entry_l, Signal(entry_l.size))
        have = Signal()
        left_port = Signal(48)  # port beats still to write
        j = Signal(24)  # beat within the run
        u_mod = Signal(range(max(R, 1)))  # run index mod R (ACT rotation)
        kleft = Signal(25)  # ACT: chunks of this run not yet written (kc - j R)
        cleft = Signal(25)  # WGT: columns of this column tile on (cols - u C)
        pa = Signal(32)  # port address: half * depth + beats written
        fire = Signal()
        last = fire & (left_port == 1)
        # the completion pulses the cycle after the LOAD's last write: an engine
        # instruction issued on the pulse reads its first operands in that cycle, from
        # the word written the cycle before (the buffers' read ports are not transparent)
        m.d.sync += core.load_done.eq(last)
        for buf, port, banks in (("act", core.act_load, R), ("wgt", core.wgt_load, C)):
            ws = self.ws[buf] * 8
            wbits = port.payload.data[0].shape().size
            words = [beat[i * ws: i * ws + wbits] for i in range(banks)]
            is_buf = d.wgt if buf == "wgt" else ~d.wgt
            m.d.comb += port.payload.addr.eq(pa)
            if buf == "act":
                en = [kleft > i for i in range(banks)]
                for b in range(banks):  # bank b holds slot (b - u) mod R
                    idx = Mux(u_mod <= b, b - u_mod, b - u_mod + R)
                    m.d.comb += [port.payload.data[b].eq(Array(words)[idx]),
                                 port.payload.en[b].eq(Array(en)[idx])]
            else:
                for b in range(banks):
                    m.d.comb += [port.payload.data[b].eq(words[b]),
                                 port.payload.en[b].eq(cleft > b)]
            with m.If(is_buf & have & up.o.valid & ~self._fetching):
                m.d.comb += [port.valid.eq(1), up.o.ready.eq(port.ready),
                             fire.eq(port.ready)]
        with m.If(fire):
            m.d.sync += [pa.eq(pa + 1), left_port.eq(left_port - 1), j.eq(j + 1),
                         kleft.eq(kleft - R)]
            with m.If(j + 1 == d.beats):  # next run
                m.d.sync += [j.eq(0), kleft.eq(d.kc), cleft.eq(cleft - C),
                             u_mod.eq(Mux(u_mod == R - 1, 0, u_mod + 1))]
            with m.If(last):
                m.d.sync += have.eq(0)
        nx = data.View(entry_l, dat_q.r_data)
        with m.If(dat_q.r_rdy & (~have | last)):
            m.d.comb += dat_q.r_en.eq(1)
            m.d.sync += [have.eq(1), d.eq(nx), left_port.eq(nx.total), j.eq(0), u_mod.eq(0),
                         kleft.eq(nx.kc), cleft.eq(nx.cols),
                         pa.eq(Mux(nx.wgt, g["wgt"], g["act"]) * nx.half)]
        return have

    # ---- STORE: store commands -> write runs; engine store beats -> W beats
    def _store(self, m: Module, wr, desc, core, regs) -> Signal:
        sh, p = self.shape, self.p
        R, C = sh.rows, sh.cols
        sb = self.beat_bytes["store"]
        cmd = core.store_cmd.payload
        t = cmd.tensor
        base, stride = desc[0][t[:4]], desc[1][t[:4]]
        # commands queue with their stamps (accepted in the cycle they come, as LOADs)
        entry_l = data.StructLayout({"addr": p.addr_bits, "stride": ADDR, "runs": 24,
                                     "beats": 24, "stamp": 8})
        m.submodules.st_q = st_q = fifo.SyncFIFO(width=entry_l.size, depth=4)
        e = data.View(entry_l, st_q.w_data)
        m.d.comb += [e.addr.eq(base + (cmd.r0 // R) * stride + (cmd.c0 // C) * sb),
                     e.runs.eq((cmd.rows + R - 1) // R), e.stride.eq(stride),
                     e.beats.eq(((cmd.cols + C - 1) // C) * (sb // p.data_bytes)),
                     e.stamp.eq(self._seq + self._ld_fire)]
        # the data side's view of each STORE: its row offset in the first R-row block,
        # rows, and store blocks per run (a FIFO beside st_q, pushed with it)
        rows_l = data.StructLayout({"d": range(R), "rows": 24, "nt": 24})
        m.submodules.st_rows = rq = fifo.SyncFIFO(width=rows_l.size, depth=4)
        re_ = data.View(rows_l, rq.w_data)
        d_cmd = cmd.r0 % R
        m.d.comb += [re_.d.eq(d_cmd), re_.rows.eq(cmd.rows), re_.nt.eq((cmd.cols + C - 1) // C)]
        ok = st_q.w_rdy & rq.w_rdy
        m.d.comb += [core.store_cmd.ready.eq(ok), st_q.w_en.eq(core.store_cmd.valid & ok),
                     rq.w_en.eq(core.store_cmd.valid & ok),
                     self._st_fire.eq(core.store_cmd.valid & ok)]
        # a tensor beyond the descriptors, or a STORE that starts inside an R-row block and
        # does not end in it (its rows would need a second, shifted run)
        with m.If(core.store_cmd.valid & ok & ((t >= MAX_TENSORS)
                                                | ((d_cmd != 0) & (d_cmd + cmd.rows > R)))):
            m.d.sync += regs["error"].eq(1)
        addr, runs_left, beats = Signal(p.addr_bits), Signal(24), Signal(24)
        rstride = Signal(ADDR)
        on = Signal()
        head = data.View(entry_l, st_q.r_data)
        self._st_stamp = Signal(8)
        cur_stamp = Signal(8)
        self._st_pending = Signal()
        m.d.comb += [self._st_pending.eq(on | st_q.r_rdy),
                     self._st_stamp.eq(Mux(on, cur_stamp, head.stamp))]
        m.d.comb += [wr.runs.valid.eq(on & self._st_ok), wr.runs.payload.addr.eq(addr),
                     wr.runs.payload.beats.eq(beats), wr.runs_last.eq(runs_left == 1)]
        take_next = Signal()
        with m.If(wr.runs.valid & wr.runs.ready):
            m.d.sync += [addr.eq(addr + rstride), runs_left.eq(runs_left - 1)]
            with m.If(runs_left == 1):
                m.d.sync += on.eq(0)
                m.d.comb += take_next.eq(1)
        # a STORE whose last run is in the writer, its last AW burst not yet issued
        in_writer = Signal(2)
        m.d.sync += in_writer.eq(in_writer + take_next - wr.run_done)
        # the STORE's B-count mark, written by the writer's last AW burst of its last run
        # (``issued`` counts that burst from the next cycle)
        m.submodules.marks = marks = fifo.SyncFIFOBuffered(width=32, depth=4)
        m.d.comb += [marks.w_data.eq(wr.issued + 1), marks.w_en.eq(wr.run_done)]
        # the next STORE's runs are taken as this one's last run goes to the writer, which
        # takes them with that run's last AW burst: AW bursts back to back across STOREs
        with m.If((~on | take_next) & st_q.r_rdy):
            m.d.comb += st_q.r_en.eq(1)
            m.d.sync += [on.eq(head.runs != 0), addr.eq(head.addr), runs_left.eq(head.runs),
                         rstride.eq(head.stride), beats.eq(head.beats),
                         cur_stamp.eq(head.stamp)]
        # the STORE completes with its last B response (counted with this cycle's)
        reached = ((wr.acked + wr.bvalid) - marks.r_data)[:32].as_signed() >= 0
        m.d.comb += [marks.r_en.eq(marks.r_rdy & reached),
                     core.store_done.eq(marks.r_rdy & reached)]
        full = self._store_data(m, wr, core, rq, rows_l)
        busy = Signal()
        m.d.comb += busy.eq(st_q.r_rdy | on | (in_writer != 0) | marks.r_rdy | full)
        return busy

    def _store_data(self, m: Module, wr, core, rq, rows_l) -> Signal:
        """The STORE data side: the engine's store beats into W beats with their byte
        enables (``rq``: per STORE its row offset, rows and column tiles, in command
        order);
        returns ``full`` (a store beat is held)."""
        p, sb = self.p, self.beat_bytes["store"]
        R, C = self.shape.rows, self.shape.cols
        # data: the engine's R x C x 32-bit store beat (tile rows 0..R-1, by row), out in
        # bus beats. A STORE from row r0 writes whole R-row blocks of the tensor: the
        # block's row j holds the tile's row j - d (d = r0 mod R), and the byte enables
        # are on for the rows of the tile only, so a STORE that starts inside a block
        # leaves the block's other rows (another STORE's) as they are.
        n = sb // p.data_bytes
        row_bytes = C * 4
        hold = Signal(sb * 8)
        hen = Signal(R)  # the held block's rows to write (block rows)
        hd = Signal(range(R))  # its row offset
        k = Signal(range(n + 1))
        full = Signal()
        # the STORE the next engine beat belongs to: the head of rq until it is taken
        have, cur = Signal(), data.View(rows_l, Signal(rows_l.size))
        head = data.View(rows_l, rq.r_data)
        t_left, rows_u = Signal(24), Signal(25)
        c_d = Mux(have, cur.d, head.d)
        c_nt = Mux(have, cur.nt, head.nt)
        c_t = Mux(have, t_left, head.nt)
        c_rows = Mux(have, rows_u, head.rows)
        take = core.store_data.valid & core.store_data.ready
        with m.If(take):
            with m.If(~have):
                m.d.comb += rq.r_en.eq(1)
                m.d.sync += cur.eq(head)
            # the STORE's last block: its last run's (at most R rows left) last column tile
            m.d.sync += [have.eq(~((c_t == 1) & (c_rows <= R))), t_left.eq(c_t - 1),
                         rows_u.eq(c_rows)]
            with m.If(c_t == 1):  # the run's last block: the next run is R rows on
                m.d.sync += [t_left.eq(c_nt), rows_u.eq(c_rows - R)]
        # the next beat is taken in the cycle the last bus beat of this one goes, so W
        # streams a bus beat per cycle
        drained = wr.data.valid & wr.data.ready & (k == n - 1)
        m.d.comb += [core.store_data.ready.eq((~full | drained) & (have | rq.r_rdy)),
                     wr.data.valid.eq(full)]
        pay = core.store_data.payload.as_value()
        src_rows = [pay.word_select(i, row_bytes * 8) for i in range(R)]
        if row_bytes % p.data_bytes == 0:
            # a bus beat is part of one row: rotate by reading the rows in turn
            bpr = row_bytes // p.data_bytes
            kr, jr = Signal(range(bpr)), Signal(range(R))
            src = Signal(range(R))  # the held tile row block row jr takes
            m.d.comb += src.eq(Mux(jr >= hd, jr - hd, jr + R - hd))
            m.d.comb += wr.data.payload.eq(hold.word_select(src * bpr + kr, p.data_bytes * 8))
            with m.If(wr.data.valid & wr.data.ready):
                m.d.sync += kr.eq(kr + 1)
                with m.If(kr == bpr - 1):
                    m.d.sync += [kr.eq(0), jr.eq(jr + 1)]
            with m.If(take):
                m.d.sync += [kr.eq(0), jr.eq(0), hold.eq(pay)]
        else:  # rows share bus beats: rotate the block as it is taken
            m.d.comb += wr.data.payload.eq(hold.word_select(k, p.data_bytes * 8))
            with m.If(take):
                for j in range(R):
                    sel = Signal(range(R), name=f"st_src{j}")
                    m.d.comb += sel.eq(Mux(j >= c_d, j - c_d, j + R - c_d))
                    m.d.sync += hold.word_select(j, row_bytes * 8).eq(Array(src_rows)[sel])
        bmask = Cat(*(hen[j].replicate(row_bytes) for j in range(R)))
        m.d.comb += wr.strb.eq(bmask.word_select(k, p.data_bytes))
        with m.If(wr.data.valid & wr.data.ready):
            m.d.sync += k.eq(k + 1)
            with m.If(k == n - 1):
                m.d.sync += full.eq(0)
        with m.If(take):
            m.d.sync += [full.eq(1), k.eq(0), hd.eq(c_d),
                         hen.eq(Cat(*((j >= c_d) & (j < c_d + c_rows) for j in range(R))))]
        return full

    def _counters(self, m: Module, regs, core, running, load_busy, store_busy, rd, wr) -> None:
        cnt = lambda n: regs[n]
        idle = Signal(32)
        active_q = Signal()
        m.d.sync += active_q.eq(core.engine_active)
        with m.If(regs["start"] & ~regs["busy"]):
            m.d.sync += [cnt(n).eq(0) for n in ("CYCLES", "FETCH_CYCLES", "ENGINE_BUSY",
                                                "ENGINE_WAIT", "LOAD_BUSY", "STORE_BUSY",
                                                "READ_BEATS", "WRITE_BEATS",
                                                "ENGINE_STALL")]
            m.d.sync += idle.eq(0)
        with m.Elif(self._fetching):
            m.d.sync += cnt("FETCH_CYCLES").eq(cnt("FETCH_CYCLES") + 1)
        with m.Elif(running & ~core.done):
            m.d.sync += [cnt("CYCLES").eq(cnt("CYCLES") + 1),
                         cnt("ENGINE_BUSY").eq(cnt("ENGINE_BUSY") + core.engine_busy),
                         cnt("ENGINE_WAIT").eq(cnt("ENGINE_WAIT") + (
                             ~core.engine_busy & (load_busy | store_busy))),
                         cnt("LOAD_BUSY").eq(cnt("LOAD_BUSY") + load_busy),
                         cnt("STORE_BUSY").eq(cnt("STORE_BUSY") + store_busy),
                         cnt("READ_BEATS").eq(cnt("READ_BEATS") + (rd.rvalid & rd.rready)),
                         cnt("WRITE_BEATS").eq(cnt("WRITE_BEATS") + (wr.wvalid & wr.wready))]
            # the engine's idle cycles since its last instruction, committed when the next
            # one starts (the model charges each wait at the start it delayed)
            took = core.engine_active & ~active_q
            with m.If(took):
                m.d.sync += [cnt("ENGINE_STALL").eq(cnt("ENGINE_STALL") + idle), idle.eq(0)]
            with m.Elif(~core.engine_active):
                m.d.sync += idle.eq(idle + 1)


def _geometry(cfg: AcceleratorConfig, sh: EngineShape) -> dict[str, int]:
    from .engine import buffer_geometry

    return buffer_geometry(cfg, sh)
