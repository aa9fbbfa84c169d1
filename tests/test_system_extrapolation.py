"""The steady-state extrapolation of repeated blocks equals simulating every repetition.

Random programs (random units, cycles, transfer sizes, dependencies across iterations
and blocks, repeat counts) are run twice, with and without extrapolation; every timing
output must be identical, and the fast run must really have skipped work.
"""

from __future__ import annotations

import random

import pytest

from nmsat import config
from nmsat.simulator.system import (CTL, DMA, ENGINE, SORE, WU, Block, OpRef, SimOp,
                                    SysProgram, attribute_wall_time, run)
from nmsat.types import Phase

UNITS = (ENGINE, DMA, SORE, WU, CTL)


def random_program(rng: random.Random) -> SysProgram:
    blocks = []
    for b in range(rng.randint(1, 5)):
        n = rng.randint(1, 7)
        ops = []
        for i in range(n):
            unit = rng.choice(UNITS)
            deps = []
            for _ in range(rng.randint(0, 3)):
                dist = rng.choice((0, 0, 1, 1, 2, 3))
                if dist == 0 and i == 0:
                    dist = 1
                k = rng.randrange(i) if dist == 0 else rng.randrange(n)
                deps.append((k, dist))
            ext = []
            if b and rng.random() < 0.5:
                rb = rng.randrange(b)
                ext.append(OpRef(rb, rng.randrange(len(blocks[rb].ops))))
            ops.append(SimOp(
                unit=unit,
                cycles=0 if unit == CTL else rng.choice((1, 3, 17, 64, 250, 1000)),
                nbytes=rng.choice((0, 1, 64, 100, 4096, 65536)) if unit == DMA else 0,
                deps=tuple(deps), ext=tuple(ext), layer=f"l{b}",
                phase=rng.choice(list(Phase)), kind="x"))
        blocks.append(Block(tuple(ops), repeat=rng.choice((1, 2, 5, 30, 120, 400))))
    return SysProgram(tuple(blocks))


def _summary(r):
    return (r.total_cycles, r.engine_end, dict(r.unit_end), r.busy, r.stall,
            r.engine_time, r.channel_busy, attribute_wall_time(r))


@pytest.mark.parametrize("seed", range(120))
def test_extrapolation_equals_full_simulation(seed):
    rng = random.Random(seed)
    cfg = config.preset("small") if seed % 2 else config.VCU1525
    prog = random_program(rng)
    fast = run(prog, cfg, extrapolate=True)
    full = run(prog, cfg, extrapolate=False)
    assert _summary(fast) == _summary(full)


def test_extrapolation_skips_work():
    """A long repeated tile loop is simulated in a handful of iterations."""
    body = (
        SimOp(DMA, nbytes=32768, deps=((2, 2),), kind="load"),
        SimOp(ENGINE, cycles=300, deps=((0, 0),), kind="compute"),
        SimOp(DMA, nbytes=8192, deps=((1, 0),), kind="store"),
    )
    prog = SysProgram((Block(body, repeat=100_000),))
    fast = run(prog, config.VCU1525)
    assert fast.jumps, "no steady state found"
    assert fast.simulated_ops < 200
    full = run(prog, config.VCU1525, extrapolate=False)
    assert _summary(fast) == _summary(full)
