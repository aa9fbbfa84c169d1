"""cocotb test module: the weight-update engine against ``reference.weight_update`` and
``quantize`` (the fp16 working copy).

Run by :func:`run_wu_tb`. Stimulus: fp32 master weights, velocities and gradients mixing
ordinary values, subnormals, values at fp16's rounding ties and overflow edge, and exact
cancellations; a fresh (lr, momentum) pair per job; random input gaps and output
backpressure. Checker: every word in order (NaN-aware), and without gaps and backpressure
each job's cycles against ``ceil(weights / lanes) + pipeline_latency``.
"""

from __future__ import annotations

import json
import os

import numpy as np

from nmsat.arith import ceil_div
from nmsat.config import AcceleratorConfig, from_dict, to_dict

F32 = np.float32


def corner_floats(rng: np.random.Generator, n: int, zeros: float = 0.0) -> np.ndarray:
    """fp32 values: scaled normals, fp32 subnormals, values exactly halfway between two
    fp16 values (rounding ties of the working copy), fp16 edges, and a ``zeros`` share of
    +-0 (a zero velocity and gradient leave w' = w, so its ties reach the fp16 copy)."""
    kind = rng.integers(0, 5, n)
    normal = (rng.standard_normal(n) * np.exp2(rng.integers(-30, 10, n))).astype(F32)
    sub = rng.integers(1, 1 << 23, n).astype(np.uint32).view(F32)
    h16 = rng.integers(1, 0x7C00, n).astype(np.uint16).view(np.float16)
    tie = (h16.astype(F32) + np.spacing(h16).astype(F32) / F32(2)).astype(F32)
    edge = rng.choice(np.array([65504.0, 65519.0, 65520.0, 5.96e-8, 2.98e-8, 1.0], F32), n)
    out = np.select([kind == 0, kind == 1, kind == 2, kind == 3], [normal, sub, tie, edge],
                    normal * F32(1e-3)).astype(F32)
    out = np.where(rng.random(n) < 0.5, -out, out)
    return np.where(rng.random(n) < zeros, F32(0), out).astype(F32)


def wu_cycles(cfg: AcceleratorConfig, weights: int) -> int:
    w = cfg.weight_update
    return ceil_div(weights, w.lanes) + w.pipeline_latency


try:
    import cocotb
except ImportError:  # imported for its helpers outside a simulator run
    cocotb = None

if cocotb is not None:
    from cocotb.triggers import FallingEdge

    from nmsat.reference import quantize, weight_update

    from ..tb.cocotb_parts import Checker
    from ..wu import WeightUpdateEngine
    from .codec import pack, payload_layout, unpack
    from .timing import start_timed_bench

    def _bits(x) -> int:
        return int(np.asarray(x, F32).view(np.uint32))

    @cocotb.test()
    async def weight_update_equals_reference(dut):
        with open(os.environ["NMSAT_TB_PARAMS"], encoding="utf-8") as f:
            p = json.load(f)
        cfg = from_dict(p["config"])
        rng = np.random.default_rng(p["seed"])
        model = WeightUpdateEngine(cfg)
        lanes = model.lanes
        lin, lout = payload_layout(model, "inp"), payload_layout(model, "out")
        clk = dut.clk
        driver, taken, monitor = await start_timed_bench(dut, rng, p["gap"], p["ready"])
        check = Checker(is_float=True)
        for job in range(p["jobs"]):
            n = int(rng.integers(1, 6 * lanes))
            w = corner_floats(rng, n)
            v, g = corner_floats(rng, n, zeros=0.3), corner_floats(rng, n, zeros=0.3)
            lr, mu = F32(rng.choice([0.01, 0.1, 1.0, rng.random()])), F32(rng.random())
            dut.lr.value, dut.momentum.value = _bits(lr), _bits(mu)
            pad = -n % lanes
            cols = [np.concatenate([a, np.zeros(pad, F32)]).reshape(-1, lanes) for a in (w, v, g)]
            words = [pack(lin, [{"w": _bits(a), "v": _bits(b), "g": _bits(c)}
                                for a, b, c in zip(*rows)]) for rows in zip(*cols)]
            first_in, first_out = len(taken.cycles), len(monitor.beats)
            await driver.send(words)
            while len(monitor.beats) < first_out + len(words):
                await FallingEdge(clk)
            lanes_out = [lane for b in list(monitor.beats)[first_out:] for lane in unpack(lout, b)]
            got = np.array([[int(x["w"]), int(x["v"]), int(x["w16"])] for x in lanes_out[:n]],
                           np.uint64)
            with np.errstate(all="ignore"):
                w_ref, v_ref = weight_update(w, g, v, float(lr), float(mu))
                # fp16 copies compared as fp32 words, so any NaN equals any NaN
                h_ref = quantize(w_ref, "fp16").astype(F32).view(np.uint32)
                h_got = got[:, 2].astype(np.uint16).view(np.float16).astype(F32)
            want = np.stack([w_ref.view(np.uint32), v_ref.view(np.uint32), h_ref], 1)
            check.values(f"job {job}: {n} weights, lr {lr}, momentum {mu}",
                         np.stack([got[:, 0], got[:, 1], h_got.view(np.uint32)], 1),
                         want.astype(np.uint64))
            if p["gap"] == 0 and p["ready"] >= 1:
                cycles = monitor.cycles[-1] - taken.cycles[first_in] + 1
                check.cycles(f"job {job}", cycles, wu_cycles(cfg, n))
        with open(os.environ["NMSAT_TB_RESULT"], "w", encoding="utf-8") as f:
            json.dump(check.report, f)


def run_wu_tb(cfg: AcceleratorConfig, jobs: int, seed: int, gap: float = 0.0,
              ready: float = 1.0, sim: str | None = None) -> dict:
    """Run ``jobs`` random update jobs on the generated engine; the checker's totals."""
    from ..wu import WeightUpdateEngine
    from .runner import run_unit

    params = {"config": to_dict(cfg), "jobs": jobs, "seed": seed, "gap": gap, "ready": ready}
    return run_unit(WeightUpdateEngine(cfg), "nmsat_weight_update",
                    "nmsat.rtl.cocotb_parts.wu_tb", params, sim)
