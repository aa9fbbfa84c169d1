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


@pytest.mark.slow(seconds=55)
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


SKIP_WS_TOML = ('preset = "small"\n\n[array]\nrows = 2\ncols = 2\nact_zero = "skip"\n'
                'dataflows = ["ws"]\n')
"""The 2 x 2 fp16 ``small`` variant with skip, WS only (the compiler picks OS for this
layer otherwise, which never skips)."""


@pytest.mark.rtl
@pytest.mark.torch
@icarus
def test_real_layer_with_skip_on_the_rtl(tmp_path, capsys):
    """The digits CNN's conv2 on recorded activations (a one-sample training trace: ReLU
    outputs, and im2col windows in the zero padding, whose K-tile slices are all zero),
    inference at 2:4: ``nmsat rtl run --mode inference`` drops rows, stores every word
    bit-exact and takes the simulator's cycles for every COMPUTE."""
    import json

    from nmsat.commands import main
    from nmsat.workloads.trace import save_trace
    from nmsat.workloads.train import TrainConfig, train

    trace = tmp_path / "cnn.nmt"
    save_trace(train(TrainConfig(model="cnn", epochs=1, batch=1, train_limit=2)), trace)
    cfg = tmp_path / "skip.toml"
    cfg.write_text(SKIP_WS_TOML)
    rc = main(["rtl", "run", str(trace), "--layer", "conv2", "--mode", "inference", "--nm",
               "2:4", "--batch", "1", "--config", str(cfg), "--sim", "icarus", "--json"])
    rep = json.loads(capsys.readouterr().out)
    with capsys.disabled():
        print(f"\nconv2 2:4 skip: {rep['dropped_rows']} of {rep['ws_row_slices']} WS row "
              f"slices dropped, {rep['skip_saved_cycles']} of "
              f"{rep['rtl_cycles'] + rep['skip_saved_cycles']} cycles saved, "
              f"{rep['words']} words, {rep['mismatches']} mismatches")
    assert rep["act_zero"] == "skip" and rep["same_program"] is True
    assert {c["instr"].split()[0] for c in rep["computes"]} == {"ws"}
    for c in rep["computes"]:
        assert c["rtl_cycles"] == c["model_cycles"] > 0, c
    assert rep["mismatches"] == 0 and rep["words"] == 8 * 8 * 32
    assert rep["dropped_rows"] > 0 and rep["skip_saved_cycles"] > 0
    assert rc == 0
