"""Import a PyTorch ``nn.Module`` as nmsat layers (``torch.fx`` trace plus shape propagation).

PyTorch is optional: it is imported when :func:`from_torch` runs, and a missing install is
a one-line :class:`~nmsat.errors.NmsatError`.

The module is traced with ``torch.fx`` (subclasses of the torch modules below are leaves,
so an N:M sparse ``nn.Linear`` with its own ``forward`` imports as a linear layer) and run
once on a zero input of two samples (in eval mode, without gradients; the modules'
train/eval flags are restored), so every node gets its exact output shape. Dimension 0 must
stay the batch throughout: a tensor whose first dimension is not 2 is reported, because
per-sample shapes could not be told from it. Nodes become layers as follows:

* ``nn.Conv2d`` -> :class:`Conv2d` (square stride and padding, no dilation),
  ``nn.Linear`` / ``F.linear`` -> :class:`Linear` (the axes between batch and features
  are tokens), ``matmul``/``bmm``/``@`` of two activations -> :class:`Matmul` (leading
  axes are the count), ``F.scaled_dot_product_attention`` -> the score ``Matmul``, a
  softmax and the context ``Matmul``.
* Normalisation, activation, pooling (including ``mean`` over axes), softmax ->
  :class:`Elementwise` of that kind; add/sub/mul/div of two tensors -> ``ADD`` (one vector
  op per element). Arithmetic with a Python scalar (the attention scale) is folded into the
  neighbouring op, as the zoo does.
* Data movement (reshapes, flatten, permute, cat, slicing, dropout, identity, embedding
  look-ups, padding) is not a layer. Anything else is an error naming the node, so nothing
  is silently dropped.

Layer names are module paths (``layer1.0.conv1``); a function inside a module is named
after the module and the op (``layer1.0.add``), with ``_1``, ``_2`` for repeats.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from typing import Any

from nmsat.errors import NmsatError
from nmsat.workloads.layers import Conv2d, Elementwise, Layer, Linear, Matmul, OpKind, Workload

_BATCH = 2  # traced batch; 2 (not 1) so that a lost batch dimension is detected

# Module class names by kind. Names (not classes) so this table needs no torch import.
_MODULE_KINDS = {
    OpKind.NORM: ("BatchNorm1d", "BatchNorm2d", "LayerNorm", "GroupNorm", "InstanceNorm1d",
                  "InstanceNorm2d", "RMSNorm", "LocalResponseNorm"),
    OpKind.ACT: ("ReLU", "ReLU6", "GELU", "SiLU", "Sigmoid", "Tanh", "Hardswish",
                 "Hardsigmoid", "LeakyReLU", "ELU", "Mish", "Softplus", "PReLU", "SELU",
                 "Hardtanh"),
    OpKind.POOL: ("MaxPool1d", "MaxPool2d", "AvgPool1d", "AvgPool2d", "AdaptiveAvgPool1d",
                  "AdaptiveAvgPool2d", "AdaptiveMaxPool1d", "AdaptiveMaxPool2d"),
    OpKind.SOFTMAX: ("Softmax", "LogSoftmax"),
}
_MODULE_SKIP = ("Flatten", "Unflatten", "Dropout", "Dropout1d", "Dropout2d", "AlphaDropout",
                "Identity", "Embedding", "ZeroPad2d", "ConstantPad2d")

# Function / method names by kind.
_FUNC_KINDS = {
    OpKind.NORM: ("layer_norm", "batch_norm", "group_norm", "instance_norm", "rms_norm"),
    OpKind.ACT: ("relu", "relu_", "relu6", "gelu", "silu", "sigmoid", "tanh", "hardswish",
                 "hardsigmoid", "leaky_relu", "elu", "mish", "softplus", "exp", "sqrt",
                 "rsqrt", "neg"),
    OpKind.POOL: ("max_pool1d", "max_pool2d", "avg_pool1d", "avg_pool2d",
                  "adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_max_pool2d", "mean",
                  "amax", "sum"),
    OpKind.SOFTMAX: ("softmax", "log_softmax"),
}
_BINARY = ("add", "iadd", "sub", "isub", "mul", "imul", "truediv", "div", "itruediv")
_MATMUL = ("matmul", "bmm")
_MOVE = ("flatten", "reshape", "view", "permute", "transpose", "contiguous", "size", "dim",
         "chunk", "split", "unsqueeze", "squeeze", "expand", "expand_as", "cat", "concat",
         "stack", "getitem", "getattr", "dropout", "pad", "type_as", "to", "float", "half",
         "clone", "detach", "unbind", "narrow", "repeat", "t", "embedding", "masked_fill",
         "tril", "triu", "ones", "zeros", "arange", "full")


def _torch():
    try:
        import torch
        import torch.fx
        from torch.fx.passes.shape_prop import ShapeProp  # noqa: F401
    except ImportError:
        raise NmsatError("importing a PyTorch model needs PyTorch: pip install 'nmsat[torch]'") \
            from None
    return torch


def from_torch(module: Any, input_shape: Sequence[int], name: str | None = None,
               batch: int = 1, dtype: Any = None) -> Workload:
    """Turn a PyTorch module into a :class:`Workload`.

    Parameters
    ----------
    module
        A ``torch.nn.Module`` whose ``forward`` ``torch.fx`` can trace.
    input_shape
        Per-sample input shape, without the batch (``(3, 224, 224)``, ``(seq_len,)``).
    name
        The workload's name (default: the module's class name).
    batch
        Samples per batch of the returned workload.
    dtype
        Input dtype (default ``torch.float32``; ``torch.long`` for token ids).

    Raises
    ------
    NmsatError
        PyTorch is missing, the module cannot be traced, or it uses an op or a layer
        configuration that has no nmsat layer (the message names the node).
    """
    return Workload(name or type(module).__name__, layers_from_torch(module, input_shape, dtype),
                    batch)


def layers_from_torch(module: Any, input_shape: Sequence[int],
                      dtype: Any = None) -> tuple[Layer, ...]:
    """The layers of ``module`` in execution order; see :func:`from_torch`."""
    torch = _torch()
    shape = tuple(input_shape)
    if not shape or not all(isinstance(d, int) and d >= 1 for d in shape):
        raise ValueError(f"input_shape must be positive integers, not {input_shape!r}")
    try:
        gm = _trace(torch, module)
    except Exception as e:  # fx raises many types (TraceError, TypeError, NotImplementedError)
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise NmsatError(f"torch.fx cannot trace {type(module).__name__}: {msg}") from None
    modes = {m: m.training for m in module.modules()}
    try:
        module.eval()
        gm.eval()
        gm = _propagate(torch, gm, (_BATCH, *shape), dtype or torch.float32)
    except Exception as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise NmsatError(f"running {type(module).__name__} on input {shape}: {msg}") from None
    finally:
        for m, training in modes.items():
            m.training = training
    return tuple(_Converter(gm).run())


def _known(mod: Any) -> str | None:
    """The torch class (by name, over the MRO) that ``mod`` is, if this module maps it."""
    for cls in type(mod).__mro__:
        name = cls.__name__
        if cls.__module__.startswith("torch.nn") and (
                name in ("Conv2d", "Linear") or name in _MODULE_SKIP
                or any(name in names for names in _MODULE_KINDS.values())):
            return name
    return None


def _trace(torch: Any, module: Any) -> Any:
    """``torch.fx`` trace in which subclasses of the mapped torch modules are leaves too,
    so a custom ``forward`` (an N:M sparse ``nn.Linear`` whose forward is an autograd
    function, as ``nmsat train`` uses) is imported as the layer it is."""

    class Tracer(torch.fx.Tracer):
        def is_leaf_module(self, m: Any, qualname: str) -> bool:
            return _known(m) is not None or super().is_leaf_module(m, qualname)

    tracer = Tracer()
    graph = tracer.trace(module)
    return torch.fx.GraphModule(tracer.root, graph, type(module).__name__)


def _propagate(torch: Any, gm: Any, shape: tuple[int, ...], dtype: Any) -> Any:
    """Annotate every node of ``gm`` with its output shape; returns the annotated module.

    Shapes are first computed on PyTorch's "meta" device (no arithmetic, so a large model
    costs no more than a small one) on a copy whose parameters are meta tensors; a model
    that cannot run there (it creates CPU tensors in ``forward``, or reads values) is run
    for real on zeros.
    """
    from torch.fx.passes.shape_prop import ShapeProp

    memo: dict[int, Any] = {}
    for p in gm.parameters():
        memo[id(p)] = torch.nn.Parameter(p.detach().to("meta"), requires_grad=p.requires_grad)
    for b in gm.buffers():
        memo[id(b)] = b.detach().to("meta")
    with torch.no_grad():
        try:
            meta = copy.deepcopy(gm, memo)
            ShapeProp(meta).propagate(torch.zeros(shape, dtype=dtype, device="meta"))
            return meta
        except Exception:  # any failure on meta: fall back to the real computation
            ShapeProp(gm).propagate(torch.zeros(shape, dtype=dtype))
            return gm


class _Converter:
    def __init__(self, gm: Any) -> None:
        self.gm = gm
        self.layers: list[Layer] = []
        self.used: set[str] = set()

    # -- helpers ----------------------------------------------------------------------
    def _name(self, base: str) -> str:
        name, i = base, 0
        while name in self.used:
            i += 1
            name = f"{base}_{i}"
        self.used.add(name)
        return name

    def _func_name(self, node: Any, op: str) -> str:
        stack = node.meta.get("nn_module_stack") or {}
        path = next(reversed(stack.values()))[0] if stack else ""
        return self._name(f"{path}.{op}" if path else op)

    @staticmethod
    def _shape(node: Any) -> tuple[int, ...]:
        """Per-sample shape of a node's tensor output."""
        meta = node.meta.get("tensor_meta")
        if meta is None or not hasattr(meta, "shape"):
            raise NmsatError(f"node {node.name!r}: output is not a single tensor")
        full = tuple(int(d) for d in meta.shape)
        if not full or full[0] != _BATCH:
            raise NmsatError(f"node {node.name!r}: output shape {full} does not keep the batch "
                             f"as dimension 0")
        # a feature vector is one token of features, as Linear.out_shape has it
        return (1, full[1]) if len(full) == 2 else full[1:]

    @staticmethod
    def _is_tensor(arg: Any) -> bool:
        return hasattr(arg, "meta") and hasattr(arg.meta.get("tensor_meta"), "shape")

    def _elementwise(self, name: str, kind: OpKind, node: Any, src: Any = None) -> None:
        out = self._shape(node)
        inp = self._shape(src) if src is not None else out
        self.layers.append(Elementwise(name, kind=kind, elements=math.prod(out), shape=out,
                                       input_shape=inp if inp != out else ()))

    # -- conversion -------------------------------------------------------------------
    def run(self) -> list[Layer]:
        for node in self.gm.graph.nodes:
            if node.op in ("placeholder", "output", "get_attr"):
                continue
            if node.op == "call_module":
                self._module(node)
            elif node.op == "call_function":
                op = getattr(node.target, "__name__", str(node.target))
                self._op(node, op.rstrip("_"), node.args)  # relu_ is relu
            elif node.op == "call_method":
                self._op(node, node.target.rstrip("_"), node.args)
        return self.layers

    def _module(self, node: Any) -> None:
        mod = self.gm.get_submodule(node.target)
        cls = _known(mod) or type(mod).__name__
        if cls in _MODULE_SKIP:
            return
        name = self._name(node.target)
        src = node.args[0]
        if cls == "Conv2d":
            self.layers.append(self._conv(name, mod, node, src))
            return
        if cls == "Linear":
            self.layers.append(self._linear(name, src, mod.in_features, mod.out_features))
            return
        for kind, classes in _MODULE_KINDS.items():
            if cls in classes:
                self._elementwise(name, kind, node, src if kind is OpKind.POOL else None)
                return
        raise NmsatError(f"module {node.target!r}: {cls} has no nmsat layer (supported: "
                         f"Conv2d, Linear, norms, activations, pools, Softmax)")

    def _conv(self, name: str, mod: Any, node: Any, src: Any) -> Conv2d:
        def square(attr: str) -> int:
            v = getattr(mod, attr)
            v = (v, v) if isinstance(v, int) else tuple(v)
            if v[0] != v[1]:
                raise NmsatError(f"module {node.target!r}: non-square {attr} {v} is not "
                                 f"supported")
            return int(v[0])

        if square("dilation") != 1:
            raise NmsatError(f"module {node.target!r}: dilation {mod.dilation} is not supported")
        kh, kw = mod.kernel_size
        stride = square("stride")
        if isinstance(mod.padding, str):  # "valid" or "same" (stride 1 only, in torch)
            if mod.padding == "valid":
                padding = 0
            elif kh == kw and kh % 2 == 1:
                padding = (kh - 1) // 2
            else:
                raise NmsatError(f"module {node.target!r}: padding='same' with kernel "
                                 f"{mod.kernel_size} is not symmetric")
        else:
            padding = square("padding")
        c, h, w = self._shape(src)
        layer = Conv2d(name, in_ch=c, out_ch=mod.out_channels, in_h=h, in_w=w, kh=kh, kw=kw,
                       stride=stride, padding=padding, groups=mod.groups)
        if layer.out_shape != self._shape(node):
            raise NmsatError(f"module {node.target!r}: output {self._shape(node)} is not the "
                             f"{layer.out_shape} of a plain convolution")
        return layer

    def _linear(self, name: str, src: Any, in_features: int, out_features: int) -> Linear:
        shape = self._shape(src)
        return Linear(name, in_features=in_features, out_features=out_features,
                      tokens=math.prod(shape[:-1]))

    def _op(self, node: Any, op: str, args: tuple) -> None:
        tensors = [a for a in args if self._is_tensor(a)]
        if op in _MOVE or not tensors:
            return
        if op in _BINARY:
            if len(tensors) >= 2:
                self._elementwise(self._func_name(node, "add" if op.endswith("add") else op),
                                  OpKind.ADD, node)
            return  # arithmetic with a scalar: folded
        if op in _MATMUL:
            self._matmul(node, op, tensors)
            return
        if op == "linear":
            weight = self._shape_any(args[1])
            self.layers.append(self._linear(self._func_name(node, "linear"), args[0],
                                            weight[1], weight[0]))
            return
        if op == "scaled_dot_product_attention":
            self._sdpa(node, args)
            return
        for kind, ops in _FUNC_KINDS.items():
            if op in ops:
                self._elementwise(self._func_name(node, op), kind, node,
                                  tensors[0] if kind is OpKind.POOL else None)
                return
        raise NmsatError(f"node {node.name!r}: operation {op!r} has no nmsat layer")

    @staticmethod
    def _shape_any(node: Any) -> tuple[int, ...]:
        return tuple(int(d) for d in node.meta["tensor_meta"].shape)

    def _matmul(self, node: Any, op: str, tensors: list) -> None:
        if len(tensors) != 2 or any(t.op == "get_attr" for t in tensors):
            raise NmsatError(f"node {node.name!r}: {op} with a parameter operand; use "
                             f"nn.Linear for weights")
        a, b = (self._shape(t) for t in tensors)
        out = self._shape(node)
        if len(a) < 2 or len(b) < 2:
            raise NmsatError(f"node {node.name!r}: {op} of {a} and {b} needs matrices")
        m, k = a[-2], a[-1]
        n = b[-1]
        self.layers.append(Matmul(self._func_name(node, "matmul"), m=m, n=n, k=k,
                                  count=math.prod(out[:-2])))

    def _sdpa(self, node: Any, args: tuple) -> None:
        q, k, v = (self._shape(t) for t in args[:3])
        count = math.prod(q[:-2])
        seq, kv, hd, vd = q[-2], k[-2], q[-1], v[-1]
        base = self._func_name(node, "attention")
        self.used.update({f"{base}.scores", f"{base}.softmax", f"{base}.context"})
        self.layers.append(Matmul(f"{base}.scores", m=seq, n=kv, k=hd, count=count))
        probs = q[:-2] + (seq, kv)
        self.layers.append(Elementwise(f"{base}.softmax", kind=OpKind.SOFTMAX,
                                       elements=math.prod(probs), shape=probs))
        self.layers.append(Matmul(f"{base}.context", m=seq, n=vd, k=kv, count=count))


__all__ = ["from_torch", "layers_from_torch"]
