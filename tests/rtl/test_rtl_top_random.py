"""Random whole layer programs on the accelerator top (``rtl/top.py``: AXI4-Lite, AXI4
master, hardware DMA; cocotb + ``cocotbext-axi``, Icarus) against the system model with
``dram.dma = word_slots``: random linear and convolution layers and batched activation
products (attention's, whose tiles of a few rows STORE from inside an engine row block)
in a random GEMM phase (FF, BP or WG), N:M patterns, dataflow choices, interleave and
batch on the 2 x 2 engine, in two builds: every buffer double-buffered with a DRAM
latency of 3 to 16 cycles, and every buffer single-buffered with 17 to 48, each with a
random DRAM geometry (4, 8 or 16 bytes per cycle, bursts of 1, 2 or 4 bus beats, up to
64 bytes against the 16-byte STORE blocks and word slots, so that runs start inside
bursts; narrow enough that the engine waits on memory). Every program: 0 value mismatches
against the golden executor, program cycles (``CYCLES``) equal to the system model's
total (difference 0), and the engine's stall cycles (``ENGINE_STALL``) equal to the
model's engine stall over every cause. Programs the host refuses (``top_run.top_host``:
a convolution's BP, whose STORE scatter-adds; a run that starts inside a burst and
crosses a 4 KiB page) are drawn again. A product's BP reads its output gradient as both
operands (two descriptors).

``NMSAT_TOP_RANDOM_PROGRAMS`` sets the programs per build (default 12) and
``NMSAT_RANDOM_SEED`` the seed (default 7; ``random`` draws one, printed). The top's
testbench runs about 150 cycles per second (``cocotbext-axi``'s Python per beat), so the
programs are kept under 3,000 model cycles."""

import os
import random
import time

import pytest

from nmsat.config import PRESETS
from nmsat.dataflow import isa
from nmsat.rtl.axi import axi_params
from nmsat.rtl.layouts import EngineShape
from nmsat.rtl.tb.dram_image import dma_runs_at, dram_image
from nmsat.rtl.tb.program import random_dram
from nmsat.rtl.tb.random_programs import random_case
from nmsat.rtl.tb.top_run import run_top_programs, top_host
from nmsat.simulator import system
from nmsat.types import Phase

pytestmark = pytest.mark.rtl

BUFFERS = ("activation", "weight", "output")
BUILDS = (
    ({f"buffers.{b}.double_buffered": True for b in BUFFERS}, (3, 16)),
    ({f"buffers.{b}.double_buffered": False for b in BUFFERS}, (17, 48)),
)
"""Per build: the buffering, and the range its DRAM latency is drawn from."""


def random_dram_geometry(rng: random.Random, latency: tuple[int, int]) -> dict:
    """A DRAM the 2 x 2 top can take (its bus divides the 16-byte STORE block and the
    word slots) with bursts of 1, 2 or 4 bus beats, so that with bursts wider than a
    block or slot runs start inside them: the AXI width, burst length and latency are
    build parameters."""
    bpc = rng.choice((4, 8, 16))
    return {"dram.bytes_per_cycle": bpc,
            "dram.burst_bytes": bpc * rng.choice((1, 2, 4)),
            "dram.latency_cycles": rng.randint(*latency)}


def _starts_inside_a_burst(prog: isa.Program, cfg, dram: dict) -> bool:
    p, shape = axi_params(cfg), EngineShape.from_config(cfg)
    img = dram_image(prog, cfg, dram, p, shape)
    return any(a % cfg.dram.burst_bytes for ins, r0, c0 in prog.unrolled()
               if isinstance(ins, (isa.Load, isa.Store))
               for a, _ in dma_runs_at(img, shape, p, ins, r0, c0))


def _seed() -> int:
    asked = os.environ.get("NMSAT_RANDOM_SEED", "7")
    return time.time_ns() % 2**32 if asked == "random" else int(asked)


def _unfit(prog, cfg) -> bool:
    """Too long for the testbench, or refused by the host."""
    if system.run(prog, cfg, extrapolate=False, record=False).total_cycles > 3000:
        return True
    try:
        top_host(prog, cfg, random_dram(prog, cfg.numerics.operand, 0))
    except ValueError:
        return True
    return False


def _run_builds(base, builds, n: int, seed: int, kib: int, matmul: float) -> list[str]:
    """Per build (buffering, latency range): a random DRAM geometry and ``n`` random
    programs on the top, each checked against the system model; returns the failures."""
    rng = random.Random(seed)
    bad, total, inside, both, unaligned, t0 = [], 0, 0, 0, 0, time.perf_counter()
    sored = 0
    for b, (buffering, latency) in enumerate(builds):
        dram = random_dram_geometry(rng, latency)
        print(f"build {b}: {dram}")
        cfg = base.replace(**{"dram.dma": "word_slots", "dram.channels": 1,
                              "buffers.activation.kib": kib, "buffers.weight.kib": kib,
                              "buffers.output.kib": kib, **buffering, **dram})
        cases = [random_case(rng, cfg, seed + 100 * b + i, _unfit, dma=lambda _r, c: c,
                             phases=(Phase.FF, Phase.BP, Phase.WG, Phase.SORE, Phase.WU),
                             matmul=matmul, masks=0.5)
                 for i in range(n)]
        reps = run_top_programs([c[:3] for c in cases], "icarus", system_model=system.run)
        for (prog, _, dram_img, desc), rep in zip(cases, reps):
            unaligned += _starts_inside_a_burst(prog, cfg, dram_img)
            out = {i.tensor for i in prog.instructions if isinstance(i, isa.Store)}
            stored = sum(prog.tensors[t].rows * prog.tensors[t].cols for t in out)
            stored += rep["unit_words"]
            sored += rep["unit_words"] > 0
            total += rep["rtl_program_cycles"]
            inside += any(r0 % cfg.array.rows for i, r0, _ in prog.unrolled()
                          if isinstance(i, isa.Store))
            bufs = {(i.tensor, i.buffer) for i in prog.instructions if isinstance(i, isa.Load)}
            both += len({t for t, _ in bufs}) < len(bufs)
            stall = sum(rep["model_engine_stall"].values())
            if not (rep["irq"] and not rep["error"] and rep["mismatches"] == 0
                    and rep["words"] == stored and rep["cycle_difference"] == 0
                    and rep["registers"]["ENGINE_STALL"] == stall):
                bad.append(f"build {b} {dram} {desc}: RTL {rep['rtl_program_cycles']} model "
                           f"{rep['model_program_cycles']} mismatches {rep['mismatches']} "
                           f"words {rep['words']}/{stored} engine stall "
                           f"{rep['registers']['ENGINE_STALL']} model {stall}\n"
                           f"{prog.listing()}")
    print(f"{n * len(builds)} programs ({sored} with the SORE or weight update, {inside} "
          f"storing from inside a row block, {both} "
          f"reading a tensor as both operands, {unaligned} with runs that start inside a "
          f"burst), {total} RTL cycles, {len(bad)} failing, "
          f"{time.perf_counter() - t0:.0f} s")
    return bad


@pytest.mark.slow(seconds=400)
def test_random_programs_on_the_top_equal_the_system_model(small_2x2):
    n = int(os.environ.get("NMSAT_TOP_RANDOM_PROGRAMS", "12"))
    seed = _seed()
    print(f"random top programs: {n} per build, seed {seed}")
    bad = _run_builds(small_2x2[1], BUILDS, n, seed, 2, 0.25)
    assert not bad, f"seed {seed}: {len(bad)} programs differ\n" + "\n".join(bad[:3])


@pytest.mark.slow(seconds=300)
def test_random_programs_on_the_4x4_top_equal_the_system_model():
    """The same on the ``small`` preset's own 4 x 4 engine (64-byte STORE blocks, 4-row
    blocks whose STOREs from rows 1-3 rotate the rows by the order of the held block's
    beats): one build, its buffering and DRAM latency drawn from the seed, and half the
    programs batched activation products (a product of 1-3 rows from row 1-3 of a block)."""
    n = int(os.environ.get("NMSAT_TOP_RANDOM_PROGRAMS_4X4", "6"))
    seed = _seed()
    rng = random.Random(seed + 1)
    build = BUILDS[rng.randrange(len(BUILDS))]
    print(f"random 4 x 4 top programs: {n}, seed {seed}")
    bad = _run_builds(PRESETS["small"], (build,), n, seed + 1, 8, 0.5)
    assert not bad, f"seed {seed}: {len(bad)} programs differ\n" + "\n".join(bad[:3])
