"""Compressed N:M format: compress/decompress, pack/unpack, byte sizes.

Byte sizes are checked against arithmetic written here (slots x value bytes + the index
bits rounded up to whole bytes, index bits = the smallest b with 2**b >= M), and the
packed layout against hand-assembled bytes.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from nmsat import reference as R
from nmsat.arith import ceil_div
from nmsat.types import NM, DType


def index_bits(m: int) -> int:
    b = 0
    while (1 << b) < m:
        b += 1
    return b


def expected_bytes(shape, n, m, axis, value_bytes):
    others = 1
    for i, s in enumerate(shape):
        if i != axis % len(shape):
            others *= s
    slots = others * ceil_div(shape[axis], m) * n
    return slots * value_bytes + ceil_div(slots * index_bits(m), 8)


def representable(rng, dtype: str, shape):
    """Random values exactly representable in ``dtype``, with zeros and ties mixed in."""
    if dtype == "int8":
        x = rng.integers(-128, 128, shape).astype(np.int8)
    elif dtype == "int16":
        x = rng.integers(-32768, 32768, shape).astype(np.int16)
    elif dtype == "fp16":
        x = (rng.standard_normal(shape) * 4).astype(np.float16)
    else:  # bf16: float32 with the low 16 bits zero
        x = ((rng.standard_normal(shape) * 4).astype(np.float32).view(np.uint32)
             & np.uint32(0xFFFF0000)).view(np.float32)
    x.reshape(-1)[:: 3] = 0
    return x


@st.composite
def cases(draw):
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=9))
    axis = draw(st.integers(-len(shape), len(shape) - 1))
    m = draw(st.integers(1, 9))
    n = draw(st.integers(1, m))
    dtype = draw(st.sampled_from(["int8", "int16", "fp16", "bf16"]))
    seed = draw(st.integers(0, 2**32 - 1))
    return shape, axis, n, m, dtype, seed


@settings(database=None, max_examples=150, deadline=None)
@given(cases())
def test_compress_decompress_pack_unpack(case):
    shape, axis, n, m, dtype, seed = case
    x = representable(np.random.default_rng(seed), dtype, shape)
    ax = axis % len(shape)
    nm = NM(n, m)
    mask = R.nm_mask(x, nm, axis)
    c = R.compress(x, nm, axis)

    # layout: axis replaced by groups*N, indices in increasing order within each group
    groups = ceil_div(shape[ax], m)
    cshape = list(shape)
    cshape[ax] = groups * n
    assert c.values.shape == tuple(cshape) and c.indices.shape == tuple(cshape)
    assert c.groups == groups and c.axis == ax and c.shape == tuple(shape)
    idx = np.moveaxis(c.indices, ax, -1).reshape(-1, groups, n).astype(int)
    assert (idx < m).all()
    assert (np.diff(idx, axis=-1) > 0).all()

    # decompress(compress(x)) == x * mask, exactly
    np.testing.assert_array_equal(R.decompress(c), np.where(mask, x, 0))
    assert R.decompress(c).dtype == x.dtype

    # pack: exact length; unpack: the same values (bit for bit) and indices
    data = R.pack(c, dtype)
    assert len(data) == R.compressed_bytes(shape, nm, axis, dtype)
    assert len(data) == expected_bytes(shape, n, m, axis, 1 if dtype == "int8" else 2)
    u = R.unpack(data, shape, nm, axis, dtype)
    assert u.shape == c.shape and u.axis == c.axis and u.nm == c.nm
    np.testing.assert_array_equal(u.indices, c.indices)
    width = {"int8": np.uint8, "int16": np.uint16, "fp16": np.uint16, "bf16": np.uint32}[dtype]
    np.testing.assert_array_equal(np.ascontiguousarray(u.values).view(width),
                                  np.ascontiguousarray(c.values).view(width))
    np.testing.assert_array_equal(R.decompress(u), np.where(mask, x, 0))


@pytest.mark.parametrize("shape, nm, fraction", [
    ((4, 8), "2:4", 0.5625),       # fp16: (2*16 + 2*2) bits per 4 weights / 64 bits
    ((4, 16), "2:8", 0.296875),    # (2*16 + 2*3) / 128
    ((16, 64), "1:4", 0.28125),    # (16 + 2) / 64
    ((4, 8), "4:8", 0.59375),      # (4*16 + 4*3) / 128
    ((2, 16), "1:16", 0.078125),   # (16 + 4) / 256
])
def test_compressed_bytes_fp16_fractions(shape, nm, fraction):
    got = R.compressed_bytes(shape, nm, 1, "fp16")
    assert got == fraction * R.dense_bytes(shape, "fp16")
    assert R.dense_bytes(shape, DType.FP16) == 2 * math.prod(shape)


@pytest.mark.parametrize("shape, nm, axis, dtype, expect", [
    ((1, 5), "2:4", 1, "int8", 4 + 1),   # groups 2 (one partial): 4 slots, 8 index bits
    ((3,), "1:3", 0, "fp16", 2 + 1),     # 1 slot, 2 bits -> 1 byte
    ((7, 3), "2:8", 0, "bf16", 12 + 3),  # 6 slots of 3 bits = 18 bits -> 3 bytes
    ((2, 2), "1:1", 1, "int16", 8),      # dense 1:1: no index bits
    ((1, 600), "1:512", 1, "int8", 2 + 3),  # 2 slots of 9 bits = 18 bits -> 3 bytes
])
def test_compressed_bytes_hand_values(shape, nm, axis, dtype, expect):
    assert R.compressed_bytes(shape, nm, axis, dtype) == expect


def test_pack_layout_by_hand():
    # 1:4 int8 along axis 1: values 5 (index 2) and -3 (index 3); indices LSB first, 2 bits
    x = np.array([[0, 0, 5, 0, 0, 0, 0, -3]], np.int8)
    c = R.compress(x, "1:4", 1)
    np.testing.assert_array_equal(c.values, [[5, -3]])
    np.testing.assert_array_equal(c.indices, [[2, 3]])
    assert R.pack(c, "int8") == bytes([0x05, 0xFD, 0b0000_1110])
    # fp16 little-endian values: 1.0 = 0x3C00, -2.0 = 0xC000; 2:4 indices 1, 3 -> 0b1101
    x = np.array([0, 1, 0, -2], np.float16)
    assert R.pack(R.compress(x, "2:4"), "fp16") == bytes([0x00, 0x3C, 0x00, 0xC0, 0b1101])
    # bf16 stores the top 16 bits of the float32: 1.5 = 0x3FC00000 -> 0x3FC0
    x = np.array([1.5, 0, 0, 0], np.float32)
    assert R.pack(R.compress(x, "1:4"), "bf16") == bytes([0xC0, 0x3F, 0x00])


def test_compress_with_explicit_mask():
    x = np.array([4.0, 3.0, 2.0, 1.0, 8.0, 7.0, 6.0, 5.0], np.float32)
    mask = np.array([0, 0, 1, 0, 0, 0, 0, 0], bool)  # fewer than N kept in both groups
    c = R.compress(x, "2:4", mask=mask)
    # kept positions first, then the lowest unkept ones (value 0), in increasing order
    np.testing.assert_array_equal(c.indices, [0, 2, 0, 1])
    np.testing.assert_array_equal(c.values, [0.0, 2.0, 0.0, 0.0])
    np.testing.assert_array_equal(R.decompress(c), np.where(mask, x, 0))
    with pytest.raises(ValueError, match=r"^mask keeps more than N=2 elements in some group "
                                         r"of M=4$"):
        R.compress(x, "2:4", mask=np.array([1, 1, 1, 0, 0, 0, 0, 0], bool))
    with pytest.raises(ValueError, match=r"^mask shape \(2, 4\) does not match tensor shape "
                                         r"\(8,\)$"):
        R.compress(x, "2:4", mask=np.ones((2, 4), bool))


def test_partial_group_padding_slots():
    # 3:4 on length 6: second group has r = 2 real elements; its third slot is padding
    x = np.array([1, 2, 3, 4, 5, 6], np.float32)
    c = R.compress(x, "3:4")
    np.testing.assert_array_equal(c.values, [2, 3, 4, 5, 6, 0])
    np.testing.assert_array_equal(c.indices, [1, 2, 3, 0, 1, 2])  # 2 >= r: a padding position
    np.testing.assert_array_equal(R.decompress(c), [0, 2, 3, 4, 5, 6])


def test_large_m_indices_do_not_wrap():
    # bug fixed: indices were stored as uint8, so index 511 of 1:512 wrapped to 255
    x = np.arange(600, dtype=np.float32)[None, :]
    c = R.compress(x, "1:512", 1)
    np.testing.assert_array_equal(c.indices, [[511, 87]])
    np.testing.assert_array_equal(R.decompress(c), np.where(R.nm_mask(x, "1:512", 1), x, 0))
    u = R.unpack(R.pack(c, "fp16"), x.shape, "1:512", 1, "fp16")
    np.testing.assert_array_equal(u.indices, [[511, 87]])


def test_unpack_rejects_wrong_length():
    c = R.compress(np.arange(8, dtype=np.int8), "1:4")
    data = R.pack(c, "int8")
    assert len(data) == 3
    with pytest.raises(ValueError, match=r"^packed N:M data has 4 bytes, expected 3$"):
        R.unpack(data + b"\0", (8,), "1:4", 0, "int8")
    with pytest.raises(ValueError, match=r"^packed N:M data has 2 bytes, expected 3$"):
        R.unpack(data[:2], (8,), "1:4", 0, "int8")


def test_pack_rejects_out_of_range_int_values():
    c = R.compress(np.array([300, 0, 0, 0], np.int16), "1:4")
    with pytest.raises(ValueError, match=r"^int8 operand out of range \[-128, 127\]$"):
        R.pack(c, "int8")
