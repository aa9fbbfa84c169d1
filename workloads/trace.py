"""Sparse-training traces: one versioned file per training run (``docs/trace-format.md``).

A trace is a zip file (extension ``.nmt`` by convention) holding ``manifest.json`` and
NumPy ``.npy`` members. The manifest states the run (model, method, N:M, seeds, tool
version, hyper-parameters), the layers with their shapes and per-phase GEMM dimensions,
the accuracy curve, and lists every array member with its dtype, shape and SHA-256.

:func:`load_trace` validates everything (container, checksums, version, fields, shapes)
and returns an immutable :class:`Trace`; each problem raises one :class:`TraceError`
naming it. :func:`save_trace` writes atomically. :func:`trace_to_workload` turns a trace
into the :class:`~nmsat.workloads.layers.Workload` the simulator runs.

This module needs NumPy only (no torch), so the simulator and the RTL can read traces.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import math
import os
import types
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nmsat.errors import NmsatError
from nmsat.fileio import atomic_write_bytes
from nmsat.types import NM, Method

from .layers import Conv2d, Elementwise, GemmDims, Layer, Linear, Matmul, OpKind, Phase, Workload

__all__ = ["FORMAT", "MANIFEST", "STAT_NAMES", "TENSOR_NAMES", "VERSION", "Baseline",
           "EpochRecord", "LayerTensors", "Sample", "Trace", "TraceError", "TraceLayer",
           "dumps_trace", "load_workload", "save_trace", "summarize", "trace_to_workload"]

FORMAT = "nmsat-trace"
VERSION = 1
MANIFEST = "manifest.json"

STAT_NAMES = ("ff_density", "bp_density", "ff_flip", "bp_flip", "act_zero", "grad_zero")
"""Per-iteration, per-weight-layer statistics (arrays ``[iterations, weight layers]``):
fraction of weights kept by the FF / BP mask, fraction of FF / BP mask bits that changed
since the previous iteration (NaN at iteration 0), fraction of exact zeros in the layer's
input activations and in its output gradient."""

TENSOR_NAMES = ("w_master", "bias", "velocity", "w_fp16", "ff_mask", "bp_mask", "w_ff", "w_bp",
                "x", "x_fp16", "dy", "dy_fp16", "dw")
_TENSOR_DTYPES = {"w_master": "float32", "bias": "float32", "velocity": "float32",
                  "w_fp16": "float16", "ff_mask": "bool", "bp_mask": "bool", "w_ff": "float16",
                  "w_bp": "float16", "x": "float32", "x_fp16": "float16", "dy": "float32",
                  "dy_fp16": "float16", "dw": "float32"}
_LAYER_TYPES: dict[str, type[Layer]] = {
    c.__name__: c for c in (Linear, Conv2d, Matmul, Elementwise)}
_GEMM_PHASES = (Phase.FF, Phase.BP, Phase.WG)


class TraceError(NmsatError, ValueError):
    """A trace file or trace object is invalid; the message names the problem."""


# --------------------------------------------------------------------------- typed objects


def _frozen(a: Any, dtype: str | None = None) -> np.ndarray:
    """A private read-only copy, so a loaded trace cannot be changed through its arrays."""
    arr = np.array(a, dtype=dtype, copy=True)
    arr.flags.writeable = False
    return arr


@dataclass(frozen=True)
class TraceLayer:
    """One layer of the traced model: its typed shape, method, pattern and which of its
    GEMM phases the engine runs N:M (``Layer.nm_applies`` agrees, checked on load)."""

    layer: Layer
    method: Method
    nm: NM
    sparse_ff: bool
    sparse_bp: bool

    @property
    def name(self) -> str:
        return self.layer.name

    def gemms(self, batch: int) -> dict[Phase, tuple[GemmDims, ...]]:
        return {p: tuple(self.layer.gemms(p, batch)) for p in _GEMM_PHASES}


@dataclass(frozen=True)
class EpochRecord:
    """End-of-epoch point of the accuracy curve (accuracies are fractions in [0, 1])."""

    epoch: int
    train_loss: float
    train_accuracy: float
    test_accuracy: float


@dataclass(frozen=True)
class Baseline:
    """The dense run with the same model, data and seed, for the side-by-side report."""

    method: Method
    accuracy: tuple[EpochRecord, ...]
    wall_seconds: float

    @property
    def final_accuracy(self) -> float:
        return self.accuracy[-1].test_accuracy


@dataclass(frozen=True)
class LayerTensors:
    """A weight layer's tensors at a sampled iteration (after backward, before the update).

    fp32 master weights, bias and momentum (``velocity``); the fp16 working copy; the FF
    and BP masks and the fp16 weights each phase uses (zeros where pruned); the layer
    input ``x`` and output gradient ``dy`` (fp32 as trained, and fp16 as the engine would
    take them); the weight gradient ``dw`` the update used (SR-STE decay included).
    """

    w_master: np.ndarray
    bias: np.ndarray
    velocity: np.ndarray
    w_fp16: np.ndarray
    ff_mask: np.ndarray
    bp_mask: np.ndarray
    w_ff: np.ndarray
    w_bp: np.ndarray
    x: np.ndarray
    x_fp16: np.ndarray
    dy: np.ndarray
    dy_fp16: np.ndarray
    dw: np.ndarray

    def __post_init__(self) -> None:
        for name in TENSOR_NAMES:
            object.__setattr__(self, name, _frozen(getattr(self, name), _TENSOR_DTYPES[name]))


@dataclass(frozen=True)
class Sample:
    """The full tensors of one iteration, by weight-layer name, and the learning rate its
    weight update used (the run's schedule decays it)."""

    iteration: int
    epoch: int
    lr: float
    layers: Mapping[str, LayerTensors]

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", types.MappingProxyType(dict(self.layers)))


@dataclass(frozen=True)
class Trace:
    """One training run. Construction validates every cross-field invariant."""

    VERSION = VERSION

    version: int
    tool_version: str
    torch_version: str
    model: str
    dataset: str
    method: Method
    nm: NM
    seed: int
    split_seed: int
    epochs: int
    batch: int
    lr: float
    momentum: float
    srste_decay: float
    train_size: int
    test_size: int
    threads: int
    wall_seconds: float
    layers: tuple[TraceLayer, ...]
    loss: np.ndarray
    stats: Mapping[str, np.ndarray]
    accuracy: tuple[EpochRecord, ...]
    baseline: Baseline | None
    samples: tuple[Sample, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "method", Method.parse(self.method))
        object.__setattr__(self, "nm", NM.parse(self.nm))
        object.__setattr__(self, "layers", tuple(self.layers))
        object.__setattr__(self, "accuracy", tuple(self.accuracy))
        object.__setattr__(self, "samples", tuple(self.samples))
        object.__setattr__(self, "loss", _frozen(self.loss, "float32"))
        object.__setattr__(self, "stats", types.MappingProxyType(
            {k: _frozen(v, "float32") for k, v in self.stats.items()}))
        _validate(self)

    # -- conveniences
    @property
    def iterations(self) -> int:
        return int(self.loss.shape[0])

    @property
    def weight_layers(self) -> tuple[TraceLayer, ...]:
        return tuple(t for t in self.layers if t.layer.has_weights)

    @property
    def final_accuracy(self) -> float:
        return self.accuracy[-1].test_accuracy

    def layer(self, name: str) -> TraceLayer:
        for t in self.layers:
            if t.name == name:
                return t
        raise KeyError(f"trace has no layer {name!r}")

    def layer_stats(self, name: str) -> dict[str, np.ndarray]:
        """Per-iteration statistics of one weight layer, by statistic name."""
        names = [t.name for t in self.weight_layers]
        if name not in names:
            raise KeyError(f"trace has no weight layer {name!r}")
        j = names.index(name)
        return {k: self.stats[k][:, j] for k in STAT_NAMES}


def _io_shapes(layer: Layer, batch: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Expected shapes of a weight layer's input x and output gradient dy for a batch."""
    if isinstance(layer, Linear):
        if layer.tokens == 1:
            return (batch, layer.in_features), (batch, layer.out_features)
        return (batch,) + layer.in_shape, (batch,) + layer.out_shape
    if isinstance(layer, Conv2d):
        return (batch,) + layer.in_shape, (batch,) + layer.out_shape
    raise TraceError(f"layer {layer.name}: {type(layer).__name__} has no weight tensors")


def _validate(t: Trace) -> None:
    if t.version != VERSION:
        raise TraceError(f"unsupported trace version {t.version!r} (this nmsat reads "
                         f"version {VERSION})")
    for name in ("epochs", "batch", "train_size", "test_size", "threads"):
        v = getattr(t, name)
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise TraceError(f"{name} must be a positive integer, not {v!r}")
    if not t.layers:
        raise TraceError("trace has no layers")
    names = [x.name for x in t.layers]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise TraceError(f"duplicate layer name {min(dup)!r}")
    for tl in t.layers:
        if tl.method is not t.method or tl.nm != t.nm:
            raise TraceError(f"layer {tl.name}: method/N:M {tl.method} {tl.nm} differs from "
                             f"the run's {t.method} {t.nm}")
        want = (tl.layer.nm_applies(Phase.FF, t.method, t.nm),
                tl.layer.nm_applies(Phase.BP, t.method, t.nm))
        if (tl.sparse_ff, tl.sparse_bp) != want:
            raise TraceError(f"layer {tl.name}: sparse_ff/sparse_bp {tl.sparse_ff}/"
                             f"{tl.sparse_bp} disagree with the layer's N:M rule {want}")
    iters = t.loss.shape[0] if t.loss.ndim == 1 else -1
    if t.loss.ndim != 1 or iters < 1:
        raise TraceError(f"loss must be a non-empty 1-D array, not shape {t.loss.shape}")
    nw = len(t.weight_layers)
    if set(t.stats) != set(STAT_NAMES):
        raise TraceError(f"stats must be exactly {', '.join(STAT_NAMES)}; got "
                         f"{', '.join(sorted(t.stats))}")
    for k, v in t.stats.items():
        if v.shape != (iters, nw):
            raise TraceError(f"stats {k} has shape {v.shape}, expected ({iters}, {nw}) "
                             "(iterations, weight layers)")
    if len(t.accuracy) != t.epochs:
        raise TraceError(f"accuracy curve has {len(t.accuracy)} points for {t.epochs} epochs")
    if iters % t.epochs:
        raise TraceError(f"{iters} iterations do not divide into {t.epochs} epochs")
    if t.baseline is not None and len(t.baseline.accuracy) != t.epochs:
        raise TraceError(f"baseline accuracy curve has {len(t.baseline.accuracy)} points "
                         f"for {t.epochs} epochs")
    if not t.samples:
        raise TraceError("trace has no sampled iteration")
    wl = {tl.name: tl.layer for tl in t.weight_layers}
    for s in t.samples:
        if not 0 <= s.iteration < iters:
            raise TraceError(f"sample iteration {s.iteration} is outside 0..{iters - 1}")
        if set(s.layers) != set(wl):
            raise TraceError(f"sample {s.iteration}: tensors for layers "
                             f"{sorted(s.layers)}, expected {sorted(wl)}")
        for name, lt in s.layers.items():
            layer = wl[name]
            xs, ys = _io_shapes(layer, t.batch)
            expect = {"w_master": layer.weight_shape, "bias": (layer.weight_shape[0],),
                      "x": xs, "x_fp16": xs, "dy": ys, "dy_fp16": ys}
            for tn in TENSOR_NAMES:
                shape = getattr(lt, tn).shape
                want = expect.get(tn, layer.weight_shape)
                if shape != tuple(want):
                    raise TraceError(f"sample {s.iteration} layer {name}: {tn} has shape "
                                     f"{shape}, expected {tuple(want)} from the layer shape")
            _check_values(lt, f"sample {s.iteration} layer {name}",
                          f"samples/{t.samples.index(s)}/{name}")
    _check_series(t, iters)


def _member(where: str, tn: str) -> str:
    return f"{where}/{tn}.npy"


def _check_values(lt: LayerTensors, what: str, where: str) -> None:
    """The tensor invariants of ``docs/trace-format.md``: finite values, and the fp16
    copies and masked operands are the stated expressions of the others."""
    for tn in TENSOR_NAMES:
        a = getattr(lt, tn)
        if a.dtype != np.bool_ and not np.isfinite(a).all():
            raise TraceError(f"{what}: {tn} ({_member(where, tn)}) holds NaN or Inf")
    zero = np.float16(0)
    with np.errstate(over="ignore"):  # a finite fp32 beyond fp16's range casts to Inf,
        # which then differs from the stored copy: refused below, not warned about
        expect = {"w_fp16": lt.w_master.astype(np.float16),
                  "w_ff": np.where(lt.ff_mask, lt.w_fp16, zero),
                  "w_bp": np.where(lt.bp_mask, lt.w_fp16, zero),
                  "x_fp16": lt.x.astype(np.float16), "dy_fp16": lt.dy.astype(np.float16)}
    for tn, want in expect.items():
        if not np.array_equal(getattr(lt, tn).view(np.uint16), want.view(np.uint16)):
            raise TraceError(f"{what}: {tn} ({_member(where, tn)}) is not what "
                             f"docs/trace-format.md states it is")


def _check_series(t: Trace, iters: int) -> None:
    """The loss is finite; statistics are fractions, NaN only for flips at iteration 0."""
    if not np.isfinite(t.loss).all():
        raise TraceError("loss (loss.npy) holds NaN or Inf")
    for k, v in t.stats.items():
        body = v[1:] if k.endswith("_flip") else v
        if not (np.isfinite(body).all() and ((body >= 0) & (body <= 1)).all()):
            raise TraceError(f"stats {k} (stats/{k}.npy) must hold fractions in [0, 1]"
                             + (" (NaN only at iteration 0)" if k.endswith("_flip") else ""))
        if k.endswith("_flip") and iters and not np.isnan(v[0]).all():
            raise TraceError(f"stats {k} (stats/{k}.npy) must be NaN at iteration 0")


# --------------------------------------------------------------------------- workload


def trace_to_workload(trace: Trace, batch: int | None = None) -> Workload:
    """The traced model as a :class:`Workload` at ``batch`` (default: the trace's batch).

    Per-layer sparsity is not a field of ``Workload``: the simulator takes ``trace.method``
    and ``trace.nm`` and asks each layer's ``nm_applies``, which the loader has checked
    reproduces the trace's per-layer ``sparse_ff``/``sparse_bp``.
    """
    return Workload(name=trace.model, layers=tuple(t.layer for t in trace.layers),
                    batch=trace.batch if batch is None else batch)


def load_workload(path: str | Path, batch: int | None = None, seq_len: int | None = None):
    """:data:`nmsat.workloads.zoo.FILE_LOADERS` entry for ``.nmt`` training traces.

    Returns a :class:`~nmsat.workloads.zoo.LoadedWorkload` whose ``layer_nm`` fixes every
    weight layer to the pattern it was trained with (``1:1`` for a dense run) and whose
    ``source`` is ``"trace <method> <N:M>"``; ``batch=None`` takes the trace's batch.
    """
    from .zoo import LoadedWorkload

    if seq_len is not None:
        raise ValueError(f"{path}: a training trace has no sequence length "
                         f"(seq_len={seq_len!r})")
    from .trace_read import load_trace

    t = load_trace(path)
    nm = NM(1, 1) if t.method is Method.DENSE else t.nm
    return LoadedWorkload(trace_to_workload(t, batch),
                          types.MappingProxyType({x.name: nm for x in t.weight_layers}),
                          source=f"trace {t.method} {t.nm}", method=t.method)


# --------------------------------------------------------------------------- writing


def _layer_json(layer: Layer) -> dict:
    d: dict[str, Any] = {"type": type(layer).__name__}
    for f in dataclasses.fields(layer):
        v = getattr(layer, f.name)
        d[f.name] = v.value if isinstance(v, OpKind) else list(v) if isinstance(v, tuple) else v
    return d


def _epoch_json(r: EpochRecord) -> dict:
    return dataclasses.asdict(r)


def _npy(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(a), allow_pickle=False)
    return buf.getvalue()


def _finite(x: float) -> float:
    if not math.isfinite(x):
        raise TraceError(f"cannot store non-finite value {x!r} in the manifest")
    return x


def dumps_trace(trace: Trace) -> bytes:
    """The trace file's bytes (a zip with fixed timestamps: same trace, same bytes)."""
    arrays: dict[str, np.ndarray] = {"loss.npy": trace.loss}
    for k in STAT_NAMES:
        arrays[f"stats/{k}.npy"] = trace.stats[k]
    for i, s in enumerate(trace.samples):
        for name, lt in s.layers.items():
            for tn in TENSOR_NAMES:
                arrays[f"samples/{i}/{name}/{tn}.npy"] = getattr(lt, tn)
    blobs = {p: _npy(a) for p, a in arrays.items()}
    manifest = {
        "format": FORMAT,
        "version": trace.version,
        "tool_version": trace.tool_version,
        "torch_version": trace.torch_version,
        "run": {
            "model": trace.model, "dataset": trace.dataset, "method": trace.method.value,
            "nm": str(trace.nm), "seed": trace.seed, "split_seed": trace.split_seed,
            "epochs": trace.epochs, "batch": trace.batch, "lr": _finite(trace.lr),
            "momentum": _finite(trace.momentum), "srste_decay": _finite(trace.srste_decay),
            "train_size": trace.train_size, "test_size": trace.test_size,
            "threads": trace.threads, "wall_seconds": _finite(trace.wall_seconds),
        },
        "layers": [{
            "layer": _layer_json(tl.layer), "method": tl.method.value, "nm": str(tl.nm),
            "sparse_ff": tl.sparse_ff, "sparse_bp": tl.sparse_bp,
            "gemms": {p.value: [[g.m, g.n, g.k, g.count] for g in gs]
                      for p, gs in tl.gemms(trace.batch).items()},
        } for tl in trace.layers],
        "iterations": trace.iterations,
        "stat_layers": [tl.name for tl in trace.weight_layers],
        "accuracy": [_epoch_json(r) for r in trace.accuracy],
        "baseline": None if trace.baseline is None else {
            "method": trace.baseline.method.value,
            "accuracy": [_epoch_json(r) for r in trace.baseline.accuracy],
            "wall_seconds": _finite(trace.baseline.wall_seconds),
        },
        "samples": [{"iteration": s.iteration, "epoch": s.epoch, "lr": _finite(s.lr),
                     "layers": list(s.layers)} for s in trace.samples],
        "members": {p: {"sha256": hashlib.sha256(b).hexdigest(), "dtype": str(arrays[p].dtype),
                        "shape": list(arrays[p].shape)} for p, b in blobs.items()},
    }
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        def put(name: str, data: bytes) -> None:
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, data)
        put(MANIFEST, json.dumps(manifest, indent=1).encode())
        for p, b in blobs.items():
            put(p, b)
    return out.getvalue()


def save_trace(trace: Trace, path: str | Path) -> None:
    """Write ``trace`` to ``path`` atomically (no partial file on any error)."""
    atomic_write_bytes(path, dumps_trace(trace))
    # The atomic writer's temporary file is created 0600; give the trace the permissions
    # an ordinary new file would have under the user's umask.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


# --------------------------------------------------------------------------- summary


def _nanmean(a: np.ndarray) -> float | None:
    a = a[~np.isnan(a)]
    return float(a.mean()) if a.size else None


def summarize(trace: Trace) -> dict:
    """A JSON-ready summary (what ``nmsat trace inspect`` prints)."""
    per_layer = []
    last = trace.iterations // trace.epochs  # iterations of the last epoch
    for tl in trace.layers:
        row: dict[str, Any] = {"name": tl.name, "type": type(tl.layer).__name__,
                               "sparse_ff": tl.sparse_ff, "sparse_bp": tl.sparse_bp}
        if tl.layer.has_weights:
            st = trace.layer_stats(tl.name)
            row.update({
                "weight_shape": list(tl.layer.weight_shape),
                "ff_density": float(st["ff_density"][-1]),
                "bp_density": float(st["bp_density"][-1]),
                "ff_flip_mean": _nanmean(st["ff_flip"]),
                "bp_flip_mean": _nanmean(st["bp_flip"]),
                "ff_flip_last_epoch": _nanmean(st["ff_flip"][-last:]),
                "bp_flip_last_epoch": _nanmean(st["bp_flip"][-last:]),
                "act_zero_mean": _nanmean(st["act_zero"]),
                "grad_zero_mean": _nanmean(st["grad_zero"]),
            })
        per_layer.append(row)
    return {
        "format": FORMAT, "version": trace.version, "tool_version": trace.tool_version,
        "model": trace.model, "dataset": trace.dataset, "method": trace.method.value,
        "nm": str(trace.nm), "seed": trace.seed, "epochs": trace.epochs, "batch": trace.batch,
        "iterations": trace.iterations, "lr": trace.lr,
        "final_test_accuracy": trace.final_accuracy,
        "final_train_loss": trace.accuracy[-1].train_loss,
        "baseline_test_accuracy": (None if trace.baseline is None
                                   else trace.baseline.final_accuracy),
        "wall_seconds": trace.wall_seconds,
        "layers": per_layer,
        "samples": [{"iteration": s.iteration, "epoch": s.epoch, "lr": s.lr,
                     "tensors": sorted(TENSOR_NAMES), "layers": list(s.layers)}
                    for s in trace.samples],
    }


def __getattr__(name: str) -> Any:
    """``load_trace`` and ``loads_trace`` live in :mod:`.trace_read`, which reads the types
    above; they are re-exported here on first use, so importing either module first works
    (a module-level import here was a cycle: importing ``trace_read`` first failed)."""
    if name in ("load_trace", "loads_trace"):
        from . import trace_read

        return getattr(trace_read, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
