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

import ast
import dataclasses
import enum
import functools
import hashlib
import itertools
import json
import math
import operator
import random
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nmsat import __version__
from nmsat import config as nmconfig
from nmsat.config import AcceleratorConfig, ConfigError
from nmsat.errors import NmsatError
from nmsat.fileio import LIMITS, InputError, parse_structured, read_text
from nmsat.types import NM, _Choice


class SweepSpecError(NmsatError, ValueError):
    """A sweep spec is malformed: an unknown key or axis, a bad value, an invalid point."""


class AxisKind(_Choice):
    """How an axis was written in the spec (values are enumerated the same way for all)."""

    LIST = "list"
    RANGE = "range"
    RANDOM = "random"


class AxisTarget(_Choice):
    """What an axis changes: an accelerator config field or a simulate option."""

    CONFIG = "config"
    OPTION = "option"


class RandomDistribution(_Choice):
    UNIFORM = "uniform"
    LOG_UNIFORM = "log-uniform"
    INT = "int"
    CHOICE = "choice"


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
    from nmsat.commands.simulate import DEFAULT_BATCH

    hints = typing.get_type_hints(SimOptions)
    out: dict[str, tuple[Any, Any]] = {"batch": (int, DEFAULT_BATCH),
                                       "seq_len": (int | None, None)}
    for f in dataclasses.fields(SimOptions):
        if f.name in NOT_SWEPT or not _spec_type(hints[f.name]):
            continue  # e.g. per-layer patterns from a trace: the simulator's default holds
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        out[f.name] = (hints[f.name], default)
    return out


def _spec_type(hint: Any) -> bool:
    """Whether a spec value (a TOML/YAML scalar) can express an option of type ``hint``."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        rest = [a for a in typing.get_args(hint) if a is not type(None)]
        return len(rest) == 1 and _spec_type(rest[0])
    return hint in (bool, int, float, str, NM) or (isinstance(hint, type)
                                                   and issubclass(hint, enum.Enum))


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
        if isinstance(hint, type) and issubclass(hint, enum.Enum):
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
        if path.endswith(".pj") and path.startswith("energy."):
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
            raise SweepSpecError(f"{where}: {path} must be between {info.lo:g} and "
                                 f"{info.hi:g}, not {value!r}")
        if k is float:
            value = float(value)
    return value


# --------------------------------------------------------------------------- constraints

_BINOPS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
    ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_CMPOPS: dict[type, Callable[[Any, Any], bool]] = {
    ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
    ast.Gt: operator.gt, ast.GtE: operator.ge,
    ast.In: lambda a, b: a in b, ast.NotIn: lambda a, b: a not in b,
}
_FUNCS: dict[str, Callable[..., Any]] = {"min": min, "max": max, "abs": abs}

DERIVED: dict[str, tuple[str, Callable[[Mapping[str, Any]], Any]]] = {
    "buffer_kib": ("total KiB of the activation, weight and output buffers",
                   lambda e: e["buffers.activation.kib"] + e["buffers.weight.kib"]
                   + e["buffers.output.kib"]),
    "buffer_bytes": ("total bytes of the three buffers",
                     lambda e: 1024 * (e["buffers.activation.kib"] + e["buffers.weight.kib"]
                                       + e["buffers.output.kib"])),
    "pes": ("PEs in the array (rows x cols)", lambda e: e["array.rows"] * e["array.cols"]),
    "peak_macs_per_cycle": ("dense MACs per cycle (rows x cols x macs_per_pe)",
                            lambda e: e["array.rows"] * e["array.cols"]
                            * e["array.macs_per_pe"]),
    "dram_bytes_per_cycle": ("DRAM bytes per cycle over all channels",
                             lambda e: e["dram.channels"] * e["dram.bytes_per_cycle"]),
}
"""Names a constraint may use besides config fields and options: name -> (doc, function of
the point's flattened config and options)."""


def _dotted(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        head = _dotted(node.value)
        return None if head is None else f"{head}.{node.attr}"
    return None


@dataclass(frozen=True)
class Constraint:
    """A boolean expression over config fields (dotted), options and :data:`DERIVED` names.

    The language is a small safe subset of Python expressions, interpreted here (never
    ``eval``): numbers, strings, booleans, lists; ``+ - * / // % **``; comparisons (also
    chained, ``in``, ``not in``); ``and``, ``or``, ``not``; ``min``, ``max``, ``abs``.
    Example: ``"buffer_kib <= 4096 and array.rows * array.cols <= 512"``.
    """

    text: str
    tree: ast.Expression = field(compare=False, repr=False)
    names: frozenset[str] = field(compare=False, repr=False)

    @classmethod
    def parse(cls, text: Any, known: frozenset[str], where: str) -> Constraint:
        if not isinstance(text, str):
            raise SweepSpecError(f"{where}: a constraint must be a string, not {text!r}")
        try:
            tree = ast.parse(text.strip(), mode="eval")
        except SyntaxError as e:
            raise SweepSpecError(f"{where}: {text!r} is not an expression ({e.msg})") from None
        names: set[str] = set()
        cls._check(tree.body, text, where, known, names)
        return cls(text, tree, frozenset(names))

    @classmethod
    def _check(cls, node: ast.AST, text: str, where: str, known: frozenset[str],
               names: set[str]) -> None:
        def bad(what: str) -> SweepSpecError:
            return SweepSpecError(f"{where}: {what} is not allowed in a constraint ({text!r})")

        name = _dotted(node)
        if name is not None:
            if name in ("true", "false", "True", "False"):
                return
            if name not in known:
                raise SweepSpecError(f"{where}: unknown name {name!r} in constraint {text!r}")
            names.add(name)
            return
        if isinstance(node, ast.Constant):
            if not isinstance(node.value, (int, float, str, bool)):
                raise bad(f"constant {node.value!r}")
            return
        if isinstance(node, (ast.List, ast.Tuple)):
            children = node.elts
        elif isinstance(node, ast.BinOp):
            if type(node.op) not in _BINOPS:
                raise bad(f"operator {type(node.op).__name__}")
            children = [node.left, node.right]
        elif isinstance(node, ast.UnaryOp):
            if not isinstance(node.op, (ast.Not, ast.USub, ast.UAdd)):
                raise bad(f"operator {type(node.op).__name__}")
            children = [node.operand]
        elif isinstance(node, ast.BoolOp):
            children = node.values
        elif isinstance(node, ast.Compare):
            for op in node.ops:
                if type(op) not in _CMPOPS:
                    raise bad(f"comparison {type(op).__name__}")
            children = [node.left, *node.comparators]
        elif isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name) or node.func.id not in _FUNCS or node.keywords:
                raise bad(f"call {ast.unparse(node)!r}")
            children = node.args
        else:
            raise bad(f"{type(node).__name__} {ast.unparse(node)!r}")
        for c in children:
            cls._check(c, text, where, known, names)

    def holds(self, env: Mapping[str, Any]) -> bool:
        """Evaluate on a point; raises :class:`SweepSpecError` if the result is not a
        boolean or the arithmetic fails (division by zero)."""
        try:
            value = self._eval(self.tree.body, env)
        except (ArithmeticError, TypeError) as e:
            raise SweepSpecError(f"constraint {self.text!r}: {e}") from None
        if not isinstance(value, bool):
            raise SweepSpecError(f"constraint {self.text!r} must give true or false, "
                                 f"not {value!r}")
        return value

    def _eval(self, node: ast.AST, env: Mapping[str, Any]) -> Any:
        name = _dotted(node)
        if name is not None:
            if name in ("true", "True"):
                return True
            if name in ("false", "False"):
                return False
            return env[name]
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, (ast.List, ast.Tuple)):
            return tuple(self._eval(e, env) for e in node.elts)
        if isinstance(node, ast.BinOp):
            return _BINOPS[type(node.op)](self._eval(node.left, env), self._eval(node.right, env))
        if isinstance(node, ast.UnaryOp):
            v = self._eval(node.operand, env)
            return {ast.Not: operator.not_, ast.USub: operator.neg,
                    ast.UAdd: operator.pos}[type(node.op)](v)
        if isinstance(node, ast.BoolOp):
            if isinstance(node.op, ast.And):
                return all(self._eval(v, env) for v in node.values)
            return any(self._eval(v, env) for v in node.values)
        if isinstance(node, ast.Compare):
            left = self._eval(node.left, env)
            for op, right_node in zip(node.ops, node.comparators):
                right = self._eval(right_node, env)
                if not _CMPOPS[type(op)](left, right):
                    return False
                left = right
            return True
        if isinstance(node, ast.Call):
            return _FUNCS[node.func.id](*(self._eval(a, env) for a in node.args))
        raise AssertionError(f"unchecked node {node!r}")  # _check admits nothing else


# --------------------------------------------------------------------------- axes


@dataclass(frozen=True)
class Axis:
    """One swept quantity: a config field (dotted path) or a simulate option, and its
    values in enumeration order (plain JSON values, as written in or drawn for the spec)."""

    name: str
    target: AxisTarget
    kind: AxisKind
    values: tuple[Any, ...]

    def __post_init__(self) -> None:
        if not self.values:
            raise SweepSpecError(f"axes.{self.name} has no values")


_RANGE_KEYS = {"start", "stop", "step", "factor"}
_RANDOM_KEYS = {"random", "low", "high", "count", "seed", "values"}
_AXIS_KEYS = _RANGE_KEYS | _RANDOM_KEYS


def _is_axis_def(v: Any) -> bool:
    # config field names are never axis keywords, so one keyword marks an axis table
    return isinstance(v, list) or (isinstance(v, dict) and bool(set(v) & _AXIS_KEYS))


def _flatten_axes(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in data.items():
        if isinstance(v, dict) and not _is_axis_def(v):
            out.update(_flatten_axes(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _int_like(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _axis_values(name: str, raw: Any) -> tuple[AxisKind, tuple[Any, ...]]:
    where = f"axes.{name}"
    if isinstance(raw, list):
        if not raw:
            raise SweepSpecError(f"{where}: the list of values is empty")
        seen = []
        for v in raw:
            if v in seen and type(v) is type(seen[seen.index(v)]):
                raise SweepSpecError(f"{where}: duplicate value {v!r}")
            seen.append(v)
        return AxisKind.LIST, tuple(raw)
    if not isinstance(raw, dict):
        raise SweepSpecError(f"{where} must be a list of values or a table (range or random), "
                             f"not {raw!r}")
    keys = set(raw)
    if "random" in keys:
        return AxisKind.RANDOM, _random_values(where, raw)
    if "values" in keys:
        extra = sorted(keys - {"values"})
        if extra:
            raise SweepSpecError(f"{where}: unknown key {extra[0]!r} next to values")
        return _axis_values(name, raw["values"])
    return AxisKind.RANGE, _range_values(where, raw)


def _range_values(where: str, raw: Mapping[str, Any]) -> tuple[Any, ...]:
    extra = sorted(set(raw) - _RANGE_KEYS)
    if extra:
        raise SweepSpecError(f"{where}: unknown key {extra[0]!r} in a range "
                             f"(use start, stop and step or factor)")
    for k in ("start", "stop"):
        if k not in raw:
            raise SweepSpecError(f"{where}: a range needs {k}")
        if not _number(raw[k]):
            raise SweepSpecError(f"{where}.{k} must be a number, not {raw[k]!r}")
    if ("step" in raw) == ("factor" in raw):
        raise SweepSpecError(f"{where}: a range needs exactly one of step (linear) or factor "
                             f"(geometric)")
    start, stop = raw["start"], raw["stop"]
    if stop < start:
        raise SweepSpecError(f"{where}: stop ({stop!r}) is below start ({start!r})")
    ints = _int_like(start) and _int_like(stop)
    values: list[Any] = []
    if "step" in raw:
        step = raw["step"]
        if not _number(step) or step <= 0:
            raise SweepSpecError(f"{where}.step must be a positive number, not {step!r}")
        ints = ints and _int_like(step)
        n = math.floor((stop - start) / step + 1e-9) + 1
        values = [start + i * step for i in range(n)]
    else:
        factor = raw["factor"]
        if not _number(factor) or factor <= 1:
            raise SweepSpecError(f"{where}.factor must be a number above 1, not {factor!r}")
        if start <= 0:
            raise SweepSpecError(f"{where}: a geometric range needs start > 0, not {start!r}")
        ints = ints and _int_like(factor)
        v = start
        while v <= stop * (1 + 1e-12):
            values.append(v)
            v = v * factor
    if len(values) > 100_000:
        raise SweepSpecError(f"{where}: the range has {len(values):,} values (limit 100,000)")
    return tuple(int(v) if ints else float(v) for v in values)


def _random_values(where: str, raw: Mapping[str, Any]) -> tuple[Any, ...]:
    try:
        dist = RandomDistribution.parse(raw["random"])
    except ValueError as e:
        raise SweepSpecError(f"{where}.random: {e}") from None
    allowed = {"random", "count", "seed"} | ({"values"} if dist is RandomDistribution.CHOICE
                                            else {"low", "high"})
    extra = sorted(set(raw) - allowed)
    if extra:
        raise SweepSpecError(f"{where}: unknown key {extra[0]!r} for random = \"{dist}\" "
                             f"(use {', '.join(sorted(allowed))})")
    need = sorted(allowed - set(raw))
    if need:
        raise SweepSpecError(f"{where}: random = \"{dist}\" needs {need[0]}")
    count, seed = raw["count"], raw["seed"]
    if not _int_like(count) or count < 1:
        raise SweepSpecError(f"{where}.count must be a positive integer, not {count!r}")
    if not _int_like(seed):
        raise SweepSpecError(f"{where}.seed must be an integer, not {seed!r}")
    rng = random.Random(seed)
    if dist is RandomDistribution.CHOICE:
        pool = raw["values"]
        if not isinstance(pool, list) or not pool:
            raise SweepSpecError(f"{where}.values must be a non-empty list, not {pool!r}")
        if count > len(pool):
            raise SweepSpecError(f"{where}.count {count} exceeds the {len(pool)} values")
        picked = sorted(rng.sample(range(len(pool)), count))
        return tuple(pool[i] for i in picked)
    low, high = raw["low"], raw["high"]
    for k, v in (("low", low), ("high", high)):
        if not _number(v):
            raise SweepSpecError(f"{where}.{k} must be a number, not {v!r}")
    if high < low:
        raise SweepSpecError(f"{where}: high ({high!r}) is below low ({low!r})")
    if dist is RandomDistribution.INT:
        if not (_int_like(low) and _int_like(high)):
            raise SweepSpecError(f"{where}: random = \"int\" needs integer low and high, "
                                 f"not {low!r} and {high!r}")
        if count > high - low + 1:
            raise SweepSpecError(f"{where}.count {count} exceeds the {high - low + 1} integers "
                                 f"from {low} to {high}")
        return tuple(sorted(rng.sample(range(low, high + 1), count)))
    if dist is RandomDistribution.LOG_UNIFORM:
        if low <= 0:
            raise SweepSpecError(f"{where}: random = \"log-uniform\" needs low > 0, not {low!r}")
        a, b = math.log(low), math.log(high)
        return tuple(sorted(math.exp(rng.uniform(a, b)) for _ in range(count)))
    return tuple(sorted(float(rng.uniform(low, high)) for _ in range(count)))


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
        for wl in self.workloads:
            for values in itertools.product(*(a.values for a in self.axes)):
                env = dict(base_flat)
                env.update(fixed_opts)
                for a, v in zip(self.axes, values):
                    env[a.name] = v
                if self.constraints:
                    for name, (_, fn) in DERIVED.items():
                        env[name] = fn(env)
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
        points = []
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
    for path, value in _flatten(changes).items():
        if path not in fields:
            raise SweepSpecError(f"config: unknown config field {path!r}")
        flat[path] = _check_config_value(path, fields[path], value, "config")
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
