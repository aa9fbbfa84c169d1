"""The Amaranth float/int arithmetic against NumPy, bit for bit (Amaranth simulator)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nmsat.rtl.fp import BF16, CANONICAL_NAN, FP16, FP32, F32Add, FloatMul, IntMac, same_bits
from nmsat.rtl.tb.amsim import run_comb

F32 = np.float32


def _f32_bits(x) -> int:
    return int(np.array(x, F32).view(np.uint32))


def _rtl_add(pairs):
    out = run_comb(F32Add(), [{"a": int(a), "b": int(b)} for a, b in pairs], ["s"])
    return np.array([o[0] for o in out], np.uint64)


def _ref_add(pairs):
    a = np.array([p[0] for p in pairs], np.uint32).view(F32)
    b = np.array([p[1] for p in pairs], np.uint32).view(F32)
    with np.errstate(all="ignore"):
        return (a + b).view(np.uint32)


def _to64(fmt, u):
    with np.errstate(invalid="ignore"):  # signalling NaN patterns
        return _to64_raw(fmt, np.asarray(u, np.uint64))


def _to64_raw(fmt, u):
    if fmt is FP16:
        return u.astype(np.uint16).view(np.float16).astype(np.float64)
    if fmt is BF16:
        return (u.astype(np.uint32) << 16).view(F32).astype(np.float64)
    return u.astype(np.uint32).view(F32).astype(np.float64)


def _check_mul(fmt, pairs):
    out = run_comb(FloatMul(fmt), [{"a": int(a), "b": int(b)} for a, b in pairs], ["p"])
    got = np.array([o[0] for o in out], np.uint64)
    a = _to64(fmt, [p[0] for p in pairs])
    b = _to64(fmt, [p[1] for p in pairs])
    with np.errstate(all="ignore"):
        ref = (a * b).astype(F32).view(np.uint32)  # exact in float64, rounded once
    bad = np.where(~same_bits(got, ref))[0]
    assert not len(bad), [(hex(pairs[i][0]), hex(pairs[i][1]), hex(int(got[i])), hex(ref[i]))
                          for i in bad[:5]]


def _check_add(pairs):
    got, ref = _rtl_add(pairs), _ref_add(pairs)
    bad = np.where(~same_bits(got, ref))[0]
    assert not len(bad), [(hex(pairs[i][0]), hex(pairs[i][1]), hex(int(got[i])), hex(ref[i]))
                          for i in bad[:5]]


# ------------------------------------------------------------------ directed corners

ONE = 0x3F800000
ADD_CORNERS = [
    (0x00000000, 0x00000000), (0x80000000, 0x80000000), (0x00000000, 0x80000000),
    (0x80000000, 0x00000000), (ONE, ONE | 1 << 31),                       # x - x = +0
    (0x007FFFFF, 0x00000001), (0x00000001, 0x80000002),                   # subnormals
    (0x00800000, 0x80000001), (0x00800001, 0x80800000),                   # normal -> subnormal
    (ONE, _f32_bits(2.0 ** -24)), (ONE + 1, _f32_bits(2.0 ** -24)),       # ties to even
    (ONE, _f32_bits(2.0 ** -24 + 2.0 ** -40)), (ONE, _f32_bits(-(2.0 ** -25))),
    (ONE, _f32_bits(-(2.0 ** -24))), (ONE, _f32_bits(-(2.0 ** -24) * 3)),
    (_f32_bits(1.0000001), ONE | 1 << 31),                                # cancellation
    (0x4B000001, 0xCB000000), (0x3FFFFFFF, 0xBFFFFFFE),
    (0x7F7FFFFF, 0x7F7FFFFF), (0x7F7FFFFF, 0x73000000), (0x7F7FFFFF, 0x72FFFFFF),  # overflow
    (0xFF7FFFFF, 0xFF7FFFFF), (0x7F800000, 0x3F800000), (0x7F800000, 0xFF800000),
    (0xFF800000, 0xFF800000), (0x7FC00001, ONE), (ONE, 0xFFC12345), (0x7F800000, 0x7FA00000),
    (ONE, 0x00000001), (0x00000001, 0x7F7FFFFF),                          # huge exponent gap
]


def test_add_corners():
    _check_add(ADD_CORNERS)


def test_add_nan_is_canonical_and_ties_documented():
    out = _rtl_add([(0x7F800000, 0xFF800000), (0x7FC00001, ONE)])
    assert list(out) == [CANONICAL_NAN, CANONICAL_NAN]
    assert _rtl_add([(ONE, _f32_bits(2.0 ** -24))])[0] == ONE  # tie -> even (down)
    assert _rtl_add([(ONE + 1, _f32_bits(2.0 ** -24))])[0] == ONE + 2  # tie -> even (up)


MUL16_CORNERS = [(0x0001, 0x0001), (0x0001, 0x3C00), (0x03FF, 0x03FF), (0x7BFF, 0x7BFF),
                 (0x8001, 0x0001), (0x0000, 0x8000), (0x7C00, 0x0000), (0x7C00, 0xFC00),
                 (0x7E01, 0x3C00), (0x3C00, 0xBC00), (0x8000, 0x8000), (0x0400, 0x0400)]
MULBF_CORNERS = [(0x7F7F, 0x7F7F), (0x7F7F, 0x3F80), (0x0001, 0x0001), (0x0080, 0x0080),
                 (0x0001, 0x3F80), (0x00FF, 0x3F01), (0x0081, 0x3E80), (0x0081, 0x3EC0),
                 (0x0083, 0x3F00), (0x1F80, 0x1F80), (0x2000, 0x1F80), (0x0001, 0x4000),
                 (0x7F80, 0x0000), (0xFF80, 0x3F80), (0x7FC1, 0x3F80), (0x8000, 0x0001),
                 (0x5F80, 0x5F80), (0x5FFF, 0x5FFF), (0x1FC0, 0x1F81)]


def test_mul_corners():
    _check_mul(FP16, MUL16_CORNERS)
    _check_mul(BF16, MULBF_CORNERS)
    _check_mul(FP32, [(0x7F7FFFFF, 0x3F800001), (0x00000001, 0x3F000000),
                      (0x00000003, 0x3F000000), (0x00800000, 0x3F7FFFFF), (0x3FFFFFFF, 0x3FFFFFFF)])


def test_fp16_products_are_exact():
    rng = np.random.default_rng(5)
    pairs = [tuple(int(v) for v in p) for p in rng.integers(0, 1 << 16, (300, 2))]
    pairs = [(a, b) for a, b in pairs if (a >> 10) & 31 != 31 and (b >> 10) & 31 != 31]
    out = run_comb(FloatMul(FP16), [{"a": a, "b": b} for a, b in pairs], ["p"])
    exact = _to64(FP16, [p[0] for p in pairs]) * _to64(FP16, [p[1] for p in pairs])
    assert np.array_equal(np.array([o[0] for o in out], np.uint32).view(F32), exact)


# ------------------------------------------------------------------ random (hypothesis)

def _f32(sign, exp, frac):
    return sign << 31 | exp << 23 | frac


near = st.tuples(st.integers(0, 1), st.integers(0, 254), st.integers(0, (1 << 23) - 1),
                 st.integers(0, 1), st.integers(-26, 26), st.integers(0, (1 << 23) - 1))


@settings(max_examples=25, deadline=None)
@given(st.lists(near, min_size=40, max_size=40))
def test_add_close_exponents(items):
    pairs = [(_f32(s, e, f), _f32(t, min(254, max(0, e + d)), g)) for s, e, f, t, d, g in items]
    _check_add(pairs)


@settings(max_examples=15, deadline=None)
@given(st.lists(st.tuples(st.integers(0, (1 << 32) - 1), st.integers(0, (1 << 32) - 1)),
                min_size=40, max_size=40))
def test_add_any_bits(pairs):
    _check_add(pairs)


@settings(max_examples=15, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1), st.integers(0, 3), st.integers(0, (1 << 23) - 1),
                          st.integers(0, 1), st.integers(0, 3), st.integers(0, (1 << 23) - 1)),
                min_size=40, max_size=40))
def test_add_subnormal_region(items):
    _check_add([(_f32(s, e, f), _f32(t, u, g)) for s, e, f, t, u, g in items])


@pytest.mark.parametrize("fmt", [FP16, BF16], ids=["fp16", "bf16"])
@settings(max_examples=15, deadline=None)
@given(data=st.data())
def test_mul_random(fmt, data):
    word = st.integers(0, (1 << fmt.width) - 1)
    _check_mul(fmt, data.draw(st.lists(st.tuples(word, word), min_size=40, max_size=40)))


@settings(max_examples=10, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1), st.integers(0, 40), st.integers(0, 127),
                          st.integers(0, 1), st.integers(0, 255), st.integers(0, 127)),
                min_size=40, max_size=40))
def test_bf16_mul_underflow_region(items):
    """Products near and below fp32's subnormal range, where bf16 products round."""
    bf = lambda s, e, f: s << 15 | e << 7 | f
    _check_mul(BF16, [(bf(s, e, f), bf(t, u, g)) for s, e, f, t, u, g in items])


@pytest.mark.parametrize("width", [8, 16])
def test_int_mac_wraps(width):
    rng = np.random.default_rng(width)
    lo, hi = -(1 << (width - 1)), (1 << (width - 1)) - 1
    a = rng.integers(lo, hi + 1, 200)
    b = rng.integers(lo, hi + 1, 200)
    acc = rng.integers(-(1 << 31), 1 << 31, 200)
    a[:4], b[:4], acc[:4] = [lo, lo, hi, lo], [lo, hi, hi, lo], [2**31 - 1, -(2**31), 2**31 - 1, -1]
    out = run_comb(IntMac(width), [{"a": int(x), "b": int(y), "acc": int(c)} for x, y, c in
                                   zip(a, b, acc)], ["s"])
    ref = ((acc + a * b + 2**31) % 2**32 - 2**31)
    assert [o[0] for o in out] == list(ref)
