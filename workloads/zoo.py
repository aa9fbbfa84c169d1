"""The model zoo: real networks as typed layer lists with exact per-sample shapes.

Every model is built by a small graph builder that tracks, for each layer, the layers whose
outputs it reads (:attr:`ZooModel.inputs`), so the shapes can be checked end to end and the
simulator can see residual branches. What each model includes (and what its MAC count
covers) is stated in ``docs/workloads.md``; in short:

* GEMM layers: :class:`~nmsat.workloads.layers.Conv2d` (stride, padding, groups),
  :class:`~nmsat.workloads.layers.Linear` and, for attention, the score ``Q K^T`` and
  context ``P V`` products as :class:`~nmsat.workloads.layers.Matmul` with ``count`` = heads.
* Non-GEMM ops as :class:`~nmsat.workloads.layers.Elementwise`: normalisation, activation,
  pooling, softmax and residual add. Reshapes, flattening, dropout (identity at the shapes
  level) and embedding look-ups are data movement, not layers.
* :attr:`Workload.macs_per_sample` counts conv + linear + attention matmul MACs, which is
  what torchvision's published figures count (for ViT-B/16 its 17.56 G includes the
  attention matmuls; see the docs).

Use :func:`get` (a :class:`Workload` bound to a batch size), :func:`model` (the
:class:`ZooModel` with its graph and parameter count), :func:`names` and :func:`load`
(a zoo name or a workload file).
"""

from __future__ import annotations

import importlib
import math
import os
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Callable, Mapping, NamedTuple

from nmsat.errors import NmsatError
from nmsat.types import NM
from nmsat.workloads.layers import (Conv2d, Elementwise, Layer, Linear, Matmul, OpKind,
                                    Workload)

INPUT = "input"
"""Producer name of the model's input tensor in :attr:`ZooModel.inputs`."""


@dataclass(frozen=True)
class ZooModel:
    """A zoo network: its layers in execution order plus the graph between them.

    Attributes
    ----------
    name, description
        Registry name and a one-line description.
    input_shape
        Per-sample input shape (``(C, H, W)`` for images, ``(seq_len,)`` token ids).
    layers
        Layers in the order a forward pass runs them.
    inputs
        Layer name -> names of the layers whose outputs it reads (:data:`INPUT` for the
        model input), in operand order (for a :class:`Matmul`: A then B).
    gathers
        Layers whose input is a gather, slice or concatenation of their producers (an
        embedding sum, the class token), so its shape is not the producers' shape.
    params
        Trainable parameters, counted like ``sum(p.numel() for p in model.parameters())``
        (weights, biases, normalisation affine parameters, embeddings; tied weights once).
    """

    name: str
    description: str
    input_shape: tuple[int, ...]
    layers: tuple[Layer, ...]
    inputs: Mapping[str, tuple[str, ...]]
    gathers: frozenset[str]
    params: int

    def workload(self, batch: int = 1) -> Workload:
        """The layers bound to ``batch`` samples."""
        return Workload(self.name, self.layers, batch)


class T(NamedTuple):
    """A tensor while building: the layer that produced it and its per-sample shape."""

    src: str
    shape: tuple[int, ...]
    gathered: bool = False  # produced by a gather/concat/slice, not by ``src`` alone


class _Builder:
    """Appends layers while tracking shapes, producers and parameters."""

    def __init__(self, input_shape: tuple[int, ...]) -> None:
        self.input_shape = input_shape
        self.layers: list[Layer] = []
        self.inputs: dict[str, tuple[str, ...]] = {}
        self.gathers: set[str] = set()
        self.params = 0

    def input(self) -> T:
        return T(INPUT, self.input_shape)

    def _add(self, layer: Layer, *srcs: T) -> T:
        self.layers.append(layer)
        self.inputs[layer.name] = tuple(s.src for s in srcs)
        if any(s.gathered for s in srcs):
            self.gathers.add(layer.name)
        return T(layer.name, layer.out_shape)

    # -- GEMM layers ------------------------------------------------------------------
    def conv(self, x: T, name: str, out_ch: int, k: int, stride: int = 1, padding: int = 0,
             groups: int = 1, bias: bool = False) -> T:
        c, h, w = x.shape
        layer = Conv2d(name, in_ch=c, out_ch=out_ch, in_h=h, in_w=w, kh=k, kw=k,
                       stride=stride, padding=padding, groups=groups)
        self.params += layer.weights + (out_ch if bias else 0)
        return self._add(layer, x)

    def linear(self, x: T, name: str, out_features: int, bias: bool = True,
               params: bool = True) -> T:
        """A linear layer over the last axis; leading axes are tokens (a flattened
        ``[C, 1, 1]`` pooling output is one token). ``params=False`` for tied weights."""
        tokens = math.prod(x.shape[:-1]) if len(x.shape) == 2 else 1
        in_features = x.shape[-1] if len(x.shape) == 2 else math.prod(x.shape)
        layer = Linear(name, in_features=in_features, out_features=out_features, tokens=tokens)
        if params:
            self.params += layer.weights + (out_features if bias else 0)
        return self._add(layer, x)

    def matmul(self, a: T, b: T, name: str, m: int, n: int, k: int, heads: int) -> T:
        return self._add(Matmul(name, m=m, n=n, k=k, count=heads), a, b)

    # -- non-GEMM ops -----------------------------------------------------------------
    def _elementwise(self, kind: OpKind, name: str, shape: tuple[int, ...], *srcs: T,
                     input_shape: tuple[int, ...] = ()) -> T:
        layer = Elementwise(name, kind=kind, elements=math.prod(shape), shape=shape,
                            input_shape=input_shape)
        return self._add(layer, *srcs)

    def norm(self, x: T, name: str) -> T:
        """Batch norm over ``[C, H, W]`` or layer norm over the last axis of
        ``[tokens, d]``: 2 affine parameters per channel / feature either way."""
        self.params += 2 * (x.shape[0] if len(x.shape) == 3 else x.shape[-1])
        return self._elementwise(OpKind.NORM, name, x.shape, x)

    def act(self, x: T, name: str) -> T:
        return self._elementwise(OpKind.ACT, name, x.shape, x)

    def softmax(self, x: T, name: str) -> T:
        return self._elementwise(OpKind.SOFTMAX, name, x.shape, x)

    def add(self, a: T, b: T, name: str) -> T:
        if math.prod(a.shape) != math.prod(b.shape):
            raise AssertionError(f"{name}: adding {a.shape} to {b.shape}")
        return self._elementwise(OpKind.ADD, name, a.shape, a, b)

    def pool(self, x: T, name: str, k: int, stride: int, padding: int = 0) -> T:
        c, h, w = x.shape
        out = (c, (h + 2 * padding - k) // stride + 1, (w + 2 * padding - k) // stride + 1)
        return self._elementwise(OpKind.POOL, name, out, x, input_shape=x.shape)

    def global_pool(self, x: T, name: str, size: int = 1) -> T:
        """Adaptive average pooling to ``size x size``."""
        c = x.shape[0]
        return self._elementwise(OpKind.POOL, name, (c, size, size), x, input_shape=x.shape)

    def build(self, name: str, description: str) -> ZooModel:
        return ZooModel(name, description, self.input_shape, tuple(self.layers),
                        MappingProxyType(dict(self.inputs)), frozenset(self.gathers),
                        self.params)


# ----------------------------------------------------------------------------------------
# The digits models (scikit-learn's 8x8 handwritten digits). Their layer names are the
# attribute names of the torch modules that `nmsat train` builds: keep them in step.
# ----------------------------------------------------------------------------------------

def mlp() -> ZooModel:
    """Digits MLP: 64 -> 256 -> 256 -> 10 with ReLU."""
    b = _Builder((64,))
    x = b.linear(b.input(), "fc1", 256)
    x = b.act(x, "relu1")
    x = b.linear(x, "fc2", 256)
    x = b.act(x, "relu2")
    b.linear(x, "fc3", 10)
    return b.build("mlp", "digits MLP 64-256-256-10 (8x8 digits, 10 classes)")


def cnn() -> ZooModel:
    """Digits CNN: two 3x3 convs (16, 32 channels), 2x2 max pool, 512 -> 64 -> 10."""
    b = _Builder((1, 8, 8))
    x = b.conv(b.input(), "conv1", 16, 3, padding=1, bias=True)
    x = b.act(x, "relu1")
    x = b.conv(x, "conv2", 32, 3, padding=1, bias=True)
    x = b.act(x, "relu2")
    x = b.pool(x, "pool", 2, 2)
    x = b.linear(x, "fc1", 64)
    x = b.act(x, "relu3")
    b.linear(x, "fc2", 10)
    return b.build("cnn", "digits CNN conv16-conv32-pool-fc64-fc10 (1x8x8, 10 classes)")


# ----------------------------------------------------------------------------------------
# Registry
# ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Entry:
    factory: Callable[..., ZooModel]
    default_seq_len: int | None = None  # None: the model has no sequence length
    max_seq_len: int | None = None  # position-embedding table size


_REGISTRY: dict[str, _Entry] = {
    "mlp": _Entry(mlp),
    "cnn": _Entry(cnn),
}


def names() -> tuple[str, ...]:
    """Registry names in listing order."""
    return tuple(_REGISTRY)


def _entry(name: str) -> _Entry:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r} (choose from {', '.join(_REGISTRY)})") from None


def model(name: str, seq_len: int | None = None) -> ZooModel:
    """Build the zoo model ``name``.

    Parameters
    ----------
    name
        A name from :func:`names`.
    seq_len
        Sequence length of a language model (``bert_base``, ``gpt2_small``); ``None`` picks
        its default. Models without a sequence length reject a value.

    Raises
    ------
    ValueError
        Unknown name (the message lists the valid ones), or a bad ``seq_len``.
    """
    entry = _entry(name)
    if entry.default_seq_len is None:
        if seq_len is not None:
            raise ValueError(f"{name} has no sequence length (seq_len={seq_len!r})")
        return entry.factory()
    if seq_len is None:
        seq_len = entry.default_seq_len
    if not isinstance(seq_len, int) or isinstance(seq_len, bool) or seq_len < 1:
        raise ValueError(f"seq_len must be a positive integer, not {seq_len!r}")
    if entry.max_seq_len is not None and seq_len > entry.max_seq_len:
        raise ValueError(f"seq_len {seq_len} exceeds {name}'s {entry.max_seq_len} positions")
    return entry.factory(seq_len)


def get(name: str, batch: int = 1, seq_len: int | None = None) -> Workload:
    """The zoo model ``name`` as a :class:`Workload` of ``batch`` samples.

    See :func:`model` for ``seq_len`` and the errors.
    """
    return model(name, seq_len).workload(batch)
