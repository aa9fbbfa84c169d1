"""Reading training traces: the container checked within bounds, then every field.

:func:`loads_trace` checks the zip's directory before inflating anything (member count,
each member's compressed and uncompressed size and their ratio, compression methods:
:data:`ZIP_LIMITS`), so a small file cannot expand into gigabytes; then the manifest
(every field required, typed, and checked against the tensors' shapes), every member's
SHA-256, dtype and shape, and finally the :class:`~nmsat.workloads.trace.Trace`
invariants (``docs/trace-format.md``: finite values, the stated fp16 and mask
expressions). Each problem is one :class:`TraceError` naming the member or field.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from nmsat.fileio import LIMITS, InputError, check_shape, read_bytes
from nmsat.types import NM, Method

from .trace import (
    _LAYER_TYPES,
    _TENSOR_DTYPES,
    FORMAT,
    MANIFEST,
    STAT_NAMES,
    TENSOR_NAMES,
    VERSION,
    Baseline,
    EpochRecord,
    Layer,
    LayerTensors,
    OpKind,
    Sample,
    Trace,
    TraceError,
    TraceLayer,
)

__all__ = ["ZIP_LIMITS", "load_trace", "loads_trace"]

ZIP_LIMITS = {
    "members": 100_000,            # 13 tensors per weight layer and sampled iteration
    "member_bytes": 512 << 20,     # one inflated member
    "total_bytes": 1 << 30,        # all members inflated together
    "manifest_bytes": 16 << 20,    # manifest.json inflated
    "ratio": 200,                  # inflated / compressed, for members over 1 MiB
}
"""Bounds on a trace container, checked from its directory before anything is inflated.
The inflated sizes are the directory's; zipfile stops at them and a lie fails the CRC."""

_COMPRESSIONS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate"}


def _check_directory(z: zipfile.ZipFile) -> None:
    infos = z.infolist()
    if len(infos) > ZIP_LIMITS["members"]:
        raise TraceError(f"the container has {len(infos):,} members (limit "
                         f"{ZIP_LIMITS['members']:,})")
    total = 0
    for info in infos:
        name = info.filename
        if info.compress_type not in _COMPRESSIONS:
            raise TraceError(f"member {name!r} uses compression method {info.compress_type} "
                             f"(a trace uses {' or '.join(_COMPRESSIONS.values())})")
        if info.flag_bits & 0x1:
            raise TraceError(f"member {name!r} is encrypted")
        limit = ZIP_LIMITS["manifest_bytes" if name == MANIFEST else "member_bytes"]
        if info.file_size > limit:
            raise TraceError(f"member {name!r} inflates to {info.file_size:,} bytes (limit "
                             f"{limit:,})")
        if info.file_size > 1 << 20 and \
                info.file_size > ZIP_LIMITS["ratio"] * max(info.compress_size, 1):
            raise TraceError(f"member {name!r} inflates {info.file_size:,} bytes from "
                             f"{info.compress_size:,} (ratio over {ZIP_LIMITS['ratio']})")
        total += info.file_size
    if total > ZIP_LIMITS["total_bytes"]:
        raise TraceError(f"the members inflate to {total:,} bytes (limit "
                         f"{ZIP_LIMITS['total_bytes']:,})")


def _no_dups(pairs: list[tuple[str, Any]]) -> dict:
    d: dict[str, Any] = {}
    for k, v in pairs:
        if k in d:
            raise TraceError(f"manifest has duplicate key {k!r}")
        d[k] = v
    return d


_INT = (int,)
_NUM = (int, float)


def _check(d: Any, where: str, spec: Mapping[str, tuple]) -> dict:
    """``d`` must be an object with exactly ``spec``'s keys, each of one of its types."""
    if not isinstance(d, dict):
        raise TraceError(f"manifest {where}: expected an object, got {type(d).__name__}")
    missing = [k for k in spec if k not in d]
    if missing:
        raise TraceError(f"manifest {where}: missing field {missing[0]!r}")
    extra = [k for k in d if k not in spec]
    if extra:
        raise TraceError(f"manifest {where}: unknown field {extra[0]!r}")
    for k, typs in spec.items():
        v = d[k]
        if isinstance(v, bool) and bool not in typs:
            ok = False
        else:
            ok = isinstance(v, typs)
        if not ok:
            names = "/".join(t.__name__ if t is not type(None) else "null" for t in typs)
            raise TraceError(f"manifest {where}.{k}: expected {names}, got {v!r}")
    return d


_TOP = {"format": (str,), "version": (int,), "tool_version": (str,), "torch_version": (str,),
        "run": (dict,), "layers": (list,), "iterations": _INT, "stat_layers": (list,),
        "accuracy": (list,), "baseline": (dict, type(None)), "samples": (list,),
        "members": (dict,)}
_RUN = {"model": (str,), "dataset": (str,), "method": (str,), "nm": (str,), "seed": _INT,
        "split_seed": _INT, "epochs": _INT, "batch": _INT, "lr": _NUM, "momentum": _NUM,
        "srste_decay": _NUM, "train_size": _INT, "test_size": _INT, "threads": _INT,
        "wall_seconds": _NUM}
_LAYER = {"layer": (dict,), "method": (str,), "nm": (str,), "sparse_ff": (bool,),
          "sparse_bp": (bool,), "gemms": (dict,)}
_EPOCH = {"epoch": _INT, "train_loss": _NUM, "train_accuracy": _NUM, "test_accuracy": _NUM}
_BASELINE = {"method": (str,), "accuracy": (list,), "wall_seconds": _NUM}
_SAMPLE = {"iteration": _INT, "epoch": _INT, "lr": _NUM, "layers": (list,)}
_MEMBER = {"sha256": (str,), "dtype": (str,), "shape": (list,)}


def _parse_layer(d: Any, where: str) -> Layer:
    if not isinstance(d, dict) or "type" not in d:
        raise TraceError(f"manifest {where}: a layer needs a 'type'")
    if not isinstance(d["type"], str):
        raise TraceError(f"manifest {where}.type: expected a string, got {d['type']!r}")
    cls = _LAYER_TYPES.get(d["type"])
    if cls is None:
        raise TraceError(f"manifest {where}: unknown layer type {d['type']!r} (choose from "
                         f"{', '.join(_LAYER_TYPES)})")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for k, v in d.items():
        if k == "type":
            continue
        if k not in fields:
            raise TraceError(f"manifest {where}: unknown field {k!r} for {d['type']}")
        if k == "kind":
            if not isinstance(v, str):
                raise TraceError(f"manifest {where}.kind: expected a string, got {v!r}")
            v = OpKind.parse(v)
        elif isinstance(fields[k].default, tuple):  # shape-like fields
            if not isinstance(v, list) or not all(
                    isinstance(i, int) and not isinstance(i, bool) for i in v):
                raise TraceError(f"manifest {where}.{k}: expected a list of integers, got {v!r}")
            v = tuple(v)
        elif k == "name":
            if not isinstance(v, str):
                raise TraceError(f"manifest {where}.name: expected a string, got {v!r}")
        elif not isinstance(v, int) or isinstance(v, bool):
            raise TraceError(f"manifest {where}.{k}: expected an integer, got {v!r}")
        kwargs[k] = v
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise TraceError(f"manifest {where}: {e}") from None


def _parse_epochs(lst: list, where: str) -> tuple[EpochRecord, ...]:
    out = []
    for i, r in enumerate(lst):
        r = _check(r, f"{where}[{i}]", _EPOCH)
        out.append(EpochRecord(r["epoch"], float(r["train_loss"]), float(r["train_accuracy"]),
                               float(r["test_accuracy"])))
    return tuple(out)


def _parse(value, parser, where: str):
    try:
        return parser(value)
    except ValueError as e:
        raise TraceError(f"manifest {where}: {e}") from None


def _read_members(z: zipfile.ZipFile, members: dict) -> dict[str, np.ndarray]:
    names = set(z.namelist())
    extra = sorted(names - set(members) - {MANIFEST})
    if extra:
        raise TraceError(f"member {extra[0]!r} is not listed in the manifest")
    arrays = {}
    for path, meta in members.items():
        meta = _check(meta, f"members[{path!r}]", _MEMBER)
        if path not in names:
            raise TraceError(f"member {path!r} is missing (truncated or incomplete file)")
        data = _read_member(z, path)
        if hashlib.sha256(data).hexdigest() != meta["sha256"]:
            raise TraceError(f"member {path!r} fails its SHA-256 checksum (corrupted)")
        try:
            a = np.load(io.BytesIO(data), allow_pickle=False)
        except (ValueError, OSError, EOFError) as e:
            raise TraceError(f"member {path!r} is not a valid .npy array ({e})") from None
        if str(a.dtype) != meta["dtype"] or list(a.shape) != meta["shape"]:
            raise TraceError(f"member {path!r} holds {a.dtype}{list(a.shape)}, the manifest "
                             f"says {meta['dtype']}{meta['shape']}")
        arrays[path] = a
    return arrays


def _build(m: dict, arrays: dict[str, np.ndarray]) -> Trace:
    _check(m, "top level", _TOP)
    if m["format"] != FORMAT:
        raise TraceError(f"not an nmsat trace (format {m['format']!r})")
    if m["version"] != VERSION:
        raise TraceError(f"unsupported trace version {m['version']!r} (this nmsat reads "
                         f"version {VERSION})")
    run = _check(m["run"], "run", _RUN)
    method = _parse(run["method"], Method.parse, "run.method")
    nm = _parse(run["nm"], NM.parse, "run.nm")
    layers = []
    for i, d in enumerate(m["layers"]):
        d = _check(d, f"layers[{i}]", _LAYER)
        layer = _parse_layer(d["layer"], f"layers[{i}].layer")
        tl = TraceLayer(layer, _parse(d["method"], Method.parse, f"layers[{i}].method"),
                        _parse(d["nm"], NM.parse, f"layers[{i}].nm"), d["sparse_ff"],
                        d["sparse_bp"])
        # The stored GEMM dims are for readers without nmsat; they must be what the
        # layer model computes, or the file was edited inconsistently.
        try:  # a layer field out of range (a negative width) shows in its GEMMs
            want = {p.value: [[g.m, g.n, g.k, g.count] for g in gs]
                    for p, gs in tl.gemms(max(run["batch"], 1)).items()}
        except ValueError as e:
            raise TraceError(f"manifest layers[{i}].layer ({layer.name}): {e}") from None
        if d["gemms"] != want:
            raise TraceError(f"layer {layer.name}: stored GEMM dims {d['gemms']} disagree "
                             f"with its shape at batch {run['batch']} ({want})")
        layers.append(tl)
    weight_names = [tl.name for tl in layers if tl.layer.has_weights]
    if m["stat_layers"] != weight_names:
        raise TraceError(f"stat_layers {m['stat_layers']} must list the weight layers "
                         f"{weight_names} in order")
    baseline = None
    if m["baseline"] is not None:
        b = _check(m["baseline"], "baseline", _BASELINE)
        baseline = Baseline(_parse(b["method"], Method.parse, "baseline.method"),
                            _parse_epochs(b["accuracy"], "baseline.accuracy"),
                            float(b["wall_seconds"]))
    samples = []
    for i, s in enumerate(m["samples"]):
        s = _check(s, f"samples[{i}]", _SAMPLE)
        tensors = {}
        for name in s["layers"]:
            try:
                kw = {tn: arrays[f"samples/{i}/{name}/{tn}.npy"] for tn in TENSOR_NAMES}
            except KeyError as e:
                raise TraceError(f"sample {s['iteration']} layer {name}: member {e} is not "
                                 "in the manifest") from None
            for tn, a in kw.items():
                if str(a.dtype) != _TENSOR_DTYPES[tn]:
                    raise TraceError(f"sample {s['iteration']} layer {name}: {tn} is "
                                     f"{a.dtype}, expected {_TENSOR_DTYPES[tn]}")
            tensors[name] = LayerTensors(**kw)
        samples.append(Sample(s["iteration"], s["epoch"], float(s["lr"]), tensors))
    for p in ["loss.npy"] + [f"stats/{k}.npy" for k in STAT_NAMES]:
        if p not in arrays:
            raise TraceError(f"member {p!r} is not in the manifest")
    loss = arrays["loss.npy"]
    if loss.shape != (m["iterations"],):
        raise TraceError(f"loss has shape {loss.shape}, expected ({m['iterations']},) "
                         "(iterations)")
    return Trace(
        version=m["version"], tool_version=m["tool_version"], torch_version=m["torch_version"],
        model=run["model"], dataset=run["dataset"], method=method, nm=nm, seed=run["seed"],
        split_seed=run["split_seed"], epochs=run["epochs"], batch=run["batch"],
        lr=float(run["lr"]), momentum=float(run["momentum"]),
        srste_decay=float(run["srste_decay"]), train_size=run["train_size"],
        test_size=run["test_size"], threads=run["threads"],
        wall_seconds=float(run["wall_seconds"]), layers=tuple(layers), loss=loss,
        stats={k: arrays[f"stats/{k}.npy"] for k in STAT_NAMES},
        accuracy=_parse_epochs(m["accuracy"], "accuracy"), baseline=baseline,
        samples=tuple(samples))


def _read_member(z: zipfile.ZipFile, name: str) -> bytes:
    """``z.read(name)``; a local header that points outside the file (zipfile seeks to a
    negative offset and raises a bare ValueError) is a corrupted container."""
    try:
        return z.read(name)
    except ValueError as e:
        raise TraceError(f"corrupted or truncated container (member {name!r}: {e})") from None


def loads_trace(data: bytes) -> Trace:
    """Parse and validate a trace from its bytes. Raises :class:`TraceError`."""
    try:
        z = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError,
            NotImplementedError):
        raise TraceError("not a readable zip container (truncated or corrupted file)") from None
    try:
        with z:
            _check_directory(z)
            try:
                raw = _read_member(z, MANIFEST)
            except KeyError:
                raise TraceError(f"no {MANIFEST} in the container (not an nmsat trace)") from None
            try:
                manifest = json.loads(raw, object_pairs_hook=_no_dups)
                check_shape(manifest)
            except (json.JSONDecodeError, UnicodeDecodeError, InputError) as e:
                raise TraceError(f"{MANIFEST} is not valid JSON ({e})") from None
            except RecursionError:
                raise TraceError(f"{MANIFEST} nests too deeply") from None
            if not isinstance(manifest, dict):
                raise TraceError(f"{MANIFEST} must hold a JSON object")
            # Check the header before touching members: a future version may differ there.
            if manifest.get("format") != FORMAT:
                raise TraceError(f"not an nmsat trace (format {manifest.get('format')!r})")
            if manifest.get("version") != VERSION:
                raise TraceError(f"unsupported trace version {manifest.get('version')!r} "
                                 f"(this nmsat reads version {VERSION})")
            if not isinstance(manifest.get("members"), dict):
                raise TraceError("manifest top level: missing field 'members'")
            arrays = _read_members(z, manifest["members"])
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError,
            NotImplementedError, RuntimeError) as e:
        # zipfile raises these for damaged entries (bad CRC, bad local header, cut data).
        raise TraceError(f"corrupted or truncated container ({e})") from None
    except Exception as e:  # zlib.error has no stable base class; keep one clear line
        if isinstance(e, TraceError):
            raise
        if type(e).__module__ == "zlib":
            raise TraceError(f"corrupted compressed data ({e})") from None
        raise
    return _build(manifest, arrays)


def load_trace(path: str | Path) -> Trace:
    """Load and validate the trace at ``path``.

    Raises :class:`TraceError` (an :class:`~nmsat.errors.NmsatError`) with one line
    naming the file and the problem: missing file, truncated or corrupted container, bad
    checksum, wrong version, unknown or missing fields, inconsistent shapes.
    """
    p = Path(path)
    try:
        data = read_bytes(p, "trace", LIMITS["trace"])
    except InputError as e:
        raise TraceError(str(e)) from None
    try:
        return loads_trace(data)
    except TraceError as e:
        raise TraceError(f"{p}: {e}") from None
