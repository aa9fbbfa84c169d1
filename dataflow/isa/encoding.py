"""The tile ISA's constants, enums and the one table of every field's bit width
(:data:`ENCODING`, :data:`TENSOR_ENCODING`), with the checks that a value fits its field."""

from __future__ import annotations

import enum
from typing import Any

from nmsat.errors import NmsatError
from nmsat.types import Dataflow, Phase
from nmsat.workloads.layers import OpKind

__all__ = ["ENCODING", "INSTR_BITS", "ISA_VERSION", "MAX_LOOP_DEPTH", "OPCODE_BITS", "TENSOR_BITS",
           "TENSOR_ENCODING", "Buffer", "ElemType", "IsaError", "Opcode", "SoreView", "Transform",
           "Unit"]

ISA_VERSION = 3
INSTR_BITS = 512
"""Width of one encoded instruction word (opcode in bits 0..3, fields LSB-first after it)."""
TENSOR_BITS = 256
"""Width of one encoded tensor descriptor."""
OPCODE_BITS = 4
MAX_LOOP_DEPTH = 4
"""Loop nesting the controller supports (a 4-entry loop-counter stack)."""


class IsaError(NmsatError, ValueError):
    """A malformed instruction or program (names the field and value)."""


# --------------------------------------------------------------------------- enums


class Opcode(enum.IntEnum):
    LOOP = 1
    LOAD = 2
    COMPUTE = 3
    STORE = 4
    RELEASE = 5
    SORE = 6
    WEIGHT_UPDATE = 7
    VECTOR = 8
    BARRIER = 9


class Buffer(enum.IntEnum):
    """On-chip buffers (``docs/architecture.md`` section 7)."""

    ACT = 0  # activation / left operand A
    WGT = 1  # weight / right operand B (N:M compressed when the tensor is)
    OUT = 2  # fp32 / int32 partial sums


class Unit(enum.IntFlag):
    """Execution units, as a bit mask for :class:`Barrier`."""

    LOAD = 1
    ENGINE = 2
    STORE = 4
    SORE = 8
    WU = 16  # weight-update / vector engine

    @classmethod
    def all(cls) -> Unit:
        return cls.LOAD | cls.ENGINE | cls.STORE | cls.SORE | cls.WU


class Transform(enum.IntEnum):
    """How a LOAD/STORE maps the tensor's stored 2-D layout to the buffer tile."""

    NONE = 0  # tile = tensor[row0:row0+rows, col0:col0+cols]
    TRANSPOSE = 1  # tile = tensor^T[...] (rows index the tensor's columns)
    IM2COL = 2  # tile = im2col(tensor)[...], tensor is an NHWC feature map (needs conv)
    COL2IM = 3  # STORE only: scatter-add the tile (im2col layout) into the feature map


class ElemType(enum.IntEnum):
    """Element type of a stored tensor."""

    INT8 = 0
    INT16 = 1
    FP16 = 2
    BF16 = 3
    FP32 = 4
    INT32 = 5

    @property
    def bytes(self) -> int:
        return {0: 1, 1: 2, 2: 2, 3: 2, 4: 4, 5: 4}[int(self)]

    @classmethod
    def of(cls, name: str) -> ElemType:
        try:
            return cls[str(name).upper()]
        except KeyError:
            raise IsaError(f"unknown element type {name!r} "
                           f"(choose from {', '.join(m.name.lower() for m in cls)})") from None


class SoreView(enum.IntEnum):
    FF = 0  # groups along the layer's input dimension
    BP = 1  # groups along the layer's output dimension


_PHASE_CODE = {Phase.FF: 0, Phase.BP: 1, Phase.WG: 2, Phase.WU: 3, Phase.SORE: 4}
_CODE_PHASE = {v: k for k, v in _PHASE_CODE.items()}
_OPKIND_CODE = {k: i for i, k in enumerate(OpKind)}
_CODE_OPKIND = {v: k for k, v in _OPKIND_CODE.items()}


# --------------------------------------------------------------------------- encoding table

# The one definition of every field's width (bits). Version 2 widened tensor and layer
# references to 32 bits (a 10,000-layer SCALE-Sim file has over 65,536 tensors) and byte,
# element, weight and group counts to 48 bits (a GPT-2 prefill's attention softmax at
# batch 32 reads over 4 GiB), so the zoo and any model within the input limits fit; a value
# that still does not is refused naming its layer, field and limit.
# The one definition of every field's width (bits). Field order = bit order (LSB first,
# after the 4-bit opcode). Enum fields hold their integer code; NM patterns are two fields
# (n, m; dense = 1:1); bools are 1 bit; loop references are 0 (none) or depth + 1.
_REGION = ((("tensor", 32), ("transform", 2), ("row0", 32), ("col0", 32), ("rows", 24),
            ("cols", 24), ("bytes", 48))
           + tuple((f"row_step{d}", 32) for d in range(4))
           + tuple((f"col_step{d}", 32) for d in range(4)))
ENCODING: dict[Opcode, tuple[tuple[str, int], ...]] = {
    Opcode.LOOP: (("count", 32), ("body", 16)),
    Opcode.LOAD: (("buffer", 2), ("nm_n", 4), ("nm_m", 5)) + _REGION,
    Opcode.COMPUTE: (("dataflow", 1), ("nm_n", 4), ("nm_m", 5), ("m", 24), ("n", 24),
                     ("k", 24), ("interleave", 1), ("pop_a", 1), ("pop_b", 1),
                     ("layer", 32), ("phase", 3)),
    Opcode.STORE: _REGION,
    Opcode.RELEASE: (("buffer", 2),),
    Opcode.SORE: (("src", 32), ("dst", 32), ("view", 1), ("nm_n", 4), ("nm_m", 5),
                  ("weights", 48), ("groups", 48), ("read_bytes", 48), ("write_bytes", 48),
                  ("layer", 32)),
    Opcode.WEIGHT_UPDATE: (("tensor", 32), ("weights", 48), ("read_bytes", 48),
                           ("write_bytes", 48), ("layer", 32)),
    Opcode.VECTOR: (("kind", 3), ("elements", 48), ("read_bytes", 48), ("write_bytes", 48),
                    ("layer", 32), ("phase", 3)),
    Opcode.BARRIER: (("units", 5),),
}
TENSOR_ENCODING: tuple[tuple[str, int], ...] = (
    ("rows", 32), ("cols", 32), ("elem", 3), ("nm_n", 4), ("nm_m", 5), ("dram_addr", 48),
    ("conv", 1), ("h", 16), ("w", 16), ("c", 16), ("kh", 5), ("kw", 5), ("stride", 5),
    ("padding", 4), ("batch", 32))
"""Tensor descriptor fields (bits). ``conv`` = 1 when the tensor is an NHWC feature map
``[batch*h*w, c]`` that IM2COL / COL2IM transfers read / write."""

for _op, _flds in ENCODING.items():
    assert OPCODE_BITS + sum(b for _, b in _flds) <= INSTR_BITS, _op
assert sum(b for _, b in TENSOR_ENCODING) <= TENSOR_BITS


def _check_fields(obj: Any, table: tuple[tuple[str, int], ...], what: str) -> None:
    """Every encoded field must be a non-negative int that fits its width."""
    for name, bits in table:
        v = getattr(obj, name, None) if name not in _DERIVED else None
        if v.__class__ is not int:  # a plain int reads as itself (the common case)
            v = _field_int(obj, name)
        if not 0 <= v < (1 << bits):
            raise IsaError(f"{what}.{name} must be between 0 and {(1 << bits) - 1} "
                           f"({bits} bits), not {v!r}")


_DERIVED = frozenset({"nm_n", "nm_m", "units", *(f"{s}{d}" for s in ("row_step", "col_step")
                                                   for d in range(10))})
"""Encoded field names that are not attributes of the same name (:func:`_field_int`)."""


def _field_int(obj: Any, name: str) -> int:
    if name[:-1] in ("row_step", "col_step"):
        return getattr(obj, name[:-1] + "s")[int(name[-1])]
    if name in ("nm_n", "nm_m"):
        nm = obj.nm
        return nm.n if name == "nm_n" else nm.m
    if name == "units":
        return int(obj.units)
    v = getattr(obj, name)
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, Phase):
        return _PHASE_CODE[v]
    if isinstance(v, OpKind):
        return _OPKIND_CODE[v]
    if isinstance(v, Dataflow):
        return 0 if v is Dataflow.OS else 1
    if isinstance(v, enum.Enum):
        return int(v.value)
    if not isinstance(v, int):
        raise IsaError(f"field {name} must be an integer, not {v!r}")
    return v


def _pos(name: str, v: Any, what: str, lo: int = 1) -> None:
    if not isinstance(v, int) or isinstance(v, bool) or v < lo:
        raise IsaError(f"{what}.{name} must be an integer >= {lo}, not {v!r}")
