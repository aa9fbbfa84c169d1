"""The dataflow compiler's options and intermediate form (``docs/isa.md``).

:class:`CompileOptions` says what to compile; :func:`~nmsat.dataflow.lowering.lower` turns a
workload into a :class:`Lowered` list of tasks (:class:`GemmTask`, :class:`SoreTask`,
:class:`WuTask`, :class:`VecTask`) whose operands are :class:`View` s of DRAM tensors; the
scheduling pass (:mod:`nmsat.dataflow.tiling`) gives every GEMM task a :class:`Tiling`, and
:mod:`nmsat.dataflow.codegen` emits the instructions.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from nmsat.config import AcceleratorConfig
from nmsat.types import DATAFLOW_CHOICES, DEFAULT_NM, NM, Dataflow, Method, Mode, Phase, _Choice
from nmsat.workloads.layers import GemmDims, OpKind

from .isa import ElemType, IsaError, SoreView, Tensor, Transform

__all__ = ["CompileOptions", "GemmTask", "LoopOrder", "Lowered", "SoreTask", "Task", "Tiling",
           "VecTask", "View", "WuTask", "engine_elem", "out_of_reach"]

# --------------------------------------------------------------------------- options



@dataclass(frozen=True)
class CompileOptions:
    """What to compile and which SAT optimisations to apply.

    ``batch`` None keeps the workload's batch. ``fixed_dataflow`` is the one dataflow used
    when ``offline_schedule`` is off (SCALE-Sim-style single dataflow).
    """

    method: Method = Method.BDWP
    nm: NM = DEFAULT_NM
    mode: Mode = Mode.TRAIN
    batch: int | None = None
    interleave: bool = True
    pregen: bool = True
    offline_schedule: bool = True
    fixed_dataflow: Dataflow = Dataflow.OS
    dataflow: str = "auto"
    """``os`` or ``ws``: every GEMM block runs that dataflow (the offline schedule still
    picks loop order and block sizes; without it, the default tiling in that dataflow);
    ``auto``: the offline schedule picks the cheaper of ``array.dataflows`` per task
    (without it, ``fixed_dataflow``)."""
    layer_nm: tuple[tuple[str, NM], ...] = ()
    """Per-layer patterns that replace ``nm`` for the named layers (``1:1`` keeps a layer
    dense): what a training trace or a SCALE-Sim v3 ``Sparsity`` column fixes."""
    engine_words: bool = True
    """Also limit blocks to what the engine's word-organised banks hold
    (:meth:`AcceleratorConfig.bank_words`, the RTL's geometry). The byte budget alone assumes N:M
    weights packed at their exact bits; the engine keeps one P-slot vector per (column,
    chunk), so patterns that leave lanes idle (g N < P) take more words than bytes
    suggest, and a block sized by bytes alone overflowed the RTL's weight bank. On the
    presets this changes zoo results by under 0.05% (ResNet-50 and BERT-base, batch 32:
    speedups equal to three decimals). ACT is limited to the engine's words only with
    ``buffers.act_layout = "windows"`` (the RTL's organisation); with ``fmap`` by bytes.
    False: bytes only."""
    hoist_weights: bool = True
    """Issue each GEMM's first weight LOADs (one per WGT ring half) right after the
    previous GEMM nest, before the barriers and vector work that order the GEMM behind the
    previous layer, when its weights are read-only in the program (inference): the next
    layer's weights stream while the previous layer drains (:mod:`nmsat.dataflow.hoist`).
    Training programs are unchanged (their weights are written by the SORE and the weight
    update). False: every LOAD stays in its loop nest."""

    def __post_init__(self) -> None:
        for name, typ in (("method", Method), ("mode", Mode), ("fixed_dataflow", Dataflow)):
            v = getattr(self, name)
            if not isinstance(v, typ):
                object.__setattr__(self, name, typ.parse(v))
        if not isinstance(self.nm, NM):
            object.__setattr__(self, "nm", NM.parse(self.nm))
        if self.dataflow not in DATAFLOW_CHOICES:
            raise ValueError(f"CompileOptions.dataflow must be one of "
                             f"{', '.join(DATAFLOW_CHOICES)}, not {self.dataflow!r}")
        for name in ("interleave", "pregen", "offline_schedule", "engine_words",
                     "hoist_weights"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"CompileOptions.{name} must be a bool, "
                                 f"not {getattr(self, name)!r}")
        object.__setattr__(self, "layer_nm", tuple(
            (str(name), NM.parse(pat)) for name, pat in dict(self.layer_nm).items()))
        if self.batch is not None and (not isinstance(self.batch, int) or self.batch < 1):
            raise ValueError(f"CompileOptions.batch must be a positive integer, "
                             f"not {self.batch!r}")

    @property
    def sparse_nm(self) -> NM:
        """The pattern N:M weights use: dense when ``method`` is dense. Inference with a
        sparse method runs FF on ``nm``-compressed weights."""
        if self.method is Method.DENSE:
            return NM(1, 1)
        return self.nm

    def layer_pattern(self, name: str) -> NM:
        """The pattern of layer ``name``: its ``layer_nm`` entry, else :attr:`sparse_nm`."""
        if self.method is Method.DENSE:
            return NM(1, 1)
        return dict(self.layer_nm).get(name, self.nm)


# --------------------------------------------------------------------------- operand views


@dataclass(frozen=True)
class View:
    """How a GEMM operand (or result) maps to a DRAM tensor.

    ``group_rows`` / ``group_cols``: offset of group g's sub-matrix is
    (g * group_rows, g * group_cols) in the view."""

    tensor: str
    transform: Transform = Transform.NONE
    group_rows: int = 0
    group_cols: int = 0


@dataclass(frozen=True)
class GemmTask:
    layer: int
    phase: Phase
    dims: GemmDims
    a: View
    b: View
    c: View
    nm: NM  # pattern of B along K (dense 1:1)
    needs_sore: bool = False  # B is produced by the SORE (a barrier on SORE precedes it)
    b_static: bool = False
    """B is read-only in the program (inference weights): its first LOADs may be issued
    before the barrier that orders this GEMM behind earlier work (:mod:`.hoist`)."""


@dataclass(frozen=True)
class SoreTask:
    layer: int
    view: SoreView
    src: str
    dst: str
    nm: NM
    weights: int
    groups: int


@dataclass(frozen=True)
class WuTask:
    layer: int
    tensor: str
    weights: int


@dataclass(frozen=True)
class VecTask:
    layer: int
    phase: Phase
    kind: OpKind
    elements: int
    reads: int  # input operands streamed (2 for a residual add)


Task = GemmTask | SoreTask | WuTask | VecTask


class LoopOrder(_Choice):
    """Block loop order of a GEMM task."""

    NM = "nm"  # column blocks outer, row blocks inner: B stays resident when kb = K
    MN = "mn"  # row blocks outer, column blocks inner: A stays resident when kb = K


@dataclass(frozen=True)
class Tiling:
    """Block sizes, loop order and dataflow of one GEMM task."""

    dataflow: Dataflow
    order: LoopOrder
    mb: int
    nb: int
    kb: int
    interleave: bool = True


@dataclass
class Lowered:
    """The compiler's intermediate form: tensors, layer names, tasks and tilings."""

    tensors: dict[str, Tensor]
    layers: list[str]
    tasks: list[Task]
    tilings: dict[int, Tiling] = field(default_factory=dict)  # task index -> tiling



def engine_elem(cfg: AcceleratorConfig) -> ElemType:
    """The element type the engine computes in (``numerics.dtype``)."""
    return ElemType.of(cfg.numerics.dtype)


@contextlib.contextmanager
def out_of_reach(layers: Sequence[str], li: int) -> Iterator[None]:
    """Name the layer when one of its values does not fit an ISA field (the message
    names the field and its limit): the workload is out of the tile ISA's reach."""
    try:
        yield
    except IsaError as e:
        name = layers[li] if 0 <= li < len(layers) else li
        raise IsaError(f"layer {name!r} is out of the tile ISA's reach: {e}") from None

