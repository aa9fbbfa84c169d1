"""``nmsat simulate``: defaults, JSON, SCALE-Sim reports, determinism, bad input."""

from __future__ import annotations

import json

import pytest

from nmsat.commands import main
from nmsat.simulator.api import SimOptions, simulate
from nmsat.simulator.results import (
    BANDWIDTH_REPORT_HEADER,
    COMPUTE_REPORT_HEADER,
    PHASES,
    from_dict,
    load_json,
)
from nmsat.workloads import zoo

SMALL = ["cnn", "--config", "small", "--batch", "4"]


def test_default_run_prints_the_table(capsys):
    """`nmsat simulate` with no arguments: ResNet-18, BDWP 2:8, batch 32, training."""
    assert main(["simulate"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("resnet18  train  method=bdwp  nm=2:8  batch=32")
    for word in ("ff", "bp", "wg", "wu", "sore", "total", "energy", "speedup"):
        assert word in out


def test_json_has_the_schema_and_round_trips(tmp_path, capsys):
    out = tmp_path / "r.json"
    assert main(["simulate", *SMALL, "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    for key in ("workload", "config", "method", "nm", "batch", "total_cycles", "seconds",
                "phase_cycles", "stall_cycles", "utilization", "dram_bytes", "energy_pj",
                "dense_total_cycles", "speedup_vs_dense", "layers", "events",
                "nmsat_version"):
        assert key in data, key
    assert set(data["phase_cycles"]) == set(PHASES)
    assert sum(data["phase_cycles"].values()) == data["total_cycles"]
    assert data["config"]["name"] == "small"
    assert data["energy_pj"]["total"] > 0
    for layer in data["layers"]:
        for key in ("name", "total_cycles", "phase_cycles", "stall_cycles", "utilization",
                    "dram_bytes", "energy_pj", "dense_total_cycles", "speedup_vs_dense"):
            assert key in layer
    assert sum(layer["total_cycles"] for layer in data["layers"]) == data["total_cycles"]
    r = load_json(out)
    assert r.to_json() == out.read_text()
    assert from_dict(data).total_cycles == data["total_cycles"]


def test_same_inputs_same_json():
    w = zoo.get("cnn", batch=3)
    a = simulate(w, "small", SimOptions.create("bdwp", "2:8"))
    b = simulate(w, "small", SimOptions.create("bdwp", "2:8"))
    assert a.to_json() == b.to_json()


def test_scalesim_reports(tmp_path):
    d = tmp_path / "rep"
    assert main(["simulate", *SMALL, "--scalesim-reports", str(d)]) == 0
    compute = (d / "COMPUTE_REPORT.csv").read_text().splitlines()
    bandwidth = (d / "BANDWIDTH_REPORT.csv").read_text().splitlines()
    # SCALE-Sim 3.0.0's header (scale-sim-v3 scalesim/simulator.py, generate_reports)
    assert compute[0] == ("LayerID, Total Cycles (incl. prefetch), Total Cycles, Stall Cycles, "
                          "Overall Util %, Mapping Efficiency %, Compute Util %,")
    assert bandwidth[0] == ("LayerID, Avg IFMAP SRAM BW, Avg FILTER SRAM BW, "
                            "Avg OFMAP SRAM BW, Avg IFMAP DRAM BW, Avg FILTER DRAM BW, "
                            "Avg OFMAP DRAM BW,")
    assert compute[0] == COMPUTE_REPORT_HEADER and bandwidth[0] == BANDWIDTH_REPORT_HEADER
    assert len(compute) == len(bandwidth) > 1
    for i, row in enumerate(compute[1:]):
        cells = row.split(", ")
        assert cells[0] == str(i) and row.endswith(",")
        assert 0 <= float(cells[4].rstrip(",")) <= 100


def test_ablation_flags_reach_the_options(tmp_path):
    out = tmp_path / "a.json"
    assert main(["simulate", *SMALL, "--no-interleave", "--no-pregen",
                 "--no-offline-schedule", "--method", "srste", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["options"] == {"method": "srste", "nm": "2:8", "mode": "train",
                               "interleave": False, "pregen": False,
                               "offline_schedule": False}


@pytest.mark.parametrize("args, message", [
    (["nosuchmodel"], "unknown workload"),
    (["cnn", "--nm", "9:8"], "N must be between 1 and M"),
    (["cnn", "--nm", "3:8"], "not supported"),
    (["missing.csv"], "no such workload file"),
    (["cnn", "--config", "nope.toml"], "config file not found"),
    (["cnn", "--batch", "0"], "positive integer"),
    (["cnn", "--method", "magic"], "invalid choice"),
])
def test_bad_input_is_one_line_exit_2_and_no_output(tmp_path, capsys, args, message):
    out = tmp_path / "never.json"
    rep = tmp_path / "rep"
    code = main(["simulate", *args, "--json", str(out), "--scalesim-reports", str(rep)])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1
    assert not out.exists() and not rep.exists()


def test_config_that_cannot_fit_is_rejected(tmp_path, capsys):
    cfg = tmp_path / "tiny.toml"
    # A 16x16 output tile of fp32 partial sums is 1 KiB; a 1 KiB buffer has 512 B halves.
    cfg.write_text('[buffers.output]\nkib = 1\n')
    out = tmp_path / "r.json"
    code = main(["simulate", "vgg16", "--config", str(cfg), "--batch", "1", "--json",
                 str(out)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "buffers.output is too small" in err
    assert len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_json_is_identical_across_processes(tmp_path):
    """Bit-identical output in fresh interpreters with different hash seeds."""
    import os
    import subprocess
    import sys

    outs = []
    for seed in ("1", "2"):
        out = tmp_path / f"r{seed}.json"
        env = dict(os.environ, PYTHONHASHSEED=seed)
        subprocess.run([sys.executable, "-m", "nmsat", "simulate", *SMALL, "--json",
                        str(out)], check=True, env=env, capture_output=True)
        outs.append(out.read_bytes())
    assert outs[0] == outs[1]
