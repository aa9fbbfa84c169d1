"""Properties of the SORE in Amaranth's simulator (hypothesis): for any small weight matrix
(tie-heavy values, +0/-0, subnormals, partial groups), pattern and view, under random
input gaps and output backpressure, the masks equal reference.compress; and the SORE
instructions the compiler emits run on the RTL in exactly the simulator's cycles."""

from __future__ import annotations

import numpy as np
from amaranth.sim import Simulator
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nmsat.config import SMALL
from nmsat.dataflow import timing
from nmsat.dataflow.compiler import CompileOptions, compile_workload
from nmsat.dataflow.isa import Sore as SoreInstr
from nmsat.dataflow.isa import SoreView
from nmsat.rtl.fp import Numeric
from nmsat.rtl.sore import Sore
from nmsat.rtl.tb.sore_model import beats, expected_groups, view_groups
from nmsat.types import NM, DType
from nmsat.workloads.layers import Linear, Workload

POOL = np.array([0.0, -0.0, 1.0, -1.0, 2.0, -2.0, 0.5, 6e-8, -6e-8, 65504.0, 3.0, -3.0],
                np.float16)


def _sim(cfg):
    # a fresh simulator per run: Simulator.reset() between hypothesis examples left this
    # design stuck once, while fresh runs and the cocotb runs (jobs back to back) do not
    dut = Sore(cfg, DType.FP16)
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    return dut, sim


def run_views(cfg, jobs, gap=0.0, stall=0.0, seed=0):
    """Run (w fp16, nm, axis) jobs back to back on one simulator; per job the output
    groups (as [groups, N] values and indices) and the cycles from the first beat offered
    to the last result taken, both included."""
    dut, sim = _sim(cfg)
    rng = np.random.default_rng(seed)
    out = []

    async def bench(ctx):
        cycle = 0
        for w, nm, axis in jobs:
            groups = view_groups(Numeric(DType.FP16).to_bits(w), nm, axis)
            words = [lane_words for blk in beats(groups, dut.lanes) for lane_words in blk]
            rounds = len(words) // nm.m
            ctx.set(dut.n, nm.n)
            ctx.set(dut.m, nm.m)
            start, got, sent = cycle, [], 0
            while len(got) < rounds:
                assert cycle - start < 50 * len(words) + 100, "the SORE made no progress"
                offer = sent < len(words) and rng.random() >= gap
                take = rng.random() >= stall
                ctx.set(dut.inp.valid, offer)
                if offer:
                    ctx.set(dut.inp.payload, {"w": words[sent], "last": 0})
                ctx.set(dut.out.ready, take)
                if offer and ctx.get(dut.inp.ready):
                    sent += 1
                if take and ctx.get(dut.out.valid):
                    got.append(ctx.get(dut.out.payload))
                await ctx.tick()
                cycle += 1
            flat = [g for beat in got for g in beat][:len(groups)]
            vals = np.array([[g[s]["value"] for s in range(nm.n)] for g in flat], np.uint64)
            idx = np.array([[g[s]["index"] for s in range(nm.n)] for g in flat], np.int64)
            out.append((vals, idx, cycle - start))
        ctx.set(dut.inp.valid, 0)

    sim.reset()
    sim.add_testbench(bench)
    sim.run()
    return out


def _matrix(data):
    rows, cols = data.draw(st.integers(1, 6)), data.draw(st.integers(1, 11))
    idx = data.draw(st.lists(st.integers(0, len(POOL) - 1), min_size=rows * cols,
                             max_size=rows * cols))
    return POOL[np.array(idx)].reshape(rows, cols)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), seed=st.integers(0, 2**31), gap=st.sampled_from([0.0, 0.3]),
       stall=st.sampled_from([0.0, 0.4]))
def test_views_equal_reference_under_gaps_and_backpressure(data, seed, gap, stall):
    jobs = [(_matrix(data), data.draw(st.sampled_from(SMALL.array.patterns)),
             data.draw(st.sampled_from([0, 1]))) for _ in range(data.draw(st.integers(1, 3)))]
    for (w, nm, axis), (vals, idx, _) in zip(jobs, run_views(SMALL, jobs, gap, stall, seed)):
        want_v, want_i = expected_groups(w, nm, axis, DType.FP16)
        assert np.array_equal(idx, want_i), (nm, axis, w)
        assert np.array_equal(vals, want_v.astype(np.uint64)), (nm, axis, w)


def test_compiled_sore_instructions_take_the_simulators_cycles():
    """A BDWP training step's SORE instructions (FF and BP views of two layers), run with
    each layer's weight shape: RTL cycles = timing.sore_cycles, masks = reference."""
    layers = (Linear("fc1", in_features=10, out_features=6), Linear("fc2", 6, 3))
    prog = compile_workload(Workload("mlp", layers, 2), SMALL,
                            CompileOptions(method="bdwp", nm=NM(2, 4)))
    instrs = [i for i in prog.instructions if isinstance(i, SoreInstr)]
    rng = np.random.default_rng(3)
    jobs = []
    for ins in instrs:
        layer = layers[ins.layer]
        w = rng.standard_normal((layer.out_features, layer.in_features)).astype(np.float16)
        axis = 1 if ins.view is SoreView.FF else 0
        assert len(view_groups(w, ins.nm, axis)) == ins.groups
        jobs.append((w, ins.nm, axis))
    got = run_views(SMALL, jobs)
    assert len(instrs) == 4
    assert [c for _, _, c in got] == [timing.sore_cycles(i, SMALL) for i in instrs]
    for (w, nm, axis), (vals, idx, _) in zip(jobs, got):
        want_vals, want_idx = expected_groups(w, nm, axis, DType.FP16)
        assert np.array_equal(idx, want_idx) and np.array_equal(vals, want_vals)
