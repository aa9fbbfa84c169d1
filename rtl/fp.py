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

F32_EXP, F32_FRAC, F32_BIAS = 8, 23, 127
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


def leading_one(m: Module, x: Signal) -> Signal:
    """Position of the most significant set bit of ``x`` (0 when ``x`` is 0)."""
    pos = Signal(range(max(2, len(x))))
    for i in range(len(x)):  # later assignments win: the highest set bit
        with m.If(x[i]):
            m.d.comb += pos.eq(i)
    return pos


def round_pack(m: Module, sign, sig: Signal, exp, fmt: FloatFormat | None = None) -> Signal:
    """Bits of ``(-1)^sign * sig * 2^exp`` in ``fmt`` (default fp32), rounded to nearest
    even with subnormals kept.

    ``sig`` is an unsigned integer, ``exp`` a signed value. The result's least significant
    kept bit has weight ``lsb = max(exp + lead - frac, emin)`` (emin = the subnormal lsb);
    the packed word is ``((lsb - emin) << frac) + q`` with ``q`` the rounded significand,
    which carries a rounding overflow into the exponent, and saturates to Inf at the top
    (RNE overflows to Inf).
    """
    fmt = fmt or FP32
    frac, emin = fmt.frac_bits, 1 - fmt.bias - fmt.frac_bits
    inf = ((1 << fmt.exp_bits) - 1) << frac
    w = len(sig)
    lead = leading_one(m, sig)
    ew = max(len(exp), _bits_for(w) + 2) + 2
    lsb = Signal(signed(ew))
    lsb_norm = exp + lead - frac
    m.d.comb += lsb.eq(Mux(lsb_norm > emin, lsb_norm, emin))
    shift = Signal(signed(ew))  # > 0: drop bits (round); <= 0: exact left shift
    m.d.comb += shift.eq(lsb - exp)
    sw = _bits_for(w + 2)
    rsh = Signal(sw)
    lsh = Signal(range(frac + 2))
    m.d.comb += [rsh.eq(Mux(shift > w + 1, w + 1, Mux(shift > 0, shift, 0))),
                 lsh.eq(Mux(shift < 0, -shift, 0))]
    kept = Signal(w)
    m.d.comb += kept.eq(sig >> rsh)
    half = Signal(w + 2)  # bit (rsh - 1): the round bit; bits below it: sticky
    m.d.comb += half.eq(Mux(rsh > 0, Const(1, w + 2) << (rsh - 1)[:sw], 0))
    rnd = (sig & half[:w]).any()
    sticky = (sig & (half[:w] - 1)[:w]).any() & (rsh > 0)
    up = rnd & (sticky | kept[0])
    q = Signal(frac + 2)
    m.d.comb += q.eq(Mux(shift > 0, kept + up, (sig << lsh)[:frac + 2]))
    packed = Signal(ew + frac + 2)
    m.d.comb += packed.eq(((lsb - emin).as_unsigned() << frac) + q)
    out = Signal(fmt.width)
    body = fmt.width - 1
    with m.If(sig == 0):
        m.d.comb += out.eq(Cat(Const(0, body), sign))
    with m.Elif(packed >= inf):
        m.d.comb += out.eq(Cat(Const(inf, body), sign))
    with m.Else():
        m.d.comb += out.eq(Cat(packed[:body], sign))
    return out


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


def float_mul(m: Module, a, b, fmt: FloatFormat) -> Signal:
    """fp32 bits of ``a * b`` (both in ``fmt``), the exact product rounded once (RNE)."""
    sa, ma, ea, ia, na, za = _unpack(m, a, fmt)
    sb, mb, eb, ib, nb, zb = _unpack(m, b, fmt)
    sign = sa ^ sb
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


def f32_add(m: Module, a, b) -> Signal:
    """fp32 bits of ``a + b`` rounded to nearest even, subnormals kept.

    Align the smaller magnitude to the larger with 3 extra bits (guard, round, sticky),
    add or subtract, then :func:`round_pack_f32`. An exact zero sum is +0 unless both
    operands are -0 (round to nearest).
    """
    sa, ma, ea, ia, na, _ = _unpack(m, a, FP32)
    sb, mb, eb, ib, nb, _ = _unpack(m, b, FP32)
    swap = b[:31] > a[:31]
    big_s, big_m, big_e = Mux(swap, sb, sa), Mux(swap, mb, ma), Mux(swap, eb, ea)
    sml_m, sml_e = Mux(swap, ma, mb), Mux(swap, ea, eb)
    d = Signal(range(32))
    diff = big_e - sml_e
    m.d.comb += d.eq(Mux(diff > 30, 30, diff))
    ext = Signal(27)
    m.d.comb += ext.eq(Cat(Const(0, 3), sml_m))
    aligned = Signal(27)
    lost = (ext & ((Const(1, 28) << d)[:27] - 1)[:27]).any()
    m.d.comb += aligned.eq((ext >> d) | lost)
    total = Signal(28)
    m.d.comb += total.eq(Mux(sa ^ sb, Cat(Const(0, 3), big_m) - aligned,
                             Cat(Const(0, 3), big_m) + aligned))
    exp = Signal(signed(12))
    m.d.comb += exp.eq(big_e - 3)
    finite = round_pack_f32(m, big_s, total, exp)
    out = Signal(32)
    with m.If(na | nb | (ia & ib & (sa ^ sb))):
        m.d.comb += out.eq(CANONICAL_NAN)
    with m.Elif(ia | ib):
        m.d.comb += out.eq(Cat(Const(F32_INF, 31), Mux(ia, sa, sb)))
    with m.Elif(total == 0):
        m.d.comb += out.eq(Cat(Const(0, 31), sa & sb))
    with m.Else():
        m.d.comb += out.eq(finite)
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

    acc_width = 32

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

    # ---- host-side views used by drivers and checkers
    def to_bits(self, x: np.ndarray) -> np.ndarray:
        """Operand values -> unsigned bit patterns (uint64)."""
        from nmsat.reference import bf16_bits, quantize

        if self.dtype is DType.BF16:
            return bf16_bits(np.asarray(x, np.float32)).astype(np.uint64)
        q = quantize(np.asarray(x), self.dtype)
        raw = q.view(np.uint16) if self.dtype is not DType.INT8 else q.view(np.uint8)
        return raw.astype(np.uint64)

    def acc_from_bits(self, bits: np.ndarray) -> np.ndarray:
        """Accumulator bit patterns -> fp32 / int32 values."""
        u = np.asarray(bits, np.uint64).astype(np.uint32)
        return u.view(np.float32) if self.dtype.is_float else u.view(np.int32)

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
    """Combinational fp32 adder (RNE, subnormals kept, canonical NaN)."""

    def __init__(self):
        super().__init__({"a": In(32), "b": In(32), "s": Out(32)})

    def elaborate(self, platform) -> Module:
        m = Module()
        m.d.comb += self.s.eq(f32_add(m, self.a, self.b))
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


__all__ = [
    "BF16",
    "CANONICAL_NAN",
    "FP16",
    "FP32",
    "F32Add",
    "FloatFormat",
    "FloatMul",
    "IntMac",
    "Numeric",
    "f32_add",
    "float_mul",
    "round_pack_f32",
    "same_bits",
]


def f32_to_f16(m: Module, a) -> Signal:
    """fp16 bits of fp32 ``a`` (RNE, subnormals kept, overflow to Inf, NaN -> 0x7E00)."""
    s, sig, exp, inf, nan, _ = _unpack(m, a, FP32)
    out = Signal(16)
    with m.If(nan):
        m.d.comb += out.eq(0x7E00)
    with m.Elif(inf):
        m.d.comb += out.eq(Cat(Const(0x7C00, 15), s))
    with m.Else():
        m.d.comb += out.eq(round_pack(m, s, sig, exp, FP16))
    return out
