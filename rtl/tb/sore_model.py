"""Host side of the SORE: lay a view's groups onto lanes, and the expected output."""

from __future__ import annotations

import numpy as np

from nmsat import reference as ref
from nmsat.arith import ceil_div
from nmsat.types import NM, DType

from ..fp import Numeric


def view_groups(w: np.ndarray, nm: NM | str, axis: int) -> np.ndarray:
    """Groups of M along ``axis`` of a 2-D ``w`` as ``[groups, M]`` operand bit patterns,
    in (other index, group) order; a trailing partial group is padded with +0 (padding
    never wins a strict comparison, so the kept set and the padding slots equal
    ``reference.compress``)."""
    nm = NM.parse(nm)
    moved = np.moveaxis(np.asarray(w), axis, -1)
    length = moved.shape[-1]
    g = ceil_div(length, nm.m)
    pad = np.zeros(moved.shape[:-1] + (g * nm.m,), moved.dtype)
    pad[..., :length] = moved
    return pad.reshape(-1, nm.m)


def expected_groups(w: np.ndarray, nm: NM | str, axis: int, dtype: DType) -> tuple:
    """(values bits [groups, N], indices [groups, N]) from ``reference.compress``."""
    nm = NM.parse(nm)
    c = ref.compress(w, nm, axis=axis)
    vals = np.moveaxis(c.values, axis, -1).reshape(-1, nm.n)
    idx = np.moveaxis(c.indices, axis, -1).reshape(-1, nm.n)
    return Numeric(dtype).to_bits(vals), idx.astype(np.int64)


def beats(groups_bits: np.ndarray, lanes: int) -> list[list[list[int]]]:
    """Per beat-block (lanes groups), per position p in 0..M-1, the lanes' words."""
    out = []
    for b in range(0, len(groups_bits), lanes):
        blk = groups_bits[b:b + lanes]
        blk = np.concatenate([blk, np.zeros((lanes - len(blk), blk.shape[1]), blk.dtype)])
        out.append([[int(x) for x in blk[:, p]] for p in range(blk.shape[1])])
    return out
