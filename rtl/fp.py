"""Arithmetic of the tensor engine in Amaranth: float multipliers, the fp32 adder, integer MACs.

The numbers follow ``nmsat.reference`` (docs/architecture.md section 2): IEEE binary32,
round to nearest even, subnormal inputs and results kept (no flush to zero). fp16 x fp16
products are exact in fp32; bf16 x bf16 and fp32 x fp32 products are rounded once.

NaN: every NaN result is the canonical quiet NaN ``0x7FC00000`` (sign 0, payload 0); IEEE
leaves the payload open, NumPy propagates an input's payload, so comparisons treat any two
NaNs as equal (:func:`same_bits`). Inf - Inf and 0 x Inf give that NaN.

The helpers build combinational logic inside an ``elaborate`` (they take the module ``m``);
the components wrap them with stream-free ports for unit tests and per-unit synthesis.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from nmsat.types import DType

F32_BIAS = 127
CANONICAL_NAN = 0x7FC00000
F32_INF = 0x7F800000


@dataclass(frozen=True)
class FloatFormat:
    """An IEEE-style binary format: exponent and fraction widths (bias = 2^(e-1) - 1)."""

    exp_bits: int
    frac_bits: int

    @property
    def width(self) -> int:
        return 1 + self.exp_bits + self.frac_bits

    @property
    def bias(self) -> int:
        return (1 << (self.exp_bits - 1)) - 1


FP16 = FloatFormat(5, 10)
BF16 = FloatFormat(8, 7)
FP32 = FloatFormat(8, 23)


def _bits_for(n: int) -> int:
    return max(1, int(n).bit_length())


# --------------------------------------------------------------------------- building blocks
#
# The datapaths below are written as the structures they should synthesise to, so Yosys
# sees log-depth trees and log shifters rather than priority chains and generic masks:
# a leading-zero counter tree, shifters of log2 stages (the right shifter ORs what it
# drops into a sticky bit), one adder for add/subtract, and rounding as an increment of
# the packed word (a carry out of the significand moves into the exponent field).


def leading_zeros(m: Module, x) -> Signal:
    """Leading-zero count of ``x`` (``len(x)`` when ``x`` is 0), a log-depth tree.

    ``x`` is padded below with ones to a power of two wider than itself, so an all-zero
    ``x`` counts exactly ``len(x)``; each level merges two halves' (all-zero, count)
    pairs with a 2:1 mux per count bit.
    """
    w = len(x)
    n = 1 << _bits_for(w)
    xp = Cat(Const((1 << (n - w)) - 1, n - w), x)
    level = [(~xp[i], None) for i in reversed(range(n))]  # most significant first
    while len(level) > 1:
        nxt = []
        for (zh, ch), (zl, cl) in zip(level[0::2], level[1::2]):
            if ch is None:
                cnt = Mux(zh, Const(1, 1), Const(0, 1))
            else:
                cnt = Mux(zh, Cat(cl, Const(1, 1)), Cat(ch, Const(0, 1)))
            nxt.append((_stage(m, zh & zl, "lz_z"), _stage(m, cnt, "lz_c")))
        level = nxt
    out = Signal(range(n), name="lzc")
    m.d.comb += out.eq(level[0][1])
    return out


def _stage(m: Module | None, value, name: str):
    """``value`` as a named signal (with a module): each shifter stage reads the previous
    one twice, so without a signal per stage the expression tree doubles per stage."""
    if m is None:
        return value
    sig = Signal(len(value), name=name)
    m.d.comb += sig.eq(value)
    return sig


def _shl(x, s, width: int, m: Module | None = None):
    """``(x << s)[:width]`` as ``len(s)`` stages of 2:1 muxes."""
    x = x[:width] if len(x) >= width else Cat(x, Const(0, width - len(x)))
    for i in range(len(s)):
        k = 1 << i
        x = _stage(m, Mux(s[i], 0 if k >= width else Cat(Const(0, k), x[:width - k]), x),
                   f"shl{i}")
    return x


def _shr_sticky(x, s, m: Module | None = None):
    """``x >> s`` with every dropped bit ORed into bit 0 (the sticky position).

    Log stages; a shift amount of ``len(x)`` or more leaves only the sticky bit.
    """
    w = len(x)
    sb = _bits_for(w)  # 2^sb - 1 >= w: the saturated shift drops every bit
    if len(s) > sb:
        s = Mux(s[sb:].any(), (1 << sb) - 1, s[:sb])
    sticky = Const(0, 1)
    for i in range(min(sb, len(s))):
        k = 1 << i
        sticky = sticky | (s[i] & x[:min(k, w)].any())
        x = _stage(m, Mux(s[i], x[k:] if k < w else 0, x), f"shr{i}")
    return Cat(x[0] | sticky, x[1:w])


def _max1(e):
    """``max(e, 1)`` of an unsigned exponent field (the subnormal scale is that of 1)."""
    return Cat(e[0] | (e == 0), e[1:])


def _round_normal(m: Module, sign, t, e, zero, fmt: FloatFormat) -> Signal:
    """Bits in ``fmt`` of ``(-1)^sign * t`` rounded to nearest even, subnormals kept.

    ``t`` has ``frac + 3`` bits: the significand with its leading one at the top (the
    hidden-bit position), ``frac`` fraction bits, a guard bit and a sticky bit (bit 0).
    ``e`` (signed) is the biased exponent of the top bit. Below the normal range the word
    is shifted right (sticky) to the subnormal scale; the rounding increment is added to
    the packed word, so a carry moves into the exponent and the top rounds to Inf.
    ``zero``: the value is 0 (the result is a signed zero).
    """
    frac = fmt.frac_bits
    inf = ((1 << fmt.exp_bits) - 1) << frac
    under = e < 1
    r = Signal(len(e), name="under_shift")
    e1 = Signal(len(e), name="exp_m1")
    m.d.comb += [r.eq(Mux(under, 1 - e, 0)), e1.eq(Mux(under, 0, e - 1))]
    u = _shr_sticky(t, r, m)
    kept = u[2:]
    up = u[1] & (u[0] | u[2])
    packed = Signal(frac + len(e) + 1, name="packed")
    m.d.comb += packed.eq((e1 << frac) + kept + up)
    out = Signal(fmt.width)
    body = fmt.width - 1
    with m.If(zero):
        m.d.comb += out.eq(Cat(Const(0, body), sign))
    with m.Elif(packed >= inf):
        m.d.comb += out.eq(Cat(Const(inf, body), sign))
    with m.Else():
        m.d.comb += out.eq(Cat(packed[:body], sign))
    return out


def round_pack(m: Module, sign, sig: Signal, exp, fmt: FloatFormat | None = None) -> Signal:
    """Bits of ``(-1)^sign * sig * 2^exp`` in ``fmt`` (default fp32), rounded to nearest
    even with subnormals kept.

    ``sig`` is an unsigned integer, ``exp`` a signed value. ``sig`` is normalised by a
    leading-zero count and a left shift, cut to the kept bits, a guard bit and a sticky
    bit, and :func:`_round_normal` rounds and packs it (shifting right first when the
    result is subnormal; RNE overflows to Inf).
    """
    fmt = fmt or FP32
    frac = fmt.frac_bits
    w, rw = len(sig), frac + 3
    lz = leading_zeros(m, sig)
    n = _shl(sig, lz, w, m)  # leading one at bit w - 1
    if w <= rw - 1:  # every bit fits above the sticky bit
        t = Cat(Const(0, rw - w), n)
    else:
        t = Cat(n[:w - rw + 1].any(), n[w - rw + 1:])
    ew = max(len(exp), _bits_for(w + fmt.bias)) + 2
    e = Signal(signed(ew), name="exp_top")
    m.d.comb += e.eq(exp + (w - 1 + fmt.bias) - lz)
    return _round_normal(m, sign, t, e, sig == 0, fmt)


def round_pack_f32(m: Module, sign, sig: Signal, exp) -> Signal:
    """:func:`round_pack` to fp32."""
    return round_pack(m, sign, sig, exp, FP32)


def _unpack(m: Module, bits, fmt: FloatFormat):
    """(sign, significand, exponent of its lsb, is_inf, is_nan, is_zero) of a float."""
    e = bits[fmt.frac_bits:fmt.frac_bits + fmt.exp_bits]
    frac = bits[:fmt.frac_bits]
    sign = bits[fmt.width - 1]
    top = (1 << fmt.exp_bits) - 1
    sig = Signal(fmt.frac_bits + 1)
    exp = Signal(signed(fmt.exp_bits + 3))
    m.d.comb += [sig.eq(Cat(frac, e != 0)),
                 exp.eq(Mux(e == 0, 1, e) - (fmt.bias + fmt.frac_bits))]
    return sign, sig, exp, (e == top) & (frac == 0), (e == top) & (frac != 0), sig == 0


def _exact_in_f32(fmt: FloatFormat) -> bool:
    """Whether every finite nonzero ``fmt x fmt`` product is a normal fp32 number whose
    significand fits fp32's (so it needs normalising but never rounding): fp16."""
    sig = fmt.frac_bits + 1
    lo = 2 * (1 - fmt.bias - fmt.frac_bits)  # exponent of the smallest product (>= 2^lo)
    hi = 2 * (fmt.bias + 1)  # the largest product is below 2^hi
    return 2 * sig <= FP32.frac_bits + 1 and lo >= 1 - FP32.bias and hi <= FP32.bias


def _exact_product(m: Module, sign, a, b, fmt: FloatFormat) -> Signal:
    """fp32 bits of the finite product ``a * b`` when it is exact (:func:`_exact_in_f32`):
    a leading-zero count and a left shift normalise it (the count is 0 or 1 unless an
    input is subnormal), the exponent is the sum of the fields."""
    fb, eb = fmt.frac_bits, fmt.exp_bits
    ea_f, eb_f = a[fb:fb + eb], b[fb:fb + eb]
    ma, mb = Cat(a[:fb], ea_f != 0), Cat(b[:fb], eb_f != 0)
    pw = 2 * (fb + 1)
    prod = Signal(pw)
    m.d.comb += prod.eq(ma * mb)
    lz = leading_zeros(m, prod)
    n = _shl(prod, lz, pw, m)  # leading one at bit pw - 1 (unless the product is 0)
    # value = prod * 2^(ea + eb - 2 (bias + frac)); top bit pw - 1 - lz; fp32 bias 127
    e = Signal(9, name="exp_field")
    m.d.comb += e.eq(_max1(ea_f) + _max1(eb_f)
                     + (pw - 1 + FP32.bias - 2 * (fmt.bias + fb)) - lz)
    out = Signal(32)
    with m.If(prod == 0):
        m.d.comb += out.eq(Cat(Const(0, 31), sign))
    with m.Else():
        m.d.comb += out.eq(Cat(Const(0, FP32.frac_bits - (pw - 1)), n[:pw - 1], e[:8], sign))
    return out


def float_mul(m: Module, a, b, fmt: FloatFormat) -> Signal:
    """fp32 bits of ``a * b`` (both in ``fmt``), the exact product rounded once (RNE).

    fp16 products are exact in fp32 (:func:`_exact_product`: normalise only); bf16 and
    fp32 products go through :func:`round_pack` (bf16 rounds only at fp32's overflow and
    subnormal range).
    """
    sa, ma, ea, ia, na, za = _unpack(m, a, fmt)
    sb, mb, eb, ib, nb, zb = _unpack(m, b, fmt)
    sign = sa ^ sb
    if _exact_in_f32(fmt):
        finite = _exact_product(m, sign, a, b, fmt)
    else:
        prod = Signal(2 * len(ma))
        exp = Signal(signed(len(ea) + 1))
        m.d.comb += [prod.eq(ma * mb), exp.eq(ea + eb)]
        finite = round_pack_f32(m, sign, prod, exp)
    out = Signal(32)
    with m.If(na | nb | (ia & zb) | (ib & za)):
        m.d.comb += out.eq(CANONICAL_NAN)
    with m.Elif(ia | ib):
        m.d.comb += out.eq(Cat(Const(F32_INF, 31), sign))
    with m.Else():
        m.d.comb += out.eq(finite)
    return out


def _pow2(m: Module, k, width: int) -> Signal:
    """``2^k`` as a ``width``-bit one-hot word (a decoder)."""
    oh = Signal(width, name="pow2")
    m.d.comb += oh.eq((Const(1, width) << k)[:width])
    return oh


def _align_dsp(m: Module, sig, d) -> Signal:
    """``(sig << 3) >> d`` for a 24-bit ``sig`` with the dropped bits ORed into bit 0
    (27 bits: guard, round, sticky below the significand), for any 8-bit ``d``.

    ``d`` saturates at 31 (= 16 h + lo); the shift by 15 - lo is a product with a one-hot
    power of two (a DSP), ``(sig << 15) >> lo``; a 2:1 mux takes its bits from 12 or
    (h) 28 up, and the bits below are the dropped ones.
    """
    ds = Mux(d[5:].any(), 31, d[:5])
    h, lo = ds[4], ds[:4]
    prod = Signal(39, name="align_prod")
    m.d.comb += prod.eq(sig * _pow2(m, ~lo, 16))  # ~lo = 15 - lo
    sticky = prod[:12].any() | (h & prod[12:28].any())
    x = Signal(27, name="align_coarse")
    m.d.comb += x.eq(Mux(h, prod[28:], prod[12:]))
    return Cat(x[0] | sticky, x[1:])


def _normalise_dsp(m: Module, total, s):
    """(kept 24 bits, guard, sticky) of ``total << s`` (28 bits, ``s`` <= 28) as
    :func:`f32_add` needs them, with the shift by 0..15 a DSP product.

    The product takes ``total[2:]`` (26 bits): a shift of 3 or more only happens after
    cancellation with exponents at most 1 apart, when ``total[1:0]`` is 0; for shifts of
    0..2 those two bits reach the guard and sticky positions directly.
    """
    x = Signal(26, name="norm_coarse")
    m.d.comb += x.eq(Mux(s[4], Cat(Const(0, 16), total[2:12]), total[2:]))
    y = Signal(42, name="norm_prod")
    m.d.comb += y.eq(x * _pow2(m, s[:4], 16))
    lo = total[0] | total[1]
    guard = y[1] | ((s == 2) & total[1])
    sticky = y[0] | (((s == 0) | (s == 1)) & lo) | ((s == 2) & total[0])
    return y[2:26], guard, sticky


def f32_add(m: Module, a, b, dsp_shifts: bool = True, no_subnormal: bool = False) -> Signal:
    """fp32 bits of ``a + b`` rounded to nearest even, subnormals kept.

    Order the operands by magnitude (one 31-bit compare), align the smaller to the larger
    with 3 extra bits (guard, round, sticky; the right shifter ORs the dropped bits into
    the sticky bit), add or subtract with one adder, normalise with a leading-zero count
    and a left shift limited so the exponent stays >= 1 (subnormal results), then round
    by incrementing the packed word. An exact zero sum is +0 unless both operands are -0
    (round to nearest).

    ``dsp_shifts``: the alignment and normalisation shifts by 0..15 are products with a
    one-hot power of two (two DSPs, about 100 LUTs fewer); otherwise log shifters in LUTs.
    ``no_subnormal``: the caller guarantees that neither operand is subnormal and that no
    finite sum is subnormal or overflows (the PE's fp16 product tree: see
    :meth:`Numeric.tree_add`), so the exponent clamp and the overflow check are left out.
    """
    sa, sb = a[31], b[31]
    ea_f, eb_f = a[23:31], b[23:31]
    ia, na = (ea_f == 255) & (a[:23] == 0), (ea_f == 255) & (a[:23] != 0)
    ib, nb = (eb_f == 255) & (b[:23] == 0), (eb_f == 255) & (b[:23] != 0)
    swap = b[:31] > a[:31]
    big, sml = Signal(31, name="big"), Signal(31, name="sml")
    m.d.comb += [big.eq(Mux(swap, b[:31], a[:31])), sml.eq(Mux(swap, a[:31], b[:31]))]
    big_s = Mux(swap, sb, sa)
    if no_subnormal:
        be, se = big[23:], sml[23:]
    else:
        be, se = _max1(big[23:]), _max1(sml[23:])
    d = Signal(8, name="exp_diff")  # >= 0: |big| >= |sml|
    m.d.comb += d.eq(be - se)
    sml_m = Cat(sml[:23], sml[23:] != 0)
    if dsp_shifts:
        aligned = _align_dsp(m, sml_m, d)
    else:
        aligned = _shr_sticky(Cat(Const(0, 3), sml_m), d, m)
    sub = sa ^ sb
    total = Signal(28, name="total")
    m.d.comb += total.eq(Cat(Const(0, 3), big[:23], big[23:] != 0)
                         + (Cat(aligned, Const(0, 1)) ^ sub.replicate(28)) + sub)
    lz = leading_zeros(m, total)  # 28 when the sum is 0
    s = Signal(5, name="norm_shift")
    m.d.comb += s.eq(lz if no_subnormal else Mux(lz > be, be, lz))  # exponent field >= 1
    if dsp_shifts:
        kept, guard, sticky = _normalise_dsp(m, total, s)
    else:
        n = _shl(total, s, 28, m)
        kept, guard, sticky = n[4:], n[3], n[:3].any()
    up = guard & (sticky | kept[0])
    packed = Signal(33, name="packed")  # exponent field of bit 27 is be + 1 - s
    m.d.comb += packed.eq(((be - s)[:8] << 23) + kept + up)
    out = Signal(32)
    with m.If(na | nb | (ia & ib & sub)):
        m.d.comb += out.eq(CANONICAL_NAN)
    with m.Elif(ia | ib):
        m.d.comb += out.eq(Cat(Const(F32_INF, 31), Mux(ia, sa, sb)))
    with m.Elif(lz == 28):
        m.d.comb += out.eq(Cat(Const(0, 31), sa & sb))
    with m.Elif((packed >= F32_INF) if not no_subnormal else Const(0, 1)):
        m.d.comb += out.eq(Cat(Const(F32_INF, 31), big_s))
    with m.Else():
        m.d.comb += out.eq(Cat(packed[:31], big_s))
    return out


# --------------------------------------------------------------------------- numeric strategies


@dataclass(frozen=True)
class Numeric:
    """What the PE needs from an operand type: widths, the multiplier and the accumulator add.

    One object per :class:`~nmsat.types.DType`; the PE, the array and the tests are
    parameterised by it rather than copied per type.
    """

    dtype: DType

    @property
    def width(self) -> int:
        """Operand bits."""
        return 8 if self.dtype is DType.INT8 else 16

    def mul(self, m: Module, a, b) -> Signal:
        """Product in the accumulator format (fp32 bits or int32)."""
        if self.dtype.is_float:
            return float_mul(m, a, b, FP16 if self.dtype is DType.FP16 else BF16)
        p = Signal(signed(32))
        m.d.comb += p.eq(a.as_signed() * b.as_signed())
        return p

    def add(self, m: Module, x, y) -> Signal:
        """Accumulator-format sum: fp32 RNE, or int32 wrapping."""
        if self.dtype.is_float:
            return f32_add(m, x, y)
        s = Signal(32)
        m.d.comb += s.eq(x + y)
        return s

    def tree_add(self, m: Module, x, y, level: int) -> Signal:
        """:meth:`add` for the PE's pairwise product tree, ``level`` = 1 for the sums of two
        products.

        fp16 products are multiples of 2^-48 and below 2^32, so a nonzero sum at level k
        is at least 2^-(48 + 23 (k - 1)) and below 2^(32 + k): for k <= 4 (P <= 16) neither
        operand nor sum is subnormal and nothing overflows, and the adder leaves those
        cases out (``f32_add(no_subnormal=True)``). int8: the tree's sums are exact in
        16 + k bits, so its adders are that wide. Otherwise the general adder.
        """
        if self.dtype is DType.FP16 and level <= 4:
            return f32_add(m, x, y, no_subnormal=True)
        if self.dtype is DType.INT8 and level <= 16:
            # int8 products lie in [-2^14 + 128, 2^14]: a level-k sum is exact in 16 + k
            # signed bits, so the adder is that wide and the sum is sign-extended.
            w = 15 + level
            s = Signal(signed(32))
            m.d.comb += s.eq(x[:w].as_signed() + y[:w].as_signed())
            return s
        return self.add(m, x, y)

    # ---- host-side views used by drivers and checkers
    def to_bits(self, x: np.ndarray) -> np.ndarray:
        """Operand values -> unsigned bit patterns (uint64)."""
        from nmsat.reference import bf16_bits, quantize

        if self.dtype is DType.BF16:
            return bf16_bits(np.asarray(x, np.float32)).astype(np.uint64)
        q = quantize(np.asarray(x), self.dtype)
        raw = q.view(np.uint16) if self.dtype is not DType.INT8 else q.view(np.uint8)
        return raw.astype(np.uint64)


    def acc_to_bits(self, x: np.ndarray) -> np.ndarray:
        t = np.float32 if self.dtype.is_float else np.int32
        return np.asarray(x, t).view(np.uint32).astype(np.uint64)


def same_bits(a_bits: np.ndarray, b_bits: np.ndarray, is_float: bool = True) -> np.ndarray:
    """Elementwise bit equality of 32-bit words, any NaN equal to any NaN (floats)."""
    a = np.asarray(a_bits, np.uint64).astype(np.uint32)
    b = np.asarray(b_bits, np.uint64).astype(np.uint32)
    if not is_float:
        return a == b
    nan_a = np.isnan(a.view(np.float32))
    nan_b = np.isnan(b.view(np.float32))
    return np.where(nan_a | nan_b, nan_a & nan_b, a == b)


# --------------------------------------------------------------------------- components


class FloatMul(wiring.Component):
    """Combinational ``fmt x fmt -> fp32`` multiplier (exact product rounded once, RNE)."""

    def __init__(self, fmt: FloatFormat):
        self.fmt = fmt
        super().__init__({"a": In(fmt.width), "b": In(fmt.width), "p": Out(32)})

    def elaborate(self, platform) -> Module:
        m = Module()
        m.d.comb += self.p.eq(float_mul(m, self.a, self.b, self.fmt))
        return m


class F32Add(wiring.Component):
    """Combinational fp32 adder (RNE, subnormals kept, canonical NaN); ``dsp_shifts`` and
    ``no_subnormal`` as in :func:`f32_add`."""

    def __init__(self, dsp_shifts: bool = True, no_subnormal: bool = False):
        self.dsp_shifts, self.no_subnormal = dsp_shifts, no_subnormal
        super().__init__({"a": In(32), "b": In(32), "s": Out(32)})

    def elaborate(self, platform) -> Module:
        m = Module()
        m.d.comb += self.s.eq(f32_add(m, self.a, self.b, self.dsp_shifts, self.no_subnormal))
        return m


class IntMac(wiring.Component):
    """Combinational integer multiply-accumulate: ``acc + a * b`` wrapping modulo 2^32."""

    def __init__(self, width: int):
        if width not in (8, 16):
            raise ValueError(f"integer operand width must be 8 or 16, not {width}")
        self.width = width
        super().__init__({"a": In(signed(width)), "b": In(signed(width)),
                          "acc": In(signed(32)), "s": Out(signed(32))})

    def elaborate(self, platform) -> Module:
        m = Module()
        m.d.comb += self.s.eq(self.acc + self.a * self.b)
        return m


__all__ = ["BF16", "CANONICAL_NAN", "FP16", "FP32", "F32Add", "FloatFormat", "FloatMul", "IntMac",
           "Numeric", "f32_add", "f32_to_f16", "float_mul", "leading_zeros", "round_pack",
           "round_pack_f32", "same_bits"]


def f32_to_f16(m: Module, a) -> Signal:
    """fp16 bits of fp32 ``a`` (RNE, subnormals kept, overflow to Inf, NaN -> 0x7E00).

    An fp32 subnormal (below 2^-126) is under half the smallest fp16 subnormal and gives
    a signed zero; a normal one is already normalised, so it goes straight to
    :func:`_round_normal` (13 bits: 11 kept, guard, sticky).
    """
    s, e, f = a[31], a[23:31], a[:23]
    nan, inf = (e == 255) & (f != 0), (e == 255) & (f == 0)
    sig = Cat(f, Const(1, 1))
    t = Cat(sig[:12].any(), sig[12:])
    e16 = Signal(signed(10), name="exp16")
    m.d.comb += e16.eq(e - (F32_BIAS - FP16.bias))
    out = Signal(16)
    with m.If(nan):
        m.d.comb += out.eq(0x7E00)
    with m.Elif(inf):
        m.d.comb += out.eq(Cat(Const(0x7C00, 15), s))
    with m.Else():
        m.d.comb += out.eq(_round_normal(m, s, t, e16, e == 0, FP16))
    return out
