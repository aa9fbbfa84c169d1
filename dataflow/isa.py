"""The tile-program instruction set: what the dataflow compiler emits, and what both the
simulator and the RTL tile controller execute (``docs/isa.md`` is the prose version).

A :class:`Program` is a tensor table, a layer table and a flat list of instructions.
Instructions are frozen dataclasses; a program serialises to JSON (:meth:`Program.to_json`)
and to a fixed-width binary form (:meth:`Program.to_bytes`) whose field widths are defined
once, in :data:`ENCODING` and :data:`TENSOR_ENCODING`. The RTL turns those tables into
``amaranth.lib.data`` layouts; nothing here imports Amaranth.

Execution model (normative, see ``docs/isa.md``)
    The controller dispatches instructions in program order to five units: the load DMA
    (``LOAD``), the tensor engine (``COMPUTE``, ``RELEASE`` of operand halves), the store DMA
    (``STORE``), the SORE (``SORE``) and the weight-update/vector engine (``WEIGHT_UPDATE``,
    ``VECTOR``). Each unit runs its instructions in order. Buffers synchronise the first
    three units: each of the ACT, WGT and OUT buffers is a ring of two halves.

    * ``LOAD`` waits for a free half of its buffer, fills it, and appends it to the ring.
    * ``COMPUTE`` reads the oldest filled ACT and WGT halves (waiting until they are
      filled), accumulates ``C += A @ B`` (:func:`nmsat.reference.engine_gemm` with
      ``acc`` = the OUT half's contents) into the current OUT half, then frees the ACT /
      WGT half if ``pop_a`` / ``pop_b`` is set.
    * ``RELEASE`` frees the oldest filled half of a buffer without computing (a weight
      block kept resident over a loop is released after it).
    * ``STORE`` waits for the computes before it, writes the current OUT half to DRAM,
      clears it (it reads as +0 again) and makes the other half current; a COMPUTE that
      needs that other half waits until its previous STORE has finished.
    * ``BARRIER`` stops dispatch until every instruction dispatched earlier to the named
      units has completed (data dependencies through DRAM, and SORE results).
    * ``LOOP count, body`` runs the next ``body`` instructions ``count`` times. Loops nest
      up to :data:`MAX_LOOP_DEPTH`; ``LOAD``/``STORE`` tile coordinates step with the
      iteration indices of the enclosing loops (``row_steps``/``col_steps``, one step per
      depth), so the program's size never depends on the batch size.
"""

from __future__ import annotations

import enum
import json
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

from nmsat.workloads.layers import OpKind

from nmsat.arith import ceil_div
from nmsat.errors import NmsatError
from nmsat.types import DENSE, NM, Dataflow, Phase

ISA_VERSION = 1
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

# The one definition of every field's width (bits). Field order = bit order (LSB first,
# after the 4-bit opcode). Enum fields hold their integer code; NM patterns are two fields
# (n, m; dense = 1:1); bools are 1 bit; loop references are 0 (none) or depth + 1.
_REGION = ((("tensor", 16), ("transform", 2), ("row0", 32), ("col0", 32), ("rows", 24),
            ("cols", 24), ("bytes", 32))
           + tuple((f"row_step{d}", 32) for d in range(4))
           + tuple((f"col_step{d}", 32) for d in range(4)))
ENCODING: dict[Opcode, tuple[tuple[str, int], ...]] = {
    Opcode.LOOP: (("count", 32), ("body", 16)),
    Opcode.LOAD: (("buffer", 2),) + _REGION,
    Opcode.COMPUTE: (("dataflow", 1), ("nm_n", 4), ("nm_m", 5), ("m", 24), ("n", 24),
                     ("k", 24), ("interleave", 1), ("pop_a", 1), ("pop_b", 1),
                     ("layer", 16), ("phase", 3)),
    Opcode.STORE: _REGION,
    Opcode.RELEASE: (("buffer", 2),),
    Opcode.SORE: (("src", 16), ("dst", 16), ("view", 1), ("nm_n", 4), ("nm_m", 5),
                  ("weights", 32), ("groups", 32), ("read_bytes", 32), ("write_bytes", 32),
                  ("layer", 16)),
    Opcode.WEIGHT_UPDATE: (("tensor", 16), ("weights", 32), ("read_bytes", 32),
                           ("write_bytes", 32), ("layer", 16)),
    Opcode.VECTOR: (("kind", 3), ("elements", 32), ("read_bytes", 32), ("write_bytes", 32),
                    ("layer", 16), ("phase", 3)),
    Opcode.BARRIER: (("units", 5),),
}
TENSOR_ENCODING: tuple[tuple[str, int], ...] = (
    ("rows", 32), ("cols", 32), ("elem", 3), ("nm_n", 4), ("nm_m", 5), ("dram_addr", 48),
    ("conv", 1), ("h", 16), ("w", 16), ("c", 16), ("kh", 5), ("kw", 5), ("stride", 5),
    ("padding", 4), ("batch", 16))
"""Tensor descriptor fields (bits). ``conv`` = 1 when the tensor is an NHWC feature map
``[batch*h*w, c]`` that IM2COL / COL2IM transfers read / write."""

for _op, _flds in ENCODING.items():
    assert OPCODE_BITS + sum(b for _, b in _flds) <= INSTR_BITS, _op
assert sum(b for _, b in TENSOR_ENCODING) <= TENSOR_BITS


def _check_fields(obj: Any, table: tuple[tuple[str, int], ...], what: str) -> None:
    """Every encoded field must be a non-negative int that fits its width."""
    for name, bits in table:
        v = _field_int(obj, name)
        if not 0 <= v < (1 << bits):
            raise IsaError(f"{what}.{name} must be between 0 and {(1 << bits) - 1} "
                           f"({bits} bits), not {v!r}")


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


# --------------------------------------------------------------------------- tables


@dataclass(frozen=True)
class ConvView:
    """Geometry of an NHWC feature map for IM2COL / COL2IM transfers (one conv group's
    channels ``c``; the tensor holds ``batch*h*w`` rows of ``c`` elements)."""

    batch: int
    h: int
    w: int
    c: int
    kh: int
    kw: int
    stride: int = 1
    padding: int = 0

    def __post_init__(self) -> None:
        for f in fields(self):
            _pos(f.name, getattr(self, f.name), "ConvView", 0 if f.name == "padding" else 1)
        if self.out_h < 1 or self.out_w < 1:
            raise IsaError(f"ConvView: kernel {self.kh}x{self.kw} does not fit the padded "
                           f"{self.h}x{self.w} input")

    @property
    def out_h(self) -> int:
        return (self.h + 2 * self.padding - self.kh) // self.stride + 1

    @property
    def out_w(self) -> int:
        return (self.w + 2 * self.padding - self.kw) // self.stride + 1

    @property
    def im2col_rows(self) -> int:
        return self.batch * self.out_h * self.out_w

    @property
    def im2col_cols(self) -> int:
        return self.kh * self.kw * self.c


@dataclass(frozen=True)
class Tensor:
    """A tensor in DRAM, as a 2-D row-major matrix ``[rows, cols]``.

    ``nm`` other than dense means the tensor is stored N:M-compressed along its rows (the
    GEMM's K axis) in :func:`nmsat.reference.pack` format: values then packed indices.
    """

    name: str
    rows: int
    cols: int
    elem: ElemType = ElemType.FP16
    nm: NM = DENSE
    dram_addr: int = 0
    conv: ConvView | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise IsaError(f"Tensor.name must be a non-empty string, not {self.name!r}")
        _pos("rows", self.rows, f"Tensor {self.name}")
        _pos("cols", self.cols, f"Tensor {self.name}")
        if not isinstance(self.elem, ElemType):
            raise IsaError(f"Tensor {self.name}: elem must be an ElemType, not {self.elem!r}")
        if not isinstance(self.nm, NM):
            raise IsaError(f"Tensor {self.name}: nm must be an NM, not {self.nm!r}")
        if self.conv is not None and (self.conv.batch * self.conv.h * self.conv.w != self.rows
                                      or self.conv.c != self.cols):
            raise IsaError(f"Tensor {self.name}: conv view {self.conv} does not match "
                           f"[{self.rows}, {self.cols}] (rows must be batch*h*w, cols c)")
        _check_fields(self, tuple(t for t in TENSOR_ENCODING if t[0] in
                                  ("rows", "cols", "dram_addr")), f"Tensor {self.name}")

    @property
    def bytes(self) -> int:
        """Bytes in DRAM (exact, including packed index bits when compressed)."""
        return region_bytes(self.rows, self.cols, self.elem, self.nm)


def region_bytes(rows: int, cols: int, elem: ElemType, nm: NM = DENSE) -> int:
    """Bytes of a ``[rows, cols]`` tile; N:M-compressed along rows when ``nm`` is sparse
    (exactly :func:`nmsat.reference.compressed_bytes`, index bits included)."""
    if nm.dense:
        return rows * cols * elem.bytes
    if elem.bytes not in (1, 2):
        raise IsaError(f"N:M-compressed tensors hold 1- or 2-byte operands, not {elem.name}")
    # compressed_bytes((rows, cols), nm, 0, dtype) inlined (the compiler calls this often);
    # tests check the two agree.
    slots = cols * ceil_div(rows, nm.m) * nm.n
    return slots * elem.bytes + (slots * nm.index_bits + 7) // 8


# --------------------------------------------------------------------------- instructions


@dataclass(frozen=True)
class Instr:
    """Base class of every instruction."""

    OPCODE: ClassVar[Opcode]

    def __post_init__(self) -> None:
        _check_fields(self, ENCODING[self.OPCODE], type(self).__name__)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"op": self.OPCODE.name.lower()}
        for f in fields(self):
            d[f.name] = _jsonable(getattr(self, f.name))
        return d


def _jsonable(v: Any) -> Any:
    if isinstance(v, bool):
        return v
    if isinstance(v, NM):
        return str(v)
    if isinstance(v, Unit):
        return [u.name.lower() for u in Unit if u & v]
    if isinstance(v, (Phase, OpKind, Dataflow)):
        return v.value
    if isinstance(v, enum.Enum):
        return v.name.lower()
    return v


@dataclass(frozen=True)
class Loop(Instr):
    """Run the next ``body`` instructions ``count`` times (iteration index 0..count-1)."""

    OPCODE: ClassVar[Opcode] = Opcode.LOOP
    count: int
    body: int

    def __post_init__(self) -> None:
        _pos("count", self.count, "Loop")
        _pos("body", self.body, "Loop")
        super().__post_init__()


@dataclass(frozen=True)
class _Transfer(Instr):
    """Common region fields of LOAD and STORE.

    The tile is rows ``r0 .. r0 + rows`` and columns ``c0 .. c0 + cols`` of the tensor's
    view (after ``transform``), with ``r0 = row0 + sum_d i[d] * row_steps[d]`` and likewise
    for columns; ``i[d]`` is the iteration index of the enclosing loop at depth d
    (0 = outermost; a step at a depth with no enclosing loop must be 0). ``bytes`` is what crosses the DRAM interface
    (exact, compressed weights including index bits; computed by the compiler).
    """

    tensor: int
    row0: int
    col0: int
    rows: int
    cols: int
    bytes: int
    transform: Transform = Transform.NONE
    row_steps: tuple[int, ...] = (0,) * MAX_LOOP_DEPTH
    col_steps: tuple[int, ...] = (0,) * MAX_LOOP_DEPTH

    def __post_init__(self) -> None:
        what = type(self).__name__
        _pos("rows", self.rows, what)
        _pos("cols", self.cols, what)
        _pos("bytes", self.bytes, what)
        if not isinstance(self.transform, Transform):
            raise IsaError(f"{what}.transform must be a Transform, not {self.transform!r}")
        for name in ("row_steps", "col_steps"):
            v = tuple(getattr(self, name))
            object.__setattr__(self, name, v)
            if len(v) != MAX_LOOP_DEPTH or not all(isinstance(x, int) for x in v):
                raise IsaError(f"{what}.{name} must be {MAX_LOOP_DEPTH} integers (one step "
                               f"per loop depth), not {v!r}")
        super().__post_init__()


@dataclass(frozen=True)
class Load(_Transfer):
    """DRAM -> one half of ``buffer``."""

    OPCODE: ClassVar[Opcode] = Opcode.LOAD
    buffer: Buffer = Buffer.ACT

    def __post_init__(self) -> None:
        if not isinstance(self.buffer, Buffer) or self.buffer is Buffer.OUT:
            raise IsaError(f"Load.buffer must be ACT or WGT, not {self.buffer!r}")
        if self.transform is Transform.COL2IM:
            raise IsaError("Load.transform cannot be COL2IM (a store-only scatter-add)")
        super().__post_init__()


@dataclass(frozen=True)
class Store(_Transfer):
    """Current OUT half -> DRAM (converted to the tensor's element type); clears the half
    and makes the other half current."""

    OPCODE: ClassVar[Opcode] = Opcode.STORE

    def __post_init__(self) -> None:
        if self.transform is Transform.IM2COL:
            raise IsaError("Store.transform cannot be IM2COL (use COL2IM to scatter-add)")
        super().__post_init__()


@dataclass(frozen=True)
class Compute(Instr):
    """``OUT[m, n] += A[m, k] @ B[k, n]`` on the tensor engine.

    A is the oldest filled ACT half, B the oldest filled WGT half (N:M-compressed along K
    when ``nm`` is not dense), OUT the current OUT half; the engine maps the block onto the
    array per ``dataflow`` and ``interleave`` (``docs/architecture.md`` section 4; cycles:
    :func:`nmsat.simulator.tile_model.compute_cycles`). ``layer`` and ``phase`` attribute
    the work.
    """

    OPCODE: ClassVar[Opcode] = Opcode.COMPUTE
    dataflow: Dataflow
    nm: NM
    m: int
    n: int
    k: int
    interleave: bool = True
    pop_a: bool = True
    pop_b: bool = True
    layer: int = 0
    phase: Phase = Phase.FF

    def __post_init__(self) -> None:
        if not isinstance(self.dataflow, Dataflow):
            raise IsaError(f"Compute.dataflow must be a Dataflow, not {self.dataflow!r}")
        if not isinstance(self.nm, NM):
            raise IsaError(f"Compute.nm must be an NM, not {self.nm!r}")
        if not isinstance(self.phase, Phase):
            raise IsaError(f"Compute.phase must be a Phase, not {self.phase!r}")
        for name in ("m", "n", "k"):
            _pos(name, getattr(self, name), "Compute")
        for name in ("interleave", "pop_a", "pop_b"):
            if not isinstance(getattr(self, name), bool):
                raise IsaError(f"Compute.{name} must be a bool, not {getattr(self, name)!r}")
        super().__post_init__()

    @property
    def dense_macs(self) -> int:
        """Dense-equivalent multiply-accumulates: m * n * k."""
        return self.m * self.n * self.k

    @property
    def macs(self) -> int:
        """Multiplies the engine really performs: m * n * (kept weights per column of K).

        N:M keeps N of each full group of M and min(N, r) of a trailing group of r."""
        if self.nm.dense:
            return self.dense_macs
        kept = (self.k // self.nm.m) * self.nm.n + min(self.nm.n, self.k % self.nm.m)
        return self.m * self.n * kept


@dataclass(frozen=True)
class Release(Instr):
    """Free the oldest filled half of ``buffer`` (ACT or WGT) without computing."""

    OPCODE: ClassVar[Opcode] = Opcode.RELEASE
    buffer: Buffer

    def __post_init__(self) -> None:
        if not isinstance(self.buffer, Buffer) or self.buffer is Buffer.OUT:
            raise IsaError(f"Release.buffer must be ACT or WGT, not {self.buffer!r}")
        super().__post_init__()


@dataclass(frozen=True)
class Sore(Instr):
    """Generate one N:M view of a layer's weights: read the dense fp16 weights ``src``
    (``read_bytes``), write the compressed view ``dst`` (``write_bytes``).
    ``groups`` = groups of M along the view's axis (a partial group counts as whole)."""

    OPCODE: ClassVar[Opcode] = Opcode.SORE
    src: int
    dst: int
    view: SoreView
    nm: NM
    weights: int
    groups: int
    read_bytes: int
    write_bytes: int
    layer: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.view, SoreView):
            raise IsaError(f"Sore.view must be a SoreView, not {self.view!r}")
        if not isinstance(self.nm, NM) or self.nm.dense:
            raise IsaError(f"Sore.nm must be a sparse NM pattern, not {self.nm!r}")
        for name in ("weights", "groups", "read_bytes", "write_bytes"):
            _pos(name, getattr(self, name), "Sore")
        super().__post_init__()


@dataclass(frozen=True)
class WeightUpdate(Instr):
    """fp32 master-weight update of ``weights`` weights (``docs/architecture.md`` s. 6)."""

    OPCODE: ClassVar[Opcode] = Opcode.WEIGHT_UPDATE
    tensor: int
    weights: int
    read_bytes: int
    write_bytes: int
    layer: int = 0

    def __post_init__(self) -> None:
        for name in ("weights", "read_bytes", "write_bytes"):
            _pos(name, getattr(self, name), "WeightUpdate")
        super().__post_init__()


@dataclass(frozen=True)
class Vector(Instr):
    """A non-GEMM op over ``elements`` elements on the vector lanes (streamed from/to
    DRAM: ``read_bytes`` / ``write_bytes``)."""

    OPCODE: ClassVar[Opcode] = Opcode.VECTOR
    kind: OpKind
    elements: int
    read_bytes: int
    write_bytes: int
    layer: int = 0
    phase: Phase = Phase.FF

    def __post_init__(self) -> None:
        if not isinstance(self.kind, OpKind):
            raise IsaError(f"Vector.kind must be an OpKind, not {self.kind!r}")
        if not isinstance(self.phase, Phase):
            raise IsaError(f"Vector.phase must be a Phase, not {self.phase!r}")
        _pos("elements", self.elements, "Vector")
        _pos("read_bytes", self.read_bytes, "Vector", 0)
        _pos("write_bytes", self.write_bytes, "Vector", 0)
        super().__post_init__()


@dataclass(frozen=True)
class Barrier(Instr):
    """Stop dispatch until all earlier instructions of ``units`` have completed."""

    OPCODE: ClassVar[Opcode] = Opcode.BARRIER
    units: Unit

    def __post_init__(self) -> None:
        if not isinstance(self.units, Unit) or not int(self.units):
            raise IsaError(f"Barrier.units must be a non-empty Unit mask, not {self.units!r}")
        super().__post_init__()


INSTRUCTION_TYPES: dict[Opcode, type[Instr]] = {
    cls.OPCODE: cls for cls in (Loop, Load, Compute, Store, Release, Sore, WeightUpdate,
                                Vector, Barrier)}

UNIT_OF: dict[Opcode, Unit] = {
    Opcode.LOAD: Unit.LOAD, Opcode.COMPUTE: Unit.ENGINE, Opcode.RELEASE: Unit.ENGINE,
    Opcode.STORE: Unit.STORE, Opcode.SORE: Unit.SORE, Opcode.WEIGHT_UPDATE: Unit.WU,
    Opcode.VECTOR: Unit.WU}
"""Which unit executes each opcode (LOOP and BARRIER are handled by the dispatcher)."""


# --------------------------------------------------------------------------- program


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
        lines, ends = [], []
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
                    text += f" -> {ins.buffer.name}"
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


# --------------------------------------------------------------------------- codecs


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

