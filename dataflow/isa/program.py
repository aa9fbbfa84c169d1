"""A tile program (tensor table, layer table, instruction stream): validation, iteration
(executions, unrolled tiles, listing, totals) and its JSON and binary containers."""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

from .codec import (
    _instr_from,
    _tensor_dict,
    _tensor_from,
    decode,
    decode_tensor,
    encode,
    encode_tensor,
)
from .encoding import INSTR_BITS, ISA_VERSION, MAX_LOOP_DEPTH, TENSOR_BITS, IsaError, Transform
from .instructions import Compute, Instr, Load, Loop, Store, Tensor, _Transfer

__all__ = ["Program"]


@dataclass(frozen=True)
class Program:
    """A tile program: tensors, layer names, and the instruction stream.

    Validated on construction: tensor and layer references in range, loops well nested
    (a body never crosses the end of its enclosing body, depth <= ``MAX_LOOP_DEPTH``), and
    no ``row_steps``/``col_steps`` entry for a loop depth that does not enclose it.
    """

    instructions: tuple[Instr, ...]
    tensors: tuple[Tensor, ...] = ()
    layers: tuple[str, ...] = ()
    meta: tuple[tuple[str, str], ...] = field(default=())

    def __post_init__(self) -> None:
        object.__setattr__(self, "instructions", tuple(self.instructions))
        object.__setattr__(self, "tensors", tuple(self.tensors))
        object.__setattr__(self, "layers", tuple(self.layers))
        object.__setattr__(self, "meta", tuple((str(k), str(v)) for k, v in self.meta))
        nt, nl = len(self.tensors), len(self.layers)
        ends: list[int] = []  # end index (exclusive) of each open loop body
        for i, ins in enumerate(self.instructions):
            if not isinstance(ins, Instr):
                raise IsaError(f"instruction {i} is not an Instr: {ins!r}")
            while ends and i >= ends[-1]:
                ends.pop()
            depth = len(ends)
            for name in ("tensor", "src", "dst"):
                if hasattr(ins, name) and not 0 <= getattr(ins, name) < nt:
                    raise IsaError(f"instruction {i} ({ins.OPCODE.name}): {name} "
                                   f"{getattr(ins, name)} is not a tensor (0..{nt - 1})")
            if hasattr(ins, "layer") and nl and not 0 <= ins.layer < nl:
                raise IsaError(f"instruction {i} ({ins.OPCODE.name}): layer {ins.layer} "
                               f"is not a layer (0..{nl - 1})")
            if isinstance(ins, _Transfer):
                for name in ("row_steps", "col_steps"):
                    v = getattr(ins, name)
                    if any(v[depth:]):
                        raise IsaError(f"instruction {i} ({ins.OPCODE.name}): {name}={v} "
                                       f"steps with a loop depth >= {depth}, but only "
                                       f"{depth} loop(s) enclose it")
                t = self.tensors[ins.tensor]
                if ins.transform in (Transform.IM2COL, Transform.COL2IM) and t.conv is None:
                    raise IsaError(f"instruction {i}: {ins.transform.name} needs tensor "
                                   f"{t.name!r} to have a conv view")
            if isinstance(ins, Loop):
                end = i + 1 + ins.body
                if end > len(self.instructions) or (ends and end > ends[-1]):
                    raise IsaError(f"instruction {i}: loop body of {ins.body} runs past the "
                                   f"end of its enclosing body or the program")
                if depth + 1 > MAX_LOOP_DEPTH:
                    raise IsaError(f"instruction {i}: loops nest deeper than "
                                   f"{MAX_LOOP_DEPTH}")
                ends.append(end)

    # ------------------------------------------------------------------ iteration

    def executions(self) -> Iterator[tuple[int, Instr, int]]:
        """(index, instruction, times executed) for every non-loop instruction: the
        product of the counts of its enclosing loops. O(program size)."""
        ends: list[tuple[int, int]] = []  # (end, multiplier)
        mult = 1
        for i, ins in enumerate(self.instructions):
            while ends and i >= ends[-1][0]:
                mult //= ends.pop()[1]
            if isinstance(ins, Loop):
                ends.append((i + 1 + ins.body, ins.count))
                mult *= ins.count
            else:
                yield i, ins, mult

    def unrolled(self) -> Iterator[tuple[Instr, int, int]]:
        """Every executed non-loop instruction in order, as (instruction, r0, c0) with
        the tile coordinates of LOAD/STORE resolved (0, 0 for others). O(executions):
        for RTL runs and tests on small programs, not for simulating large ones."""
        def run(lo: int, hi: int, idx: list[int]) -> Iterator[tuple[Instr, int, int]]:
            i = lo
            while i < hi:
                ins = self.instructions[i]
                if isinstance(ins, Loop):
                    for it in range(ins.count):
                        yield from run(i + 1, i + 1 + ins.body, idx + [it])
                    i += 1 + ins.body
                    continue
                if isinstance(ins, _Transfer):
                    r0 = ins.row0 + sum(s * v for s, v in zip(ins.row_steps, idx))
                    c0 = ins.col0 + sum(s * v for s, v in zip(ins.col_steps, idx))
                    yield ins, r0, c0
                else:
                    yield ins, 0, 0
                i += 1
        yield from run(0, len(self.instructions), [])

    def listing(self) -> str:
        """Readable assembly: one line per instruction, loop bodies indented."""
        lines: list[str] = []
        ends: list[int] = []
        for i, ins in enumerate(self.instructions):
            while ends and i >= ends[-1]:
                ends.pop()
            d = ins.to_dict()
            op = d.pop("op").upper()
            if isinstance(ins, _Transfer):
                t = self.tensors[ins.tensor].name if ins.tensor < len(self.tensors) else "?"
                steps = "".join(f" +i{k}*({r},{c})" for k, (r, c) in
                                enumerate(zip(ins.row_steps, ins.col_steps)) if r or c)
                text = (f"{op:<8} {t}[{ins.row0}:+{ins.rows}, {ins.col0}:+{ins.cols}]{steps}"
                        f" {ins.transform.name.lower()} {ins.bytes} B")
                if isinstance(ins, Load):
                    text += f" -> {ins.buffer.name}" + ("" if ins.nm.dense else f" {ins.nm}")
            elif isinstance(ins, Compute):
                name = self.layers[ins.layer] if ins.layer < len(self.layers) else ins.layer
                text = (f"{op:<8} {ins.dataflow.value} {ins.nm} m={ins.m} n={ins.n} k={ins.k}"
                        f"{' interleave' if ins.interleave else ''}"
                        f"{'' if ins.pop_a else ' keep_a'}{'' if ins.pop_b else ' keep_b'}"
                        f"  # {name} {ins.phase.value}")
            else:
                text = f"{op:<8} " + " ".join(f"{k}={v}" for k, v in d.items())
            lines.append("  " * len(ends) + text)
            if isinstance(ins, Loop):
                ends.append(i + 1 + ins.body)
        return "\n".join(lines)

    def totals(self) -> dict[str, int]:
        """Executed totals: MACs, dense MACs, load/store bytes, instruction count."""
        out = {"macs": 0, "dense_macs": 0, "load_bytes": 0, "store_bytes": 0,
               "executed": 0}
        for _, ins, times in self.executions():
            out["executed"] += times
            if isinstance(ins, Compute):
                out["macs"] += ins.macs * times
                out["dense_macs"] += ins.dense_macs * times
            elif isinstance(ins, Load):
                out["load_bytes"] += ins.bytes * times
            elif isinstance(ins, Store):
                out["store_bytes"] += ins.bytes * times
        return out

    # ------------------------------------------------------------------ JSON

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": ISA_VERSION,
            "meta": dict(self.meta),
            "layers": list(self.layers),
            "tensors": [_tensor_dict(t) for t in self.tensors],
            "instructions": [ins.to_dict() for ins in self.instructions],
        }

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Program:
        if not isinstance(data, dict):
            raise IsaError(f"a program must be a JSON object, not {type(data).__name__}")
        unknown = set(data) - {"version", "meta", "layers", "tensors", "instructions"}
        if unknown:
            raise IsaError(f"unknown program field {min(unknown)!r}")
        if data.get("version") != ISA_VERSION:
            raise IsaError(f"program version must be {ISA_VERSION}, not "
                           f"{data.get('version')!r}")
        tensors = tuple(_tensor_from(t, i) for i, t in enumerate(data.get("tensors", [])))
        instrs = tuple(_instr_from(d, i) for i, d in enumerate(data.get("instructions", [])))
        meta = tuple(sorted((str(k), str(v)) for k, v in dict(data.get("meta", {})).items()))
        return cls(instrs, tensors, tuple(data.get("layers", [])), meta)

    @classmethod
    def from_json(cls, text: str) -> Program:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise IsaError(f"invalid program JSON: {e}") from None
        return cls.from_dict(data)

    # ------------------------------------------------------------------ binary

    _MAGIC: ClassVar[bytes] = b"NMSATP"

    def to_bytes(self) -> bytes:
        """Binary container: header, tensor descriptors (``TENSOR_BITS`` each),
        instruction words (``INSTR_BITS`` each, little-endian), then the name table
        (tensor names, layer names, meta) as length-prefixed UTF-8."""
        head = self._MAGIC + struct.pack("<HIII", ISA_VERSION, len(self.tensors),
                                         len(self.instructions), len(self.layers))
        body = b"".join(encode_tensor(t) for t in self.tensors)
        body += b"".join(encode(ins) for ins in self.instructions)
        names = [t.name for t in self.tensors] + list(self.layers)
        names += [s for kv in self.meta for s in kv]
        strings = struct.pack("<I", len(self.meta)) + b"".join(
            struct.pack("<I", len(s.encode())) + s.encode() for s in names)
        return head + body + strings

    @classmethod
    def from_bytes(cls, data: bytes) -> Program:
        n0 = len(cls._MAGIC)
        if data[:n0] != cls._MAGIC:
            raise IsaError("not an nmsat tile program (bad magic)")
        version, nt, ni, nl = struct.unpack_from("<HIII", data, n0)
        if version != ISA_VERSION:
            raise IsaError(f"program version must be {ISA_VERSION}, not {version}")
        off = n0 + struct.calcsize("<HIII")
        tb, ib = TENSOR_BITS // 8, INSTR_BITS // 8
        tens_raw = [data[off + i * tb: off + (i + 1) * tb] for i in range(nt)]
        off += nt * tb
        instrs = tuple(decode(data[off + i * ib: off + (i + 1) * ib]) for i in range(ni))
        off += ni * ib
        (nmeta,) = struct.unpack_from("<I", data, off)
        off += 4
        strings = []
        for _ in range(nt + nl + 2 * nmeta):
            (n,) = struct.unpack_from("<I", data, off)
            strings.append(data[off + 4: off + 4 + n].decode())
            off += 4 + n
        if off != len(data):
            raise IsaError(f"program binary has {len(data) - off} trailing bytes")
        tensors = tuple(decode_tensor(raw, strings[i]) for i, raw in enumerate(tens_raw))
        layers = tuple(strings[nt: nt + nl])
        rest = strings[nt + nl:]
        meta = tuple((rest[2 * i], rest[2 * i + 1]) for i in range(nmeta))
        return cls(instrs, tensors, layers, meta)
