"""Whole layer programs on the accelerator top (``rtl/top.py``: AXI4-Lite, AXI4 master,
hardware DMA) against the system model.

``python benchmarks/rtl_top_cycles.py [--array 2x2]``

Runs the digits MLP's ``fc2`` (batch 2) dense, 2:4 and 2:8 and the CNN's ``conv2``
(batch 1, IM2COL) 2:4 on the ``small`` preset (or its 2 x 2 array) in one cocotb session
under Icarus (``cocotbext-axi``: ``AxiRam`` DRAM, ``AxiLiteMaster``), operands seeded 3.
Prints per program the STOREd words and mismatches, the RTL's ``CYCLES``, the system
model's total, the model's total with every LOAD's and STORE's ``bytes`` replaced by the
bytes the top's DMA moves (its word layouts), both byte counts, the AXI beat counters
and the first LOAD's timing. Exits 1 on a value mismatch (cycles differ: docs/rtl.md,
"Accelerator top (AXI)").
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time

from nmsat.arith import ceil_div
from nmsat.config import PRESETS
from nmsat.dataflow import isa
from nmsat.dataflow.compiler import CompileOptions, compile_layer
from nmsat.rtl.axi import axi_params
from nmsat.rtl.layouts import EngineShape
from nmsat.rtl.tb.program import random_dram
from nmsat.rtl.tb.top_run import run_top_programs
from nmsat.rtl.top import word_slot
from nmsat.simulator.system import run as system_run
from nmsat.types import Phase
from nmsat.workloads.zoo import load

CASES = (("mlp", "fc2", 2, "1:1"), ("mlp", "fc2", 2, "2:4"), ("mlp", "fc2", 2, "2:8"),
         ("cnn", "conv2", 1, "2:4"))


def layout_bytes(ins, cfg) -> int:
    """Bytes the top's DMA moves for a LOAD or STORE (``rtl/top.py``'s layouts)."""
    sh, p = EngineShape.from_config(cfg), axi_params(cfg)
    R, C = sh.rows, sh.cols
    if isinstance(ins, isa.Store):
        return ceil_div(ins.rows, R) * ceil_div(ins.cols, C) * R * C * 4
    kpc = ins.nm.k_per_chunk(sh.lanes, sh.window)
    if ins.buffer is isa.Buffer.WGT:
        return (ceil_div(ins.cols, C) * ceil_div(ins.rows, kpc) * C
                * word_slot(sh.slots_layout.size, p))
    return ins.rows * ceil_div(ceil_div(ins.cols, kpc), R) * R * word_slot(
        sh.window_layout.size, p)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--array", choices=("4x4", "2x2"), default="4x4")
    args = ap.parse_args()
    cfg = PRESETS["small"]
    if args.array == "2x2":
        cfg = cfg.replace(**{"array.rows": 2, "array.cols": 2})
    runs, names, relaid, moved = [], [], [], []
    for workload, layer, batch, nm in CASES:
        wl = load(workload, batch=batch)
        prog = compile_layer(wl.workload, layer, Phase.FF, cfg, CompileOptions(
            method="dense" if nm == "1:1" else "bdwp", nm=nm, batch=batch,
            layer_nm=tuple(wl.layer_nm.items())))
        runs.append((prog, cfg, random_dram(prog, cfg.numerics.operand, 3)))
        names.append(f"{workload}:{layer}:{nm}:b{batch}")
        xfer = lambda x: isinstance(x, (isa.Load, isa.Store))
        relaid.append(dataclasses.replace(prog, instructions=tuple(
            dataclasses.replace(x, bytes=layout_bytes(x, cfg)) if xfer(x) else x
            for x in prog.instructions)))
        moved.append((sum(x.bytes for x, _, _ in prog.unrolled() if xfer(x)),
                      sum(layout_bytes(x, cfg) for x, _, _ in prog.unrolled() if xfer(x))))
    t = time.time()
    bad = 0
    for n, r, p2, (mb, lb) in zip(names, run_top_programs(runs, "icarus",
                                                          system_model=system_run),
                                  relaid, moved):
        g = r["registers"]
        bad += r["mismatches"]
        print(json.dumps({
            "program": n, "words": r["words"], "mismatches": r["mismatches"],
            "rtl_program_cycles": r["rtl_program_cycles"],
            "model_program_cycles": r["model_program_cycles"],
            "model_cycles_layout_bytes": system_run(p2, cfg, extrapolate=False).total_cycles,
            "model_bytes": mb, "layout_bytes": lb, "read_beats": g["READ_BEATS"],
            "write_beats": g["WRITE_BEATS"], "fetch_cycles": g["FETCH_CYCLES"],
            "engine_busy": g["ENGINE_BUSY"], "engine_wait": g["ENGINE_WAIT"],
            "model_engine_stall": r["model_engine_stall"],
            "first_loads_rtl": r["rtl_transfers"]["load"][:2],
            "first_loads_model_dram": r["model_transfers"]["load"][:2],
            "first_ar": r["axi"]["ar"][:1], "first_r": r["axi"]["r"][:1]}))
    print(f"seconds {time.time() - t:.1f}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
