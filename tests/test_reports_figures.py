"""Every figure plots exactly the numbers of the result files and traces it is given.

Results come from the real simulator (small workloads on the ``small`` preset, through
``nmsat simulate --json``); expected values are read from the JSON files with the ``json``
module and from traces with the trace loader, and compared with values read back from the
figures' artists (bar heights, line data, rectangle vertices).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from nmsat.commands import main
from nmsat.reports import build_report, figures, load_results, style

RUNS = {
    "dense": ("mlp", "dense", "2:8"),
    "bdwp28": ("mlp", "bdwp", "2:8"),
    "bdwp24": ("mlp", "bdwp", "2:4"),
    "srste28": ("mlp", "srste", "2:8"),
    "cnn_bdwp28": ("cnn", "bdwp", "2:8"),
}

# The ideal training speedups of SAT-NOTES.md, written out by hand (not computed by the
# code under test): BDWP 3/(2N/M+1), SR-STE 3/(N/M+2).
BOUNDS = {("bdwp", "2:8"): 2.0, ("bdwp", "2:4"): 1.5, ("srste", "2:8"): 4.0 / 3.0}


@pytest.fixture(scope="module")
def result_files(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("results")
    out = {}
    for key, (workload, method, nm) in RUNS.items():
        path = d / f"{key}.json"
        rc = main(["simulate", workload, "--config", "small", "--method", method, "--nm", nm,
                   "--batch", "8", "--json", str(path)])
        assert rc == 0
        out[key] = path
    return out


@pytest.fixture(scope="module")
def raw(result_files) -> dict[str, dict]:
    return {k: json.loads(p.read_text()) for k, p in result_files.items()}


@pytest.fixture(scope="module")
def runs(result_files):
    keys = list(result_files)
    results = load_results([result_files[k] for k in keys])
    return dict(zip(keys, figures.make_runs(results, [str(result_files[k]) for k in keys])))


def _color(artist) -> str:
    from matplotlib.colors import to_hex

    return to_hex(artist.get_facecolor())


def test_speedup_bars_and_bounds_equal_results(runs, raw):
    plot = figures.speedup_figure(list(runs.values()))
    bars, bounds = plot.artists["bars"], plot.artists["bounds"]
    sparse = [k for k in runs if raw[k]["method"] != "dense"]
    assert len(bars) == len(sparse) == len(bounds)
    for k in sparse:
        key = (raw[k]["workload"], runs[k].series)
        assert bars[key].get_height() == pytest.approx(raw[k]["speedup_vs_dense"], rel=1e-12)
        ys = bounds[key].get_ydata()
        assert list(ys) == pytest.approx([BOUNDS[(raw[k]["method"], raw[k]["nm"])]] * 2)
        # the bound line spans its own bar
        x0 = bounds[key].get_xdata()[0]
        assert x0 == pytest.approx(bars[key].get_x(), abs=0.1 * bars[key].get_width() + 1e-9)
    # the two models are the two x groups
    labels = [t.get_text() for t in plot.figure.axes[0].get_xticklabels()]
    assert labels == ["mlp", "cnn"]


def test_speedup_figure_skipped_without_sparse_runs(runs):
    assert figures.speedup_figure([runs["dense"]]) is None


def test_phase_stacks_equal_phase_cycles(runs, raw):
    plot = figures.phase_figure(list(runs.values()))
    seg, scale = plot.artists["segments"], plot.artists["cycle_scale"]
    for k, run in runs.items():
        top = 0.0
        for p in ("ff", "bp", "wg", "wu", "sore", "vector"):
            rect = seg[(run.label, p)]
            assert rect.get_height() * scale == pytest.approx(raw[k]["phase_cycles"][p],
                                                              rel=1e-12, abs=1e-9)
            assert rect.get_y() * scale == pytest.approx(top, rel=1e-12, abs=1e-9)
            top += raw[k]["phase_cycles"][p]
        assert top == raw[k]["total_cycles"]
    # the mlp runs have their dense run in the report; the cnn run has only its dense total
    totals = plot.artists["dense_totals"]
    assert list(totals) == [runs["cnn_bdwp28"].label]
    rect = totals[runs["cnn_bdwp28"].label]
    assert rect.get_height() * scale == pytest.approx(raw["cnn_bdwp28"]["dense_total_cycles"])


def test_energy_stacks_equal_energy_components(runs, raw):
    plot = figures.energy_figure(list(runs.values()))
    seg, scale = plot.artists["segments"], plot.artists["energy_scale"]
    for k, run in runs.items():
        comps = [c for c in raw[k]["energy_pj"] if c != "total"]
        assert {c for (label, c) in seg if label == run.label} == set(comps)
        total = 0.0
        for c in comps:
            assert seg[(run.label, c)].get_height() * scale == pytest.approx(
                raw[k]["energy_pj"][c], rel=1e-12, abs=1e-6)
            total += seg[(run.label, c)].get_height() * scale
        assert total == pytest.approx(raw[k]["energy_pj"]["total"], rel=1e-9)
        assert raw[k]["energy_pj"]["engine"] > 0 and raw[k]["energy_pj"]["static"] > 0


def test_layer_figure_equals_layer_rows(runs, raw):
    for k in ("bdwp28", "cnn_bdwp28"):
        plot = figures.layer_figure(runs[k])
        layers = raw[k]["layers"]
        util = plot.artists["utilization"]
        assert [r.get_height() for r in util] == pytest.approx(
            [100 * row["utilization"] for row in layers], rel=1e-12)
        assert max(r.get_height() for r in util) <= 100 + 1e-9
        names = [t.get_text() for t in plot.figure.axes[1].get_xticklabels()]
        assert names == [row["name"] for row in layers]
        scale = plot.artists["stall_scale"]
        stacked = np.zeros(len(layers))
        for cause, container in plot.artists["stalls"].items():
            heights = np.array([r.get_height() for r in container]) * scale
            assert heights == pytest.approx([row["stall_cycles"][cause] for row in layers])
            stacked += heights
        assert stacked == pytest.approx([sum(row["stall_cycles"].values()) for row in layers])


def _coverage(spans, n: int) -> np.ndarray:
    cover = np.zeros(n, dtype=bool)
    for s, e in spans:
        cover[round(s):round(e)] = True
    return cover


def test_timeline_shows_every_event(runs, raw):
    for k in ("bdwp28", "cnn_bdwp28"):
        data = raw[k]
        assert data["event_fields"] == ["unit", "start", "end", "layer", "phase", "kind"]
        events = data["events"]
        assert events, "the simulator logged no events"
        plot = figures.timeline_figure(runs[k])
        scale = plot.artists["time_scale"]
        n = max(e[2] for e in events) + 1
        expected: dict[tuple[str, str, str], list[tuple[int, int]]] = {}
        for unit, start, end, _layer, phase, kind in events:
            what = ("stall", kind.split(":", 1)[1]) if kind.startswith("stall:") \
                else ("busy", "vector") if kind == "vector" else ("busy", phase)
            expected.setdefault((unit, *what), []).append((start, end))
        drawn = plot.artists["intervals"]
        assert set(drawn) == {key for key, spans in expected.items()
                              if any(e > s for s, e in spans)}
        for key, coll in drawn.items():
            spans = []
            for path in coll.get_paths():
                xs = path.vertices[:, 0] * scale
                spans.append((xs.min(), xs.max()))
            assert np.array_equal(_coverage(spans, n), _coverage(expected[key], n)), key
        units = [t.get_text() for t in plot.figure.axes[0].get_yticklabels()]
        assert set(units) == {figures.UNIT_LABELS.get(e[0], e[0]) for e in events}
        assert units[-1] == "tensor engine"  # the engine is the top row


def test_same_name_same_colour_across_figures(runs):
    all_runs = list(runs.values())
    speed = figures.speedup_figure(all_runs)
    phases = figures.phase_figure(all_runs)
    energy_a = figures.energy_figure(all_runs)
    energy_b = figures.energy_figure([runs["cnn_bdwp28"], runs["bdwp28"]])
    timeline = figures.timeline_figure(runs["bdwp28"])
    layers = figures.layer_figure(runs["bdwp28"])
    # one method and pattern: one colour in every model group
    assert _color(speed.artists["bars"][("mlp", runs["bdwp28"].series)]) == \
        _color(speed.artists["bars"][("cnn", runs["cnn_bdwp28"].series)])
    assert _color(speed.artists["bars"][("mlp", runs["bdwp28"].series)]) != \
        _color(speed.artists["bars"][("mlp", runs["srste28"].series)])
    # a phase has one colour in the phase breakdown and in the timeline
    from matplotlib.colors import to_hex

    for (_unit, what, key), coll in timeline.artists["intervals"].items():
        colour = to_hex(coll.get_facecolor()[0])
        if what == "busy" and key in figures.PHASES:
            assert colour == _color(phases.artists["segments"][(runs["bdwp28"].label, key)])
        if what == "stall":
            assert colour == _color(layers.artists["stalls"][key][0])
    # an energy component keeps its colour whatever the runs and their order
    for (label, comp), rect in energy_b.artists["segments"].items():
        assert _color(rect) == _color(energy_a.artists["segments"][(label, comp)])
    assert len({_color(r) for (label, _), r in energy_a.artists["segments"].items()
                if label == runs["bdwp28"].label}) == len(style.COMPONENT_COLORS)


def test_labels_name_what_differs(result_files, tmp_path):
    path = tmp_path / "noint.json"
    assert main(["simulate", "mlp", "--config", "small", "--method", "bdwp", "--nm", "2:8",
                 "--batch", "8", "--no-interleave", "--json", str(path)]) == 0
    results = load_results([result_files["bdwp28"], path])
    a, b = figures.make_runs(results, ["a", "b"])
    assert a.label != b.label
    assert "no-interleave" in b.series and "no-interleave" not in a.series
    assert a.slug != b.slug


def test_same_inputs_same_bytes(result_files, tmp_path):
    paths = [result_files["bdwp28"]]
    build_report(paths, tmp_path / "a")
    build_report(paths, tmp_path / "b")
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert "index.html" in names and "speedup.svg" in names and "phases.png" in names
    assert names == sorted(p.name for p in (tmp_path / "b").iterdir())
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


# --------------------------------------------------------------------------- traces


@pytest.fixture(scope="module")
def traces(tmp_path_factory):
    pytest.importorskip("torch")
    from nmsat.workloads.trace import load_trace, save_trace
    from nmsat.workloads.train import TrainConfig, dense_config, train, with_baseline

    d = tmp_path_factory.mktemp("traces")
    bdwp_cfg = TrainConfig(model="mlp", method="bdwp", nm="2:8", epochs=2, train_limit=256)
    bdwp = with_baseline(train(bdwp_cfg), train(dense_config(bdwp_cfg)))
    srste = train(TrainConfig(model="mlp", method="srste", nm="2:4", epochs=2,
                              train_limit=256))
    paths = [d / "bdwp.nmt", d / "srste.nmt"]
    save_trace(bdwp, paths[0])
    save_trace(srste, paths[1])
    return paths, [load_trace(p) for p in paths]


def test_accuracy_figure_equals_trace_accuracy(traces):
    _, (bdwp, srste) = traces
    plot = figures.accuracy_figure([bdwp, srste])
    points = plot.artists["points"]
    # sparse points at 1 - N/M, the dense baseline at 0, in percent
    assert list(points[("mlp", "bdwp")].get_xdata()) == pytest.approx([75.0])
    assert list(points[("mlp", "bdwp")].get_ydata()) == pytest.approx(
        [100 * bdwp.accuracy[-1].test_accuracy])
    assert list(points[("mlp", "srste")].get_xdata()) == pytest.approx([50.0])
    assert list(points[("mlp", "dense")].get_xdata()) == pytest.approx([0.0])
    assert list(points[("mlp", "dense")].get_ydata()) == pytest.approx(
        [100 * bdwp.baseline.accuracy[-1].test_accuracy])
    for i, t in enumerate((bdwp, srste)):
        curve = plot.artists["curves"][i]
        assert list(curve.get_xdata()) == [e.epoch for e in t.accuracy]
        assert list(curve.get_ydata()) == pytest.approx([100 * e.test_accuracy
                                                         for e in t.accuracy])
    assert points[("mlp", "bdwp")].get_color() == style.METHOD_COLORS["bdwp"]


def test_flip_rate_figure_equals_trace_stats(traces):
    _, (bdwp, srste) = traces
    plot = figures.flip_rate_figure([bdwp, srste])
    lines = plot.artists["lines"]
    # SR-STE has no BP mask, so no BP curve
    assert set(lines) == {(0, "ff"), (0, "bp"), (1, "ff")}
    for (i, view), line in lines.items():
        t = (bdwp, srste)[i]
        layers = [tl for tl in t.layers if tl.layer.has_weights]
        expected = []
        for it in range(t.iterations):
            flipped = sum(t.stats[f"{view}_flip"][it, j] * tl.layer.weights
                          for j, tl in enumerate(layers))
            expected.append(100 * flipped / sum(tl.layer.weights for tl in layers))
        got = line.get_ydata()
        assert len(got) == t.iterations
        assert np.isnan(got[0]) and np.isnan(expected[0])  # no previous iteration
        assert list(got[1:]) == pytest.approx(expected[1:], rel=1e-5)


def test_same_file_twice_gets_distinct_names(result_files):
    results = load_results([result_files["bdwp28"]] * 2)
    a, b = figures.make_runs(results, ["x", "x"])
    assert (a.label, b.label) == ("mlp · BDWP 2:8", "mlp · BDWP 2:8 #2")
    plots = figures.build_plots([a, b])
    assert len({p.name for p in plots}) == len(plots)
