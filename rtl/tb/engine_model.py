"""Host side of the tensor engine: the DMA model that lays tiles into the buffers, the
instruction words, and the expected results/cycles. Shared by the Amaranth-simulator
tests, the cocotb testbenches, the benchmark and ``nmsat rtl run``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from amaranth.hdl import Shape

from nmsat.arith import ceil_div
from nmsat.dataflow import isa
from nmsat.dataflow.timing import Geometry, WSStream, ws_row_lag, ws_skip_stream
from nmsat.reference import skip_row_lists
from nmsat.types import NM, Dataflow

from ..layouts import EngineShape, act_location, wgt_location, wgt_shadow_location
from .tiles import Tile


def word(ins: isa.Instr) -> int:
    """An instruction as the integer the ``cmd`` stream carries."""
    return int.from_bytes(isa.encode(ins), "little")


def compute(dataflow: Dataflow | str, nm: NM | str, m: int, n: int, k: int,
            interleave: bool) -> isa.Compute:
    return isa.Compute(Dataflow.parse(dataflow), NM.parse(nm), m, n, k, interleave=interleave)


def store(rows: int, cols: int) -> isa.Store:
    return isa.Store(tensor=0, row0=0, col0=0, rows=rows, cols=cols, bytes=rows * cols * 4)


@dataclass(frozen=True)
class LoadBeat:
    """One beat of a load stream: ``words[b]`` goes into bank b at ``addr``; None leaves
    bank b alone (its ``en`` bit is clear)."""

    addr: int
    words: tuple[int | None, ...]

    def pack(self, layout) -> int:
        """The beat as a payload of ``layout`` (``engine.load_layout``)."""
        bits = Shape.cast(layout["data"].shape.elem_shape).width
        on = [(b, w) for b, w in enumerate(self.words) if w is not None]
        return pack_fields(layout, addr=self.addr, data=sum(w << (bits * b) for b, w in on),
                           en=sum(1 << b for b, _ in on))


@dataclass(frozen=True)
class LoadWords:
    """The beats of the ACT and WGT load streams, and the row-list writes
    (``rowlist_load`` payload fields) of a WS block under skip."""

    act: list[LoadBeat]
    wgt: list[LoadBeat]
    rows: list[dict[str, int]]


def load_beats(words, banks: int) -> list[LoadBeat]:
    """Group (bank, address, word) writes into beats, one per address in order of first
    use: the layouts put a beat's words at one address in distinct banks (ACT: the R
    chunks of one row and K-tile; WGT: the C columns of one column tile and chunk)."""
    beats: dict[int, list[int | None]] = {}
    for bank, addr, w in words:
        beat = beats.setdefault(addr, [None] * banks)
        if beat[bank] is not None:
            raise ValueError(f"two words for bank {bank} at address {addr}")
        beat[bank] = w
    return [LoadBeat(a, tuple(ws)) for a, ws in beats.items()]


def load_words(shape: EngineShape, tile: Tile) -> LoadWords:
    """The DMA model: a tile's ACT windows and WGT slot vectors at their buffer locations,
    as load-stream beats."""
    R, C = shape.rows, shape.cols
    m_rows, kc, _ = tile.act.shape
    kcr = ceil_div(kc, R)
    act = [(*act_location(r, c, kcr, R), shape.pack_window(tile.act[r, c]))
           for r in range(m_rows) for c in range(kc)]
    if shape.shadow:
        wgt_beats = shadow_wgt_beats(shape, tile)
    else:
        wgt = [(*wgt_location(n, c, kc, C),
                shape.pack_slots(tile.w_value[n, c], tile.w_index[n, c]))
               for n in range(tile.w_value.shape[0]) for c in range(kc)]
        wgt_beats = load_beats(wgt, C)
    return LoadWords(load_beats(act, R), wgt_beats,
                     rowlist_words(shape, tile) if tile.skip_rows else [])


def shadow_wgt_beats(shape: EngineShape, tile: Tile) -> list[LoadBeat]:
    """WGT beats of an engine with shadow weights: per (column tile, K-tile) word address
    (:func:`~nmsat.rtl.layouts.wgt_shadow_location`) Cs beats, beat x writing lane x of
    every bank, R x chains slot vectors (word (i, j) of a beat = array row i, column j);
    slots past the K range or the columns are left alone, so a beat may write nothing
    (the DMA still moves it: ``machine.port_beats``)."""
    R, C = shape.rows, shape.cols
    n_cols, kc, _ = tile.w_value.shape
    kcr, nt, cs = ceil_div(kc, R), ceil_div(n_cols, C), shape.chain_cols
    words: dict[tuple[int, int], list[int | None]] = {}
    for n in range(n_cols):
        for c in range(kc):
            bank, addr, lane = wgt_shadow_location(n, c, kcr, R, C, shape.chains)
            i, s = divmod(bank, shape.chains)
            beat = words.setdefault((addr, lane), [None] * (R * C))
            beat[i * C + s * cs + lane] = shape.pack_slots(tile.w_value[n, c],
                                                           tile.w_index[n, c])
    return [LoadBeat(ct * kcr + kt, tuple(words.get((ct * kcr + kt, x), [None] * (R * C))))
            for ct in range(nt) for kt in range(kcr) for x in range(cs)]


def rowlist_words(shape: EngineShape, tile: Tile) -> list[dict[str, int]]:
    """The row lists of a WS block under ``act_zero = skip`` as ``rowlist_load`` writes
    (:mod:`nmsat.rtl.rowlist`): the DMA's zero-detector sees the activations it writes,
    so it knows which rows of each K-tile hold a nonzero one
    (:func:`nmsat.reference.skip_row_lists`). Per K-tile kt: the table word (count, lag)
    at kt, then list entry j at ``j * kcr + kt``."""
    lists = skip_row_lists(tile.a, shape.lanes, shape.window, tile.nm, shape.rows)
    kcr = len(lists)
    words = []
    for kt, rows in enumerate(lists):
        lag = ws_row_lag(lists[kt - 1], rows) if kt else 0
        words.append({"table": 1, "addr": kt, "count": len(rows), "lag": lag})
        words += [{"table": 0, "addr": j * kcr + kt, "row": int(r)} for j, r in enumerate(rows)]
    return words


def geometry(shape: EngineShape) -> Geometry:
    return Geometry(shape.rows, shape.cols, shape.lanes, shape.window, shape.acc_latency)


def ws_stream(shape: EngineShape, tile: Tile) -> WSStream | None:
    """The tile's per-tile WS stream (``timing.block_cycles(..., stream=)``) when it
    runs with skip, else None."""
    if not tile.skip_rows:
        return None
    return ws_skip_stream(tile.a, tile.expected.shape[1], tile.nm, geometry(shape))


def store_beats(shape: EngineShape, rows: int, cols: int) -> int:
    """Beats of a STORE of ``rows`` x ``cols``: one per (row block, column tile)."""
    return ceil_div(rows, shape.rows) * ceil_div(cols, shape.cols)


def unpack_store(shape: EngineShape, beats: list[int], rows: int, cols: int) -> np.ndarray:
    """STORE beats (R x C words each, by row block, column tiles inside) -> [rows, cols]
    uint32 words; the rows of a last row block beyond ``rows`` are dropped."""
    R, C = shape.rows, shape.cols
    nt = ceil_div(cols, C)
    if len(beats) != store_beats(shape, rows, cols):
        raise ValueError(f"{len(beats)} store beats for {rows} x {cols}, not "
                         f"{store_beats(shape, rows, cols)}")
    out = np.zeros((ceil_div(rows, R) * R, nt * C), np.uint64)
    for n, b in enumerate(beats):
        rb, t = divmod(n, nt)
        for i in range(R):
            for j in range(C):
                out[rb * R + i, t * C + j] = (b >> (32 * (i * C + j))) & 0xFFFFFFFF
    return out[:rows, :cols]


__all__ = ["LoadBeat", "LoadWords", "compute", "load_beats", "load_words", "pack_fields",
           "rowlist_words", "shadow_wgt_beats", "store", "store_beats", "unpack_store", "word",
           "ws_stream"]


def pack_fields(layout, **fields: int) -> int:
    """Pack integer field values into a word of an ``amaranth.lib.data`` struct layout."""
    v = 0
    for name, x in fields.items():
        f = layout[name]
        v |= (int(x) & ((1 << f.width) - 1)) << f.offset
    return v
