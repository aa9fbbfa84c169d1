"""PyTorch models named on the command line: ``torchvision:NAME`` (a torchvision model,
random weights) and ``path/model.py:FACTORY`` (a function in a Python file that returns an
``nn.Module``), imported through ``torch.fx`` (:mod:`nmsat.workloads.torch_import`).

``input_shape`` is the model's input as PyTorch takes it, batch first (``1,3,224,224``);
without it, torchvision's classification size ``3 x 224 x 224`` (:data:`DEFAULT_INPUT`).
Its leading dimension is the batch unless ``batch`` is given (they must then agree).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Sequence
from typing import Any

from nmsat.errors import NmsatError

__all__ = ["DEFAULT_INPUT", "TORCHVISION", "TORCHVISION_PIN", "is_torch_spec", "load_workload",
           "parse_shape"]

__all__ = ["DEFAULT_INPUT", "TORCHVISION", "TORCHVISION_PIN", "is_torch_spec", "load_workload",
           "parse_shape"]

TORCHVISION = "torchvision:"
DEFAULT_INPUT = (3, 224, 224)
"""Per-sample input of a model named without ``--input-shape``: torchvision's ImageNet
classifiers take 3 x 224 x 224 (their documented transforms crop to 224)."""
TORCHVISION_PIN = "0.28.0"
"""The torchvision release built against torch 2.13.0 (its wheel requires torch==2.13.0)."""


def is_torch_spec(spec: str) -> bool:
    """``torchvision:NAME`` or ``FILE.py:FACTORY``."""
    if spec.startswith(TORCHVISION):
        return True
    path, sep, factory = spec.rpartition(":")
    return bool(sep and factory and path.lower().endswith(".py"))


def parse_shape(text: str) -> tuple[int, ...]:
    """``"1,3,224,224"`` -> ``(1, 3, 224, 224)``: at least two positive integers (batch
    first). Raises ``ValueError`` naming the text."""
    try:
        shape = tuple(int(x) for x in text.replace("x", ",").split(","))
    except ValueError:
        shape = ()
    if len(shape) < 2 or any(d < 1 for d in shape):
        raise ValueError(f"--input-shape must be the batch and the input's dimensions as "
                         f"positive integers, e.g. 1,3,224,224, not {text!r}")
    return shape


def _torchvision_model(name: str) -> Any:
    try:
        import torchvision
    except ImportError:
        raise NmsatError(f"torchvision:{name} needs torchvision: pip install 'nmsat[torch]' "
                         f"(torchvision {TORCHVISION_PIN})") from None
    except Exception as e:  # a CUDA build of torchvision beside the CPU torch fails so
        raise NmsatError(f"torchvision does not load with this torch "
                         f"({str(e).splitlines()[0] if str(e) else type(e).__name__}): "
                         f"install its CPU build, pip install torchvision=={TORCHVISION_PIN} "
                         "--index-url https://download.pytorch.org/whl/cpu") from None
    names = torchvision.models.list_models(module=torchvision.models)
    if name not in names:
        raise ValueError(f"unknown torchvision model {name!r} (classification models: "
                         f"{', '.join(sorted(names))})")
    return torchvision.models.get_model(name, weights=None)


def _file_model(path: str, factory: str) -> Any:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no such model file: {path}")
    name = f"_nmsat_model_{abs(hash(os.path.abspath(path)))}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise NmsatError(f"{path}: cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look modules up by name
    try:
        spec.loader.exec_module(module)
    except Exception as e:
        msg = str(e).splitlines()[0] if str(e) else ""
        raise NmsatError(f"{path}: {type(e).__name__}{': ' + msg if msg else ''}") from None
    finally:
        sys.modules.pop(name, None)
    fn = getattr(module, factory, None)
    if not callable(fn):
        raise NmsatError(f"{path} has no function {factory!r}")
    try:
        model = fn()
    except Exception as e:
        msg = str(e).splitlines()[0] if str(e) else ""
        raise NmsatError(f"{path}:{factory}(): {type(e).__name__}"
                         f"{': ' + msg if msg else ''}") from None
    import torch

    if not isinstance(model, torch.nn.Module):
        raise NmsatError(f"{path}:{factory}() returned {type(model).__name__}, not a "
                         "torch.nn.Module")
    return model


def load_workload(spec: str, batch: int | None = None, seq_len: int | None = None,
                  input_shape: Sequence[int] | None = None):
    """:func:`nmsat.workloads.load`'s loader for PyTorch specs; returns a
    :class:`~nmsat.workloads.zoo.LoadedWorkload` (source ``"torch"``)."""
    from nmsat.workloads.torch_import import _torch, from_torch
    from nmsat.workloads.zoo import LoadedWorkload

    if seq_len is not None:
        raise ValueError(f"{spec}: --seq-len is for the zoo's language models; give a "
                         "PyTorch model's input with --input-shape")
    _torch()  # a missing PyTorch is one line naming the extra
    if input_shape is None:
        shape, own_batch = DEFAULT_INPUT, None
    else:
        shape, own_batch = tuple(input_shape[1:]), input_shape[0]
    if batch is not None and own_batch is not None and batch != own_batch:
        raise ValueError(f"--batch {batch} disagrees with --input-shape's batch {own_batch}")
    if spec.startswith(TORCHVISION):
        name = spec[len(TORCHVISION):]
        model = _torchvision_model(name)
    else:
        path, _, factory = spec.rpartition(":")
        model = _file_model(path, factory)
        name = factory
    b = batch if batch is not None else own_batch if own_batch is not None else 1
    return LoadedWorkload(from_torch(model, shape, name=name, batch=b), source="torch")
