"""The tensor-engine array with the flexible systolic interconnect (docs/architecture.md 4).

One array serves both dataflows; the ``df`` input (0 = OS, 1 = WS) switches the links at
run time. Every register advances only when the engine's clock enable is high (the
engine wraps the array in an ``EnableInserter``), which is how input gaps and output
backpressure freeze the whole array, as the per-cycle model specifies.

Links between cells are plain registered signals (a systolic array has no per-link
handshake); the valid bits travel with the data in tags.

* OS: windows move right, weight slots move down; each cell keeps La accumulator slots in
  an La-register accumulate loop (slot b issues every La steps), starts a dot product from
  the OUT buffer's value, moves a finished sum to its shadow register for that slot; the
  shadow registers of one slot drain down the column, bottom row first.
* WS: weights shift down a shadow chain during a load and are swapped in when the tile's
  first activation row reaches the cell; partial sums flow down, La steps per cell; the top
  cell starts from the OUT buffer's value.

A cell's path is La steps long in both: with La > 1 the multipliers and the product tree
take the first La - 1 (registers between their operations, ``pe.dot_stages``) and the
accumulate add the last, so no step holds more than about one fp32 add.
"""

from __future__ import annotations

from amaranth.hdl import (
    Cat,
    ClockSignal,
    Const,
    EnableInserter,
    Instance,
    Module,
    Mux,
    ResetSignal,
    Signal,
)
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .layouts import EngineShape
from .pe import ChunkDot, dot_stages

__all__ = ["SHARED_CELLS", "Cell", "CellInstance", "SharedCell", "SystolicArray", "cell_ports",
           "tag_layouts"]

OS, WS = 0, 1


def tag_layouts(shape: EngineShape, row_bits: int, ct_bits: int):
    """(activation tag, weight tag, partial-sum tag) layouts. With shadow weights
    (``shape.shadow``) the activation tag has a ``load`` bit: the wave token of the next
    tile's row-chain load, which rides on a tile's first row (the swap wave)."""
    slot_bits = max(1, (shape.acc_latency - 1).bit_length())
    fields = {"valid": 1, "first": 1, "last": 1, "slot": slot_bits, "lastslot": 1,
              "swap": 1, "row": row_bits, "ct": ct_bits}
    if shape.shadow:
        fields["load"] = 1
    atag = data.StructLayout(fields)
    wtag = data.StructLayout({"valid": 1})
    ptag = data.StructLayout({"valid": 1, "row": row_bits, "ct": ct_bits})
    return atag, wtag, ptag


def cell_ports(shape: EngineShape, row_bits: int, ct_bits: int) -> dict:
    """The members of a :class:`Cell`'s signature."""
    atag, wtag, ptag = tag_layouts(shape, row_bits, ct_bits)
    la = shape.acc_latency
    return {
        "df": In(1), "mode": In(shape.mode_bits), "ws_shift": In(1),
        "drain": In(1), "drain_slot": In(atag["slot"].shape),
        "act_in": In(shape.window_layout), "atag_in": In(atag),
        "w_in": In(shape.slots_layout), "wtag_in": In(wtag),
        "psum_in": In(32), "ptag_in": In(ptag),
        "shadow_in": In(data.ArrayLayout(32, la)), "init": In(32),
        "act_out": Out(shape.window_layout), "atag_out": Out(atag),
        "w_out": Out(shape.slots_layout), "wtag_out": Out(wtag),
        "psum_out": Out(32), "ptag_out": Out(ptag),
        "shadow_out": Out(data.ArrayLayout(32, la)),
        "rd_row": Out(row_bits), "rd_ct": Out(ct_bits)} | (
            # shadow weights: the row chain's shift input (left neighbour's shadow register,
            # or the chain head) and the chain's last load step
            {"sh_in": In(shape.slots_layout), "shv_in": In(1), "chain_end": In(1)}
            if shape.shadow else {})


class Cell(wiring.Component):
    """PE(i, j) of the array: a :class:`ChunkDot` plus the systolic registers of both
    dataflows. ``init`` is the OUT buffer word at (``rd_row``, ``rd_ct``) in this step
    (OS: the first chunk's start value; WS, row 0: the partial sum); the engine reads it
    synchronously, addressed one step ahead (:class:`SystolicArray` ``nx_row``/``nx_ct``)."""

    def __init__(self, shape: EngineShape, row: int, row_bits: int, ct_bits: int,
                 row_port: bool = False):
        self.shape, self.row, self.row_port = shape, row, row_port
        # ``row_port`` (rows >= 1 only): the row number is an input, so one module serves
        # every row below the first (:class:`SharedCell`).
        extra = {"row_in": In(row_bits)} if row_port else {}
        super().__init__(extra | cell_ports(shape, row_bits, ct_bits))

    def elaborate(self, platform) -> Module:
        m = Module()
        sh, la = self.shape, self.shape.acc_latency
        # la > 1: the chunk's multiplier and tree take the first La - 1 steps (registers
        # between them, rtl/pe.dot_stages), the accumulate add the last; the beat's start
        # value and controls wait those steps beside it
        m.submodules.dot = dot = ChunkDot(sh, dot_stages(sh.lanes, la - 1))
        wact = Signal(sh.slots_layout)  # WS: stationary weights and their valid bit
        wact_v = Signal()
        pipe = [Signal(32, name=f"acc{s}") for s in range(la)]
        ptag = [Signal(self.ptag_out.shape(), name=f"ptag{s}") for s in range(la)]
        done = [Signal(self.atag_in.shape(), name=f"done{s}") for s in range(la)]
        ws = self.df == WS
        at = self.atag_in
        swap = ws & at.valid & at.swap  # the tile's first row uses the new weights already
        w_now, wv_now = Mux(swap, self.w_out, wact), Mux(swap, self.wtag_out.valid, wact_v)
        m.d.comb += [dot.act.eq(self.act_in), dot.mode.eq(self.mode),
                     dot.w.eq(Mux(ws, w_now, self.w_in))]
        m.d.sync += [self.act_out.eq(self.act_in), self.atag_out.eq(at)]
        # ---- vertical weight link: OS streams slots, WS shifts the shadow chain on loads
        if sh.shadow:
            # ---- shadow weights: the register (w_out) shifts along the row chain from the
            # step the load wave token reaches this cell (the swap wave of the tile before,
            # which reads the register in the same step) to the chain's last load step
            wave = Signal()
            shifting = ws & (at.load | wave)
            m.d.sync += wave.eq(shifting & ~self.chain_end)
        with m.If(~ws | self.ws_shift):
            m.d.sync += [self.w_out.eq(self.w_in), self.wtag_out.eq(self.wtag_in)]
        if sh.shadow:
            with m.Elif(shifting):
                m.d.sync += [self.w_out.eq(self.sh_in), self.wtag_out.valid.eq(self.shv_in)]
        with m.If(swap):
            m.d.sync += [wact.eq(self.w_out), wact_v.eq(self.wtag_out.valid)]
        # ---- accumulate / partial-sum pipeline (La stages)
        if self.row == 0:  # WS: the column's partial sum starts from the OUT buffer
            psum_in = self.init
            ptag_in = Signal(self.ptag_in.shape())
            m.d.comb += [ptag_in.valid.eq(at.valid), ptag_in.row.eq(at.row),
                         ptag_in.ct.eq(at.ct)]
        else:
            psum_in, ptag_in = self.psum_in, self.ptag_in
        issue = at.valid & Mux(ws, 1, self.wtag_in.valid)
        # the add stage, la - 1 steps after the beat: its start value (WS: the partial sum
        # from above; OS: the OUT word of a first chunk) and controls, delayed that far
        src, ctl = Mux(ws, psum_in, self.init), Cat(at.first, ws, wv_now)
        for s in range(la - 1):
            src_r, ctl_r = Signal(32, name=f"start{s}"), Signal(3, name=f"ctl{s}")
            m.d.sync += [src_r.eq(src), ctl_r.eq(ctl)]
            src, ctl = src_r, ctl_r
        first_d, ws_d, wv_d = ctl[0], ctl[1], ctl[2]
        add = sh.numeric.add(m, Mux(ws_d | first_d, src, pipe[la - 1]), dot.sum)
        m.d.sync += [pipe[0].eq(Mux(ws_d & ~wv_d, src, add)),
                     ptag[0].eq(ptag_in), done[0].eq(at)]
        with m.If(~issue | ~ws):
            m.d.sync += ptag[0].valid.eq(0)
        with m.If(~issue | ws | ~at.last):
            m.d.sync += done[0].valid.eq(0)
        for s in range(1, la):
            m.d.sync += [pipe[s].eq(pipe[s - 1]), ptag[s].eq(ptag[s - 1]),
                         done[s].eq(done[s - 1])]
        # the sum leaves La steps after its beat came in (WS: to the cell below); the
        # registers after pipe[0] close the OS accumulate loop (a slot issues every La)
        m.d.comb += [self.psum_out.eq(pipe[0]), self.ptag_out.eq(ptag[la - 1])]
        # ---- OS shadow registers: capture finished sums, drain one slot down the column
        # The sum is in its shadow register in the step after its last add (La steps after
        # issue), so it is captured from the add stage, the beat's tag from the tag chain.
        if la == 1:
            fin = Signal.like(at)
            m.d.comb += fin.eq(at)
            fin_ok = issue & ~ws & at.last
        else:
            fin, fin_ok = done[la - 2], done[la - 2].valid
        val = add
        for b in range(la):
            with m.If(self.drain & (self.drain_slot == b)):
                m.d.sync += self.shadow_out[b].eq(self.shadow_in[b])
            with m.If(fin_ok & (fin.slot == b)):
                m.d.sync += self.shadow_out[b].eq(val)
        row = self.row_in if self.row_port else self.row
        m.d.comb += [self.rd_row.eq(at.row + Mux(ws, 0, row)), self.rd_ct.eq(at.ct)]
        return m


def _cell_members(cell: wiring.Component):
    return [(path[0], member.flow, value)
            for path, member, value in cell.signature.flatten(cell)]


SHARED_CELLS = ("nmsat_pe_row0", "nmsat_pe_rowN")
"""Module names of the two shared cell modules (first row; every other row)."""


class SharedCell(wiring.Component):
    """A :class:`Cell` as a stand-alone module with its clock enable as a port: the first
    row's cell (``row == 0``) or the cell of every other row (row number as ``row_in``).

    The hierarchical engine (``TensorEngine(..., shared_cells=True)``) instantiates these
    two modules R x C times instead of R x C distinct copies, which is what lets Yosys
    synthesise the whole design in one run of each cell module."""

    def __init__(self, shape: EngineShape, first_row: bool, row_bits: int, ct_bits: int):
        self._cell = Cell(shape, 0 if first_row else 1, row_bits, ct_bits,
                          row_port=not first_row)
        super().__init__({"en": In(1)} | dict(self._cell.signature.members.items()))

    def elaborate(self, platform) -> Module:
        m = Module()
        m.submodules.cell = EnableInserter(self.en)(self._cell)
        for name, flow, value in _cell_members(self._cell):
            mine = getattr(self, name)
            m.d.comb += value.eq(mine) if flow is In else mine.eq(value)
        return m


class CellInstance(wiring.Component):
    """Stands in for a :class:`Cell` of row ``row``: an instance of the shared module
    (:data:`SHARED_CELLS`), clocked with the engine's enable ``en``."""

    def __init__(self, shape: EngineShape, row: int, row_bits: int, ct_bits: int, en):
        self.row, self.row_bits, self.en = row, row_bits, en
        super().__init__(cell_ports(shape, row_bits, ct_bits))

    def elaborate(self, platform) -> Module:
        m = Module()
        ports = {"i_clk": ClockSignal(), "i_rst": ResetSignal(), "i_en": self.en}
        if self.row:
            ports["i_row_in"] = Const(self.row, self.row_bits)
        for name, flow, v in _cell_members(self):
            v = v.as_value() if hasattr(v, "as_value") else v
            ports[("i_" if flow is In else "o_") + name] = v
        m.submodules.cell = Instance(SHARED_CELLS[1 if self.row else 0], **ports)
        return m


def _delay(m: Module, value, depth_os: int, depth_ws: int, ws, name: str, nxt=None):
    """``value`` delayed by ``depth_os`` (OS) or ``depth_ws`` (WS) steps (registers). With
    ``nxt`` (the next step's ``value``) also returns the delayed value's next step: the
    tap before it (a register loads its input at the next enabled edge)."""
    depth = max(depth_os, depth_ws)
    taps = [value]
    for d in range(depth):
        r = Signal.like(value, name=f"{name}_d{d + 1}")
        m.d.sync += r.eq(taps[-1])
        taps.append(r)
    cur = Mux(ws, taps[depth_ws], taps[depth_os])
    if nxt is None:
        return cur
    before = [nxt] + taps
    return cur, Mux(ws, before[depth_ws], before[depth_os])


class SystolicArray(wiring.Component):
    """R x C :class:`Cell` grid with the edge skew lines of both dataflows.

    Inputs are unskewed *beats*: R activation windows with one tag, C weight-slot vectors
    with one tag. Row i's windows are delayed i steps (OS) or i La steps (WS); column j's
    weights j steps (OS) or not at all (WS loads shift all columns together). Outputs are
    the bottom edge: partial sums with their tags (WS) and the bottom shadow registers
    (OS drain). ``rd_row``/``rd_ct`` are the OUT word of each cell's ``init`` in this step,
    ``nx_row``/``nx_ct`` the one of the next step (the OUT buffer reads synchronously, so
    the engine addresses it one step ahead); ``nrow``/``nct`` are the next beat's tag
    row and column tile (the beat's are ``atag``).
    """

    def __init__(self, shape: EngineShape, row_bits: int, ct_bits: int,
                 shared_en: Signal | None = None, dim: int = 24, addr_bits: int = 1):
        # shared_en: the engine's clock enable; the cells become instances of the two
        # shared cell modules (:class:`CellInstance`), clocked with it. dim, addr_bits:
        # widths of the block parameters and of a WGT word address (shadow weights only).
        self.shape, self.row_bits, self.ct_bits = shape, row_bits, ct_bits
        self.shared_en = shared_en
        atag, wtag, ptag = tag_layouts(shape, row_bits, ct_bits)
        R, C, la = shape.rows, shape.cols, shape.acc_latency
        grid = lambda lay: data.ArrayLayout(data.ArrayLayout(lay, C), R)
        nch = R * shape.chains
        chains = {"wsh_reset": In(1), "kc": In(dim), "kcr": In(dim), "nt": In(dim),
                  "wsh_addr": Out(data.ArrayLayout(addr_bits, nch)),
                  "wsh_data": In(data.ArrayLayout(
                      data.ArrayLayout(shape.slots_layout, shape.chain_cols), nch)),
                  "load_feed": Out(1)} if shape.shadow else {}
        self.dim = dim
        super().__init__(chains | {
            "df": In(1), "mode": In(shape.mode_bits), "ws_shift": In(1),
            "drain": In(1), "drain_slot": In(atag["slot"].shape),
            "act": In(shape.act_row_layout), "atag": In(atag),
            "nrow": In(row_bits), "nct": In(ct_bits),
            "wgt": In(shape.wgt_row_layout), "wtag": In(wtag),
            "psum": Out(shape.acc_row_layout), "ptag": Out(data.ArrayLayout(ptag, C)),
            "shadow": Out(data.ArrayLayout(data.ArrayLayout(32, la), C)),
            "rd_row": Out(grid(row_bits)), "rd_ct": Out(grid(ct_bits)),
            "nx_row": Out(grid(row_bits)), "nx_ct": Out(grid(ct_bits)), "init": In(grid(32))})

    def elaborate(self, platform) -> Module:
        m = Module()
        sh = self.shape
        R, C, la = sh.rows, sh.cols, sh.acc_latency
        ws = self.df == WS
        if self.shared_en is None:
            cells = [[Cell(sh, i, self.row_bits, self.ct_bits) for j in range(C)]
                     for i in range(R)]
        else:
            cells = [[CellInstance(sh, i, self.row_bits, self.ct_bits, self.shared_en)
                      for j in range(C)] for i in range(R)]
        atag_l = self.atag.shape()
        beat_nx = Signal(atag_l)  # the next beat's tag: only row and ct are used
        m.d.comb += [beat_nx.row.eq(self.nrow), beat_nx.ct.eq(self.nct)]
        for i in range(R):
            act = _delay(m, self.act[i], i, i * la, ws, f"act{i}")
            atag, atag_nx = _delay(m, self.atag.as_value(), i, i * la, ws, f"atag{i}",
                                   nxt=beat_nx.as_value())
            for j in range(C):
                c = cells[i][j]
                m.submodules[f"pe_{i}_{j}"] = c
                # next step's tag here: the left neighbour's now, or the delay line's
                nx = data.View(atag_l, cells[i][j - 1].atag_in.as_value() if j else atag_nx)
                m.d.comb += [self.nx_row[i][j].eq(nx.row + Mux(ws, 0, i)),
                             self.nx_ct[i][j].eq(nx.ct)]
                m.d.comb += [c.df.eq(self.df), c.mode.eq(self.mode),
                             c.ws_shift.eq(self.ws_shift), c.drain.eq(self.drain),
                             c.drain_slot.eq(self.drain_slot), c.init.eq(self.init[i][j]),
                             self.rd_row[i][j].eq(c.rd_row), self.rd_ct[i][j].eq(c.rd_ct)]
                left = cells[i][j - 1] if j else None
                m.d.comb += [c.act_in.eq(left.act_out if left else act),
                             c.atag_in.eq(left.atag_out if left else atag)]
                if i:
                    up = cells[i - 1][j]
                    m.d.comb += [c.w_in.eq(up.w_out), c.wtag_in.eq(up.wtag_out),
                                 c.psum_in.eq(up.psum_out), c.ptag_in.eq(up.ptag_out),
                                 c.shadow_in.eq(up.shadow_out)]
                else:
                    m.d.comb += [c.w_in.eq(_delay(m, self.wgt[j], j, 0, ws, f"w{j}")),
                                 c.wtag_in.eq(_delay(m, self.wtag.as_value(), j, 0, ws,
                                                     f"wtag{j}"))]
        for j in range(C):
            b = cells[R - 1][j]
            m.d.comb += [self.psum[j].eq(b.psum_out), self.ptag[j].eq(b.ptag_out),
                         self.shadow[j].eq(b.shadow_out)]
        if sh.shadow:
            self._chains(m, cells)
        return m

    def _chains(self, m: Module, cells) -> None:
        """Shadow weights (docs/architecture.md 4.2): per PE row ``chains`` load chains of
        Cs cells. A chain starts when the load wave token reaches its first cell; in its
        x-th step (x < Cs) its head cell takes lane Cs - 1 - x of the chain's WGT word
        (bank (i, s), read one step ahead at ``wsh_addr``) and the cells the token has
        passed shift right. The chain's tiles come in the schedule's order (K-tile outer,
        column tile inner), counted from ``wsh_reset`` (the COMPUTE's accept cycle).
        ``load_feed``: a load token is in some PE row (its feed window,
        ``timing.ws_stream_windows``)."""
        sh = self.shape
        R, C, cs, dim = sh.rows, sh.cols, sh.chain_cols, self.dim
        m.d.comb += self.load_feed.eq(
            Cat(*(cells[i][j].atag_in.load for i in range(R) for j in range(C))).any())
        for i in range(R):
            for s in range(sh.chains):
                s0, b = s * cs, i * sh.chains + s
                tok = cells[i][s0].atag_in.load
                on, x = Signal(name=f"ch{i}_{s}_on"), Signal(range(cs), name=f"ch{i}_{s}_x")
                ct, kt = Signal(dim, name=f"ch{i}_{s}_ct"), Signal(dim, name=f"ch{i}_{s}_kt")
                addr = Signal.like(self.wsh_addr[b], name=f"ch{i}_{s}_addr")  # ct kcr + kt
                act = tok | on
                x_now = Mux(tok, 0, x)
                end = act & (x_now == cs - 1)
                m.d.sync += [on.eq(act & ~end), x.eq(Mux(act & ~end, x_now + 1, 0))]
                wrap = ct + 1 >= self.nt
                ct_nx = Mux(self.wsh_reset, 0, Mux(end, Mux(wrap, 0, ct + 1), ct))
                kt_nx = Mux(self.wsh_reset, 0, Mux(end, kt + wrap, kt))
                addr_nx = Mux(self.wsh_reset, 0,
                              Mux(end, Mux(wrap, kt + 1, addr + self.kcr), addr))
                m.d.sync += [ct.eq(ct_nx), kt.eq(kt_nx), addr.eq(addr_nx)]
                m.d.comb += self.wsh_addr[b].eq(addr_nx)
                word = self.wsh_data[b]
                lanes = [word[cs - 1 - v] for v in range(cs)]
                head = lanes[0]
                for v in range(1, cs):
                    head = Mux(x_now == v, lanes[v], head)
                for j in range(s0, min(C, s0 + cs)):
                    c = cells[i][j]
                    m.d.comb += c.chain_end.eq(end)
                    if j == s0:
                        m.d.comb += [c.sh_in.eq(head), c.shv_in.eq(kt * R + i < self.kc)]
                    else:
                        left = cells[i][j - 1]
                        m.d.comb += [c.sh_in.eq(left.w_out), c.shv_in.eq(left.wtag_out.valid)]
