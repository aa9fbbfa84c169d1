"""RTL simulation speed beside the simulator's, on the same random tiles.

``python benchmarks/rtl_speed.py [--tiles N] [--dtypes int8,fp16] [--sims icarus,verilator]
[--json OUT]``

``python benchmarks/rtl_speed.py --programs [CASES] [--sims icarus,verilator-O0,verilator-O2]``
runs whole layer programs through the RTL tile controller instead (see
:func:`program_speed`): simulated cycles per second, the build's wall time and the
program's cycles against the system model, per simulator and Verilator C++ level.

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

from nmsat.config import SMALL
from nmsat.dataflow.timing import block_cycles
from nmsat.rtl.layouts import EngineShape
from nmsat.rtl.tb.runner import run_engine_tb
from nmsat.rtl.tb.tiles import random_tile
from nmsat.simulator import percycle, system
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
    name, _, opt = sim.partition("-")  # verilator-O2: the C++ level of the build
    if opt:
        os.environ["NMSAT_VERILATOR_OPT"] = f"-{opt}"
    t0 = time.perf_counter()
    rep = run_engine_tb(SMALL, dtype, tiles, seed, sim=name)
    wall = time.perf_counter() - t0
    if rep["mismatches"] or rep["cycle_mismatches"]:
        raise SystemExit(f"{sim} {dtype}: RTL disagrees with the reference/model: {rep['notes']}")
    return {"tiles": rep["tiles"], "cycles": rep["cycles"], "sim_seconds": rep["seconds"],
            "cycles_per_s": rep["cycles"] / rep["seconds"],
            "build_and_run_seconds": wall}


PROGRAMS = "mlp:fc2:2:2:8:16,mlp:fc2:2:1:1:16,cnn:conv2:1:1:1:2"
"""Default whole programs (``workload:layer:batch:N:M:dram_bytes_per_cycle``, as
``benchmarks/controller_cycles.py``): 8,378 + 17,069 + 27,450 cycles on the 2 x 2 ``small``."""

SMALL_2X2_SINGLE = {"array.rows": 2, "array.cols": 2,
                    **{f"buffers.{b}.double_buffered": False
                       for b in ("activation", "weight", "output")}}
"""The controlled engine's config here: the ``small`` preset's 2 x 2 variant, single-
buffered (what the tile controller builds today), fp16."""


def program_case(case: str, seed: int = 5):
    """(program, config, DRAM image) of ``workload:layer:batch:N:M:dram_bytes_per_cycle``."""
    from nmsat.dataflow.compiler import CompileOptions, compile_layer
    from nmsat.rtl.tb.program import random_dram
    from nmsat.types import Phase
    from nmsat.workloads.zoo import load

    wname, layer, batch, n, m, bpc = case.split(":")
    cfg = SMALL.replace(**SMALL_2X2_SINGLE, **{"dram.bytes_per_cycle": int(bpc)})
    wl = load(wname, batch=int(batch))
    prog = compile_layer(wl.workload, layer, Phase.FF, cfg, CompileOptions(
        method=wl.method or "bdwp", nm=f"{n}:{m}", batch=int(batch),
        layer_nm=tuple(wl.layer_nm.items())))
    return prog, cfg, random_dram(prog, cfg.numerics.operand, seed)


def program_speed(cases: str, sim: str) -> dict:
    """Run ``cases`` one after the other in one cocotb session on ``sim`` (``icarus``, or
    ``verilator-O0`` ... ``verilator-O3``: the C++ level of the build), in a fresh build
    folder. The Verilog is generated before the clock starts, so ``build_seconds`` is the
    HDL compile (the first wall time less the simulation's own seconds)."""
    from nmsat.rtl.tb.controller_run import cached_controlled, run_controller_programs

    name, _, opt = sim.partition("-")  # verilator-O2: the C++ level of the build
    runs = [program_case(c) for c in cases.split(",")]
    longest = max(len(p.instructions) for p, _, _ in runs)
    cached_controlled(runs[0][1], runs[0][1].numerics.dtype,
                      max(16, 1 << (longest - 1).bit_length()))
    if opt:
        os.environ["NMSAT_VERILATOR_OPT"] = f"-{opt}"
    t0 = time.perf_counter()
    reps = run_controller_programs(runs, sim=name, system_model=system.run)
    wall = time.perf_counter() - t0
    for c, r in zip(cases.split(","), reps):
        if r["mismatches"] or r["tile_errors"] or r["program_cycles"] != r["system_cycles"]:
            raise SystemExit(f"{sim} {c}: RTL disagrees with the reference/model: "
                             f"{r['mismatches']} mismatches, {r['tile_errors'][:2]}, "
                             f"{r['program_cycles']} vs {r['system_cycles']} cycles")
    cycles = sum(r["sim_cycles"] for r in reps)
    secs = sum(r["seconds"] for r in reps)
    return {"programs": len(reps), "program_cycles": [r["program_cycles"] for r in reps],
            "cycles": cycles, "sim_seconds": round(secs, 2), "cycles_per_s": cycles / secs,
            "build_seconds": round(wall - secs, 1), "wall_seconds": round(wall, 1)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiles", type=int, default=60)
    ap.add_argument("--dtypes", default="int8,fp16")
    ap.add_argument("--sims", default="icarus,verilator")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", metavar="OUT")
    ap.add_argument("--programs", nargs="?", const=PROGRAMS, metavar="CASES",
                    help=f"whole programs through the tile controller (default {PROGRAMS})")
    args = ap.parse_args(argv)
    if args.programs:
        sims = (args.sims if args.sims != ap.get_default("sims")
                else "icarus,verilator-O0,verilator-O2")
        out = {"config": "small 2x2 single-buffered fp16", "cases": args.programs,
               "results": {}}
        with tempfile.TemporaryDirectory() as cache:
            os.environ["NMSAT_RTL_CACHE"] = cache
            for sim in sims.split(","):
                r = out["results"][sim] = program_speed(args.programs, sim)
                print(f"{sim}: {r['cycles_per_s']:,.0f} cyc/s ({r['cycles']:,} cycles in "
                      f"{r['sim_seconds']} s), build {r['build_seconds']} s, programs "
                      f"{r['program_cycles']} cycles = system model", flush=True)
        if args.json:
            with open(args.json, "w", encoding="utf-8") as f:
                json.dump(out, f, indent=2)
        return 0
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
