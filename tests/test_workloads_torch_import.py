"""PyTorch importer: hand-built torch models give the zoo's layers."""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
from pathlib import Path

import pytest

from nmsat.errors import NmsatError
from nmsat.workloads import zoo
from nmsat.workloads.layers import Elementwise, Matmul, OpKind
from nmsat.workloads.torch_import import from_torch, layers_from_torch

torch = pytest.importorskip("torch")
nn = torch.nn
F = torch.nn.functional

pytestmark = pytest.mark.torch

RESNET_FILE = Path(__file__).resolve().parent / "data" / "resnet18_torch.py"


def _load_resnet18_module():
    spec = importlib.util.spec_from_file_location("nmsat_test_resnet18_torch", RESNET_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ResNet18 = _load_resnet18_module().ResNet18


def dropout(x):
    """An identity (named like an op the importer skips) that cannot run on "meta"."""
    if x.is_meta:
        raise NotImplementedError("no meta kernel")
    return x


torch.fx.wrap("dropout")


class DigitsCNN(nn.Module):
    """The digits CNN as `nmsat train` defines it (same attribute names)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.relu2 = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(512, 64)
        self.relu3 = nn.ReLU()
        self.fc2 = nn.Linear(64, 10)

    def forward(self, x):
        x = self.pool(self.relu2(self.conv2(self.relu1(self.conv1(x)))))
        return self.fc2(self.relu3(self.fc1(self.flatten(x))))


def test_digits_cnn_matches_zoo_exactly():
    module = DigitsCNN()
    module.train()
    layers = layers_from_torch(module, (1, 8, 8))
    assert layers == zoo.model("cnn").layers
    assert module.training and module.conv1.training  # train/eval flags restored


def test_resnet18_matches_zoo():
    for cifar, name in ((False, "resnet18"), (True, "resnet18_cifar")):
        imported = from_torch(ResNet18(cifar), (3, 32, 32) if cifar else (3, 224, 224),
                              name=name, batch=2)
        ref = zoo.get(name, batch=2)
        assert imported.macs() == ref.macs()
        # Same layers in the same order; the residual adds are named by fx ("layer1.0.add"
        # here too, from the enclosing module), everything else by module path.
        assert [dataclasses.replace(l, name="") for l in imported.layers] == \
               [dataclasses.replace(l, name="") for l in ref.layers]
        assert [l.name for l in imported.layers] == [l.name for l in ref.layers]


class Attention(nn.Module):
    def __init__(self, d: int = 32, heads: int = 4) -> None:
        super().__init__()
        self.heads = heads
        self.q, self.k, self.v = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)
        self.norm = nn.LayerNorm(d)

    def forward(self, x):
        b, s, d = x.shape
        q, k, v = (t(x).view(b, s, self.heads, -1).transpose(1, 2)
                   for t in (self.q, self.k, self.v))
        scores = q @ k.transpose(-2, -1) / (d // self.heads) ** 0.5
        ctx = torch.softmax(scores, dim=-1) @ v
        y = F.scaled_dot_product_attention(q, k, v)
        return self.norm(ctx.transpose(1, 2).reshape(b, s, d) + y.transpose(1, 2).reshape(b, s, d))


def test_attention_ops():
    layers = layers_from_torch(Attention(), (10, 32))
    kinds = [(type(l).__name__, getattr(l, "kind", None)) for l in layers]
    assert [l.name for l in layers] == ["q", "k", "v", "matmul", "softmax", "matmul_1",
                                        "attention.scores", "attention.softmax",
                                        "attention.context", "add", "norm"]
    assert kinds[3] == ("Matmul", None) and kinds[-1] == ("Elementwise", OpKind.NORM)
    scores, ctx = layers[3], layers[5]
    assert (scores.m, scores.n, scores.k, scores.count) == (10, 10, 8, 4)
    assert (ctx.m, ctx.n, ctx.k, ctx.count) == (10, 8, 10, 4)
    assert layers[6] == dataclasses.replace(scores, name="attention.scores")
    assert layers[0].tokens == 10
    assert isinstance(layers[4], Elementwise) and layers[4].shape == (4, 10, 10)
    assert all(isinstance(l, Matmul) for l in (layers[3], layers[5], layers[8]))


def test_unsupported_and_untraceable():
    class Dilated(nn.Module):
        def __init__(self):
            super().__init__()
            self.c = nn.Conv2d(3, 3, 3, dilation=2)

        def forward(self, x):
            return self.c(x)

    with pytest.raises(NmsatError, match=r"^module 'c': dilation \(2, 2\) is not supported$"):
        layers_from_torch(Dilated(), (3, 9, 9))

    class Lstm(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = nn.GRUCell(4, 4)

        def forward(self, x):
            return self.rnn(x)

    with pytest.raises(NmsatError, match=r"^module 'rnn': GRUCell has no nmsat layer"):
        layers_from_torch(Lstm(), (4,))

    class Branchy(nn.Module):
        def forward(self, x):
            return x if x.sum() > 0 else -x

    with pytest.raises(NmsatError, match=r"^torch.fx cannot trace Branchy: "):
        layers_from_torch(Branchy(), (4,))

    class LosesBatch(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(16, 2)

        def forward(self, x):
            return self.fc(x.reshape(1, -1))

    with pytest.raises(NmsatError, match=r"does not keep the batch as dimension 0"):
        layers_from_torch(LosesBatch(), (2, 4))

    with pytest.raises(ValueError, match=r"input_shape must be positive integers"):
        layers_from_torch(DigitsCNN(), (1, 0, 8))


def test_missing_torch_is_one_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` raise ImportError
    with pytest.raises(NmsatError, match=r"needs PyTorch: pip install 'nmsat\[torch\]'"):
        layers_from_torch(object(), (1,))


def test_falls_back_to_a_real_run_when_meta_fails():
    class CpuOnly(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(6, 3)

        def forward(self, x):
            return torch.relu(self.fc(dropout(x)))

    layers = layers_from_torch(CpuOnly(), (5, 6))
    assert [(l.name, l.in_shape, l.out_shape) for l in layers] == [
        ("fc", (5, 6), (5, 3)), ("relu", (5, 3), (5, 3))]


class _Masked(torch.autograd.Function):
    """A custom autograd function in forward, as N:M sparse training layers have."""

    @staticmethod
    def forward(ctx, x, w, b):
        return F.linear(x, w * (w.abs() > 0), b)

    @staticmethod
    def backward(ctx, g):
        raise NotImplementedError


class MaskedLinear(nn.Linear):
    def forward(self, x):
        return _Masked.apply(x, self.weight, self.bias)


class DigitsMLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = MaskedLinear(64, 256)
        self.relu1 = nn.ReLU()
        self.fc2 = MaskedLinear(256, 256)
        self.relu2 = nn.ReLU()
        self.fc3 = MaskedLinear(256, 10)

    def forward(self, x):
        return self.fc3(self.relu2(self.fc2(self.relu1(self.fc1(x)))))


def test_subclassed_sparse_layers_import_as_their_base():
    assert layers_from_torch(DigitsMLP(), (64,)) == zoo.model("mlp").layers
