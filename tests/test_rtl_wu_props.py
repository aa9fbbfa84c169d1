"""Property of the weight-update engine in Amaranth's simulator (hypothesis): for any fp32
master weights, velocities and gradients (any bit pattern but NaN: subnormals, Inf, values
at fp16 rounding ties) and any lr and momentum, every output word equals
reference.weight_update and quantize(fp16) bit for bit (any NaN equals any NaN)."""

from __future__ import annotations

import numpy as np
from amaranth.sim import Simulator
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nmsat.config import SMALL
from nmsat.reference import quantize, weight_update
from nmsat.rtl.fp import same_bits
from nmsat.rtl.wu import WeightUpdateEngine

F32 = np.float32
CFG = SMALL.replace(**{"weight_update.lanes": 2, "weight_update.pipeline_latency": 1})

# fp32 bit patterns: anything but NaN, with subnormals, +-0, Inf and fp16 ties over-weighted.
# The ties are halfway between fp16 h and the next fp16 number, for h below the largest
# finite one (0x7BFF, 65504): its spacing overflows to Inf (numpy warns, an error here),
# and its tie, 65520 (0x477FF000, rounds to Inf), is one of the sampled constants
_fp16_tie = st.integers(1, 0x7BFE).map(
    lambda h: int((F32(np.uint16(h).view(np.float16)) + F32(np.spacing(
        np.uint16(h).view(np.float16))) / F32(2)).view(np.uint32)))
_bits = st.one_of(st.integers(0, 0x7F800000), st.integers(0, 0x007FFFFF),
                  st.sampled_from([0, 0x7F800000, 0x477FE000, 0x477FF000, 0x33800000]),
                  _fp16_tie).flatmap(lambda b: st.sampled_from([b, b | 0x80000000]))
_small = st.floats(0, 1, width=32)


def run(rows, lr_bits, mu_bits):
    dut = WeightUpdateEngine(CFG)
    got = []

    async def bench(ctx):
        ctx.set(dut.lr, lr_bits)
        ctx.set(dut.momentum, mu_bits)
        ctx.set(dut.out.ready, 1)
        lanes = dut.lanes
        beats = [rows[i:i + lanes] + [(0, 0, 0)] * (lanes - len(rows[i:i + lanes]))
                 for i in range(0, len(rows), lanes)]
        sent = 0
        while len(got) < len(beats):
            ctx.set(dut.inp.valid, sent < len(beats))
            if sent < len(beats):
                ctx.set(dut.inp.payload, [{"w": w, "v": v, "g": g} for w, v, g in beats[sent]])
                if ctx.get(dut.inp.ready):
                    sent += 1
            if ctx.get(dut.out.valid):
                got.append(ctx.get(dut.out.payload))
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return [(x["w"], x["v"], x["w16"]) for beat in got for x in beat][:len(rows)]


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.lists(st.tuples(_bits, _bits, _bits), min_size=1, max_size=24),
       lr=_small, mu=_small)
def test_updates_equal_reference(rows, lr, mu):
    lr_b, mu_b = (int(np.array(x, F32).view(np.uint32)) for x in (lr, mu))
    got = np.array(run(rows, lr_b, mu_b), np.uint64)
    w, v, g = (np.array([r[i] for r in rows], np.uint32).view(F32) for i in range(3))
    with np.errstate(all="ignore"):
        w_ref, v_ref = weight_update(w, g, v, float(F32(lr)), float(F32(mu)))
        h_ref = quantize(w_ref, "fp16").astype(F32).view(np.uint32)
        h_got = got[:, 2].astype(np.uint16).view(np.float16).astype(F32).view(np.uint32)
    assert same_bits(got[:, 0], w_ref.view(np.uint32)).all(), (rows, lr, mu)
    assert same_bits(got[:, 1], v_ref.view(np.uint32)).all(), (rows, lr, mu)
    assert same_bits(h_got, h_ref).all(), (rows, lr, mu)
