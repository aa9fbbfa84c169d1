"""The tile controller: executes a tile program (``docs/isa.md``) in hardware.

:class:`Sequencer` holds the program in an instruction memory (written through the
``prog`` stream while idle) and walks it from ``start``: a program counter and a loop
stack of :data:`~nmsat.dataflow.isa.MAX_LOOP_DEPTH` entries (body start and end, count,
iteration index). It emits every executed non-LOOP instruction with the iteration indices
of its enclosing loops, one per cycle; a loop's back edge or exit takes one cycle.

:class:`TileController` dispatches them in program order into one in-order queue per
unit (load DMA, engine, store DMA, SORE, weight-update/vector engine), resolving LOAD and
STORE tiles (``r0 = row0 + sum_d i[d] * row_steps[d]``, likewise ``c0``) on the way. A
``BARRIER`` takes its dispatch cycle and sets, per unit it names, the number of that
unit's instructions dispatched so far (``need``); every later instruction carries these
counts in its queue entry and issues no earlier than the cycle its unit's completions
reach them (every instruction dispatched before the barrier to the named units has
completed). So dispatch runs on past a barrier, and the instruction behind it issues in
the cycle the last awaited completion arrives, as the system model starts it. Each
queue's head is issued to its unit's command stream when the execution model's waits
hold (the ACT, WGT and OUT buffers are rings of ``halves`` halves, from
``buffers.*.double_buffered``):

* the n-th LOAD into a buffer waits for the (n - halves)-th free of that buffer (a
  COMPUTE with ``pop_a``/``pop_b`` or a RELEASE completing);
* a COMPUTE waits until its oldest ACT and WGT halves are filled (their LOADs completed)
  and until the STORE ``halves`` before its output group completed; a RELEASE waits for
  the half it frees to be filled;
* a STORE waits for the engine instruction before it.

Each command carries its ring half: the n-th LOAD into a buffer fills half n mod halves,
an engine instruction after n pops of a buffer reads its half n mod halves and after s
STOREs accumulates into OUT half s mod halves, the s-th STORE drains OUT half s mod halves
(the rings are FIFOs). ``start`` resets every counter, so each program's rings begin at
half 0.

Units report completions by one-cycle ``*_done`` pulses, in order, at least one cycle
after the command's handshake. A pulse counts in the cycle it arrives: every wait, the
barrier and ``done`` compare with the counters plus this cycle's pulses (registered at
the next edge), so a command whose last wait is a pulse at cycle t issues at t, as the
system model's dependent starts at its producer's completion time. All counters are
32-bit and compared by differences, so they may wrap.
"""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Module, Signal
from amaranth.lib import data, fifo, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from nmsat.config import AcceleratorConfig
from nmsat.dataflow import isa

from .engine import instr_layout, ring_halves
from .sore import Sore
from .wu import WeightUpdateEngine

__all__ = ["CNT", "COORD", "UNITS", "ControlledEngine", "Sequencer", "TileController",
           "check_controlled", "queue_layout", "region_layout", "ring_halves"]

_REGION = dict(isa.ENCODING[isa.Opcode.LOAD])
"""Field widths of a LOAD (a STORE's are the same without ``buffer``): the ISA's one
table, not restated here."""
CNT = 32  # completion / dispatch counters
COORD = _REGION["row0"]  # resolved tile coordinates: as wide as the ISA's row0 / col0
assert _REGION["col0"] == COORD
UNITS = tuple(u.name.lower() for u in isa.Unit)
"""The units' queues, in :class:`~nmsat.dataflow.isa.Unit` bit order (a BARRIER's mask bit
u is queue u): load, engine, store, sore, wu."""


def _q(unit: isa.Unit) -> int:
    """The queue (and BARRIER mask bit) of ``unit``."""
    return int(unit).bit_length() - 1


region_layout = data.StructLayout({
    **{f: _REGION[f] for f in ("buffer", "tensor", "transform")}, "r0": COORD, "c0": COORD,
    **{f: _REGION[f] for f in ("rows", "cols", "bytes")}, "half": 1})
"""A resolved LOAD/STORE tile as the DMA command streams carry it (``buffer`` is 0 for a
STORE); every width is the ISA field's (:data:`~nmsat.dataflow.isa.ENCODING`).
``half``: the ring half it fills (a LOAD: the n-th LOAD into its buffer fills half n mod
halves) or drains (the n-th STORE: OUT half n mod halves); 0 with one half."""

queue_layout = data.StructLayout({"word": isa.INSTR_BITS, "r0": COORD, "c0": COORD,
                                  "before": CNT, "need": data.ArrayLayout(CNT, len(UNITS))})
"""A unit queue entry: the instruction word, its resolved tile, for a COMPUTE or
RELEASE the number of STOREs dispatched before it (for a STORE: engine instructions
before it), and ``need[u]``: the completions of unit u it waits for (the instructions
of u dispatched before the last BARRIER naming u)."""


class Sequencer(wiring.Component):
    """Instruction memory, program counter and loop stack (see the module docstring).

    ``prog`` writes word ``data`` at ``addr`` (accepted while not ``busy``); ``start``
    (with ``length``, the instruction count) runs the program; ``instr`` carries each
    executed non-LOOP instruction with ``idx[d]``, the iteration index of the enclosing
    loop at depth d (0 where no loop encloses). ``error``: a LOOP nested deeper than
    MAX_LOOP_DEPTH (sticky until the next ``start``; the loop is then run once as if its
    body were straight-line code).
    """

    def __init__(self, depth: int):
        if depth < 1:
            raise ValueError(f"instruction memory depth must be at least 1, not {depth}")
        self.depth = depth
        D = isa.MAX_LOOP_DEPTH
        super().__init__({
            "prog": In(stream.Signature(data.StructLayout(
                {"addr": range(depth), "data": isa.INSTR_BITS}))),
            "start": In(1), "length": In(range(depth + 1)),
            "instr": Out(stream.Signature(data.StructLayout(
                {"word": isa.INSTR_BITS, "idx": data.ArrayLayout(CNT, D)}))),
            "busy": Out(1), "error": Out(1)})

    def elaborate(self, platform) -> Module:
        m = Module()
        D = isa.MAX_LOOP_DEPTH
        m.submodules.mem = mem = memory.Memory(shape=isa.INSTR_BITS, depth=self.depth, init=[])
        wr, rd = mem.write_port(), mem.read_port()
        m.d.comb += [wr.addr.eq(self.prog.payload.addr), wr.data.eq(self.prog.payload.data),
                     wr.en.eq(self.prog.valid & ~self.busy), self.prog.ready.eq(~self.busy)]
        pc, pc_nx = Signal(range(self.depth + 1)), Signal(range(self.depth + 1))
        length = Signal.like(self.length)
        # rd.data is always the word at pc: the read port is addressed with the next pc
        m.d.comb += [pc_nx.eq(pc), rd.addr.eq(pc_nx), rd.en.eq(1)]
        m.d.sync += pc.eq(pc_nx)
        sp = Signal(range(D + 1))
        first = [Signal(range(self.depth + 1), name=f"first{d}") for d in range(D)]
        end = [Signal(range(self.depth + 1), name=f"end{d}") for d in range(D)]
        count = [Signal(CNT, name=f"count{d}") for d in range(D)]
        idx = [Signal(CNT, name=f"idx{d}") for d in range(D)]
        top_end = Array(end)[sp - 1]
        loop = data.View(instr_layout(isa.Opcode.LOOP), rd.data)
        m.d.comb += [self.instr.payload.word.eq(rd.data),
                     *[self.instr.payload.idx[d].eq(idx[d]) for d in range(D)]]
        with m.If(self.start & ~self.busy):
            m.d.sync += [self.busy.eq(1), length.eq(self.length), sp.eq(0), self.error.eq(0)]
            m.d.comb += pc_nx.eq(0)
        with m.Elif(self.busy):
            with m.If((sp != 0) & (pc == top_end)):  # end of the innermost body
                for d in range(D):
                    with m.If(sp == d + 1):
                        with m.If(idx[d] + 1 < count[d]):
                            m.d.sync += idx[d].eq(idx[d] + 1)
                            m.d.comb += pc_nx.eq(first[d])
                        with m.Else():
                            m.d.sync += [idx[d].eq(0), sp.eq(d)]
            with m.Elif(pc >= length):
                m.d.sync += self.busy.eq(0)
            with m.Elif(loop.opcode == isa.Opcode.LOOP):
                m.d.comb += pc_nx.eq(pc + 1)
                with m.If(sp == D):
                    m.d.sync += self.error.eq(1)
                for d in range(D):
                    with m.If(sp == d):
                        m.d.sync += [first[d].eq(pc + 1), end[d].eq(pc + 1 + loop.body),
                                     count[d].eq(loop.count), idx[d].eq(0), sp.eq(d + 1)]
            with m.Else():
                m.d.comb += self.instr.valid.eq(1)
                with m.If(self.instr.ready):
                    m.d.comb += pc_nx.eq(pc + 1)
        return m


class TileController(wiring.Component):
    """Sequencer + in-order dispatch + per-unit issue under the ring and barrier rules.

    Streams out: ``load`` and ``store`` (:data:`region_layout`, resolved tiles, with the
    ring half), ``engine`` (COMPUTE and RELEASE words, with ``act_half``, ``wgt_half``
    and ``out_half``: the oldest filled ACT and WGT halves, n mod halves after n halves
    of the buffer were popped, and the OUT half, s mod halves after s STOREs), ``sore``
    (SORE words), ``wu`` (WEIGHT_UPDATE and VECTOR words). In: one ``*_done`` pulse per
    completed command of each unit. ``start`` runs the ``length`` instructions written
    through ``prog``; ``done`` pulses once every instruction has completed; ``error``: an
    opcode that is not an instruction (dropped) or loops nested too deep.
    """

    def __init__(self, cfg: AcceleratorConfig, depth: int = 256, queue_depth: int = 4):
        self.halves = ring_halves(cfg)
        self.depth, self.queue_depth = depth, queue_depth
        words = data.StructLayout({"addr": range(depth), "data": isa.INSTR_BITS})
        super().__init__({
            "prog": In(stream.Signature(words)), "start": In(1),
            "length": In(range(depth + 1)), "done": Out(1), "busy": Out(1), "error": Out(1),
            "load": Out(stream.Signature(region_layout)), "load_done": In(1),
            "engine": Out(stream.Signature(isa.INSTR_BITS)), "engine_done": In(1),
            "act_half": Out(1), "wgt_half": Out(1), "out_half": Out(1),
            "store": Out(stream.Signature(region_layout)), "store_done": In(1),
            "sore": Out(stream.Signature(isa.INSTR_BITS)), "sore_done": In(1),
            "wu": Out(stream.Signature(isa.INSTR_BITS)), "wu_done": In(1)})

    def elaborate(self, platform) -> Module:
        m = Module()
        m.submodules.seq = seq = Sequencer(self.depth)
        wiring.connect(m, wiring.flipped(self.prog), seq.prog)
        m.d.comb += [seq.start.eq(self.start & ~self.busy), seq.length.eq(self.length)]
        qs = [fifo.SyncFIFOBuffered(width=queue_layout.size, depth=self.queue_depth)
              for _ in UNITS]
        for name, q in zip(UNITS, qs):
            m.submodules[f"q_{name}"] = q
        self.dispatched = [Signal(CNT, name=f"dispatched_{u}") for u in UNITS]
        self.completed = [Signal(CNT, name=f"completed_{u}") for u in UNITS]
        # completions including this cycle's pulses (what every wait compares with)
        self.done_now = [Signal(CNT, name=f"done_now_{u}") for u in UNITS]
        for u, pulse in enumerate((self.load_done, self.engine_done, self.store_done,
                                   self.sore_done, self.wu_done)):
            m.d.comb += self.done_now[u].eq(self.completed[u] + pulse)
        self._dispatch(m, seq, qs)
        self._ring_counters()
        heads = [data.View(queue_layout, q.r_data) for q in qs]
        # each head's barrier waits (a pulse counts in its cycle, like every wait)
        self.clear = [Cat((self.done_now[u] - h.need[u])[:CNT].as_signed() >= 0
                          for u in range(len(UNITS))).all() for h in heads]
        ld, eng, st = _q(isa.Unit.LOAD), _q(isa.Unit.ENGINE), _q(isa.Unit.STORE)
        self._issue_load(m, qs[ld], heads[ld])
        self._issue_engine(m, qs[eng], heads[eng])
        self._issue_store(m, qs[st], heads[st])
        sore, wu = _q(isa.Unit.SORE), _q(isa.Unit.WU)
        for u, port in ((sore, self.sore), (wu, self.wu)):
            q, h = qs[u], heads[u]
            m.d.comb += [port.valid.eq(q.r_rdy & self.clear[u]), port.payload.eq(h.word),
                         q.r_en.eq(port.ready & self.clear[u])]
        for u, pulse in enumerate((self.load_done, self.engine_done, self.store_done,
                                   self.sore_done, self.wu_done)):
            m.d.sync += self.completed[u].eq(self.completed[u] + pulse)
        idle = Signal()
        m.d.comb += idle.eq(~seq.busy & ~seq.start & (Cat(self.dispatched[u] == self.done_now[u]
                                                          for u in range(len(UNITS))).all()))
        with m.If(self.start & ~self.busy):
            m.d.sync += self.busy.eq(1)
            # every program's rings start at half 0 (idle: every load was popped and
            # completed, so the counters are equal and only their parity is reset)
            m.d.sync += [c.eq(0) for arr in (self.ld_iss, self.ld_done, self.pop_iss,
                                             self.freed) for c in arr]
            m.d.sync += [self.st_iss.eq(0), *[c.eq(0) for c in self.dispatched],
                         *[c.eq(0) for c in self.completed], *[c.eq(0) for c in self.need]]
        with m.Elif(self.busy & idle):
            m.d.sync += self.busy.eq(0)
            m.d.comb += self.done.eq(1)
        return m

    def _dispatch(self, m: Module, seq: Sequencer, qs) -> None:
        """Program order into the unit queues; BARRIERs hold dispatch; tiles resolved."""
        word = seq.instr.payload.word
        op = word[:isa.OPCODE_BITS]
        bar = data.View(instr_layout(isa.Opcode.BARRIER), word)
        entry = data.View(queue_layout, Signal(queue_layout.size))
        self.need = [Signal(CNT, name=f"need_{u}") for u in UNITS]
        m.d.comb += entry.word.eq(word)
        with m.If(seq.instr.valid):  # (conditional: Icarus runs an ``always @*`` that
            # reads only registers first when one changes, leaving the field X till then)
            m.d.comb += [entry.need[u].eq(self.need[u]) for u in range(len(UNITS))]
        for opcode in (isa.Opcode.LOAD, isa.Opcode.STORE):
            v = data.View(instr_layout(opcode), word)
            with m.If(op == opcode):
                r0, c0 = v.row0, v.col0
                for d in range(isa.MAX_LOOP_DEPTH):
                    i = seq.instr.payload.idx[d]
                    r0 = r0 + i * getattr(v, f"row_step{d}")
                    c0 = c0 + i * getattr(v, f"col_step{d}")
                m.d.comb += [entry.r0.eq(r0), entry.c0.eq(c0)]
        with m.If((op == isa.Opcode.COMPUTE) | (op == isa.Opcode.RELEASE)):
            m.d.comb += entry.before.eq(self.dispatched[_q(isa.Unit.STORE)])
        with m.If(op == isa.Opcode.STORE):
            m.d.comb += entry.before.eq(self.dispatched[_q(isa.Unit.ENGINE)])
        with m.Switch(op):
            with m.Case(isa.Opcode.BARRIER):
                m.d.comb += seq.instr.ready.eq(1)
                with m.If(seq.instr.valid):
                    for u in range(len(UNITS)):
                        with m.If(bar.units[u]):
                            m.d.sync += self.need[u].eq(self.dispatched[u])
            for opcode, unit in isa.UNIT_OF.items():
                u = _q(unit)
                with m.Case(opcode):
                    m.d.comb += [seq.instr.ready.eq(qs[u].w_rdy), qs[u].w_data.eq(entry),
                                 qs[u].w_en.eq(seq.instr.valid)]
                    with m.If(seq.instr.valid & qs[u].w_rdy):
                        m.d.sync += self.dispatched[u].eq(self.dispatched[u] + 1)
            with m.Default():
                m.d.comb += seq.instr.ready.eq(1)
                with m.If(seq.instr.valid):
                    m.d.sync += self.error.eq(1)
        with m.If(seq.error):
            m.d.sync += self.error.eq(1)
        with m.If(self.start & ~self.busy):
            m.d.sync += self.error.eq(0)

    def _ring_counters(self) -> None:
        """Per buffer (ACT, WGT): loads issued and completed, halves popped by the engine
        at issue, halves freed (the popping instruction completed)."""
        mk = lambda n: Array([Signal(CNT, name=f"{n}_{b}") for b in ("act", "wgt")])
        self.ld_iss, self.ld_done, self.pop_iss, self.freed = (
            mk("ld_iss"), mk("ld_done"), mk("pop_iss"), mk("freed"))
        # with this cycle's load completions / frees (see the module docstring)
        self.ld_done_now, self.freed_now = mk("ld_done_now"), mk("freed_now")

    def _issue_load(self, m: Module, q, head) -> None:
        ld = data.View(instr_layout(isa.Opcode.LOAD), head.word)
        # loads in flight: at most one per half of ACT and WGT (the ring rule), so
        # this FIFO never holds issue back
        m.submodules.ld_inflight = infl = fifo.SyncFIFO(width=1, depth=sum(self.halves[:2]))
        buf = ld.buffer[0]
        halves = Array(self.halves[:2])[buf]
        free = (self.ld_iss[buf] - self.freed_now[buf])[:CNT] < halves
        p = self.load.payload
        if max(self.halves[:2]) > 1:
            m.d.comb += p.half.eq(Array(self.ld_iss[b][0] if self.halves[b] > 1 else 0
                                        for b in range(2))[buf])
        m.d.comb += [self.load.valid.eq(q.r_rdy & free & infl.w_rdy
                                        & self.clear[_q(isa.Unit.LOAD)]),
                     p.buffer.eq(ld.buffer), p.tensor.eq(ld.tensor),
                     p.transform.eq(ld.transform), p.r0.eq(head.r0), p.c0.eq(head.c0),
                     p.rows.eq(ld.rows), p.cols.eq(ld.cols), p.bytes.eq(ld.bytes)]
        fire = self.load.valid & self.load.ready
        m.d.comb += [q.r_en.eq(fire), infl.w_en.eq(fire), infl.w_data.eq(buf),
                     infl.r_en.eq(self.load_done)]
        with m.If(fire):
            m.d.sync += self.ld_iss[buf].eq(self.ld_iss[buf] + 1)
        with m.If(self.load_done):
            m.d.sync += self.ld_done[infl.r_data].eq(self.ld_done[infl.r_data] + 1)
        for b in range(2):
            m.d.comb += self.ld_done_now[b].eq(self.ld_done[b] + (self.load_done
                                                                   & (infl.r_data == b)))

    def _issue_engine(self, m: Module, q, head) -> None:
        cp = data.View(instr_layout(isa.Opcode.COMPUTE), head.word)
        rel = data.View(instr_layout(isa.Opcode.RELEASE), head.word)
        is_cp = cp.opcode == isa.Opcode.COMPUTE
        filled = [(self.ld_done_now[b] - self.pop_iss[b])[:CNT] != 0 for b in range(2)]
        out_free = (head.before - self.done_now[_q(isa.Unit.STORE)])[:CNT] < self.halves[2]
        pops = Signal(2)  # halves this instruction frees when it completes (ACT, WGT)
        with m.If(is_cp):
            m.d.comb += pops.eq(Cat(cp.pop_a, cp.pop_b))
        with m.Else():
            m.d.comb += pops.eq(Cat(rel.buffer == isa.Buffer.ACT, rel.buffer == isa.Buffer.WGT))
        ok = Signal()
        with m.If(is_cp):
            m.d.comb += ok.eq(filled[0] & filled[1] & out_free)
        with m.Else():
            m.d.comb += ok.eq(Array(filled)[rel.buffer[0]])
        # engine instructions in flight (issued, completion not yet seen): the engine
        # takes a command only when idle, so a few entries never hold issue back
        m.submodules.eng_inflight = infl = fifo.SyncFIFO(width=2, depth=4)
        m.d.comb += [self.engine.valid.eq(q.r_rdy & ok & infl.w_rdy
                                          & self.clear[_q(isa.Unit.ENGINE)]),
                     self.engine.payload.eq(head.word)]
        for b, port in enumerate((self.act_half, self.wgt_half)):
            if self.halves[b] > 1:
                m.d.comb += port.eq(self.pop_iss[b][0])
        if self.halves[2] > 1:
            m.d.comb += self.out_half.eq(head.before[0])
        fire = self.engine.valid & self.engine.ready
        m.d.comb += [q.r_en.eq(fire), infl.w_en.eq(fire), infl.w_data.eq(pops),
                     infl.r_en.eq(self.engine_done)]
        for b in range(2):
            with m.If(fire & pops[b]):
                m.d.sync += self.pop_iss[b].eq(self.pop_iss[b] + 1)
            with m.If(self.engine_done & infl.r_data[b]):
                m.d.sync += self.freed[b].eq(self.freed[b] + 1)
            m.d.comb += self.freed_now[b].eq(self.freed[b] + (self.engine_done & infl.r_data[b]))

    def _issue_store(self, m: Module, q, head) -> None:
        st = data.View(instr_layout(isa.Opcode.STORE), head.word)
        after = (self.done_now[_q(isa.Unit.ENGINE)] - head.before)[:CNT].as_signed() >= 0
        p = self.store.payload
        self.st_iss = st_iss = Signal(CNT)  # STOREs issued
        with m.If(self.store.valid & self.store.ready):
            m.d.sync += st_iss.eq(st_iss + 1)
        if self.halves[2] > 1:
            m.d.comb += p.half.eq(st_iss[0])
        m.d.comb += [self.store.valid.eq(q.r_rdy & after & self.clear[_q(isa.Unit.STORE)]),
                     p.tensor.eq(st.tensor),
                     p.transform.eq(st.transform), p.r0.eq(head.r0), p.c0.eq(head.c0),
                     p.rows.eq(st.rows), p.cols.eq(st.cols), p.bytes.eq(st.bytes),
                     q.r_en.eq(self.store.valid & self.store.ready)]


def check_controlled(cfg: AcceleratorConfig) -> None:
    """Raise ``ValueError`` naming the field when :class:`ControlledEngine` cannot run
    ``cfg``: ``act_zero = skip`` (its row lists need a DMA side this top level does not
    have), a SORE other than one cycle per weight with a pipeline, or a weight-update
    engine without a pipeline stage (the RTL units' cycle laws,
    :func:`nmsat.dataflow.timing.sore_cycles` / ``weight_update_cycles``)."""
    from nmsat.types import ActZero

    if ActZero.parse(cfg.array.act_zero) is ActZero.SKIP:
        raise ValueError("array.act_zero = skip is not supported by the tile controller "
                         "(its DMA side writes no row lists)")
    if cfg.sore.cycles_per_weight != 1:
        raise ValueError(f"sore.cycles_per_weight = {cfg.sore.cycles_per_weight} is not "
                         "supported by the RTL SORE (it reads one weight per cycle)")
    if cfg.sore.pipeline_latency < 1:
        raise ValueError("sore.pipeline_latency = 0 is not supported by the RTL SORE (its "
                         "lane's result register is the first stage)")
    if cfg.weight_update.pipeline_latency < 1:
        raise ValueError("weight_update.pipeline_latency = 0 is not supported by the RTL "
                         "weight-update engine (at least one register stage)")


class ControlledEngine(wiring.Component):
    """:class:`TileController` driving a :class:`~nmsat.rtl.engine.TensorEngine`.

    Buffers are rings of one or two halves as configured (``double_buffered``); the
    controller names each command's half (:class:`TileController`). The controller's
    ``engine`` stream (COMPUTE, RELEASE) goes to the engine's ``cmd`` port with the ACT,
    WGT and OUT halves. A STORE goes to the store DMA (``store_cmd``, the resolved tile
    and its OUT half) and, in the same cycle, into a queue of ``halves`` entries to the
    engine's store path (``store_cmd``), which streams that OUT half out on
    ``store_data`` (the DMA's side, as ``TensorEngine.store``) from the cycle after it
    takes it, beside COMPUTEs on the other half; the DMA pulses ``store_done`` when the
    tile is in DRAM. A COMPUTE completes when the engine is idle again after it, a
    RELEASE (ignored by the engine) the cycle after it was accepted. The DMA writes
    operand blocks through ``act_load`` / ``wgt_load`` (engine chunk layout; a LOAD's
    words at ``half * words`` plus their place in the half, ``words`` the per-half bank
    depth of ``engine.buffer_geometry``) and pulses ``load_done`` per LOAD command
    (``load_cmd``) it has written.

    Behind the controller's ``sore`` and ``wu`` queues sit the SORE
    (:class:`~nmsat.rtl.sore.Sore`) and the weight-update engine
    (:class:`~nmsat.rtl.wu.WeightUpdateEngine`, also given VECTOR words, which it does
    not run): a SORE or WEIGHT_UPDATE is taken while its unit is idle (or in the cycle
    it completes) and goes to the DMA on ``sore_cmd`` / ``wu_cmd``; the DMA streams the
    operands into ``sore_in`` (groups of M weights on the lanes, the view's order) /
    ``wu_in`` (fp32 master, velocity, gradient per lane) from the next cycle, takes the
    results from ``sore_out`` / ``wu_out``, and pulses ``sore_mem_done`` /
    ``wu_mem_done`` when the stream's DRAM time has passed. The SORE's pattern comes
    from the word (``nm_n``, ``nm_m``), the update's ``lr`` and ``momentum`` (fp32 bits)
    from the inputs of those names. A unit completes in the cycle its last result beat
    leaves (``ceil(groups / lanes)`` SORE beats, ``ceil(weights / lanes)`` update beats)
    if its memory pulse came by then, else with that pulse (:meth:`_streamed`).
    """

    def __init__(self, cfg: AcceleratorConfig, dtype=None, depth: int = 256,
                 shared_cells: bool = False):
        from .engine import TensorEngine

        check_controlled(cfg)
        self.cfg, self.depth = cfg, depth
        # shared_cells: the engine's cells as instances of two shared modules (synthesis)
        self.engine = TensorEngine(cfg, dtype, shared_cells=shared_cells)
        self.shape = self.engine.shape
        self.sore_unit, self.wu_unit = Sore(cfg, dtype), WeightUpdateEngine(cfg)
        eng = self.engine.signature.members
        so, wu = self.sore_unit.signature.members, self.wu_unit.signature.members
        words = data.StructLayout({"addr": range(depth), "data": isa.INSTR_BITS})
        super().__init__({
            "prog": In(stream.Signature(words)), "start": In(1),
            "length": In(range(depth + 1)), "done": Out(1), "busy": Out(1), "error": Out(1),
            "load_cmd": Out(stream.Signature(region_layout)), "load_done": In(1),
            "act_load": eng["act_load"], "wgt_load": eng["wgt_load"],
            "store_cmd": Out(stream.Signature(region_layout)), "store_done": In(1),
            "store_data": eng["store"],
            "sore_cmd": Out(stream.Signature(isa.INSTR_BITS)), "sore_mem_done": In(1),
            "sore_in": so["inp"], "sore_out": so["out"],
            "wu_cmd": Out(stream.Signature(isa.INSTR_BITS)), "wu_mem_done": In(1),
            "wu_in": wu["inp"], "wu_out": wu["out"], "lr": In(32), "momentum": In(32),
            "in_valid": In(1, init=1), "out_ready": In(1, init=1), "engine_busy": Out(1),
            "engine_active": Out(1)})

    def elaborate(self, platform) -> Module:
        m = Module()
        m.submodules.ctrl = ctrl = TileController(self.cfg, self.depth)
        m.submodules.engine = eng = self.engine
        wiring.connect(m, wiring.flipped(self.prog), ctrl.prog)
        self._vector_units(m, ctrl)
        wiring.connect(m, wiring.flipped(self.load_cmd), ctrl.load)
        for name in ("act_load", "wgt_load"):
            wiring.connect(m, wiring.flipped(getattr(self, name)), getattr(eng, name))
        wiring.connect(m, wiring.flipped(self.store_data), eng.store)
        m.d.comb += [ctrl.start.eq(self.start), ctrl.length.eq(self.length),
                     self.done.eq(ctrl.done), self.busy.eq(ctrl.busy), self.error.eq(ctrl.error),
                     ctrl.load_done.eq(self.load_done), ctrl.store_done.eq(self.store_done),
                     eng.in_valid.eq(self.in_valid), eng.out_ready.eq(self.out_ready),
                     self.engine_busy.eq(eng.busy)]
        # A STORE: the tile to the store DMA and (rows, cols, half) to the engine's store
        # path in the same cycle. The path's queue never fills: a STORE issues after the
        # COMPUTEs of its half, whose own turn came after the STORE ``halves`` before
        # it completed, so at most ``halves`` STOREs are between issue and completion.
        sq_layout = data.StructLayout({"rows": 24, "cols": 24, "half": 1})
        m.submodules.store_q = sq = fifo.SyncFIFO(width=sq_layout.size,
                                                  depth=ring_halves(self.cfg)[2])
        sq_in, sq_out = data.View(sq_layout, sq.w_data), data.View(sq_layout, sq.r_data)
        m.d.comb += [self.store_cmd.payload.eq(ctrl.store.payload),
                     self.store_cmd.valid.eq(ctrl.store.valid & sq.w_rdy),
                     ctrl.store.ready.eq(self.store_cmd.ready & sq.w_rdy),
                     sq.w_en.eq(ctrl.store.valid & ctrl.store.ready),
                     sq_in.rows.eq(ctrl.store.payload.rows), sq_in.cols.eq(ctrl.store.payload.cols),
                     sq_in.half.eq(ctrl.store.payload.half)]
        st_word = data.View(instr_layout(isa.Opcode.STORE), Signal(isa.INSTR_BITS))
        m.d.comb += [st_word.opcode.eq(isa.Opcode.STORE), st_word.rows.eq(sq_out.rows),
                     st_word.cols.eq(sq_out.cols),
                     eng.store_cmd.valid.eq(sq.r_rdy), eng.store_cmd.payload.eq(st_word.as_value()),
                     eng.store_half.eq(sq_out.half), sq.r_en.eq(eng.store_cmd.ready)]
        m.d.comb += [eng.cmd.valid.eq(ctrl.engine.valid), eng.cmd.payload.eq(ctrl.engine.payload),
                     ctrl.engine.ready.eq(eng.cmd.ready), eng.act_half.eq(ctrl.act_half),
                     eng.wgt_half.eq(ctrl.wgt_half), eng.out_half.eq(ctrl.out_half)]
        # Engine completions: a COMPUTE when the engine is idle again, a RELEASE next cycle.
        running, released = Signal(), Signal()
        op = ctrl.engine.payload[:isa.OPCODE_BITS]
        took = ctrl.engine.valid & ctrl.engine.ready
        finished = running & ~eng.busy
        m.d.comb += ctrl.engine_done.eq(finished | released)
        # an engine instruction occupies [accept, completion): the system model's
        # [start, done) of a COMPUTE or RELEASE (its engine timeline)
        m.d.comb += self.engine_active.eq(took | (running & ~finished))
        m.d.sync += released.eq(took & (op == isa.Opcode.RELEASE))
        with m.If(finished):
            m.d.sync += running.eq(0)
        with m.If(took & (op == isa.Opcode.COMPUTE)):
            m.d.sync += running.eq(1)
        return m

    def _vector_units(self, m: Module, ctrl: TileController) -> None:
        """The SORE and the weight-update engine behind the controller's ``sore`` and
        ``wu`` queues (see :meth:`_streamed`)."""
        m.submodules.sore = so = self.sore_unit
        m.submodules.wu = wu = self.wu_unit
        for port, unit in ((self.sore_in, so.inp), (self.wu_in, wu.inp)):
            wiring.connect(m, wiring.flipped(port), unit)
        for port, unit in ((self.sore_out, so.out), (self.wu_out, wu.out)):
            wiring.connect(m, wiring.flipped(port), unit)
        sv = data.View(instr_layout(isa.Opcode.SORE), ctrl.sore.payload)
        nm_n, nm_m = Signal.like(so.n), Signal.like(so.m)
        m.d.comb += [so.n.eq(nm_n), so.m.eq(nm_m), wu.lr.eq(self.lr),
                     wu.momentum.eq(self.momentum)]
        took = self._streamed(m, "sore", ctrl.sore, self.sore_cmd, self.sore_mem_done,
                              so.out, sv.groups, so.lanes)
        with m.If(took):
            m.d.sync += [nm_n.eq(sv.nm_n), nm_m.eq(sv.nm_m)]
        wv = data.View(instr_layout(isa.Opcode.WEIGHT_UPDATE), ctrl.wu.payload)
        self._streamed(m, "wu", ctrl.wu, self.wu_cmd, self.wu_mem_done, wu.out, wv.weights,
                       wu.lanes)

    def _streamed(self, m: Module, name: str, q, cmd, mem_done, out, items, lanes: int):
        """One streamed unit (SORE or weight update) behind the controller's queue ``q``.

        A command is taken while the unit is idle (or in the cycle it completes, as the
        system model starts a unit's next instruction at its predecessor's completion)
        and goes to the DMA on ``cmd``, which streams the operands in from the next
        cycle and takes the results. The unit counts ``ceil(items / lanes)`` result
        beats (``items``: the SORE's groups, the update's weights) and completes in the
        cycle its last result beat leaves and the DMA has pulsed ``mem_done`` (the
        stream's DRAM time, :meth:`~nmsat.dataflow.memory.MemoryModel.stream_cycles`,
        ending that cycle or earlier): the system model's ``max(lane cycles, stream
        time)``. Returns the take strobe."""
        busy, hw_fin, mem_fin = (Signal(name=f"{name}_{s}") for s in ("busy", "hw", "mem"))
        left = Signal(len(items), name=f"{name}_left")
        last = out.valid & out.ready & (left == 1)
        hw_now, mem_now = hw_fin | last, mem_fin | mem_done
        done = busy & hw_now & mem_now
        idle = ~busy | done
        m.d.comb += [cmd.valid.eq(q.valid & idle), cmd.payload.eq(q.payload),
                     q.ready.eq(cmd.ready & idle),
                     getattr(m.submodules.ctrl, f"{name}_done").eq(done)]
        took = cmd.valid & cmd.ready
        with m.If(busy & out.valid & out.ready):
            m.d.sync += left.eq(left - 1)
        with m.If(last):
            m.d.sync += hw_fin.eq(1)
        with m.If(mem_done):
            m.d.sync += mem_fin.eq(1)
        with m.If(done):
            m.d.sync += [busy.eq(0), hw_fin.eq(0), mem_fin.eq(0)]
        with m.If(took):
            m.d.sync += [busy.eq(1), hw_fin.eq(0), mem_fin.eq(0),
                         left.eq((items + (lanes - 1)) // lanes)]
        return took
