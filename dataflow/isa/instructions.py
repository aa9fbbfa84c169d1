"""The tile ISA's tensor descriptors and instructions: frozen dataclasses validated on
construction against :data:`~nmsat.dataflow.isa.encoding.ENCODING`."""

from __future__ import annotations

import enum
from dataclasses import dataclass, fields
from typing import Any, ClassVar

from nmsat.arith import ceil_div
from nmsat.types import DENSE, NM, Dataflow, Phase
from nmsat.workloads.layers import OpKind

from .encoding import (
    ENCODING,
    MAX_LOOP_DEPTH,
    TENSOR_ENCODING,
    Buffer,
    ElemType,
    IsaError,
    Opcode,
    SoreView,
    Transform,
    Unit,
    _check_fields,
    _pos,
)

__all__ = ["INSTRUCTION_TYPES", "UNIT_OF", "Barrier", "Compute", "ConvView", "Instr", "Load",
           "Loop", "Release", "Sore", "Store", "Tensor", "Vector", "WeightUpdate", "region_bytes"]

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
        return [name.lower() for name, u in Unit.__members__.items() if u & v]
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
    (0 = outermost; a step at a depth with no enclosing loop must be 0). ``bytes`` is what
    crosses the DRAM interface
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
    """DRAM -> one half of ``buffer``, laid out in the engine's words for pattern ``nm``.

    ``nm`` is the N:M pattern of the COMPUTEs that read the half: it sets the chunk width
    (K per cycle) of the ACT windows and of the WGT slot vectors, so a hardware DMA knows
    the word layout from the LOAD alone (``docs/isa.md``; the port's beats of that layout:
    :func:`nmsat.dataflow.machine.port_beats`)."""

    OPCODE: ClassVar[Opcode] = Opcode.LOAD
    buffer: Buffer = Buffer.ACT
    nm: NM = DENSE

    def __post_init__(self) -> None:
        if not isinstance(self.buffer, Buffer) or self.buffer is Buffer.OUT:
            raise IsaError(f"Load.buffer must be ACT or WGT, not {self.buffer!r}")
        if not isinstance(self.nm, NM):
            raise IsaError(f"Load.nm must be an NM, not {self.nm!r}")
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
    :func:`nmsat.dataflow.timing.compute_cycles`). ``layer`` and ``phase`` attribute
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
