"""The DMA side of the SORE and the weight-update engine in the training testbench
(:mod:`nmsat.rtl.tb.cocotb_train`): one job per command, streaming the operands from
the live DRAM image into the unit one beat per cycle from the cycle after the command,
collecting its result beats, and writing them back when the unit is done.

Where the operands live: a SORE reads its ``src`` tensor (the dense working-copy
weights, GEMM view ``[in, out]``) and writes ``dst`` (the FF view ``[in, out]`` or the
BP view ``[out, in]``, pruned weights zero), both named by the instruction. A
WEIGHT_UPDATE names the working copy ``L.w``; the gradient is the program's ``L.dw``
tensor (``[out, in]`` fp32, the WG GEMM's output) and the fp32 master copy and velocity
are the DRAM state ``L.w.master`` / ``L.w.velocity`` (``[out, in]``) beside the program's
tensors (the ISA's WEIGHT_UPDATE names only the working copy; docs/rtl.md).
"""

from __future__ import annotations

from collections import deque

import numpy as np

from nmsat.arith import ceil_div
from nmsat.config import AcceleratorConfig
from nmsat.dataflow import isa
from nmsat.dataflow.execute import Executor, to_elem
from nmsat.types import DType

from ..fp import Numeric
from ..sore import Sore
from .sore_model import view_groups

__all__ = ["SoreJob", "WuJob", "grad_of", "master_of", "operand_values", "velocity_of"]


def grad_of(weights: str) -> str:
    """The gradient tensor of working-copy tensor ``L.w``: ``L.dw``."""
    return weights[:-len(".w")] + ".dw"


def master_of(weights: str) -> str:
    return weights + ".master"


def velocity_of(weights: str) -> str:
    return weights + ".velocity"


def operand_values(bits: np.ndarray, dtype: DType) -> np.ndarray:
    """fp16 / bf16 bit patterns -> float32 values."""
    b = np.asarray(bits, np.uint64)
    if dtype is DType.BF16:
        return (b.astype(np.uint32) << 16).view(np.float32)
    return b.astype(np.uint16).view(np.float16).astype(np.float32)


class _Job:
    """Operand beats to send from ``issue + 1``, result beats expected, memory due."""

    def __init__(self, issue: int, due: int, beats: list[int], results: int):
        if due <= issue:
            raise AssertionError(f"a stream due at {due}, not after its issue at {issue}")
        self.issue, self.due, self.start = issue, due, issue + 1
        self.beats, self.expect = deque(beats), results
        self.got: list[int] = []
        self.last = -1

    def next_beat(self, cyc: int) -> int | None:
        return self.beats[0] if self.beats and cyc >= self.start else None

    def took_beat(self) -> None:
        self.beats.popleft()

    def result(self, payload: int, cyc: int) -> None:
        self.got.append(payload)
        self.last = cyc

    def finished(self, cyc: int) -> bool:
        """The unit's completion: its last result beat has left and the stream's DRAM
        time has passed (both by ``cyc``)."""
        return len(self.got) >= self.expect and cyc >= self.due

    def times(self) -> tuple[int, int, int]:
        """(issue, last result, memory due) cycles."""
        return self.issue, self.last, self.due


class SoreJob(_Job):
    def __init__(self, ins: isa.Sore, prog: isa.Program, ex: Executor, state: dict,
                 cfg: AcceleratorConfig, shape, issue: int, due: int):
        self.ins, self.dtype = ins, DType.parse(cfg.numerics.dtype)
        self.unit = Sore(cfg, self.dtype)
        src = ex.dram[prog.tensors[ins.src].name]
        view = src.T if ins.view is isa.SoreView.BP else src
        self.shape = view.shape
        bits = Numeric(self.dtype).to_bits(np.asarray(view, np.float32))
        groups = view_groups(bits, ins.nm, 0)  # [G, M], (other index, group) order
        if len(groups) != ins.groups:
            raise AssertionError(f"SORE of {len(groups)} groups, the instruction says "
                                 f"{ins.groups}")
        L, w = self.unit.lanes, self.unit.width
        beats = []
        for b in range(0, len(groups), L):
            blk = groups[b:b + L]
            for p in range(ins.nm.m):
                beats.append(sum(int(blk[i, p]) << (i * w) for i in range(len(blk))))
        super().__init__(issue, due, beats, ceil_div(len(groups), L))

    def write(self, ex: Executor, state: dict) -> None:
        """Scatter the kept (value, index) pairs into the compressed view ``dst``."""
        u, nm = self.unit, self.ins.nm
        slot = u.width + u.idx_bits
        group = slot * u.n_max
        k, other = self.shape
        per = ceil_div(k, nm.m)  # groups per other index
        out = np.zeros((k, other), np.float32)
        for b, payload in enumerate(self.got):
            for lane in range(u.lanes):
                gi = b * u.lanes + lane
                if gi >= self.ins.groups:
                    break
                o, j = divmod(gi, per)
                g = payload >> (lane * group)
                for s in range(nm.n):
                    v = (g >> (s * slot)) & ((1 << u.width) - 1)
                    idx = (g >> (s * slot + u.width)) & ((1 << u.idx_bits) - 1)
                    r = j * nm.m + idx
                    if r < k:
                        out[r, o] = operand_values(np.array([v]), self.dtype)[0]
        dst = ex.p.tensors[self.ins.dst]
        ex.dram[dst.name] = to_elem(out, dst.elem)


class WuJob(_Job):
    def __init__(self, ins: isa.Instr, prog: isa.Program, ex: Executor, state: dict,
                 cfg: AcceleratorConfig, shape, issue: int, due: int):
        if not isinstance(ins, isa.WeightUpdate):
            raise AssertionError(f"the weight-update engine does not run {ins}")
        self.ins, self.dtype = ins, DType.parse(cfg.numerics.dtype)
        self.name = prog.tensors[ins.tensor].name
        g = np.asarray(ex.dram[grad_of(self.name)], np.float32)
        w, v = state[master_of(self.name)], state[velocity_of(self.name)]
        if not g.shape == w.shape == v.shape or g.size != ins.weights:
            raise AssertionError(f"WEIGHT_UPDATE of {ins.weights} weights: gradient "
                                 f"{g.shape}, master {w.shape}, velocity {v.shape}")
        self.out_shape = g.shape
        self.lanes = cfg.weight_update.lanes
        bits = [np.asarray(a, np.float32).reshape(-1).view(np.uint32) for a in (w, v, g)]
        beats = []
        for b in range(0, g.size, self.lanes):
            word = 0
            for lane in range(min(self.lanes, g.size - b)):
                i = b + lane
                lw = int(bits[0][i]) | int(bits[1][i]) << 32 | int(bits[2][i]) << 64
                word |= lw << (96 * lane)
            beats.append(word)
        super().__init__(issue, due, beats, len(beats))

    def write(self, ex: Executor, state: dict) -> None:
        n = int(np.prod(self.out_shape))
        w, v, w16 = (np.zeros(n, np.uint32) for _ in range(3))
        for b, payload in enumerate(self.got):
            for lane in range(self.lanes):
                i = b * self.lanes + lane
                if i >= n:
                    break
                x = payload >> (80 * lane)
                w[i], v[i], w16[i] = x & 0xFFFFFFFF, (x >> 32) & 0xFFFFFFFF, (x >> 64) & 0xFFFF
        state[master_of(self.name)] = w.view(np.float32).reshape(self.out_shape)
        state[velocity_of(self.name)] = v.view(np.float32).reshape(self.out_shape)
        t = next(t for t in ex.p.tensors if t.name == self.name)
        work = w16.astype(np.uint16).view(np.float16).astype(np.float32)
        ex.dram[self.name] = to_elem(work.reshape(self.out_shape).T, t.elem)
