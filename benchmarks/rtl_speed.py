"""RTL simulation speed beside the simulator's, on the same random tiles.

``python benchmarks/rtl_speed.py [--tiles N] [--dtypes int8,fp16] [--sims icarus,verilator]
[--json OUT]``

For each operand type the same seeded random tiles (``small`` preset, dense and N:M, OS
and WS, with load gaps, stalls and backpressure) run on

* the generated RTL under cocotb: cycles per second of simulated clock (loads, COMPUTE and
  STORE cycles), wall-clock, build time reported separately;
* the per-cycle model (``simulator.percycle.simulate``): block cycles per second;
* the tile model (``dataflow.timing.block_cycles``): block cycles per second.

Every RTL run also checks values and cycle counts (a mismatch aborts the benchmark).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np
from nmsat.dataflow.timing import block_cycles
from nmsat.rtl.layouts import EngineShape
from nmsat.rtl.tb.runner import run_engine_tb
from nmsat.rtl.tb.tiles import random_tile
from nmsat.simulator import percycle

from nmsat.config import SMALL
from nmsat.types import NM, Dataflow

PATTERNS = ["1:1", "1:4", "2:4", "2:8", "1:8", "4:8"]


def model_speed(dtype: str, tiles: int, seed: int) -> dict:
    """Per-cycle and tile-model cycles/s on tiles shaped like the RTL run's."""
    shape = EngineShape.from_config(SMALL, dtype)
    rng = np.random.default_rng(seed)
    blocks = []
    for i in range(tiles):
        nm = PATTERNS[i % 6]
        df = ["os", "ws"][(i // 6) % 2]
        m, n = (int(x) for x in rng.integers(1, 10, 2))
        k = int(rng.integers(1, 25))
        blocks.append((random_tile(rng, shape, m, k, n, nm), df, bool(rng.integers(2))))
    t0, cyc = time.process_time(), 0
    for t, df, il in blocks:
        r = percycle.simulate(t.a, t.b, cfg=SMALL, dataflow=df, nm=t.nm, interleave=il,
                              dtype=dtype)
        cyc += r.cycles
    per = time.process_time() - t0
    t0 = time.process_time()
    for _ in range(20):
        tm = sum(block_cycles(Dataflow.parse(df), t.a.shape[0], t.b.shape[1], t.a.shape[1],
                              NM.parse(t.nm), il, SMALL) for t, df, il in blocks)
    fast = (time.process_time() - t0) / 20
    return {"block_cycles": cyc, "percycle_cycles_per_s": cyc / per,
            "tile_model_cycles_per_s": tm / fast}


def rtl_speed(dtype: str, tiles: int, seed: int, sim: str) -> dict:
    t0 = time.perf_counter()
    rep = run_engine_tb(SMALL, dtype, tiles, seed, sim=sim)
    wall = time.perf_counter() - t0
    if rep["mismatches"] or rep["cycle_mismatches"]:
        raise SystemExit(f"{sim} {dtype}: RTL disagrees with the reference/model: {rep['notes']}")
    return {"tiles": rep["tiles"], "cycles": rep["cycles"], "sim_seconds": rep["seconds"],
            "cycles_per_s": rep["cycles"] / rep["seconds"],
            "build_and_run_seconds": wall}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiles", type=int, default=60)
    ap.add_argument("--dtypes", default="int8,fp16")
    ap.add_argument("--sims", default="icarus,verilator")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", metavar="OUT")
    args = ap.parse_args(argv)
    out: dict = {"preset": "small", "tiles": args.tiles, "results": {}}
    with tempfile.TemporaryDirectory() as cache:
        os.environ.setdefault("NMSAT_RTL_CACHE", cache)
        for dt in args.dtypes.split(","):
            row = {"models": model_speed(dt, args.tiles, args.seed)}
            for sim in args.sims.split(","):
                row[sim] = rtl_speed(dt, args.tiles, args.seed, sim)
            out["results"][dt] = row
            print(f"{dt}: " + "  ".join(
                f"{s} {row[s]['cycles_per_s']:,.0f} cyc/s" for s in args.sims.split(","))
                + f"  per-cycle model {row['models']['percycle_cycles_per_s']:,.0f} cyc/s"
                + f"  tile model {row['models']['tile_model_cycles_per_s']:,.0f} cyc/s",
                flush=True)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(out, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
