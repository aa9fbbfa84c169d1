"""Sweep specifications: validate a TOML/YAML file into a typed, immutable :class:`SweepSpec`.

A spec names a base accelerator, fixed changes to it, fixed simulate options, the axes to
sweep (over any config field by dotted path, or any simulate option), the workloads, and
constraints that drop points. :meth:`SweepSpec.points` enumerates the points in a fixed
order; each :class:`Point` carries its validated config, typed options and a SHA-256 key of
everything that determines its result. The file format is documented in ``docs/sweeps.md``.

Everything is checked when the spec is loaded, before any point runs: unknown keys,
duplicate keys, unknown axes, values of the wrong type or out of range, unknown workloads,
constraints naming unknown fields, and points whose combined config is invalid. Errors are
:class:`SweepSpecError` with one line naming the field and the value.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import hashlib
import itertools
import json
import math
import random
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nmsat import __version__
from nmsat import config as nmconfig
from nmsat.config import AcceleratorConfig, ConfigError
from nmsat.fileio import LIMITS, InputError, parse_structured, read_text
from nmsat.types import NM, Choice

from .sweep_axes import (
    Axis,
    AxisKind,
    AxisTarget,
    SweepSpecError,
    _axis_values,
    _flatten_axes,
    _int_like,
)
from .sweep_constraints import DERIVED, Constraint

__all__ = ["DERIVED", "Axis", "AxisKind", "AxisTarget", "Constraint", "Point", "SampleSpec",
           "SweepSpec", "SweepSpecError", "from_dict", "load", "loads", "option_fields",
           "options_object", "point_key"]


# --------------------------------------------------------------------------- options


WORKLOAD_OPTIONS: tuple[str, ...] = ("batch", "seq_len")
"""Options that choose how the workload is built (samples per batch, a language model's
sequence length) rather than how it is simulated; a sweep treats them like the others."""


NOT_SWEPT: Mapping[str, Any] = {"events": False}
"""Simulate options a sweep fixes: the event timeline is for one run's Gantt chart, not
for a store of thousands of points, and does not change any stored figure."""


@functools.cache
def option_fields() -> Mapping[str, tuple[Any, Any]]:
    """Options a sweep may set: name -> (type, default). The simulate options come from the
    simulator's options dataclass, so a new option is sweepable without touching this
    module; ``batch`` and ``seq_len`` are the workload's (defaults as ``nmsat simulate``).
    Options whose type a spec scalar cannot express, and :data:`NOT_SWEPT`, are left out:
    every point runs with their default."""
    from nmsat.simulator.api import SimOptions
    from nmsat.types import DEFAULT_BATCH

    hints = typing.get_type_hints(SimOptions)
    out: dict[str, tuple[Any, Any]] = {"batch": (int, DEFAULT_BATCH),
                                       "seq_len": (int | None, None)}
    for f in dataclasses.fields(SimOptions):
        if f.name in NOT_SWEPT or not _spec_type(hints[f.name]):
            continue  # e.g. per-layer patterns from a trace: the simulator's default holds
        default = f.default_factory() if callable(f.default_factory) else f.default
        out[f.name] = (hints[f.name], default)
    return out


def _spec_type(hint: Any) -> bool:
    """Whether a spec value (a TOML/YAML scalar) can express an option of type ``hint``."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        rest = [a for a in typing.get_args(hint) if a is not type(None)]
        return len(rest) == 1 and _spec_type(rest[0])
    return hint in (bool, int, float, str, NM) or (isinstance(hint, type)
                                                   and issubclass(hint, Choice))


def _coerce_option(name: str, value: Any, where: str) -> Any:
    """The typed option value for a spec value (``"2:8"`` -> ``NM(2, 8)``, ``"bdwp"`` ->
    ``Method.BDWP``); raises naming ``where`` and the value."""
    hint, _ = option_fields()[name]
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (hint,) = [a for a in args if a is not type(None)]
    try:
        if isinstance(hint, type) and issubclass(hint, Choice):
            if not isinstance(value, str):
                raise ValueError(f"must be a name, not {value!r}")
            return hint.parse(value)
        if hint is NM:
            if not isinstance(value, str):
                raise ValueError(f"must be an N:M pattern like \"2:8\", not {value!r}")
            return NM.parse(value)
        if hint is bool:
            if not isinstance(value, bool):
                raise ValueError(f"must be true or false, not {value!r}")
            return value
        if hint is int:
            if not isinstance(value, int) or isinstance(value, bool):
                raise ValueError(f"must be an integer, not {value!r}")
            if name in WORKLOAD_OPTIONS and value < 1:
                raise ValueError(f"must be at least 1, not {value!r}")
            return value
        if hint is float:
            if not isinstance(value, (int, float)) or isinstance(value, bool) \
                    or not math.isfinite(value):
                raise ValueError(f"must be a finite number, not {value!r}")
            return float(value)
        if hint is str:
            if not isinstance(value, str):
                raise ValueError(f"must be a string, not {value!r}")
            return value
    except ValueError as e:
        raise SweepSpecError(f"{where}: {e}") from None
    raise SweepSpecError(f"{where}: option {name!r} of type {hint} cannot be set from a spec")


def _plain(value: Any) -> Any:
    """A JSON value for a typed option value (enums and N:M patterns as their names)."""
    if isinstance(value, (enum.Enum, NM)):
        return str(value)
    return value


# --------------------------------------------------------------------------- config fields


@dataclass(frozen=True)
class _FieldInfo:
    kind: type  # int, float, bool, str or list
    lo: float | None
    hi: float | None


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in data.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _unflatten(flat: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for path, v in flat.items():
        node = out
        *parents, leaf = path.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = v
    return out


def _config_fields(cfg: AcceleratorConfig) -> dict[str, _FieldInfo]:
    """Every leaf config field by dotted path, with its value type and documented range."""
    meta: dict[str, tuple[Any, Any]] = {}

    def walk(obj: Any, prefix: str) -> None:
        for f in dataclasses.fields(obj):
            v = getattr(obj, f.name)
            if dataclasses.is_dataclass(v):
                walk(v, f"{prefix}{f.name}.")
            else:
                meta[f"{prefix}{f.name}"] = (f.metadata.get("min"), f.metadata.get("max"))

    walk(cfg, "")
    out = {}
    for path, v in _flatten(nmconfig.to_dict(cfg)).items():
        lo, hi = meta.get(path, (None, None))
        if path.startswith("energy.") and path.rsplit(".", 1)[1] in ("value", "low", "high"):
            lo = 0.0
        out[path] = _FieldInfo(type(v) if not isinstance(v, list) else list, lo, hi)
    return out


def _check_config_value(path: str, info: _FieldInfo, value: Any, where: str) -> Any:
    k = info.kind
    ok = (
        (k is bool and isinstance(value, bool))
        or (k is int and isinstance(value, int) and not isinstance(value, bool))
        or (k is float and isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))
        or (k is str and isinstance(value, str))
        or (k is list and isinstance(value, list) and all(isinstance(x, str) for x in value))
    )
    if not ok:
        name = {list: "a list of strings", int: "an integer", float: "a finite number",
                bool: "true or false", str: "a string"}[k]
        raise SweepSpecError(f"{where}: {path} must be {name}, not {value!r}")
    if k in (int, float):
        if info.lo is not None and value < info.lo or info.hi is not None and value > info.hi:
            rng = (f"between {info.lo:g} and {info.hi:g}" if info.lo is not None
                   and info.hi is not None else f"at least {info.lo:g}" if info.lo is not None
                   else f"at most {info.hi:g}")
            raise SweepSpecError(f"{where}: {path} must be {rng}, not {value!r}")
        if k is float:
            value = float(value)
    return value


# --------------------------------------------------------------------------- points


def point_key(config: Mapping[str, Any], workload: str, options: Mapping[str, Any],
              version: str = __version__) -> str:
    """SHA-256 (hex) of the canonical JSON of everything that determines a point's result:
    the full config dict, the workload, every simulate option and the nmsat version."""
    doc = {"config": config, "workload": workload, "options": options, "nmsat": version}
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Point:
    """One sweep point: what to simulate and the key it is stored under.

    ``params`` are the axis values that distinguish it (plain JSON values, in axis order);
    ``config`` the full validated accelerator; ``options`` every simulate option as plain
    JSON values (``options_object`` builds the simulator's typed object from them).
    """

    index: int
    workload: str
    params: tuple[tuple[str, Any], ...]
    config: AcceleratorConfig
    options: tuple[tuple[str, Any], ...]
    key: str

    @property
    def options_dict(self) -> dict[str, Any]:
        return dict(self.options)

    def describe(self) -> str:
        parts = [self.workload] + [f"{k}={v}" for k, v in self.params]
        return ", ".join(parts)


@dataclass(frozen=True)
class SampleSpec:
    """Draw ``count`` points (without replacement) from the constrained grid with ``seed``."""

    count: int
    seed: int


@dataclass(frozen=True)
class SweepSpec:
    """A validated sweep: see the module docstring and ``docs/sweeps.md``."""

    name: str
    base: AcceleratorConfig
    workloads: tuple[str, ...]
    options: tuple[tuple[str, Any], ...]
    axes: tuple[Axis, ...]
    constraints: tuple[Constraint, ...] = ()
    sample: SampleSpec | None = None
    source: str = field(default="spec", compare=False)

    @property
    def axis_names(self) -> tuple[str, ...]:
        return tuple(a.name for a in self.axes)

    @property
    def grid_size(self) -> int:
        return len(self.workloads) * math.prod(len(a.values) for a in self.axes)

    def points(self) -> tuple[Point, ...]:
        """All points, in a fixed order: workloads in spec order, then the cartesian product
        of the axes in spec order (the last axis varies fastest); points failing a constraint
        are dropped; with ``sample``, a seeded random subset keeps that order.

        Raises :class:`SweepSpecError` naming the first point whose config is invalid.
        """
        try:
            return self._points()
        except SweepSpecError as e:
            raise SweepSpecError(f"{self.source}: {e}") from None

    def _points(self) -> tuple[Point, ...]:
        base_flat = _flatten(nmconfig.to_dict(self.base))
        fixed_opts = dict(self.options)
        combos: list[tuple[str, tuple[Any, ...]]] = []
        used = {n for c in self.constraints for n in c.names}
        derived = [n for n in DERIVED if n in used]  # the area model only when asked
        for wl in self.workloads:
            for values in itertools.product(*(a.values for a in self.axes)):
                env = dict(base_flat)
                env.update(fixed_opts)
                for a, v in zip(self.axes, values):
                    env[a.name] = v
                if self.constraints:
                    for name in derived:
                        env[name] = DERIVED[name][1](env)
                    if not all(c.holds(env) for c in self.constraints):
                        continue
                combos.append((wl, values))
        if self.sample is not None:
            if self.sample.count > len(combos):
                raise SweepSpecError(f"sample.count {self.sample.count} exceeds the "
                                     f"{len(combos)} points that meet the constraints")
            chosen = sorted(random.Random(self.sample.seed).sample(range(len(combos)),
                                                                   self.sample.count))
            combos = [combos[i] for i in chosen]
        points: list[Point] = []
        cache: dict[tuple[Any, ...], tuple[AcceleratorConfig, dict[str, Any]]] = {}
        cfg_axes = [i for i, a in enumerate(self.axes) if a.target is AxisTarget.CONFIG]
        seen: dict[str, int] = {}
        for index, (wl, values) in enumerate(combos):
            cfg_values = tuple(values[i] for i in cfg_axes)
            if cfg_values not in cache:
                flat = dict(base_flat)
                for i in cfg_axes:
                    flat[self.axes[i].name] = values[i]
                try:
                    cfg = nmconfig.from_dict(_unflatten(flat))
                except ConfigError as e:
                    desc = ", ".join(f"{self.axes[i].name}={values[i]!r}" for i in cfg_axes)
                    raise SweepSpecError(f"point {index} ({desc}) is not a valid accelerator: "
                                         f"{e} (exclude it with a constraint)") from None
                cache[cfg_values] = (cfg, nmconfig.to_dict(cfg))
            cfg, cfg_dict = cache[cfg_values]
            opts = dict(fixed_opts)
            for a, v in zip(self.axes, values):
                if a.target is AxisTarget.OPTION:
                    opts[a.name] = _plain(_coerce_option(a.name, v, f"axes.{a.name}"))
            opts = {k: opts[k] for k in option_fields()}
            params = tuple((a.name, v) for a, v in zip(self.axes, values))
            key = point_key(cfg_dict, wl, opts)
            if key in seen:
                raise SweepSpecError(f"points {seen[key]} and {index} are the same point "
                                     f"({points[seen[key]].describe()}; "
                                     f"{wl}, {', '.join(f'{k}={v!r}' for k, v in params)})")
            seen[key] = index
            points.append(Point(index, wl, params, cfg, tuple(opts.items()), key))
        return tuple(points)


def options_object(options: Mapping[str, Any]) -> Any:
    """The simulator's typed options object for a point's plain options."""
    from nmsat.simulator.api import SimOptions

    typed = {k: _coerce_option(k, v, f"options.{k}") for k, v in options.items()}
    return SimOptions(**typed, **NOT_SWEPT)


# --------------------------------------------------------------------------- loading

_TOP_KEYS = ("name", "base", "workloads", "config", "options", "axes", "constraints", "sample")


def from_dict(data: Any, source: str = "spec", root: Path | None = None) -> SweepSpec:
    """Validate a spec given as plain data (as read from TOML or YAML).

    ``root`` is the folder a relative ``base`` config file is resolved against.
    """
    if not isinstance(data, dict):
        raise SweepSpecError(f"{source}: a sweep spec must be a table, not {data!r}")
    unknown = sorted(set(data) - set(_TOP_KEYS))
    if unknown:
        raise SweepSpecError(f"{source}: unknown key {unknown[0]!r} "
                             f"(known: {', '.join(_TOP_KEYS)})")
    try:
        return _build(data, root, source)
    except SweepSpecError as e:
        raise SweepSpecError(f"{source}: {e}") from None


def _build(data: dict[str, Any], root: Path | None, source: str) -> SweepSpec:
    name = data.get("name", "sweep")
    if not isinstance(name, str) or not name:
        raise SweepSpecError(f"name must be a non-empty string, not {name!r}")

    base_ref = data.get("base", "vcu1525")
    if not isinstance(base_ref, str):
        raise SweepSpecError(f"base must be a preset name or a config file, not {base_ref!r}")
    try:
        if Path(base_ref).suffix.lower() in (".toml", ".yaml", ".yml"):
            path = Path(base_ref)
            if root is not None and not path.is_absolute():
                path = root / path
            base = nmconfig.load(path)
        else:
            base = nmconfig.preset(base_ref)
    except ConfigError as e:
        raise SweepSpecError(f"base: {e}") from None

    fields = _config_fields(base)
    changes = data.get("config", {})
    if not isinstance(changes, dict):
        raise SweepSpecError(f"config must be a table of field changes, not {changes!r}")
    flat = _flatten(nmconfig.to_dict(base))
    for name, value in _flatten(changes).items():
        if name not in fields:
            raise SweepSpecError(f"config: unknown config field {name!r}")
        flat[name] = _check_config_value(name, fields[name], value, "config")
    try:
        base = nmconfig.from_dict(_unflatten(flat))
    except ConfigError as e:
        raise SweepSpecError(f"config: {e}") from None

    workloads = data.get("workloads")
    if workloads is None:
        raise SweepSpecError("workloads is missing (a list of zoo model names)")
    if isinstance(workloads, str):
        workloads = [workloads]
    if not isinstance(workloads, list) or not workloads:
        raise SweepSpecError(f"workloads must be a non-empty list of names, not {workloads!r}")
    from nmsat.workloads import zoo

    for w in workloads:
        if not isinstance(w, str) or w not in zoo.names():
            raise SweepSpecError(f"workloads: unknown workload {w!r} "
                                 f"(choose from {', '.join(zoo.names())})")
    if len(set(workloads)) != len(workloads):
        dup = next(w for w in workloads if workloads.count(w) > 1)
        raise SweepSpecError(f"workloads: duplicate workload {dup!r}")

    opt_fields = option_fields()
    raw_opts = data.get("options", {})
    if not isinstance(raw_opts, dict):
        raise SweepSpecError(f"options must be a table, not {raw_opts!r}")
    options: dict[str, Any] = {k: _plain(d) for k, (_, d) in opt_fields.items()}
    for k, v in raw_opts.items():
        if k not in opt_fields:
            raise SweepSpecError(f"options: unknown simulate option {k!r} "
                                 f"(known: {', '.join(opt_fields)})")
        options[k] = _plain(_coerce_option(k, v, f"options.{k}"))

    raw_axes = data.get("axes", {})
    if not isinstance(raw_axes, dict):
        raise SweepSpecError(f"axes must be a table, not {raw_axes!r}")
    axes = []
    for axis_name, raw in _flatten_axes(raw_axes).items():
        if axis_name in opt_fields:
            target = AxisTarget.OPTION
        elif axis_name in fields:
            target = AxisTarget.CONFIG
        else:
            raise SweepSpecError(f"axes: unknown axis {axis_name!r} (not a config field or "
                                 f"simulate option; options: {', '.join(opt_fields)})")
        kind, values = _axis_values(axis_name, raw)
        for v in values:
            if target is AxisTarget.CONFIG:
                _check_config_value(axis_name, fields[axis_name], v, f"axes.{axis_name}")
            else:
                _coerce_option(axis_name, v, f"axes.{axis_name}")
        if target is AxisTarget.CONFIG and fields[axis_name].kind is float:
            values = tuple(float(v) for v in values)
        axes.append(Axis(axis_name, target, kind, values))

    _check_workload_options(tuple(workloads), options, axes)

    known = frozenset(fields) | frozenset(opt_fields) | frozenset(DERIVED)
    raw_cons = data.get("constraints", [])
    if isinstance(raw_cons, str):
        raw_cons = [raw_cons]
    if not isinstance(raw_cons, list):
        raise SweepSpecError(f"constraints must be a list of expressions, not {raw_cons!r}")
    constraints = tuple(Constraint.parse(c, known, f"constraints[{i}]")
                        for i, c in enumerate(raw_cons))

    sample = None
    if "sample" in data:
        s = data["sample"]
        if not isinstance(s, dict):
            raise SweepSpecError(f"sample must be a table with count and seed, not {s!r}")
        extra = sorted(set(s) - {"count", "seed"})
        if extra:
            raise SweepSpecError(f"sample: unknown key {extra[0]!r} (use count and seed)")
        for k in ("count", "seed"):
            if k not in s:
                raise SweepSpecError(f"sample needs {k}")
        if not _int_like(s["count"]) or s["count"] < 1:
            raise SweepSpecError(f"sample.count must be a positive integer, not {s['count']!r}")
        if not _int_like(s["seed"]):
            raise SweepSpecError(f"sample.seed must be an integer, not {s['seed']!r}")
        sample = SampleSpec(s["count"], s["seed"])

    spec = SweepSpec(name, base, tuple(workloads), tuple(options.items()), tuple(axes),
                     constraints, sample, source)
    if spec.grid_size > 10_000_000:
        raise SweepSpecError(f"the grid has {spec.grid_size:,} points (limit 10,000,000); "
                             f"use fewer values or random axes")
    return spec


def _check_workload_options(workloads: tuple[str, ...], options: Mapping[str, Any],
                            axes: list[Axis]) -> None:
    """Every sequence length the spec can give (its option or its axis) must suit every
    workload: ``seq_len`` on ``mlp`` is refused here, before any store is made."""
    from nmsat.workloads import zoo

    axis = next((a for a in axes if a.name == "seq_len"), None)
    where = "axes.seq_len" if axis is not None else "options.seq_len"
    values = axis.values if axis is not None else (options.get("seq_len"),)
    for w in workloads:
        for v in values:
            try:
                zoo.check_seq_len(w, v)
            except ValueError as e:
                raise SweepSpecError(f"{where}: {e}") from None


def loads(text: str, fmt: str, source: str = "spec", root: Path | None = None) -> SweepSpec:
    """Parse and validate spec text in ``fmt`` (``toml`` or ``yaml``)."""
    if fmt not in ("toml", "yaml"):
        raise SweepSpecError(f"unknown spec format {fmt!r} (choose from toml, yaml)")
    try:
        data = parse_structured(text, fmt)
    except InputError as e:
        raise SweepSpecError(f"{source}: {e}") from None
    return from_dict(data if data is not None else {}, source, root)


def load(path: str | Path) -> SweepSpec:
    """Load and validate a ``.toml``, ``.yaml`` or ``.yml`` sweep spec."""
    p = Path(path)
    fmt = {".toml": "toml", ".yaml": "yaml", ".yml": "yaml"}.get(p.suffix.lower())
    if fmt is None:
        raise SweepSpecError(f"sweep spec must end in .toml, .yaml or .yml, not {p.name}")
    try:
        text = read_text(p, "sweep spec", LIMITS["spec"])
    except InputError as e:
        raise SweepSpecError(str(e)) from None
    return loads(text, fmt, str(p), p.parent)
