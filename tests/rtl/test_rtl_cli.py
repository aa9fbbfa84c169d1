"""``nmsat rtl generate`` and ``nmsat rtl run`` end to end."""

import json
import shutil

import pytest

from nmsat.cli import main


def test_generate_writes_verilog_and_manifest(tmp_path, capsys):
    assert main(["rtl", "generate", "--config", "small", "--dtype", "int8",
                 "-o", str(tmp_path)]) == 0
    man = json.loads((tmp_path / "manifest.json").read_text())
    assert man["config"]["array"]["rows"] == 4 and man["dtype"] == "int8"
    for name, unit in man["units"].items():
        text = (tmp_path / unit["file"]).read_text()
        assert f"module {name}(" in text
        names = {p["name"] for p in unit["ports"]}
        assert {"clk", "rst"} <= names
    top = man["units"]["nmsat_engine"]
    assert {"cmd__payload", "act_load__valid", "store__ready", "busy"} <= {
        p["name"] for p in top["ports"]}
    assert man["units"]["nmsat_pe_cell"]["instances"] == 16


def test_generate_rejects_unknown_preset(capsys):
    assert main(["rtl", "generate", "--config", "nope", "-o", "x"]) == 2
    assert "'nope' is neither a preset" in capsys.readouterr().err


def _sim_ok():
    from nmsat.rtl.tb.runner import simulator

    return simulator() == "verilator" or shutil.which("iverilog")


@pytest.mark.rtl
@pytest.mark.slow
@pytest.mark.skipif(not _sim_ok(), reason="needs an HDL simulator")
def test_run_layer_closes_the_loop(capsys, small_2x2):
    rc = main(["rtl", "run", "mlp", "--layer", "fc3", "--phase", "ff", "--config",
               str(small_2x2[0]), "--batch", "4", "--json"])
    rep = json.loads(capsys.readouterr().out)
    assert rc == 0
    assert rep["mismatches"] == 0 and rep["words"] == 4 * 10
    assert rep["rtl_cycles"] == rep["model_cycles"] > 0


@pytest.mark.rtl
@pytest.mark.slow
@pytest.mark.torch
@pytest.mark.skipif(not _sim_ok(), reason="needs an HDL simulator")
def test_replay_a_trained_layer_through_the_rtl(tmp_path, capsys, small_2x2):
    """A real layer's tensors from a training trace (digits MLP, BDWP 2:8) through the RTL:
    its BP GEMM (sparse along the output dimension) bit-exact and cycle-exact."""
    pytest.importorskip("torch")
    from nmsat.workloads.trace import save_trace
    from nmsat.workloads.train import TrainConfig, train

    cfg = TrainConfig(model="mlp", method="bdwp", nm="2:8", epochs=1, batch=8,
                      train_limit=32, sample_iterations=(-1,))
    path = tmp_path / "mlp.nmt"
    save_trace(train(cfg), path)
    rc = main(["rtl", "run", str(path), "--layer", "fc3", "--phase", "bp", "--config",
               str(small_2x2[0]), "--json"])
    rep = json.loads(capsys.readouterr().out)
    assert rc == 0
    assert rep["mismatches"] == 0 and rep["words"] == 8 * 256
    assert rep["rtl_cycles"] == rep["model_cycles"] > 0
