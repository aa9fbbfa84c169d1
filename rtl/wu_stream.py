"""The weight update's memory side on the accelerator top: :class:`WuStream` reads a
layer's gradient, fp32 master weights and velocity over an AXI4 master of its own, feeds
the weight-update engine's lanes and writes the new master weights, velocity and fp16
working copy (the law and the layouts: :mod:`nmsat.dataflow.wu_stream`, ``docs/rtl.md``).

Per super-block (the R outputs of one row block of the gradient and ``Lq = max(C, P)``
inputs): its gradient, master and velocity runs go to a
:class:`~nmsat.rtl.axi.BurstReader` while fewer than ``slots`` super-blocks are between
their first read and the lanes' last beat; once its data is in, the lanes take
``ceil(R Lq / lanes)`` beats (lane l of beat k: weight ``k lanes + l`` in the gradient's
order); the results fill the super-block's output slot, which goes out as three write
runs (master, velocity: the gradient's order; working copy: ``Lq / P`` chunks of the
row block's column tile, slot p of word ``c C + j`` the weight of output j and input
``c P + p``) through a :class:`~nmsat.rtl.axi.BurstWriter`; the output slot is free with
the last B response of its runs, and ``mem_done`` pulses with the last super-block's.
"""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from nmsat.arith import ceil_div
from nmsat.config import AcceleratorConfig
from nmsat.dataflow import isa
from nmsat.dataflow.wu_stream import check_wu_stream, has_stream, slots

from .axi import AxiParams, BurstReader, BurstWriter, axi_master_members
from .engine import instr_layout
from .layouts import EngineShape
from .sore_stream import _log2, connect_master, tile_counter, track_responses

__all__ = ["WuStream", "attach_wu", "wu_port"]


def wu_port(cfg: AcceleratorConfig) -> bool:
    """Whether the accelerator top of ``cfg`` has the weight-update stream and its AXI4
    master (:func:`nmsat.dataflow.wu_stream.check_wu_stream`)."""
    return has_stream(cfg)


class WuStream(wiring.Component):
    """Ports: ``cmd`` (the WEIGHT_UPDATE word, taken whenever valid), the working copy's
    descriptor fields (``w_*``: its WGT view base and stride, rows = inputs, columns =
    outputs; ``g_base``, ``g_stride``, ``m_base``, ``v_base``: its gradient, master and
    velocity), ``wu_in`` / ``wu_out`` (the engine's), ``mem_done``, ``busy`` and an AXI4
    master (``m_axi_*`` without the prefix)."""

    def __init__(self, cfg: AcceleratorConfig, shape: EngineShape, p: AxiParams, wu):
        check_wu_stream(cfg)
        self.cfg, self.shape, self.p = cfg, shape, p
        self.S = slots(cfg)
        self.R, self.P = shape.rows, shape.lanes
        self.lq = max(shape.cols, self.P)
        self.n = self.R * self.lq  # weights per super-block
        self.lanes = wu.lanes
        self.beats = ceil_div(self.n, self.lanes)
        self.sw = shape.numeric.width + shape.index_bits  # a slot of a WGT word
        self.ws = max(1 << (ceil_div(shape.slots_layout.size, 8) - 1).bit_length(),
                      p.data_bytes)  # rtl.top.word_slot
        wm = wu.signature.members
        super().__init__({
            "cmd": In(stream.Signature(isa.INSTR_BITS)),
            **{k: In(32) for k in ("w_base", "w_stride", "w_rows", "w_cols", "g_base",
                                   "g_stride", "m_base", "v_base")},
            "wu_in": Out(wm["inp"].signature.flip()), "wu_out": In(wm["out"].signature),
            "mem_done": Out(1), "busy": Out(1), **axi_master_members(p, "")})

    def elaborate(self, platform) -> Module:
        m = Module()
        p = self.p
        m.submodules.rd = rd = BurstReader(p)
        m.submodules.wr = wr = BurstWriter(p)
        connect_master(m, self, rd, wr, p)
        take = self.cmd.valid
        m.d.comb += self.cmd.ready.eq(1)
        g = self.g = {k: Signal(32, name=k) for k in ("nrb", "ns", "w_base", "w_stride",
                                                       "g_base", "g_stride", "m_base",
                                                       "v_base")}
        with m.If(take):
            m.d.sync += [g["nrb"].eq((self.w_cols + self.R - 1) >> _log2(self.R)),
                         g["ns"].eq((self.w_rows + self.lq - 1) >> _log2(self.lq))]
            m.d.sync += [g[k].eq(getattr(self, k)) for k in ("w_base", "w_stride", "g_base",
                                                            "g_stride", "m_base", "v_base")]
        n = self.cnt = {k: Signal(24, name=k) for k in ("rd_items", "data_items", "fed_items",
                                                       "out_items", "acked_items")}
        self._reader(m, rd, take)
        self._data(m, rd, take)
        self._lanes(m, take)
        self._outputs(m, take)
        self._writer(m, wr, take)
        with m.If(take):  # after the writer's: a command taken as the last one completes
            m.d.sync += [v.eq(0) for v in n.values()] + [self.busy.eq(1)]
        return m

    def _reader(self, m: Module, rd, take) -> None:
        """Each super-block's gradient, master and velocity runs, while fewer than
        ``slots`` super-blocks are between their first read and the lanes' last beat."""
        p, g, n = self.p, self.g, self.cnt
        sb = self.n * 4
        rb, s, j = Signal(24), Signal(24), Signal(2)
        on = Signal()
        roff, soff = Signal(32), Signal(32)
        room = (n["rd_items"] - n["fed_items"])[:24] < self.S
        offer = on & ((j != 0) | room)
        base = Array([g["g_base"], g["m_base"], g["v_base"]])[j]
        m.d.comb += [rd.runs.valid.eq(offer), rd.runs.payload.addr.eq(base + roff + soff),
                     rd.runs.payload.beats.eq(sb // p.data_bytes)]
        step = offer & rd.runs.ready
        last_run = j == 2
        with m.If(step):
            m.d.sync += j.eq(Mux(last_run, 0, j + 1))
            with m.If(j == 0):
                m.d.sync += n["rd_items"].eq(n["rd_items"] + 1)
            with m.If(last_run):
                m.d.sync += soff.eq(soff + sb)
        last_s = tile_counter(m, rb, s, g["ns"], step & last_run)
        with m.If(step & last_run & last_s):
            m.d.sync += [roff.eq(roff + g["g_stride"]), soff.eq(0)]
            with m.If(rb + 1 == g["nrb"]):
                m.d.sync += on.eq(0)
        with m.If(take):
            m.d.sync += [rb.eq(0), s.eq(0), j.eq(0), on.eq(1), roff.eq(0), soff.eq(0)]

    def _data(self, m: Module, rd, take) -> None:
        """Read beats into the input slots: run 0 the gradient, 1 the master, 2 the
        velocity, ``n`` fp32 words each."""
        p, n = self.p, self.cnt
        per = p.data_bytes // 4  # fp32 words per bus beat
        self.inbuf = [[[Signal(32, name=f"in{s}_{r}_{e}") for e in range(self.n)]
                       for r in range(3)] for s in range(self.S)]
        slot, run = Signal(range(self.S)), Signal(2)
        beat = Signal(range(max(2, self.n // per)))
        m.d.comb += rd.data.ready.eq(1)
        with m.If(rd.data.valid):
            for s in range(self.S):
                for r in range(3):
                    for b in range(self.n // per):
                        with m.If((slot == s) & (run == r) & (beat == b)):
                            m.d.sync += [self.inbuf[s][r][b * per + i].eq(
                                rd.data.payload.word_select(i, 32)) for i in range(per)]
            last_beat = beat == self.n // per - 1
            m.d.sync += beat.eq(Mux(last_beat, 0, beat + 1))
            with m.If(last_beat):
                m.d.sync += run.eq(Mux(run == 2, 0, run + 1))
                with m.If(run == 2):
                    m.d.sync += [slot.eq(Mux(slot == self.S - 1, 0, slot + 1)),
                                 n["data_items"].eq(n["data_items"] + 1)]
        with m.If(take):
            m.d.sync += [slot.eq(0), run.eq(0), beat.eq(0)]

    def _lanes(self, m: Module, take) -> None:
        """Feed the lanes: super-block ``fed_items`` once its data is in and its output
        slot is free, lane l of beat k the weight ``k lanes + l``."""
        n, L = self.cnt, self.lanes
        slot = Signal(range(self.S))
        k = Signal(range(self.beats + 1))
        valid = (n["data_items"] != n["fed_items"]) & (
            (n["fed_items"] - n["acked_items"])[:24] < self.S)
        bufs = [Array(Array(self.inbuf[s][r]) for s in range(self.S)) for r in range(3)]
        for lane in range(L):
            e = k * L + lane
            live = e < self.n
            gv, wv, vv = (Mux(live, bufs[r][slot][e], 0) for r in range(3))
            m.d.comb += [self.wu_in.payload[lane].g.eq(gv), self.wu_in.payload[lane].w.eq(wv),
                         self.wu_in.payload[lane].v.eq(vv)]
        m.d.comb += self.wu_in.valid.eq(valid)
        step = valid & self.wu_in.ready
        last = k == self.beats - 1
        with m.If(step):
            m.d.sync += k.eq(Mux(last, 0, k + 1))
            with m.If(last):
                m.d.sync += [n["fed_items"].eq(n["fed_items"] + 1),
                             slot.eq(Mux(slot == self.S - 1, 0, slot + 1))]
        with m.If(take):
            m.d.sync += [slot.eq(0), k.eq(0)]

    def _outputs(self, m: Module, take) -> None:
        """The engine's result beats into the output slots (master, velocity, fp16)."""
        n, L = self.cnt, self.lanes
        self.outbuf = [[[Signal(w, name=f"out{s}_{r}_{e}") for e in range(self.n)]
                        for r, w in enumerate((32, 32, 16))] for s in range(self.S)]
        slot = Signal(range(self.S))
        k = Signal(range(self.beats + 1))
        out = self.wu_out.payload
        m.d.comb += self.wu_out.ready.eq(1)
        with m.If(self.wu_out.valid):
            for s in range(self.S):
                for lane in range(L):
                    for kk in range(self.beats):
                        e = kk * L + lane
                        if e >= self.n:
                            continue
                        with m.If((slot == s) & (k == kk)):
                            m.d.sync += [self.outbuf[s][0][e].eq(out[lane].w),
                                         self.outbuf[s][1][e].eq(out[lane].v),
                                         self.outbuf[s][2][e].eq(out[lane].w16)]
            last = k == self.beats - 1
            m.d.sync += k.eq(Mux(last, 0, k + 1))
            with m.If(last):
                m.d.sync += [n["out_items"].eq(n["out_items"] + 1),
                             slot.eq(Mux(slot == self.S - 1, 0, slot + 1))]
        with m.If(take):
            m.d.sync += [slot.eq(0), k.eq(0)]

    def _copy_words(self, s: int) -> list:
        """Output slot s's working-copy words: word ``c C + j`` holds in slot p the fp16 of
        output j, input ``c P + p`` (weight ``b R C + j C + i`` of the gradient's order,
        ``c P + p = b C + i``), index fields zero, padded to the word slot."""
        R, C, P = self.R, self.R, self.P
        words = []
        for c in range(self.lq // P):
            for j in range(C):
                parts = []
                for pp in range(P):
                    i_local = c * P + pp
                    e = (i_local // C) * R * C + j * C + i_local % C
                    parts += [self.outbuf[s][2][e], Const(0, self.sw - 16)]
                w = Cat(*parts)
                words.append(Cat(w, Const(0, self.ws * 8 - len(w))))
        return words

    def _writer(self, m: Module, wr, take) -> None:
        """Each complete output slot as three write runs (master, velocity, working
        copy); the B responses free the slots, the last one pulses ``mem_done``."""
        p, g, n = self.p, self.g, self.cnt
        sb, cb = self.n * 4, self.lq // self.P * self.R * self.ws
        burst = self.cfg.dram.burst_bytes
        nb = 2 * ceil_div(sb, burst) + ceil_div(cb, burst)  # bursts per super-block
        rb, s, j = Signal(24), Signal(24), Signal(2)
        on = Signal()
        roff, soff, woff, wsoff = (Signal(32, name=x) for x in ("wroff", "wsoff", "cwoff",
                                                                 "cwsoff"))
        offered = Signal(24)
        offer = on & ((j != 0) | (offered != n["out_items"]))
        addr = Array([g["m_base"] + roff + soff, g["v_base"] + roff + soff,
                      g["w_base"] + woff + wsoff])[j]
        m.d.comb += [wr.runs.valid.eq(offer), wr.runs.payload.addr.eq(addr),
                     wr.runs.payload.beats.eq(Mux(j == 2, cb, sb) // p.data_bytes),
                     wr.runs_last.eq(0)]
        step = offer & wr.runs.ready
        last_run = j == 2
        with m.If(step):
            m.d.sync += j.eq(Mux(last_run, 0, j + 1))
            with m.If(j == 0):
                m.d.sync += offered.eq(offered + 1)
            with m.If(last_run):
                m.d.sync += [soff.eq(soff + sb), wsoff.eq(wsoff + cb)]
        last_s = tile_counter(m, rb, s, g["ns"], step & last_run)
        with m.If(step & last_run & last_s):
            m.d.sync += [roff.eq(roff + g["g_stride"]), soff.eq(0),
                         woff.eq(woff + g["w_stride"]), wsoff.eq(0)]
            with m.If(rb + 1 == g["nrb"]):
                m.d.sync += on.eq(0)
        self._w_data(m, wr, sb, cb)
        track_responses(m, self, wr, nb, n["acked_items"], g["nrb"], g["ns"], take)
        with m.If(take):
            m.d.sync += [rb.eq(0), s.eq(0), j.eq(0), on.eq(1), roff.eq(0), soff.eq(0),
                         woff.eq(0), wsoff.eq(0), offered.eq(0)]

    def _w_data(self, m: Module, wr, sb: int, cb: int) -> None:
        """The W beats of each output slot: its master words, velocity words, then its
        working-copy words, in bus beats."""
        p, n = self.p, self.cnt
        db = p.data_bytes
        beats = [sb // db, sb // db, cb // db]
        slot, run = Signal(range(self.S)), Signal(2)
        beat = Signal(range(max(beats) + 1))
        sent = Signal(24)
        opts = []
        for s in range(self.S):
            state = [Cat(*self.outbuf[s][r]) for r in range(2)]
            copy = Cat(*self._copy_words(s))
            opts.append([Array(x.word_select(b, db * 8) for b in range(len(x) // (db * 8)))
                         for x in (*state, copy)])
        m.d.comb += [wr.data.valid.eq(sent != n["out_items"]),
                     wr.data.payload.eq(Array(Array(o[r][beat] for r in range(3))
                                              for o in opts)[slot][run])]
        with m.If(wr.data.valid & wr.data.ready):
            last_beat = beat == Array(Const(b - 1, 16) for b in beats)[run]
            m.d.sync += beat.eq(Mux(last_beat, 0, beat + 1))
            with m.If(last_beat):
                m.d.sync += run.eq(Mux(run == 2, 0, run + 1))
                with m.If(run == 2):
                    m.d.sync += [sent.eq(sent + 1),
                                 slot.eq(Mux(slot == self.S - 1, 0, slot + 1))]
        with m.If(self.cmd.valid):  # a new command: its first super-block's first beat
            m.d.sync += [slot.eq(0), run.eq(0), beat.eq(0), sent.eq(0)]


def attach_wu(m: Module, ws: WuStream, top, prefix: str, desc, core) -> None:
    """Wire ``ws`` into the accelerator top behind ``core``'s weight-update queue, its
    AXI4 master on ``top``'s ports named ``prefix`` + the AXI name, the command's working
    copy looked up in the descriptor arrays ``desc`` (:data:`~nmsat.rtl.top.DESC_NAMES`)."""
    from .top import DESC_NAMES

    m.submodules.wu_stream = ws
    for name, member in axi_master_members(ws.p, "").items():
        mine, theirs = getattr(top, prefix + name), getattr(ws, name)
        m.d.comb += (mine.eq(theirs) if member.flow is Out else theirs.eq(mine))
    wiring.connect(m, core.wu_cmd, ws.cmd)
    wiring.connect(m, ws.wu_in, core.wu_in)
    wiring.connect(m, core.wu_out, ws.wu_out)
    iv = data.View(instr_layout(isa.Opcode.WEIGHT_UPDATE), core.wu_cmd.payload)
    t = iv.tensor[:4]
    f = dict(zip(DESC_NAMES, desc))
    m.d.comb += [ws.w_base.eq(f["wbase"][t]), ws.w_stride.eq(f["wstride"][t]),
                 ws.w_rows.eq(f["rows"][t]), ws.w_cols.eq(f["cols"][t]),
                 ws.g_base.eq(f["gbase"][t]), ws.g_stride.eq(f["gstride"][t]),
                 ws.m_base.eq(f["mbase"][t]), ws.v_base.eq(f["vbase"][t]),
                 core.wu_mem_done.eq(ws.mem_done)]
