"""A training step through the torch autograd functions matches ``reference.train_step``.

Same fp16-quantised operands on both sides. The reference is the engine: exact fp16
products, fp32 accumulation in its chunk/adder-tree order, col2im adds in fp32. The torch
side runs in float64, so it is exact up to ~2**-53 relative. Stated bound, per output:

    |engine - torch64| <= gamma_d * sum_k |a_k b_k|,   gamma_d = d u / (1 - d u), u = 2**-24

with d = K + kh*kw (+1 for SR-STE's decay add), an upper bound on the fp32 additions any
product passes through (K: the reduction length; kh*kw: conv BP's col2im adds). A wrong
mask, axis or operand is off by O(1) and fails. Masks, the weights each phase uses and
the weight update (:class:`EngineSGD`) must match bit for bit.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from nmsat import reference as R
from nmsat.workloads.sparse_torch import (
    EngineSGD,
    NMConv2dFunction,
    NMLinearFunction,
    layer_masks_torch,
)

pytestmark = pytest.mark.torch
U = 2.0 ** -24
LR, MOM, DECAY = 0.05, 0.9, 2e-4


def gamma(d: int) -> float:
    return d * U / (1 - d * U)


def assert_within(engine: np.ndarray, exact: np.ndarray, abs_sum: np.ndarray, d: int) -> None:
    err = np.abs(engine.astype(np.float64) - exact)
    bound = gamma(d) * abs_sum + 1e-300
    worst = float((err / bound).max())
    assert worst <= 1.0, f"error exceeds the fp32 accumulation bound by {worst:.3g}x"


def q16(a: np.ndarray) -> np.ndarray:
    return R.quantize(a, "fp16").astype(np.float64)


def torch_step(fn, args, x16, w16, ff, bp, dy16, decay, w32=None):
    """Run ``fn`` forward and backward in float64; return (y, dx, dw_wg, dw_total)."""
    x = torch.tensor(x16, requires_grad=True)
    w = torch.tensor(w16, requires_grad=True)
    y = fn.apply(x, w, ff, bp, 0.0, *args)
    y.backward(torch.tensor(dy16))
    dw_wg = w.grad.numpy().copy()
    dw_total = None
    if decay:  # the decay term is taken on the fp32 master weights, as the engine does
        wm = torch.tensor(w32.astype(np.float64), requires_grad=True)
        y2 = fn.apply(torch.tensor(x16), wm, ff, bp, decay, *args)
        y2.backward(torch.tensor(dy16))
        dw_total = wm.grad.numpy()
    return y.detach().numpy(), x.grad.numpy(), dw_wg, dw_total


def _masks(w32, method, sparse_ff, sparse_bp):
    return layer_masks_torch(torch.from_numpy(w32), method, "2:8", sparse_ff=sparse_ff,
                             sparse_bp=sparse_bp)


@pytest.mark.parametrize("method", ["bdwp", "srste"])
@pytest.mark.parametrize("seed", [0, 1])
def test_linear_step_matches_reference(method, seed):
    rng = np.random.default_rng(seed)
    out_f, in_f, batch = 24, 44, 12  # 44: a partial group along in; 24 along out is whole
    w32 = (rng.standard_normal((out_f, in_f)) * 0.3).astype(np.float32)
    x = rng.standard_normal((batch, in_f)).astype(np.float32)
    dy = rng.standard_normal((batch, out_f)).astype(np.float32)
    ref = R.train_step(w32, x, dy, method=method, nm="2:8", dtype="fp16", lanes=4,
                       act_window=16, lr=LR, momentum=MOM, srste_decay=DECAY)
    ff, bp = _masks(w32, method, True, method == "bdwp")
    w16 = q16(w32)
    np.testing.assert_array_equal(torch.where(ff, torch.tensor(w16), 0).numpy(), ref.w_ff)
    np.testing.assert_array_equal(torch.where(bp, torch.tensor(w16), 0).numpy(), ref.w_bp)
    x16, dy16 = q16(x), q16(dy)
    decay = DECAY if method == "srste" else 0.0
    y, dx, dw_wg, dw_total = torch_step(NMLinearFunction, (), x16, w16, ff, bp, dy16, decay,
                                        w32)
    wff = np.abs(ref.w_ff.astype(np.float64))
    wbp = np.abs(ref.w_bp.astype(np.float64))
    assert_within(ref.y, y, np.abs(x16) @ wff.T, in_f)
    assert_within(ref.dx, dx, np.abs(dy16) @ wbp, out_f)
    if method == "bdwp":
        assert_within(ref.dw, dw_wg, np.abs(dy16).T @ np.abs(x16), batch)
    else:
        # SR-STE: dense straight-through WG plus lambda * (1 - mask) * W.
        assert_within(ref.dw, dw_total, np.abs(dy16).T @ np.abs(x16)
                      + DECAY * np.abs(w32) * ~ff.numpy(), batch + 1)


@pytest.mark.parametrize("method", ["bdwp", "srste"])
def test_conv_step_matches_reference(method):
    rng = np.random.default_rng(7)
    n, c, h, wd, cout, k = 2, 16, 5, 6, 8, 3
    geom = R.ConvGeom(n=n, c=c, h=h, w=wd, cout=cout, kh=k, kw=k, stride=1, padding=1)
    w32 = (rng.standard_normal((cout, c, k, k)) * 0.2).astype(np.float32)
    x = rng.standard_normal((n, c, h, wd)).astype(np.float32)
    dy = rng.standard_normal((n, cout, geom.ho, geom.wo)).astype(np.float32)
    ref = R.train_step(w32, x, dy, method=method, nm="2:8", dtype="fp16", lanes=4,
                       act_window=16, lr=LR, momentum=MOM, srste_decay=DECAY, conv=geom)
    ff, bp = _masks(w32, method, True, method == "bdwp")
    w16 = q16(w32)
    np.testing.assert_array_equal(torch.where(ff, torch.tensor(w16), 0).numpy(), ref.w_ff)
    np.testing.assert_array_equal(torch.where(bp, torch.tensor(w16), 0).numpy(), ref.w_bp)
    x16, dy16 = q16(x), q16(dy)
    decay = DECAY if method == "srste" else 0.0
    args = (1, 1, 1)  # stride, padding, groups
    y, dx, dw_wg, dw_total = torch_step(NMConv2dFunction, args, x16, w16, ff, bp, dy16,
                                        decay, w32)
    F = torch.nn.functional
    ax, ady = torch.tensor(np.abs(x16)), torch.tensor(np.abs(dy16))
    abs_y = F.conv2d(ax, torch.tensor(np.abs(ref.w_ff.astype(np.float64))), padding=1)
    abs_dx = torch.nn.grad.conv2d_input(ax.shape, torch.tensor(
        np.abs(ref.w_bp.astype(np.float64))), ady, padding=1)
    abs_dw = torch.nn.grad.conv2d_weight(ax, w32.shape, ady, padding=1)
    assert_within(ref.y, y, abs_y.numpy(), k * k * c)
    assert_within(ref.dx, dx, abs_dx.numpy(), cout + k * k)
    d_wg = n * geom.ho * geom.wo
    if method == "bdwp":
        assert_within(ref.dw, dw_wg, abs_dw.numpy(), d_wg)
    else:
        assert_within(ref.dw, dw_total, abs_dw.numpy()
                      + DECAY * np.abs(w32) * ~ff.numpy(), d_wg + 1)


def test_bound_is_tight_enough_to_catch_a_wrong_mask():
    """The comparison above fails when BP uses the FF mask instead of the BP mask."""
    rng = np.random.default_rng(3)
    w32 = (rng.standard_normal((16, 32)) * 0.3).astype(np.float32)
    dy = rng.standard_normal((8, 16)).astype(np.float32)
    ref = R.train_step(w32, np.ones((8, 32), np.float32), dy, method="bdwp", nm="2:8")
    ff, _ = _masks(w32, "bdwp", True, True)
    dy16 = q16(dy)
    wrong = dy16 @ torch.where(ff, torch.tensor(q16(w32)), 0).numpy()
    with pytest.raises(AssertionError, match="exceeds"):
        assert_within(ref.dx, wrong, np.abs(dy16) @ np.abs(ref.w_bp.astype(np.float64)), 16)


def test_srste_gradient_is_straight_through_plus_decay_bit_exact():
    """With dY = 0 the whole gradient is the decay term, computed as the engine does."""
    rng = np.random.default_rng(5)
    w32 = (rng.standard_normal((16, 24)) * 0.5).astype(np.float32)
    x = rng.standard_normal((4, 24)).astype(np.float32)
    dy = np.zeros((4, 16), np.float32)
    ref = R.train_step(w32, x, dy, method="srste", nm="2:8", srste_decay=DECAY)
    w = torch.tensor(w32, requires_grad=True)
    ff, bp = _masks(w32, "srste", True, False)
    assert torch.equal(ff, bp)  # SR-STE's BP uses the forward-masked weights
    NMLinearFunction.apply(torch.tensor(x), w, ff, bp, DECAY).backward(torch.tensor(dy))
    np.testing.assert_array_equal(w.grad.numpy(), ref.dw)
    assert (w.grad.numpy()[ff.numpy()] == 0).all() and (w.grad.numpy()[~ff.numpy()] != 0).all()
    # The straight-through part: pruned weights get the dense gradient dY^T X.
    w.grad = None
    dy1 = torch.ones(4, 16)
    NMLinearFunction.apply(torch.tensor(x), w, ff, bp, 0.0).backward(dy1)
    np.testing.assert_allclose(w.grad.numpy(), (dy1.T @ torch.tensor(x)).numpy(), rtol=1e-6)


@pytest.mark.parametrize("with_velocity", [False, True])
def test_weight_update_matches_engine_bit_for_bit(with_velocity):
    rng = np.random.default_rng(11)
    w = rng.standard_normal((32, 48)).astype(np.float32)
    g = rng.standard_normal((32, 48)).astype(np.float32)
    v = rng.standard_normal((32, 48)).astype(np.float32) if with_velocity else None
    want_w, want_v = R.weight_update(w, g, np.zeros_like(w) if v is None else v, LR, MOM)
    p = torch.nn.Parameter(torch.from_numpy(w.copy()))
    opt = EngineSGD([p], lr=LR, momentum=MOM)
    if v is not None:
        opt.state[p]["momentum_buffer"] = torch.from_numpy(v.copy())
    p.grad = torch.from_numpy(g)
    opt.step()
    np.testing.assert_array_equal(p.detach().numpy(), want_w)
    np.testing.assert_array_equal(opt.state[p]["momentum_buffer"].numpy(), want_v)
