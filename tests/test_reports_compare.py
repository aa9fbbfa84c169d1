"""``nmsat report a.json b.json`` over runs on different configurations (issue 15 item 3):
distinct names and colours, absolute time and energy side by side, per-layer deltas and
the configuration fields that differ; the plotted data read back equal the JSON."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from chromium_page import parse as _parse

from nmsat.commands import main

WIDE = """preset = "small"
[array]
rows = 8
cols = 8
[dram]
channels = 2
"""

# same name as the preset, one field changed: must still get its own name
SMALL_TOO = """preset = "small"
name = "small"
[dram]
latency_cycles = 40
"""

def _csv(path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))



@pytest.fixture(scope="module")
def results(tmp_path_factory) -> list[Path]:
    d = tmp_path_factory.mktemp("cmp")
    (d / "wide.toml").write_text(WIDE)
    (d / "slow.toml").write_text(SMALL_TOO)
    out = []
    for name, cfg, method in (("a", "small", "bdwp"), ("b", str(d / "wide.toml"), "bdwp"),
                              ("c", str(d / "slow.toml"), "bdwp"),
                              ("d", str(d / "wide.toml"), "dense")):
        p = d / f"{name}.json"
        assert main(["simulate", "cnn", "--config", cfg, "--method", method, "--nm", "2:8",
                     "--batch", "4", "--json", str(p)]) == 0
        out.append(p)
    return out


def test_config_file_without_a_name_is_named_by_its_file(results):
    data = [json.loads(p.read_text()) for p in results]
    assert [x["config"]["name"] for x in data] == ["small", "wide", "small", "wide"]


def test_names_colours_and_side_by_side_values(results):
    from nmsat.reports import figures, load_results
    from nmsat.reports.compare import compare_plots

    rs = load_results(results)
    runs = figures.make_runs(rs, [str(p) for p in results])
    labels = [r.label for r in runs]
    assert labels == ["cnn · BDWP 2:8 small", "cnn · BDWP 2:8 wide",
                      "cnn · BDWP 2:8 small #2", "cnn · dense wide"]
    assert len({r.color for r in runs}) == 4 and all(r.color for r in runs)
    plots = compare_plots(runs)
    cmp = plots[0]
    for run, r in zip(runs, rs):
        t = cmp.artists["time"][run.label]
        e = cmp.artists["energy"][run.label]
        assert t.get_height() == pytest.approx(r.seconds * 1e3, rel=1e-12)
        assert e.get_height() == pytest.approx(r.energy_pj["total"] / 1e9, rel=1e-12)
        assert t.get_facecolor() == e.get_facecolor()
    # ratios to the baseline (the first run of the model) in the table
    rows = {row[0]: row for row in cmp.table.rows}
    base = rs[0]
    for run, r in zip(runs, rs):
        assert rows[run.label][8] == pytest.approx(r.seconds / base.seconds)
        assert rows[run.label][9] == pytest.approx(r.energy_pj["total"] / base.energy_pj["total"])
    # a wider array with two DRAM channels is faster in absolute time, whatever its
    # speedup over its own dense run says
    assert rs[1].seconds < rs[0].seconds
    # per-layer deltas of each run against the baseline, read back from the bars
    deltas = {p.name: p for p in plots[1:]}
    assert set(deltas) == {f"layer-deltas-{r.slug}" for r in runs[1:]}
    for run, r in zip(runs[1:], rs[1:]):
        p = deltas[f"layer-deltas-{run.slug}"]
        by_b = {x.name: x for x in base.layers}
        want_t = [(x.seconds - by_b[x.name].seconds) * 1e6 for x in r.layers]
        want_e = [(x.energy_pj["total"] - by_b[x.name].energy_pj["total"]) / 1e6
                  for x in r.layers]
        assert p.artists["layers"] == [x.name for x in r.layers]
        assert [b.get_height() for b in p.artists["time"].patches] == pytest.approx(want_t)
        assert [b.get_height() for b in p.artists["energy"].patches] == pytest.approx(want_e)


def _flat(d, prefix=""):
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def test_report_page_lists_the_config_fields_that_differ(results, tmp_path):
    out = tmp_path / "rep"
    assert main(["report", *map(str, results), "-o", str(out)]) == 0
    cfgs = [_flat(json.loads(p.read_text())["config"]) for p in results]
    distinct = []
    for c in cfgs:
        if c not in distinct:
            distinct.append(c)
    want = sorted(k for k in distinct[0] if len({json.dumps(c[k]) for c in distinct}) > 1)
    assert want == ["array.cols", "array.rows", "dram.channels", "dram.latency_cycles",
                    "name"]
    rows = _csv(out / "configs.csv")
    assert [r["field"] for r in rows] == want
    assert list(rows[0])[1:] == ["small", "wide", "small #2"]
    by = {r["field"]: r for r in rows}
    assert by["dram.channels"]["wide"] == "2" and by["dram.channels"]["small"] == "1"
    page = _parse(out / "index.html")
    names = {Path(s).stem for s in page.images}
    assert "compare" in names and sum(n.startswith("layer-deltas-") for n in names) == 3
    assert "Configurations compared" in (out / "index.html").read_text()
    cmp = _csv(out / "compare.csv")
    data = [json.loads(p.read_text()) for p in results]
    assert [float(r["time (ms)"]) for r in cmp] == pytest.approx(
        [d["seconds"] * 1e3 for d in data])


def test_one_config_has_no_comparison(results, tmp_path):
    out = tmp_path / "one"
    assert main(["report", str(results[0]), "-o", str(out)]) == 0
    assert not (out / "configs.csv").exists() and not (out / "compare.svg").exists()


def test_inference_runs_on_two_configs(results, tmp_path):
    d = results[0].parent
    outs = []
    for name, cfg in (("ia", "small"), ("ib", str(d / "wide.toml"))):
        p = tmp_path / f"{name}.json"
        assert main(["simulate", "stories260k", "--mode", "inference", "--phase", "decode",
                     "--kv-len", "16", "--batch", "1", "--config", cfg, "--json",
                     str(p)]) == 0
        outs.append(p)
    out = tmp_path / "rep"
    assert main(["report", *map(str, outs), "-o", str(out)]) == 0
    data = [json.loads(p.read_text()) for p in outs]
    cmp = _csv(out / "inference-compare.csv")
    assert [r["run"] for r in cmp] == ["stories260k.decode · inference 2:8 small",
                                       "stories260k.decode · inference 2:8 wide"]
    assert [float(r["energy (mJ)"]) for r in cmp] == pytest.approx(
        [x["energy_pj"]["total"] / 1e9 for x in data])
    deltas = list(out.glob("inference-layer-deltas-*.csv"))
    assert len(deltas) == 1
    rows = _csv(deltas[0])
    by = [{x["name"]: x for x in r["layers"]} for r in data]
    for r in rows:
        want = (by[1][r["layer"]]["seconds"] - by[0][r["layer"]]["seconds"]) * 1e6
        assert float(r["Δ time (µs)"]) == pytest.approx(want, abs=1e-9)
    assert "dram.channels" in (out / "configs.csv").read_text()
