"""Random whole layer programs on the RTL tile controller (cocotb, Icarus), all in one
session on one build: random linear and convolution layers, N:M patterns, dataflow
choices, interleave and batch, each with a random DMA (DRAM channels, bytes per cycle,
latency and burst, buffer ports). Every program: 0 value mismatches against the golden
executor, every LOAD/STORE tile the program's, and start-to-done cycles equal to the
system model's total (difference 0). ``NMSAT_RANDOM_PROGRAMS`` sets the count (default
50) and ``NMSAT_RANDOM_SEED`` the seed (default: a new one per run, printed)."""

import os
import random
import time

import pytest
from nmsat.rtl.tb.controller_run import run_controller_programs
from nmsat.rtl.tb.random_programs import random_case
from nmsat.simulator import system

pytestmark = pytest.mark.rtl

SINGLE = {f"buffers.{b}.double_buffered": False for b in ("activation", "weight", "output")}


SMALL_BUFFERS = {f"buffers.{b}.kib": 2 for b in ("activation", "weight", "output")}


def test_random_programs_equal_the_system_model(small_2x2):
    n = int(os.environ.get("NMSAT_RANDOM_PROGRAMS", "50"))
    seed = int(os.environ.get("NMSAT_RANDOM_SEED", str(time.time_ns() % 2**32)))
    print(f"random programs: {n}, seed {seed}")
    rng = random.Random(seed)
    # 2 KiB buffers: blocks split M, N and K, so programs loop, keep blocks resident and
    # accumulate K blocks
    cfg = small_2x2[1].replace(**SINGLE, **SMALL_BUFFERS)

    def too_long(prog, run_cfg):
        return system.run(prog, run_cfg, extrapolate=False, record=False).total_cycles > 8000

    cases = [random_case(rng, cfg, seed + i, too_long) for i in range(n)]
    reps = run_controller_programs([c[:3] for c in cases], sim="icarus",
                                   system_model=system.run)
    bad = []
    for (prog, _run_cfg, _, desc), rep in zip(cases, reps):
        stored = sum(t.rows * t.cols for t in prog.tensors if t.name.endswith(".y"))
        ok = (rep["tile_errors"] == [] and rep["error"] == 0 and rep["mismatches"] == 0
              and rep["words"] == stored
              and rep["program_cycles"] == rep["system_cycles"]
              and [c["rtl_cycles"] for c in rep["computes"]]
              == [c["model_cycles"] for c in rep["computes"]])
        if not ok:
            bad.append(f"{desc}: RTL {rep['program_cycles']} model {rep['system_cycles']} "
                       f"mismatches {rep['mismatches']} words {rep['words']}/{stored} "
                       f"errors {rep['tile_errors'][:2]}\n{prog.listing()}")
    cycles = sum(r["program_cycles"] for r in reps)
    print(f"{n} programs, {cycles} RTL cycles, {len(bad)} failing")
    assert not bad, f"seed {seed}: {len(bad)} of {n} programs differ\n" + "\n".join(bad[:3])
