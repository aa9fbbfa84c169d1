"""Whole layer programs on the RTL tile controller against the system model.

``python benchmarks/controller_cycles.py [--cases mlp:fc2:2:2:8:16,...] [--json OUT]``

Each case is ``workload:layer:batch:N:M:dram_bytes_per_cycle``; the default is the
digits MLP's ``fc2`` (batch 2) and the CNN's ``conv2`` (batch 1) at 2:8, 2:4 and dense,
with DRAM at 16 bytes per cycle (the ``small`` preset) and at 2 (slow enough to stall
the engine), on the 2 x 2 ``small`` with every buffer single-buffered, operands seeded
5. Prints per program the RTL's start-to-done cycles (Icarus), the system model's total,
their difference, value mismatches and the wall-clock seconds of the run; exits 1 if a
difference or a mismatch is not 0.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

DEFAULT = [f"{w}:{nm}:{bpc}" for bpc in (16, 2) for w in ("mlp:fc2:2", "cnn:conv2:1")
           for nm in ("2:8", "2:4", "1:1")]
SMALL_2X2 = 'preset = "small"\n\n[array]\nrows = 2\ncols = 2\n'


def run_case(case: str, seed: int = 5) -> dict:
    from nmsat.dataflow.compiler import CompileOptions, compile_layer
    from nmsat.rtl.tb.controller_run import run_controller_program
    from nmsat.rtl.tb.program import random_dram
    from nmsat.simulator import system
    from nmsat.workloads.zoo import load

    from nmsat.config import load as load_config
    from nmsat.types import Phase

    wname, layer, batch, n, m, bpc = case.split(":")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "small_2x2.toml"
        path.write_text(SMALL_2X2)
        cfg = load_config(path).replace(**{
            **{f"buffers.{b}.double_buffered": False
               for b in ("activation", "weight", "output")},
            "dram.bytes_per_cycle": int(bpc)})
    wl = load(wname, batch=int(batch))
    prog = compile_layer(wl.workload, layer, Phase.FF, cfg, CompileOptions(
        method=wl.method or "bdwp", nm=f"{n}:{m}", batch=int(batch),
        layer_nm=tuple(wl.layer_nm.items())))
    t = time.perf_counter()
    rep = run_controller_program(prog, cfg, random_dram(prog, cfg.numerics.operand, seed),
                                 sim="icarus", system_model=system.run)
    return {"program": f"{wname} {layer} {n}:{m}", "dram_bytes_per_cycle": int(bpc),
            "computes": len(rep["computes"]), "rtl_cycles": rep["program_cycles"],
            "model_cycles": rep["system_cycles"],
            "difference": rep["program_cycles"] - rep["system_cycles"],
            "mismatches": rep["mismatches"], "tile_errors": rep["tile_errors"],
            "seconds": round(time.perf_counter() - t, 1)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default=",".join(DEFAULT))
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    rows = []
    print(f"{'program':<18} {'DRAM B/c':>8} {'COMPUTEs':>8} {'RTL':>9} {'model':>9} "
          f"{'diff':>5} {'mism':>5} {'s':>6}")
    for case in args.cases.split(","):
        r = run_case(case)
        rows.append(r)
        print(f"{r['program']:<18} {r['dram_bytes_per_cycle']:>8} {r['computes']:>8} "
              f"{r['rtl_cycles']:>9,} {r['model_cycles']:>9,} {r['difference']:>5} "
              f"{r['mismatches']:>5} {r['seconds']:>6}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    bad = [r for r in rows if r["difference"] or r["mismatches"] or r["tile_errors"]]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
