"""Typed layers and workloads: the data model every part of nmsat reads.

A layer is described per sample (one image, or one sequence); a :class:`Workload`
binds a list of layers to a batch size. Each GEMM-bearing layer says, for every training
phase, which GEMMs it lowers to (``C[m, n] = A[m, k] B[k, n]``, B the weight operand, see
docs/architecture.md section 3.2) and whether N:M sparsity can apply to that phase's B.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from nmsat.types import NM, Method, Phase, _Choice

__all__ = ["Conv2d", "Elementwise", "GemmDims", "Layer", "Linear", "Matmul", "OpKind", "Workload"]


@dataclass(frozen=True)
class GemmDims:
    """``count`` independent GEMMs ``[m, k] x [k, n]`` (count > 1 for groups or heads)."""

    m: int
    n: int
    k: int
    count: int = 1

    def __post_init__(self) -> None:
        for name in ("m", "n", "k", "count"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"GEMM dimension {name} must be a positive integer, not {v!r}")

    @property
    def macs(self) -> int:
        return self.m * self.n * self.k * self.count


class OpKind(_Choice):
    """Non-GEMM operations, run on the vector engine or fused into the output path."""

    NORM = "norm"  # batch norm or layer norm
    ACT = "act"  # ReLU, GELU, ...
    POOL = "pool"
    SOFTMAX = "softmax"
    ADD = "add"  # residual add


@dataclass(frozen=True)
class Layer:
    """Base class: a named layer with per-sample input and output shapes."""

    name: str

    @property
    def has_weights(self) -> bool:
        return self.weight_shape is not None

    @property
    def weight_shape(self) -> tuple[int, ...] | None:
        return None

    def gemms(self, phase: Phase, batch: int) -> list[GemmDims]:
        """GEMMs of ``phase`` for ``batch`` samples (empty for non-GEMM layers)."""
        return []

    def nm_applies(self, phase: Phase, method: Method, nm: NM) -> bool:
        """Whether the engine runs this layer's ``phase`` GEMM with N:M weights."""
        return False

    def macs(self, batch: int = 1) -> int:
        """Forward multiply-accumulates for ``batch`` samples."""
        return sum(g.macs for g in self.gemms(Phase.FF, batch))

    @property
    def weights(self) -> int:
        return math.prod(self.weight_shape) if self.weight_shape else 0


def _sparse_phase(phase: Phase, method: Method) -> bool:
    return (phase is Phase.FF and method in (Method.SRSTE, Method.BDWP)) or (
        phase is Phase.BP and method is Method.BDWP)


@dataclass(frozen=True)
class Conv2d(Layer):
    """2-D convolution on a per-sample ``[in_ch, in_h, in_w]`` input."""

    in_ch: int = 1
    out_ch: int = 1
    in_h: int = 1
    in_w: int = 1
    kh: int = 1
    kw: int = 1
    stride: int = 1
    padding: int = 0
    groups: int = 1

    def __post_init__(self) -> None:
        if self.in_ch % self.groups or self.out_ch % self.groups:
            raise ValueError(f"{self.name}: channels ({self.in_ch}, {self.out_ch}) must divide "
                             f"into groups={self.groups}")
        if self.out_h < 1 or self.out_w < 1:
            raise ValueError(f"{self.name}: output would be empty")

    @property
    def out_h(self) -> int:
        return (self.in_h + 2 * self.padding - self.kh) // self.stride + 1

    @property
    def out_w(self) -> int:
        return (self.in_w + 2 * self.padding - self.kw) // self.stride + 1

    @property
    def in_shape(self) -> tuple[int, ...]:
        return (self.in_ch, self.in_h, self.in_w)

    @property
    def out_shape(self) -> tuple[int, ...]:
        return (self.out_ch, self.out_h, self.out_w)

    @property
    def weight_shape(self) -> tuple[int, ...]:
        return (self.out_ch, self.in_ch // self.groups, self.kh, self.kw)

    def gemms(self, phase: Phase, batch: int) -> list[GemmDims]:
        rows = batch * self.out_h * self.out_w
        kk = self.kh * self.kw * (self.in_ch // self.groups)
        co = self.out_ch // self.groups
        g = self.groups
        if phase is Phase.FF:
            return [GemmDims(rows, co, kk, g)]
        if phase is Phase.BP:
            return [GemmDims(rows, kk, co, g)]
        if phase is Phase.WG:
            return [GemmDims(co, kk, rows, g)]
        return []

    def nm_applies(self, phase: Phase, method: Method, nm: NM) -> bool:
        if nm.dense or not _sparse_phase(phase, method):
            return False
        per_group = self.in_ch // self.groups if phase is Phase.FF else self.out_ch // self.groups
        return per_group % nm.m == 0


@dataclass(frozen=True)
class Linear(Layer):
    """Fully connected layer applied to ``tokens`` vectors per sample (1 for an MLP,
    the sequence length for a transformer)."""

    in_features: int = 1
    out_features: int = 1
    tokens: int = 1

    @property
    def in_shape(self) -> tuple[int, ...]:
        return (self.tokens, self.in_features)

    @property
    def out_shape(self) -> tuple[int, ...]:
        return (self.tokens, self.out_features)

    @property
    def weight_shape(self) -> tuple[int, ...]:
        return (self.out_features, self.in_features)

    def gemms(self, phase: Phase, batch: int) -> list[GemmDims]:
        rows = batch * self.tokens
        if phase is Phase.FF:
            return [GemmDims(rows, self.out_features, self.in_features)]
        if phase is Phase.BP:
            return [GemmDims(rows, self.in_features, self.out_features)]
        if phase is Phase.WG:
            return [GemmDims(self.out_features, self.in_features, rows)]
        return []

    def nm_applies(self, phase: Phase, method: Method, nm: NM) -> bool:
        return not nm.dense and _sparse_phase(phase, method)


@dataclass(frozen=True)
class Matmul(Layer):
    """A GEMM between two activations (attention scores Q K^T, or P V), ``count`` of them
    per sample (the heads). No weights, so never N:M. BP computes both operand gradients."""

    m: int = 1
    n: int = 1
    k: int = 1
    count: int = 1

    @property
    def in_shape(self) -> tuple[int, ...]:
        return (self.count, self.m, self.k)

    @property
    def out_shape(self) -> tuple[int, ...]:
        return (self.count, self.m, self.n)

    def gemms(self, phase: Phase, batch: int) -> list[GemmDims]:
        c = self.count * batch
        if phase is Phase.FF:
            return [GemmDims(self.m, self.n, self.k, c)]
        if phase is Phase.BP:  # dA = dC B^T and dB = A^T dC
            return [GemmDims(self.m, self.k, self.n, c), GemmDims(self.k, self.n, self.m, c)]
        return []


@dataclass(frozen=True)
class Elementwise(Layer):
    """A non-GEMM op over ``elements`` output elements per sample."""

    kind: OpKind = OpKind.ACT
    elements: int = 1
    shape: tuple[int, ...] = field(default=())
    # Only where the input's shape differs from ``shape`` (pooling); empty means the same.
    input_shape: tuple[int, ...] = field(default=())

    @property
    def in_shape(self) -> tuple[int, ...]:
        return self.input_shape or self.shape

    @property
    def out_shape(self) -> tuple[int, ...]:
        return self.shape


@dataclass(frozen=True)
class Workload:
    """A model's layers bound to a batch size."""

    name: str
    layers: tuple[Layer, ...]
    batch: int = 1

    def __post_init__(self) -> None:
        if self.batch < 1:
            raise ValueError(f"batch must be at least 1, not {self.batch}")
        names = [layer.name for layer in self.layers]
        if len(set(names)) != len(names):
            dup = next(n for n in names if names.count(n) > 1)
            raise ValueError(f"{self.name}: duplicate layer name {dup!r}")

    def macs(self, phase: Phase = Phase.FF) -> int:
        """MACs of ``phase`` for the whole batch."""
        return sum(g.macs for layer in self.layers for g in layer.gemms(phase, self.batch))

    @property
    def macs_per_sample(self) -> int:
        return sum(layer.macs(1) for layer in self.layers)

    @property
    def weights(self) -> int:
        return sum(layer.weights for layer in self.layers)

    def layer(self, name: str) -> Layer:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise ValueError(f"{self.name} has no layer {name!r}")
