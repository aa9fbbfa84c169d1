"""The SORE's memory side on the accelerator top: :class:`SoreStream` reads a SORE's dense
working copy over an AXI4 master of its own, feeds the SORE's lanes and writes the kept
(value, index) slots as the compressed view's WGT slot words (the law and the layouts:
:mod:`nmsat.dataflow.sore_stream`, ``docs/rtl.md``).

Per chunk-row (the C columns of one column tile of the view and one chunk of ``g M`` K
elements): the read runs go to a :class:`~nmsat.rtl.axi.BurstReader` while fewer than
``slots`` chunk-rows are between their first read and the lanes' last beat; the data
beats fill the chunk-row's input slot (raw slot words); once complete, the lanes take
``ceil(C g / lanes)`` lane blocks of M beats (lane l of block b: group ``q = b lanes + l``
of the chunk-row, its column ``q mod C`` and its group ``q div C`` within the chunk),
each lane reading its group's position p from the slot; the SORE's result beats fill the
chunk-row's output slot (word i: slot ``j N + s`` the kept slot s of group j, the rest
zero); the complete slot's C words go out as one write run through a
:class:`~nmsat.rtl.axi.BurstWriter`, and the output slot is free again with the run's
last B response. ``mem_done`` pulses with the last chunk-row's last B response.
"""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from nmsat.arith import ceil_div
from nmsat.config import AcceleratorConfig
from nmsat.dataflow import isa
from nmsat.dataflow.sore_stream import check_sore_stream, has_stream, slots

from .axi import AxiParams, BurstReader, BurstWriter, axi_master_members
from .engine import instr_layout
from .layouts import EngineShape

__all__ = ["SoreStream", "attach", "connect_master", "sore_port", "tile_counter",
           "track_responses"]


def sore_port(cfg: AcceleratorConfig) -> bool:
    """Whether the accelerator top of ``cfg`` has the SORE stream and its AXI4 master
    (:func:`nmsat.dataflow.sore_stream.check_sore_stream`)."""
    return has_stream(cfg)


def connect_master(m: Module, unit, rd, wr, p: AxiParams) -> None:
    """``unit``'s AXI4 master ports (no prefix) to its burst reader ``rd`` (AR, R) and
    writer ``wr`` (AW, W, B)."""
    for name, member in axi_master_members(p, "").items():
        inner = rd if name.startswith(("ar", "r")) else wr
        if member.flow is Out:
            m.d.comb += getattr(unit, name).eq(getattr(inner, name))
        else:
            m.d.comb += getattr(inner, name).eq(getattr(unit, name))


def tile_counter(m: Module, u: Signal, c: Signal, kcr, step) -> Signal:
    """Advance (outer u, inner c < ``kcr``) when ``step``; returns whether c is the last
    of its u."""
    last_c = c + 1 == kcr
    with m.If(step):
        m.d.sync += c.eq(Mux(last_c, 0, c + 1))
        with m.If(last_c):
            m.d.sync += u.eq(u + 1)
    return last_c


def track_responses(m: Module, unit, wr, nb: int, acked: Signal, n_outer, n_inner,
                    take) -> None:
    """Count the B responses of ``unit``'s items (``nb`` bursts each, items as ``n_outer``
    x ``n_inner``): ``acked`` counts the items acknowledged, ``unit.mem_done`` pulses with
    the last item's last response and ``unit.busy`` falls; a new command (``take``)
    restarts the count."""
    bcount = Signal(range(max(2, nb)))
    bo, bi = Signal(24), Signal(24)
    item = wr.bvalid & (bcount == nb - 1)
    m.d.sync += bcount.eq(Mux(wr.bvalid, Mux(item, 0, bcount + 1), bcount))
    with m.If(item):
        m.d.sync += acked.eq(acked + 1)
    last_inner = tile_counter(m, bo, bi, n_inner, item)
    done = item & last_inner & (bo + 1 == n_outer)
    m.d.comb += unit.mem_done.eq(done & unit.busy)
    with m.If(done):
        m.d.sync += unit.busy.eq(0)
    with m.If(take):
        m.d.sync += [bcount.eq(0), bo.eq(0), bi.eq(0)]


def _log2(x: int) -> int:
    assert x > 0 and x & (x - 1) == 0, x
    return x.bit_length() - 1


class SoreStream(wiring.Component):
    """Ports: ``cmd`` (the SORE instruction word, taken whenever valid: the controller
    sends one while the unit is idle), the descriptors of the command's tensors (``src_*``:
    the working copy's WGT view base and column-tile stride, its rows and columns;
    ``dst_*``: the compressed view's WGT base and stride; combinational from the word),
    ``sore_in`` / ``sore_out`` (the SORE's), ``mem_done``, ``error`` (a pattern the engine
    does not have), ``busy`` and an AXI4 master (``m_axi_*`` without the prefix)."""

    def __init__(self, cfg: AcceleratorConfig, shape: EngineShape, p: AxiParams, sore):
        check_sore_stream(cfg)
        self.cfg, self.shape, self.p = cfg, shape, p
        self.S = slots(cfg)
        self.L, self.C, self.P = cfg.sore.lanes, shape.cols, shape.lanes
        self.width, self.ib = shape.numeric.width, shape.index_bits
        if sore.idx_bits != self.ib or sore.width != self.width:
            raise AssertionError("the SORE's slot layout is not the engine's")
        self.ws = max(1 << (ceil_div(shape.slots_layout.size, 8) - 1).bit_length(),
                      p.data_bytes)  # rtl.top.word_slot, without the import cycle
        self.pats = []
        for nm in shape.patterns:
            g = nm.groups_per_chunk(self.P, shape.window)
            gm = g * nm.m
            self.pats.append({"nm": nm, "g": g, "gm": gm, "m": nm.m, "n": nm.n,
                              "blocks": ceil_div(self.C * g, self.L),
                              "ff_words": gm // self.P * self.C,
                              "bp_runs": gm // self.C, "e": max(1, self.C // self.P)})
        self.words = max(max(x["ff_words"], x["bp_runs"] * x["e"] * self.C) for x in self.pats)
        so = sore.signature.members
        super().__init__({
            "cmd": In(stream.Signature(isa.INSTR_BITS)),
            "src_base": In(32), "src_stride": In(32), "src_rows": In(24), "src_cols": In(24),
            "dst_base": In(32), "dst_stride": In(32),
            "sore_in": Out(so["inp"].signature.flip()), "sore_out": In(so["out"].signature),
            "mem_done": Out(1), "error": Out(1), "busy": Out(1),
            **{k: v for k, v in axi_master_members(p, "").items()}})

    def elaborate(self, platform) -> Module:
        m = Module()
        p, C = self.p, self.C
        m.submodules.rd = rd = BurstReader(p)
        m.submodules.wr = wr = BurstWriter(p)
        connect_master(m, self, rd, wr, p)
        iv = data.View(instr_layout(isa.Opcode.SORE), self.cmd.payload)
        take = self.cmd.valid
        m.d.comb += self.cmd.ready.eq(1)
        # the command: pattern, view and geometry, latched when taken
        g = self.g = {k: Signal(24, name=k) for k in ("nt", "kcr", "src_base", "src_stride",
                                                       "dst_base", "dst_stride")}
        self.pat, self.bp = Signal(range(len(self.pats))), Signal()
        kv = Mux(iv.view, self.src_cols, self.src_rows)
        nv = Mux(iv.view, self.src_rows, self.src_cols)
        known = Signal()
        with m.If(take):
            m.d.sync += [self.bp.eq(iv.view), g["src_base"].eq(self.src_base),
                         g["src_stride"].eq(self.src_stride), g["dst_base"].eq(self.dst_base),
                         g["dst_stride"].eq(self.dst_stride),
                         g["nt"].eq((nv + C - 1) >> _log2(C))]
            for i, x in enumerate(self.pats):
                with m.If((iv.nm_n == x["nm"].n) & (iv.nm_m == x["nm"].m)):
                    m.d.comb += known.eq(1)
                    m.d.sync += [self.pat.eq(i),
                                 g["kcr"].eq((kv + x["gm"] - 1) >> _log2(x["gm"]))]
        m.d.comb += self.error.eq(take & ~known)
        # chunk-row counts between the stages (reset when a command is taken)
        n = self.n = {k: Signal(24, name=k) for k in ("rd_rows", "data_rows", "fed_rows",
                                                       "out_rows", "acked_rows")}
        self._reader(m, rd, take)
        self._data(m, rd, take)
        self._lanes(m, take)
        self._outputs(m, take)
        self._writer(m, wr, take)
        with m.If(take):  # after the writer's: a command taken as the last one completes
            m.d.sync += [v.eq(0) for v in n.values()] + [self.busy.eq(1)]
        return m

    def _pconst(self, key: str, width: int = 24):
        """The current pattern's constant ``key``."""
        return Array(Const(x[key], width) for x in self.pats)[self.pat]

    def _reader(self, m: Module, rd, take) -> None:
        """The read runs of each chunk-row in turn, while fewer than ``slots`` chunk-rows
        are between their first read and the lanes' last beat."""
        p, C, P, ws, g, n = self.p, self.C, self.P, self.ws, self.g, self.n
        u, c, j = Signal(24), Signal(24), Signal(8)
        on = Signal()
        row_ptr, ptr = Signal(32), Signal(32)
        ff_bytes = self._pconst("ff_words") << _log2(ws)
        runs = Mux(self.bp, self._pconst("bp_runs"), 1)
        room = (n["rd_rows"] - n["fed_rows"])[:24] < self.S
        offer = on & ((j != 0) | room)
        u_off = ((u << _log2(C)) >> _log2(P)) << _log2(C * ws)
        m.d.comb += [rd.runs.valid.eq(offer),
                     rd.runs.payload.addr.eq(Mux(self.bp, ptr + u_off, ptr)),
                     rd.runs.payload.beats.eq(
                         Mux(self.bp, (self.pats[0]["e"] * C * ws) // p.data_bytes,
                             ff_bytes >> _log2(p.data_bytes)))]
        step = offer & rd.runs.ready
        last_run = j + 1 == runs
        with m.If(step):
            m.d.sync += j.eq(Mux(last_run, 0, j + 1))
            with m.If(j == 0):
                m.d.sync += n["rd_rows"].eq(n["rd_rows"] + 1)
            with m.If(self.bp):
                m.d.sync += ptr.eq(ptr + g["src_stride"])
            with m.Else():
                m.d.sync += ptr.eq(ptr + ff_bytes)
        last_c = tile_counter(m, u, c, g["kcr"], step & last_run)
        with m.If(step & last_run & last_c):  # the next column tile
            m.d.sync += [row_ptr.eq(row_ptr + g["src_stride"]),
                         ptr.eq(Mux(self.bp, g["src_base"], row_ptr + g["src_stride"]))]
            with m.If(u + 1 == g["nt"]):
                m.d.sync += on.eq(0)
        with m.If(take):
            m.d.sync += [u.eq(0), c.eq(0), j.eq(0), on.eq(1), row_ptr.eq(self.src_base),
                         ptr.eq(self.src_base)]

    def _data(self, m: Module, rd, take) -> None:
        """Read data beats into the input slots (raw slot words), chunk-rows in order."""
        p, ws, n, C = self.p, self.ws, self.n, self.C
        per_word = ws // p.data_bytes
        self.inbuf = [[Signal(ws * 8, name=f"in{s}_{w}") for w in range(self.words)]
                      for s in range(self.S)]
        slot, word = Signal(range(self.S)), Signal(range(self.words + 1))
        beat = Signal(range(per_word))
        words = Mux(self.bp, self.pats[0]["e"] * C * self._pconst("bp_runs"),
                    self._pconst("ff_words"))
        m.d.comb += rd.data.ready.eq(1)
        with m.If(rd.data.valid):
            for s in range(self.S):
                for w in range(self.words):
                    with m.If((slot == s) & (word == w)):
                        for b in range(per_word):
                            with m.If(beat == b):
                                m.d.sync += self.inbuf[s][w].word_select(
                                    b, p.data_bytes * 8).eq(rd.data.payload)
            m.d.sync += beat.eq(Mux(beat == per_word - 1, 0, beat + 1))
            with m.If(beat == per_word - 1):
                m.d.sync += word.eq(word + 1)
                with m.If(word + 1 == words):
                    m.d.sync += [word.eq(0), slot.eq(Mux(slot == self.S - 1, 0, slot + 1)),
                                 n["data_rows"].eq(n["data_rows"] + 1)]
        with m.If(take):
            m.d.sync += [slot.eq(0), word.eq(0), beat.eq(0)]

    def _lanes(self, m: Module, take) -> None:
        """Feed the lanes: chunk-row ``fed_rows`` once its data is in and its output slot
        is free, ``blocks`` lane blocks of M beats, lane l reading its group's position."""
        C, P, L, n = self.C, self.P, self.L, self.n
        slot = Signal(range(self.S))
        blk, pos = Signal(8), Signal(8)
        u = Signal(24)  # the column tile of the chunk-row fed (BP with C < P: its offset)
        c = Signal(24)
        ready_data = n["data_rows"] != n["fed_rows"]
        room = (n["fed_rows"] - n["acked_rows"])[:24] < self.S
        valid = ready_data & room
        mm, blocks = self._pconst("m", 8), self._pconst("blocks", 8)
        words = Array(Array(row) for row in self.inbuf)[slot]
        sw = self.width + self.ib
        for lane in range(L):
            w, s, live = Signal(range(self.words), name=f"w{lane}"), \
                Signal(range(P), name=f"s{lane}"), Signal(name=f"live{lane}")
            q = blk * L + lane
            i, jj = q & (C - 1), q >> _log2(C)
            with m.Switch(self.pat):
                for k, x in enumerate(self.pats):
                    with m.Case(k):
                        lm = _log2(x["nm"].m)
                        kl = (jj << lm) + pos  # the group's position along the view's K
                        m.d.comb += live.eq(q < C * x["g"])
                        with m.If(~self.bp):
                            m.d.comb += [w.eq(((kl >> _log2(P)) << _log2(C)) + i),
                                         s.eq(kl & (P - 1))]
                        with m.Elif(C >= P):
                            m.d.comb += [w.eq(((kl >> _log2(C)) << _log2(x["e"] * C))
                                              + ((i >> _log2(P)) << _log2(C)) + (kl & (C - 1))),
                                         s.eq(i & (P - 1))]
                        with m.Else():
                            m.d.comb += [w.eq(((kl >> _log2(C)) << _log2(C)) + (kl & (C - 1))),
                                         s.eq(((u << _log2(C)) & (P - 1)) + i)]
            val = words[w].word_select(s, sw)[:self.width]
            m.d.comb += self.sore_in.payload.w[lane].eq(Mux(live, val, 0))
        m.d.comb += [self.sore_in.valid.eq(valid), self.sore_in.payload.last.eq(0)]
        step = valid & self.sore_in.ready
        last_pos = pos + 1 == mm
        last_blk = blk + 1 == blocks
        with m.If(step):
            m.d.sync += pos.eq(Mux(last_pos, 0, pos + 1))
            with m.If(last_pos):
                m.d.sync += blk.eq(Mux(last_blk, 0, blk + 1))
                with m.If(last_blk):
                    m.d.sync += [n["fed_rows"].eq(n["fed_rows"] + 1),
                                 slot.eq(Mux(slot == self.S - 1, 0, slot + 1))]
        tile_counter(m, u, c, self.g["kcr"], step & last_pos & last_blk)
        with m.If(take):
            m.d.sync += [slot.eq(0), blk.eq(0), pos.eq(0), u.eq(0), c.eq(0)]

    def _outputs(self, m: Module, take) -> None:
        """The SORE's result beats into the output slots: word i, slot ``j N + s`` the
        kept slot s of the chunk-row's group (column i, group j); the rest zero."""
        C, P, L, n, sw = self.C, self.P, self.L, self.n, self.width + self.ib
        self.outbuf = [[Signal(P * sw, name=f"out{s}_{i}") for i in range(C)]
                       for s in range(self.S)]
        slot, blk = Signal(range(self.S)), Signal(8)
        blocks = self._pconst("blocks", 8)
        out = self.sore_out.payload
        m.d.comb += self.sore_out.ready.eq(1)
        fire = self.sore_out.valid
        for i in range(C):
            for pp in range(P):
                hit, val = Signal(name=f"hit{i}_{pp}"), Signal(sw, name=f"val{i}_{pp}")
                with m.Switch(self.pat):
                    for k, x in enumerate(self.pats):
                        with m.Case(k):
                            for lane in range(L):
                                for s in range(x["n"]):
                                    q = blk * L + lane
                                    match = (((q & (C - 1)) == i) & (q < C * x["g"])
                                             & (((q >> _log2(C)) * x["n"] + s) == pp))
                                    with m.If(match):
                                        m.d.comb += [hit.eq(1), val.eq(
                                            Cat(out[lane][s].value, out[lane][s].index))]
                for so in range(self.S):
                    tgt = self.outbuf[so][i].word_select(pp, sw)
                    with m.If(fire & (slot == so)):
                        with m.If(hit):
                            m.d.sync += tgt.eq(val)
                        with m.Elif(blk == 0):
                            m.d.sync += tgt.eq(0)
        last = blk + 1 == blocks
        with m.If(fire):
            m.d.sync += blk.eq(Mux(last, 0, blk + 1))
            with m.If(last):
                m.d.sync += [n["out_rows"].eq(n["out_rows"] + 1),
                             slot.eq(Mux(slot == self.S - 1, 0, slot + 1))]
        with m.If(take):
            m.d.sync += [slot.eq(0), blk.eq(0)]

    def _writer(self, m: Module, wr, take) -> None:
        """Each complete output slot as one write run of its C words; the B responses free
        the slots and the last one pulses ``mem_done``."""
        p, C, ws, g, n = self.p, self.C, self.ws, self.g, self.n
        run_beats = C * ws // p.data_bytes
        nb = ceil_div(C * ws, self.cfg.dram.burst_bytes)  # bursts per run
        # runs
        u, c = Signal(24), Signal(24)
        row_ptr, ptr = Signal(32), Signal(32)
        offered, on = Signal(24), Signal()
        offer = on & (offered != n["out_rows"])
        m.d.comb += [wr.runs.valid.eq(offer), wr.runs.payload.addr.eq(ptr),
                     wr.runs.payload.beats.eq(run_beats), wr.runs_last.eq(0)]
        step = offer & wr.runs.ready
        with m.If(step):
            m.d.sync += [offered.eq(offered + 1), ptr.eq(ptr + C * ws)]
        last_c = tile_counter(m, u, c, g["kcr"], step)
        with m.If(step & last_c):
            m.d.sync += [row_ptr.eq(row_ptr + g["dst_stride"]),
                         ptr.eq(row_ptr + g["dst_stride"])]
            with m.If(u + 1 == g["nt"]):
                m.d.sync += on.eq(0)
        # W data: the slots' words in bus beats
        slot, beat = Signal(range(self.S)), Signal(range(run_beats))
        sent = Signal(24)
        per_word = ws // p.data_bytes
        word = Signal(ws * 8)
        m.d.comb += word.eq(Array(Array(Cat(w, Const(0, ws * 8 - len(w))) for w in row)
                                  for row in self.outbuf)[slot][beat // per_word])
        m.d.comb += [wr.data.valid.eq(sent != n["out_rows"]),
                     wr.data.payload.eq(word.word_select(beat % per_word, p.data_bytes * 8))]
        with m.If(wr.data.valid & wr.data.ready):
            m.d.sync += beat.eq(Mux(beat == run_beats - 1, 0, beat + 1))
            with m.If(beat == run_beats - 1):
                m.d.sync += [sent.eq(sent + 1),
                             slot.eq(Mux(slot == self.S - 1, 0, slot + 1))]
        track_responses(m, self, wr, nb, n["acked_rows"], g["nt"], g["kcr"], take)
        with m.If(take):
            m.d.sync += [u.eq(0), c.eq(0), row_ptr.eq(self.dst_base), ptr.eq(self.dst_base),
                         offered.eq(0), on.eq(1), slot.eq(0), beat.eq(0), sent.eq(0)]


def attach(m: Module, ss: SoreStream, top, prefix: str, desc, core, error: Signal) -> None:
    """Wire ``ss`` into the accelerator top: behind the controlled engine ``core``'s SORE
    queue, its AXI4 master on ``top``'s ports named ``prefix`` + the AXI name, the
    command's tensors looked up in the descriptor arrays ``desc`` (base, stride, kpc of
    the ACT / STORE view, of the WGT view, rows, columns); ``error`` set on a bad one."""
    from .top import MAX_TENSORS

    m.submodules.sore_stream = ss
    for name, member in axi_master_members(ss.p, "").items():
        mine, theirs = getattr(top, prefix + name), getattr(ss, name)
        m.d.comb += (mine.eq(theirs) if member.flow is Out else theirs.eq(mine))
    wiring.connect(m, core.sore_cmd, ss.cmd)
    wiring.connect(m, ss.sore_in, core.sore_in)
    wiring.connect(m, core.sore_out, ss.sore_out)
    iv = data.View(instr_layout(isa.Opcode.SORE), core.sore_cmd.payload)
    src, dst = iv.src[:4], iv.dst[:4]
    m.d.comb += [ss.src_base.eq(desc[3][src]), ss.src_stride.eq(desc[4][src]),
                 ss.src_rows.eq(desc[6][src]), ss.src_cols.eq(desc[7][src]),
                 ss.dst_base.eq(desc[3][dst]), ss.dst_stride.eq(desc[4][dst]),
                 core.sore_mem_done.eq(ss.mem_done)]
    with m.If(ss.error | (core.sore_cmd.valid & ((iv.src >= MAX_TENSORS)
                                                  | (iv.dst >= MAX_TENSORS)))):
        m.d.sync += error.eq(1)
