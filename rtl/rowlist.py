"""Row lists of ``act_zero = skip`` (docs/architecture.md 3.3): per K-tile, the activation
rows a WS block streams.

The load side (the DMA, whose zero-detector sees every activation it writes into ACT)
writes, for each K-tile kt of a WS block, a table word (the row count m_kt and the lag of
the K-tile, see :class:`nmsat.dataflow.timing.WSStream`) at address kt, and the kept
row indices, in increasing order, into the list at addresses ``j * kcr + kt`` (the ACT
layout's row-major order, so a block whose ACT fits fits here). Both are small
register files with asynchronous reads, so the WS schedule looks up the next step's row
and addresses ACT one step ahead as it does without skipping. Built only for configs
with ``array.act_zero = skip``.
"""

from __future__ import annotations

from amaranth.hdl import Module
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["RowLists", "rowlist_load_layout", "rowlist_lookup"]


def rowlist_load_layout(depth: int) -> data.StructLayout:
    """Payload of the row-list load stream: ``table`` = 1 writes (count, lag) of K-tile
    ``addr``; 0 writes list entry ``addr`` = ``row``."""
    return data.StructLayout({"table": 1, "addr": range(depth), "row": range(depth),
                              "count": range(depth + 1), "lag": range(depth)})


def rowlist_lookup(depth: int) -> dict:
    """The WS schedule's side of the lookups: two list reads (this step's and the next
    step's row), the current tile's count, and the next K-tile's lag."""
    return {"now_addr": Out(range(depth)), "now_row": In(range(depth)),
            "nx_addr": Out(range(depth)), "nx_row": In(range(depth)),
            "cnt_addr": Out(range(depth)), "cnt": In(range(depth + 1)),
            "lag_addr": Out(range(depth)), "lag": In(range(depth))}


class RowLists(wiring.Component):
    """The list and the K-tile table, written by ``load``, read by ``lookup``."""

    def __init__(self, depth: int):
        self.depth = depth
        super().__init__({"load": In(stream.Signature(rowlist_load_layout(depth))),
                          "lookup": In(wiring.Signature(rowlist_lookup(depth)))})

    def elaborate(self, platform) -> Module:
        m = Module()
        d, lk, ld = self.depth, self.lookup, self.load
        rows = memory.Memory(shape=range(d), depth=d, init=[])
        table = memory.Memory(shape=data.StructLayout({"count": range(d + 1), "lag": range(d)}),
                              depth=d, init=[])
        m.submodules.rows, m.submodules.table = rows, table
        rw, tw = rows.write_port(), table.write_port()
        m.d.comb += [ld.ready.eq(1), rw.addr.eq(ld.payload.addr), rw.data.eq(ld.payload.row),
                     rw.en.eq(ld.valid & ~ld.payload.table), tw.addr.eq(ld.payload.addr),
                     tw.data.count.eq(ld.payload.count), tw.data.lag.eq(ld.payload.lag),
                     tw.en.eq(ld.valid & ld.payload.table)]
        for addr, out in ((lk.now_addr, lk.now_row), (lk.nx_addr, lk.nx_row)):
            rp = rows.read_port(domain="comb")
            m.d.comb += [rp.addr.eq(addr), out.eq(rp.data)]
        for addr, out in ((lk.cnt_addr, lk.cnt), (lk.lag_addr, lk.lag)):
            rp = table.read_port(domain="comb")
            field = "count" if out is lk.cnt else "lag"
            m.d.comb += [rp.addr.eq(addr), out.eq(getattr(rp.data, field))]
        return m
