"""Random GEMM tiles and their chunk encoding: the stimulus and reference side of the tests.

:func:`encode` lays ``A[M, K]`` and ``B[K, N]`` out as the engine consumes them
(docs/architecture.md section 3.1): per row m and chunk c an activation window of A
operand words, per column n and chunk c P weight slots (value, compressed index). The
weight selection and the expected result come from ``nmsat.reference`` only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nmsat import reference as ref
from nmsat.arith import ceil_div
from nmsat.types import NM, DType

from ..layouts import EngineShape


@dataclass(frozen=True)
class Tile:
    """A GEMM tile with its operands in the engine's chunk order and the reference result."""

    a: np.ndarray  # [M, K] operand values
    b: np.ndarray  # [K, N] dense weight values (before N:M selection)
    nm: NM
    act: np.ndarray  # [M, kc, A] operand bit patterns
    w_value: np.ndarray  # [N, kc, P] weight bit patterns
    w_index: np.ndarray  # [N, kc, P] compressed indices
    expected: np.ndarray  # [M, N] accumulator bit patterns (reference.engine_gemm)
    skip_rows: int | None = None  # WS with act_zero = skip on an R-row array: R

    @property
    def chunks(self) -> int:
        return self.act.shape[1]


def random_operands(rng: np.random.Generator, dtype: DType, shape: tuple[int, int],
                    special: float = 0.0) -> np.ndarray:
    """Values representable in ``dtype``; floats span a wide exponent range, with a
    fraction ``special`` of zeros, signed zeros and subnormals mixed in."""
    if dtype is DType.INT8:
        return rng.integers(-128, 128, shape).astype(np.int8)
    if dtype is DType.INT16:
        return rng.integers(-32768, 32768, shape).astype(np.int16)
    x = rng.standard_normal(shape) * np.exp2(rng.integers(-6, 7, shape))
    if special:
        pick = rng.random(shape) < special
        tiny = (np.float16(6e-8) if dtype is DType.FP16 else np.float32(1e-39)) * rng.integers(
            -3, 4, shape)
        x = np.where(pick, tiny, x)
    return ref.quantize(x, dtype)


def encode(shape: EngineShape, a: np.ndarray, b: np.ndarray, nm: NM | str = "1:1",
           acc: np.ndarray | None = None, skip: bool = False) -> Tile:
    """Chunk encoding of ``a @ b`` for the engine ``shape`` (B selected N:M along K).
    ``skip``: the block runs WS on an engine with ``act_zero = skip`` (the expected values
    follow ``engine_gemm(..., skip_rows=R)``, the DMA model loads row lists)."""
    nm = NM.parse(nm)
    num = shape.numeric
    m_rows, k = a.shape
    n_cols = b.shape[1]
    P, A = shape.lanes, shape.window
    kc = ref.gemm_chunks(k, P, A, nm)
    abits = num.to_bits(a)
    act = np.zeros((m_rows, kc, A), np.uint64)
    w_value = np.zeros((n_cols, kc, P), np.uint64)
    w_index = np.zeros((n_cols, kc, P), np.uint64)
    if nm.dense:
        per = P
        bbits = num.to_bits(b)
        for c in range(kc):
            hi = min(k, c * P + P)
            act[:, c, :hi - c * P] = abits[:, c * P:hi]
            w_value[:, c, :hi - c * P] = bbits[c * P:hi].T
    else:
        g = nm.groups_per_chunk(P, A)
        per = g * nm.m
        comp = ref.compress(b, nm, axis=0)
        vbits = num.to_bits(comp.values)  # [groups * N, n]
        groups = comp.groups
        for c in range(kc):
            hi = min(k, c * per + per)
            act[:, c, :hi - c * per] = abits[:, c * per:hi]
            for p in range(g * nm.n):
                q = c * g + p // nm.n
                if q < groups:
                    w_value[:, c, p] = vbits[q * nm.n + p % nm.n]
                    w_index[:, c, p] = comp.indices[q * nm.n + p % nm.n]
    del per
    skip_rows = shape.rows if skip else None
    out = ref.engine_gemm(a, b, shape.dtype, P, A, nm, acc=acc, skip_rows=skip_rows)
    return Tile(a, b, nm, act, w_value, w_index, num.acc_to_bits(out), skip_rows)


def random_tile(rng: np.random.Generator, shape: EngineShape, m: int, k: int, n: int,
                nm: NM | str = "1:1", special: float = 0.05) -> Tile:
    a = random_operands(rng, shape.dtype, (m, k), special)
    b = random_operands(rng, shape.dtype, (k, n), special)
    return encode(shape, a, b, nm)


def zero_row_slices(rng: np.random.Generator, shape: EngineShape, a: np.ndarray,
                    nm: NM | str, p_zero: float, empty_tile: int | None = None) -> np.ndarray:
    """``a`` with each row's K-tile slice (R chunks) set to zero with probability
    ``p_zero``, every row's slice of K-tile ``empty_tile`` zero, and (floats) half of the
    zeros negative: stimulus for ``act_zero = skip``."""
    nm = NM.parse(nm)
    kpc = nm.k_per_chunk(shape.lanes, shape.window)
    span = shape.rows * kpc
    a = a.copy()
    for kt in range(ceil_div(a.shape[1], span)):
        sl = slice(kt * span, (kt + 1) * span)
        a[rng.random(a.shape[0]) < p_zero, sl] = 0
        if kt == empty_tile:
            a[:, sl] = 0
    if shape.dtype.is_float:
        a = np.where((a == 0) & (rng.random(a.shape) < 0.5), -0.0, a).astype(a.dtype)
    return a


def random_skip_tile(rng: np.random.Generator, shape: EngineShape, m: int, k: int, n: int,
                     nm: NM | str, p_zero: float, empty_tile: int | None = None,
                     special: float = 0.05) -> Tile:
    """A WS tile for an ``act_zero = skip`` engine with zero row slices injected."""
    a = random_operands(rng, shape.dtype, (m, k), special)
    a = zero_row_slices(rng, shape, a, nm, p_zero, empty_tile)
    b = random_operands(rng, shape.dtype, (k, n), special)
    return encode(shape, a, b, nm, skip=True)


__all__ = ["Tile", "encode", "random_operands", "random_skip_tile", "random_tile",
           "zero_row_slices"]
