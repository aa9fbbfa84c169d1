"""``nmsat rtl generate`` and ``nmsat rtl run`` end to end."""

import json
import shutil
import time

import pytest

from nmsat.commands import main
from nmsat.commands.rtl import MAX_GENERATE_CELLS, check_config


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
    # the accelerator top: AXI4-Lite slave, AXI4 master, interrupt, register map
    acc = man["accelerator"]
    assert "module nmsat_top(" in (tmp_path / acc["file"]).read_text()
    names = {p["name"] for p in acc["ports"]}
    assert {"s_axil_awaddr", "s_axil_rdata", "m_axi_araddr", "m_axi_rdata", "m_axi_wlast",
            "irq", "m_axi_sore_araddr", "m_axi_sore_wdata"} <= names
    # int8 operands: no weight-update stream (the engine writes an fp16 working copy)
    assert not any(n.startswith("m_axi_wu_") for n in names)
    rdata = next(p for p in acc["ports"] if p["name"] == "m_axi_rdata")
    assert rdata["width"] == 8 * man["config"]["dram"]["bytes_per_cycle"] == 8 * 16
    assert [r["name"] for r in acc["registers"]][:2] == ["CONTROL", "STATUS"]
    assert acc["axi"]["burst_beats"] == 64 // 16
    assert acc["dma"]["system_model"] == {"dram.dma": "word_slots",
                                          "request_cycles": {"load": 4, "store": 3}}
    assert acc["dma"]["descriptor_fields"] == {
        "base": 0, "stride": 4, "kpc": 8, "wbase": 12, "wstride": 16, "wkpc": 20, "rows": 24,
        "cols": 28, "gbase": 32, "gstride": 36, "mbase": 40, "vbase": 44}
    assert [r["name"] for r in acc["registers"]][-2:] == ["LR", "MOMENTUM"]


def test_generate_rejects_unknown_preset(capsys):
    assert main(["rtl", "generate", "--config", "nope", "-o", "x"]) == 2
    assert "'nope' is neither a preset" in capsys.readouterr().err


def _sim_ok():
    from nmsat.rtl.tb.runner import simulator

    return simulator() == "verilator" or shutil.which("iverilog")


@pytest.mark.rtl
@pytest.mark.slow(seconds=70)
@pytest.mark.skipif(not _sim_ok(), reason="needs an HDL simulator")
def test_run_layer_closes_the_loop(capsys, small_2x2):
    rc = main(["rtl", "run", "mlp", "--layer", "fc3", "--phase", "ff", "--config",
               str(small_2x2[0]), "--batch", "4", "--json"])
    rep = json.loads(capsys.readouterr().out)
    assert rc == 0
    assert rep["mismatches"] == 0 and rep["words"] == 4 * 10
    assert rep["rtl_cycles"] == rep["model_cycles"] > 0


@pytest.mark.rtl
@pytest.mark.slow(seconds=30)
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


# ------------------------------------------------------------------- usage errors: one line


def _one_line_error(capsys, argv, *needles):
    """The CLI rule: exit 2, one line ``nmsat: error: ...`` on stderr, nothing on stdout."""
    assert main(argv) == 2
    cap = capsys.readouterr()
    assert cap.out == ""
    assert cap.err.startswith("nmsat: error: ") and cap.err.count("\n") == 1, cap.err
    assert "Traceback" not in cap.err and "Errno" not in cap.err
    for n in needles:
        assert n in cap.err, cap.err
    return cap.err


@pytest.mark.parametrize("flag,value", [("--seed", "-1"), ("--seed", "x"), ("--batch", "0"),
                                        ("--kv-len", "0")])
def test_run_rejects_bad_numbers(capsys, flag, value):
    _one_line_error(capsys, ["rtl", "run", "mlp", "--layer", "fc1", flag, value], flag)


@pytest.mark.parametrize("argv,needle", [
    (["--phase", "decode"], "--mode inference"),
    (["--seq-len", "4"], "--seq-len is only for --mode inference"),
    (["--mode", "inference", "--phase", "bp"], "--phase bp is a training phase"),
    (["--mode", "inference", "--method", "srste"], "--method srste is for training"),
    (["--mode", "inference", "--phase", "decode"], "--phase is for LLM workloads"),
    (["--phase", "sore"], "--phase sore: mask generation runs on the accelerator top"),
    (["--phase", "wu"], "--phase wu: the weight update runs on the accelerator top"),
    (["--mode", "inference", "--phase", "sore"], "--phase sore is a training phase"),
])
def test_run_rejects_options_of_the_other_mode(capsys, argv, needle):
    _one_line_error(capsys, ["rtl", "run", "mlp", "--layer", "fc1", *argv], needle)


def test_run_inference_needs_a_gemm_layer(capsys):
    # (a decode step without --kv-len takes the default context: no error for it)
    base = ["rtl", "run", "stories260k", "--mode", "inference", "--phase", "decode"]
    _one_line_error(capsys, [*base, "--layer", "nope"], "no layer 'nope'")
    _one_line_error(capsys, [*base, "--method", "dense", "--nm", "2:4", "--layer",
                             "model.layers.0.self_attn.q_proj"], "contradicts --nm 2:4")
    _one_line_error(capsys, [*base, "--kv-len", "4", "--layer", "nope"], "no layer 'nope'")
    _one_line_error(capsys, [*base, "--kv-len", "4", "--layer",
                             "model.layers.0.input_layernorm"], "has no ff GEMM")


def test_generate_into_proc_is_one_line(capsys):
    _one_line_error(capsys, ["rtl", "generate", "--config", "small", "-o", "/proc/x"],
                    "-o: cannot write /proc/x")


def test_generate_onto_an_existing_file_keeps_it(tmp_path, capsys):
    f = tmp_path / "notes.txt"
    f.write_text("keep me")
    _one_line_error(capsys, ["rtl", "generate", "--config", "small", "-o", str(f)],
                    "not a folder")
    _one_line_error(capsys, ["rtl", "generate", "--config", "small", "-o",
                             str(f / "sub")], "not a folder")
    assert f.read_text() == "keep me" and sorted(tmp_path.iterdir()) == [f]


def test_generate_failure_leaves_no_partial_output(tmp_path, capsys, monkeypatch):
    """Units are generated into a staging folder and moved in only when all succeeded:
    a failure half-way writes nothing and leaves what DIR held alone."""
    from nmsat.rtl import generate as gen

    def half(cfg, out, dtype=None, which=None):
        (out / "nmsat_engine.v").write_text("module nmsat_engine(); endmodule\n")
        raise ValueError("the SORE failed to elaborate")

    monkeypatch.setattr(gen, "generate", half)
    out = tmp_path / "rtl"
    out.mkdir()
    (out / "nmsat_engine.v").write_text("earlier\n")
    _one_line_error(capsys, ["rtl", "generate", "--config", "small", "-o", str(out)],
                    "the SORE failed")
    assert [p.name for p in tmp_path.iterdir()] == ["rtl"]  # no staging folder left
    assert [p.name for p in out.iterdir()] == ["nmsat_engine.v"]
    assert (out / "nmsat_engine.v").read_text() == "earlier\n"
    _one_line_error(capsys, ["rtl", "generate", "--config", "small", "-o",
                             str(tmp_path / "new")], "the SORE failed")
    assert not (tmp_path / "new").exists()


def _cfg(tmp_path, text):
    p = tmp_path / "cfg.toml"
    p.write_text('preset = "small"\n' + text)
    return str(p)


def test_generate_refuses_a_huge_array_at_once(tmp_path, capsys):
    cfg = _cfg(tmp_path, "[array]\nrows = 256\ncols = 256\n")
    t0 = time.perf_counter()
    err = _one_line_error(capsys, ["rtl", "generate", "--config", cfg, "-o",
                                   str(tmp_path / "out")], "256 x 256 = 65,536 PE cells",
                          "--force")
    assert f"{MAX_GENERATE_CELLS:,}" in err
    _one_line_error(capsys, ["rtl", "run", "mlp", "--layer", "fc1", "--config", cfg],
                    "65,536 PE cells")
    _one_line_error(capsys, ["rtl", "synth", "--config", cfg], "65,536 PE cells",
                    "--per-unit")
    assert time.perf_counter() - t0 < 30 and not (tmp_path / "out").exists()


@pytest.mark.parametrize("text,field", [
    ("[sore]\ncycles_per_weight = 2\n", "sore.cycles_per_weight = 2"),
    ("[sore]\npipeline_latency = 0\n", "sore.pipeline_latency = 0"),
    ("[weight_update]\npipeline_latency = 0\n", "weight_update.pipeline_latency = 0"),
])
def test_rtl_refuses_what_the_sore_and_wu_do_not_implement(tmp_path, capsys, text, field):
    cfg = _cfg(tmp_path, text)
    out = tmp_path / "out"
    _one_line_error(capsys, ["rtl", "generate", "--config", cfg, "-o", str(out)], field)
    _one_line_error(capsys, ["rtl", "run", "mlp", "--layer", "fc1", "--config", cfg], field)
    _one_line_error(capsys, ["rtl", "synth", "--config", cfg], field)
    _one_line_error(capsys, ["rtl", "synth", "--config", cfg, "--per-unit"], field)
    assert not out.exists()


def test_the_cell_limit_admits_the_presets():
    from nmsat.config import SMALL, VCU1525

    for cfg in (SMALL, VCU1525):
        check_config(cfg)
    with pytest.raises(ValueError, match="PE cells"):
        check_config(VCU1525.replace(**{"array.rows": 64, "array.cols": 32}))
    check_config(VCU1525.replace(**{"array.rows": 64, "array.cols": 32}), force=True)


@pytest.mark.rtl
@pytest.mark.slow(seconds=85)
@pytest.mark.skipif(not _sim_ok(), reason="needs an HDL simulator")
def test_run_compiles_for_the_rtl_act_layout(tmp_path, capsys, small_2x2):
    """A config with ``buffers.act_layout = fmap`` (a feature-map buffer the RTL does not
    implement): ``rtl run`` says so and compiles for the RTL's windows, so the CNN's conv2
    at 2:8 (whose block overflows the ACT banks when sized by the feature map) still runs
    bit- and cycle-exact."""
    cfg = tmp_path / "fmap.toml"
    cfg.write_text(small_2x2[0].read_text() + '\n[buffers]\nact_layout = "fmap"\n')
    rc = main(["rtl", "run", "cnn", "--layer", "conv2", "--mode", "inference", "--nm", "2:8",
               "--config", str(cfg), "--json"])
    out, err = capsys.readouterr()
    rep = json.loads(out)
    assert "buffers.act_layout = fmap" in err and "compiled with buffers.act_layout = windows" \
        in err
    assert rep["mismatches"] == 0 and rep["words"] == 8 * 8 * 32
    assert rep["rtl_cycles"] == rep["model_cycles"] > 0
    assert rc == 0


@pytest.mark.rtl
@pytest.mark.slow(seconds=130)
@pytest.mark.skipif(not _sim_ok(), reason="needs an HDL simulator")
def test_two_runs_at_once_share_the_build_cache(tmp_path, small_2x2):
    """Two `nmsat rtl run` on one empty cache at the same moment both succeed: the shared
    build folder is locked, so one waits instead of compiling over the other (this failed
    with a compiler PCH error and a traceback)."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, NMSAT_RTL_CACHE=str(tmp_path / "cache"))
    argv = [sys.executable, "-m", "nmsat", "rtl", "run", "mlp", "--layer", "fc3", "--phase",
            "ff", "--config", str(small_2x2[0]), "--batch", "1", "--json"]
    procs = [subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    outs = [p.communicate(timeout=900) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err
        rep = json.loads(out[out.rindex("\n{\n") + 1:] if "\n{\n" in out else out)
        assert rep["mismatches"] == 0 and rep["rtl_cycles"] == rep["model_cycles"] > 0
