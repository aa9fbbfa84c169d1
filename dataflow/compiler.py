"""Dataflow compiler: a workload -> a tile program (``docs/isa.md``).

Stages, each a plain function over an intermediate list of *tasks*:

1. :func:`lower` - every layer and phase (FF, BP, WG, WU, SORE; inference: FF only) to
   tasks: GEMM tasks (dims from :meth:`Layer.gemms`, operand views per
   ``docs/architecture.md`` section 3.2, N:M on B along K where :meth:`Layer.nm_applies`),
   SORE tasks (one per mask view), weight-update and vector tasks, in program order.
2. :func:`offline_schedule` (pass) - per GEMM task pick the dataflow, loop order and block
   sizes minimising estimated cycles under the buffer limits; when disabled, one fixed
   dataflow and a fixed default tiling.
3. :func:`interleave_mapping` (pass) - sets every compute block's ``interleave`` flag.
4. :func:`pregeneration` (pass) - moves each layer's SORE work one layer ahead so it
   overlaps engine work; without it the SORE runs right before the layer's FF and the
   engine waits at a barrier.
5. :func:`codegen` - loop nests of LOAD / COMPUTE / STORE with barriers.

Entry point: :func:`compile_workload`.

Modelling choices (also in ``docs/isa.md``): every layer's BP runs, the first layer's too
(as :meth:`Workload.macs` counts it); ReLU-type activations are fused into the output path
(no instruction); each layer has its own DRAM tensors (no aliasing between a layer's output
and the next layer's input); grouped convolutions keep their feature maps group-major.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from nmsat.dataflow.timing import Geometry, block_cycles
from nmsat.workloads.layers import (
    Conv2d,
    Elementwise,
    GemmDims,
    Layer,
    Linear,
    Matmul,
    OpKind,
    Workload,
)

from nmsat.arith import ceil_div
from nmsat.config import AcceleratorConfig
from nmsat.errors import NmsatError
from nmsat.types import DENSE, NM, Dataflow, Method, Mode, Phase, _Choice

from . import isa
from .isa import (
    Barrier,
    Buffer,
    Compute,
    ConvView,
    ElemType,
    Instr,
    IsaError,
    Load,
    Loop,
    Program,
    Release,
    Sore,
    SoreView,
    Store,
    Tensor,
    Transform,
    Unit,
    Vector,
    WeightUpdate,
)

# --------------------------------------------------------------------------- options

_DEFAULT_NM = NM(2, 8)  # the SAT paper's headline pattern


@dataclass(frozen=True)
class CompileOptions:
    """What to compile and which SAT optimisations to apply.

    ``batch`` None keeps the workload's batch. ``fixed_dataflow`` is the one dataflow used
    when ``offline_schedule`` is off (SCALE-Sim-style single dataflow).
    """

    method: Method = Method.BDWP
    nm: NM = _DEFAULT_NM
    mode: Mode = Mode.TRAIN
    batch: int | None = None
    interleave: bool = True
    pregen: bool = True
    offline_schedule: bool = True
    fixed_dataflow: Dataflow = Dataflow.OS
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

    def __post_init__(self) -> None:
        for name, typ in (("method", Method), ("mode", Mode), ("fixed_dataflow", Dataflow)):
            v = getattr(self, name)
            if not isinstance(v, typ):
                object.__setattr__(self, name, typ.parse(v))
        if not isinstance(self.nm, NM):
            object.__setattr__(self, "nm", NM.parse(self.nm))
        for name in ("interleave", "pregen", "offline_schedule", "engine_words"):
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


# --------------------------------------------------------------------------- lowering


def _elem(cfg: AcceleratorConfig) -> ElemType:
    return ElemType.of(cfg.numerics.dtype)


class _Tensors:
    def __init__(self, cfg: AcceleratorConfig):
        self.cfg = cfg
        self.table: dict[str, Tensor] = {}
        self.addr = 0

    def add(self, name: str, rows: int, cols: int, elem: ElemType, nm: NM = DENSE,
            conv: ConvView | None = None) -> str:
        if name not in self.table:
            t = Tensor(name, rows, cols, elem, nm, self.addr, conv)
            self.table[name] = t
            burst = self.cfg.dram.burst_bytes
            self.addr += ceil_div(t.bytes, burst) * burst
        return name


def _sore_groups(layer: Layer, view: SoreView, nm: NM) -> int:
    if isinstance(layer, Conv2d):
        g = layer.groups
        cpg, cog = layer.in_ch // g, layer.out_ch // g
        kpos = layer.kh * layer.kw
        if view is SoreView.FF:
            return layer.out_ch * kpos * ceil_div(cpg, nm.m)
        return cpg * kpos * g * ceil_div(cog, nm.m)
    assert isinstance(layer, Linear)
    if view is SoreView.FF:
        return layer.out_features * ceil_div(layer.in_features, nm.m)
    return layer.in_features * ceil_div(layer.out_features, nm.m)


def lower(workload: Workload, cfg: AcceleratorConfig, opts: CompileOptions) -> Lowered:
    """Layers and phases -> tasks in execution order (FF forward; then per layer in
    reverse BP, WG and its weight update). Inference: FF only, weights pre-compressed."""
    batch = opts.batch or workload.batch
    for pattern in {opts.sparse_nm, *(opts.layer_pattern(n) for n, _ in opts.layer_nm)}:
        if not pattern.dense:
            cfg.array.k_per_cycle(pattern)  # raises if the array does not support it
    method = opts.method if opts.mode is Mode.TRAIN else Method.BDWP
    train = opts.mode is Mode.TRAIN
    elem = _elem(cfg)
    tt = _Tensors(cfg)
    layers = [layer.name for layer in workload.layers]
    ff: list[Task] = []
    back: list[Task] = []
    for li, layer in enumerate(workload.layers):
        with _out_of_reach(layers, li):
            if isinstance(layer, Elementwise):
                if layer.kind is OpKind.ACT:
                    continue  # fused into the output buffer's write path (architecture s. 6)
                if not train and layer.kind is OpKind.NORM and len(layer.shape) == 3:
                    continue  # inference batch norm is its affine part: fused likewise (s. 6)
                reads = 2 if layer.kind is OpKind.ADD else 1
                ff.append(VecTask(li, Phase.FF, layer.kind, layer.elements * batch, reads))
                if train:  # backward runs in reverse layer order
                    back[:0] = [VecTask(li, Phase.BP, layer.kind, layer.elements * batch, reads)]
                continue
            if not layer.gemms(Phase.FF, batch):
                continue
            nm = opts.layer_pattern(layer.name)
            sparse_ff = layer.nm_applies(Phase.FF, method, nm) if not nm.dense else False
            sparse_bp = (train and not nm.dense and layer.nm_applies(Phase.BP, method, nm))
            lt: list[Task] = []  # this layer's backward tasks, in order
            if isinstance(layer, Matmul):
                ff.extend(_matmul_tasks(layer, li, batch, tt, elem, Phase.FF))
                if train:
                    lt.extend(_matmul_tasks(layer, li, batch, tt, elem, Phase.BP))
            else:
                ffs, bps, wgs, sores, wu = _weighted_tasks(layer, li, batch, tt, elem, nm,
                                                           sparse_ff, sparse_bp, train)
                if train:
                    ff.extend(sores)
                ff.extend(ffs)
                lt.extend(bps + wgs)
                if train:
                    lt.append(wu)
            back[:0] = lt  # reverse layer order, each layer's own order kept
    # A backward vector op (e.g. batch-norm backward of layer l) needs only the data
    # gradient of the layer after it, not its weight gradient: issue it before that
    # layer's WG GEMM (and weight update) so the vector lanes overlap the WG on the engine.
    for i in range(len(back)):
        j = i
        while (j > 0 and isinstance(back[j], VecTask)
               and (isinstance(back[j - 1], WuTask)
                    or isinstance(back[j - 1], GemmTask) and back[j - 1].phase is Phase.WG)):
            back[j - 1], back[j] = back[j], back[j - 1]
            j -= 1
    tasks = ff + (back if train else [])
    return Lowered(tt.table, layers, tasks)


def _weighted_tasks(layer: Layer, li: int, batch: int, tt: _Tensors, elem: ElemType,
                    nm: NM, sparse_ff: bool, sparse_bp: bool, train: bool):
    L = layer.name
    if isinstance(layer, Conv2d):
        g = layer.groups
        cpg, cog = layer.in_ch // g, layer.out_ch // g
        kk = layer.kh * layer.kw * cpg
        rows = batch * layer.out_h * layer.out_w
        # Grouped convs keep their feature maps group-major ([groups * batch*h*w, c/g]), so
        # group g's im2col rows start at g * rows.
        xv = ConvView(batch * g, layer.in_h, layer.in_w, cpg, layer.kh, layer.kw,
                      layer.stride, layer.padding)
        x = tt.add(f"{L}.x", g * batch * layer.in_h * layer.in_w, cpg, elem, conv=xv)
        y = tt.add(f"{L}.y", rows, layer.out_ch, elem)
        w = tt.add(f"{L}.w", kk, layer.out_ch, elem)  # W^T view [kh kw c, cout]
        n_in, n_out = kk, cog
        a_ff = View(x, Transform.IM2COL, group_rows=rows)
        c_bp_t = Transform.COL2IM
        grp_in_rows = rows
        dx = tt.add(f"{L}.dx", g * batch * layer.in_h * layer.in_w, cpg, elem, conv=xv) \
            if train else None
        wshape_bp = (layer.out_ch, kk)
    else:
        assert isinstance(layer, Linear)
        g = 1
        rows = batch * layer.tokens
        n_in, n_out = layer.in_features, layer.out_features
        x = tt.add(f"{L}.x", rows, n_in, elem)
        y = tt.add(f"{L}.y", rows, n_out, elem)
        w = tt.add(f"{L}.w", n_in, n_out, elem)  # W^T view [in, out]
        a_ff = View(x)
        c_bp_t = Transform.NONE
        grp_in_rows = 0
        dx = tt.add(f"{L}.dx", rows, n_in, elem) if train else None
        wshape_bp = (n_out, n_in)
    dims = {p: layer.gemms(p, batch) for p in (Phase.FF, Phase.BP, Phase.WG)}
    # FF: A = X (im2col), B = W^T (FF mask along K = input dim), C = Y.
    if sparse_ff:
        b_ff = View(tt.add(f"{L}.w.ff", n_in, g * n_out, elem, nm), group_cols=n_out)
    else:
        b_ff = View(w, group_cols=n_out)
    ffs = [GemmTask(li, Phase.FF, dims[Phase.FF][0], a_ff, b_ff,
                    View(y, group_cols=n_out), nm if sparse_ff else NM(1, 1),
                    needs_sore=sparse_ff and train)]
    if not train:
        return ffs, [], [], [], None
    dy = tt.add(f"{L}.dy", rows, g * n_out, elem)
    # BP: A = dY, B = W (BP mask along K = output dim), C = dX (col2im for convs).
    if sparse_bp:
        b_bp = View(tt.add(f"{L}.w.bp", *wshape_bp, elem, nm), group_rows=n_out)
    else:
        b_bp = View(w, Transform.TRANSPOSE, group_rows=n_out)
    bps = [GemmTask(li, Phase.BP, dims[Phase.BP][0], View(dy, group_cols=n_out), b_bp,
                    View(dx, c_bp_t, group_rows=grp_in_rows), nm if sparse_bp else NM(1, 1),
                    needs_sore=sparse_bp)]
    # WG: A = dY^T, B = X (im2col), C = dW (fp32 for the master-weight update).
    dw = tt.add(f"{L}.dw", g * n_out, n_in, ElemType.FP32)
    b_wg = View(x, Transform.IM2COL, group_rows=rows) if isinstance(layer, Conv2d) else View(x)
    wgs = [GemmTask(li, Phase.WG, dims[Phase.WG][0],
                    View(dy, Transform.TRANSPOSE, group_rows=n_out), b_wg,
                    View(dw, group_rows=n_out), NM(1, 1))]
    sores = []
    for view, on, dst in ((SoreView.FF, sparse_ff, f"{L}.w.ff"),
                          (SoreView.BP, sparse_bp, f"{L}.w.bp")):
        if on:
            sores.append(SoreTask(li, view, w, dst, nm, layer.weights,
                                  _sore_groups(layer, view, nm)))
    wu = WuTask(li, w, layer.weights)
    return ffs, bps, wgs, sores, wu


def _matmul_tasks(layer: Matmul, li: int, batch: int, tt: _Tensors, elem: ElemType,
                  phase: Phase) -> list[Task]:
    L, m, n, k = layer.name, layer.m, layer.n, layer.k
    cnt = layer.count * batch
    a = tt.add(f"{L}.a", cnt * m, k, elem)
    b = tt.add(f"{L}.b", cnt * k, n, elem)
    dims = layer.gemms(phase, batch)
    if phase is Phase.FF:
        c = tt.add(f"{L}.c", cnt * m, n, elem)
        return [GemmTask(li, phase, dims[0], View(a, group_rows=m), View(b, group_rows=k),
                         View(c, group_rows=m), NM(1, 1))]
    dc = tt.add(f"{L}.dc", cnt * m, n, elem)
    da = tt.add(f"{L}.da", cnt * m, k, elem)
    db = tt.add(f"{L}.db", cnt * k, n, elem)
    return [  # dA = dC B^T ; dB = A^T dC
        GemmTask(li, phase, dims[0], View(dc, group_rows=m),
                 View(b, Transform.TRANSPOSE, group_cols=k), View(da, group_rows=m),
                 NM(1, 1)),
        GemmTask(li, phase, dims[1], View(a, Transform.TRANSPOSE, group_cols=m),
                 View(dc, group_rows=m), View(db, group_rows=k), NM(1, 1))]


# --------------------------------------------------------------------------- sizes


def _out_bytes(t: Tensor, v: View, mb: int, nb: int, acc_bytes: int) -> int:
    """OUT-half bytes of an mb x nb result block: fp32/int32 partial sums; a COL2IM block
    accumulates its input-region footprint."""
    if v.transform is Transform.COL2IM:
        cv = t.conv
        spanned = min(ceil_div(mb, cv.out_w) + 1, cv.batch * cv.out_h)
        in_rows = min((spanned - 1) * cv.stride + cv.kh, cv.batch * cv.h)
        return min(mb * nb, in_rows * cv.w * cv.c) * acc_bytes
    return mb * nb * acc_bytes


class _TaskCtx:
    """Everything tiling decisions need about one GEMM task."""

    def __init__(self, task: GemmTask, low: Lowered, cfg: AcceleratorConfig,
                 engine_words: bool = False):
        self.task, self.cfg = task, cfg
        self.words = cfg.bank_words() if engine_words else None
        self.ta = low.tensors[task.a.tensor]
        self.tb = low.tensors[task.b.tensor]
        self.tc = low.tensors[task.c.tensor]
        d = task.dims
        self.m, self.n, self.k, self.count = d.m, d.n, d.k, d.count
        self.ku = cfg.array.k_per_cycle(task.nm)  # K per chunk: K-block granularity
        self.acc_bytes = ElemType.of(cfg.numerics.operand.accumulator).bytes  # fp32 / int32
        self.geom = Geometry.of(cfg)
        self._memo: dict[tuple, Any] = {}

    def a_bytes(self, mb: int, kb: int) -> int:
        key = ("a", mb, kb)
        if key not in self._memo:
            self._memo[key] = self._a_bytes(mb, kb)
        return self._memo[key]

    def b_bytes(self, kb: int, nb: int) -> int:
        key = ("b", kb, nb)
        if key not in self._memo:
            self._memo[key] = self._b_bytes(kb, nb)
        return self._memo[key]

    def _a_bytes(self, mb: int, kb: int) -> int:
        v, t = self.task.a, self.ta
        if v.transform is Transform.IM2COL:
            return _im2col_bytes(t, mb, kb, kb == self.k)
        return isa.region_bytes(mb, kb, t.elem)

    def _b_bytes(self, kb: int, nb: int) -> int:
        v, t = self.task.b, self.tb
        if v.transform is Transform.IM2COL:  # WG of a conv: rows = pixels (K), cols = kk
            return _im2col_bytes(t, kb, nb, nb == self.n)
        return isa.region_bytes(kb, nb, t.elem, self.task.nm)

    def out_bytes(self, mb: int, nb: int) -> int:
        return _out_bytes(self.tc, self.task.c, mb, nb, self.acc_bytes)

    def store_bytes(self, mb: int, nb: int) -> int:
        v, t = self.task.c, self.tc
        if v.transform is Transform.COL2IM:
            return _im2col_bytes(t, mb, nb, nb == self.n)
        return isa.region_bytes(mb, nb, t.elem)

    def fits(self, mb: int, nb: int, kb: int) -> str | None:
        """None if the block fits, else the name of the first buffer it overflows."""
        bufs = self.cfg.buffers
        if self.a_bytes(mb, kb) > bufs.activation.usable_bytes:
            return "buffers.activation"
        if self.b_bytes(kb, nb) > bufs.weight.usable_bytes:
            return "buffers.weight"
        if self.out_bytes(mb, nb) > bufs.output.usable_bytes:
            return "buffers.output"
        if self.words is not None:
            a = self.cfg.array
            kc, nt = ceil_div(kb, self.ku), ceil_div(nb, a.cols)
            need = {"buffers.weight": nt * kc, "buffers.output": ceil_div(mb, a.rows) * nt}
            if self.cfg.buffers.act_layout == "windows":
                # one A-element window per (im2col row, chunk), R diagonal banks
                # (rtl/layouts.act_location); with "fmap" ACT is limited by bytes only
                need["buffers.activation"] = mb * ceil_div(kc, a.rows)
            for name, words in need.items():
                if words > self.words[name]:
                    return name
        return None


def _im2col_bytes(t: Tensor, pixels: int, kcols: int, full_k: bool) -> int:
    """DRAM bytes of ``pixels`` consecutive im2col rows x ``kcols`` columns.

    With the whole K range the feeder builds im2col on chip from the input rows the pixels
    cover (``ceil(pixels / Wo) + 1`` output rows for any alignment, ``(rows - 1) * stride
    + kh`` input rows), capped by the im2col size; a partial K range is read as im2col."""
    cv = t.conv
    assert cv is not None
    flat = pixels * kcols * t.elem.bytes
    if not full_k:
        return flat
    spanned = min(ceil_div(pixels, cv.out_w) + 1, cv.batch * cv.out_h)
    in_rows = min((spanned - 1) * cv.stride + cv.kh, cv.batch * cv.h)
    return min(flat, in_rows * cv.w * cv.c * t.elem.bytes)


# --------------------------------------------------------------------------- pass: schedule


def _splits(total: int, b: int) -> list[tuple[int, int]]:
    """(count, size) classes of splitting ``total`` into blocks of ``b``."""
    out = []
    if total // b:
        out.append((total // b, b))
    if total % b:
        out.append((1, total % b))
    return out


def estimate_cost(ctx: _TaskCtx, t: Tiling) -> tuple[int, int]:
    """(estimated cycles, DRAM bytes) of a task under a tiling. Cycles: max(engine cycles
    from the tile model, DRAM bytes / total DRAM bandwidth), as the double-buffered
    pipeline hides the shorter of the two; bytes break ties (energy, contention)."""
    m, n, k = ctx.m, ctx.n, ctx.k
    ms, ns, ks = _splits(m, t.mb), _splits(n, t.nb), _splits(k, t.kb)
    ekey = ("engine", t.dataflow, t.mb, t.nb, t.kb, t.interleave)
    engine = ctx._memo.get(ekey)
    if engine is None:
        g, nm = ctx.geom, ctx.task.nm
        engine = sum(cm * cn * ck * _block_cycles(t.dataflow, sm, sn, sk, nm, t.interleave, g)
                     for cm, sm in ms for cn, sn in ns for ck, sk in ks)
        ctx._memo[ekey] = engine
    bkey = ("bytes", t.mb, t.nb, t.kb)
    sums = ctx._memo.get(bkey)
    if sums is None:
        sums = (sum(cm * ck * ctx.a_bytes(sm, sk) for cm, sm in ms for ck, sk in ks),
                sum(cn * ck * ctx.b_bytes(sk, sn) for cn, sn in ns for ck, sk in ks),
                sum(cm * cn * ctx.store_bytes(sm, sn) for cm, sm in ms for cn, sn in ns),
                sum(c for c, _ in ms), sum(c for c, _ in ns))
        ctx._memo[bkey] = sums
    a_all, b_all, c_all, nmb, nnb = sums
    resident = t.kb == k
    if t.order is LoopOrder.NM:  # A reloaded per column block; B once if resident
        dram = a_all * nnb + b_all * (1 if resident else nmb)
    else:
        dram = b_all * nmb + a_all * (1 if resident else nnb)
    dram += c_all
    mem = ceil_div(dram, ctx.cfg.dram.total_bytes_per_cycle)
    return ctx.count * max(engine, mem), ctx.count * dram


def estimate_cycles(ctx: _TaskCtx, t: Tiling) -> int:
    """Estimated cycles of a task under a tiling (see :func:`estimate_cost`)."""
    return estimate_cost(ctx, t)[0]


@functools.lru_cache(maxsize=1 << 16)
def _block_cycles(df: Dataflow, m: int, n: int, k: int, nm: NM, inter: bool,
                  g: Geometry) -> int:
    return block_cycles(df, m, n, k, nm, inter, g)


def _min_block(ctx: _TaskCtx) -> tuple[int, int, int]:
    """The smallest block the engine runs: one array tile (R rows x C columns, one chunk
    of K), or the whole dimension when smaller."""
    a = ctx.cfg.array
    return min(ctx.m, a.rows), min(ctx.n, a.cols), min(ctx.k, ctx.ku)


def _check_min(ctx: _TaskCtx, layer: str) -> None:
    mb, nb, kb = _min_block(ctx)
    bad = ctx.fits(mb, nb, kb)
    if bad:
        need = {"buffers.activation": ctx.a_bytes(mb, kb), "buffers.weight":
                ctx.b_bytes(kb, nb), "buffers.output": ctx.out_bytes(mb, nb)}[bad]
        half = {"buffers.activation": ctx.cfg.buffers.activation,
                "buffers.weight": ctx.cfg.buffers.weight,
                "buffers.output": ctx.cfg.buffers.output}[bad].usable_bytes
        raise NmsatError(f"{bad} is too small for layer {layer!r} ({ctx.task.phase}): one "
                         f"minimum tile {mb}x{nb}x{kb} needs {need} bytes, a buffer half "
                         f"holds {half}")


def _largest(lo: int, hi: int, unit: int, ok) -> int | None:
    """Largest multiple of ``unit`` in [lo, hi] (or ``hi`` itself) with ok(x); binary
    search (``ok`` is monotone: smaller blocks need fewer bytes)."""
    if ok(hi):
        return hi
    cands_hi = hi // unit
    lo_u = ceil_div(lo, unit)
    if cands_hi < lo_u or not ok(lo_u * unit):
        return lo if ok(lo) and lo <= hi else None
    a, b = lo_u, cands_hi
    while a < b:
        mid = (a + b + 1) // 2
        if ok(mid * unit):
            a = mid
        else:
            b = mid - 1
    return a * unit


def default_tiling(ctx: _TaskCtx, dataflow: Dataflow) -> Tiling:
    """The fixed tiling used without offline scheduling: greedy largest blocks, in the
    order K, N, M: the whole K when it fits (else the most chunks), then the most columns
    (multiples of C), then the most rows (multiples of R x La), B-stationary loop order."""
    a = ctx.cfg.array
    mb0, nb0, kb0 = _min_block(ctx)
    kb = _largest(kb0, ctx.k, ctx.ku, lambda x: ctx.fits(mb0, nb0, x) is None)
    assert kb is not None
    nb = _largest(nb0, ctx.n, a.cols, lambda x: ctx.fits(mb0, x, kb) is None)
    assert nb is not None
    mb = _largest(mb0, ctx.m, a.rows * a.acc_latency, lambda x: ctx.fits(x, nb, kb) is None)
    assert mb is not None
    return Tiling(dataflow, LoopOrder.NM, mb, nb, kb)


def _candidates(ctx: _TaskCtx, dataflows: tuple[Dataflow, ...], interleave: bool):
    a = ctx.cfg.array
    mb0, nb0, kb0 = _min_block(ctx)
    nbs, x = {ctx.n}, nb0
    while x < ctx.n:
        nbs.add(x)
        x *= 2
    kbs, x = {ctx.k}, max(kb0, ctx.ku * a.rows)
    while x < ctx.k:
        kbs.add(x)
        x *= 4
    kbs.add(kb0)
    for nb in sorted(nbs):
        for kb in sorted(kbs):
            if ctx.fits(mb0, nb, kb) is not None:
                continue
            mb = _largest(mb0, ctx.m, a.rows * a.acc_latency,
                          lambda v, nb=nb, kb=kb: ctx.fits(v, nb, kb) is None)
            if mb is None:
                continue
            for df in dataflows:
                for order in LoopOrder:
                    yield Tiling(df, order, mb, nb, kb, interleave)


def offline_schedule(low: Lowered, cfg: AcceleratorConfig, opts: CompileOptions) -> None:
    """Pass: choose each GEMM task's tiling (in place). On: search dataflow x loop order x
    block sizes for the least :func:`estimate_cycles`. Off: ``opts.fixed_dataflow`` and
    :func:`default_tiling`."""
    dataflows = tuple(Dataflow.parse(d) for d in cfg.array.dataflows)
    fixed = opts.fixed_dataflow if opts.fixed_dataflow in dataflows else dataflows[0]
    cache: dict[tuple, Tiling] = {}
    for i, task in enumerate(low.tasks):
        if not isinstance(task, GemmTask):
            continue
        ctx = _TaskCtx(task, low, cfg, opts.engine_words)
        _check_min(ctx, low.layers[task.layer])
        key = (task.dims, task.nm, task.a.transform, task.b.transform, task.c.transform,
               ctx.ta.conv, ctx.tb.conv, ctx.tc.conv, ctx.tb.elem, ctx.tc.elem,
               opts.offline_schedule, opts.interleave, opts.engine_words)
        if key not in cache:
            if opts.offline_schedule:
                best = None
                # The fixed default tilings are candidates too, so the search is never
                # worse than the schedule it replaces.
                cands = list(_candidates(ctx, dataflows, opts.interleave))
                cands += [dataclasses.replace(default_tiling(ctx, df), interleave=opts.interleave)
                          for df in dataflows]
                for t in cands:
                    cost = estimate_cost(ctx, t)
                    if best is None or cost < best[0]:
                        best = (cost, t)
                assert best is not None
                cache[key] = best[1]
            else:
                cache[key] = default_tiling(ctx, fixed)
        low.tilings[i] = cache[key]


# --------------------------------------------------------------------------- pass: interleave


def interleave_mapping(low: Lowered, on: bool) -> None:
    """Pass: interleave mapping on every compute block (in place)."""
    for i, t in low.tilings.items():
        low.tilings[i] = dataclasses.replace(t, interleave=on)


# --------------------------------------------------------------------------- pass: pregen


SORE_BARRIER = "sore_barrier"
"""Marker in the ordered task list: the masks of the next GEMM must be in DRAM."""


def pregeneration(low: Lowered, on: bool) -> list[int | str]:
    """Pass: order SORE work. Returns task indices in issue order, with
    :data:`SORE_BARRIER` markers.

    Off: each layer's SORE tasks run right before its FF GEMM, followed by a barrier, so
    the engine waits. On: each layer's SORE tasks are issued one weighted layer earlier
    (the first layer's at the start), so they run while the engine computes the previous
    layer; the barrier before a layer's FF then waits only for its own masks."""
    tasks = low.tasks
    out: list[int | str] = []
    if not on:
        for i, t in enumerate(tasks):
            if isinstance(t, GemmTask) and t.needs_sore:
                out.append(SORE_BARRIER)
            out.append(i)
        return out
    sores_of: dict[int, list[int]] = {}
    for i, t in enumerate(tasks):
        if isinstance(t, SoreTask):
            sores_of.setdefault(t.layer, []).append(i)
    ff_layers = [t.layer for t in tasks if isinstance(t, GemmTask) and t.phase is Phase.FF
                 and t.layer in sores_of]
    # the FF GEMM of layer prev gets layer nxt's SORE work issued just before it
    hoist_before = dict(itertools.pairwise(ff_layers))
    if ff_layers:
        out.extend(sores_of[ff_layers[0]])
    for i, t in enumerate(tasks):
        if isinstance(t, SoreTask):
            continue
        if isinstance(t, GemmTask) and t.needs_sore:
            out.append(SORE_BARRIER)
        if isinstance(t, GemmTask) and t.phase is Phase.FF and t.layer in hoist_before:
            out.extend(sores_of[hoist_before[t.layer]])
        out.append(i)
    placed = sum(1 for x in out if x != SORE_BARRIER)
    assert placed == len(tasks), "pre-generation lost or duplicated a task"
    return out


# --------------------------------------------------------------------------- codegen


class _Emitter:
    def __init__(self, low: Lowered, cfg: AcceleratorConfig):
        self.low, self.cfg = low, cfg
        self.names = list(low.tensors)
        self.index = {n: i for i, n in enumerate(self.names)}
        self.out: list[Instr] = []

    def tid(self, name: str) -> int:
        return self.index[name]

    def emit(self, ins: Instr) -> None:
        self.out.append(ins)


def _nest(em: _Emitter, ctx: _TaskCtx, t: Tiling) -> None:
    """Emit the loop nest of one GEMM task:
    group loop > outer block loop > inner block loop > K-block loop."""
    task = ctx.task
    outer, inner = ("n", "m") if t.order is LoopOrder.NM else ("m", "n")
    keep_a = t.kb == ctx.k and t.order is LoopOrder.MN
    keep_b = t.kb == ctx.k and t.order is LoopOrder.NM
    resident = t.kb == ctx.k  # the outer loop's operand stays in its buffer half
    totals = {"m": ctx.m, "n": ctx.n, "k": ctx.k}
    blocks = {"m": t.mb, "n": t.nb, "k": t.kb}

    def transfer(cls, view: View, rdim: str, cdim: str, size, off, steps, nbytes: int, **kw):
        # row/col coordinates: block offset + group offset; steps per loop depth.
        rs, cs = [0] * isa.MAX_LOOP_DEPTH, [0] * isa.MAX_LOOP_DEPTH
        r0, c0 = off[rdim], off[cdim]
        for d, (dim, st) in steps.items():
            if dim == rdim:
                rs[d] += st
            if dim == cdim:
                cs[d] += st
            if dim == "g":
                rs[d] += view.group_rows
                cs[d] += view.group_cols
        return cls(em.tid(view.tensor), r0, c0, size[rdim], size[cdim], nbytes,
                   transform=view.transform, row_steps=tuple(rs), col_steps=tuple(cs), **kw)

    def load_a(size, off, steps):
        return transfer(Load, task.a, "m", "k", size, off, steps,
                        ctx.a_bytes(size["m"], size["k"]), buffer=Buffer.ACT, nm=task.nm)

    def load_b(size, off, steps):
        return transfer(Load, task.b, "k", "n", size, off, steps,
                        ctx.b_bytes(size["k"], size["n"]), buffer=Buffer.WGT, nm=task.nm)

    def store_c(size, off, steps):
        return transfer(Store, task.c, "m", "n", size, off, steps,
                        ctx.store_bytes(size["m"], size["n"]))

    def level(dims: list[str], size: dict, off: dict, steps: dict, depth: int,
              body_fn) -> None:
        """Emit ``body_fn`` inside loops over ``dims`` (full blocks looped, remainder
        block after it)."""
        if not dims:
            body_fn(size, off, steps, depth)
            return
        dim, rest = dims[0], dims[1:]
        total, b = totals[dim], blocks[dim]
        full, rem = total // b, total % b
        for cnt, sz, base in ((full, b, 0), (1 if rem else 0, rem, full * b)):
            if cnt == 0:
                continue
            s2, o2 = dict(size, **{dim: sz}), dict(off, **{dim: base})
            if cnt > 1:
                at = len(em.out)
                em.emit(Loop(cnt, 1))  # body length patched below
                st2 = dict(steps)
                st2[depth] = (dim, b)
                level(rest, s2, o2, st2, depth + 1, body_fn)
                em.out[at] = Loop(cnt, len(em.out) - at - 1)
            else:
                level(rest, s2, o2, steps, depth, body_fn)

    def kloop(size, off, steps, depth):
        def body(s, o, st, d):
            if not keep_a:
                em.emit(load_a(s, o, st))
            if not keep_b:
                em.emit(load_b(s, o, st))
            em.emit(Compute(t.dataflow, task.nm, s["m"], s["n"], s["k"], t.interleave,
                            pop_a=not keep_a, pop_b=not keep_b,
                            layer=task.layer, phase=task.phase))
        level(["k"], size, off, steps, depth, body)
        em.emit(store_c(size, off, steps))

    def outer_body(size, off, steps, depth):
        if resident:
            full = dict(size, k=ctx.k)
            o = dict(off, k=0)
            em.emit(load_b(full, o, steps) if keep_b else load_a(full, o, steps))
        level([inner], size, off, steps, depth, kloop)
        if resident:
            em.emit(Release(Buffer.WGT if keep_b else Buffer.ACT))

    totals["g"], blocks["g"] = ctx.count, 1
    size0 = {"m": t.mb, "n": t.nb, "k": t.kb, "g": 1}
    off0 = {"m": 0, "n": 0, "k": 0, "g": 0}
    # The group offset enters through the loop steps (group_rows/cols); a single group
    # has offset 0.
    level(["g", outer], size0, off0, {}, 0, outer_body)


def codegen(low: Lowered, ordered: list[int | str], cfg: AcceleratorConfig,
            meta: dict[str, str]) -> Program:
    """Instructions for the tasks in ``ordered`` (indices into ``low.tasks`` and
    :data:`SORE_BARRIER` markers), with their tilings."""
    em = _Emitter(low, cfg)
    elem_b = _elem(cfg).bytes
    pending = Unit(0)  # units whose results the next engine work must wait for
    # Weight updates are issued right after the next GEMM's barrier (which waits for the
    # weight gradient's stores): issued earlier, the in-order vector unit would put them
    # ahead of the next layer's vector op, which that GEMM waits for.
    deferred: list[WuTask] = []

    master_b = ElemType.of(cfg.numerics.master_dtype).bytes
    wu_read_b = 3 * master_b  # per weight: master, velocity and gradient, all fp32
    wu_write_b = 2 * master_b + elem_b  # master, velocity and the engine-dtype working copy

    def flush() -> None:
        for wu in deferred:  # (architecture section 6)
            with _out_of_reach(low.layers, wu.layer):
                em.emit(WeightUpdate(em.tid(wu.tensor), wu.weights, wu_read_b * wu.weights,
                                     wu_write_b * wu.weights, wu.layer))
        deferred.clear()

    for entry in ordered:
        if entry == SORE_BARRIER:
            # The masks this GEMM reads must be in DRAM; SORE work issued after this
            # point (pre-generation of later layers) is not waited for.
            em.emit(Barrier(Unit.SORE | Unit.STORE | pending))
            pending = Unit(0)
            continue
        item = low.tasks[entry]
        with _out_of_reach(low.layers, item.layer):
            if isinstance(item, GemmTask):
                if item.phase is Phase.WG:
                    # a WG GEMM never reads a vector op's output (see lower): only the stores
                    em.emit(Barrier(Unit.STORE))
                else:
                    em.emit(Barrier(pending | Unit.STORE))
                    pending = Unit(0)
                flush()
                _nest(em, _TaskCtx(item, low, cfg), low.tilings[entry])
            elif isinstance(item, SoreTask):
                src, dst = low.tensors[item.src], low.tensors[item.dst]
                em.emit(Sore(em.tid(item.src), em.tid(item.dst), item.view, item.nm,
                             item.weights, item.groups, src.bytes, dst.bytes, item.layer))
            elif isinstance(item, WuTask):
                deferred.append(item)
            elif isinstance(item, VecTask):
                em.emit(Barrier(Unit.STORE | pending))
                pending = Unit(0)
                em.emit(Vector(item.kind, item.elements, item.reads * item.elements * elem_b,
                               item.elements * elem_b, item.layer, item.phase))
                pending |= Unit.WU  # the next engine work reads the vector op's output
    if deferred:
        em.emit(Barrier(Unit.STORE))  # the last weight gradients are in DRAM
        flush()
    return Program(tuple(em.out), tuple(low.tensors.values()), tuple(low.layers),
                   tuple(sorted(meta.items())))


# --------------------------------------------------------------------------- entry point


@contextlib.contextmanager
def _out_of_reach(layers: Sequence[str], li: int) -> Iterator[None]:
    """Name the layer when one of its values does not fit an ISA field (the message
    names the field and its limit): the workload is out of the tile ISA's reach."""
    try:
        yield
    except IsaError as e:
        name = layers[li] if 0 <= li < len(layers) else li
        raise IsaError(f"layer {name!r} is out of the tile ISA's reach: {e}") from None


def compile_workload(workload: Workload, cfg: AcceleratorConfig,
                     options: CompileOptions | None = None) -> Program:
    """Compile one training iteration (or one inference pass) of ``workload``."""
    opts = options or CompileOptions()
    low = lower(workload, cfg, opts)
    offline_schedule(low, cfg, opts)
    interleave_mapping(low, opts.interleave)
    ordered = pregeneration(low, opts.pregen)
    meta = {"workload": workload.name, "mode": str(opts.mode), "method": str(opts.method),
            "nm": str(opts.sparse_nm), "batch": str(opts.batch or workload.batch),
            "interleave": str(opts.interleave), "pregen": str(opts.pregen),
            "offline_schedule": str(opts.offline_schedule), "config": cfg.name}
    return codegen(low, ordered, cfg, meta)


def compile_layer(workload: Workload, layer: str, phase: Phase, cfg: AcceleratorConfig,
                  options: CompileOptions | None = None) -> Program:
    """The tile program of one layer's GEMM(s) in one phase (FF, BP or WG) alone: no SORE,
    weight update or vector work; N:M weight views are expected in DRAM. For running a
    layer on the RTL or the functional executor."""
    opts = options or CompileOptions()
    phase = Phase.parse(phase)
    names = [x.name for x in workload.layers]
    if layer not in names:
        raise NmsatError(f"{workload.name} has no layer {layer!r}")
    li = names.index(layer)
    low = lower(workload, cfg, opts)
    keep = [t for t in low.tasks if isinstance(t, GemmTask) and t.layer == li
            and t.phase is phase]
    if not keep:
        raise NmsatError(f"layer {layer!r} has no {phase} GEMM in this compilation "
                         f"(mode {opts.mode})")
    low.tasks = [dataclasses.replace(t, needs_sore=False) for t in keep]
    used = {v.tensor for t in low.tasks for v in (t.a, t.b, t.c)}
    low.tensors = {k: v for k, v in low.tensors.items() if k in used}
    offline_schedule(low, cfg, opts)
    interleave_mapping(low, opts.interleave)
    meta = {"workload": workload.name, "layer": layer, "phase": str(phase),
            "mode": str(opts.mode), "method": str(opts.method), "nm": str(opts.sparse_nm),
            "batch": str(opts.batch or workload.batch), "interleave": str(opts.interleave),
            "offline_schedule": str(opts.offline_schedule), "config": cfg.name}
    return codegen(low, list(range(len(low.tasks))), cfg, meta)
