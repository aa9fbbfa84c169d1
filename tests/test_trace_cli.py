"""``nmsat trace inspect``: text and JSON summaries, errors as one line with exit 2."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")

from nmsat.commands import main
from nmsat.workloads.trace import save_trace
from nmsat.workloads.train import TrainConfig, train

pytestmark = pytest.mark.torch


@pytest.fixture(scope="module")
def trace_file(tmp_path_factory):
    p = tmp_path_factory.mktemp("tr") / "mlp.nmt"
    save_trace(train(TrainConfig(model="mlp", method="srste", nm="2:8", epochs=2, batch=16,
                                 train_limit=32)), p)
    return p


def test_inspect_text(capsys, trace_file):
    assert main(["trace", "inspect", str(trace_file)]) == 0
    out = capsys.readouterr().out
    assert "nmsat-trace v1" in out and "mlp on digits, srste 2:8, seed 0, 2 epochs x 2 " \
        "iterations, batch 16" in out
    lines = {ln.split()[0]: ln for ln in out.splitlines() if ln.startswith("    fc")}
    assert set(lines) == {"fc1", "fc2", "fc3"}
    # SR-STE: FF is N:M, BP runs dense in the engine (the mask is along the wrong axis).
    assert lines["fc2"].split()[1:7] == ["Linear", "256x256", "yes", "no", "0.2500", "0.2500"]
    assert "tensors   iteration 3 (epoch 2" in out and "w_master" in out


def test_inspect_json(capsys, trace_file):
    assert main(["trace", "inspect", str(trace_file), "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert (s["model"], s["method"], s["nm"], s["iterations"]) == ("mlp", "srste", "2:8", 4)
    assert [r["name"] for r in s["layers"]] == ["fc1", "relu1", "fc2", "relu2", "fc3"]
    assert s["layers"][0]["ff_flip_mean"] is not None
    assert s["samples"][0]["iteration"] == 3 and s["baseline_test_accuracy"] is None


def test_inspect_errors(capsys, tmp_path, trace_file):
    bad = tmp_path / "bad.nmt"
    bad.write_bytes(trace_file.read_bytes()[:1000])
    for path, message in ((tmp_path / "missing.nmt", "trace not found"),
                          (bad, "truncated or corrupted")):
        assert main(["trace", "inspect", str(path)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err and str(path) in err
    assert main(["trace"]) == 2
    assert "required" in capsys.readouterr().err
