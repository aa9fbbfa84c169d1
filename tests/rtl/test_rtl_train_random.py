"""Random one-layer training steps on the RTL (cocotb, Icarus): random linear layers
(input and output widths, batch), N:M patterns, DRAM speed and latency, and one buffering
per run, all in one cocotb session. Each step (RTL SORE masks, FF, BP, WG, RTL weight
update) equals ``reference.train_step`` bit for bit and takes the system model's cycles,
per phase and per program (difference 0). ``NMSAT_RANDOM_TRAIN_STEPS`` sets the count
(default 4) and ``NMSAT_RANDOM_SEED`` the seed (default 11; ``random`` draws one, printed)."""

import os
import random
import time

import pytest

from nmsat.dataflow.compiler import CompileOptions, compile_workload
from nmsat.rtl.tb.train_run import run_train_steps
from nmsat.simulator import system
from nmsat.types import Mode
from nmsat.workloads.layers import Linear, Workload

pytestmark = pytest.mark.rtl


@pytest.mark.slow(seconds=50)
def test_random_training_steps_equal_reference_and_model(small_2x2):
    n = int(os.environ.get("NMSAT_RANDOM_TRAIN_STEPS", "4"))
    asked = os.environ.get("NMSAT_RANDOM_SEED", "11")
    seed = time.time_ns() % 2**32 if asked == "random" else int(asked)
    print(f"random training steps: {n}, seed {seed}")
    rng = random.Random(seed)
    double = rng.random() < 0.5
    base = small_2x2[1].replace(**{f"buffers.{b}.double_buffered": double
                                   for b in ("activation", "weight", "output")})
    pats = [str(p) for p in base.array.patterns if not p.dense]
    programs = []
    for _ in range(n):
        cfg = base.replace(**{"dram.bytes_per_cycle": rng.choice((1, 2, 4, 16)),
                              "dram.latency_cycles": rng.randint(1, 60)})
        layer = Linear("fc", in_features=rng.randint(3, 40), out_features=rng.randint(3, 24))
        wl = Workload("rand", (layer,), batch=rng.randint(1, 3))
        opts = CompileOptions(method="bdwp", nm=rng.choice(pats), mode=Mode.TRAIN)
        programs.append((compile_workload(wl, cfg, opts), cfg))
    reps = run_train_steps(programs, system_model=system.run, sim="icarus", seed=seed)
    for (prog, cfg), rep in zip(programs, reps):
        what = (dict(prog.meta), cfg.dram.bytes_per_cycle, cfg.dram.latency_cycles, double)
        assert rep["tile_errors"] == [] and rep["error"] == 0, what
        assert rep["mismatches"] == 0, (what, rep["layers"])
        for name, row in rep["phases"].items():
            assert row["mismatched_instructions"] == 0, (what, name, row)
        assert rep["rtl_program_cycles"] == rep["model_program_cycles"], what
        assert rep["engine_stall"] == rep["model_engine_stall"], what
