"""Packed payloads of the engine, defined once and reused by the RTL and the testbenches.

:class:`EngineShape` carries the hardware parameters the layouts depend on (from
``nmsat.config.AcceleratorConfig``); every layout is a method so a test packs and unpacks
with exactly the layout the RTL uses.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from amaranth.lib import data

from nmsat.arith import ceil_div
from nmsat.config import AcceleratorConfig
from nmsat.types import NM, DType

from .fp import Numeric


@dataclass(frozen=True)
class EngineShape:
    """Array geometry, PE parameters and operand type of one engine build."""

    rows: int
    cols: int
    lanes: int  # P, multipliers per PE
    window: int  # A, activation window
    acc_latency: int  # La
    patterns: tuple[NM, ...]  # N:M patterns besides dense; mode code = 1 + position
    dtype: DType
    # Shadow load chains per PE row (``array.weight_load_ports`` capped at C) when
    # ``array.shadow_weights`` is on, else 0 (docs/architecture.md 4.2, docs/rtl.md).
    chains: int = 0

    @classmethod
    def from_config(cls, cfg: AcceleratorConfig, dtype: DType | str | None = None) -> EngineShape:
        a = cfg.array
        return cls(a.rows, a.cols, a.macs_per_pe, a.act_window, a.acc_latency, a.patterns,
                   DType.parse(dtype or cfg.numerics.dtype),
                   min(a.weight_load_ports, a.cols) if a.shadow_weights else 0)

    @property
    def shadow(self) -> bool:
        """Built with the shadow-weight preload (``array.shadow_weights``)."""
        return self.chains > 0

    @property
    def chain_cols(self) -> int:
        """Cs = ceil(C / chains): columns of one shadow load chain (C without the preload)."""
        return ceil_div(self.cols, self.chains) if self.chains else self.cols

    @property
    def numeric(self) -> Numeric:
        return Numeric(self.dtype)

    @property
    def index_bits(self) -> int:
        """Bits of a compressed index: ceil(log2 M) for the largest supported M (at least 1)."""
        return max([1] + [p.index_bits for p in self.patterns])

    @property
    def mode_bits(self) -> int:
        return max(1, len(self.patterns).bit_length())

    def mode_code(self, nm: NM | str) -> int:
        """The PE ``mode`` input for a pattern: 0 = dense, 1 + i = ``patterns[i]``."""
        nm = NM.parse(nm)
        if nm.dense:
            return 0
        if nm not in self.patterns:
            raise ValueError(f"N:M pattern {nm} is not supported by this engine "
                             f"({', '.join(map(str, self.patterns))})")
        return 1 + self.patterns.index(nm)

    # ---- layouts
    @property
    def window_layout(self) -> data.ArrayLayout:
        return data.ArrayLayout(self.numeric.width, self.window)

    @property
    def slot_layout(self) -> data.StructLayout:
        return data.StructLayout({"value": self.numeric.width, "index": self.index_bits})

    @property
    def slots_layout(self) -> data.ArrayLayout:
        return data.ArrayLayout(self.slot_layout, self.lanes)

    @property
    def chunk_layout(self) -> data.StructLayout:
        """One PE step: activation window, weight slots, and first/last of the dot product."""
        return data.StructLayout({"act": self.window_layout, "w": self.slots_layout,
                                  "first": 1, "last": 1})

    @property
    def act_row_layout(self) -> data.ArrayLayout:
        """Left edge of the array: one activation window per array row."""
        return data.ArrayLayout(self.window_layout, self.rows)

    @property
    def wgt_row_layout(self) -> data.ArrayLayout:
        """Top edge of the array: one weight-slot vector per array column."""
        return data.ArrayLayout(self.slots_layout, self.cols)

    @property
    def acc_row_layout(self) -> data.ArrayLayout:
        """Bottom edge: one accumulator word per column."""
        return data.ArrayLayout(32, self.cols)

    @property
    def acc_block_layout(self) -> data.ArrayLayout:
        """A store beat: the R x C OUT words of one (row block, column tile), by row."""
        return data.ArrayLayout(self.acc_row_layout, self.rows)

    # ---- host-side packing (drivers)
    def pack_window(self, bits: np.ndarray) -> int:
        w = self.numeric.width
        return sum(int(b) << (w * i) for i, b in enumerate(bits))

    def pack_slots(self, values: np.ndarray, index: np.ndarray) -> int:
        w = self.numeric.width + self.index_bits
        return sum((int(v) | int(ix) << self.numeric.width) << (w * i)
                   for i, (v, ix) in enumerate(zip(values, index)))


__all__ = ["EngineShape", "act_location", "out_location", "wgt_location",
           "wgt_shadow_location"]


# ---- buffer layouts: where the host (DMA model) puts each word; the RTL reads the same.

def act_location(row: int, chunk: int, kcr: int, rows: int) -> tuple[int, int]:
    """ACT window (row, chunk) -> (bank, address): diagonal banking ``(row + chunk) mod R``
    so OS (R rows, one chunk) and WS (one row, R chunks) both read R distinct banks."""
    return (row + chunk) % rows, row * kcr + chunk // rows


def wgt_location(col: int, chunk: int, kc: int, cols: int) -> tuple[int, int]:
    """WGT slot vector (column, chunk) -> (bank = column mod C, address)."""
    return col % cols, (col // cols) * kc + chunk


def wgt_shadow_location(col: int, chunk: int, kcr: int, rows: int, cols: int,
                        chains: int) -> tuple[int, int, int]:
    """With shadow weights: WGT slot vector (column, chunk) -> (bank, word address, lane).
    Bank (i, s) = ``i * chains + s`` holds the chunks c = i mod R of the columns of load
    chain s, one word of Cs = ``cols / chains`` slot vectors per (column tile, K-tile) at
    ``(col // C) * kcr + chunk // R``; lane x of a word is column ``s Cs + x`` of the tile."""
    j = col % cols
    cs = cols // chains
    return (chunk % rows) * chains + j // cs, (col // cols) * kcr + chunk // rows, j % cs


def out_location(row: int, col: int, nt: int, rows: int, cols: int) -> tuple[int, int, int]:
    """OUT word (row, column) -> (bank row, bank column, address)."""
    return row % rows, col % cols, (row // rows) * nt + col // cols
