"""Whole layer programs on the RTL tile controller against the system model.

``python benchmarks/controller_cycles.py [--cases mlp:fc2:2:2:8:16:double,...] [--json OUT]``

Each case is ``workload:layer:batch:N:M:dram_bytes_per_cycle:buffering`` (buffering
``single`` or ``double``: every buffer's ``double_buffered``); the default is the
digits MLP's ``fc2`` (batch 2) and the CNN's ``conv2`` (batch 1) at 2:8, 2:4 and dense,
with DRAM at 16 bytes per cycle (the ``small`` preset) and at 2 (slow enough to stall
the engine), each double-buffered (the preset's buffers) and single-buffered, on the
2 x 2 ``small``, operands seeded 5. The cases of one buffering run
in one cocotb session on one build. Prints per program the RTL's start-to-done cycles
(Icarus), the system model's total, their difference, value mismatches and the
wall-clock seconds of its run, and each session's; exits 1 if a difference or a
mismatch is not 0.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

DEFAULT = [f"{w}:{nm}:{bpc}:{buf}" for buf in ("double", "single") for bpc in (16, 2)
           for w in ("mlp:fc2:2", "cnn:conv2:1") for nm in ("2:8", "2:4", "1:1")]
SMALL_2X2 = 'preset = "small"\n\n[array]\nrows = 2\ncols = 2\n'


def prepare(case: str, seed: int = 5):
    """(program, config, DRAM image) of one case."""
    from nmsat.config import load as load_config
    from nmsat.dataflow.compiler import CompileOptions, compile_layer
    from nmsat.rtl.tb.program import random_dram
    from nmsat.types import Phase
    from nmsat.workloads.zoo import load

    wname, layer, batch, n, m, bpc, buf = case.split(":")
    if buf not in ("single", "double"):
        raise SystemExit(f"case {case}: buffering must be single or double, not {buf!r}")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "small_2x2.toml"
        path.write_text(SMALL_2X2)
        cfg = load_config(path).replace(**{
            **{f"buffers.{b}.double_buffered": buf == "double"
               for b in ("activation", "weight", "output")},
            "dram.bytes_per_cycle": int(bpc)})
    wl = load(wname, batch=int(batch))
    prog = compile_layer(wl.workload, layer, Phase.FF, cfg, CompileOptions(
        method=wl.method or "bdwp", nm=f"{n}:{m}", batch=int(batch),
        layer_nm=tuple(wl.layer_nm.items())))
    return prog, cfg, random_dram(prog, cfg.numerics.operand, seed)


def run_cases(cases: list[str]) -> list[dict]:
    """Every case, the cases of one buffering in one cocotb session (one build)."""
    from nmsat.rtl.tb.controller_run import run_controller_programs
    from nmsat.simulator import system

    rows: dict[str, dict] = {}
    for buf in ("double", "single"):
        mine = [c for c in cases if c.endswith(":" + buf)]
        if not mine:
            continue
        runs = [prepare(c) for c in mine]
        t = time.perf_counter()
        reps = run_controller_programs(runs, sim="icarus", system_model=system.run)
        wall = time.perf_counter() - t
        for case, rep in zip(mine, reps):
            wname, layer, _, n, m, bpc, _ = case.split(":")
            rows[case] = {
                "program": f"{wname} {layer} {n}:{m}", "dram_bytes_per_cycle": int(bpc),
                "buffering": buf, "computes": len(rep["computes"]),
                "rtl_cycles": rep["program_cycles"], "model_cycles": rep["system_cycles"],
                "difference": rep["program_cycles"] - rep["system_cycles"],
                "mismatches": rep["mismatches"], "tile_errors": rep["tile_errors"],
                "seconds": round(rep["seconds"], 1), "session_seconds": round(wall, 1)}
    return [rows[c] for c in cases]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default=",".join(DEFAULT))
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    rows = run_cases(args.cases.split(","))
    print(f"{'program':<18} {'buffers':>7} {'DRAM B/c':>8} {'COMPUTEs':>8} {'RTL':>9} "
          f"{'model':>9} {'diff':>5} {'mism':>5} {'s':>6}")
    for r in rows:
        print(f"{r['program']:<18} {r['buffering']:>7} {r['dram_bytes_per_cycle']:>8} "
              f"{r['computes']:>8} {r['rtl_cycles']:>9,} {r['model_cycles']:>9,} "
              f"{r['difference']:>5} {r['mismatches']:>5} {r['seconds']:>6}")
    sessions = {r["buffering"]: r["session_seconds"] for r in rows}
    print("wall-clock per session (build + run): "
          + ", ".join(f"{k} {v} s" for k, v in sessions.items()))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    bad = [r for r in rows if r["difference"] or r["mismatches"] or r["tile_errors"]]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
