"""cocotb regressions of the generated engine (Verilator when present, else Icarus):
random GEMM tiles, dense and N:M (1:4, 2:4, 2:8, 1:8, 4:8), OS and WS, interleave on/off,
every operand type, random load-stream gaps, COMPUTE stalls and STORE backpressure.
Values equal reference.engine_gemm bit for bit; COMPUTE cycles equal
timing.block_cycles under the same stall masks. 1,000 tiles in all."""

import shutil

import pytest

from nmsat.config import SMALL

cocotb_tools = pytest.importorskip("cocotb_tools")

from nmsat.rtl.tb.runner import run_engine_tb, simulator

TILES = {"int8": 300, "int16": 300, "fp16": 200, "bf16": 200}  # 1,000 in all


@pytest.mark.rtl
@pytest.mark.slow(seconds=45)
@pytest.mark.parametrize("dtype", list(TILES))
def test_random_tiles_bit_exact_and_cycle_exact(dtype, small_2x2):
    """Integer engines on the ``small`` preset (4 x 4), float engines on its 2 x 2 variant."""
    if simulator() == "icarus" and not shutil.which("iverilog"):
        pytest.skip("neither Verilator nor Icarus Verilog is installed")
    cfg = small_2x2[1] if dtype in ("fp16", "bf16") else SMALL
    rep = run_engine_tb(cfg, dtype, TILES[dtype], seed=sum(map(ord, dtype)))
    assert rep["tiles"] == TILES[dtype]
    assert rep["mismatches"] == 0, rep["notes"]
    assert rep["cycle_mismatches"] == 0, rep["notes"]


@pytest.mark.rtl
@pytest.mark.skipif(not shutil.which("iverilog"), reason="Icarus Verilog is not installed")
def test_icarus_runs_the_same_testbench():
    rep = run_engine_tb(SMALL, "int8", 6, seed=5, sim="icarus", max_mn=6, max_k=12)
    assert (rep["tiles"], rep["mismatches"], rep["cycle_mismatches"]) == (6, 0, 0)


def test_checker_catches_a_wrong_word():
    """The scoreboard itself: a flipped bit is a mismatch, NaN payloads are not."""
    import numpy as np

    from nmsat.rtl.tb.cocotb_parts import Checker

    chk = Checker(is_float=True)
    want = np.array([[0x3F800000, 0x7FC00000]], np.uint64)
    chk.values("ok", np.array([[0x3F800000, 0x7FC12345]], np.uint64), want)
    chk.values("bad", np.array([[0x3F800001, 0x7FC00000]], np.uint64), want)
    chk.cycles("c", 10, 11)
    assert (chk.tiles, chk.mismatches, chk.cycle_mismatches) == (2, 1, 1)
