"""Instructions and tensor descriptors to and from their fixed-width binary words (laid out
by :data:`~nmsat.dataflow.isa.encoding.ENCODING`) and their JSON objects."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from nmsat.types import NM, Dataflow, Phase
from nmsat.workloads.layers import OpKind

from .encoding import (
    _CODE_OPKIND,
    _CODE_PHASE,
    ENCODING,
    INSTR_BITS,
    MAX_LOOP_DEPTH,
    OPCODE_BITS,
    TENSOR_BITS,
    TENSOR_ENCODING,
    Buffer,
    ElemType,
    IsaError,
    Opcode,
    SoreView,
    Transform,
    Unit,
    _field_int,
)
from .instructions import INSTRUCTION_TYPES, ConvView, Instr, Tensor

__all__ = ["decode", "decode_tensor", "encode", "encode_tensor"]


def _pack(values: list[tuple[int, int]], width: int) -> bytes:
    word, shift = 0, 0
    for v, bits in values:
        word |= v << shift
        shift += bits
    return word.to_bytes(width // 8, "little")


def _unpack(raw: bytes, table: tuple[tuple[str, int], ...], shift: int) -> dict[str, int]:
    word = int.from_bytes(raw, "little")
    out = {}
    for name, bits in table:
        out[name] = (word >> shift) & ((1 << bits) - 1)
        shift += bits
    return out


def encode(ins: Instr) -> bytes:
    """One instruction -> ``INSTR_BITS // 8`` bytes (opcode in bits 0..3, then the
    fields of ``ENCODING[opcode]`` LSB-first, zero padding)."""
    vals = [(int(ins.OPCODE), OPCODE_BITS)]
    vals += [(_field_int(ins, name), bits) for name, bits in ENCODING[ins.OPCODE]]
    return _pack(vals, INSTR_BITS)


def decode(raw: bytes) -> Instr:
    if len(raw) != INSTR_BITS // 8:
        raise IsaError(f"an instruction word is {INSTR_BITS // 8} bytes, not {len(raw)}")
    code = int.from_bytes(raw, "little") & ((1 << OPCODE_BITS) - 1)
    try:
        op = Opcode(code)
    except ValueError:
        raise IsaError(f"unknown opcode {code}") from None
    f = _unpack(raw, ENCODING[op], OPCODE_BITS)
    return _build(op, f)


def _build(op: Opcode, f: dict[str, Any]) -> Instr:
    cls = INSTRUCTION_TYPES[op]
    kw: dict[str, Any] = {}
    if "row_step0" in f:
        for axis in ("row", "col"):
            kw[f"{axis}_steps"] = tuple(f.pop(f"{axis}_step{d}") for d in range(MAX_LOOP_DEPTH))
    if "nm_n" in f:
        kw["nm"] = NM(f.pop("nm_n"), f.pop("nm_m"))
    for name, v in f.items():
        kw[name] = _typed(name, v)
    return cls(**kw)


def _typed(name: str, v: Any) -> Any:
    if name == "buffer":
        return Buffer(v)
    if name == "transform":
        return Transform(v)
    if name == "dataflow":
        return Dataflow.OS if v == 0 else Dataflow.WS
    if name == "phase":
        return _CODE_PHASE[v]
    if name == "kind":
        return _CODE_OPKIND[v]
    if name == "view":
        return SoreView(v)
    if name == "units":
        return Unit(v)
    if name in ("interleave", "pop_a", "pop_b"):
        return bool(v)
    return v


def encode_tensor(t: Tensor) -> bytes:
    cv = t.conv
    vals = {"rows": t.rows, "cols": t.cols, "elem": int(t.elem), "nm_n": t.nm.n,
            "nm_m": t.nm.m, "dram_addr": t.dram_addr, "conv": int(cv is not None)}
    for name in ("h", "w", "c", "kh", "kw", "stride", "padding", "batch"):
        vals[name] = getattr(cv, name) if cv is not None else 0
    for name, bits in TENSOR_ENCODING:
        if not 0 <= vals[name] < (1 << bits):
            raise IsaError(f"Tensor {t.name}: {name}={vals[name]} does not fit {bits} bits")
    return _pack([(vals[n], b) for n, b in TENSOR_ENCODING], TENSOR_BITS)


def decode_tensor(raw: bytes, name: str) -> Tensor:
    f = _unpack(raw, TENSOR_ENCODING, 0)
    conv = None
    if f["conv"]:
        conv = ConvView(f["batch"], f["h"], f["w"], f["c"], f["kh"], f["kw"], f["stride"],
                        f["padding"])
    return Tensor(name, f["rows"], f["cols"], ElemType(f["elem"]), NM(f["nm_n"], f["nm_m"]),
                  f["dram_addr"], conv)


def _tensor_dict(t: Tensor) -> dict[str, Any]:
    d = {"name": t.name, "rows": t.rows, "cols": t.cols, "elem": t.elem.name.lower(),
         "nm": str(t.nm), "dram_addr": t.dram_addr}
    if t.conv is not None:
        d["conv"] = {f.name: getattr(t.conv, f.name) for f in fields(t.conv)}
    return d


def _tensor_from(d: Any, i: int) -> Tensor:
    if not isinstance(d, dict):
        raise IsaError(f"tensor {i} must be an object, not {d!r}")
    known = {"name", "rows", "cols", "elem", "nm", "dram_addr", "conv"}
    if set(d) - known:
        raise IsaError(f"tensor {i}: unknown field {min(set(d) - known)!r}")
    try:
        conv = ConvView(**d["conv"]) if d.get("conv") is not None else None
        return Tensor(d["name"], d["rows"], d["cols"], ElemType.of(d.get("elem", "fp16")),
                      NM.parse(d.get("nm", "1:1")), d.get("dram_addr", 0), conv)
    except (KeyError, TypeError, ValueError) as e:
        raise IsaError(f"tensor {i}: {e}") from None


def _instr_from(d: Any, i: int) -> Instr:
    if not isinstance(d, dict) or "op" not in d:
        raise IsaError(f"instruction {i} must be an object with an 'op', not {d!r}")
    try:
        op = Opcode[str(d["op"]).upper()]
    except KeyError:
        raise IsaError(f"instruction {i}: unknown op {d['op']!r}") from None
    cls = INSTRUCTION_TYPES[op]
    names = {f.name for f in fields(cls)}
    extra = set(d) - names - {"op"}
    if extra:
        raise IsaError(f"instruction {i} ({op.name}): unknown field {min(extra)!r}")
    kw: dict[str, Any] = {}
    try:
        for name in names & set(d):
            v = d[name]
            if name == "nm":
                kw[name] = NM.parse(v)
            elif name == "buffer":
                kw[name] = Buffer[str(v).upper()]
            elif name == "transform":
                kw[name] = Transform[str(v).upper()]
            elif name == "dataflow":
                kw[name] = Dataflow.parse(v)
            elif name == "phase":
                kw[name] = Phase.parse(v)
            elif name == "kind":
                kw[name] = OpKind.parse(v)
            elif name == "view":
                kw[name] = SoreView[str(v).upper()]
            elif name in ("row_steps", "col_steps"):
                kw[name] = tuple(v)
            elif name == "units":
                u = Unit(0)
                for s in v:
                    u |= Unit[str(s).upper()]
                kw[name] = u
            else:
                kw[name] = v
        return cls(**kw)
    except (KeyError, TypeError, ValueError) as e:
        if isinstance(e, IsaError):
            raise IsaError(f"instruction {i}: {e}") from None
        raise IsaError(f"instruction {i} ({op.name}): {e}") from None
