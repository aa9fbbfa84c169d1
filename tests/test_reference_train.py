"""One training step (linear and conv; dense, SR-STE, BDWP) and the weight update.

References, on the same quantised inputs:

* float64 math written here (masks by brute force, direct convolution loops). The
  engine's fp32 result may differ from it only by fp32 rounding; the stated bound is
  ``|engine - exact| <= (K + kh*kw + 4) * 2**-24 * sum_k |a_k b_k|`` per output (K the
  reduction length, kh*kw the col2im adds of conv BP; every product passes through at
  most that many fp32 additions). A wrong mask, axis or operand is off by O(1).
* torch autograd (float64) of the same masked computation: the mask applied with a
  straight-through estimator, and for BDWP the data gradient taken through the BP mask.
* the weight update: an independent float32 computation, bit for bit.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nmsat import reference as R

F32 = np.float32
U = 2.0 ** -24


def brute_mask(x, n, m, axis):
    x = np.asarray(x, np.float64)
    xv = np.moveaxis(x, axis, -1)
    out = np.zeros(xv.shape, bool)
    for rest in itertools.product(*[range(s) for s in xv.shape[:-1]]):
        for start in range(0, xv.shape[-1], m):
            members = range(start, min(start + m, xv.shape[-1]))
            for k in sorted(members, key=lambda k: (-abs(xv[rest + (k,)]), k))[:n]:
                out[rest + (k,)] = True
    return np.moveaxis(out, -1, axis)


def masks(wq, method, n, m):
    ones = np.ones(wq.shape, bool)
    if method == "dense":
        return ones, ones
    ff = brute_mask(wq, n, m, 1)  # input dimension
    if method == "srste":
        return ff, ff
    return ff, brute_mask(wq, n, m, 0)  # BDWP: output dimension


# -- float64 conv by direct loops over kernel positions (independent of im2col) --------


def conv64(x, w, g):
    xp = np.pad(x, ((0, 0), (0, 0), (g.padding,) * 2, (g.padding,) * 2))
    y = np.zeros((g.n, g.cout, g.ho, g.wo))
    og, cg = g.cout // g.groups, g.c // g.groups
    for o in range(g.cout):
        c0 = (o // og) * cg
        for i in range(g.kh):
            for j in range(g.kw):
                win = xp[:, c0:c0 + cg, i:i + g.stride * g.ho:g.stride,
                         j:j + g.stride * g.wo:g.stride]
                y[:, o] += np.tensordot(w[o, :, i, j], win, axes=([0], [1]))
    return y


def conv64_dx(dy, w, g):
    hp, wp = g.h + 2 * g.padding, g.w + 2 * g.padding
    dxp = np.zeros((g.n, g.c, hp, wp))
    og, cg = g.cout // g.groups, g.c // g.groups
    for o in range(g.cout):
        c0 = (o // og) * cg
        for i in range(g.kh):
            for j in range(g.kw):
                rows = slice(i, i + g.stride * g.ho, g.stride)
                cols = slice(j, j + g.stride * g.wo, g.stride)
                dxp[:, c0:c0 + cg, rows, cols] += (w[o, :, i, j][None, :, None, None]
                                                   * dy[:, o][:, None])
    return dxp[:, :, g.padding:g.padding + g.h, g.padding:g.padding + g.w]


def conv64_dw(x, dy, g):
    xp = np.pad(x, ((0, 0), (0, 0), (g.padding,) * 2, (g.padding,) * 2))
    og, cg = g.cout // g.groups, g.c // g.groups
    dw = np.zeros((g.cout, cg, g.kh, g.kw))
    for o in range(g.cout):
        c0 = (o // og) * cg
        for i in range(g.kh):
            for j in range(g.kw):
                win = xp[:, c0:c0 + cg, i:i + g.stride * g.ho:g.stride,
                         j:j + g.stride * g.wo:g.stride]
                dw[o, :, i, j] = np.einsum("nchw,nhw->c", win, dy[:, o])
    return dw


def update32(w, g, v, lr, mu):
    """Weight update with every operation an fp32 scalar operation, element by element."""
    w_new, v_new = np.empty_like(w, F32), np.empty_like(w, F32)
    for idx in np.ndindex(w.shape):
        vn = F32(F32(F32(mu) * F32(v[idx])) + F32(g[idx]))
        w_new[idx] = F32(F32(w[idx]) - F32(F32(lr) * vn))
        v_new[idx] = vn
    return w_new, v_new


CONVS = {
    "conv3x3": R.ConvGeom(n=2, c=8, h=5, w=5, cout=8, kh=3, kw=3, stride=1, padding=1),
    "conv_s2_g2": R.ConvGeom(n=1, c=16, h=6, w=5, cout=16, kh=3, kw=2, stride=2, padding=1,
                             groups=2),
    "dw": R.ConvGeom(n=2, c=4, h=5, w=5, cout=4, kh=3, kw=3, stride=1, padding=1, groups=4),
}


def make_inputs(layer, seed, dtype):
    rng = np.random.default_rng(seed)
    if layer == "linear":
        w = rng.standard_normal((8, 12)).astype(F32) * 0.5  # in = 12: a partial 2:8 group
        x = rng.standard_normal((5, 12)).astype(F32)
        dy = rng.standard_normal((5, 8)).astype(F32)
        return w, x, dy, None
    g = CONVS[layer]
    w = rng.standard_normal((g.cout, g.c // g.groups, g.kh, g.kw)).astype(F32) * 0.5
    x = rng.standard_normal((g.n, g.c, g.h, g.w)).astype(F32)
    dy = rng.standard_normal((g.n, g.cout, g.ho, g.wo)).astype(F32)
    return w, x, dy, g


def float64_step(wq, xq, dyq, w32, m_ff, m_bp, method, g, decay):
    """(y, dx, dw) and their magnitude scales (same math on absolute values)."""
    w_ff, w_bp = wq * m_ff, wq * m_bp

    def phases(x, dy, wf, wb):
        if g is None:
            return x @ wf.T, dy @ wb, dy.T @ x
        return conv64(x, wf, g), conv64_dx(dy, wb, g), conv64_dw(x, dy, g)

    y, dx, dw = phases(xq, dyq, w_ff, w_bp)
    sy, sdx, sdw = phases(np.abs(xq), np.abs(dyq), np.abs(w_ff), np.abs(w_bp))
    if method == "srste":
        d = decay * np.where(m_ff, 0.0, w32.astype(np.float64))
        dw, sdw = dw + d, sdw + np.abs(d)
    return (y, dx, dw), (sy, sdx, sdw)


STEP_CASES = [(layer, method, nm, dtype)
              for layer in ["linear", "conv3x3", "conv_s2_g2"]
              for method in ["dense", "srste", "bdwp"]
              for nm in ["2:4", "2:8"]
              for dtype in ["fp16", "bf16"]
              if not (method == "dense" and nm == "2:8")]


@pytest.mark.parametrize("layer, method, nm, dtype", STEP_CASES)
def test_train_step_against_float64(layer, method, nm, dtype):
    n, m = map(int, nm.split(":"))
    w, x, dy, g = make_inputs(layer, 11, dtype)
    v0 = np.random.default_rng(5).standard_normal(w.shape).astype(F32) * 0.1
    lr, mu, decay = 0.05, 0.9, 2e-4
    s = R.train_step(w, x, dy, method=method, nm=nm, dtype=dtype, lanes=4, act_window=16,
                     lr=lr, momentum=mu, velocity=v0, srste_decay=decay, conv=g)
    wq = R.quantize(w, dtype).astype(np.float64)
    xq = R.quantize(x, dtype).astype(np.float64)
    dyq = R.quantize(dy, dtype).astype(np.float64)
    m_ff, m_bp = masks(wq, method, n, m)
    np.testing.assert_array_equal(s.w_ff.astype(np.float64), np.where(m_ff, wq, 0))
    np.testing.assert_array_equal(s.w_bp.astype(np.float64), np.where(m_bp, wq, 0))
    exact, scale = float64_step(wq, xq, dyq, w, m_ff, m_bp, method, g, decay)
    if g is None:
        ks = [12, 8, 5]
        extra = 0
    else:
        ks = [g.c // g.groups * g.kh * g.kw, g.cout // g.groups, g.n * g.ho * g.wo]
        extra = g.kh * g.kw
    for got, ref, sc, k in zip((s.y, s.dx, s.dw), exact, scale, ks):
        assert got.dtype == np.float32 and got.shape == ref.shape
        assert (np.abs(got - ref) <= (k + extra + 4) * U * sc).all()
    # the update is exactly the fp32 update of the gradient the step produced
    w_new, v_new = update32(w, s.dw, v0, lr, mu)
    np.testing.assert_array_equal(s.w_master.view(np.uint32), w_new.view(np.uint32))
    np.testing.assert_array_equal(s.velocity.view(np.uint32), v_new.view(np.uint32))


def test_train_step_depthwise_runs_dense_and_rejects_nm():
    w, x, dy, g = make_inputs("dw", 2, "fp16")
    s = R.train_step(w, x, dy, method="dense", nm="2:4", conv=g)
    wq, xq = (R.quantize(a, "fp16").astype(np.float64) for a in (w, x))
    assert (np.abs(s.y - conv64(xq, wq, g)) <= 13 * U * conv64(np.abs(xq), np.abs(wq), g)).all()
    with pytest.raises(ValueError, match=r"^N:M conv needs M=4 to divide the input channels "
                                         r"per group \(1\); keep this layer dense$"):
        R.train_step(w, x, dy, method="bdwp", nm="2:4", conv=g)
    g3 = R.ConvGeom(n=1, c=8, h=4, w=4, cout=6, kh=1, kw=1)
    w3 = np.ones((6, 8, 1, 1), F32)
    with pytest.raises(ValueError, match=r"^N:M conv needs M=4 to divide the output channels "
                                         r"per group \(6\); keep this layer dense$"):
        R.train_step(w3, np.ones((1, 8, 4, 4), F32), np.ones((1, 6, 4, 4), F32),
                     method="bdwp", nm="2:4", conv=g3)
    # SR-STE's BP is dense in the engine, so only the input channels must divide
    R.train_step(w3, np.ones((1, 8, 4, 4), F32), np.ones((1, 6, 4, 4), F32),
                 method="srste", nm="2:4", conv=g3)


def test_train_step_rejects_integer_dtypes():
    w, x, dy, _ = make_inputs("linear", 0, "fp16")
    with pytest.raises(ValueError, match=r"^training steps use a float dtype \(fp16 or bf16\)$"):
        R.train_step(w, x, dy, method="dense", nm="2:4", dtype="int8")


# --------------------------------------------------------------------------- torch


class _STE:
    """Mask in the forward pass, identity in the backward pass (straight-through)."""

    @staticmethod
    def make(torch):
        class STE(torch.autograd.Function):
            @staticmethod
            def forward(ctx, w, mask):
                return w * mask

            @staticmethod
            def backward(ctx, grad):
                return grad, None

        return STE


@pytest.mark.parametrize("layer, method, nm, dtype",
                         [c for c in STEP_CASES if c[3] == "fp16"] +
                         [("linear", "bdwp", "2:8", "bf16"), ("conv3x3", "srste", "2:4", "bf16")])
def test_train_step_against_torch_autograd(layer, method, nm, dtype):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    ste = _STE.make(torch)
    w, x, dy, g = make_inputs(layer, 23, dtype)
    decay = 2e-4
    s = R.train_step(w, x, dy, method=method, nm=nm, dtype=dtype, srste_decay=decay, conv=g,
                     lr=0.1, momentum=0.9)
    wq, xq, dyq = (torch.from_numpy(R.quantize(a, dtype).astype(np.float64)) for a in (w, x, dy))
    n, m = map(int, nm.split(":"))
    m_ff, m_bp = (torch.from_numpy(a.astype(np.float64))
                  for a in masks(wq.numpy(), method, n, m))

    def layer_fn(inp, weight):
        if g is None:
            return F.linear(inp, weight)
        return F.conv2d(inp, weight, stride=g.stride, padding=g.padding, groups=g.groups)

    xt = xq.clone().requires_grad_(True)
    wt = wq.clone().requires_grad_(True)
    y = layer_fn(xt, ste.apply(wt, m_ff))
    y.backward(dyq)
    dx = xt.grad
    if method == "bdwp":  # BDWP's data gradient goes through the BP (output-dim) mask
        x2 = xq.clone().requires_grad_(True)
        layer_fn(x2, ste.apply(wq, m_bp)).backward(dyq)
        dx = x2.grad
    dw = wt.grad
    if method == "srste":
        dw = dw + decay * (1 - m_ff) * torch.from_numpy(w.astype(np.float64))

    sc = [np.abs(t.detach().numpy()).max() for t in (y, dx, dw)]
    for got, ref, scale in zip((s.y, s.dx, s.dw), (y.detach(), dx, dw), sc):
        np.testing.assert_allclose(got, ref.numpy(), rtol=0, atol=1e-5 * scale)

    # torch SGD (float32) from the engine's gradient: identical velocity; master weights
    # within 1 ulp of max(|w|, |w'|) (torch's CPU kernel rounds w - lr*v differently from
    # the engine's fl(w - fl(lr*v)); the engine's rounding is pinned bit for bit below)
    p = torch.nn.Parameter(torch.from_numpy(w.copy()))
    opt = torch.optim.SGD([p], lr=0.1, momentum=0.9)
    p.grad = torch.from_numpy(s.dw.copy())
    opt.step()
    np.testing.assert_array_equal(opt.state[p]["momentum_buffer"].numpy(), s.velocity)
    ulp = np.spacing(np.maximum(np.abs(w), np.abs(s.w_master)))
    assert (np.abs(p.detach().numpy() - s.w_master) <= ulp).all()


# --------------------------------------------------------------------------- weight update


@settings(database=None, max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1), st.floats(1e-4, 1.0), st.floats(0.0, 0.99))
def test_weight_update_matches_fp32_scalar_ops(seed, lr, mu):
    rng = np.random.default_rng(seed)
    shape = (3, 5)
    w = (rng.standard_normal(shape) * np.exp2(rng.integers(-10, 10, shape))).astype(F32)
    g = (rng.standard_normal(shape) * np.exp2(rng.integers(-20, 5, shape))).astype(F32)
    v = (rng.standard_normal(shape) * np.exp2(rng.integers(-20, 5, shape))).astype(F32)
    w_new, v_new = R.weight_update(w, g, v, lr, mu)
    ew, ev = update32(w, g, v, lr, mu)
    assert w_new.dtype == np.float32 and v_new.dtype == np.float32
    np.testing.assert_array_equal(w_new.view(np.uint32), ew.view(np.uint32))
    np.testing.assert_array_equal(v_new.view(np.uint32), ev.view(np.uint32))


def test_weight_update_rounds_each_operation_no_fma():
    # Find elements where a fused w - lr*v (one rounding) differs from fl(w - fl(lr*v)).
    rng = np.random.default_rng(1)
    w = rng.uniform(0.5, 1.0, 4096).astype(F32)
    g = rng.uniform(-0.5, 0.5, 4096).astype(F32)
    v = np.zeros(4096, F32)
    lr = F32(0.0123)
    w_new, v_new = R.weight_update(w, g, v, float(lr), 0.9)
    np.testing.assert_array_equal(v_new, g)  # 0.9 * 0 + g
    unfused = (w - (lr * g).astype(F32)).astype(F32)
    # float64 holds w - lr*g exactly here (48-bit product, similar exponents), so one
    # rounding to float32 is the fused result
    fused = (w.astype(np.float64) - np.float64(lr) * g.astype(np.float64)).astype(F32)
    differ = fused != unfused
    assert differ.sum() > 0
    np.testing.assert_array_equal(w_new[differ], unfused[differ])


def test_masks_come_from_the_working_copy():
    # 1 and 1 + 2**-12 differ in fp32 but are both 1.0 in fp16: the SORE sees a tie, which
    # the lower index wins (an fp32 selection would keep index 1)
    w = np.array([[1.0, 1.0 + 2.0 ** -12, 0.25, 0.0]], F32)
    x = np.ones((2, 4), F32)
    dy = np.ones((2, 1), F32)
    s = R.train_step(w, x, dy, method="srste", nm="1:4")
    np.testing.assert_array_equal(s.w_ff, [[1.0, 0.0, 0.0, 0.0]])
    # the update still applies to the fp32 master weights (decay on the pruned ones)
    np.testing.assert_array_equal(s.dw[0, 1], F32(F32(2.0) + F32(F32(2e-4) * w[0, 1])))
