"""Whole layer programs on the accelerator top (``rtl/top.py``: AXI4-Lite, AXI4 master,
hardware DMA) against the system model.

``python benchmarks/rtl_top_cycles.py [--array 2x2]``

Runs the digits MLP's ``fc2`` (batch 2) FF dense, 2:4 and 2:8, the CNN's ``conv2``
(batch 1, IM2COL) FF 2:4, and the MLP's fc2 BP and fc1 WG at 2:8 on the ``small`` preset
(or FF programs on its 2 x 2 array, fc1 2:8 and conv1 dense among them) with ``dram.dma =
word_slots`` (the top's DMA) in one cocotb session under Icarus (``cocotbext-axi``:
``AxiRam`` DRAM timed by the system model's memory model, ``AxiLiteMaster``), operands
seeded 3. Prints per program the STOREd words and
mismatches, the RTL's ``CYCLES``, the system model's total and their difference, the
model's total with ``dram.dma = packed`` (an idealised DMA that moves the tiles'
element bytes), the bytes each moves, the AXI beat counters, and the engine's stall
counter beside the model's engine stall. Exits 1 on a value mismatch, a cycle
difference or a stall difference.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from nmsat.config import PRESETS
from nmsat.dataflow import isa, machine
from nmsat.dataflow.compiler import CompileOptions, compile_layer
from nmsat.rtl.tb.program import random_dram
from nmsat.rtl.tb.top_run import run_top_programs
from nmsat.simulator.system import run as system_run
from nmsat.types import Phase
from nmsat.workloads.zoo import load

CASES = {"4x4": (("mlp", "fc2", 2, "1:1", "ff"), ("mlp", "fc2", 2, "2:4", "ff"),
                 ("mlp", "fc2", 2, "2:8", "ff"), ("cnn", "conv2", 1, "2:4", "ff"),
                 ("mlp", "fc2", 2, "2:8", "bp"), ("mlp", "fc1", 2, "2:8", "wg")),
         "2x2": (("mlp", "fc2", 2, "1:1", "ff"), ("mlp", "fc1", 2, "2:8", "ff"),
                 ("cnn", "conv1", 1, "1:1", "ff"), ("cnn", "conv2", 1, "2:4", "ff"))}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--array", choices=tuple(CASES), default="4x4")
    args = ap.parse_args()
    cfg = PRESETS["small"].replace(**{"dram.dma": "word_slots"})
    if args.array == "2x2":
        cfg = cfg.replace(**{"array.rows": 2, "array.cols": 2})
    packed = cfg.replace(**{"dram.dma": "packed"})
    runs, names = [], []
    for workload, layer, batch, nm, phase in CASES[args.array]:
        wl = load(workload, batch=batch)
        prog = compile_layer(wl.workload, layer, Phase(phase), cfg, CompileOptions(
            method="dense" if nm == "1:1" else "bdwp", nm=nm, batch=batch,
            layer_nm=tuple(wl.layer_nm.items())))
        runs.append((prog, cfg, random_dram(prog, cfg.numerics.operand, 3)))
        names.append(f"{workload}:{layer}:{phase}:{nm}:b{batch}")
    t = time.time()
    bad = 0
    for n, (prog, _, _), r in zip(names, runs, run_top_programs(runs, "icarus",
                                                                system_model=system_run)):
        g = r["registers"]
        bad += r["mismatches"] + (r["cycle_difference"] != 0) + (
            g["ENGINE_STALL"] != sum(r["model_engine_stall"].values()))
        xfers = [x for x, _, _ in prog.unrolled() if isinstance(x, (isa.Load, isa.Store))]
        print(json.dumps({
            "program": n, "words": r["words"], "mismatches": r["mismatches"],
            "rtl_program_cycles": r["rtl_program_cycles"],
            "model_program_cycles": r["model_program_cycles"],
            "cycle_difference": r["cycle_difference"],
            "model_cycles_packed": system_run(prog, packed, extrapolate=False).total_cycles,
            "word_slots_bytes": sum(machine.dma_bytes(x, cfg) for x in xfers),
            "packed_bytes": sum(x.bytes for x in xfers),
            "read_beats": g["READ_BEATS"], "write_beats": g["WRITE_BEATS"],
            "fetch_cycles": g["FETCH_CYCLES"], "engine_busy": g["ENGINE_BUSY"],
            "engine_wait": g["ENGINE_WAIT"], "engine_stall": g["ENGINE_STALL"],
            "model_engine_stall": r["model_engine_stall"],
            "testbench_seconds": round(r["seconds"], 1)}))
    print(f"seconds {time.time() - t:.1f}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
