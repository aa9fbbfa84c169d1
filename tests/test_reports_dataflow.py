"""``--dataflow os|ws|auto`` (issue 15 item 6): the chosen dataflow of every layer in the
JSON, the printed table and the report, for training and inference."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from nmsat.commands import main
from nmsat.config import SMALL
from nmsat.dataflow.compiler import CompileOptions, compile_workload
from nmsat.dataflow.isa import Compute
from nmsat.workloads import zoo


def _csv(path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))



def _sim(tmp_path: Path, df: str | None, *extra: str) -> dict:
    out = tmp_path / f"{df}.json"
    flag = [] if df is None else ["--dataflow", df]
    assert main(["simulate", "cnn", "--config", "small", "--batch", "8", *flag,
                 "--json", str(out), *extra]) == 0
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def train_runs(tmp_path_factory):
    d = tmp_path_factory.mktemp("df")
    return {df: _sim(d, df) for df in ("auto", "os", "ws")}, d


def _program_flows(df: str) -> dict[str, dict[str, set[str]]]:
    """Per layer and phase, the dataflows of the compiled program's COMPUTE words,
    counted here from the instructions."""
    prog = compile_workload(zoo.get("cnn", batch=8), SMALL, CompileOptions(
        method="bdwp", nm="2:8", dataflow=df))
    out: dict[str, dict[str, set[str]]] = {}
    for ins in prog.instructions:
        if isinstance(ins, Compute):
            out.setdefault(prog.layers[ins.layer], {}).setdefault(ins.phase.value, set()).add(
                ins.dataflow.value)
    return out


def test_forced_dataflow_is_every_layers(train_runs):
    runs, _ = train_runs
    for df in ("os", "ws"):
        layers = [x for x in runs[df]["layers"] if x["dataflow"]]
        assert layers and all(set(x["dataflow"].values()) == {df} for x in layers)
        assert runs[df]["options"]["dataflow"] == df


def test_json_dataflow_is_what_the_program_ran(train_runs):
    runs, _ = train_runs
    for df in ("auto", "os", "ws"):
        want = _program_flows(df)
        got = {x["name"]: x["dataflow"] for x in runs[df]["layers"] if x["dataflow"]}
        assert got == {k: {p: "+".join(sorted(v)) for p, v in ph.items()}
                       for k, ph in want.items()}
    # auto picks per task: on this workload both occur, and the result is at least as fast
    # as either forced dataflow
    used = {v for x in runs["auto"]["layers"] for v in x["dataflow"].values()}
    assert used == {"os", "ws"}
    assert runs["auto"]["total_cycles"] <= min(runs["os"]["total_cycles"],
                                               runs["ws"]["total_cycles"])


def test_auto_is_the_default_and_changes_nothing(train_runs, tmp_path):
    runs, d = train_runs
    _sim(tmp_path, None)
    assert (d / "auto.json").read_bytes() == (tmp_path / "None.json").read_bytes()
    assert "dataflow" not in runs["auto"]["options"]


def test_printed_summary_and_report_table(train_runs, tmp_path, capsys):
    assert main(["simulate", "cnn", "--config", "small", "--batch", "8", "--dataflow", "ws",
                 "--report", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    runs, _ = train_runs
    n = sum(len(x["dataflow"]) for x in runs["ws"]["layers"])
    assert f"dataflow        ws {n} layer-phases (--dataflow ws)" in out
    table = next(p for p in (tmp_path / "r").glob("layers-*bdwp*.csv"))
    rows = _csv(table)
    assert rows and all(r["dataflow"] in ("ws", "-") for r in rows)
    assert sum(r["dataflow"] == "ws" for r in rows) == sum(
        1 for x in runs["ws"]["layers"] if x["dataflow"])


def test_inference_dataflow_in_json_and_table(tmp_path, capsys):
    out = tmp_path / "i.json"
    assert main(["simulate", "stories260k", "--mode", "inference", "--phase", "decode",
                 "--config", "small", "--batch", "1", "--kv-len", "16", "--dataflow", "ws",
                 "--top", "0", "--json", str(out)]) == 0
    text = capsys.readouterr().out.splitlines()
    data = json.loads(out.read_text())
    gemm = [x for x in data["layers"] if x["dense_macs"]]
    assert gemm and all(x["dataflow"] == "ws" for x in gemm)
    assert all(x["dataflow"] == "" for x in data["layers"] if not x["dense_macs"])
    head = next(i for i, x in enumerate(text) if x.startswith("layer "))
    flows = {x.split()[0]: x.split()[4] for x in text[head + 1:head + 1 + len(data["layers"])]}
    assert all(flows[x["name"]] == (x["dataflow"] or "-") for x in data["layers"])
    assert data["options"]["dataflow"] == "ws"


def test_dataflow_the_array_lacks_is_one_line(tmp_path, capsys):
    cfg = tmp_path / "os_only.toml"
    cfg.write_text('preset = "small"\n[array]\ndataflows = ["os"]\n')
    assert main(["simulate", "mlp", "--config", str(cfg), "--dataflow", "ws"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--dataflow ws: os_only supports only os" in err
    assert main(["simulate", "mlp", "--dataflow", "xy"]) == 2
    assert "argument --dataflow" in capsys.readouterr().err
