"""The weight-update vector engine (docs/architecture.md section 6; ``reference.weight_update``).

Per lane and weight: ``v' = fl(fl(momentum v) + g)``, ``w' = fl(w - fl(lr v'))``, all fp32
RNE with subnormals kept, no fused multiply-add, then the fp16 working copy ``fp16(w')``.
Beats of ``lanes`` weights stream in and come out ``pipeline_latency`` cycles later, so a
tensor of W weights takes ``ceil(W / lanes) + pipeline_latency`` cycles (the tile model's
``weight_update_cycles``). Output backpressure stalls the whole pipeline.
"""

from __future__ import annotations

from amaranth.hdl import Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from nmsat.config import AcceleratorConfig

from .fp import FP32, f32_add, f32_to_f16, float_mul

__all__ = ["WeightUpdateEngine", "wu_layouts"]


def wu_layouts(lanes: int):
    state_in = data.StructLayout({"w": 32, "v": 32, "g": 32})
    state_out = data.StructLayout({"w": 32, "v": 32, "w16": 16})
    return data.ArrayLayout(state_in, lanes), data.ArrayLayout(state_out, lanes)


class WeightUpdateEngine(wiring.Component):
    """``lanes`` fp32 update lanes behind a ``pipeline_latency``-stage output pipeline."""

    def __init__(self, cfg: AcceleratorConfig):
        self.lanes = cfg.weight_update.lanes
        self.latency = max(1, cfg.weight_update.pipeline_latency)
        lin, lout = wu_layouts(self.lanes)
        super().__init__({"lr": In(32), "momentum": In(32),
                          "inp": In(stream.Signature(lin)), "out": Out(stream.Signature(lout))})

    def elaborate(self, platform) -> Module:
        m = Module()
        res = Signal(self.out.payload.shape())
        for i in range(self.lanes):
            x = self.inp.payload[i]
            v_new = f32_add(m, float_mul(m, self.momentum, x.v, FP32), x.g)
            lr_v = float_mul(m, self.lr, v_new, FP32)
            w_new = f32_add(m, x.w, lr_v ^ (1 << 31))  # w - lr v' (sign flip is exact)
            m.d.comb += [res[i].w.eq(w_new), res[i].v.eq(v_new),
                         res[i].w16.eq(f32_to_f16(m, w_new))]
        stages = [(Signal(name=f"v{s}"), Signal.like(res, name=f"d{s}"))
                  for s in range(self.latency)]
        move = ~self.out.valid | self.out.ready
        m.d.comb += self.inp.ready.eq(move)
        with m.If(move):
            m.d.sync += [stages[0][0].eq(self.inp.valid), stages[0][1].eq(res)]
            for s in range(1, self.latency):
                m.d.sync += [stages[s][0].eq(stages[s - 1][0]), stages[s][1].eq(stages[s - 1][1])]
        m.d.comb += [self.out.valid.eq(stages[-1][0]), self.out.payload.eq(stages[-1][1])]
        return m
