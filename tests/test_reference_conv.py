"""Convolution lowered to GEMM: FF against direct convolution, BP and WG as adjoints.

With integer-valued data every float64 product and sum (and col2im's fp32 adds) is exact,
so the adjoint identities hold with ``==``, not a tolerance.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from nmsat import reference as R


def exact_matmul(a, b):
    return a.astype(np.float64) @ b.astype(np.float64)


@st.composite
def geometries(draw):
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    depthwise = draw(st.booleans())
    cg = 1 if depthwise else draw(st.integers(1, 3))
    c = groups * cg if not depthwise else draw(st.integers(1, 4))
    if depthwise:
        groups = c  # one input channel per group
    og = draw(st.integers(1, 2)) if depthwise else draw(st.integers(1, 3))
    g = dict(n=draw(st.integers(1, 2)), c=c, h=draw(st.integers(1, 7)), w=draw(st.integers(1, 7)),
             cout=groups * og, kh=draw(st.integers(1, 3)), kw=draw(st.integers(1, 3)),
             stride=draw(st.integers(1, 3)), padding=draw(st.integers(0, 2)), groups=groups)
    assume(g["h"] + 2 * g["padding"] >= g["kh"] and g["w"] + 2 * g["padding"] >= g["kw"])
    return R.ConvGeom(**g), draw(st.integers(0, 2**32 - 1))


def tensors(g: R.ConvGeom, seed: int, integer: bool):
    rng = np.random.default_rng(seed)
    shapes = [(g.n, g.c, g.h, g.w), (g.cout, g.c // g.groups, g.kh, g.kw),
              (g.n, g.cout, g.ho, g.wo)]
    if integer:
        return [rng.integers(-4, 5, s).astype(np.float64) for s in shapes]
    return [rng.standard_normal(s) for s in shapes]


def loop_conv(x, w, g: R.ConvGeom):
    """Plain loops over every output element: an independent direct convolution."""
    y = np.zeros((g.n, g.cout, g.ho, g.wo))
    og, cg = g.cout // g.groups, g.c // g.groups
    for n in range(g.n):
        for o in range(g.cout):
            base = (o // og) * cg
            for oh in range(g.ho):
                for ow in range(g.wo):
                    s = 0.0
                    for c in range(cg):
                        for i in range(g.kh):
                            for j in range(g.kw):
                                h = oh * g.stride + i - g.padding
                                v = ow * g.stride + j - g.padding
                                if 0 <= h < g.h and 0 <= v < g.w:
                                    s += x[n, base + c, h, v] * w[o, c, i, j]
                    y[n, o, oh, ow] = s
    return y


@settings(database=None, max_examples=60, deadline=None)
@given(geometries())
def test_conv_ff_equals_direct(case):
    g, seed = case
    x, w, _ = tensors(g, seed, integer=True)
    y = R.conv_ff(x, w, g, exact_matmul)
    assert y.shape == (g.n, g.cout, g.ho, g.wo)
    np.testing.assert_array_equal(y, R.conv_direct(x, w, g))
    np.testing.assert_array_equal(y, loop_conv(x, w, g))


@settings(database=None, max_examples=60, deadline=None)
@given(geometries())
def test_conv_bp_and_wg_are_adjoints(case):
    g, seed = case
    x, w, dy = tensors(g, seed, integer=True)
    y = R.conv_ff(x, w, g, exact_matmul)
    dx = R.conv_bp(dy, w, g, exact_matmul)
    dw = R.conv_wg(x, dy, g, exact_matmul)
    assert dx.shape == x.shape and dw.shape == w.shape
    lhs = float(np.sum(y * dy))
    assert lhs == float(np.sum(x * dx))  # <conv(x, w), dy> = <x, conv_bp(dy, w)>
    assert lhs == float(np.sum(w * dw))  # <conv(x, w), dy> = <w, conv_wg(x, dy)>


@settings(database=None, max_examples=25, deadline=None)
@given(geometries())
def test_conv_bp_wg_adjoint_real_values(case):
    g, seed = case
    x, w, dy = tensors(g, seed, integer=False)
    lhs = np.sum(R.conv_ff(x, w, g, exact_matmul) * dy)
    scale = np.sum(np.abs(R.conv_ff(np.abs(x), np.abs(w), g, exact_matmul) * dy)) + 1e-300
    # col2im adds in fp32: relative error bounded by (kh*kw + 1) float32 roundings
    assert abs(lhs - np.sum(x * R.conv_bp(dy, w, g, exact_matmul))) <= (
        (g.kh * g.kw + 2) * 2.0 ** -24 * scale)
    assert abs(lhs - np.sum(w * R.conv_wg(x, dy, g, exact_matmul))) <= 1e-12 * scale


def test_conv_direct_against_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(7)
    for g in [R.ConvGeom(2, 4, 6, 5, 6, 3, 3, stride=2, padding=1, groups=2),
              R.ConvGeom(1, 3, 5, 5, 3, 3, 2, stride=1, padding=2, groups=3),
              R.ConvGeom(1, 2, 4, 4, 4, 1, 1)]:
        x = rng.standard_normal((g.n, g.c, g.h, g.w))
        w = rng.standard_normal((g.cout, g.c // g.groups, g.kh, g.kw))
        ref = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(w),
                                         stride=g.stride, padding=g.padding,
                                         groups=g.groups).numpy()
        np.testing.assert_allclose(R.conv_direct(x, w, g), ref, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(R.conv_ff(x, w, g, exact_matmul), ref, rtol=1e-12, atol=1e-12)


def test_im2col_k_order():
    # K = (kernel row, kernel column, channel), channel fastest
    g = R.ConvGeom(n=2, c=3, h=4, w=5, cout=1, kh=2, kw=3, stride=2, padding=1)
    x = np.arange(2 * 3 * 4 * 5, dtype=np.float64).reshape(2, 3, 4, 5) + 1
    cols = R.im2col(x, g)
    assert cols.shape == (2 * g.ho * g.wo, 2 * 3 * 3)
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    for n in range(2):
        for oh in range(g.ho):
            for ow in range(g.wo):
                row = (n * g.ho + oh) * g.wo + ow
                for i in range(2):
                    for j in range(3):
                        for c in range(3):
                            want = xp[n, c, 2 * oh + i, 2 * ow + j]
                            assert cols[row, (i * 3 + j) * 3 + c] == want
    w = np.arange(1 * 3 * 2 * 3).reshape(1, 3, 2, 3)
    wm = R.conv_weight_matrix(w)
    for i in range(2):
        for j in range(3):
            for c in range(3):
                assert wm[0, (i * 3 + j) * 3 + c] == w[0, c, i, j]
    np.testing.assert_array_equal(R.conv_weight_from_matrix(wm, w.shape), w)


def test_col2im_adds_in_fp32_in_kernel_order():
    g = R.ConvGeom(n=1, c=2, h=3, w=3, cout=1, kh=2, kw=2, stride=1, padding=0)
    rng = np.random.default_rng(3)
    cols = (rng.standard_normal((g.ho * g.wo, 2 * 2 * 2)) *
            np.exp2(rng.integers(-20, 20, (g.ho * g.wo, 8)))).astype(np.float32)
    got = R.col2im(cols, g, 2)
    assert got.dtype == np.float32
    c6 = cols.reshape(g.ho, g.wo, 2, 2, 2)
    for c in range(2):
        for h in range(3):
            for v in range(3):
                acc = np.float32(0.0)
                for i in range(2):  # kernel positions in row-major order
                    for j in range(2):
                        oh, ow = h - i, v - j
                        if 0 <= oh < g.ho and 0 <= ow < g.wo:
                            acc = np.float32(acc + c6[oh, ow, i, j, c])
                assert got[0, c, h, v].view(np.uint32) == acc.view(np.uint32)


def test_conv_geometry_errors():
    with pytest.raises(ValueError, match=r"^channels \(3, 4\) must divide into groups=2$"):
        R.ConvGeom(1, 3, 4, 4, 4, 3, 3, groups=2)
    with pytest.raises(ValueError, match=r"^convolution output would be empty$"):
        R.ConvGeom(1, 2, 2, 2, 2, 3, 3)
    g = R.ConvGeom(1, 2, 5, 5, 2, 3, 3, stride=2, padding=1)
    assert (g.ho, g.wo) == (3, 3)
    # bug fixed: stride=0 or groups=0 raised ZeroDivisionError, negative padding a NumPy error
    for kw, msg in [({"stride": 0}, "ConvGeom.stride must be an integer >= 1, not 0"),
                    ({"groups": 0}, "ConvGeom.groups must be an integer >= 1, not 0"),
                    ({"padding": -1}, "ConvGeom.padding must be an integer >= 0, not -1"),
                    ({"stride": 1.5}, "ConvGeom.stride must be an integer >= 1, not 1.5")]:
        with pytest.raises(ValueError) as e:
            R.ConvGeom(1, 2, 5, 5, 2, 3, 3, **kw)
        assert str(e.value) == msg
    with pytest.raises(ValueError, match=r"^ConvGeom.n must be an integer >= 1, not 0$"):
        R.ConvGeom(0, 2, 5, 5, 2, 3, 3)
