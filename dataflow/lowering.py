"""Compiler stage 1: every layer and phase of a workload -> tasks (``docs/isa.md``).

GEMM tasks take their dims from :meth:`Layer.gemms` and their operand views from
``docs/architecture.md`` section 3.2, with N:M on B along K where :meth:`Layer.nm_applies`;
SORE tasks (one per mask view), weight-update and vector tasks follow in program order.
"""

from __future__ import annotations

from nmsat.arith import ceil_div
from nmsat.config import AcceleratorConfig
from nmsat.types import DENSE, NM, Method, Mode, Phase
from nmsat.workloads.layers import (
    Conv2d,
    Elementwise,
    Layer,
    Linear,
    Matmul,
    OpKind,
    Workload,
)

from .isa import ConvView, ElemType, SoreView, Tensor, Transform
from .tasks import (
    CompileOptions,
    GemmTask,
    Lowered,
    SoreTask,
    Task,
    VecTask,
    View,
    WuTask,
    engine_elem,
    out_of_reach,
)

__all__ = ["lower"]


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
    elem = engine_elem(cfg)
    tt = _Tensors(cfg)
    layers = [layer.name for layer in workload.layers]
    ff: list[Task] = []
    back: list[Task] = []
    for li, layer in enumerate(workload.layers):
        with out_of_reach(layers, li):
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
    def passed_by_vector(t: Task) -> bool:
        return isinstance(t, WuTask) or isinstance(t, GemmTask) and t.phase is Phase.WG

    for i in range(len(back)):
        j = i
        while j > 0 and isinstance(back[j], VecTask) and passed_by_vector(back[j - 1]):
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
                    needs_sore=sparse_ff and train, b_static=not train)]
    if not train:
        return ffs, [], [], [], None
    assert dx is not None  # added above whenever train
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

