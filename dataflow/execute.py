"""Functional execution of a tile program on NumPy tensors: the value semantics of
``docs/isa.md``, for checking a compiled program's data movement end to end (and as the
golden model of a tile program run on the RTL).

DRAM holds every tensor as a 2-D array of its element type. An N:M tensor is held as the
dense matrix with the pruned weights zeroed (its packed form is
:func:`nmsat.reference.pack` of that); ``SORE`` writes it from the dense weights with
:func:`nmsat.reference.nm_mask` along the GEMM's K axis. ``LOAD`` copies a tile of the
tensor's view (``transpose``, ``im2col``) into the oldest free half of its buffer;
``COMPUTE`` runs :func:`nmsat.reference.engine_gemm` with the OUT half as ``acc``;
``STORE`` converts the OUT half to the tensor's element type and writes it (``col2im``:
scatter-adds it into an fp32 copy of the feature map, kernel positions in row-major
order, then rounds the map to its element type). ``VECTOR`` and ``WEIGHT_UPDATE`` do not
change values here (only GEMM data movement is checked); ``BARRIER`` and ``LOOP`` follow
the ISA. Cost: O(executed instructions); for small programs.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

import numpy as np

from nmsat.config import AcceleratorConfig
from nmsat.reference import ConvGeom, col2im, engine_gemm, im2col, nm_mask, quantize
from nmsat.types import DType

from .isa import (
    Barrier,
    Buffer,
    Compute,
    ConvView,
    ElemType,
    IsaError,
    Load,
    Program,
    Release,
    Sore,
    SoreView,
    Store,
    Tensor,
    Transform,
    Vector,
    WeightUpdate,
)

__all__ = ["Executor", "execute", "to_elem"]

_NP = {ElemType.INT8: np.int8, ElemType.INT16: np.int16, ElemType.FP16: np.float16,
       ElemType.BF16: np.float32, ElemType.FP32: np.float32, ElemType.INT32: np.int32}


def to_elem(x: np.ndarray, elem: ElemType) -> np.ndarray:
    """Round or convert values to a tensor's element type (bf16 kept in float32)."""
    if elem is ElemType.BF16:
        return quantize(np.asarray(x, np.float32), DType.BF16)
    if elem is ElemType.INT32:
        return np.asarray(x).astype(np.int32)
    if elem in (ElemType.INT8, ElemType.INT16):
        return np.asarray(x).astype(_NP[elem])
    return np.asarray(x).astype(_NP[elem])


def _conv(t: Tensor) -> ConvView:
    """The feature-map view of a tensor read through IM2COL or written through COL2IM."""
    if t.conv is None:
        raise IsaError(f"tensor {t.name} has no feature-map view for IM2COL/COL2IM")
    return t.conv


def _geom(t: Tensor) -> ConvGeom:
    cv = _conv(t)
    return ConvGeom(cv.batch, cv.c, cv.h, cv.w, 1, cv.kh, cv.kw, cv.stride, cv.padding)


class Executor:
    """Runs a :class:`Program` on a DRAM image ``{tensor name: 2-D array}``.

    Tensors missing from ``dram`` start at zero. After :meth:`run`, ``dram`` holds every
    tensor's final contents. ``gemm`` computes each COMPUTE (default
    :func:`nmsat.reference.engine_gemm`, same signature): a testbench passes a wrapper that
    records the blocks it is given.
    """

    def __init__(self, program: Program, cfg: AcceleratorConfig,
                 dram: dict[str, np.ndarray] | None = None,
                 gemm: Callable[..., np.ndarray] = engine_gemm):
        self.p, self.cfg, self.gemm = program, cfg, gemm
        self.dtype = DType.parse(cfg.numerics.dtype)
        self.dram: dict[str, np.ndarray] = {}
        for t in program.tensors:
            init = (dram or {}).get(t.name)
            if init is None:
                init = np.zeros((t.rows, t.cols))
            init = np.asarray(init)
            if init.shape != (t.rows, t.cols):
                raise IsaError(f"tensor {t.name}: DRAM image has shape {init.shape}, "
                               f"not {(t.rows, t.cols)}")
            self.dram[t.name] = to_elem(init, t.elem)
        self.fp32_maps: dict[str, np.ndarray] = {}  # COL2IM accumulators (NCHW, fp32)
        self.rings: dict[Buffer, deque[np.ndarray]] = {Buffer.ACT: deque(), Buffer.WGT: deque()}
        self.out: deque = deque([None])  # current OUT half (None: reads as +0)

    # ---------------------------------------------------------------- views

    def _view(self, t: Tensor, tr: Transform) -> np.ndarray:
        x = self.dram[t.name]
        if tr is Transform.NONE:
            return x
        if tr is Transform.TRANSPOSE:
            return x.T
        if tr is Transform.IM2COL:
            cv = _conv(t)
            nchw = x.reshape(cv.batch, cv.h, cv.w, cv.c).transpose(0, 3, 1, 2)
            return im2col(nchw, _geom(t))
        raise IsaError(f"LOAD cannot use transform {tr.name}")

    @staticmethod
    def _tile(view: np.ndarray, r0: int, c0: int, rows: int, cols: int, what: str):
        if r0 + rows > view.shape[0] or c0 + cols > view.shape[1]:
            raise IsaError(f"{what}: tile [{r0}:{r0 + rows}, {c0}:{c0 + cols}] is outside "
                           f"the view {view.shape}")
        return view[r0:r0 + rows, c0:c0 + cols]

    # ---------------------------------------------------------------- run

    def run(self) -> dict[str, np.ndarray]:
        arr = self.cfg.array
        bufs = self.cfg.buffers
        halves = {Buffer.ACT: bufs.activation.halves, Buffer.WGT: bufs.weight.halves}
        for ins, r0, c0 in self.p.unrolled():
            if isinstance(ins, Load):
                ring = self.rings[ins.buffer]
                if len(ring) >= halves[ins.buffer]:
                    raise IsaError(f"LOAD into {ins.buffer.name}: both halves are full "
                                   f"(a COMPUTE/RELEASE must free one first)")
                ring.append(self._load(ins, r0, c0))
            elif isinstance(ins, Compute):
                ra, rb = self.rings[Buffer.ACT], self.rings[Buffer.WGT]
                if not ra or not rb:
                    raise IsaError("COMPUTE with an empty ACT or WGT ring")
                a, b = ra[0], rb[0]
                if a.shape != (ins.m, ins.k) or b.shape != (ins.k, ins.n):
                    raise IsaError(f"COMPUTE {ins.m}x{ins.n}x{ins.k} got A {a.shape} and "
                                   f"B {b.shape}")
                acc = self.out[0]
                if acc is not None and acc.shape != (ins.m, ins.n):
                    raise IsaError(f"COMPUTE {ins.m}x{ins.n} into an OUT half of "
                                   f"{acc.shape}")
                self.out[0] = self.gemm(a, b, self.dtype, arr.macs_per_pe, arr.act_window,
                                        ins.nm, acc=acc)
                if ins.pop_a:
                    ra.popleft()
                if ins.pop_b:
                    rb.popleft()
            elif isinstance(ins, Release):
                if not self.rings[ins.buffer]:
                    raise IsaError(f"RELEASE of an empty {ins.buffer.name} ring")
                self.rings[ins.buffer].popleft()
            elif isinstance(ins, Store):
                self._store(ins, r0, c0)
            elif isinstance(ins, Sore):
                self._sore(ins)
            elif isinstance(ins, (Barrier, Vector, WeightUpdate)):
                pass  # ordering only; values of non-GEMM work are not modelled here
        return self.dram

    def _load(self, ins: Load, r0: int, c0: int) -> np.ndarray:
        """The tile a LOAD puts into its half: rows/cols of the tensor's view."""
        t = self.p.tensors[ins.tensor]
        return np.array(self._tile(self._view(t, ins.transform), r0, c0, ins.rows, ins.cols,
                                   f"LOAD {t.name}"))

    def _store(self, ins: Store, r0: int, c0: int) -> None:
        t = self.p.tensors[ins.tensor]
        val = self.out[0]
        if val is None or val.shape != (ins.rows, ins.cols):
            raise IsaError(f"STORE {t.name} [{ins.rows}x{ins.cols}] of an OUT half holding "
                           f"{None if val is None else val.shape}")
        if ins.transform is Transform.COL2IM:
            cv, g = _conv(t), _geom(t)
            full = np.zeros((cv.im2col_rows, cv.im2col_cols), np.float32)
            self._tile(full, r0, c0, ins.rows, ins.cols, f"STORE {t.name}")[...] = val
            acc = self.fp32_maps.setdefault(
                t.name, np.zeros((cv.batch, cv.c, cv.h, cv.w), np.float32))
            acc += col2im(full, g, cv.c)
            self.dram[t.name] = to_elem(acc.transpose(0, 2, 3, 1).reshape(t.rows, t.cols),
                                        t.elem)
        else:
            view = self.dram[t.name].T if ins.transform is Transform.TRANSPOSE \
                else self.dram[t.name]
            self._tile(view, r0, c0, ins.rows, ins.cols, f"STORE {t.name}")[...] = \
                to_elem(val, t.elem)
        self.out[0] = None  # the half is cleared; the other half becomes current

    def _sore(self, ins: Sore) -> None:
        src, dst = self.p.tensors[ins.src], self.p.tensors[ins.dst]
        w = self.dram[src.name].astype(np.float32)  # GEMM view [K = in, out]
        if ins.view is SoreView.FF:
            masked = np.where(nm_mask(w, ins.nm, axis=0), w, 0)
        else:
            wt = w.T  # [out, in]: the BP GEMM's B, K = out
            masked = np.where(nm_mask(wt, ins.nm, axis=0), wt, 0)
        if masked.shape != (dst.rows, dst.cols):
            raise IsaError(f"SORE {src.name} -> {dst.name}: view {masked.shape} does not "
                           f"match [{dst.rows}, {dst.cols}]")
        self.dram[dst.name] = to_elem(masked, dst.elem)


def execute(program: Program, cfg: AcceleratorConfig,
            dram: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """Run ``program`` functionally; returns the final DRAM image."""
    return Executor(program, cfg, dram).run()
