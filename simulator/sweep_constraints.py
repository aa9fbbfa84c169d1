"""Sweep constraints: a small, bounded expression language over a point's fields.

A constraint is interpreted here (never ``eval``) over config fields (dotted), simulate
options and :data:`DERIVED` names. Every resource it could use is bounded, so no spec can
make it run long or grow large: the text is at most :data:`MAX_TEXT` characters and
:data:`MAX_DEPTH` levels deep; integers stay within :data:`MAX_INT_BITS` bits (``10**10**10``
is refused before it is computed); strings and lists within :data:`MAX_SEQUENCE` items
(``'a' * 10**10`` likewise); ``%`` does arithmetic only, never string formatting.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .sweep_axes import SweepSpecError

__all__ = ["DERIVED", "MAX_DEPTH", "MAX_INT_BITS", "MAX_SEQUENCE", "MAX_TEXT", "Constraint"]

MAX_TEXT = 2_000
MAX_DEPTH = 32
MAX_INT_BITS = 256
MAX_SEQUENCE = 10_000


def _bounded(v: Any) -> Any:
    if isinstance(v, int) and v.bit_length() > MAX_INT_BITS:
        raise ArithmeticError(f"an integer over {MAX_INT_BITS} bits")
    if isinstance(v, (str, tuple)) and len(v) > MAX_SEQUENCE:
        raise ArithmeticError(f"a string or list over {MAX_SEQUENCE:,} items")
    return v


def _pow(a: Any, b: Any) -> Any:
    if isinstance(a, int) and isinstance(b, int) and b > 0 and abs(a) > 1 \
            and (abs(a).bit_length() - 1) * b > MAX_INT_BITS:
        raise ArithmeticError(f"{a} ** {b} is over {MAX_INT_BITS} bits")
    return a ** b


def _mul(a: Any, b: Any) -> Any:
    seq, n = (a, b) if isinstance(a, (str, tuple)) else (b, a)
    if isinstance(seq, (str, tuple)) and isinstance(n, int) and len(seq) * n > MAX_SEQUENCE:
        raise ArithmeticError(f"a string or list over {MAX_SEQUENCE:,} items")
    return a * b


def _mod(a: Any, b: Any) -> Any:
    if isinstance(a, str):
        raise TypeError("% is arithmetic here, not string formatting")
    return a % b


_BINOPS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: _mul,
    ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv, ast.Mod: _mod,
    ast.Pow: _pow,
}
_CMPOPS: dict[type, Callable[[Any, Any], bool]] = {
    ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
    ast.Gt: operator.gt, ast.GtE: operator.ge,
    ast.In: lambda a, b: a in b, ast.NotIn: lambda a, b: a not in b,
}
_UNOPS: dict[type, Callable[[Any], Any]] = {
    ast.Not: operator.not_, ast.USub: operator.neg, ast.UAdd: operator.pos,
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
the point's flattened config and options). Only the names a spec's constraints use are
computed."""


def _resources(env: Mapping[str, Any]) -> Any:
    """The area model's estimate (:func:`nmsat.simulator.area.estimate`) of the point's
    config, or ``None`` when its operand type is not calibrated."""
    from nmsat.config import AcceleratorConfig

    tops = {f.name for f in dataclasses.fields(AcceleratorConfig)}
    items = tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in env.items()
                         if k.split(".")[0] in tops))
    return _estimate(items)


@functools.lru_cache(maxsize=4096)
def _estimate(items: tuple[tuple[str, Any], ...]) -> Any:
    from nmsat import config as nmconfig
    from nmsat.simulator import area

    nested: dict[str, Any] = {}
    for key, value in items:
        node = nested
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = list(value) if isinstance(value, tuple) else value
    return area.estimate(nmconfig.from_dict(nested))


def _resource(name: str) -> Callable[[Mapping[str, Any]], Any]:
    def get(env: Mapping[str, Any]) -> Any:
        r = _resources(env)
        if r is None:
            raise SweepSpecError(f"{name}: the area model has no estimate for "
                             f"numerics.dtype {env.get('numerics.dtype')!r}")
        return getattr(r, name)
    return get


def _fits_xcvu9p(env: Mapping[str, Any]) -> bool:
    from nmsat.synth_table import XCVU9P

    cap = XCVU9P.capacity
    return (_resource("lut")(env) <= cap.lut and _resource("ff")(env) <= cap.ff
            and _resource("dsp")(env) <= cap.dsp and _resource("bram")(env) <= cap.bram36)


DERIVED.update({
    "lut": ("LUTs the area model estimates (nmsat.simulator.area)", _resource("lut")),
    "ff": ("flip-flops the area model estimates", _resource("ff")),
    "dsp": ("DSP slices the area model estimates", _resource("dsp")),
    "bram": ("block RAM (RAMB36 units) the area model estimates; its buffer banks count as "
             "block RAM, URAM is not modelled (docs/sweeps.md, Resources)", _resource("bram")),
    "fits_xcvu9p": ("the area model's LUT, FF, DSP and RAMB36 estimates are all within the "
                    "XCVU9P's capacity (1,182,240 LUT, 2,364,480 FF, 6,840 DSP, 2,160 "
                    "RAMB36)", _fits_xcvu9p),
})


def _dotted(node: ast.AST) -> str | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    return ".".join([node.id, *reversed(parts)])


def _source(text: str, node: ast.AST) -> str:
    seg = ast.get_source_segment(text.strip(), node) or type(node).__name__
    return seg if len(seg) <= 60 else seg[:57] + "..."


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
        if len(text) > MAX_TEXT:
            raise SweepSpecError(f"{where}: the constraint is {len(text):,} characters "
                                 f"(limit {MAX_TEXT:,})")
        try:
            tree = ast.parse(text.strip(), mode="eval")
        except (SyntaxError, ValueError, RecursionError, MemoryError) as e:
            why = getattr(e, "msg", None) or type(e).__name__
            raise SweepSpecError(f"{where}: {text[:80]!r} is not an expression ({why})") \
                from None
        names: set[str] = set()
        cls._check(tree.body, text, where, known, names, 1)
        return cls(text, tree, frozenset(names))

    @classmethod
    def _check(cls, node: ast.AST, text: str, where: str, known: frozenset[str],
               names: set[str], depth: int) -> None:
        def bad(what: str) -> SweepSpecError:
            return SweepSpecError(f"{where}: {what} is not allowed in a constraint "
                                  f"({text[:80]!r})")

        if depth > MAX_DEPTH:
            raise SweepSpecError(f"{where}: the constraint nests deeper than {MAX_DEPTH} "
                                 f"levels")

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
            try:
                _bounded(node.value)
            except ArithmeticError as e:
                raise bad(str(e)) from None
            return
        if isinstance(node, (ast.List, ast.Tuple)):
            children = node.elts
        elif isinstance(node, ast.BinOp):
            if type(node.op) not in _BINOPS:
                raise bad(f"operator {type(node.op).__name__}")
            children = [node.left, node.right]
        elif isinstance(node, ast.UnaryOp):
            if type(node.op) not in _UNOPS:
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
                raise bad(f"call {_source(text, node)!r}")
            children = node.args
        else:
            raise bad(f"{type(node).__name__} {_source(text, node)!r}")
        for c in children:
            cls._check(c, text, where, known, names, depth + 1)

    def holds(self, env: Mapping[str, Any]) -> bool:
        """Evaluate on a point; raises :class:`SweepSpecError` if the result is not a
        boolean or the arithmetic fails (division by zero)."""
        try:
            value = self._eval(self.tree.body, env)
        except (ArithmeticError, TypeError, ValueError) as e:
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
            return _bounded(_BINOPS[type(node.op)](self._eval(node.left, env),
                                                   self._eval(node.right, env)))
        if isinstance(node, ast.UnaryOp):
            return _UNOPS[type(node.op)](self._eval(node.operand, env))
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
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            return _FUNCS[node.func.id](*(self._eval(a, env) for a in node.args))
        raise AssertionError(f"unchecked node {node!r}")  # _check admits nothing else
