"""``nmsat rtl run WORKLOAD --all-layers``: every layer's programs through the RTL tile
controller in one simulation, beside the system model (``nmsat.rtl.tb.network``)."""

import json

import pytest

from nmsat.commands import main
from nmsat.config import load as load_config
from nmsat.dataflow.compiler import CompileOptions, compile_layer
from nmsat.rtl.tb import controller_run
from nmsat.rtl.tb.network import (
    PENDING_TRAIN_PHASES,
    TOP_TRAIN_PHASES,
    TRAIN_PHASES,
    _pending,
    run_network,
    train_steps,
)
from nmsat.simulator import system
from nmsat.workloads.zoo import load

# a two-layer SCALE-Sim GEMM file (name, M, N, K): programs of tens of cycles
TINY_CSV = "Layer, M, N, K,\na, 2, 5, 16,\nb, 2, 3, 5,\n"


@pytest.fixture
def tiny(tmp_path):
    path = tmp_path / "tiny.csv"
    path.write_text(TINY_CSV)
    return str(path)


@pytest.mark.rtl
def test_all_layers_train_json(tiny, small_2x2, capsys):
    """Every GEMM phase of every layer: RTL program cycles equal the system model's for the
    same program (computed here independently), 0 mismatches, every output word stored;
    per-layer and total sums; the phases not run are named."""
    rc = main(["rtl", "run", tiny, "--all-layers", "--config", str(small_2x2[0]), "--nm", "2:4",
               "--json"])
    rep = json.loads(capsys.readouterr().out)
    assert rc == 0 and rep["ok"]
    assert rep["phases_run"] == ["ff", "bp", "wg"]
    assert set(rep["phases_not_run"]) == {"sore", "wu"}
    assert [(r["layer"], r["phase"]) for r in rep["programs"]] == [
        (x, p) for x in ("a", "b") for p in ("ff", "bp", "wg")]
    wl, cfg = load(tiny), small_2x2[1]
    opts = CompileOptions(method="bdwp", nm="2:4", layer_nm=tuple(wl.layer_nm.items()))
    for r in rep["programs"]:
        prog = compile_layer(wl.workload, r["layer"], r["phase"], cfg, opts)
        assert r["model_program_cycles"] == system.run(prog, cfg, extrapolate=False,
                                                       record=False).total_cycles
        assert r["rtl_program_cycles"] == r["model_program_cycles"]
        assert r["mismatches"] == 0 and r["words"] == r["words_expected"] > 0
    for layer in rep["layers"]:
        mine = [r for r in rep["programs"] if r["layer"] == layer["layer"]]
        assert layer["phases"] == ["ff", "bp", "wg"]
        for k in ("rtl_program_cycles", "model_program_cycles", "mismatches"):
            assert layer[k] == sum(r[k] for r in mine)
    t = rep["total"]
    assert t["programs"] == 6 and t["cycle_difference"] == 0 and t["mismatches"] == 0
    assert t["rtl_program_cycles"] == sum(r["rtl_program_cycles"] for r in rep["programs"])


@pytest.mark.rtl
def test_a_model_that_disagrees_is_reported(tiny, small_2x2):
    """The comparison can fail: a system model one cycle longer on one program flags that
    program (and only it) and the run is not ok."""
    cfg = small_2x2[1]
    steps, skipped, meta = train_steps(tiny, cfg, nm="2:8", phase="wg")

    def off_by_one(prog, c, **kw):
        res = system.run(prog, c, **kw)
        if prog is steps[-1].program:
            res.total_cycles += 1
        return res

    rep = run_network(steps, skipped, meta, cfg, system_model=off_by_one)
    assert not rep["ok"] and rep["phases_run"] == ["wg"]
    diffs = [r["model_program_cycles"] - r["rtl_program_cycles"] for r in rep["programs"]]
    assert diffs == [0, 1] and rep["total"]["cycle_difference"] == -1


@pytest.mark.rtl
def test_all_layers_mlp_inference_text(small_2x2, capsys):
    rc = main(["rtl", "run", "mlp", "--all-layers", "--mode", "inference", "--nm", "2:8",
               "--config", str(small_2x2[0])])
    out = capsys.readouterr().out
    assert rc == 0, out
    lines = out.splitlines()
    assert "phases run ff" in lines[0] and "DIFFERENT" not in out
    rows = {ln.split()[0]: ln.split() for ln in lines[2:]}
    assert set(rows) >= {"fc1", "fc2", "fc3", "total"}
    for name in ("fc1", "fc2", "fc3"):
        assert rows[name][1] == "ff" and rows[name][2] == rows[name][3]  # RTL == model
        assert rows[name][4:6] == ["0", "0"]  # difference, mismatches
    assert rows["total"][3] == "0" and int(rows["total"][1]) == sum(
        int(rows[n][2]) for n in ("fc1", "fc2", "fc3"))
    assert "no GEMM (not run): relu1, relu2" in out


def _no_build(monkeypatch):
    def refuse(*a, **kw):
        raise AssertionError("bad input must be refused before the RTL is built")
    monkeypatch.setattr(controller_run, "cached_controlled", refuse)


@pytest.mark.parametrize(("argv", "needle"), [
    (["mlp", "--all-layers", "--layer", "fc1"], "--all-layers runs every layer"),
    (["mlp"], "--layer NAME (or --all-layers) is required"),
    (["mlp", "--layer", "fc9", "--controller"], "no layer 'fc9'"),
    (["mlp", "--all-layers", "--phase", "prefill"], "--phase prefill"),
    (["mlp", "--all-layers", "--mode", "inference", "--phase", "bp"], "--phase bp"),
    (["nosuchnet", "--all-layers"], "unknown workload 'nosuchnet'"),
])
def test_all_layers_bad_input_is_one_line(argv, needle, capsys, monkeypatch, small_2x2):
    _no_build(monkeypatch)
    assert main(["rtl", "run", *argv, "--config", str(small_2x2[0])]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0], err


@pytest.mark.parametrize(("toml", "field"), [
    ('[array]\nrows = 2\ncols = 2\nact_zero = "skip"\n', "array.act_zero"),
    ("[array]\nrows = 3\ncols = 2\n", "array.rows"),
])
def test_all_layers_refuses_a_config_the_rtl_cannot_build(toml, field, tmp_path, capsys,
                                                           monkeypatch):
    _no_build(monkeypatch)
    cfg = tmp_path / "bad.toml"
    cfg.write_text(f'preset = "small"\n\n{toml}')
    load_config(cfg)  # a valid config: the RTL, not the loader, refuses it
    assert main(["rtl", "run", "mlp", "--all-layers", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and field in err[0], err


def test_the_seam_names_every_training_phase():
    """Every phase of a training step is either run on the controller or named as not yet
    run (with the reason): none silently missing."""
    from nmsat.types import Phase

    assert set(TRAIN_PHASES) | set(PENDING_TRAIN_PHASES) == set(Phase)
    assert not set(TRAIN_PHASES) & set(PENDING_TRAIN_PHASES)
    # on the accelerator top: the SORE phase runs, the weight update is named
    top_pending = set(_pending(True))
    assert set(TOP_TRAIN_PHASES) | top_pending == set(Phase)
    assert not set(TOP_TRAIN_PHASES) & top_pending and Phase.SORE in TOP_TRAIN_PHASES
