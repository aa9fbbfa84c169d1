"""N:M sparse layers for PyTorch training: masks, autograd functions, modules, models.

The masks follow :mod:`nmsat.reference` exactly (``tests/test_train_masks.py`` proves
equality with :func:`nmsat.reference.nm_mask`, ties included): groups of M consecutive
elements along the grouping axis keep the N largest magnitudes, the lower index wins a
tie, a trailing partial group of r < M elements keeps min(N, r). As in
:func:`nmsat.reference.train_step`, a layer's masks are selected from the fp16 working
copy of its fp32 master weights (that is what the SORE reads), and recomputed at every
forward pass, i.e. every iteration.

Methods (``docs/architecture.md`` section 3.2):

* **SR-STE**: FF uses ``W * m`` (m grouped along the input dim); BP (dX) uses the same
  masked weights; the weight gradient is the dense straight-through ``dY^T X`` plus the
  SR-STE decay ``lambda * (1 - m) * W``.
* **BDWP**: FF uses the input-dim mask, BP the output-dim mask of W (groups along the
  output dim, i.e. along K of ``dX = dY W``), WG is dense, no decay.

A conv layer groups along input channels (FF) and output channels (BP) at a fixed kernel
position; a conv whose channels per group are not a multiple of M keeps that phase dense
(the same rule as :meth:`nmsat.workloads.layers.Conv2d.nm_applies`).

Torch is an optional dependency: import this module only where torch is wanted.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nmsat.arith import ceil_div
from nmsat.types import NM, Method

__all__ = [
    "CNN",
    "MLP",
    "MODELS",
    "EngineSGD",
    "NMConv2d",
    "NMConv2dFunction",
    "NMLinear",
    "NMLinearFunction",
    "build_model",
    "layer_masks_torch",
    "nm_mask_torch",
    "sparse_modules",
    "working_copy",
]


# --------------------------------------------------------------------------- masks


def nm_mask_torch(x: Tensor, nm: NM | str, dim: int = -1) -> Tensor:
    """Boolean mask keeping the N largest magnitudes of each group of M along ``dim``.

    Same semantics as :func:`nmsat.reference.nm_mask`. Magnitudes are compared as
    integers (:func:`_magnitude_bits`: for IEEE floats the bit pattern with the sign
    cleared, whose order is the order of the magnitudes, with +0 = -0) and padding of a
    partial group gets -1, so it loses to every real element. Ties: when magnitudes fit
    in 32 bits (fp16, bf16, fp32: the training path) each element gets the unique key
    ``magnitude * M + (M - 1 - index in group)`` and a top-N of the keys picks exactly
    what a stable descending sort would keep first (lower index wins); wider magnitudes
    use a stable descending sort directly (slower, same result).
    """
    nm = NM.parse(nm)
    if x.dim() == 0:
        raise ValueError("nm_mask_torch needs a tensor with at least one dimension")
    if x.is_floating_point() and torch.isnan(x).any():
        raise ValueError("nm_mask_torch: input contains NaN; N:M selection of NaN is undefined")
    if nm.dense:
        return torch.ones(x.shape, dtype=torch.bool, device=x.device)
    dim = dim % x.dim()
    mag = _magnitude_bits(x.detach()).movedim(dim, -1)
    length = mag.shape[-1]
    groups = ceil_div(length, nm.m)
    key = torch.full(mag.shape[:-1] + (groups * nm.m,), -1, dtype=torch.int64, device=x.device)
    narrow = x.dtype in (torch.float16, torch.bfloat16, torch.float32, torch.int8,
                         torch.int16, torch.uint8, torch.bool)
    if narrow or mag.numel() == 0 or int(mag.max()) < 2**32:
        idx = torch.arange(length, device=x.device) % nm.m
        key[..., :length] = mag * nm.m + (nm.m - 1 - idx)
        g = key.reshape(mag.shape[:-1] + (groups, nm.m))
        order = g.topk(nm.n, dim=-1, sorted=False).indices
    else:
        key[..., :length] = mag
        g = key.reshape(mag.shape[:-1] + (groups, nm.m))
        order = torch.sort(g, dim=-1, descending=True, stable=True).indices[..., :nm.n]
    keep = torch.zeros(g.shape, dtype=torch.bool, device=x.device).scatter_(-1, order, True)
    keep = keep.reshape(key.shape)[..., :length]
    return keep.movedim(-1, dim).contiguous()


def _magnitude_bits(x: Tensor) -> Tensor:
    """Magnitudes as int64 whose order is the order of ``|x|`` (floats: the bit pattern
    with the sign cleared, as the SORE compares them; integers: the absolute value)."""
    if x.dtype in (torch.float16, torch.bfloat16):
        return (x.view(torch.int16).to(torch.int64) & 0x7FFF)
    if x.dtype == torch.float32:
        return (x.view(torch.int32).to(torch.int64) & 0x7FFFFFFF)
    if x.dtype == torch.float64:
        return x.view(torch.int64) & 0x7FFFFFFFFFFFFFFF
    if x.is_floating_point() or x.is_complex():
        raise ValueError(f"nm_mask_torch: unsupported dtype {x.dtype}")
    return x.to(torch.int64).abs()


def working_copy(w: Tensor) -> Tensor:
    """The fp16 working copy of fp32 master weights (round to nearest even), as fp32."""
    return w.detach().to(torch.float16).to(torch.float32)


def layer_masks_torch(w: Tensor, method: Method | str, nm: NM | str, *, sparse_ff: bool,
                      sparse_bp: bool) -> tuple[Tensor, Tensor]:
    """(FF mask, BP mask) of master weights ``w`` for a method, selected from fp16(w).

    ``sparse_ff``/``sparse_bp`` say whether the layer runs that phase N:M at all (a conv
    whose channels are not a multiple of M does not); a dense phase gets an all-ones mask.
    Linear ``w[out, in]`` and conv ``w[cout, cin/g, kh, kw]`` group FF along axis 1 and
    BP along axis 0 (:func:`nmsat.reference.ff_axis`, :func:`nmsat.reference.bp_axis`).
    """
    method = Method.parse(method)
    nm = NM.parse(nm)
    ones = torch.ones(w.shape, dtype=torch.bool, device=w.device)
    if method is Method.DENSE or nm.dense:
        return ones, ones
    wq = w.detach().to(torch.float16)
    if torch.isnan(wq).any():
        raise ValueError("weights contain NaN (training diverged; lower --lr)")
    ff = nm_mask_torch(wq, nm, 1) if sparse_ff else ones
    if method is Method.SRSTE:
        return ff, ff  # BP uses the same forward-masked weights
    bp = nm_mask_torch(wq, nm, 0) if sparse_bp else ones
    return ff, bp


# --------------------------------------------------------------------------- autograd functions


class NMLinearFunction(torch.autograd.Function):
    """``y = x (W*m_ff)^T``; backward ``dX = dY (W*m_bp)``, ``dW = dY^T X + decay (1-m_ff) W``.

    One function serves both methods: BDWP passes its two masks and ``decay = 0``;
    SR-STE passes its forward mask twice and its decay. Bias is added outside (it is
    not part of the engine's GEMM).
    """

    @staticmethod
    def forward(ctx, x: Tensor, w: Tensor, ff_mask: Tensor, bp_mask: Tensor,
                decay: float) -> Tensor:
        ctx.save_for_backward(x, w, ff_mask, bp_mask)
        ctx.decay = decay
        return F.linear(x, torch.where(ff_mask, w, 0.0))

    @staticmethod
    def backward(ctx, dy: Tensor):
        x, w, ff_mask, bp_mask = ctx.saved_tensors
        dx = dw = None
        if ctx.needs_input_grad[0]:
            dx = dy @ torch.where(bp_mask, w, 0.0)
        if ctx.needs_input_grad[1]:
            dw = dy.reshape(-1, dy.shape[-1]).T @ x.reshape(-1, x.shape[-1])  # dense WG
            if ctx.decay:
                dw = dw + ctx.decay * torch.where(ff_mask, 0.0, w)
        return dx, dw, None, None, None


class NMConv2dFunction(torch.autograd.Function):
    """Convolution counterpart of :class:`NMLinearFunction` (FF mask along input channels,
    BP mask along output channels, dense WG, optional SR-STE decay)."""

    @staticmethod
    def forward(ctx, x: Tensor, w: Tensor, ff_mask: Tensor, bp_mask: Tensor, decay: float,
                stride: int, padding: int, groups: int) -> Tensor:
        ctx.save_for_backward(x, w, ff_mask, bp_mask)
        ctx.conf = (decay, stride, padding, groups)
        return F.conv2d(x, torch.where(ff_mask, w, 0.0), None, stride, padding, 1, groups)

    @staticmethod
    def backward(ctx, dy: Tensor):
        x, w, ff_mask, bp_mask = ctx.saved_tensors
        decay, stride, padding, groups = ctx.conf
        dx = dw = None
        if ctx.needs_input_grad[0]:
            dx = torch.nn.grad.conv2d_input(x.shape, torch.where(bp_mask, w, 0.0), dy,
                                            stride, padding, 1, groups)
        if ctx.needs_input_grad[1]:
            dw = torch.nn.grad.conv2d_weight(x, w.shape, dy, stride, padding, 1, groups)
            if decay:
                dw = dw + decay * torch.where(ff_mask, 0.0, w)
        return dx, dw, None, None, None, None, None, None


# --------------------------------------------------------------------------- modules


class _NMMixin:
    """Shared state of the sparse modules: method, pattern, per-phase sparsity, and what
    the last forward pass saw (masks, input, output gradient) for the trace recorder."""

    method: Method
    nm: NM
    sparse_ff: bool
    sparse_bp: bool
    decay: float

    def _setup(self, method: Method | str, nm: NM | str, decay: float, sparse_ff: bool,
               sparse_bp: bool) -> None:
        self.method = Method.parse(method)
        self.nm = NM.parse(nm)
        self.decay = float(decay) if self.method is Method.SRSTE else 0.0
        self.sparse_ff = sparse_ff
        self.sparse_bp = sparse_bp
        self.capture = False  # keep the input and output gradient of the next step
        self.ff_mask: Tensor | None = None
        self.bp_mask: Tensor | None = None
        self.last_input: Tensor | None = None
        self.last_grad_output: Tensor | None = None

    @property
    def is_sparse(self) -> bool:
        return self.sparse_ff or self.sparse_bp

    def _masks(self, w: Tensor) -> tuple[Tensor, Tensor]:
        ff, bp = layer_masks_torch(w, self.method, self.nm, sparse_ff=self.sparse_ff,
                                   sparse_bp=self.sparse_bp)
        self.ff_mask, self.bp_mask = ff, bp
        return ff, bp

    def _record(self, x: Tensor, y: Tensor) -> None:
        if not self.capture:
            return
        self.last_input = x.detach()
        if y.requires_grad:
            def keep(g: Tensor) -> None:
                self.last_grad_output = g.detach()
            y.register_hook(keep)


class NMLinear(nn.Linear, _NMMixin):
    """``nn.Linear`` trained with a method (dense, SR-STE, BDWP) at an N:M pattern."""

    def __init__(self, in_features: int, out_features: int, *, method: Method | str = "dense",
                 nm: NM | str = "1:1", decay: float = 2e-4) -> None:
        super().__init__(in_features, out_features)
        method, nmp = Method.parse(method), NM.parse(nm)
        sparse = method is not Method.DENSE and not nmp.dense
        self._setup(method, nmp, decay, sparse, sparse and method is Method.BDWP)

    def forward(self, x: Tensor) -> Tensor:
        ff, bp = self._masks(self.weight)
        if self.is_sparse:
            y = NMLinearFunction.apply(x, self.weight, ff, bp, self.decay) + self.bias
        else:
            y = F.linear(x, self.weight, self.bias)
        self._record(x, y)
        return y


class NMConv2d(nn.Conv2d, _NMMixin):
    """``nn.Conv2d`` (square kernel, dilation 1) trained with a method at an N:M pattern.

    A phase is N:M only when M divides the channels per group it groups along (input
    channels for FF, output channels for BP); otherwise that phase stays dense.
    """

    def __init__(self, in_ch: int, out_ch: int, kernel: int, *, stride: int = 1,
                 padding: int = 0, groups: int = 1, method: Method | str = "dense",
                 nm: NM | str = "1:1", decay: float = 2e-4) -> None:
        super().__init__(in_ch, out_ch, kernel, stride=stride, padding=padding, groups=groups)
        method, nmp = Method.parse(method), NM.parse(nm)
        sparse = method is not Method.DENSE and not nmp.dense
        ff = sparse and (in_ch // groups) % nmp.m == 0
        bp = sparse and method is Method.BDWP and (out_ch // groups) % nmp.m == 0
        self._setup(method, nmp, decay, ff, bp)

    def forward(self, x: Tensor) -> Tensor:
        ff, bp = self._masks(self.weight)
        if self.is_sparse:
            y = NMConv2dFunction.apply(x, self.weight, ff, bp, self.decay, self.stride[0],
                                       self.padding[0], self.groups)
            y = y + self.bias[:, None, None]
        else:
            y = F.conv2d(x, self.weight, self.bias, self.stride, self.padding, 1, self.groups)
        self._record(x, y)
        return y


# --------------------------------------------------------------------------- weight update


class EngineSGD(torch.optim.Optimizer):
    """SGD with momentum rounded exactly as the weight-update engine.

    Per fp32 master weight: ``v' = fl(fl(momentum * v) + g)``; ``w' = fl(w - fl(lr * v'))``,
    each operation rounded on its own (:func:`nmsat.reference.weight_update`).
    ``torch.optim.SGD`` computes the same update but may fuse ``w - lr * v`` into one
    rounding, which differs from the engine by up to 1 ulp.
    """

    def __init__(self, params, lr: float, momentum: float = 0.9) -> None:
        if not lr > 0:
            raise ValueError(f"lr must be positive, not {lr!r}")
        if not 0 <= momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), not {momentum!r}")
        super().__init__(params, {"lr": lr, "momentum": momentum})

    @torch.no_grad()
    def step(self, closure=None):
        if closure is not None:
            raise ValueError("EngineSGD does not take a closure")
        for group in self.param_groups:
            lr = torch.tensor(group["lr"], dtype=torch.float32)
            mu = torch.tensor(group["momentum"], dtype=torch.float32)
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                v = state.get("momentum_buffer")
                if v is None:
                    v = state["momentum_buffer"] = torch.zeros_like(p)
                v.copy_(v * mu + p.grad)  # two separately rounded fp32 operations
                p.copy_(p - v * lr)


# --------------------------------------------------------------------------- models


class MLP(nn.Module):
    """``mlp``: 64 -> fc1 256 -> relu1 -> fc2 256 -> relu2 -> fc3 10 (digits, 8x8 flattened)."""

    input_shape = (64,)

    def __init__(self, method: Method | str = "dense", nm: NM | str = "1:1",
                 decay: float = 2e-4) -> None:
        super().__init__()
        kw = {"method": method, "nm": nm, "decay": decay}
        self.fc1 = NMLinear(64, 256, **kw)
        self.relu1 = nn.ReLU()
        self.fc2 = NMLinear(256, 256, **kw)
        self.relu2 = nn.ReLU()
        self.fc3 = NMLinear(256, 10, **kw)

    def forward(self, x: Tensor) -> Tensor:
        x = self.relu1(self.fc1(x.flatten(1)))
        x = self.relu2(self.fc2(x))
        return self.fc3(x)


class CNN(nn.Module):
    """``cnn``: 1x8x8 -> conv1 16 3x3 p1 -> relu1 -> conv2 32 3x3 p1 -> relu2 -> pool 2x2
    -> fc1 512->64 -> relu3 -> fc2 64->10."""

    input_shape = (1, 8, 8)

    def __init__(self, method: Method | str = "dense", nm: NM | str = "1:1",
                 decay: float = 2e-4) -> None:
        super().__init__()
        kw = {"method": method, "nm": nm, "decay": decay}
        self.conv1 = NMConv2d(1, 16, 3, padding=1, **kw)
        self.relu1 = nn.ReLU()
        self.conv2 = NMConv2d(16, 32, 3, padding=1, **kw)
        self.relu2 = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.fc1 = NMLinear(512, 64, **kw)
        self.relu3 = nn.ReLU()
        self.fc2 = NMLinear(64, 10, **kw)

    def forward(self, x: Tensor) -> Tensor:
        x = self.relu1(self.conv1(x.reshape(-1, 1, 8, 8)))
        x = self.pool(self.relu2(self.conv2(x)))
        x = self.relu3(self.fc1(x.flatten(1)))
        return self.fc2(x)


MODELS: dict[str, type[nn.Module]] = {"mlp": MLP, "cnn": CNN}


def build_model(name: str, method: Method | str, nm: NM | str, decay: float = 2e-4) -> nn.Module:
    """A fresh model by zoo name (``mlp`` or ``cnn``), initialised from torch's global RNG."""
    if name not in MODELS:
        raise ValueError(f"unknown trainable model {name!r} (choose from {', '.join(MODELS)})")
    return MODELS[name](method, nm, decay)


def sparse_modules(model: nn.Module) -> list[tuple[str, _NMMixin]]:
    """The weight layers of a model in forward order, as (name, module)."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, _NMMixin)]
