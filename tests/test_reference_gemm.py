"""The engine GEMM: values, the documented fp32 accumulation order, integer wrap-around.

``scalar_engine`` below is an independent, plain-Python statement of the documented
order (docs/architecture.md section 2): per output, per chunk, lane products formed in
double precision and rounded once to fp32, the pairwise adder tree over the P lanes with
numpy float32 scalars (an odd count padded with +0 at each level), then ``acc = acc +
tree`` from +0, chunks in increasing order. It selects N:M weights with its own
brute-force top-N (lower index wins ties) and never calls ``nmsat.reference``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nmsat import reference as R
from nmsat.arith import ceil_div
from nmsat.types import NM

F32 = np.float32
U = 2.0 ** -24  # unit roundoff of binary32


def kept_slots(col, n, m):
    """Per group of M along K: the kept K indices (increasing), padded with None to N."""
    k_total = len(col)
    out = []
    for start in range(0, k_total, m):
        members = range(start, min(start + m, k_total))
        top = sorted(members, key=lambda k: (-abs(float(col[k])), k))[:n]
        out.append(sorted(top) + [None] * (n - len(top)))
    return out


def lanes_of_column(col, lanes, window, nm):
    """List of chunks; a chunk is P entries, each a K index or None (idle: product +0)."""
    k_total = len(col)
    n, m = nm
    if n == m:  # dense
        chunks = ceil_div(k_total, lanes)
        return [[k if k < k_total else None for k in range(c * lanes, (c + 1) * lanes)]
                for c in range(chunks)]
    g = NM(n, m).groups_per_chunk(lanes, window)
    slots = kept_slots(col, n, m)
    chunks = []
    for c in range(ceil_div(len(slots), g)):
        chunk = []
        for p in range(lanes):
            grp = c * g + p // n
            chunk.append(slots[grp][p % n] if p < g * n and grp < len(slots) else None)
        chunks.append(chunk)
    return chunks


def tree(values):
    while len(values) > 1:
        if len(values) % 2:
            values = values + [F32(0.0)]
        values = [F32(values[i] + values[i + 1]) for i in range(0, len(values), 2)]
    return values[0]


def scalar_engine(a, b, lanes, window, nm=(1, 1)):
    rows, cols = a.shape[0], b.shape[1]
    out = np.zeros((rows, cols), np.float32)
    for j in range(cols):
        chunks = lanes_of_column(b[:, j], lanes, window, nm)
        for i in range(rows):
            acc = F32(0.0)
            for chunk in chunks:
                prods = [F32(0.0) if k is None else F32(float(a[i, k]) * float(b[k, j]))
                         for k in chunk]
                acc = F32(acc + tree(prods))
            out[i, j] = acc
    return out


def bits(x):
    return np.ascontiguousarray(x, np.float32).view(np.uint32)


def rand_float(rng, shape, dtype, emin, emax):
    """Values spread over many binades (so fp32 additions round), with zeros and signs."""
    mant = rng.uniform(1, 2, shape) * rng.choice([-1.0, 1.0], shape)
    x = mant * np.exp2(rng.integers(emin, emax + 1, shape).astype(np.float64))
    x[rng.random(shape) < 0.15] = 0.0
    x[rng.random(shape) < 0.05] = -0.0
    return R.quantize(x, dtype)


# (lanes P, window A, patterns valid for them); P = 3 and 6 exercise the odd-count padding
GEOMS = [(4, 16, [(1, 4), (2, 4), (2, 8), (1, 8), (4, 8)]), (4, 8, [(2, 4), (2, 8), (1, 8)]),
         (2, 8, [(1, 4), (2, 8), (1, 2)]), (3, 12, [(1, 4), (3, 8), (2, 4)]),
         (8, 16, [(2, 4), (4, 8), (1, 4)]), (6, 12, [(3, 4), (2, 4)]), (1, 4, [(1, 4)])]


@st.composite
def tiles(draw, dtype):
    lanes, window, patterns = draw(st.sampled_from(GEOMS))
    nm = draw(st.sampled_from([(1, 1)] + patterns))
    rows, k, cols = draw(st.integers(1, 3)), draw(st.integers(1, 21)), draw(st.integers(1, 3))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if dtype == "fp16":
        a, b = rand_float(rng, (rows, k), dtype, -8, 8), rand_float(rng, (k, cols), dtype, -8, 8)
    else:  # bf16: wide exponents, so products and sums reach fp32 subnormals
        a = rand_float(rng, (rows, k), dtype, -75, 20)
        b = rand_float(rng, (k, cols), dtype, -75, 20)
    return a, b, lanes, window, nm


@pytest.mark.parametrize("dtype", ["fp16", "bf16"])
@settings(database=None, max_examples=80, deadline=None)
@given(data=st.data())
def test_engine_gemm_matches_scalar_order_bit_for_bit(dtype, data):
    a, b, lanes, window, nm = data.draw(tiles(dtype))
    expect = scalar_engine(a, b, lanes, window, nm)
    nm_s = f"{nm[0]}:{nm[1]}"
    got = R.engine_gemm(a, b, dtype, lanes, window, nm_s)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(bits(got), bits(expect))
    if nm[0] != nm[1]:  # the compressed operand gives the same bits
        got_c = R.engine_gemm(a, R.compress(b, nm_s, 0), dtype, lanes, window)
        np.testing.assert_array_equal(bits(got_c), bits(expect))


def test_accumulation_order_matters():
    """Cases where another summation order gives other fp32 bits, so an order change in
    ``engine_gemm`` (or in the RTL) is caught."""
    t = 2.0 ** -12  # fp16-representable; t*t = 2**-24 = half an ulp of 1.0
    # (1) inside a chunk: tree (1 + 0) + (t^2 + t^2) = 1 + 2**-23, whereas left-to-right
    # ((1 + 0) + t^2) + t^2 rounds each t^2 away (ties to even) and gives 1.0.
    a = np.array([[1.0, 0.0, t, t]], np.float16)
    b = np.array([[1.0], [1.0], [t], [t]], np.float16)
    got = R.engine_gemm(a, b, "fp16", 4, 16)
    assert got[0, 0] == 1.0 + 2.0 ** -23
    seq = F32(0)
    for p in (1.0, 0.0, t * t, t * t):
        seq = F32(seq + F32(p))
    assert seq == 1.0 and bits(seq) != bits(got[0, 0])
    # (2) across chunks: acc = ((0 + 1) + t^2) + t^2 = 1.0; any other grouping of the three
    # chunk sums (e.g. last chunks first, or a tree over chunks) gives 1 + 2**-23.
    a = np.zeros((1, 12), np.float16)
    b = np.zeros((12, 1), np.float16)
    a[0, [0, 4, 8]] = [1.0, t, t]
    b[[0, 4, 8], 0] = [1.0, t, t]
    got = R.engine_gemm(a, b, "fp16", 4, 16)
    assert got[0, 0] == 1.0
    assert F32(F32(t * t) + F32(t * t)) + F32(1.0) == 1.0 + 2.0 ** -23
    # (3) N:M lane placement: 2:4 with P=4, A=8 puts group 0's slots on lanes 0, 1 and
    # group 1's on lanes 2, 3: (1 + t^2) + (t^2 + 0) = 1.0. Slot-major placement (lanes
    # 0, 1 = slot 0 of both groups) would add (1 + t^2) + (t^2 + 0) too, so use a third
    # value to separate them: group 0 = {1, x}, group 1 = {t^2, t^2} -> (1 + x) + 2 t^2.
    a = np.array([[1.0, 1.0, 0.0, 0.0, t, t, 0.0, 0.0]], np.float16)
    b = np.array([[1.0], [0.0], [0.0], [0.0], [t], [t], [0.0], [0.0]], np.float16)
    b[1, 0] = 2.0 ** -11  # group 0 keeps 1.0 and 2**-11 (both nonzero)
    got = R.engine_gemm(a, b, "fp16", 4, 8, "2:4")
    # tree: (1 + 2**-11) + (2**-24 + 2**-24) = 1 + 2**-11 + 2**-23 (exact)
    assert got[0, 0] == 1.0 + 2.0 ** -11 + 2.0 ** -23
    # slot-major: (1 + 2**-24) + (2**-11 + 2**-24): 1 + 2**-24 rounds to 1 -> 1 + 2**-11
    alt = F32(F32(F32(1.0) + F32(t * t)) + F32(F32(2.0 ** -11) + F32(t * t)))
    assert alt == 1.0 + 2.0 ** -11 and alt != got[0, 0]


def test_subnormals_are_kept():
    # bf16 2**-70 * 2**-70 = 2**-140, an fp32 subnormal: no flush to zero
    a = R.quantize(np.array([[2.0 ** -70, 2.0 ** -70]]), "bf16")
    b = R.quantize(np.array([[2.0 ** -70], [3 * 2.0 ** -71]]), "bf16")
    got = R.engine_gemm(a, b, "bf16", 4, 16)
    assert got[0, 0] == 2.0 ** -140 + 3 * 2.0 ** -141
    # a product below half the smallest subnormal rounds to +0; a larger one is kept
    a = R.quantize(np.array([[2.0 ** -80, 2.0 ** -75]]), "bf16")
    b = R.quantize(np.array([[2.0 ** -80], [2.0 ** -74]]), "bf16")
    assert R.engine_gemm(a, b, "bf16", 4, 16)[0, 0] == 2.0 ** -149


def test_idle_lanes_give_plus_zero():
    # all products -0: the tree gives -0, but acc starts at +0, and +0 + -0 = +0
    a = np.array([[-0.0, -0.0, -0.0]], np.float16)
    b = np.array([[1.0], [1.0], [1.0]], np.float16)
    assert bits(R.engine_gemm(a, b, "fp16", 4, 16))[0, 0] == 0
    # continuing a -0 accumulator: -0 + (-0 + -0 ... + idle +0) -- the idle lane's +0
    # makes the tree +0 and acc = -0 + +0 = +0
    acc = np.array([[-0.0]], np.float32)
    assert bits(R.engine_gemm(a, b, "fp16", 4, 16, acc=acc))[0, 0] == 0
    # four real -0 lanes (no idle lane): tree = -0, acc = -0 + -0 = -0
    a4 = np.array([[-0.0] * 4], np.float16)
    b4 = np.ones((4, 1), np.float16)
    assert bits(R.engine_gemm(a4, b4, "fp16", 4, 16, acc=acc))[0, 0] == 0x80000000


@settings(database=None, max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from(GEOMS), st.data())
def test_sparse_gemm_equals_dense_gemm_of_masked_weights(seed, geom, data):
    lanes, window, patterns = geom
    nm = data.draw(st.sampled_from(patterns))
    nm_s = f"{nm[0]}:{nm[1]}"
    dtype = data.draw(st.sampled_from(["fp16", "bf16"]))
    rng = np.random.default_rng(seed)
    rows, k, cols = rng.integers(1, 6), rng.integers(1, 40), rng.integers(1, 6)
    a = R.quantize(rng.standard_normal((rows, k)), dtype)
    b = R.quantize(rng.standard_normal((k, cols)), dtype)
    mask = R.nm_mask(b, nm_s, 0)
    bm = np.where(mask, b, 0).astype(np.float64)
    exact = a.astype(np.float64) @ bm
    got = R.engine_gemm(a, R.compress(b, nm_s, 0), dtype, lanes, window)
    # each product passes through at most ceil(log2 P) tree adds and one acc add per chunk
    adds = math.ceil(math.log2(lanes)) + R.gemm_chunks(k, lanes, window, nm_s)
    bound = 1.01 * adds * U * (np.abs(a.astype(np.float64)) @ np.abs(bm))
    assert (np.abs(got - exact) <= bound).all()


@pytest.mark.parametrize("dtype, lo, hi", [("int8", -128, 127), ("int16", -32768, 32767)])
@settings(database=None, max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), geom=st.sampled_from(GEOMS), data=st.data())
def test_integer_gemm_exact_with_wraparound(dtype, lo, hi, seed, geom, data):
    lanes, window, patterns = geom
    nm = data.draw(st.sampled_from([(1, 1)] + patterns))
    nm_s = f"{nm[0]}:{nm[1]}"
    rng = np.random.default_rng(seed)
    rows, k, cols = rng.integers(1, 4), rng.integers(1, 40), rng.integers(1, 4)
    npt = np.int8 if dtype == "int8" else np.int16
    a = rng.integers(lo, hi + 1, (rows, k)).astype(npt)
    b = rng.integers(lo, hi + 1, (k, cols)).astype(npt)
    a[rng.random(a.shape) < 0.3] = lo  # large magnitudes push int16 sums past 2**31
    got = R.engine_gemm(a, b, dtype, lanes, window, nm_s)
    assert got.dtype == np.int32
    for i in range(rows):
        for j in range(cols):
            col = [int(v) for v in b[:, j]]
            keep = [k_ for s in kept_slots(col, *nm) for k_ in s if k_ is not None]
            total = sum(int(a[i, k_]) * col[k_] for k_ in keep)
            wrapped = (total + 2**31) % 2**32 - 2**31
            assert int(got[i, j]) == wrapped


def test_int32_wraparound_by_hand():
    a = np.full((1, 4), -32768, np.int16)
    b = np.full((4, 1), -32768, np.int16)
    assert R.engine_gemm(a, b, "int16", 4, 16)[0, 0] == 0  # 4 * 2**30 = 2**32 -> 0
    assert R.engine_gemm(a[:, :2], b[:2], "int16", 4, 16)[0, 0] == -(2**31)  # 2**31 wraps
    assert R.engine_gemm(a[:, :3], b[:3], "int16", 4, 16)[0, 0] == -(2**30)  # 3 * 2**30
    acc = np.array([[2**31 - 1]], np.int32)
    assert R.engine_gemm(np.ones((1, 1), np.int8), np.ones((1, 1), np.int8), "int8", 4, 16,
                         acc=acc)[0, 0] == -(2**31)


@settings(database=None, max_examples=30, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 5), st.integers(1, 5))
def test_acc_continues_a_split_reduction(seed, c1, c2):
    # splitting K at a chunk boundary and passing acc gives the same bits as one call
    rng = np.random.default_rng(seed)
    lanes = 4
    a = rand_float(rng, (3, (c1 + c2) * lanes), "fp16", -8, 8)
    b = rand_float(rng, ((c1 + c2) * lanes, 2), "fp16", -8, 8)
    k1 = c1 * lanes
    whole = R.engine_gemm(a, b, "fp16", lanes, 16)
    part = R.engine_gemm(a[:, :k1], b[:k1], "fp16", lanes, 16)
    cont = R.engine_gemm(a[:, k1:], b[k1:], "fp16", lanes, 16, acc=part)
    np.testing.assert_array_equal(bits(cont), bits(whole))


@pytest.mark.parametrize("k, lanes, window, nm, chunks", [
    (16, 4, 16, "1:1", 4), (17, 4, 16, "1:1", 5), (16, 4, 16, "2:8", 1), (64, 4, 16, "2:8", 4),
    (64, 4, 16, "4:8", 8), (64, 4, 16, "1:8", 4), (9, 4, 16, "2:4", 2), (9, 4, 8, "1:4", 2),
    (64, 4, 8, "2:8", 8), (1, 4, 16, "2:8", 1),
])
def test_gemm_chunks(k, lanes, window, nm, chunks):
    # chunks = ceil(ceil(K / M) / g), g = min(P // N, A // M); dense: ceil(K / P)
    assert R.gemm_chunks(k, lanes, window, nm) == chunks
    lm = R.lane_map(np.ones((k, 1), np.float16), lanes, window, nm)
    assert lm.k.shape == (1, chunks, lanes)


def test_unsupported_pattern_and_bad_shapes():
    a = np.ones((1, 8), np.float16)
    b = np.ones((8, 1), np.float16)
    for args, msg in [((4, 4, "1:8"), "1:8 needs N <= lanes and M <= act_window "
                                      "(lanes=4, act_window=4)"),
                      ((4, 16, "8:16"), "8:16 needs N <= lanes and M <= act_window "
                                        "(lanes=4, act_window=16)")]:
        with pytest.raises(ValueError, match=f"^{msg.replace('(', '[(]').replace(')', '[)]')}$"):
            R.engine_gemm(a, b, "fp16", *args)
        # gemm_chunks (bug fixed: its message did not name lanes and act_window)
        with pytest.raises(ValueError, match=f"^{msg.replace('(', '[(]').replace(')', '[)]')}$"):
            R.gemm_chunks(8, *args)
    # bug fixed: a K mismatch used to read a zero column (K_B = K_A + 1) or ignore columns
    with pytest.raises(ValueError, match=r"^engine_gemm needs A\[M, K\] and B\[K, N\], not "
                                         r"A\[1, 8\] and B\[9, 1\]$"):
        R.engine_gemm(a, np.ones((9, 1), np.float16), "fp16", 4, 16)
    with pytest.raises(ValueError, match=r"not A\[1, 8\] and B\[7, 1\]$"):
        R.engine_gemm(a, np.ones((7, 1), np.float16), "fp16", 4, 16)
    with pytest.raises(ValueError, match=r"^compressed weight operand must be 2-D and grouped "
                                         r"along K \(axis 0\)$"):
        R.engine_gemm(np.ones((1, 1), np.float16), R.compress(a, "2:4", 1), "fp16", 4, 16)
    # bug fixed: an explicit pattern different from the compressed operand's was ignored
    c = R.compress(b, "2:4", 0)
    with pytest.raises(ValueError, match=r"^weight operand is compressed 2:4, not 2:8$"):
        R.engine_gemm(a, c, "fp16", 4, 16, "2:8")
    np.testing.assert_array_equal(R.engine_gemm(a, c, "fp16", 4, 16, "2:4"),
                                  R.engine_gemm(a, c, "fp16", 4, 16))


@settings(database=None, max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from(GEOMS), st.data())
def test_sparse_gemm_exact_on_small_integers(seed, geom, data):
    # small integers: every product and partial sum is exact in fp32, so whatever the
    # order, the engine must equal the dense GEMM of the masked weights exactly
    lanes, window, patterns = geom
    nm_s = "{}:{}".format(*data.draw(st.sampled_from(patterns)))
    dtype = data.draw(st.sampled_from(["fp16", "bf16"]))
    rng = np.random.default_rng(seed)
    rows, k, cols = rng.integers(1, 5), rng.integers(1, 50), rng.integers(1, 5)
    a = R.quantize(rng.integers(-8, 9, (rows, k)), dtype)
    b = R.quantize(rng.integers(-8, 9, (k, cols)), dtype)
    exact = a.astype(np.float64) @ np.where(R.nm_mask(b, nm_s, 0), b, 0).astype(np.float64)
    np.testing.assert_array_equal(R.engine_gemm(a, R.compress(b, nm_s, 0), dtype, lanes, window),
                                  exact)


def test_skip_rows_semantics():
    """act_zero = skip (WS, R-row array): a row's K-tile slice that is all zero (+0 or -0)
    is not added. Integers: the plain result. Floats: the plain result except where the
    dropped slice's add mattered: -0 + +0 (the accumulator keeps -0) and 0 x Inf (NaN)."""
    rng = np.random.default_rng(4)
    a = rng.integers(-5, 6, (6, 24))
    a[1, :8] = 0  # row 1, K-tile 0 (R = 2 chunks of P = 4)
    a[:, 16:] = 0  # K-tile 2 zero in every row: row 0 still streams
    b = rng.integers(-5, 6, (24, 3))
    lists = R.skip_row_lists(a, 4, 8, "1:1", 2)
    assert [x.tolist() for x in lists] == [[0, 2, 3, 4, 5], list(range(6)), [0]]
    assert np.array_equal(R.engine_gemm(a, b, "int8", 4, 8, skip_rows=2),
                          R.engine_gemm(a, b, "int8", 4, 8))
    f = np.array([[0.0, -0.0, 0.0, 0.0, 1.0, 2.0, 0.0, 0.0],
                  [1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
                  [-0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, -0.0]], np.float16)
    w = np.ones((8, 2), np.float16)
    w[0, 1] = np.inf
    acc = np.array([[-0.0, -0.0], [-0.0, 1.0], [-0.0, -0.0]], np.float32)
    # P = 4, R = 1: a K-tile is one chunk. Lists [1] and [0]: row 2 is all zero in both
    # K-tiles; row 0 of K-tile 1 is kept because a kept row is never empty
    assert [x.tolist() for x in R.skip_row_lists(f, 4, 4, "1:1", 1)] == [[1], [0]]
    got = R.engine_gemm(f, w, "fp16", 4, 4, acc=acc, skip_rows=1)
    plain = R.engine_gemm(f, w, "fp16", 4, 4, acc=acc)
    assert got[0].tolist() == [3.0, 3.0] and np.isnan(plain[0, 1])  # 0 x Inf dropped
    assert got[1].tolist() == [1.0, np.inf] and plain[1].tolist() == [1.0, np.inf]
    assert np.signbit(got[2]).all() and not np.signbit(plain[2, 0])  # -0 kept
    assert np.isnan(plain[2, 1])  # -0 x Inf
