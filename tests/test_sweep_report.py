"""``nmsat sweep report STORE -o DIR``: the Pareto and sensitivity figures and the page.

* the values drawn (read back from the matplotlib artists) are the store's values, and the
  ringed Pareto points are those of an independent brute-force dominance computation;
* :func:`pareto_front` equals a numpy brute force on random data (hypothesis);
* the page lists the front and the failed points, and renders in headless Chromium with
  every image loaded and no console errors;
* the same store gives byte-identical files;
* a missing store, a folder, a file that is not a store, a store without a successful
  point and an output that cannot be written end with one line and exit status 2, write
  nothing and lose nothing;
* the point key changes with every config field, the workload, every option and the nmsat
  version.

Stores are written directly (no Dask) from a cheap analytic evaluator, so these tests do
not depend on simulator speed; test_sweep_cli.py reports a store of the real simulator.
"""

from __future__ import annotations

import json
import sqlite3
import statistics
from pathlib import Path

import numpy as np
import pytest
from chromium_page import parse as _parse
from chromium_page import render
from hypothesis import given, settings
from hypothesis import strategies as st

from nmsat.commands import main
from nmsat.simulator import sweep, sweep_spec

SPEC = """
name = "report"
base = "small"
workloads = ["mlp", "cnn"]
[axes]
"array.rows" = [1, 2, 3, 4]
"sore.lanes" = [1, 2, 4]
method = ["srste", "bdwp"]
interleave = [true, false]
"""


def analytic(point: sweep_spec.Point) -> dict:
    """A cheap deterministic record: fails on rows == 3; trade-offs between the axes, so
    the front has several points and some points tie."""
    rows = point.config.array.rows
    if rows == 3:
        return {"status": "failed", "error": "ValueError: three rows are unlucky"}
    lanes = point.config.sore.lanes
    opts = point.options_dict
    cycles = (1000 // rows + 7 * lanes + len(point.workload)
              + (40 if opts["method"] == "srste" else 0) + (0 if opts["interleave"] else 25))
    return {"status": "ok", "total_cycles": cycles, "seconds": cycles / 3e8,
            "energy_pj": cycles * 0.1 * (5 - lanes), "speedup_vs_dense": 1 + 1 / rows,
            "utilization": 1 / 3, "dram_bytes": 64 * lanes, "lut": 100 * rows + 10 * lanes,
            "ff": 50 * rows, "dsp": rows, "bram": 2.5,
            "result": json.dumps({"cycles": cycles})}


def make_store(path: Path, text: str = SPEC, evaluate=analytic) -> Path:
    spec = sweep_spec.loads(text, "toml")
    points = spec.points()
    with sweep.ResultStore.create(path) as store:
        run = store.begin_run(spec, len(points))
        for p in points:
            store.write(p, evaluate(p), run)
    return path


def raw_rows(path: Path) -> list[dict]:
    """The store's rows straight from SQLite (not through the code under test)."""
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        conn.row_factory = sqlite3.Row
        rows = [dict(r) for r in conn.execute("SELECT * FROM points ORDER BY idx")]
    for r in rows:
        r["params"] = json.loads(r["params"])
    return rows


def brute_front(objs: np.ndarray) -> set[int]:
    """Indices of rows no other row dominates (all objectives minimised)."""
    if len(objs) == 0:
        return set()
    le = (objs[:, None, :] <= objs[None, :, :]).all(axis=2)  # [j, i]: j no worse than i
    lt = (objs[:, None, :] < objs[None, :, :]).any(axis=2)
    dominated = (le & lt).any(axis=0)
    return {int(i) for i in np.flatnonzero(~dominated)}


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    return make_store(tmp_path_factory.mktemp("store") / "s.sqlite")


@pytest.fixture(scope="module")
def report(store, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("rep") / "out"
    assert main(["sweep", "report", str(store), "-o", str(out)]) == 0
    return out / "index.html"


@pytest.fixture(scope="module")
def plots(store):
    from nmsat.reports import sweep_figures as sf

    points, failed = sf.load_store(store)
    return {p.name: p for p in sf.sweep_plots(points, failed)}


# --------------------------------------------------------------------------- plotted data


@pytest.mark.parametrize("workload", ["mlp", "cnn"])
def test_pareto_figure_draws_the_store_values_and_rings_the_front(store, plots, workload):
    rows = [r for r in raw_rows(store) if r["workload"] == workload and r["status"] == "ok"]
    plot = plots[f"sweep_pareto_{workload}"]
    a = plot.artists
    speed = np.array([1.0 / r["seconds"] for r in rows])
    lut = np.array([float(r["lut"]) for r in rows])
    energy = np.array([r["energy_pj"] for r in rows]) / a["energy_scale"]
    assert np.array_equal(a["area"].get_offsets(), np.column_stack([lut, speed]))
    np.testing.assert_allclose(a["energy"].get_offsets(), np.column_stack([energy, speed]),
                               rtol=1e-12)
    # the colour of each dot is its energy
    np.testing.assert_allclose(a["area"].get_array(), energy, rtol=1e-12)
    objs = np.array([[r["seconds"], r["energy_pj"], r["lut"]] for r in rows], dtype=float)
    front = sorted(brute_front(objs))
    assert 1 < len(front) < len(rows)
    assert sorted(map(tuple, a["area_front"].get_offsets())) == \
        sorted((lut[i], speed[i]) for i in front)
    np.testing.assert_allclose(sorted(map(tuple, a["energy_front"].get_offsets())),
                               sorted((energy[i], speed[i]) for i in front), rtol=1e-12)
    # the table under the figure is the front, fastest first, with the store's numbers
    table = plot.table
    col = table.columns.index
    assert sorted(r[col("point")] for r in table.rows) == sorted(rows[i]["idx"] for i in front)
    by_idx = {r["idx"]: r for r in rows}
    for trow in table.rows:
        r = by_idx[trow[col("point")]]
        assert trow[col("cycles")] == r["total_cycles"]
        assert trow[col("speedup vs dense (×)")] == r["speedup_vs_dense"]
        assert (trow[col("LUT")], trow[col("FF")], trow[col("DSP")],
                trow[col("BRAM (RAMB36)")]) == (r["lut"], r["ff"], r["dsp"], r["bram"])
        assert trow[col("method")] == r["params"]["method"]
    secs = [by_idx[t[col("point")]]["seconds"] for t in table.rows]
    assert secs == sorted(secs)
    n_failed = sum(1 for r in raw_rows(store) if r["workload"] == workload
                   and r["status"] == "failed")
    assert f"{len(rows)} design points, {n_failed} failed" in plot.figure.get_suptitle()


@pytest.mark.parametrize("workload", ["mlp", "cnn"])
def test_sensitivity_figure_draws_median_and_range_per_axis_value(store, plots, workload):
    rows = [r for r in raw_rows(store) if r["workload"] == workload and r["status"] == "ok"]
    a = plots[f"sweep_sensitivity_{workload}"].artists
    axes = sorted({k for r in rows for k in r["params"]})
    assert sorted(k[1] for k in a if k[0] == "median" and k[2] == "seconds") == axes
    for axis in axes:
        distinct = {r["params"][axis] for r in rows}
        numeric = all(type(v) is int for v in distinct)
        values = sorted(distinct) if numeric else sorted(distinct, key=str)
        assert a[("x", axis)] == values
        # plotted = stored value / scale (seconds per time unit, pJ per energy unit)
        for metric, column, scale in (("seconds", "seconds", a[("scale", "seconds")]),
                                      ("energy_j", "energy_pj", a[("scale", "energy_j")])):
            groups = [[r[column] for r in rows if r["params"][axis] == v] for v in values]
            line = a[("median", axis, metric)]
            want_x = values if numeric else list(range(len(values)))
            assert list(line.get_xdata()) == [float(x) for x in want_x]
            np.testing.assert_allclose(line.get_ydata(),
                                       [statistics.median(g) / scale for g in groups],
                                       rtol=1e-12)
            # the band: its outline passes through every (x, min) and (x, max)
            verts = a[("range", axis, metric)].get_paths()[0].vertices
            for x, g in zip(want_x, groups):
                for y in (min(g) / scale, max(g) / scale):
                    hit = np.isclose(verts, [x, y], rtol=1e-12, atol=0).all(axis=1)
                    assert hit.any(), (axis, x, y)


# --------------------------------------------------------------------------- the front


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(*(st.integers(0, 4),) * 3), max_size=40))
def test_pareto_front_equals_brute_force_on_random_data(rows):
    from nmsat.reports.sweep_figures import pareto_front

    front = pareto_front(rows)
    assert front == sorted(front)
    assert set(front) == brute_front(np.array(rows, dtype=float).reshape(-1, 3))


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.floats(1e-6, 1.0), st.floats(1e-3, 1e3), st.integers(1, 10**6)),
                min_size=1, max_size=30))
def test_pareto_front_on_random_floats(rows):
    from nmsat.reports.sweep_figures import pareto_front

    front = set(pareto_front(rows))
    assert front == brute_front(np.array(rows, dtype=float))
    assert front  # a non-empty set always has a non-dominated point


# --------------------------------------------------------------------------- the page




def test_page_embeds_every_figure_and_lists_front_and_failures(report, store):
    page = _parse(report)
    assert page.images == [f"sweep_{k}_{w}.svg" for w in ("mlp", "cnn")
                           for k in ("pareto", "sensitivity")]
    for src in page.images + [h for h in page.links if not h.startswith("#")]:
        assert (report.parent / src).is_file() and (report.parent / src).stat().st_size > 0
    for src in page.images:
        assert (report.parent / src.replace(".svg", ".png")).read_bytes()[:4] == b"\x89PNG"
    for h in page.links:
        if h.startswith("#"):
            assert h[1:] in page.ids
    rows = raw_rows(store)
    failed = [r for r in rows if r["status"] == "failed"]
    assert len(failed) == 24
    for r in failed:  # every failed point is listed with its error
        assert r["key"][:12] in page.cells
    assert page.cells.count("ValueError: three rows are unlucky") == len(failed)
    for wl in ("mlp", "cnn"):
        ok = [r for r in rows if r["workload"] == wl and r["status"] == "ok"]
        objs = np.array([[r["seconds"], r["energy_pj"], r["lut"]] for r in ok], dtype=float)
        for i in brute_front(objs):
            assert ok[i]["key"][:12] in page.cells
            assert f"{ok[i]['total_cycles']:,}" in page.cells
        off_front = set(range(len(ok))) - brute_front(objs)
        assert not {ok[i]["key"][:12] for i in off_front} & set(page.cells)
    text = report.read_text()
    assert "<script src" not in text and "http" not in text.replace("http-equiv", "")


@pytest.mark.browser
def test_page_renders_in_chromium(report):
    r = render(report)
    problems, requests, images = r.problems, r.requests, r.images
    title, headings = r.title, r.headings
    assert problems == []
    assert len(images) == len(_parse(report).images) == 4
    for src, complete, width, height in images:
        assert complete and width > 0 and height > 0, src
    assert all(u.startswith("file://") for u in requests), requests
    assert title == "nmsat sweep report: s.sqlite"
    assert "mlp: Pareto front" in headings and "cnn: sensitivity to each axis" in headings
    assert "Failed points (24)" in headings


def test_same_store_gives_byte_identical_files(report, store, tmp_path):
    out = tmp_path / "again"
    assert main(["sweep", "report", str(store), "-o", str(out)]) == 0
    first = {p.name: p.read_bytes() for p in report.parent.iterdir()}
    assert {p.name: p.read_bytes() for p in out.iterdir()} == first
    # over an existing report, too (no temporary files left behind)
    assert main(["sweep", "report", str(store), "-o", str(out)]) == 0
    assert {p.name: p.read_bytes() for p in out.iterdir()} == first


def test_default_output_folder_is_beside_the_store(tmp_path, capsys):
    store = make_store(tmp_path / "my.sweep.sqlite", SPEC.replace(
        '"sore.lanes" = [1, 2, 4]', '"sore.lanes" = [1]'))
    assert main(["sweep", "report", str(store)]) == 0
    out = tmp_path / "my.sweep-report"
    assert capsys.readouterr().out == f"wrote {out / 'index.html'}\n"
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["index.html", "summary.csv", "failed.csv"]
        + [f"sweep_{k}_{w}.{f}" for k in ("pareto", "sensitivity")
                                         for w in ("mlp", "cnn") for f in ("png", "svg", "csv")])


def test_without_area_estimate_the_multiplier_count_stands_in(tmp_path):
    from nmsat.reports import sweep_figures as sf

    def no_area(point):
        rec = analytic(point)
        for k in ("lut", "ff", "dsp", "bram"):
            rec.pop(k, None)
        return rec

    store = make_store(tmp_path / "s.sqlite", evaluate=no_area)
    points, _failed = sf.load_store(store)
    plot = sf.pareto_plot("mlp", [p for p in points if p.workload == "mlp"])
    rows = [r for r in raw_rows(store) if r["workload"] == "mlp" and r["status"] == "ok"]
    mults = [json.loads(r["config"])["array"] for r in rows]
    assert [x for x, _ in plot.artists["area"].get_offsets()] == \
        [float(m["rows"] * m["cols"] * m["macs_per_pe"]) for m in mults]
    assert "no area estimate" in plot.figure.axes[0].get_xlabel()


# --------------------------------------------------------------------------- bad input


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def _bad_store(kind: str, d: Path) -> Path:
    if kind == "missing":
        return d / "none.sqlite"
    if kind == "folder":
        (d / "folder.sqlite").mkdir()
        return d / "folder.sqlite"
    if kind == "text":
        (d / "x.json").write_text("{}")
        return d / "x.json"
    if kind == "empty":
        (d / "e.sqlite").write_bytes(b"")
        return d / "e.sqlite"
    if kind == "plain-sqlite":
        with sqlite3.connect(d / "p.sqlite") as conn:
            conn.execute("CREATE TABLE t (a)")
        return d / "p.sqlite"
    if kind == "no-points":
        sweep.ResultStore.create(d / "n.sqlite").close()
        return d / "n.sqlite"
    if kind == "all-failed":
        return make_store(d / "f.sqlite", evaluate=lambda p: {"status": "failed",
                                                              "error": "RuntimeError: no"})
    if kind == "under-a-file":
        (d / "plain").write_text("x")
        return d / "plain" / "s.sqlite"
    raise AssertionError(kind)


BAD_STORES = {
    "missing": "no sweep store at {p}: no such file",
    "folder": "{p} is a folder, not a sweep store",
    "text": "{p} is not a sweep store (not an SQLite database)",
    "empty": "{p} is not a sweep store (an empty file)",
    "plain-sqlite": "{p} is an SQLite database but not a sweep store (no meta, points or "
                    "runs table)",
    "no-points": "{p}: no successful sweep point to report (it holds no points)",
    "all-failed": "{p}: no successful sweep point to report (all 96 points failed)",
    "under-a-file": "no sweep store at {p}: {d}/plain is not a folder",
}


@pytest.mark.parametrize("kind", list(BAD_STORES))
@pytest.mark.parametrize("existing_out", [False, True])
def test_bad_store_one_line_exit_2_nothing_written(kind, existing_out, report, tmp_path,
                                                   capsys):
    d = tmp_path / "in"
    d.mkdir()
    bad = _bad_store(kind, d)
    out = tmp_path / "out"
    before = None
    if existing_out:  # a previous report stays exactly as it was
        out.mkdir()
        for f in report.parent.iterdir():
            (out / f.name).write_bytes(f.read_bytes())
        before = {p.name: p.read_bytes() for p in out.iterdir()}
    inputs = {p: p.read_bytes() for p in d.rglob("*") if p.is_file()}
    rc, stdout, err = _run(capsys, "sweep", "report", str(bad), "-o", str(out))
    assert rc == 2 and stdout == ""
    assert err == f"nmsat: error: {BAD_STORES[kind].format(p=bad, d=d)}\n"
    if existing_out:
        assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    else:
        assert not out.exists()
    assert {p: p.read_bytes() for p in d.rglob("*") if p.is_file()} == inputs
    assert not list(d.rglob("*-wal")) and not list(d.rglob("*-shm"))


@pytest.mark.parametrize("kind", ["missing", "folder", "text", "empty", "plain-sqlite",
                                  "under-a-file"])
def test_export_names_what_is_wrong_with_the_store(kind, tmp_path, capsys):
    bad = _bad_store(kind, tmp_path)
    for fmt in ("--csv", "--json"):
        rc, stdout, err = _run(capsys, "sweep", "export", str(bad), fmt)
        assert rc == 2 and stdout == ""
        assert err == f"nmsat: error: {BAD_STORES[kind].format(p=bad, d=tmp_path)}\n"


@pytest.mark.parametrize("make_out, fragment", [
    (lambda t: (t / "file").write_text("keep") and t / "file",
     "-o: cannot write into {o}: it exists and is not a folder"),
    (lambda t: (t / "file").write_text("keep") and t / "file" / "sub",
     "-o: cannot write {o}: {t}/file is not a folder"),
])
def test_unwritable_output_one_line_exit_2(make_out, fragment, store, tmp_path, capsys):
    out = make_out(tmp_path)
    rc, stdout, err = _run(capsys, "sweep", "report", str(store), "-o", str(out))
    assert rc == 2 and stdout == ""
    assert err == f"nmsat: error: {fragment.format(o=out, t=tmp_path)}\n"
    assert (tmp_path / "file").read_text() == "keep"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


@pytest.mark.parametrize("existing", [False, True])
def test_a_failed_write_leaves_no_partial_output(existing, store, report, tmp_path,
                                                 monkeypatch, capsys):
    """Staging the fifth file fails (e.g. the disk fills): no file is replaced, no
    temporary file is left, and a folder the command made is removed again."""
    import nmsat.fileio

    out = tmp_path / "a" / "b" / "out"
    before = None
    if existing:
        out.mkdir(parents=True)
        (out / "index.html").write_text("old page")
        (out / "sweep_pareto_mlp.svg").write_text("old figure")
        before = {p.name: p.read_bytes() for p in out.iterdir()}
    real = nmsat.fileio._stage
    calls = []

    def failing(p, *rest):
        calls.append(p)
        if len(calls) == 5:
            raise OSError(28, "No space left on device")
        return real(p, *rest)

    monkeypatch.setattr(nmsat.fileio, "_stage", failing)
    rc, stdout, err = _run(capsys, "sweep", "report", str(store), "-o", str(out))
    # the figures rendered before the failure were announced; then one line names it
    *status, last = err.splitlines()
    assert rc == 2 and stdout == "" and all(s.startswith("sweep report: ") for s in status)
    assert last.startswith("nmsat: error: ") and "No space left on device" in last
    assert len(calls) == 5
    if existing:
        assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    else:
        assert sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.mark.parametrize("argv, fragment", [
    (["report"], "sweep report: give exactly one STORE"),
    (["report", "a", "b"], "sweep report: give exactly one STORE"),
    (["report", "{s}", "--csv"], "--csv/--json/--parquet/--out are for"),
    (["report", "{s}", "--out", "x"], "give the report folder with -o DIR"),
    (["report", "{s}", "--workers", "2"], "--workers/--scheduler/--resume are for running"),
])
def test_report_usage_errors(argv, fragment, store, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rc, stdout, err = _run(capsys, "sweep", *[a.format(s=store) for a in argv])
    assert rc == 2 and stdout == "" and len(err.splitlines()) == 1 and fragment in err
    assert list(tmp_path.iterdir()) == []


def test_running_into_a_folder_or_under_a_file_is_refused(tmp_path, capsys):
    spec = tmp_path / "s.toml"
    spec.write_text(SPEC)
    (tmp_path / "dir.sqlite").mkdir()
    (tmp_path / "file").write_text("x")
    for store, resume, msg in (
            ("dir.sqlite", [], ("-o: cannot write {t}/dir.sqlite: it is a folder; nmsat "
                               "writes regular files only")),
            ("dir.sqlite", ["--resume"], ("-o: cannot write {t}/dir.sqlite: it is a folder; "
                                         "nmsat writes regular files only")),
            ("file/s.sqlite", [], ("-o: cannot write {t}/file/s.sqlite: {t}/file is not a "
                                  "folder"))):
        rc, _, err = _run(capsys, "sweep", str(spec), "-o", str(tmp_path / store), *resume,
                          "--workers", "1")
        assert rc == 2 and err == f"nmsat: error: {msg.format(t=tmp_path)}\n"
    rc, _, err = _run(capsys, "sweep", str(tmp_path / "file" / "x.toml"))
    assert rc == 2 and err == (f"nmsat: error: sweep spec not found: {tmp_path}/file/x.toml "
                               f"(a parent is a file, not a folder)\n")
    (tmp_path / "d.toml").mkdir()
    rc, _, err = _run(capsys, "sweep", str(tmp_path / "d.toml"))
    assert rc == 2
    assert err == f"nmsat: error: sweep spec {tmp_path}/d.toml is a folder, not a regular file\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.toml", "dir.sqlite", "file",
                                                           "s.toml"]


# --------------------------------------------------------------------------- the key


def test_stored_key_is_the_hash_of_config_workload_options_and_version(store):
    from nmsat import __version__

    for r in raw_rows(store):
        assert r["nmsat_version"] == __version__
        assert r["key"] == sweep_spec.point_key(json.loads(r["config"]), r["workload"],
                                                json.loads(r["options"]), r["nmsat_version"])


def _leaves(d: dict, prefix: str = "") -> list[tuple[str, object]]:
    out = []
    for k, v in d.items():
        if isinstance(v, dict):
            out += _leaves(v, f"{prefix}{k}.")
        else:
            out.append((f"{prefix}{k}", v))
    return out


def _changed(v):
    if isinstance(v, bool):
        return not v
    if isinstance(v, (int, float)):
        return v + 1
    if isinstance(v, str):
        return v + "x"
    if isinstance(v, list):
        return [*v, v[-1]] if v else [1]
    if v is None:
        return 1
    raise AssertionError(type(v))


def test_changing_any_one_input_changes_the_key():
    from nmsat import config as nmconfig

    (p,) = sweep_spec.loads('base = "small"\nworkloads = ["mlp"]\n', "toml").points()
    cfg = nmconfig.to_dict(p.config)
    opts = p.options_dict
    assert set(opts) == set(sweep_spec.option_fields())  # every option is in the key
    key = sweep_spec.point_key(cfg, "mlp", opts)
    assert key == p.key
    keys = {key}
    leaves = _leaves(cfg)
    assert len(leaves) > 20
    for path, value in leaves:
        changed = json.loads(json.dumps(cfg))
        node = changed
        *parents, last = path.split(".")
        for k in parents:
            node = node[k]
        node[last] = _changed(value)
        keys.add(sweep_spec.point_key(changed, "mlp", opts))
    for name, value in opts.items():
        keys.add(sweep_spec.point_key(cfg, "mlp", dict(opts, **{name: _changed(value)})))
    keys.add(sweep_spec.point_key(cfg, "cnn", opts))
    keys.add(sweep_spec.point_key(cfg, "mlp", opts, version="0.0.0+other"))
    assert len(keys) == 1 + len(leaves) + len(opts) + 2  # each change: a new, distinct key


def test_points_that_do_not_fit_the_xcvu9p_are_marked():
    """A point over the XCVU9P's LUTs (a 32x16 array needing 1.34 M LUTs, say) is drawn
    as a red cross in both panels; points within capacity and points without an
    estimate are not."""
    import matplotlib

    from nmsat.reports import style
    from nmsat.reports.sweep_figures import SweepPoint, fits_xcvu9p, pareto_plot
    from nmsat.rtl.synth import XCVU9P

    cap = XCVU9P.capacity
    pts = [SweepPoint(f"k{i}", "mlp", {"array.rows": r}, 1e-3 / (i + 1), 1e-3 * (i + 1), lut,
                      16 * (i + 1), idx=i, total_cycles=1000, speedup=1.0, ff=1000, dsp=10,
                      bram=5.0)
           for i, (r, lut) in enumerate([(8, 100_000), (16, cap.lut), (32, 1_340_000)])]
    assert [fits_xcvu9p(p) for p in pts] == [True, True, False]
    assert fits_xcvu9p(SweepPoint("n", "mlp", {}, 1.0, 1.0, None, 16)) is None
    with matplotlib.rc_context(style.RC):
        plot = pareto_plot("mlp", pts)
    assert plot.artists["misfit_keys"] == ["k2"]
    offsets = plot.artists["misfit"]["area"].get_offsets()
    assert offsets.tolist() == [[1_340_000.0, pts[2].speed]]
