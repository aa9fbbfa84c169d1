"""Trace-driven runs in the report (issue 15 item 9): ``nmsat simulate t.nmt --report``
shows the trace's accuracy, loss and mask statistics, and ``nmsat report t.nmt`` says how
to give a trace instead of failing on its bytes."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from chromium_page import parse as _parse

from nmsat.commands import main

pytestmark = pytest.mark.torch

def _csv(path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))



@pytest.fixture(scope="module")
def trace_file(tmp_path_factory) -> Path:
    """A BDWP 2:4 mlp trace with its dense baseline (a tiny training run)."""
    pytest.importorskip("torch")
    from nmsat.workloads.trace import save_trace
    from nmsat.workloads.train import TrainConfig, dense_config, train, with_baseline

    d = tmp_path_factory.mktemp("trace")
    cfg = TrainConfig(model="mlp", method="bdwp", nm="2:4", epochs=2, train_limit=96)
    save_trace(with_baseline(train(cfg), train(dense_config(cfg))), d / "t.nmt")
    return d / "t.nmt"


@pytest.fixture(scope="module")
def trace_report(trace_file, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("rep") / "r"
    assert main(["simulate", str(trace_file), "--config", "small", "--report", str(out)]) == 0
    return out


def test_simulate_trace_report_has_accuracy_loss_and_masks(trace_report, trace_file):
    from nmsat.workloads.trace import load_trace

    t = load_trace(trace_file)
    page = _parse(trace_report / "index.html")
    names = {Path(s).stem for s in page.images}
    assert {"accuracy", "loss", "flip-rates", "speedup", "phases"} <= names
    rows = _csv(trace_report / "traces.csv")
    assert len(rows) == 1
    row = rows[0]
    assert float(row["test accuracy (%)"]) == pytest.approx(100 * t.final_accuracy)
    assert float(row["dense baseline (%)"]) == pytest.approx(100 * t.baseline.final_accuracy)
    assert float(row["final train loss"]) == pytest.approx(t.accuracy[-1].train_loss)
    # mlp's FF groups run along K = 64, 256, 256 (all divisible by 4): a 2:4 FF mask keeps
    # exactly half of every layer's weights
    assert float(row["FF mask density (%)"]) == pytest.approx(50.0)
    assert 0.0 <= float(row["mean FF mask flips (%)"]) <= 100.0
    loss = _csv(trace_report / "loss.csv")
    assert float(loss[0]["last"]) == pytest.approx(float(t.loss[-1]))
    assert float(loss[0]["lowest"]) == pytest.approx(float(np.min(t.loss)))


def test_loss_figure_plots_the_trace_loss(trace_file):
    from nmsat.reports import figures
    from nmsat.workloads.trace import load_trace

    t = load_trace(trace_file)
    p = figures.loss_figure([t])
    x, y = p.artists["lines"][0].get_data()
    assert list(x) == list(range(t.iterations))
    assert np.array_equal(np.asarray(y, dtype=np.float32), t.loss)


def test_report_of_a_trace_as_a_result_says_use_trace(trace_file, tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["report", str(trace_file), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "UTF-8" not in err
    assert f"is a training trace, not a result JSON: give it as --trace {trace_file}" in err
    # a trace under another name is recognised by its bytes
    other = tmp_path / "t.json"
    other.write_bytes(trace_file.read_bytes())
    assert main(["report", str(other), "-o", str(out)]) == 2
    assert "--trace" in capsys.readouterr().err
    assert not out.exists()
    # given as --trace it reports
    assert main(["report", "--trace", str(trace_file), "-o", str(out)]) == 0
    assert (out / "loss.svg").is_file()
