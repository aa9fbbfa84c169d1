"""cocotb test module: the multi-lane SORE against ``reference.compress`` (FF and BP views).

Run by :func:`run_sore_tb`. Stimulus: random ``W[out, in]`` drawn from a pool full of equal
magnitudes (ties), +0/-0 and a subnormal, with widths that leave partial groups; every
pattern of the config; both views; random input gaps and output backpressure. Reference:
:mod:`nmsat.rtl.tb.sore_model` over ``reference.compress``. Checker: values and indices in
order, and (without gaps and backpressure) each view's cycles against
``ceil(G / L) x M x cycles_per_weight + pipeline_latency``.
"""

from __future__ import annotations

import json
import os

import numpy as np

from nmsat.arith import ceil_div
from nmsat.config import AcceleratorConfig, from_dict, to_dict
from nmsat.types import NM, DType

POOL = {"fp16": [0.0, -0.0, 1.0, -1.0, 2.0, -2.0, 0.5, 6e-8, 65504.0, -3.0],
        "bf16": [0.0, -0.0, 1.0, -1.0, 2.0, -2.0, 0.5, 1e-40, 3e38, -3.0],
        "int8": [0, 1, -1, 2, -2, 127, -128, 5, -5, 3],
        "int16": [0, 1, -1, 2, -2, 32767, -32768, 5, -5, 300]}


def random_matrix(rng: np.random.Generator, dtype: str) -> np.ndarray:
    """A small weight matrix (1..6 x 1..13) of tie-heavy values of ``dtype``."""
    rows, cols = int(rng.integers(1, 7)), int(rng.integers(1, 14))
    pool = np.array(POOL[dtype], np.float64)
    w = pool[rng.integers(0, len(pool), (rows, cols))]
    if DType.parse(dtype).is_float:
        return w.astype(np.float16 if dtype == "fp16" else np.float32)
    return w.astype(np.int8 if dtype == "int8" else np.int16)


def view_cycles(cfg: AcceleratorConfig, groups: int, nm: NM) -> int:
    s = cfg.sore
    return ceil_div(groups, s.lanes) * nm.m * s.cycles_per_weight + s.pipeline_latency


try:
    import cocotb
except ImportError:  # imported for its helpers outside a simulator run
    cocotb = None

if cocotb is not None:
    from cocotb.triggers import FallingEdge

    from ..fp import Numeric
    from ..sore import Sore
    from ..tb.cocotb_parts import Checker
    from ..tb.sore_model import beats, expected_groups, view_groups
    from .codec import pack, payload_layout, unpack
    from .timing import start_timed_bench

    @cocotb.test()
    async def sore_views_equal_reference(dut):
        with open(os.environ["NMSAT_TB_PARAMS"], encoding="utf-8") as f:
            p = json.load(f)
        cfg, dt = from_dict(p["config"]), DType.parse(p["dtype"])
        rng = np.random.default_rng(p["seed"])
        model = Sore(cfg, dt)
        lin, lout = payload_layout(model, "inp"), payload_layout(model, "out")
        clk = dut.clk
        driver, taken, monitor = await start_timed_bench(dut, rng, p["gap"], p["ready"])
        check = Checker(is_float=False)
        measured = []
        for job in range(p["jobs"]):
            w = random_matrix(rng, dt.value)
            nm = cfg.array.patterns[int(rng.integers(len(cfg.array.patterns)))]
            axis = int(rng.integers(2))  # 1: FF view (along in), 0: BP view (along out)
            groups = view_groups(Numeric(dt).to_bits(w), nm, axis)
            want_v, want_i = expected_groups(w, nm, axis, dt)
            dut.n.value, dut.m.value = nm.n, nm.m
            words = [pack(lin, {"w": lane_words, "last": 0})
                     for blk in beats(groups, model.lanes) for lane_words in blk]
            rounds = len(words) // nm.m
            first_in, first_out = len(taken.cycles), len(monitor.beats)
            await driver.send(words)
            while len(monitor.beats) < first_out + rounds:
                await FallingEdge(clk)
            outs = [unpack(lout, b) for b in list(monitor.beats)[first_out:]]
            flat = [g for beat in outs for g in beat][:len(want_v)]
            got_v = np.array([[int(g[s]["value"]) for s in range(nm.n)] for g in flat])
            got_i = np.array([[int(g[s]["index"]) for s in range(nm.n)] for g in flat])
            name = f"job {job}: {nm} {'FF' if axis else 'BP'} {w.shape}"
            check.values(name, np.concatenate([got_v, got_i], 1),
                         np.concatenate([want_v.astype(np.int64), want_i], 1))
            if p["gap"] == 0 and p["ready"] >= 1:
                cycles = monitor.cycles[-1] - taken.cycles[first_in] + 1
                check.cycles(name, cycles, view_cycles(cfg, len(want_v), nm))
                measured.append([len(want_v), nm.m, cycles])
        with open(os.environ["NMSAT_TB_RESULT"], "w", encoding="utf-8") as f:
            json.dump({**check.report, "views": measured}, f)


def run_sore_tb(cfg: AcceleratorConfig, dtype: str, jobs: int, seed: int, gap: float = 0.0,
                ready: float = 1.0, sim: str | None = None) -> dict:
    """Run ``jobs`` random views on the generated SORE; the checker's totals."""
    from ..sore import Sore
    from .runner import run_unit

    params = {"config": to_dict(cfg), "dtype": dtype, "jobs": jobs, "seed": seed,
              "gap": gap, "ready": ready}
    return run_unit(Sore(cfg, dtype), "nmsat_sore", "nmsat.rtl.cocotb_parts.sore_tb",
                    params, sim)
