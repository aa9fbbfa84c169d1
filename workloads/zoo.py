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

import dataclasses
import importlib
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import NamedTuple

from nmsat.errors import NmsatError
from nmsat.types import NM, Method
from nmsat.workloads.layers import Conv2d, Elementwise, Layer, Linear, Matmul, OpKind, Workload

__all__ = ["FILE_LOADERS", "INPUT", "LoadedWorkload", "ZooModel", "bert_base", "check_seq_len",
           "cnn", "get", "gpt2_small", "load", "mlp", "mobilenet_v2", "mobilenet_v2_cifar",
           "model", "names", "resnet18", "resnet18_cifar", "resnet50", "resnet50_cifar", "vgg16",
           "vgg16_cifar", "vit_b_16"]

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
    seq_len
        The sequence length of a language model, ``None`` for the others.
    """

    name: str
    description: str
    input_shape: tuple[int, ...]
    layers: tuple[Layer, ...]
    inputs: Mapping[str, tuple[str, ...]]
    gathers: frozenset[str]
    params: int
    seq_len: int | None = None

    def workload(self, batch: int = 1) -> Workload:
        """The layers bound to ``batch`` samples."""
        return Workload(self.name, self.layers, batch)


class _T(NamedTuple):
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

    def input(self) -> _T:
        return _T(INPUT, self.input_shape)

    def _add(self, layer: Layer, *srcs: _T) -> _T:
        self.layers.append(layer)
        self.inputs[layer.name] = tuple(s.src for s in srcs)
        if any(s.gathered for s in srcs):
            self.gathers.add(layer.name)
        return _T(layer.name, layer.out_shape)

    # -- GEMM layers ------------------------------------------------------------------
    def conv(self, x: _T, name: str, out_ch: int, k: int, stride: int = 1, padding: int = 0,
             groups: int = 1, bias: bool = False) -> _T:
        c, h, w = x.shape
        layer = Conv2d(name, in_ch=c, out_ch=out_ch, in_h=h, in_w=w, kh=k, kw=k,
                       stride=stride, padding=padding, groups=groups)
        self.params += layer.weights + (out_ch if bias else 0)
        return self._add(layer, x)

    def linear(self, x: _T, name: str, out_features: int, bias: bool = True,
               params: bool = True) -> _T:
        """A linear layer over the last axis; leading axes are tokens (a flattened
        ``[C, 1, 1]`` pooling output is one token). ``params=False`` for tied weights."""
        tokens = math.prod(x.shape[:-1]) if len(x.shape) == 2 else 1
        in_features = x.shape[-1] if len(x.shape) == 2 else math.prod(x.shape)
        layer = Linear(name, in_features=in_features, out_features=out_features, tokens=tokens)
        if params:
            self.params += layer.weights + (out_features if bias else 0)
        return self._add(layer, x)

    def matmul(self, a: _T, b: _T, name: str, m: int, n: int, k: int, heads: int) -> _T:
        return self._add(Matmul(name, m=m, n=n, k=k, count=heads), a, b)

    # -- non-GEMM ops -----------------------------------------------------------------
    def _elementwise(self, kind: OpKind, name: str, shape: tuple[int, ...], *srcs: _T,
                     input_shape: tuple[int, ...] = ()) -> _T:
        layer = Elementwise(name, kind=kind, elements=math.prod(shape), shape=shape,
                            input_shape=input_shape)
        return self._add(layer, *srcs)

    def norm(self, x: _T, name: str) -> _T:
        """Batch norm over ``[C, H, W]`` or layer norm over the last axis of
        ``[tokens, d]``: 2 affine parameters per channel / feature either way."""
        self.params += 2 * (x.shape[0] if len(x.shape) == 3 else x.shape[-1])
        return self._elementwise(OpKind.NORM, name, x.shape, x)

    def act(self, x: _T, name: str) -> _T:
        return self._elementwise(OpKind.ACT, name, x.shape, x)

    def softmax(self, x: _T, name: str) -> _T:
        return self._elementwise(OpKind.SOFTMAX, name, x.shape, x)

    def add(self, a: _T, b: _T, name: str) -> _T:
        if math.prod(a.shape) != math.prod(b.shape):
            raise AssertionError(f"{name}: adding {a.shape} to {b.shape}")
        return self._elementwise(OpKind.ADD, name, a.shape, a, b)

    def pool(self, x: _T, name: str, k: int, stride: int, padding: int = 0) -> _T:
        c, h, w = x.shape
        out = (c, (h + 2 * padding - k) // stride + 1, (w + 2 * padding - k) // stride + 1)
        return self._elementwise(OpKind.POOL, name, out, x, input_shape=x.shape)

    def global_pool(self, x: _T, name: str, size: int = 1) -> _T:
        """Adaptive average pooling to ``size x size``."""
        c = x.shape[0]
        return self._elementwise(OpKind.POOL, name, (c, size, size), x, input_shape=x.shape)

    def reshape(self, x: _T, shape: tuple[int, ...]) -> _T:
        """A view of ``x`` with another shape (heads split or merged, flattening)."""
        if math.prod(shape) != math.prod(x.shape):
            raise AssertionError(f"cannot view {x.shape} as {shape}")
        return _T(x.src, shape, x.gathered)

    def gather(self, x: _T, shape: tuple[int, ...], params: int = 0) -> _T:
        """Data movement that is not a layer: an embedding look-up, a class-token concat or
        a slice of ``x``, giving ``shape``; ``params`` counts the tables it reads."""
        self.params += params
        return _T(x.src, shape, True)

    def embed_sum(self, x: _T, name: str, shape: tuple[int, ...]) -> _T:
        """The elementwise sum of gathered embeddings (token + position [+ type])."""
        return self._elementwise(OpKind.ADD, name, shape, x)

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
# ResNets (torchvision's resnet18 / resnet50, v1.5: the stride sits on the 3x3 conv).
# CIFAR variants (the widely used kuangliu/pytorch-cifar adaptation): 3x3 stride-1 stem,
# no max pool, so the four stages run at 32, 16, 8 and 4 pixels; global average pool;
# 10 classes.
# ----------------------------------------------------------------------------------------

def _basic_block(b: _Builder, x: _T, name: str, planes: int, stride: int) -> _T:
    identity = x
    y = b.conv(x, f"{name}.conv1", planes, 3, stride, 1)
    y = b.norm(y, f"{name}.bn1")
    y = b.act(y, f"{name}.relu1")
    y = b.conv(y, f"{name}.conv2", planes, 3, 1, 1)
    y = b.norm(y, f"{name}.bn2")
    if stride != 1 or x.shape[0] != planes:
        identity = b.conv(x, f"{name}.downsample.0", planes, 1, stride)
        identity = b.norm(identity, f"{name}.downsample.1")
    y = b.add(y, identity, f"{name}.add")
    return b.act(y, f"{name}.relu2")


def _bottleneck(b: _Builder, x: _T, name: str, planes: int, stride: int) -> _T:
    identity = x
    y = b.conv(x, f"{name}.conv1", planes, 1)
    y = b.norm(y, f"{name}.bn1")
    y = b.act(y, f"{name}.relu1")
    y = b.conv(y, f"{name}.conv2", planes, 3, stride, 1)
    y = b.norm(y, f"{name}.bn2")
    y = b.act(y, f"{name}.relu2")
    y = b.conv(y, f"{name}.conv3", planes * 4, 1)
    y = b.norm(y, f"{name}.bn3")
    if stride != 1 or x.shape[0] != planes * 4:
        identity = b.conv(x, f"{name}.downsample.0", planes * 4, 1, stride)
        identity = b.norm(identity, f"{name}.downsample.1")
    y = b.add(y, identity, f"{name}.add")
    return b.act(y, f"{name}.relu3")


def _resnet(name: str, description: str, bottleneck: bool, blocks: tuple[int, ...],
            cifar: bool) -> ZooModel:
    b = _Builder((3, 32, 32) if cifar else (3, 224, 224))
    x = b.input()
    if cifar:
        x = b.conv(x, "conv1", 64, 3, 1, 1)
    else:
        x = b.conv(x, "conv1", 64, 7, 2, 3)
    x = b.norm(x, "bn1")
    x = b.act(x, "relu")
    if not cifar:
        x = b.pool(x, "maxpool", 3, 2, 1)
    block = _bottleneck if bottleneck else _basic_block
    for stage, n in enumerate(blocks):
        planes = 64 << stage
        for i in range(n):
            stride = 2 if stage > 0 and i == 0 else 1
            x = block(b, x, f"layer{stage + 1}.{i}", planes, stride)
    x = b.global_pool(x, "avgpool")
    b.linear(x, "fc", 10 if cifar else 1000)
    return b.build(name, description)


def resnet18() -> ZooModel:
    """ResNet-18 for ImageNet (3x224x224, 1000 classes), as torchvision builds it."""
    return _resnet("resnet18", "ResNet-18, ImageNet 224x224", False, (2, 2, 2, 2), False)


def resnet50() -> ZooModel:
    """ResNet-50 (v1.5) for ImageNet (3x224x224, 1000 classes), as torchvision builds it."""
    return _resnet("resnet50", "ResNet-50 v1.5, ImageNet 224x224", True, (3, 4, 6, 3), False)


def resnet18_cifar() -> ZooModel:
    """ResNet-18 for CIFAR-10 (3x32x32): 3x3 stride-1 stem, no max pool, 10 classes."""
    return _resnet("resnet18_cifar", "ResNet-18, CIFAR-10 32x32 (3x3 stem, no max pool)",
                   False, (2, 2, 2, 2), True)


def resnet50_cifar() -> ZooModel:
    """ResNet-50 for CIFAR-10 (3x32x32): 3x3 stride-1 stem, no max pool, 10 classes."""
    return _resnet("resnet50_cifar", "ResNet-50, CIFAR-10 32x32 (3x3 stem, no max pool)",
                   True, (3, 4, 6, 3), True)


# ----------------------------------------------------------------------------------------
# VGG-16: torchvision's vgg16 (configuration D, no batch norm, 7x7 adaptive pool, three
# fully connected layers). CIFAR variant (kuangliu/pytorch-cifar): batch norm after each
# conv, the five max pools leave 512x1x1, one linear layer 512 -> 10.
# ----------------------------------------------------------------------------------------

_VGG16 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
          512, 512, 512, "M")


def _vgg16(cifar: bool) -> ZooModel:
    b = _Builder((3, 32, 32) if cifar else (3, 224, 224))
    x = b.input()
    i = 0  # torchvision's index into `features`
    for v in _VGG16:
        if v == "M":
            x = b.pool(x, f"features.{i}", 2, 2)
            i += 1
            continue
        x = b.conv(x, f"features.{i}", v, 3, 1, 1, bias=not cifar)
        i += 1
        if cifar:
            x = b.norm(x, f"features.{i}")
            i += 1
        x = b.act(x, f"features.{i}")
        i += 1
    if cifar:
        b.linear(x, "classifier", 10)
        return b.build("vgg16_cifar", "VGG-16 with batch norm, CIFAR-10 32x32, one FC layer")
    x = b.global_pool(x, "avgpool", 7)
    x = b.linear(x, "classifier.0", 4096)
    x = b.act(x, "classifier.1")
    x = b.linear(x, "classifier.3", 4096)
    x = b.act(x, "classifier.4")
    b.linear(x, "classifier.6", 1000)
    return b.build("vgg16", "VGG-16 (configuration D), ImageNet 224x224")


def vgg16() -> ZooModel:
    """VGG-16 for ImageNet (3x224x224, 1000 classes), as torchvision builds it."""
    return _vgg16(False)


def vgg16_cifar() -> ZooModel:
    """VGG-16 with batch norm for CIFAR-10 (3x32x32), one 512 -> 10 classifier."""
    return _vgg16(True)


# ----------------------------------------------------------------------------------------
# MobileNetV2: torchvision's mobilenet_v2 (width 1.0). CIFAR variant: the same inverted
# residual blocks with the stem and the first 24-channel stage at stride 1 (the strides of
# kuangliu/pytorch-cifar, without its extra 1x1 shortcut convs), so the last stage is 4x4;
# 10 classes.
# ----------------------------------------------------------------------------------------

_MBV2 = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
         (6, 160, 3, 2), (6, 320, 1, 1))  # expansion t, channels c, repeats n, stride s


def _conv_bn_act(b: _Builder, x: _T, name: str, out_ch: int, k: int, stride: int = 1,
                 groups: int = 1, act: bool = True) -> _T:
    x = b.conv(x, f"{name}.0", out_ch, k, stride, (k - 1) // 2, groups)
    x = b.norm(x, f"{name}.1")
    return b.act(x, f"{name}.2") if act else x


def _mobilenet_v2(cifar: bool) -> ZooModel:
    b = _Builder((3, 32, 32) if cifar else (3, 224, 224))
    x = _conv_bn_act(b, b.input(), "features.0", 32, 3, 1 if cifar else 2)
    idx = 1
    for t, c, n, s in _MBV2:
        if cifar and c == 24:
            s = 1
        for i in range(n):
            stride = s if i == 0 else 1
            name = f"features.{idx}"
            inp = x
            hidden = x.shape[0] * t
            j = 0
            if t != 1:
                x = _conv_bn_act(b, x, f"{name}.conv.{j}", hidden, 1)
                j += 1
            x = _conv_bn_act(b, x, f"{name}.conv.{j}", hidden, 3, stride, groups=hidden)
            x = b.conv(x, f"{name}.conv.{j + 1}", c, 1)
            x = b.norm(x, f"{name}.conv.{j + 2}")
            if stride == 1 and inp.shape[0] == c:
                x = b.add(x, inp, f"{name}.add")
            idx += 1
    x = _conv_bn_act(b, x, f"features.{idx}", 1280, 1)
    x = b.global_pool(x, "avgpool")
    if cifar:
        b.linear(x, "classifier.1", 10)
        return b.build("mobilenet_v2_cifar",
                       "MobileNetV2, CIFAR-10 32x32 (stride-1 stem and first 24-ch stage)")
    b.linear(x, "classifier.1", 1000)
    return b.build("mobilenet_v2", "MobileNetV2 (width 1.0), ImageNet 224x224")


def mobilenet_v2() -> ZooModel:
    """MobileNetV2 for ImageNet (3x224x224, 1000 classes), as torchvision builds it."""
    return _mobilenet_v2(False)


def mobilenet_v2_cifar() -> ZooModel:
    """MobileNetV2 for CIFAR-10 (3x32x32): stride-1 stem and first 24-channel stage."""
    return _mobilenet_v2(True)


# ----------------------------------------------------------------------------------------
# Transformers. Multi-head attention is listed as separate q, k and v projections (ViT's
# packed 3d-wide projection, one parameter of torchvision's MultiheadAttention, has the
# same weights and MACs; GPT-2, built by workloads/llm.py, has Hugging Face's fused
# `attn.c_attn` layer), the score product Q K^T and the context product P V as `Matmul`
# with count = heads, and the softmax over [heads, seq, seq]. The 1/sqrt(d_head) scale and
# the causal mask are folded into the softmax; dropout is the identity at the shapes level.
# ----------------------------------------------------------------------------------------

def _attention(b: _Builder, x: _T, name: str, heads: int, q: str = "q", k: str = "k",
               v: str = "v") -> _T:
    """Self-attention over ``x = [seq, d]``: the q/k/v projections, the two products and
    the softmax; returns the context ``[seq, d]`` before the output projection."""
    seq, d = x.shape
    hd = d // heads
    qs = b.reshape(b.linear(x, f"{name}.{q}", d), (heads, seq, hd))
    ks = b.reshape(b.linear(x, f"{name}.{k}", d), (heads, seq, hd))
    vs = b.reshape(b.linear(x, f"{name}.{v}", d), (heads, seq, hd))
    scores = b.matmul(qs, ks, f"{name}.scores", m=seq, n=seq, k=hd, heads=heads)
    probs = b.softmax(scores, f"{name}.softmax")
    ctx = b.matmul(probs, vs, f"{name}.context", m=seq, n=hd, k=seq, heads=heads)
    return b.reshape(ctx, (seq, d))


def _pre_ln_block(b: _Builder, x: _T, name: str, heads: int, ff: int, names: dict) -> _T:
    """A pre-LN encoder block (ViT): x + attn(ln(x)), then x + mlp(ln(x))."""
    y = b.norm(x, f"{name}.{names['ln_1']}")
    y = _attention(b, y, f"{name}.{names['attn']}", heads)
    y = b.linear(y, f"{name}.{names['attn']}.{names['proj']}", x.shape[1])
    x = b.add(y, x, f"{name}.add_1")
    y = b.norm(x, f"{name}.{names['ln_2']}")
    y = b.linear(y, f"{name}.{names['fc1']}", ff)
    y = b.act(y, f"{name}.{names['gelu']}")
    y = b.linear(y, f"{name}.{names['fc2']}", x.shape[1])
    return b.add(y, x, f"{name}.add_2")


def vit_b_16() -> ZooModel:
    """ViT-B/16 for ImageNet (3x224x224, 1000 classes), as torchvision builds it:
    16x16 patches (196) plus the class token, 12 pre-LN layers, d = 768, 12 heads."""
    d, heads, ff, layers = 768, 12, 3072, 12
    b = _Builder((3, 224, 224))
    x = b.conv(b.input(), "conv_proj", d, 16, 16, bias=True)
    seq = x.shape[1] * x.shape[2] + 1
    x = b.gather(x, (seq, d), params=d + seq * d)  # class token concat; position table
    x = b.embed_sum(x, "encoder.pos_add", (seq, d))
    names = {"ln_1": "ln_1", "attn": "self_attention", "proj": "out_proj", "ln_2": "ln_2",
             "fc1": "mlp.0", "gelu": "mlp.1", "fc2": "mlp.3"}
    for i in range(layers):
        x = _pre_ln_block(b, x, f"encoder.layers.encoder_layer_{i}", heads, ff, names)
    x = b.norm(x, "encoder.ln")
    x = b.gather(x, (1, d))  # the class token
    b.linear(x, "heads.head", 1000)
    return b.build("vit_b_16", "ViT-B/16, ImageNet 224x224 (197 tokens, 12 layers, d=768)")


def bert_base(seq_len: int = 128) -> ZooModel:
    """BERT-base encoder (Hugging Face ``BertModel``, uncased vocabulary, with the pooler)
    on one sequence of ``seq_len`` tokens: 12 post-LN layers, d = 768, 12 heads."""
    d, heads, ff, layers, vocab, positions = 768, 12, 3072, 12, 30522, 512
    b = _Builder((seq_len,))
    x = b.gather(b.input(), (seq_len, d), params=(vocab + positions + 2) * d)
    x = b.embed_sum(x, "embeddings.add", (seq_len, d))
    x = b.norm(x, "embeddings.LayerNorm")
    for i in range(layers):
        name = f"encoder.layer.{i}"
        y = _attention(b, x, f"{name}.attention.self", heads, "query", "key", "value")
        y = b.linear(y, f"{name}.attention.output.dense", d)
        y = b.add(y, x, f"{name}.attention.output.add")
        x = b.norm(y, f"{name}.attention.output.LayerNorm")
        y = b.linear(x, f"{name}.intermediate.dense", ff)
        y = b.act(y, f"{name}.intermediate.gelu")
        y = b.linear(y, f"{name}.output.dense", d)
        y = b.add(y, x, f"{name}.output.add")
        x = b.norm(y, f"{name}.output.LayerNorm")
    x = b.gather(x, (1, d))  # the [CLS] token
    x = b.linear(x, "pooler.dense", d)
    b.act(x, "pooler.activation")
    return b.build("bert_base", f"BERT-base encoder + pooler, sequence length {seq_len}")


def gpt2_small(seq_len: int = 1024) -> ZooModel:
    """GPT-2 small (124 M, Hugging Face ``GPT2LMHeadModel``) on one sequence of
    ``seq_len`` tokens: 12 pre-LN layers, d = 768, 12 heads, the fused q/k/v projection
    ``attn.c_attn`` (768 -> 2304), and the language-model head, whose weights are tied to
    the token embedding (counted once in ``params``). The prefill graph of
    :data:`nmsat.workloads.llm.GPT2_SMALL`, built there."""
    llm = importlib.import_module("nmsat.workloads.llm")
    m = llm.build(llm.GPT2_SMALL, "prefill", seq_len)
    return dataclasses.replace(m, description=f"GPT-2 small with LM head, sequence length "
                                              f"{seq_len}")


# ----------------------------------------------------------------------------------------
# Registry
# ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Entry:
    factory: Callable[..., ZooModel]
    default_seq_len: int | None = None  # None: the model has no sequence length
    max_seq_len: int | None = None  # position-embedding table size


def _llm(name: str) -> Callable[[int], ZooModel]:
    """The prefill graph of LLM preset ``name`` (``workloads/llm.py``, importing this one)."""
    return lambda n: importlib.import_module("nmsat.workloads.llm").zoo_factory(name)(n)


_REGISTRY: dict[str, _Entry] = {
    "resnet18": _Entry(resnet18),
    "resnet50": _Entry(resnet50),
    "vgg16": _Entry(vgg16),
    "mobilenet_v2": _Entry(mobilenet_v2),
    "resnet18_cifar": _Entry(resnet18_cifar),
    "resnet50_cifar": _Entry(resnet50_cifar),
    "vgg16_cifar": _Entry(vgg16_cifar),
    "mobilenet_v2_cifar": _Entry(mobilenet_v2_cifar),
    "vit_b_16": _Entry(vit_b_16),
    "bert_base": _Entry(bert_base, default_seq_len=128, max_seq_len=512),
    "gpt2_small": _Entry(gpt2_small, default_seq_len=1024, max_seq_len=1024),
    "mlp": _Entry(mlp),
    "cnn": _Entry(cnn),
    "llama_7b": _Entry(_llm("llama_7b"), default_seq_len=2048, max_seq_len=4096),
    "stories260k": _Entry(_llm("stories260k"), default_seq_len=512, max_seq_len=512),
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
    seq_len = check_seq_len(name, seq_len)
    if seq_len is None:
        return entry.factory()
    return dataclasses.replace(entry.factory(seq_len), seq_len=seq_len)


def check_seq_len(name: str, seq_len: int | None) -> int | None:
    """The sequence length :func:`model` builds ``name`` with (its default for ``None``;
    ``None`` for a model without one), without building it. Raises ``ValueError`` as
    :func:`model` does."""
    entry = _entry(name)
    if entry.default_seq_len is None:
        if seq_len is not None:
            raise ValueError(f"{name} has no sequence length (seq_len={seq_len!r})")
        return None
    if seq_len is None:
        return entry.default_seq_len
    if not isinstance(seq_len, int) or isinstance(seq_len, bool) or seq_len < 1:
        raise ValueError(f"seq_len must be a positive integer, not {seq_len!r}")
    if entry.max_seq_len is not None and seq_len > entry.max_seq_len:
        raise ValueError(f"seq_len {seq_len} exceeds {name}'s {entry.max_seq_len} positions")
    return seq_len


def get(name: str, batch: int = 1, seq_len: int | None = None) -> Workload:
    """The zoo model ``name`` as a :class:`Workload` of ``batch`` samples.

    See :func:`model` for ``seq_len`` and the errors.
    """
    return model(name, seq_len).workload(batch)


# ----------------------------------------------------------------------------------------
# Resolving a workload spec (what `nmsat simulate WORKLOAD` and `nmsat workloads show` take)
# ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LoadedWorkload:
    """A workload resolved from a spec, with what its source fixes per layer.

    Attributes
    ----------
    workload
        The layers bound to the batch size.
    layer_nm
        Layer name -> the N:M pattern the source fixes for that layer's weights (a SCALE-Sim
        v3 ``Sparsity`` column). Layers not in the mapping take the pattern the user asks
        for (``--nm``); a zoo model fixes none, so the mapping is empty.
    source
        ``"zoo"`` or the file's kind (such as ``"scalesim-v3 conv"``).
    method
        The training method the source fixes (a training trace), else ``None``.
    """

    workload: Workload
    layer_nm: Mapping[str, NM] = field(default_factory=lambda: MappingProxyType({}))
    source: str = "zoo"
    method: Method | None = None


FILE_LOADERS: dict[str, tuple[str, str]] = {
    ".csv": ("nmsat.workloads.scalesim", "load_workload"),
    ".nmt": ("nmsat.workloads.trace", "load_workload"),  # training traces (nmsat train)
}
"""File suffix -> (module, function) that :func:`load` calls for a file of that kind.

The function is imported only when a file of that kind is loaded and is called as
``fn(path, batch=batch, seq_len=seq_len)``, returning a :class:`LoadedWorkload` (raising
``ValueError`` if the file kind has no use for ``seq_len``). A new workload file kind (a
training trace) is one entry here."""


def load(spec: str | os.PathLike, batch: int | None = None,
         seq_len: int | None = None, input_shape: Sequence[int] | None = None
         ) -> LoadedWorkload:
    """Resolve a zoo name or a workload file into a :class:`LoadedWorkload`.

    Parameters
    ----------
    spec
        A name from :func:`names`, or the path of a file whose suffix is in
        :data:`FILE_LOADERS` (``.csv``: a SCALE-Sim topology).
    batch
        Samples per batch; ``None`` takes the source's own (a SCALE-Sim v3 ``Batch Size``
        column), else 1.
    seq_len
        Sequence length of a language model; see :func:`model`.
    input_shape
        A PyTorch spec's input, batch first (:mod:`nmsat.workloads.torch_spec`:
        ``torchvision:NAME`` or ``FILE.py:FACTORY``); other specs refuse it.

    Raises
    ------
    ValueError
        Neither a zoo name nor a known file kind (the message lists both).
    FileNotFoundError
        A file spec that does not exist.
    NmsatError
        A malformed file (the message names the line and column).
    """
    text = os.fspath(spec)
    torch_spec = importlib.import_module("nmsat.workloads.torch_spec")
    if torch_spec.is_torch_spec(text):
        return torch_spec.load_workload(text, batch=batch, seq_len=seq_len,
                                        input_shape=input_shape)
    if input_shape is not None:
        raise ValueError(f"--input-shape is for PyTorch models (torchvision:NAME or "
                         f"FILE.py:FACTORY), not {text}")
    suffix = os.path.splitext(text)[1].lower()
    if suffix in FILE_LOADERS:
        if os.path.isdir(text):
            raise IsADirectoryError(f"{text}: is a folder, not a workload file")
        if not os.path.isfile(text):
            raise FileNotFoundError(f"no such workload file: {text}")
        module, func = FILE_LOADERS[suffix]
        loader = getattr(importlib.import_module(module), func)
        return loader(text, batch=batch, seq_len=seq_len)
    if text in _REGISTRY:
        return LoadedWorkload(get(text, batch=1 if batch is None else batch, seq_len=seq_len))
    kinds = ", ".join(FILE_LOADERS)
    if os.path.exists(text):
        raise NmsatError(f"{text}: unknown workload file type {suffix or '(none)'!r} "
                         f"(known: {kinds})")
    raise ValueError(f"unknown workload {text!r}: not a model ({', '.join(_REGISTRY)}) "
                     f"nor a file ({kinds})")
