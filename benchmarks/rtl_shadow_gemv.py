"""Issue 17's batch-1 GEMV on the generated RTL with shadow weights.

``python benchmarks/rtl_shadow_gemv.py [--m 1 --n 1000 --k 512] [--ports 1] [--sim verilator]
[--json OUT]``

A dense 8 x 8 WS engine (one multiplier per PE, ``vcu1525``'s La = 4 and fp16, shadow
weights with ``--ports`` load chains per PE row; buffers single-buffered and sized so the
whole 512 x 1,000 weight matrix is one COMPUTE block, :func:`gemv_config`) runs one
interleaved WS block ``m x k x n`` with random operands through the cocotb engine
testbench (Verilator -O2 by default). Prints the RTL's COMPUTE cycles, the tile model's
(``timing.block_cycles``), the per-cycle model's when ``--percycle`` is given
(``simulator.percycle.simulate``: minutes at this size), the weight blocks
(ceil(k / R) x ceil(n / C)), cycles per block, value mismatches (against
``reference.engine_gemm``) and the wall-clock seconds. Exits 1 if the RTL and the model
disagree, a value mismatches, or a block costs more than 10 cycles.
"""

from __future__ import annotations

import argparse
import json
import sys
import time


def gemv_config(ports: int = 1):
    """The must-reach engine: dense 8 x 8, P = A = 1, shadow weights, single-buffered
    buffers just large enough for the block, so the simulator builds quickly (the other
    fields are ``vcu1525``'s): 1,536 KiB of weights (one 3-byte slot per weight), which
    the engine builds as 8 banks (one chain per row) of 8,192 eight-lane words = 524,288
    slots for the 512,000 weights (the block's words are at ``ct kcr + kt`` < 125 x 64;
    the compiler counts 125 x 64 x 8 = 64,000 of the 65,536 column-layout words),
    16 KiB ACT, 64 KiB OUT."""
    from nmsat.config import VCU1525

    buf = {f"buffers.{b}.{f}": v for b, kib in (("activation", 16), ("weight", 1536),
                                                 ("output", 64))
           for f, v in (("kib", kib), ("double_buffered", False))}
    return VCU1525.replace(**{"array.rows": 8, "array.cols": 8, "array.macs_per_pe": 1,
                              "array.act_window": 1, "array.nm_patterns": [],
                              "array.shadow_weights": True, "array.weight_load_ports": ports,
                              **buf})


def run(m: int, n: int, k: int, ports: int = 1, sim: str | None = None,
        percycle: bool = False) -> dict:
    from nmsat.arith import ceil_div
    from nmsat.rtl.tb.runner import run_engine_tb

    cfg = gemv_config(ports)
    t0 = time.perf_counter()
    rep = run_engine_tb(cfg, "fp16", 1, seed=17, stall=0.0, sim=sim,
                        blocks=[("ws", "1:1", m, n, k, True)])
    blocks = ceil_div(k, cfg.array.rows) * ceil_div(n, cfg.array.cols)
    b = rep["blocks"][0]
    out = {"m": m, "n": n, "k": k, "ports": ports, "rtl_cycles": b["rtl_cycles"],
           "model_cycles": b["model_cycles"], "weight_blocks": blocks,
           "cycles_per_block": b["rtl_cycles"] / blocks, "mismatches": rep["mismatches"],
           "cycle_mismatches": rep["cycle_mismatches"],
           "seconds": round(time.perf_counter() - t0, 1)}
    if percycle:
        out["percycle_cycles"] = percycle_cycles(cfg, m, n, k)
    return out


def percycle_cycles(cfg, m: int, n: int, k: int) -> int:
    """Steps of the same block in the per-cycle model (random fp16 operands)."""
    import numpy as np

    from nmsat.simulator import percycle
    from nmsat.types import NM, Dataflow

    rng = np.random.default_rng(17)
    a = rng.standard_normal((m, k)).astype(np.float16)
    b = rng.standard_normal((k, n)).astype(np.float16)
    return percycle.simulate(a, b, cfg=cfg, dataflow=Dataflow.WS, nm=NM(1, 1),
                             interleave=True).cycles


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--m", type=int, default=1)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--k", type=int, default=512)
    ap.add_argument("--ports", type=int, default=1)
    ap.add_argument("--sim", choices=["icarus", "verilator"], default=None)
    ap.add_argument("--percycle", action="store_true")
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    r = run(a.m, a.n, a.k, a.ports, a.sim, a.percycle)
    print(f"{a.m} x {a.k} x {a.n} GEMV, dense 8 x 8 WS, shadow weights ({a.ports} port(s)): "
          f"RTL {r['rtl_cycles']:,} cycles, tile model {r['model_cycles']:,}"
          + (f", per-cycle model {r['percycle_cycles']:,}" if "percycle_cycles" in r else "")
          + f"; {r['weight_blocks']:,} weight blocks, {r['cycles_per_block']:.3f} cycles/block;"
          f" value mismatches {r['mismatches']}; {r['seconds']} s")
    if a.json:
        with open(a.json, "w", encoding="utf-8") as f:
            json.dump(r, f, indent=2)
    ok = (r["rtl_cycles"] == r["model_cycles"] == r.get("percycle_cycles", r["model_cycles"])
          and r["mismatches"] == 0 and r["cycles_per_block"] <= 10)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
