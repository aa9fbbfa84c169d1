"""cocotb regressions of ``act_zero = skip`` engines (Icarus: the skip builds are small
and Icarus needs no minute-long C++ build): random tiles, dense, 2:4 and 2:8, OS and WS,
interleave on/off, load-stream gaps, COMPUTE stalls and STORE backpressure; every WS tile
has all-zero row slices injected per K-tile (none, 40 % or 80 % of the rows, every third
tile a K-tile zero in every row). Values equal ``engine_gemm(..., skip_rows=R)`` bit for
bit, COMPUTE cycles ``block_cycles(..., stream=ws_skip_stream(...))``."""

import shutil

import pytest

from nmsat.config import SMALL

cocotb_tools = pytest.importorskip("cocotb_tools")

from nmsat.rtl.tb.runner import run_engine_tb

SKIP = {"array.act_zero": "skip"}
PATTERNS = ("1:1", "2:4", "2:8")
icarus = pytest.mark.skipif(not shutil.which("iverilog"), reason="Icarus Verilog is not installed")


@pytest.mark.rtl
@icarus
@pytest.mark.parametrize("dtype, tiles", [("int8", 120), ("fp16", 60)])
def test_ws_skip_random_tiles_bit_exact_and_cycle_exact(dtype, tiles, small_2x2):
    """int8 on the 4 x 4 ``small`` engine (La = 2), fp16 on its 2 x 2 variant."""
    if dtype == "fp16":
        cfg = small_2x2[1].replace(**SKIP)
    else:
        cfg = SMALL.replace(**{"array.acc_latency": 2, **SKIP})
    rep = run_engine_tb(cfg, dtype, tiles, seed=sum(map(ord, dtype)) + 7, sim="icarus",
                        max_mn=12, max_k=48, patterns=PATTERNS)
    print(f"{dtype}: {rep['tiles']} tiles, {rep['compute_cycles']} COMPUTE cycles, "
          f"{rep['dropped_rows']} row slices dropped, {rep['saved_cycles']} cycles saved, "
          f"{rep['cycles']} cycles in {rep['seconds']:.1f} s")
    assert rep["tiles"] == tiles
    assert rep["mismatches"] == 0, rep["notes"]
    assert rep["cycle_mismatches"] == 0, rep["notes"]
    assert rep["dropped_rows"] > 0 and rep["saved_cycles"] > 0
