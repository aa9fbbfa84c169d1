"""The NumPy reference model: the single source of truth for nmsat's arithmetic.

Everything that computes values (the simulator's functional mode, the Amaranth unit
tests, the cocotb scoreboards, the torch training code's tests) compares against the
functions here; none re-implements them. The code is deliberately plain.

Conventions (also in ``docs/architecture.md``, section "Arithmetic"):

N:M selection
    Along the chosen axis, consecutive groups of M elements keep the N of largest
    magnitude. **Tie rule:** among equal magnitudes the element with the lower index
    in the group wins (a stable sort on descending magnitude), so the result is fully
    deterministic; +0 and -0 have equal magnitude. **Partial groups:** when M does not
    divide the axis length, the trailing group of r < M elements is treated as padded
    with zeros at its end; padding loses every tie, so the group keeps min(N, r) real
    elements. NaN inputs are rejected.

Engine GEMM ``C[m, n] = sum_k A[m, k] B[k, n]``
    B is the weight operand; in N:M mode it is compressed along K. Work is cut into
    *chunks*: a chunk is what one PE consumes in a cycle, ``P`` multiplier lanes wide.
    Dense: chunk c covers k = c*P .. c*P+P-1 and lane p takes k = c*P + p.
    N:M with g = min(P // N, A // M) groups per chunk: chunk c covers groups
    c*g .. c*g+g-1 and lane p takes group c*g + p // N, kept slot p % N (the slots of a
    group in increasing index order); lanes g*N .. P-1 are idle.
    Lanes past the end of K and idle lanes contribute a product of exactly +0.
    Float operands: each product a*b is formed exactly and rounded once to fp32 (for
    fp16 it is always exact; for bf16 only overflow/underflow can round). The P lane
    products of a chunk are summed by a pairwise adder tree (lanes (0,1),(2,3),...;
    then the pair sums pairwise; an odd count is padded with +0), then added to the
    accumulator: ``acc = acc + tree`` with ``acc`` starting at +0, chunks in order.
    Every addition is IEEE 754 binary32, round to nearest even, with subnormal
    inputs and results kept (no flush to zero). Output-stationary and weight-
    stationary dataflows add in this same order, so both give identical bits.
    Integer operands (int8, int16): products are exact, the accumulator is int32 and
    wraps modulo 2**32, so the order does not matter.

Convolutions (im2col, col2im, the FF/BP/WG conv GEMMs) are in
:mod:`nmsat.reference_conv`; this module re-exports them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .arith import ceil_div
from .reference_conv import (
    ConvGeom,
    col2im,
    conv_bp,
    conv_direct,
    conv_ff,
    conv_weight_from_matrix,
    conv_weight_matrix,
    conv_wg,
    im2col,
)
from .types import NM, DType

__all__ = [
    "Compressed", "ConvGeom", "LaneMap", "StepResult", "bdwp_masks", "bf16_bits", "bp_axis",
    "col2im", "compress", "compressed_bytes", "conv_bp", "conv_direct", "conv_ff",
    "conv_weight_from_matrix", "conv_weight_matrix", "conv_wg", "decompress", "dense_bytes",
    "engine_gemm", "ff_axis", "gemm_chunks", "im2col", "lane_map", "layer_masks", "nm_mask",
    "pack", "quantize", "skip_row_lists", "srste_mask", "train_step", "unpack",
    "weight_update",
]

# --------------------------------------------------------------------------- N:M masks


def _axis(axis: int, ndim: int) -> int:
    """``axis`` as a non-negative index; out-of-range axes raise instead of wrapping."""
    if not -ndim <= axis < ndim:
        raise ValueError(f"axis {axis} is out of range for a {ndim}-D tensor")
    return axis % ndim


def _index_dtype(nm: NM) -> np.dtype:
    """Smallest unsigned type holding an index 0..M-1."""
    return np.dtype(np.uint8 if nm.m <= 256 else np.uint16)


def nm_mask(x: np.ndarray, nm: NM | str, axis: int = -1) -> np.ndarray:
    """Boolean mask keeping the N largest magnitudes of each group of M along ``axis``.

    See the module docstring for the tie rule and partial groups. Dense (N = M) keeps all.
    """
    nm = NM.parse(nm)
    x = np.asarray(x)
    if x.ndim == 0:
        raise ValueError("nm_mask needs an array with at least one axis")
    if np.issubdtype(x.dtype, np.floating) and np.isnan(x).any():
        raise ValueError("nm_mask: input contains NaN; N:M selection of NaN is undefined")
    if nm.dense:
        return np.ones(x.shape, dtype=bool)
    ax = _axis(axis, x.ndim)
    moved = np.moveaxis(np.abs(x.astype(np.float64)), ax, -1)
    length = moved.shape[-1]
    groups = ceil_div(length, nm.m)
    padded = np.zeros(moved.shape[:-1] + (groups * nm.m,), dtype=np.float64)
    padded[..., :length] = moved
    # Padding gets magnitude -1 so it loses to every real element, zeros included.
    padded[..., length:] = -1.0
    g = padded.reshape(moved.shape[:-1] + (groups, nm.m))
    order = np.argsort(-g, axis=-1, kind="stable")  # stable: lower index wins ties
    keep = np.zeros(g.shape, dtype=bool)
    np.put_along_axis(keep, order[..., : nm.n], True, axis=-1)
    keep = keep.reshape(padded.shape)[..., :length]
    return np.moveaxis(keep, -1, ax)


def ff_axis(weight_ndim: int) -> int:
    """Grouping axis of the FF mask: the layer's input dimension.

    Linear ``W[out, in]``: axis 1. Conv ``W[cout, cin/groups, kh, kw]``: axis 1, the input
    channels, with the kernel position fixed (decided; see docs/architecture.md).
    """
    if weight_ndim not in (2, 4):
        raise ValueError(f"weights must be 2-D (linear) or 4-D (conv), not {weight_ndim}-D")
    return 1


def bp_axis(weight_ndim: int) -> int:
    """Grouping axis of the BP mask: the layer's output dimension (K of dX = dY W)."""
    if weight_ndim not in (2, 4):
        raise ValueError(f"weights must be 2-D (linear) or 4-D (conv), not {weight_ndim}-D")
    return 0


def bdwp_masks(w: np.ndarray, nm: NM | str) -> tuple[np.ndarray, np.ndarray]:
    """(FF mask grouped along the input dim, BP mask grouped along the output dim)."""
    return nm_mask(w, nm, ff_axis(w.ndim)), nm_mask(w, nm, bp_axis(w.ndim))


def srste_mask(w: np.ndarray, nm: NM | str) -> np.ndarray:
    """SR-STE's forward mask: N:M along the input dimension (as BDWP's FF mask)."""
    return nm_mask(w, nm, ff_axis(w.ndim))


# --------------------------------------------------------------------------- compressed format


@dataclass(frozen=True)
class Compressed:
    """N:M compressed tensor: N values and N indices per group of M along ``axis``.

    ``values`` and ``indices`` have the tensor's shape with ``axis`` replaced by
    ``groups * N`` (slot s of group q at position q*N + s); indices are positions
    0..M-1 within the group, in increasing order. Padding slots of a partial group hold
    value 0 and the index of a padding position (>= r).
    """

    values: np.ndarray
    indices: np.ndarray
    shape: tuple[int, ...]
    nm: NM
    axis: int

    @property
    def groups(self) -> int:
        return ceil_div(self.shape[self.axis], self.nm.m)


def compress(x: np.ndarray, nm: NM | str, axis: int = -1,
             mask: np.ndarray | None = None) -> Compressed:
    """Compress ``x`` to N:M form, selecting with :func:`nm_mask` unless ``mask`` is given.

    A given ``mask`` must keep at most N per group; groups with fewer kept elements are
    filled with the lowest unkept positions (their values are then zero in the output).
    """
    nm = NM.parse(nm)
    x = np.asarray(x)
    ax = _axis(axis, x.ndim)
    if mask is None:
        mask = nm_mask(x, nm, ax)
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != x.shape:
        raise ValueError(f"mask shape {mask.shape} does not match tensor shape {x.shape}")
    xm = np.moveaxis(np.where(mask, x, 0), ax, -1)
    mm = np.moveaxis(mask, ax, -1)
    length = xm.shape[-1]
    groups = ceil_div(length, nm.m)
    pad = groups * nm.m - length
    xg = np.concatenate([xm, np.zeros(xm.shape[:-1] + (pad,), xm.dtype)], -1)
    mg = np.concatenate([mm, np.zeros(mm.shape[:-1] + (pad,), bool)], -1)
    xg = xg.reshape(xm.shape[:-1] + (groups, nm.m))
    mg = mg.reshape(mm.shape[:-1] + (groups, nm.m))
    if (mg.sum(-1) > nm.n).any():
        raise ValueError(f"mask keeps more than N={nm.n} elements in some group of M={nm.m}")
    # Kept positions first (in index order), then unkept ones (in index order): a stable
    # sort on "not kept" gives exactly that.
    order = np.argsort(~mg, axis=-1, kind="stable")[..., : nm.n]
    order = np.sort(order, axis=-1)
    values = np.take_along_axis(xg, order, -1)
    shape_out = xm.shape[:-1] + (groups * nm.n,)
    values = np.moveaxis(values.reshape(shape_out), -1, ax)
    indices = np.moveaxis(order.reshape(shape_out).astype(_index_dtype(nm)), -1, ax)
    return Compressed(values, indices, tuple(x.shape), nm, ax)


def decompress(c: Compressed) -> np.ndarray:
    """The dense tensor (zeros where pruned)."""
    nm, ax = c.nm, c.axis
    v = np.moveaxis(c.values, ax, -1)
    i = np.moveaxis(c.indices, ax, -1).astype(np.int64)
    groups = c.groups
    v = v.reshape(v.shape[:-1] + (groups, nm.n))
    i = i.reshape(i.shape[:-1] + (groups, nm.n))
    out = np.zeros(v.shape[:-1] + (nm.m,), dtype=c.values.dtype)
    np.put_along_axis(out, i, v, axis=-1)
    out = out.reshape(v.shape[:-2] + (groups * nm.m,))[..., : c.shape[ax]]
    return np.moveaxis(out, -1, ax)


def compressed_bytes(shape: tuple[int, ...], nm: NM | str, axis: int, dtype: DType | str) -> int:
    """Exact bytes of the packed form: values at the dtype's width plus
    ceil(log2 M)-bit indices, the index bits packed densely and rounded up to a byte."""
    nm = NM.parse(nm)
    dtype = DType.parse(dtype)
    ax = _axis(axis, len(shape))
    slots = math.prod(shape) // shape[ax] * ceil_div(shape[ax], nm.m) * nm.n
    return slots * dtype.bytes + (slots * nm.index_bits + 7) // 8


def dense_bytes(shape: tuple[int, ...], dtype: DType | str) -> int:
    return math.prod(shape) * DType.parse(dtype).bytes


def pack(c: Compressed, dtype: DType | str) -> bytes:
    """Serialise: values (little-endian, dtype width, C order) then the indices packed
    LSB-first at ceil(log2 M) bits each. ``len(pack(c)) == compressed_bytes(...)``."""
    dtype = DType.parse(dtype)
    vals = _storage(c.values, dtype).tobytes(order="C")
    bits = c.nm.index_bits
    idx = np.ascontiguousarray(c.indices).reshape(-1).astype(np.uint64)
    if bits == 0:
        return vals
    # Bit j of index i lands at stream bit i*bits + j.
    bit_matrix = ((idx[:, None] >> np.arange(bits, dtype=np.uint64)) & 1).astype(np.uint8)
    return vals + np.packbits(bit_matrix.reshape(-1), bitorder="little").tobytes()


def unpack(data: bytes, shape: tuple[int, ...], nm: NM | str, axis: int,
           dtype: DType | str) -> Compressed:
    """Inverse of :func:`pack`. Raises ``ValueError`` if ``data`` has the wrong length."""
    nm = NM.parse(nm)
    dtype = DType.parse(dtype)
    ax = _axis(axis, len(shape))
    expect = compressed_bytes(shape, nm, ax, dtype)
    if len(data) != expect:
        raise ValueError(f"packed N:M data has {len(data)} bytes, expected {expect}")
    cshape = list(shape)
    cshape[ax] = ceil_div(shape[ax], nm.m) * nm.n
    slots = math.prod(cshape)
    nval = slots * dtype.bytes
    values = _from_storage(np.frombuffer(data[:nval], dtype=_storage_dtype(dtype)), dtype)
    values = values.reshape(cshape)
    bits = nm.index_bits
    if bits:
        stream = np.unpackbits(np.frombuffer(data[nval:], np.uint8), bitorder="little")
        slot_bits = stream[: slots * bits].reshape(slots, bits).astype(np.uint8)
        idx = (slot_bits.astype(np.uint16) << np.arange(bits, dtype=np.uint16)).sum(-1)
        indices = idx.astype(_index_dtype(nm)).reshape(cshape)
    else:
        indices = np.zeros(cshape, _index_dtype(nm))
    return Compressed(values, indices, tuple(shape), nm, ax)


_STORAGE: dict[DType, np.dtype] = {DType.INT8: np.dtype("<i1"), DType.INT16: np.dtype("<i2"),
                                   DType.FP16: np.dtype("<f2"), DType.BF16: np.dtype("<u2")}


def _storage_dtype(dtype: DType) -> np.dtype:
    return _STORAGE[dtype]


def _storage(x: np.ndarray, dtype: DType) -> np.ndarray:
    if dtype is DType.BF16:
        return (bf16_bits(x)).astype("<u2")
    return quantize(x, dtype).astype(_storage_dtype(dtype))


def _from_storage(raw: np.ndarray, dtype: DType) -> np.ndarray:
    if dtype is DType.BF16:
        return (raw.astype(np.uint32) << 16).view(np.float32)
    return raw.astype(raw.dtype.newbyteorder("="))


# --------------------------------------------------------------------------- numerics


def _f32_round_to_odd(x: np.ndarray) -> np.ndarray:
    """float64 -> float32 rounding to odd (truncate, then set the last bit if inexact).

    float32 has more than twice bf16's precision plus two bits, so rounding this result
    to bf16 (nearest even) equals rounding the float64 value to bf16 directly: no double
    rounding (e.g. 1 + 2**-8 + 2**-30 must become 1 + 2**-7, not 1).
    """
    with np.errstate(over="ignore"):  # overflow to inf is then truncated to the max
        t = x.astype(np.float32)
    back = t.astype(np.float64)
    inexact = (back != x) & np.isfinite(x)
    t = np.where(inexact & (np.abs(back) > np.abs(x)), np.nextafter(t, np.float32(0)), t)
    return (t.astype(np.float32).view(np.uint32) | inexact.astype(np.uint32)).view(np.float32)


def bf16_bits(x: np.ndarray) -> np.ndarray:
    """Round values to bf16 (nearest even, one rounding) and return the 16-bit patterns.

    fp16/fp32 inputs are rounded directly; wider inputs (float64, integers) go through
    :func:`_f32_round_to_odd` so that they too are rounded only once.
    """
    xa = np.asarray(x)
    if xa.dtype in (np.float16, np.float32):
        f = xa.astype(np.float32)
    else:
        f = _f32_round_to_odd(xa.astype(np.float64))
    b = f.view(np.uint32).astype(np.uint64)
    nan = np.isnan(f)
    rounded = (b + 0x7FFF + ((b >> 16) & 1)) >> 16
    rounded = np.where(nan, (b >> 16) | 0x40, rounded)  # keep NaN a (quiet) NaN
    return rounded.astype(np.uint16)


def quantize(x: np.ndarray, dtype: DType | str) -> np.ndarray:
    """Values representable in ``dtype``: fp16 -> float16 array; bf16 -> float32 array whose
    low 16 bits are zero; int8/int16 -> integer array (values must already be in range)."""
    dtype = DType.parse(dtype)
    x = np.asarray(x)
    if dtype is DType.FP16:
        with np.errstate(over="ignore"):  # overflow rounds to inf (architecture.md 2)
            return x.astype(np.float16)
    if dtype is DType.BF16:
        return (bf16_bits(x).astype(np.uint32) << 16).view(np.float32)
    info = np.iinfo(np.int8 if dtype is DType.INT8 else np.int16)
    if np.issubdtype(x.dtype, np.floating):
        if not np.array_equal(x, np.round(x)):
            raise ValueError(f"{dtype} operands must be integers")
    if x.size and (x.min() < info.min or x.max() > info.max):
        raise ValueError(f"{dtype} operand out of range [{info.min}, {info.max}]")
    return x.astype(info.dtype)


def _tree_sum_fp32(lanes: np.ndarray) -> np.ndarray:
    """Pairwise fp32 adder tree over the last axis (see module docstring)."""
    s = lanes
    while s.shape[-1] > 1:
        if s.shape[-1] % 2:
            s = np.concatenate([s, np.zeros(s.shape[:-1] + (1,), np.float32)], -1)
        s = s[..., 0::2] + s[..., 1::2]
    return s[..., 0]


@dataclass(frozen=True)
class LaneMap:
    """Which K index and weight each multiplier lane of each chunk takes, per column.

    ``k[n, c, p]`` is the K index lane p of chunk c reads from A for output column n
    (-1 for an idle lane); ``w[n, c, p]`` the weight value it multiplies by.
    """

    k: np.ndarray
    w: np.ndarray


def lane_map(b: np.ndarray | Compressed, lanes: int, act_window: int,
             nm: NM | str = "1:1") -> LaneMap:
    """Lay the weight operand ``B[K, N]`` out in multiplier lanes (module docstring).

    ``b`` is a dense ``[K, N]`` array (dense mode, or N:M mode selecting with
    :func:`nm_mask` along K) or a :class:`Compressed` along axis 0.
    """
    nm = NM.parse(nm)
    if isinstance(b, Compressed):
        if not nm.dense and nm != b.nm:  # never silently run another pattern
            raise ValueError(f"weight operand is compressed {b.nm}, not {nm}")
        nm = b.nm
        if b.axis != 0 or len(b.shape) != 2:
            raise ValueError("compressed weight operand must be 2-D and grouped along K (axis 0)")
        comp = b
    elif nm.dense:
        comp = None
    else:
        comp = compress(np.asarray(b), nm, axis=0)
    if comp is None:
        b = np.asarray(b)
        k_total, n_cols = b.shape
        chunks = ceil_div(k_total, lanes)
        k = np.arange(chunks * lanes).reshape(chunks, lanes)
        valid = k < k_total
        kk = np.where(valid, k, -1)
        w = np.zeros((n_cols, chunks, lanes), dtype=b.dtype)
        w[:, valid] = b[k[valid]].T
        return LaneMap(np.broadcast_to(kk, (n_cols, chunks, lanes)).copy(), w)
    g = nm.groups_per_chunk(lanes, act_window)
    if g < 1:
        raise ValueError(f"{nm} needs N <= lanes and M <= act_window "
                         f"(lanes={lanes}, act_window={act_window})")
    k_total, n_cols = comp.shape
    groups = comp.groups
    chunks = ceil_div(groups, g)
    vals = comp.values.T.reshape(n_cols, groups, nm.n)  # [n, group, slot]
    idx = comp.indices.T.reshape(n_cols, groups, nm.n).astype(np.int64)
    k = np.full((n_cols, chunks, lanes), -1, dtype=np.int64)
    w = np.zeros((n_cols, chunks, lanes), dtype=comp.values.dtype)
    for p in range(g * nm.n):
        grp = np.arange(chunks) * g + p // nm.n  # group index of lane p in each chunk
        ok = grp < groups
        gi = grp[ok]
        kidx = gi[None, :] * nm.m + idx[:, gi, p % nm.n]
        real = kidx < k_total  # padding slots of a partial group are idle
        k[:, ok, p] = np.where(real, kidx, -1)
        w[:, ok, p] = np.where(real, vals[:, gi, p % nm.n], 0)
    return LaneMap(k, w)


def engine_gemm(a: np.ndarray, b: np.ndarray | Compressed, dtype: DType | str,
                lanes: int, act_window: int, nm: NM | str = "1:1",
                acc: np.ndarray | None = None, skip_rows: int | None = None) -> np.ndarray:
    """``A[M, K] @ B[K, N]`` exactly as the tensor engine computes it.

    ``a`` and ``b`` must hold values representable in ``dtype`` (see :func:`quantize`).
    ``acc`` (fp32/int32 ``[M, N]``) continues an earlier partial sum: the engine adds its
    chunks to it in order, exactly as if the K ranges had been one. Returns fp32 for
    float dtypes and int32 for integer dtypes.

    ``skip_rows`` = R: a weight-stationary block on an R-row array with ``act_zero =
    skip``: the chunks of a row's K-tile that :func:`skip_row_lists` drops are not added
    at all (the accumulator keeps its value). Integers give the same result as without
    skipping; floats differ only where an add of the dropped slice's +0 or -0 products
    would have changed the sum (``-0 + +0 = +0``) or a 0 x Inf/NaN product would have
    made it NaN.
    """
    dtype = DType.parse(dtype)
    a = np.asarray(a)
    b_shape = b.shape if isinstance(b, Compressed) else np.shape(b)
    if a.ndim != 2 or len(b_shape) != 2 or a.shape[1] != b_shape[0]:
        raise ValueError(f"engine_gemm needs A[M, K] and B[K, N], not A{list(a.shape)} "
                         f"and B{list(b_shape)}")
    lm = lane_map(b, lanes, act_window, nm)
    m_rows = a.shape[0]
    n_cols = lm.k.shape[0]
    k_total = a.shape[1]
    chunks = lm.k.shape[1]
    adds = np.ones((m_rows, chunks), bool)  # [row, chunk]: the chunk is added
    if skip_rows is not None:
        adds[:] = False
        for kt, kept in enumerate(skip_row_lists(a, lanes, act_window, nm, skip_rows)):
            adds[np.ix_(kept, np.arange(kt * skip_rows, min(chunks, (kt + 1) * skip_rows)))] = True
    if dtype.is_float:
        a64 = np.concatenate([a.astype(np.float64), np.zeros((m_rows, 1))], 1)
        out = np.zeros((m_rows, n_cols), np.float32) if acc is None else acc.astype(np.float32)
        for n in range(n_cols):
            kk = np.where(lm.k[n] < 0, k_total, lm.k[n])  # idle lanes read the zero column
            # 0 x Inf gives NaN and an fp32 overflow gives Inf, as specified (architecture.md 2)
            with np.errstate(invalid="ignore", over="ignore"):
                prod = (a64[:, kk] * lm.w[n].astype(np.float64)[None]).astype(np.float32)
            prod[:, lm.k[n] < 0] = np.float32(0.0)  # idle lanes give exactly +0
            tree = _tree_sum_fp32(prod)  # [M, chunks]
            col = out[:, n]
            for c in range(tree.shape[1]):
                col = np.where(adds[:, c], col + tree[:, c], col)
            out[:, n] = col
        return out
    a64 = np.concatenate([a.astype(np.int64), np.zeros((m_rows, 1), np.int64)], 1)
    total = np.zeros((m_rows, n_cols), np.int64) if acc is None else acc.astype(np.int64)
    for n in range(n_cols):
        kk = np.where(lm.k[n] < 0, k_total, lm.k[n])
        prod = a64[:, kk] * lm.w[n].astype(np.int64)[None]  # [M, chunks, lanes]
        total[:, n] += (prod * adds[:, :, None]).sum(axis=(1, 2))
    return ((total + 2**31) % 2**32 - 2**31).astype(np.int32)


def skip_row_lists(a: np.ndarray, lanes: int, act_window: int, nm: NM | str,
                   rows: int) -> list[np.ndarray]:
    """Rows a weight-stationary block streams per K-tile under ``act_zero = skip``.

    K-tile ``kt`` of an R-row array (``rows``) covers chunks ``kt R .. kt R + R - 1``, the
    K elements ``kt R kpc .. (kt + 1) R kpc - 1`` (kpc = K per chunk). Its list holds, in
    increasing order, every row of ``a`` with a nonzero element (+0 and -0 are zero) in
    that slice; a K-tile whose slice is zero in every row keeps row 0, so every tile
    streams at least one row (its weight load, swap and drain are unchanged)."""
    nm = NM.parse(nm)
    a = np.asarray(a)
    k_total = a.shape[1]
    kpc = nm.k_per_chunk(lanes, act_window)
    tiles = ceil_div(gemm_chunks(k_total, lanes, act_window, nm), rows)
    out = []
    for kt in range(tiles):
        nz = (a[:, kt * rows * kpc:(kt + 1) * rows * kpc] != 0).any(axis=1)
        kept = np.flatnonzero(nz)
        out.append(kept if kept.size else np.zeros(1, np.int64))
    return out


def gemm_chunks(k: int, lanes: int, act_window: int, nm: NM | str = "1:1") -> int:
    """Chunks (PE cycles per output) of a K-long reduction: ceil(K / k_per_cycle)."""
    nm = NM.parse(nm)
    if nm.dense:
        return ceil_div(k, lanes)
    g = nm.groups_per_chunk(lanes, act_window)
    if g < 1:
        raise ValueError(f"{nm} needs N <= lanes and M <= act_window "
                         f"(lanes={lanes}, act_window={act_window})")
    groups = ceil_div(k, nm.m)  # ceil(K / M), a partial trailing group counts
    return ceil_div(groups, g)


# --------------------------------------------------------------------------- training step


@dataclass(frozen=True)
class StepResult:
    """Everything one training step of one layer produces."""

    y: np.ndarray  # forward output (fp32)
    dx: np.ndarray  # data gradient (fp32)
    dw: np.ndarray  # weight gradient fed to the update, SR-STE decay included (fp32)
    w_master: np.ndarray  # updated fp32 master weights
    velocity: np.ndarray  # updated momentum state (fp32)
    w_ff: np.ndarray  # the weights FF used (dtype values, zeros where pruned)
    w_bp: np.ndarray  # the weights BP used


def weight_update(w_master: np.ndarray, grad: np.ndarray, velocity: np.ndarray,
                  lr: float, momentum: float) -> tuple[np.ndarray, np.ndarray]:
    """The weight-update engine, in fp32 with each operation rounded (no fused multiply-add):
    ``v' = fl(fl(momentum * v) + g)``; ``w' = fl(w - fl(lr * v'))``."""
    f32 = np.float32
    w = np.asarray(w_master, f32)
    g = np.asarray(grad, f32)
    v = np.asarray(velocity, f32)
    v_new = (f32(momentum) * v).astype(f32) + g
    w_new = w - (f32(lr) * v_new).astype(f32)
    return w_new.astype(f32), v_new.astype(f32)


def layer_masks(w: np.ndarray, method: str, nm: NM | str) -> tuple[np.ndarray, np.ndarray]:
    """(FF mask, BP mask) of a weight tensor for a training method."""
    from .types import Method

    method = Method.parse(method)
    nm = NM.parse(nm)
    ones = np.ones(w.shape, bool)
    if method is Method.DENSE or nm.dense:
        return ones, ones
    if method is Method.SRSTE:
        m = srste_mask(w, nm)
        return m, m  # BP uses the same sparse weights (dense in the engine: wrong axis)
    return bdwp_masks(w, nm)


def train_step(w_master: np.ndarray, x: np.ndarray, dy: np.ndarray, *, method: str,
               nm: NM | str, dtype: DType | str | None = None, lanes: int | None = None,
               act_window: int | None = None, lr: float = 0.01, momentum: float | None = None,
               velocity: np.ndarray | None = None, srste_decay: float = 2e-4,
               conv: ConvGeom | None = None) -> StepResult:
    """One training step of a linear (``conv=None``) or conv layer on the engine.

    Linear: ``w[out, in]``, ``x[B, in]``, ``dy[B, out]``. Conv: ``w[Cout, C/g, kh, kw]``,
    ``x[N, C, H, W]``, ``dy[N, Cout, Ho, Wo]``. Masks are selected from the working
    (dtype) copy of the fp32 master weights, as the SORE sees it (docs/architecture.md,
    section 5), and the engine uses that copy. Float dtypes only (training is fp16/bf16).

    FF uses the FF mask, BP the BP mask (SR-STE: the same forward mask; BDWP: the
    output-dimension mask), WG is dense. SR-STE adds ``srste_decay * (1 - mask) * w`` to
    the gradient. Every GEMM goes through :func:`engine_gemm`; FF and BP use N:M mode
    where their mask groups along the GEMM's K (BDWP FF and BP, SR-STE FF).

    ``dtype``, ``lanes`` (P), ``act_window`` (A) and ``momentum`` default to the ``vcu1525``
    preset's ``numerics.dtype``, ``array.macs_per_pe``, ``array.act_window`` and
    ``weight_update.momentum``.
    """
    from .config import VCU1525
    from .types import Method

    dtype = VCU1525.numerics.dtype if dtype is None else dtype
    lanes = VCU1525.array.macs_per_pe if lanes is None else lanes
    act_window = VCU1525.array.act_window if act_window is None else act_window
    momentum = VCU1525.weight_update.momentum if momentum is None else momentum

    method = Method.parse(method)
    nm = NM.parse(nm)
    dtype = DType.parse(dtype)
    if not dtype.is_float:
        raise ValueError("training steps use a float dtype (fp16 or bf16)")
    w32 = np.asarray(w_master, np.float32)
    wq = quantize(w32, dtype)
    # The SORE selects from the working (dtype) copy of the weights, so masks do too.
    m_ff, m_bp = layer_masks(wq.astype(np.float32), method, nm)
    w_ff = np.where(m_ff, wq, 0).astype(wq.dtype)
    w_bp = np.where(m_bp, wq, 0).astype(wq.dtype)
    xq, dyq = quantize(x, dtype), quantize(dy, dtype)
    sparse_ff = method in (Method.SRSTE, Method.BDWP) and not nm.dense
    sparse_bp = method is Method.BDWP and not nm.dense

    def mm(sparse: bool):
        mode = nm if sparse else NM(1, 1)
        return lambda a, b: engine_gemm(a, b, dtype, lanes, act_window, mode)

    if conv is None:
        b_ff = compress(w_ff.T, nm, 0, m_ff.T) if sparse_ff else w_ff.T
        b_bp = compress(w_bp, nm, 0, m_bp) if sparse_bp else w_bp
        y = mm(sparse_ff)(xq, b_ff)
        dx = mm(sparse_bp)(dyq, b_bp)
        dw = mm(False)(dyq.T, xq)
    else:
        # In im2col's K order a group of M input (FF) or output (BP) channels is M
        # consecutive K elements only when M divides the channel count; other conv
        # layers (RGB stems, depthwise) stay dense (docs/architecture.md).
        for name, on, count in (("input", sparse_ff, conv.c // conv.groups),
                                ("output", sparse_bp, conv.cout // conv.groups)):
            if on and count % nm.m:
                raise ValueError(f"N:M conv needs M={nm.m} to divide the {name} channels "
                                 f"per group ({count}); keep this layer dense")
        y = conv_ff(xq, w_ff, conv, mm(sparse_ff))
        dx = conv_bp(dyq, w_bp, conv, mm(sparse_bp))
        dw = conv_wg(xq, dyq, conv, mm(False))
    dw = dw.astype(np.float32)
    if method is Method.SRSTE and not nm.dense:
        decay = (np.float32(srste_decay) * np.where(m_ff, np.float32(0), w32)).astype(np.float32)
        dw = (dw + decay).astype(np.float32)
    v = np.zeros_like(w32) if velocity is None else np.asarray(velocity, np.float32)
    w_new, v_new = weight_update(w32, dw, v, lr, momentum)
    return StepResult(y, dx, dw, w_new, v_new, w_ff, w_bp)
