"""The RTL's shadow-weight preload (``array.shadow_weights``, docs/rtl.md): random blocks
bit-exact against ``reference.engine_gemm`` and cycle-exact against
``timing.block_cycles`` (equal to the per-cycle model, tests/test_tile_model_equivalence.py)
under random stalls, in Amaranth's simulator and on the generated Verilog under cocotb;
and issue 17's must-reach GEMV on a dense 8 x 8 WS engine."""

import shutil

import numpy as np
import pytest

from nmsat.arith import ceil_div
from nmsat.config import SMALL
from nmsat.dataflow.timing import block_cycles
from nmsat.types import NM, Dataflow

cocotb_tools = pytest.importorskip("cocotb_tools")

from nmsat.rtl.tb.runner import run_engine_tb, simulator


def _shadow(cfg, la: int, ports: int, rows: int | None = None, cols: int | None = None):
    ch = {"array.acc_latency": la, "array.shadow_weights": True,
          "array.weight_load_ports": ports}
    if rows:
        ch |= {"array.rows": rows, "array.cols": cols}
    return cfg.replace(**ch)


def _sim_ok() -> bool:
    return simulator() == "verilator" or bool(shutil.which("iverilog"))


@pytest.mark.rtl
@pytest.mark.parametrize("rows,cols,la,ports,seed", [(2, 4, 3, 2, 1), (4, 2, 2, 1, 2)])
def test_shadow_blocks_in_amaranth_sim(rows, cols, la, ports, seed):
    """Random int8 blocks (interleaved WS mostly, OS and WS without interleave too),
    every other one under random stalls: values bit for bit, cycles as the model."""
    from nmsat.rtl.engine import TensorEngine
    from nmsat.rtl.tb.engine_amsim import BlockRun, run_blocks
    from nmsat.rtl.tb.tiles import random_tile

    cfg = _shadow(SMALL, la, ports, rows, cols)
    eng = TensorEngine(cfg, "int8")
    rng = np.random.default_rng(seed)
    runs, specs = [], []
    for i in range(5):
        m, n, k = int(rng.integers(1, 6)), int(rng.integers(1, 11)), int(rng.integers(1, 50))
        nm = ("1:1", "2:4", "1:8")[i % 3]
        df, il = ("ws", True) if i < 3 else (("os", "ws")[i % 2], bool(i % 2))
        stall = i % 2 == 1
        iv = rng.random(4000) > 0.3 if stall else None
        orr = rng.random(4000) > 0.3 if stall else None
        runs.append(BlockRun(random_tile(rng, eng.shape, m, k, n, nm), df, il, iv, orr))
        specs.append((df, nm, m, n, k, il))
    run_blocks(eng, runs, seed=seed)
    for r, (df, nm, m, n, k, il) in zip(runs, specs, strict=True):
        iv = None if r.in_valid is None else r.in_valid[:r.cycles]
        orr = None if r.out_ready is None else r.out_ready[:r.cycles]
        want = block_cycles(Dataflow.parse(df), m, n, k, NM.parse(nm), il, cfg, iv, orr)
        assert r.cycles == want, (df, nm, m, n, k, il)
        np.testing.assert_array_equal(r.out, r.tile.expected)


@pytest.mark.rtl
@pytest.mark.slow(seconds=60)
@pytest.mark.skipif(not _sim_ok(), reason="needs an HDL simulator")
def test_random_tiles_with_shadow_weights_bit_exact_and_cycle_exact():
    """40 random int8 tiles on ``small`` (4 x 4) with shadow weights, La = 2 and 2 load
    ports: OS and WS, interleave on and off, every pattern, load gaps, stalls, STORE
    backpressure."""
    rep = run_engine_tb(_shadow(SMALL, 2, 2), "int8", 40, seed=11)
    assert (rep["tiles"], rep["mismatches"], rep["cycle_mismatches"]) == (40, 0, 0), \
        rep["notes"]


@pytest.mark.rtl
@pytest.mark.slow(seconds=600)
@pytest.mark.skipif(simulator() != "verilator", reason="the GEMV needs Verilator")
def test_gemv_with_shadow_weights_at_most_10_cycles_per_block():
    """Issue 17: a dense 8 x 8 WS engine with shadow weights runs a 1 x 512 x 1,000 GEMV
    (one block) in the model's 64,040 cycles, 8.005 per 8 x 8 weight block, values bit
    for bit (benchmarks/rtl_shadow_gemv.py prints the figures)."""
    from benchmarks.rtl_shadow_gemv import gemv_config

    cfg = gemv_config(1)
    rep = run_engine_tb(cfg, "fp16", 1, seed=17, stall=0.0,
                        blocks=[("ws", "1:1", 1, 1000, 512, True)])
    b = rep["blocks"][0]
    assert rep["mismatches"] == 0, rep["notes"]
    assert b["rtl_cycles"] == b["model_cycles"] == 64040
    assert b["rtl_cycles"] / (ceil_div(512, 8) * ceil_div(1000, 8)) <= 10
