"""The tensor engine: buffers, the two schedules, the systolic array, and the store path.

Commands arrive as tile-program instruction words (``nmsat.dataflow.isa``; the payload
layout is built from ``isa.ENCODING``): on ``cmd``, ``COMPUTE`` runs one block
``OUT += A @ B`` from the ACT and WGT buffers (other opcodes are ignored there); on
``store_cmd``, ``STORE`` streams the OUT region out and clears it: each beat is the
R x C fp32/int32 words of one (row block, column tile), row blocks in order, column tiles
inside; in a last row block past ``rows`` the rows beyond it are neither cleared nor meant
(the collector drops them). The store path is a unit of its own beside the schedules.

Double buffering (``buffers.*.double_buffered``, :func:`ring_halves`): each of ACT, WGT
and OUT is a ring of one or two halves of :func:`buffer_geometry` words per bank. ACT and
WGT halves are the two address ranges of one memory (half h at ``h * words``: the DMA
writes one half through the write ports while the engine reads the other); OUT's two
halves are two memories, so a STORE streams (reads and clears) one while a COMPUTE
accumulates into the other. Which half a command uses comes with it: ``act_half``,
``wgt_half``, ``out_half`` with a ``cmd`` (the tile controller counts them), ``store_half``
with a ``store_cmd``; all 0 with one half. A COMPUTE is not accepted while the store path
streams its OUT half, nor a STORE while a COMPUTE runs on it; the store path takes a
STORE in the last beat of the one before, so queued STOREs stream without a gap.
The ACT and WGT buffers are written by the load streams (the DMA side): each beat writes
one word into every bank whose enable is set, all at one address (the half's base plus
the word's place in it, :func:`~nmsat.rtl.layouts.act_location` and
:func:`~nmsat.rtl.layouts.wgt_location`).

Stalls: ``in_valid`` and ``out_ready`` are the feeder's and the output port's readiness;
a step inside a feed (drain) window without them freezes the schedule and the array
(docs/architecture.md 4.1), so cycle counts follow ``timing.block_cycles`` with masks.
"""

from __future__ import annotations

from amaranth.hdl import Cat, EnableInserter, Module, Mux, ResetSignal, Signal
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from nmsat.config import AcceleratorConfig
from nmsat.dataflow import isa
from nmsat.types import ActZero

from .array import WS, SystolicArray
from .layouts import EngineShape
from .rowlist import RowLists, rowlist_load_layout
from .schedule import DIM, OSSchedule, WSSchedule
from .schedule_shadow import WSShadowSchedule

__all__ = ["BankedMemory", "TensorEngine", "buffer_geometry", "buffer_specs", "check_shape",
           "instr_layout",
           "load_layout", "load_layouts", "ring_halves"]


def instr_layout(op: isa.Opcode) -> data.StructLayout:
    """An instruction word's fields as a layout, from the ISA's one field table."""
    fields = {"opcode": isa.OPCODE_BITS}
    fields.update(dict(isa.ENCODING[op]))
    fields["_pad"] = isa.INSTR_BITS - sum(fields.values())
    return data.StructLayout(fields)


def load_layout(banks: int, depth: int, width) -> data.StructLayout:
    """A load beat: one word per bank (``data[b]``), all at ``addr``, written where
    ``en[b]`` is set, so a beat moves up to ``banks`` words (the buffer's full width)."""
    return data.StructLayout({"addr": range(depth), "data": data.ArrayLayout(width, banks),
                              "en": banks})


def ring_halves(cfg: AcceleratorConfig) -> tuple[int, int, int]:
    """Halves of the ACT, WGT and OUT rings: 2 when ``double_buffered``, else 1."""
    b = cfg.buffers
    return tuple(x.halves for x in (b.activation, b.weight, b.output))


def buffer_geometry(cfg: AcceleratorConfig, sh: EngineShape) -> dict[str, int]:
    """Words per bank in one half of ACT (windows), WGT (slot vectors) and OUT
    (fp32/int32), from the configured capacities, and the tag widths that address OUT
    (within a half)."""
    words = cfg.bank_words(sh.numeric.width // 8)  # what the compiler may assume
    out, R = words["buffers.output"], sh.rows
    # shadow weights: R x chains banks of Cs-lane words, a word per (column tile, K-tile),
    # so a bank holds 1 / R of a column bank's words (the compiler counts nt ceil(kc/R) R
    # words per block with shadow weights: dataflow/tiling.TaskCtx.fits)
    wgt = max(1, words["buffers.weight"] // R) if sh.shadow else words["buffers.weight"]
    return {"act": words["buffers.activation"], "wgt": wgt,
            "out": out, "row_bits": max(1, (out * R - 1).bit_length()),
            "ct_bits": max(1, (out - 1).bit_length())}


def buffer_specs(cfg: AcceleratorConfig, sh: EngineShape) -> dict[str, dict]:
    """The ACT, WGT and OUT buffers as :class:`BankedMemory` arguments: banks, words per
    bank (ACT and WGT: all their halves; OUT: one half, a memory per half), word shape,
    and whether the read port is transparent to the bank's write port."""
    g = buffer_geometry(cfg, sh)
    ha, hw, _ = ring_halves(cfg)
    R, C = sh.rows, sh.cols
    wgt = ({"banks": R * sh.chains, "depth": hw * g["wgt"], "width": sh.slots_layout,
            "lanes": sh.chain_cols} if sh.shadow else
           {"banks": C, "depth": hw * g["wgt"], "width": sh.slots_layout})
    return {"act": {"banks": R, "depth": ha * g["act"], "width": sh.window_layout},
            "wgt": wgt,
            "out": {"banks": R * C, "depth": g["out"], "width": 32, "transparent": True}}


def load_layouts(cfg: AcceleratorConfig, sh: EngineShape):
    """Payload layouts of the ACT and WGT load streams (addresses over every half)."""
    s = buffer_specs(cfg, sh)
    # shadow weights: a WGT beat addresses one word of every bank and carries its R x C
    # slot vectors by (array row, column); a beat sets the enables of one lane per bank
    wgt_banks = sh.rows * sh.cols if sh.shadow else sh.cols
    return (load_layout(sh.rows, s["act"]["depth"], sh.window_layout),
            load_layout(wgt_banks, s["wgt"]["depth"], sh.slots_layout))


class BankedMemory(wiring.Component):
    """``banks`` independent ``amaranth.lib.memory`` banks, each one write port and one
    synchronous read port (block RAM / UltraRAM after synthesis): ``rd_data`` is the word
    at the ``rd_addr`` of the previous cycle in which ``rd_en`` was high (held while it is
    low). ``transparent``: a read and a write of the same address in the same cycle read
    the new word (the OUT buffer, whose WS partial sums are read back one step after they
    are written); otherwise the old one (ACT/WGT: written only between blocks).
    ``lanes``: a word is ``lanes`` elements of ``width`` with a write enable each
    (the WGT banks of shadow weights)."""

    def __init__(self, banks: int, depth: int, width, transparent: bool = False,
                 lanes: int = 0):
        self.banks, self.depth, self.lanes = banks, depth, lanes
        self.width = data.ArrayLayout(width, lanes) if lanes else width
        self.transparent = transparent
        vec = lambda s: data.ArrayLayout(s, banks)
        super().__init__({"rd_addr": In(vec(range(depth))), "rd_en": In(vec(1)),
                          "rd_data": Out(vec(self.width)), "wr_addr": In(vec(range(depth))),
                          "wr_data": In(vec(self.width)), "wr_en": In(vec(max(1, lanes)))})

    def elaborate(self, platform) -> Module:
        m = Module()
        for b in range(self.banks):
            mem = memory.Memory(shape=self.width, depth=self.depth, init=[])
            m.submodules[f"bank{b}"] = mem
            wr = mem.write_port(granularity=1 if self.lanes else None)
            rd = mem.read_port(transparent_for=(wr,) if self.transparent else ())
            m.d.comb += [wr.addr.eq(self.wr_addr[b]), wr.data.eq(self.wr_data[b]),
                         wr.en.eq(self.wr_en[b]), rd.addr.eq(self.rd_addr[b]),
                         rd.en.eq(self.rd_en[b]), self.rd_data[b].eq(rd.data)]
        return m


def check_shape(cfg: AcceleratorConfig, dtype=None) -> EngineShape:
    """The engine shape of ``cfg``; ``ValueError`` naming the field when the RTL cannot
    build it (array sides and every pattern's K per cycle must be powers of two: address
    arithmetic by shifts). Cheap: callers check a config before any long build."""
    sh = EngineShape.from_config(cfg, dtype)
    for name, v in (("array.rows", sh.rows), ("array.cols", sh.cols)):
        if v & (v - 1):
            raise ValueError(f"{name} must be a power of two for the RTL, not {v}")
    for nm in (None,) + sh.patterns:
        kpc = sh.lanes if nm is None else nm.k_per_chunk(sh.lanes, sh.window)
        if kpc & (kpc - 1):
            raise ValueError(f"K per cycle must be a power of two for the RTL, not {kpc}")
    return sh


class TensorEngine(wiring.Component):
    """ACT/WGT/OUT buffers + OS/WS schedules + :class:`SystolicArray` + store stream.

    Without ``array.shadow_weights`` WS weights load down the columns after the whole
    array has swapped. With it (docs/architecture.md 4.2, docs/rtl.md) interleaved WS
    blocks run :class:`~nmsat.rtl.schedule_shadow.WSShadowSchedule` and the array's row
    load chains, and the WGT buffer is R x chains banks of Cs-lane words
    (:func:`~nmsat.rtl.layouts.wgt_shadow_location`, written lane by lane; OS and WS
    without interleave read the C slot vectors of a chunk from the banks of its row)."""

    def __init__(self, cfg: AcceleratorConfig, dtype=None, shared_cells: bool = False):
        # shared_cells: the array's cells are instances of two shared modules
        # (array.SharedCell; generate.hierarchical_top writes them), for synthesis.
        self.cfg, self.shared_cells = cfg, shared_cells
        sh = self.shape = check_shape(cfg, dtype)
        g = buffer_geometry(cfg, sh)
        self.act_depth, self.wgt_depth, self.out_depth = g["act"], g["wgt"], g["out"]
        self.halves = ring_halves(cfg)
        self.row_bits, self.ct_bits = g["row_bits"], g["ct_bits"]
        act_l, wgt_l = load_layouts(cfg, sh)
        # act_zero = skip: the WS row lists and their load stream (rtl/rowlist.py)
        self.skip = ActZero.parse(cfg.array.act_zero) is ActZero.SKIP
        skip_port = ({"rowlist_load": In(stream.Signature(rowlist_load_layout(self.act_depth)))}
                     if self.skip else {})
        if sh.shadow:
            ports = cfg.array.weight_load_ports
            if ports & (ports - 1):
                raise ValueError("array.weight_load_ports must be a power of two for the RTL's "
                                 f"shadow weights, not {ports}")
            if self.skip:
                raise ValueError("array.shadow_weights with array.act_zero = skip is not "
                                 "built in the RTL (set one of them off)")
        super().__init__({
            "cmd": In(stream.Signature(isa.INSTR_BITS)),
            "act_half": In(1), "wgt_half": In(1), "out_half": In(1),
            "store_cmd": In(stream.Signature(isa.INSTR_BITS)), "store_half": In(1),
            "act_load": In(stream.Signature(act_l)), "wgt_load": In(stream.Signature(wgt_l)),
            **skip_port,
            "store": Out(stream.Signature(sh.acc_block_layout)),
            "in_valid": In(1, init=1), "out_ready": In(1, init=1), "busy": Out(1)})

    def buffers(self) -> dict[str, dict]:
        """:func:`buffer_specs` of this engine."""
        return buffer_specs(self.cfg, self.shape)

    def elaborate(self, platform) -> Module:
        m = Module()
        sh = self.shape
        R, C = sh.rows, sh.cols
        specs = self.buffers()
        m.submodules.act = act = BankedMemory(**specs["act"])
        m.submodules.wgt = wgt = BankedMemory(**specs["wgt"])
        outs = [BankedMemory(**specs["out"]) for _ in range(self.halves[2])]
        for h, o in enumerate(outs):
            m.submodules[f"out{h}" if h else "out"] = o
        en = Signal()
        arr = SystolicArray(sh, self.row_bits, self.ct_bits,
                            shared_en=en if self.shared_cells else None, dim=DIM,
                            addr_bits=max(1, (specs["wgt"]["depth"] - 1).bit_length()))
        ab = max(self.act_depth, self.wgt_depth).bit_length()
        scheds = [OSSchedule(sh, ab, self.row_bits, self.ct_bits),
                  WSSchedule(sh, ab, self.row_bits, self.ct_bits,
                             self.act_depth if self.skip else None)]
        if sh.shadow:  # interleaved WS blocks (docs/architecture.md 4.2)
            scheds.append(WSShadowSchedule(sh, ab, self.row_bits, self.ct_bits))
        if self.skip:
            m.submodules.rowlists = rl = RowLists(self.act_depth)
            wiring.connect(m, wiring.flipped(self.rowlist_load), rl.load)
            wiring.connect(m, scheds[1].lookup, rl.lookup)
        p = self._decode(m)
        beat = Signal(scheds[0].beat.shape())
        # the schedule of the block: 0 OS, 1 WS, 2 WS with shadow weights (interleaved)
        pre = (p["df"] == WS) & p["il"] if sh.shadow else 0
        which = Mux(pre, 2, p["df"]) if sh.shadow else p["df"]
        ws_beat = scheds[1].beat.as_value()
        if sh.shadow:
            ws_beat = Mux(pre, scheds[2].beat.as_value(), ws_beat)
        m.d.comb += beat.eq(Mux(p["df"], ws_beat, scheds[0].beat.as_value()))
        feed, drain_win = beat.feed, beat.drain_win
        if sh.shadow:  # load chains and bottom-edge partial sums (schedule_shadow)
            feed = feed | arr.load_feed
            drain_win = drain_win | (pre & Cat(*(arr.ptag[j].valid for j in range(C))).any())
        m.d.comb += en.eq(p["start"] | ((~feed | self.in_valid)
                                        & (~drain_win | self.out_ready)))
        m.submodules.array = EnableInserter(en)(arr)
        for i, s in enumerate(scheds):
            m.submodules[f"sched{i}"] = EnableInserter(en)(s)
            m.d.comb += [s.start.eq(p["start"] & (which == i)), s.interleave.eq(p["il"]),
                         s.m.eq(p["m"]), s.kc.eq(p["kc"]), s.kcr.eq(p["kcr"]),
                         s.nt.eq(p["nt"]), s.kt.eq(p["kcr"])]
        if sh.shadow:
            m.d.comb += [arr.wsh_reset.eq(p["start"]), arr.kc.eq(p["kc"]), arr.kcr.eq(p["kcr"]),
                         arr.nt.eq(p["nt"])]
        busy = scheds[0].beat.busy | scheds[1].beat.busy
        if sh.shadow:
            busy = busy | scheds[2].beat.busy
        m.d.comb += [self.busy.eq(busy),
                     arr.df.eq(p["df"]), arr.mode.eq(p["mode"]),
                     arr.ws_shift.eq(beat.ws_shift), arr.drain.eq(beat.drain),
                     arr.drain_slot.eq(beat.drain_slot), arr.atag.eq(beat.atag),
                     arr.wtag.valid.eq(beat.w_valid), arr.nrow.eq(beat.nrow),
                     arr.nct.eq(beat.nct)]
        # Synchronous reads: the beat's addresses are the next step's; a frozen cycle
        # (en low) does not read, so the repeated step keeps its data.
        # the half a block reads: its base address (0 with one half)
        a_base = Mux(p["ha"], self.act_depth, 0) if self.halves[0] > 1 else 0
        w_base = Mux(p["hw"], self.wgt_depth, 0) if self.halves[1] > 1 else 0
        for k in range(R):
            m.d.comb += [act.rd_addr[k].eq(beat.act_addr[k] + a_base), act.rd_en[k].eq(en)]
            m.d.comb += arr.act[k].eq(act.rd_data[(k + beat.act_rot) % R])
        if sh.shadow:
            self._shadow_wgt_reads(m, wgt, arr, beat, p, en, pre, w_base)
        else:
            for j in range(C):
                m.d.comb += [wgt.rd_addr[j].eq(beat.w_addr + w_base), wgt.rd_en[j].eq(en),
                             arr.wgt[j].eq(wgt.rd_data[j])]
        self._loads(m, act, wgt)
        self._out_port(m, outs, arr, beat, p, en)
        return m

    def _decode(self, m: Module) -> dict:
        """Accept a COMPUTE when the schedules are idle and the store path is not on its
        OUT half (it starts a schedule); a STORE when the store path is idle and no
        COMPUTE runs on its half (it starts the store path)."""
        sh, R, C = self.shape, self.shape.rows, self.shape.cols
        word = data.View(instr_layout(isa.Opcode.COMPUTE), self.cmd.payload)
        st = data.View(instr_layout(isa.Opcode.STORE), self.store_cmd.payload)
        regs = {k: Signal(DIM, name=f"p_{k}") for k in ("m", "n", "kc", "kcr", "nt")}
        halves = {k: Signal(name=f"p_{k}") for k in ("ha", "hw", "ho")}
        df, il, mode = Signal(), Signal(), Signal(sh.mode_bits)
        self._store_on, self._srows, self._snt = Signal(), Signal(DIM), Signal(DIM)
        self._s_half = Signal()
        two = self.halves[2] > 1  # else every half signal is 0
        st_half_in = self.store_half if two else 0
        cp_half_in = self.out_half if two else 0
        # the store path takes the next STORE in its previous one's last beat, so the
        # beats of queued STOREs stream back to back (as a DMA port moves them)
        self._last_beat = Signal()
        m.d.comb += self.store_cmd.ready.eq((~self._store_on | self._last_beat)
                                            & ~(self.busy & (halves["ho"] == st_half_in)))
        self._store_take = self.store_cmd.valid & self.store_cmd.ready & (
            st.opcode == isa.Opcode.STORE)
        s_half_nx = Mux(self._store_take, st_half_in, self._s_half)
        on_nx = self._store_on | self._store_take
        # a COMPUTE into the OUT half the store path is still reading waits for it; a
        # RELEASE touches no OUT half and never does (the system model starts it when its
        # buffer half is filled and the engine is free)
        m.d.comb += self.cmd.ready.eq(~self.busy & ~((word.opcode == isa.Opcode.COMPUTE)
                                                     & on_nx & (s_half_nx == cp_half_in)))
        take = self.cmd.valid & self.cmd.ready
        start = take & (word.opcode == isa.Opcode.COMPUTE)
        code, kc_new = Signal(sh.mode_bits), Signal(DIM)
        m.d.comb += [code.eq(0), kc_new.eq((word.k + sh.lanes - 1) >> (sh.lanes.bit_length() - 1))]
        for i, nm in enumerate(sh.patterns, start=1):
            kpc = nm.k_per_chunk(sh.lanes, sh.window)
            with m.If((word.nm_n == nm.n) & (word.nm_m == nm.m)):
                m.d.comb += [code.eq(i), kc_new.eq((word.k + kpc - 1) >> (kpc.bit_length() - 1))]
        new = {"m": word.m, "n": word.n, "kc": kc_new, "kcr": (kc_new + R - 1) // R,
               "nt": (word.n + C - 1) // C}
        h_new = {"ha": self.act_half if self.halves[0] > 1 else 0,
                 "hw": self.wgt_half if self.halves[1] > 1 else 0, "ho": cp_half_in}
        new.update(h_new)
        regs.update(halves)
        with m.If(start):
            m.d.sync += [df.eq(word.dataflow), il.eq(word.interleave), mode.eq(code)]
            m.d.sync += [regs[k].eq(v) for k, v in new.items()]
        self._snt_new = (st.cols + C - 1) // C
        with m.If(self._store_take):
            m.d.sync += [self._store_on.eq(1), self._srows.eq(st.rows),
                         self._snt.eq(self._snt_new), self._s_half.eq(st_half_in)]
        self._s_half_nx, self._ho_q = s_half_nx, halves["ho"]
        p = {k: Mux(start, new[k], regs[k]) for k in regs}
        p.update(start=start, df=Mux(start, word.dataflow, df), il=Mux(start, word.interleave, il),
                 mode=Mux(start, code, mode))
        return p

    def _shadow_wgt_reads(self, m: Module, wgt: BankedMemory, arr, beat, p, en, pre,
                          w_base) -> None:
        """WGT reads with shadow weights (R x chains banks of Cs-lane words,
        :func:`~nmsat.rtl.layouts.wgt_shadow_location`): in an interleaved WS block each
        bank serves its load chain (``arr.wsh_addr``); otherwise the banks of array row
        chunk mod R give the C slot vectors of one chunk (OS, and the column-chain loads of
        WS without interleave), their row picked by the chunk of the step the read was
        addressed in."""
        sh = self.shape
        R, C, nch, cs = sh.rows, sh.cols, sh.chains, sh.chain_cols
        lr = R.bit_length() - 1
        word = beat.w_ct * p["kcr"] + (beat.w_chunk >> lr)
        sel = Signal(range(R))  # array row of the word in the read registers
        with m.If(en):
            m.d.sync += sel.eq(beat.w_chunk % R)
        for b in range(R * nch):
            m.d.comb += [wgt.rd_addr[b].eq(Mux(pre, arr.wsh_addr[b], word) + w_base),
                         wgt.rd_en[b].eq(en), arr.wsh_data[b].eq(wgt.rd_data[b])]
        for j in range(C):
            pick = wgt.rd_data[j // cs][j % cs]
            for i in range(1, R):
                pick = Mux(sel == i, wgt.rd_data[i * nch + j // cs][j % cs], pick)
            m.d.comb += arr.wgt[j].eq(pick)

    def _loads(self, m: Module, act: BankedMemory, wgt: BankedMemory) -> None:
        sh = self.shape
        if sh.shadow:  # beat word (i, j) -> bank (i, j // Cs), lane j mod Cs
            port, cs = self.wgt_load, sh.chain_cols
            m.d.comb += port.ready.eq(1)
            for i in range(sh.rows):
                for s in range(sh.chains):
                    b = i * sh.chains + s
                    m.d.comb += wgt.wr_addr[b].eq(port.payload.addr)
                    for x in range(cs):
                        f = i * sh.cols + s * cs + x
                        m.d.comb += [wgt.wr_data[b][x].eq(port.payload.data[f]),
                                     wgt.wr_en[b][x].eq(port.valid & port.payload.en[f])]
        for port, mem in ((self.act_load, act), (self.wgt_load, wgt)):
            if mem.lanes:
                continue
            m.d.comb += port.ready.eq(1)
            for b in range(mem.banks):
                m.d.comb += [mem.wr_addr[b].eq(port.payload.addr),
                             mem.wr_data[b].eq(port.payload.data[b]),
                             mem.wr_en[b].eq(port.valid & port.payload.en[b])]

    def _out_port(self, m: Module, outs: list[BankedMemory], arr, beat, p, en) -> None:
        """OUT bank (i, j) holds rows = i mod R, columns = j mod C: OS init reads and drain
        writes, WS top reads and bottom writes, and the store path's read-and-clear of all
        R x C banks at one address per beat (``s_row`` steps by R).

        Reads are synchronous and addressed one step ahead: the array's ``nx_row``/``nx_ct``
        during a COMPUTE, the store path's next (row, column tile) during a STORE (from
        the STORE's acceptance, so the first beat is valid the cycle after, as before).
        The read port is transparent: a WS partial sum written at step s and read back at
        the top of the column at step s + 1 (interleaved tiles whose Delta is R La + 1)
        reads the new word, as a combinational read after the write would.

        With two OUT halves (``outs``, a memory each) the store path owns the ports of
        its half and the COMPUTE those of its own; read data come from the half whose
        address was given the cycle before (the halves are held while a block or a
        store runs)."""
        R, C = self.shape.rows, self.shape.cols
        lr = R.bit_length() - 1
        s_row, s_ct = Signal(DIM), Signal(DIM)
        s_row_nx, s_ct_nx = Signal(DIM), Signal(DIM)
        addr = lambda row, ct, nt: (row >> lr) * nt + ct
        ws = p["df"] == WS
        fire = self.store.valid & self.store.ready
        on_nx = self._store_on | self._store_take  # the store path owns the read port
        snt_nx = Mux(self._store_take, self._snt_new, self._snt)
        m.d.comb += self.store.valid.eq(self._store_on)
        two = len(outs) > 1

        def pick(bank: int, half) -> Signal:
            """Bank ``bank``'s read data of OUT half ``half`` (a register)."""
            if not two:
                return outs[0].rd_data[bank]
            return Mux(half, outs[1].rd_data[bank], outs[0].rd_data[bank])

        for j in range(C):
            col_ok = beat.drain_ct * C + j < p["n"]
            top = (arr.rd_row[0][j] % R)
            m.d.comb += arr.init[0][j].eq(Mux(ws, pick(top * C + j, self._ho_q),
                                              pick(j, self._ho_q)))
            pt = arr.ptag[j]
            for i in range(R):
                b = i * C + j
                if i:
                    m.d.comb += arr.init[i][j].eq(pick(b, self._ho_q))
                m.d.comb += self.store.payload[i][j].eq(pick(b, self._s_half))
                rd = Mux(ws, addr(arr.nx_row[0][j], arr.nx_ct[0][j], p["nt"]),
                         addr(arr.nx_row[i][j], arr.nx_ct[i][j], p["nt"]))
                os_w = beat.drain & (beat.drain_row % R == i) & (beat.drain_row < p["m"]) & col_ok
                ws_w = pt.valid & (pt.row % R == i) & (pt.ct * C + j < p["n"])
                for h, out in enumerate(outs):
                    st_rd = on_nx & (self._s_half_nx == h) if two else on_nx
                    st_wr = self._store_on & (self._s_half == h) if two else self._store_on
                    mine = p["ho"] == h if two else 1  # the COMPUTE's half
                    m.d.comb += [out.rd_addr[b].eq(Mux(st_rd, addr(s_row_nx, s_ct_nx, snt_nx),
                                                       rd)),
                                 out.rd_en[b].eq(st_rd | (en & mine))]
                    with m.If(st_wr):
                        m.d.comb += [out.wr_addr[b].eq(addr(s_row, s_ct, self._snt)),
                                     out.wr_data[b].eq(0),
                                     out.wr_en[b].eq(fire & (s_row + i < self._srows))]
                    with m.Elif(ws):
                        m.d.comb += [out.wr_addr[b].eq(addr(pt.row, pt.ct, p["nt"])),
                                     out.wr_data[b].eq(arr.psum[j]),
                                     out.wr_en[b].eq(en & ws_w & mine)]
                    with m.Else():
                        m.d.comb += [out.wr_addr[b].eq(addr(beat.drain_row, beat.drain_ct,
                                                            p["nt"])),
                                     out.wr_data[b].eq(arr.shadow[j][beat.drain_slot]),
                                     out.wr_en[b].eq(en & os_w & mine)]
        rst = ResetSignal()  # see schedule._State.reg: keeps Icarus from holding X here
        m.d.comb += [s_row_nx.eq(Mux(rst, 0, s_row)), s_ct_nx.eq(Mux(rst, 0, s_ct))]
        with m.If(fire):
            last_ct = s_ct + 1 >= self._snt
            m.d.comb += [s_ct_nx.eq(Mux(last_ct, 0, s_ct + 1)),
                         s_row_nx.eq(s_row + Mux(last_ct, R, 0))]
            with m.If(last_ct & (s_row + R >= self._srows)):
                m.d.comb += [s_row_nx.eq(0), s_ct_nx.eq(0), self._last_beat.eq(1)]
                with m.If(~self._store_take):
                    m.d.sync += self._store_on.eq(0)
        m.d.sync += [s_row.eq(s_row_nx), s_ct.eq(s_ct_nx)]
