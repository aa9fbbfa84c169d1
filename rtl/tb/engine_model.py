"""Host side of the tensor engine: the DMA model that lays tiles into the buffers, the
instruction words, and the expected results/cycles. Shared by the Amaranth-simulator
tests, the cocotb testbenches, the benchmark and ``nmsat rtl run``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from nmsat.dataflow import isa

from nmsat.types import NM, Dataflow

from ..layouts import EngineShape, act_location, out_location, wgt_location
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
class LoadWords:
    """(bank, address, packed word) writes for the ACT and WGT load streams."""

    act: list[tuple[int, int, int]]
    wgt: list[tuple[int, int, int]]


def load_words(shape: EngineShape, tile: Tile) -> LoadWords:
    R, C = shape.rows, shape.cols
    m_rows, kc, _ = tile.act.shape
    kcr = -(-kc // R)
    act = []
    for r in range(m_rows):
        for c in range(kc):
            bank, addr = act_location(r, c, kcr, R)
            act.append((bank, addr, shape.pack_window(tile.act[r, c])))
    wgt = []
    for n in range(tile.w_value.shape[0]):
        for c in range(kc):
            bank, addr = wgt_location(n, c, kc, C)
            wgt.append((bank, addr, shape.pack_slots(tile.w_value[n, c], tile.w_index[n, c])))
    return LoadWords(act, wgt)


def unpack_store(shape: EngineShape, beats: list[int], rows: int, cols: int) -> np.ndarray:
    """STORE beats (C words each, row-major by column tile) -> [rows, cols] uint32 words."""
    C = shape.cols
    nt = -(-cols // C)
    out = np.zeros((rows, nt * C), np.uint64)
    for i, b in enumerate(beats):
        r, t = divmod(i, nt)
        for j in range(C):
            out[r, t * C + j] = (b >> (32 * j)) & 0xFFFFFFFF
    return out[:, :cols]


def out_words_needed(shape: EngineShape, m: int, n: int) -> int:
    nt = -(-n // shape.cols)
    _, _, addr = out_location(m - 1, n - 1, nt, shape.rows, shape.cols)
    return addr + 1


__all__ = ["LoadWords", "compute", "load_words", "pack_fields", "store", "unpack_store", "word"]


def pack_fields(layout, **fields: int) -> int:
    """Pack integer field values into a word of an ``amaranth.lib.data`` struct layout."""
    v = 0
    for name, x in fields.items():
        f = layout[name]
        v |= (int(x) & ((1 << f.width) - 1)) << f.offset
    return v
