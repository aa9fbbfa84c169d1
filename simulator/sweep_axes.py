"""Sweep axes: how a spec writes the values of one swept quantity, counted before built.

An axis is a list, a linear or geometric range, or a seeded random draw
(``docs/sweeps.md``). Every kind's number of values is computed arithmetically from the
spec and checked against :data:`MAX_AXIS_VALUES` before a single value is made, so
``stop = 1e12`` or a step of ``1e-300`` is refused at once instead of filling memory or
looping. :mod:`nmsat.simulator.sweep_spec` builds the grid from these axes.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from nmsat.errors import NmsatError
from nmsat.types import _Choice

__all__ = ["MAX_AXIS_VALUES", "Axis", "AxisKind", "AxisTarget", "RandomDistribution",
           "SweepSpecError"]

MAX_AXIS_VALUES = 100_000
"""Most values one axis may have (a range's or a random draw's count, a list's length)."""


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
        if len(raw) > MAX_AXIS_VALUES:
            raise SweepSpecError(f"{where}: {len(raw):,} values (limit {MAX_AXIS_VALUES:,})")
        seen: set[tuple[str, str]] = set()
        for v in raw:  # equal values of one type (1 and 1.0 are two values, as written)
            key = (type(v).__name__, json.dumps(v, sort_keys=True, default=repr))
            if key in seen:
                raise SweepSpecError(f"{where}: duplicate value {v!r}")
            seen.add(key)
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
    if "step" in raw:
        step = raw["step"]
        if not _number(step) or step <= 0:
            raise SweepSpecError(f"{where}.step must be a positive number, not {step!r}")
        ints = ints and _int_like(step)
        span = (stop - start) / step  # counted first: a tiny step must not loop
        n = _count(where, span) if ints else _count(where, span + 1e-9)
        values = [start + i * step for i in range(n)]
    else:
        factor = raw["factor"]
        if not _number(factor) or factor <= 1:
            raise SweepSpecError(f"{where}.factor must be a number above 1, not {factor!r}")
        if start <= 0:
            raise SweepSpecError(f"{where}: a geometric range needs start > 0, not {start!r}")
        ints = ints and _int_like(factor)
        n = _count(where, math.log(stop / start) / math.log(factor) + 1e-9)
        values = [start * factor ** i for i in range(n)] if not ints else _powers(start, factor, n)
        while values and values[-1] > stop * (1 + 1e-12):
            values.pop()
    return tuple(int(v) if ints else float(v) for v in values)


def _count(where: str, span: float) -> int:
    """``floor(span) + 1`` values, refused above :data:`MAX_AXIS_VALUES` before any is made."""
    if not math.isfinite(span) or span >= MAX_AXIS_VALUES:
        what = ("too many" if not math.isfinite(span) else f"{math.floor(span) + 1:,}"
                if span < 1e15 else f"about {span:.3g}")
        raise SweepSpecError(f"{where}: the range has {what} values (limit "
                             f"{MAX_AXIS_VALUES:,})")
    return math.floor(span) + 1


def _powers(start: int, factor: int, n: int) -> list[int]:
    out = [start]
    for _ in range(n - 1):
        out.append(out[-1] * factor)
    return out


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
    if not _int_like(count) or not 1 <= count <= MAX_AXIS_VALUES:
        raise SweepSpecError(f"{where}.count must be an integer from 1 to "
                             f"{MAX_AXIS_VALUES:,}, not {count!r}")
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
