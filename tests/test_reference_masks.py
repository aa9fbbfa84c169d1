"""N:M masks (any axis, any rank, ties, partial groups), BDWP and SR-STE masks.

Every mask is checked against ``brute_mask`` below: a plain loop over groups that ranks
each group's members by (descending magnitude, ascending index) -- the documented tie
rule -- and keeps the first min(N, r). It shares no code with ``nmsat.reference``.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from nmsat import reference as R
from nmsat.types import NM


def brute_mask(x: np.ndarray, n: int, m: int, axis: int) -> np.ndarray:
    x = np.asarray(x)
    ax = axis % x.ndim
    length = x.shape[ax]
    out = np.zeros(x.shape, dtype=bool)
    others = [range(s) for i, s in enumerate(x.shape) if i != ax]
    for rest in itertools.product(*others):
        def at(k, rest=rest):
            return rest[:ax] + (k,) + rest[ax:]
        for start in range(0, length, m):
            members = range(start, min(start + m, length))
            ranked = sorted(members, key=lambda k: (-abs(float(x[at(k)])), k))
            for k in ranked[:n]:
                out[at(k)] = True
    return out


def group_counts(mask: np.ndarray, m: int, axis: int) -> list[tuple[int, int]]:
    """(kept, group length) of every group along ``axis``."""
    mv = np.moveaxis(mask, axis, -1)
    out = []
    for row in mv.reshape(-1, mv.shape[-1]):
        for start in range(0, len(row), m):
            g = row[start:start + m]
            out.append((int(g.sum()), len(g)))
    return out


# Values with many exact ties (incl. +0/-0 and equal magnitudes of opposite sign).
tie_values = st.sampled_from([0.0, -0.0, 1.0, -1.0, 2.0, -2.0, 0.5, -0.5, 3.0])
any_values = st.floats(-1e4, 1e4, allow_nan=False, width=32)


@st.composite
def tensor_axis_nm(draw, max_rank=4):
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=max_rank, min_side=1, max_side=7))
    dtype = draw(st.sampled_from([np.float16, np.float32, np.float64]))
    elements = draw(st.sampled_from([tie_values, any_values]))
    x = draw(hnp.arrays(dtype, shape, elements=elements))
    axis = draw(st.integers(-len(shape), len(shape) - 1))
    m = draw(st.integers(1, 8))
    n = draw(st.integers(1, m))
    return x, axis, n, m


@settings(database=None, max_examples=150, deadline=None)
@given(tensor_axis_nm())
def test_nm_mask_equals_brute_force(case):
    x, axis, n, m = case
    mask = R.nm_mask(x, f"{n}:{m}", axis)
    assert mask.dtype == bool and mask.shape == x.shape
    np.testing.assert_array_equal(mask, brute_mask(x, n, m, axis))


@settings(database=None, max_examples=100, deadline=None)
@given(tensor_axis_nm())
def test_nm_mask_counts_and_top_n(case):
    x, axis, n, m = case
    mask = R.nm_mask(x, NM(n, m), axis)
    # at most N per group; exactly min(N, r) for a group of r elements (partial included)
    for kept, r in group_counts(mask, m, axis % x.ndim):
        assert kept == min(n, r)
    # every kept magnitude >= every dropped magnitude of the same group
    xv = np.moveaxis(np.abs(x.astype(np.float64)), axis, -1)
    mv = np.moveaxis(mask, axis, -1)
    for row, mrow in zip(xv.reshape(-1, xv.shape[-1]), mv.reshape(-1, mv.shape[-1])):
        for start in range(0, len(row), m):
            g, gm = row[start:start + m], mrow[start:start + m]
            if gm.any() and (~gm).any():
                assert g[gm].min() >= g[~gm].max()


@settings(database=None, max_examples=40, deadline=None)
@given(hnp.arrays(np.int8, hnp.array_shapes(min_dims=1, max_dims=3, max_side=9),
                  elements=st.integers(-128, 127)),
       st.sampled_from(["1:4", "2:4", "2:8", "3:5"]))
def test_nm_mask_integer_tensors(x, nm):
    # -128 has the largest int8 magnitude (128), not the smallest
    nm_ = NM.parse(nm)
    np.testing.assert_array_equal(R.nm_mask(x, nm, -1), brute_mask(x, nm_.n, nm_.m, -1))


@pytest.mark.parametrize("x, nm, expect", [
    ([1, -1, 1, -1], "2:4", [1, 1, 0, 0]),            # equal magnitudes: lower index wins
    ([-0.0, 0.0, 0.0, -0.0], "1:4", [1, 0, 0, 0]),    # +0 and -0 tie
    ([0.0, 0.0, 0.0], "2:4", [1, 1, 0]),              # partial group of zeros keeps 2
    ([1, 2, 3, 4, 5], "2:4", [0, 0, 1, 1, 1]),        # trailing group of 1 keeps min(2, 1)
    ([5, 4, 3, 2, 1, 0], "3:4", [1, 1, 1, 0, 1, 1]),  # partial group of 2 keeps both
    ([2, -3, 3, 1], "1:4", [0, 1, 0, 0]),             # |-3| = |3|: the lower index
    ([-128, 127, 0, 1], "1:4", [1, 0, 0, 0]),
])
def test_nm_mask_hand_examples(x, nm, expect):
    dtype = np.int8 if -128 in x else np.float32
    got = R.nm_mask(np.array(x, dtype=dtype), nm)
    np.testing.assert_array_equal(got, np.array(expect, dtype=bool))


def test_nm_mask_inf_and_dense():
    x = np.array([1.0, -np.inf, np.inf, 2.0], np.float32)
    np.testing.assert_array_equal(R.nm_mask(x, "1:4"), [0, 1, 0, 0])
    assert R.nm_mask(x, "4:4").all() and R.nm_mask(x, "dense").all()


def test_nm_mask_rejects_nan_bad_pattern_bad_axis():
    with pytest.raises(ValueError, match=r"^nm_mask: input contains NaN; N:M selection of NaN "
                                         r"is undefined$"):
        R.nm_mask(np.array([1.0, np.nan, 0.0, 2.0], np.float16), "2:4")
    with pytest.raises(ValueError, match=r"^N must be between 1 and M, not 9 \(M=8\)$"):
        R.nm_mask(np.ones(8), "9:8")
    with pytest.raises(ValueError, match=r"^N must be between 1 and M, not 0 \(M=4\)$"):
        R.nm_mask(np.ones(8), "0:4")
    with pytest.raises(ValueError, match=r"^N:M pattern must look like 2:8, not '2/8'$"):
        R.nm_mask(np.ones(8), "2/8")
    with pytest.raises(ValueError, match=r"^nm_mask needs an array with at least one axis$"):
        R.nm_mask(np.float32(1.0), "1:2")
    # bug fixed: an out-of-range axis used to wrap around silently (axis 2 of a 2-D
    # tensor selected along axis 0)
    with pytest.raises(ValueError, match=r"^axis 2 is out of range for a 2-D tensor$"):
        R.nm_mask(np.arange(8.0).reshape(2, 4), "1:2", axis=2)
    with pytest.raises(ValueError, match=r"^axis -3 is out of range for a 2-D tensor$"):
        R.compress(np.arange(8.0).reshape(2, 4), "1:2", axis=-3)


# --------------------------------------------------------------------------- BDWP, SR-STE


def brute_conv_masks(w: np.ndarray, n: int, m: int):
    """FF: per (cout, kernel position) groups of M input channels; BP: per (cin, position)
    groups of M output channels. Written as loops over 2-D slices of the kernel."""
    ff = np.zeros(w.shape, bool)
    bp = np.zeros(w.shape, bool)
    for i in range(w.shape[2]):
        for j in range(w.shape[3]):
            ff[:, :, i, j] = brute_mask(w[:, :, i, j], n, m, 1)
            bp[:, :, i, j] = brute_mask(w[:, :, i, j], n, m, 0)
    return ff, bp


@settings(database=None, max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from([(1, 4), (2, 4), (2, 8), (1, 2), (3, 8)]),
       st.integers(1, 10), st.integers(1, 10))
def test_bdwp_linear_masks(seed, nm, out_f, in_f):
    rng = np.random.default_rng(seed)
    w = rng.integers(-4, 5, (out_f, in_f)).astype(np.float32)  # integers: many ties
    ff, bp = R.bdwp_masks(w, NM(*nm))
    np.testing.assert_array_equal(ff, brute_mask(w, *nm, axis=1))  # along in (FF: X W^T)
    np.testing.assert_array_equal(bp, brute_mask(w, *nm, axis=0))  # along out (BP: dY W)
    np.testing.assert_array_equal(R.srste_mask(w, NM(*nm)), ff)
    dense = R.layer_masks(w, "dense", NM(*nm))
    assert dense[0].all() and dense[1].all()
    sr = R.layer_masks(w, "srste", NM(*nm))
    np.testing.assert_array_equal(sr[0], ff)
    np.testing.assert_array_equal(sr[1], ff)
    bd = R.layer_masks(w, "bdwp", NM(*nm))
    np.testing.assert_array_equal(bd[0], ff)
    np.testing.assert_array_equal(bd[1], bp)


@settings(database=None, max_examples=30, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from([(1, 4), (2, 4), (2, 8)]),
       st.integers(1, 9), st.integers(1, 9), st.integers(1, 3), st.integers(1, 3))
def test_bdwp_conv_masks(seed, nm, cout, cin, kh, kw):
    rng = np.random.default_rng(seed)
    w = rng.integers(-3, 4, (cout, cin, kh, kw)).astype(np.float16)
    ff, bp = R.bdwp_masks(w, NM(*nm))
    eff, ebp = brute_conv_masks(w, *nm)
    np.testing.assert_array_equal(ff, eff)
    np.testing.assert_array_equal(bp, ebp)
    np.testing.assert_array_equal(R.srste_mask(w, NM(*nm)), eff)


def test_bdwp_masks_differ_on_a_known_matrix():
    # rows = outputs, columns = inputs; 1:2 along inputs picks per row, along outputs per column
    w = np.array([[3.0, 1.0],
                  [2.0, 4.0]], np.float32)
    ff, bp = R.bdwp_masks(w, "1:2")
    np.testing.assert_array_equal(ff, [[1, 0], [0, 1]])
    np.testing.assert_array_equal(bp, [[1, 0], [0, 1]])
    w = np.array([[3.0, 1.0],
                  [4.0, 2.0]], np.float32)
    ff, bp = R.bdwp_masks(w, "1:2")
    np.testing.assert_array_equal(ff, [[1, 0], [1, 0]])
    np.testing.assert_array_equal(bp, [[0, 0], [1, 1]])


def test_mask_axis_helpers_reject_other_ranks():
    for fn in (R.ff_axis, R.bp_axis):
        with pytest.raises(ValueError, match=r"^weights must be 2-D \(linear\) or 4-D \(conv\), "
                                             r"not 3-D$"):
            fn(3)
    with pytest.raises(ValueError, match="not 1-D"):
        R.bdwp_masks(np.ones(4), "2:4")
    with pytest.raises(ValueError, match=r"^unknown Method 'sparse' \(choose from dense, srste, "
                                         r"bdwp\)$"):
        R.layer_masks(np.ones((4, 4)), "sparse", "2:4")
