"""quantize / bf16_bits: round to nearest even on hand-picked ties, and against exact
rational rounding; N:M pattern parsing errors."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nmsat import reference as R
from nmsat.types import NM, DType

F32 = np.float32


def f32_from_bits(b: int) -> float:
    return float(np.array([b], np.uint32).view(np.float32)[0])


def bf16_value(pattern: int) -> Fraction:
    """Exact value of a finite bf16 pattern; the overflow pattern 0x7F80 counts as 2**128
    (IEEE rounds to infinity exactly when the value would round to 2**128)."""
    mag = pattern & 0x7FFF
    v = Fraction(2) ** 128 if mag == 0x7F80 else Fraction(f32_from_bits(mag << 16))
    return -v if pattern & 0x8000 else v


def exact_bf16(v: Fraction, negative: bool) -> int:
    """Nearest bf16 pattern to the exact value ``v`` (ties to the even pattern)."""
    sign = 0x8000 if negative else 0
    mag = abs(v)
    lo = 0
    hi = 0x7F80
    while hi - lo > 1:  # largest magnitude pattern with value <= mag
        mid = (lo + hi) // 2
        if bf16_value(mid) <= mag:
            lo = mid
        else:
            hi = mid
    if bf16_value(lo) == mag or lo == 0x7F80:
        return sign | lo
    below, above = mag - bf16_value(lo), bf16_value(lo + 1) - mag
    if below < above or (below == above and lo % 2 == 0):
        return sign | lo
    return sign | (lo + 1)


@pytest.mark.parametrize("value, pattern", [
    (1.0 + 2.0 ** -8, 0x3F80),              # tie between 1 and 1 + 2**-7: to even (1)
    (1.0 + 3 * 2.0 ** -8, 0x3F82),          # tie between 1 + 2**-7 and 1 + 2**-6: even
    (-(1.0 + 2.0 ** -8), 0xBF80),
    (-(1.0 + 3 * 2.0 ** -8), 0xBF82),
    (1.0 + 2.0 ** -8 + 2.0 ** -23, 0x3F81),  # just above the tie
    (1.0 + 2.0 ** -8 - 2.0 ** -23, 0x3F80),  # just below
    (f32_from_bits(0x7F7F8000), 0x7F80),    # max bf16 + half an ulp: tie to even = inf
    (f32_from_bits(0x7F7F7FFF), 0x7F7F),
    (f32_from_bits(0x7F7FFFFF), 0x7F80),    # fp32 max rounds up to inf
    (f32_from_bits(0x00008000), 0x0000),    # subnormal tie: to even (0)
    (f32_from_bits(0x00018000), 0x0002),    # subnormal tie: to even (2)
    (f32_from_bits(0x00008001), 0x0001),
    (-0.0, 0x8000), (0.0, 0x0000), (math.inf, 0x7F80), (-math.inf, 0xFF80),
])
def test_bf16_bits_ties(value, pattern):
    assert int(R.bf16_bits(np.array([value], F32))[0]) == pattern
    assert int(R.bf16_bits(np.array([value], np.float64))[0]) == pattern
    q = R.quantize(np.array([value], F32), "bf16")
    assert q.dtype == np.float32 and int(q.view(np.uint32)[0]) == pattern << 16


def test_bf16_nan_stays_nan():
    for b in (0x7F800001, 0xFF800001, 0x7FC00000, 0x7F810000):  # incl. signalling NaNs
        out = int(R.bf16_bits(np.array([b], np.uint32).view(np.float32))[0])
        assert out & 0x7F80 == 0x7F80 and out & 0x7F != 0
        assert out & 0x8000 == (b >> 16) & 0x8000


def test_bf16_from_float64_rounds_once():
    # bug fixed: float64 inputs went float64 -> float32 -> bf16, rounding twice:
    # 1 + 2**-8 + 2**-30 is above the bf16 tie, but its float32 rounding sits on it.
    x = np.array([1 + 2.0 ** -8 + 2.0 ** -30, -(1 + 2.0 ** -8 + 2.0 ** -30),
                  1 + 3 * 2.0 ** -8 - 2.0 ** -30], np.float64)
    np.testing.assert_array_equal(R.bf16_bits(x), [0x3F81, 0xBF81, 0x3F81])
    np.testing.assert_array_equal(R.quantize(x, "bf16"),
                                  [1 + 2.0 ** -7, -(1 + 2.0 ** -7), 1 + 2.0 ** -7])
    # beyond the fp32 range and below the smallest subnormal
    assert int(R.bf16_bits(np.float64(1e39))) == 0x7F80
    assert int(R.bf16_bits(np.float64(-1e-50))) == 0x8000


@settings(database=None, max_examples=300, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_bf16_bits_from_float32_equals_exact_rounding(b):
    x = np.array([b], np.uint32).view(np.float32)
    if np.isnan(x[0]):
        return
    if np.isinf(x[0]):
        assert int(R.bf16_bits(x)[0]) == b >> 16
        return
    assert int(R.bf16_bits(x)[0]) == exact_bf16(Fraction(float(x[0])), bool(b >> 31))


@settings(database=None, max_examples=300, deadline=None)
@given(st.floats(-3.3e38, 3.3e38, allow_nan=False, allow_infinity=False, allow_subnormal=True))
def test_bf16_bits_from_float64_equals_exact_rounding(v):
    got = int(R.bf16_bits(np.array([v], np.float64))[0])
    assert got == exact_bf16(Fraction(v), math.copysign(1.0, v) < 0)


@pytest.mark.parametrize("value, expect", [
    (1 + 2.0 ** -11, 1.0),                     # fp16 tie: to even
    (1 + 3 * 2.0 ** -11, 1 + 2.0 ** -9),
    (65520.0, math.inf),                       # 65504 + half an ulp: tie to even = inf
    (65519.0, 65504.0),
    (2.0 ** -25, 0.0),                         # half the smallest subnormal: to even (0)
    (3 * 2.0 ** -25, 2.0 ** -23),              # subnormal tie: to even
    (1 + 2.0 ** -11 + 2.0 ** -40, 1 + 2.0 ** -10),  # float64 input rounds once
])
def test_quantize_fp16_ties(value, expect):
    q = R.quantize(np.array([value]), "fp16")
    assert q.dtype == np.float16 and float(q[0]) == expect


def test_quantize_integers():
    q = R.quantize(np.array([-128.0, 127.0, 0.0]), "int8")
    assert q.dtype == np.int8 and q.tolist() == [-128, 127, 0]
    assert R.quantize(np.array([-32768, 32767]), DType.INT16).dtype == np.int16
    with pytest.raises(ValueError, match=r"^int8 operand out of range \[-128, 127\]$"):
        R.quantize(np.array([128]), "int8")
    with pytest.raises(ValueError, match=r"^int16 operand out of range \[-32768, 32767\]$"):
        R.quantize(np.array([-32769.0]), "int16")
    with pytest.raises(ValueError, match=r"^int8 operands must be integers$"):
        R.quantize(np.array([1.5]), "int8")
    with pytest.raises(ValueError, match=r"^int8 operands must be integers$"):
        R.quantize(np.array([np.nan]), "int8")
    with pytest.raises(ValueError, match=r"^unknown DType 'fp8' \(choose from int8, int16, "
                                         r"fp16, bf16\)$"):
        R.quantize(np.array([1.0]), "fp8")


@pytest.mark.parametrize("text, msg", [
    ("9:8", "N must be between 1 and M, not 9 (M=8)"),
    ("0:8", "N must be between 1 and M, not 0 (M=8)"),
    ("1:0", "M must be at least 1, not 0"),
    ("2-8", "N:M pattern must look like 2:8, not '2-8'"),
    ("a:8", "N:M pattern must look like 2:8, not 'a:8'"),
    ("2:8:1", "N:M pattern must look like 2:8, not '2:8:1'"),
])
def test_nm_parse_errors(text, msg):
    with pytest.raises(ValueError) as e:
        NM.parse(text)
    assert str(e.value) == msg


def test_nm_properties():
    assert NM.parse("dense") == NM(1, 1) and NM.parse(" 2:8 ") == NM(2, 8)
    assert [NM(1, m).index_bits for m in (1, 2, 3, 4, 5, 8, 9, 16, 512)] == [
        0, 1, 2, 2, 3, 3, 4, 4, 9]
    assert NM(4, 4).dense and not NM(2, 4).dense and NM(2, 8).density == 0.25
    with pytest.raises(ValueError, match=r"^N must be an integer, not 2.0$"):
        NM(2.0, 4)


@settings(database=None, max_examples=200, deadline=None)
@given(st.integers(0x0000, 0x7F7E), st.integers(-3, 3), st.integers(30, 50), st.booleans())
def test_bf16_bits_from_float64_near_ties(pattern, k, shift, negative):
    # values within a few float64 ulps-of-float32 of a bf16 midpoint: where a detour through
    # float32 would round twice
    mid = (bf16_value(pattern) + bf16_value(pattern + 1)) / 2
    v = float(mid * (1 + Fraction(k, 2**shift)))
    if negative:
        v = -v
    got = int(R.bf16_bits(np.array([v], np.float64))[0])
    assert got == exact_bf16(Fraction(v), negative)
