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


# (acc_latency, operand type, 2 x 2 array): a PE whose multipliers and tree take La - 1
# register stages (rtl/pe.dot_stages): P = 4 (4 x 4 int) with fewer registers than
# boundaries (La 2: mul + level 1 | level 2 + add) and more (La 5), P = 2 (2 x 2 float)
# with as many (La 3: mul | level 1 | add); test_rtl_shadow and test_rtl_hierarchical run
# La 2 and 3 with shadow weights and shared cells
RETIMED = [(2, "int8", False), (5, "int16", False), (3, "fp16", True)]


@pytest.mark.rtl
@pytest.mark.slow(seconds=60)
@pytest.mark.parametrize(("la", "dtype", "two"), RETIMED)
def test_random_tiles_with_a_retimed_pe(la, dtype, two, small_2x2):
    """The cell's accumulate add in the last of its La steps, the dot product in the steps
    before: values equal reference.engine_gemm bit for bit, and COMPUTE cycles
    timing.block_cycles, OS and WS, with gaps, stalls and backpressure."""
    if simulator() == "icarus" and not shutil.which("iverilog"):
        pytest.skip("neither Verilator nor Icarus Verilog is installed")
    cfg = (small_2x2[1] if two else SMALL).replace(**{"array.acc_latency": la})
    rep = run_engine_tb(cfg, dtype, 30, seed=97 * la + len(dtype))
    assert rep["tiles"] == 30
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
