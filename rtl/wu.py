"""The weight-update vector engine (docs/architecture.md section 6; ``reference.weight_update``).

Per lane and weight: ``v' = fl(fl(momentum v) + g)``, ``w' = fl(w - fl(lr v'))``, all fp32
RNE with subnormals kept, no fused multiply-add, then the fp16 working copy ``fp16(w')``.
Beats of ``lanes`` weights stream in and come out ``pipeline_latency`` cycles later, so a
tensor of W weights takes ``ceil(W / lanes) + pipeline_latency`` cycles (the tile model's
``weight_update_cycles``). Output backpressure stalls the whole pipeline.

The ``pipeline_latency`` register stages are spread through the datapath
(:func:`stage_plan`): with five or more, one operation (multiply, add, multiply, add,
fp16 conversion) sits before each of the first five registers and the rest delay the
result; with fewer, adjacent operations share a stage, balanced by their estimated delay
(:data:`OPS`). A stage register holds only what later stages read; ``lr`` goes along with
the beat until its multiply, so every beat uses the ``lr`` and ``momentum`` present when
it was accepted (as when the whole datapath sat before the first register).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from amaranth.hdl import Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from nmsat.config import AcceleratorConfig

from .fp import FP32, f32_add, f32_to_f16, float_mul
from .stages import F16_ROUND_NS, F32_ADD_NS, F32_MUL_NS, balanced_cuts

__all__ = ["OPS", "Op", "WeightUpdateEngine", "live_after", "stage_plan", "wu_layouts"]


class Op(NamedTuple):
    """One operation of a lane: ``result = fn(m, *operands)``, its estimated delay (ns)."""

    result: str
    operands: tuple[str, ...]
    fn: Callable
    cost: float


OPS: tuple[Op, ...] = (
    Op("mv", ("momentum", "v"), lambda m, mu, v: float_mul(m, mu, v, FP32), F32_MUL_NS),
    Op("vn", ("mv", "g"), lambda m, mv, g: f32_add(m, mv, g), F32_ADD_NS),
    Op("lrv", ("lr", "vn"), lambda m, lr, vn: float_mul(m, lr, vn, FP32), F32_MUL_NS),
    # w - lr v' (the sign flip is exact)
    Op("wn", ("w", "lrv"), lambda m, w, lrv: f32_add(m, w, lrv ^ (1 << 31)), F32_ADD_NS),
    Op("w16", ("wn",), lambda m, wn: f32_to_f16(m, wn), F16_ROUND_NS),
)
"""The datapath in order, with the operations' delay estimates (:mod:`.stages`)."""

SHARED = ("lr", "momentum")
"""Inputs common to every lane (register ports); the rest are per lane."""

_INPUTS = ("w", "v", "g")
_OUTPUTS = {"w": "wn", "v": "vn", "w16": "w16"}  # output field: the value it carries


def _width(name: str) -> int:
    return 16 if name == "w16" else 32


def live_after(done: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(shared, per-lane) values a stage register holds after the first ``done``
    operations: those computed or input so far that a later operation or the output
    reads."""
    have = list(SHARED) + list(_INPUTS) + [op.result for op in OPS[:done]]
    need = {x for op in OPS[done:] for x in op.operands} | set(_OUTPUTS.values())
    keep = [x for x in have if x in need]
    return (tuple(x for x in keep if x in SHARED), tuple(x for x in keep if x not in SHARED))


def _reg_bits(done: int) -> tuple[int, int]:
    """(bits per lane, shared bits) of the register after the first ``done`` operations."""
    shared, lane = live_after(done)
    return sum(map(_width, lane)), sum(map(_width, shared))


def stage_plan(latency: int) -> tuple[tuple[int, ...], ...]:
    """The operations (indices into :data:`OPS`) before each of ``max(1, latency)``
    registers: one each while there are registers to spare (the last ones empty: delay),
    else contiguous groups with the smallest largest cost (ties: fewest register bits per
    lane, then shared)."""
    n, k = len(OPS), max(1, latency)
    if k >= n:
        return tuple((i,) for i in range(n)) + ((),) * (k - n)

    def fewest_bits(cuts: tuple[int, ...]) -> tuple[int, int]:
        bits = [_reg_bits(c) for c in cuts]
        return sum(b[0] for b in bits), sum(b[1] for b in bits)

    cuts = balanced_cuts([op.cost for op in OPS], k - 1, fewest_bits)
    bounds = (0, *cuts, n)
    return tuple(tuple(range(a, b)) for a, b in zip(bounds, bounds[1:]))


def wu_layouts(lanes: int):
    state_in = data.StructLayout({"w": 32, "v": 32, "g": 32})
    state_out = data.StructLayout({"w": 32, "v": 32, "w16": 16})
    return data.ArrayLayout(state_in, lanes), data.ArrayLayout(state_out, lanes)


def _stage_layout(done: int, lanes: int) -> data.StructLayout:
    shared, lane = live_after(done)
    return data.StructLayout({
        **{x: 32 for x in shared},
        "lane": data.ArrayLayout(data.StructLayout({x: _width(x) for x in lane}), lanes)})


class WeightUpdateEngine(wiring.Component):
    """``lanes`` fp32 update lanes in a ``pipeline_latency``-stage pipeline.

    ``stages``: per register stage its valid bit and its data (a view: the shared values
    and ``lane[i]``'s, as :func:`live_after`), ``plan`` the operations before each
    (:func:`stage_plan`)."""

    def __init__(self, cfg: AcceleratorConfig):
        self.lanes = cfg.weight_update.lanes
        self.latency = max(1, cfg.weight_update.pipeline_latency)
        self.plan = stage_plan(self.latency)
        lin, lout = wu_layouts(self.lanes)
        super().__init__({"lr": In(32), "momentum": In(32),
                          "inp": In(stream.Signature(lin)), "out": Out(stream.Signature(lout))})
        done = 0
        self.stages = []
        for s, group in enumerate(self.plan):
            done += len(group)
            self.stages.append((Signal(name=f"v{s}"),
                                Signal(_stage_layout(done, self.lanes), name=f"d{s}")))

    def elaborate(self, platform) -> Module:
        m = Module()
        move = ~self.out.valid | self.out.ready
        m.d.comb += self.inp.ready.eq(move)
        shared = {"lr": self.lr, "momentum": self.momentum}
        lanes = [{x: self.inp.payload[i][x] for x in _INPUTS} for i in range(self.lanes)]
        done, prev_valid = 0, self.inp.valid
        for group, (valid, reg) in zip(self.plan, self.stages):
            for i in group:
                op = OPS[i]
                for vals in lanes:
                    args = [shared[x] if x in SHARED else vals[x] for x in op.operands]
                    vals[op.result] = op.fn(m, *args)
            done += len(group)
            keep_shared, keep_lane = live_after(done)
            with m.If(move):  # the whole pipeline moves together
                m.d.sync += valid.eq(prev_valid)
                m.d.sync += [reg[x].eq(shared[x]) for x in keep_shared]
                m.d.sync += [reg.lane[i][x].eq(lanes[i][x])
                             for i in range(self.lanes) for x in keep_lane]
            shared = {x: reg[x] for x in keep_shared}
            lanes = [{x: reg.lane[i][x] for x in keep_lane} for i in range(self.lanes)]
            prev_valid = valid
        m.d.comb += self.out.valid.eq(prev_valid)
        m.d.comb += [self.out.payload[i][f].eq(lanes[i][x])
                     for i in range(self.lanes) for f, x in _OUTPUTS.items()]
        return m
