"""The torch N:M masks equal :func:`nmsat.reference.nm_mask`, ties and partial groups included."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

torch = pytest.importorskip("torch")

from nmsat import reference as R
from nmsat.workloads.sparse_torch import NMConv2d, NMLinear, layer_masks_torch, nm_mask_torch

pytestmark = pytest.mark.torch


@st.composite
def nm_patterns(draw):
    m = draw(st.integers(1, 9))
    return draw(st.integers(1, m)), m


# Few distinct magnitudes (with both signs and both zeros) make ties the common case.
TIE_VALUES = [0.0, -0.0, 1.0, -1.0, 0.5, -0.5, 2.0, 3.0, -3.0, 1e-7]


@settings(max_examples=400, deadline=None)
@given(data=st.data(), nm=nm_patterns(),
       dtype=st.sampled_from([np.float16, np.float32, np.float64]))
def test_mask_equals_reference_with_ties(data, nm, dtype):
    shape = data.draw(hnp.array_shapes(min_dims=1, max_dims=4, max_side=11))
    x = data.draw(hnp.arrays(dtype, shape, elements=st.sampled_from(TIE_VALUES)))
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    want = R.nm_mask(x, f"{nm[0]}:{nm[1]}", axis)
    got = nm_mask_torch(torch.from_numpy(x), f"{nm[0]}:{nm[1]}", axis).numpy()
    assert got.dtype == bool and got.shape == want.shape
    np.testing.assert_array_equal(got, want)


@settings(max_examples=200, deadline=None)
@given(data=st.data(), nm=nm_patterns())
def test_mask_equals_reference_any_floats(data, nm):
    shape = data.draw(hnp.array_shapes(min_dims=1, max_dims=3, max_side=20))
    x = data.draw(hnp.arrays(np.float32, shape,
                             elements=st.floats(allow_nan=False, width=32)))
    axis = data.draw(st.integers(0, len(shape) - 1))
    want = R.nm_mask(x, f"{nm[0]}:{nm[1]}", axis)
    got = nm_mask_torch(torch.from_numpy(x), f"{nm[0]}:{nm[1]}", axis).numpy()
    np.testing.assert_array_equal(got, want)


def test_tie_lower_index_wins_and_partial_group():
    x = torch.tensor([1.0, -1.0, 1.0, 0.0, 5.0, 0.0])  # 2:4, then a partial group of 2
    assert nm_mask_torch(x, "2:4").tolist() == [True, True, False, False, True, True]
    z = torch.tensor([0.0, -0.0, 0.0, -0.0, 0.0])  # all ties, partial group of 1 keeps 1
    assert nm_mask_torch(z, "2:4").tolist() == [True, True, False, False, True]


def test_mask_rejects_nan():
    with pytest.raises(ValueError, match="NaN"):
        nm_mask_torch(torch.tensor([1.0, float("nan")]), "1:2")


@pytest.mark.parametrize("method", ["bdwp", "srste", "dense"])
@pytest.mark.parametrize("nm", ["2:8", "1:4", "2:4", "3:5"])
def test_layer_masks_equal_reference_linear(method, nm):
    # Masks come from the fp16 working copy, as in reference.train_step; values close
    # together in fp32 collapse to ties in fp16, which this draw makes likely.
    g = torch.Generator().manual_seed(1)
    w = 1 + torch.randint(0, 4, (24, 40), generator=g) * 1e-4 * torch.randn(24, 40, generator=g)
    w = w.float()
    sparse = method != "dense"
    ff, bp = layer_masks_torch(w, method, nm, sparse_ff=sparse,
                               sparse_bp=sparse and method == "bdwp")
    wq = R.quantize(w.numpy(), "fp16").astype(np.float32)
    rff, rbp = R.layer_masks(wq, method, nm)
    np.testing.assert_array_equal(ff.numpy(), rff)
    np.testing.assert_array_equal(bp.numpy(), rbp)


def test_conv_masks_group_channels_at_fixed_kernel_position():
    conv = NMConv2d(16, 24, 3, padding=1, method="bdwp", nm="2:8")
    conv(torch.zeros(1, 16, 5, 5))
    wq = R.quantize(conv.weight.detach().numpy(), "fp16").astype(np.float32)
    rff, rbp = R.bdwp_masks(wq, "2:8")
    np.testing.assert_array_equal(conv.ff_mask.numpy(), rff)
    np.testing.assert_array_equal(conv.bp_mask.numpy(), rbp)
    # Exactly N of every M input channels at each (cout, kernel position) ...
    assert (conv.ff_mask.reshape(24, 2, 8, 3, 3).sum(2) == 2).all()
    # ... and of every M output channels at each (cin, kernel position).
    assert (conv.bp_mask.reshape(3, 8, 16, 3, 3).sum(1) == 2).all()


def test_conv_whose_channels_m_does_not_divide_stays_dense_in_that_phase():
    stem = NMConv2d(3, 16, 3, method="bdwp", nm="2:8")  # FF groups 3 input channels
    assert (stem.sparse_ff, stem.sparse_bp) == (False, True)
    stem(torch.zeros(1, 3, 4, 4))
    assert stem.ff_mask.all() and stem.bp_mask.float().mean() == 0.25
    lin = NMLinear(10, 6, method="srste", nm="2:8")  # partial groups are fine for linear
    assert (lin.sparse_ff, lin.sparse_bp) == (True, False)
