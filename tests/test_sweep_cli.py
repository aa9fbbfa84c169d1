"""``nmsat sweep`` end to end with the real simulator, in subprocesses.

* bad input (malformed spec, unknown axis, unreachable scheduler, existing store) ends with
  one line and exit status 2, and no store is created or changed;
* the same sweep gives identical stored results with 1 and 2 local workers and on an
  external ``dask scheduler`` and two ``dask worker`` processes started here;
* a sweep killed with SIGKILL and resumed holds every point exactly once, with values
  identical to an uninterrupted run;
* export as CSV and JSON.
"""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nmsat.simulator import sweep, sweep_spec

DATA = Path(__file__).parent / "data" / "sweeps"
SMALL = DATA / "small.toml"


def nmsat(*args: str | Path, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nmsat", *map(str, args)], check=False,
                          capture_output=True, text=True, timeout=timeout)


def result_columns(path: Path) -> list[tuple]:
    """Every stored column except where/when a point ran, in key order."""
    cols = [c for c in sweep.POINT_COLUMNS if c not in sweep.HOST_COLUMNS]
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        return conn.execute(f"SELECT {', '.join(cols)} FROM points ORDER BY key").fetchall()


def stored_count(path: Path) -> int:
    if not path.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as conn:
            return conn.execute("SELECT count(*) FROM points").fetchone()[0]
    except sqlite3.OperationalError:  # created but not yet renamed into place / locked
        return 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """SMALL run uninterrupted on one local worker."""
    store = tmp_path_factory.mktemp("ref") / "ref.sqlite"
    r = nmsat("sweep", SMALL, "-o", store, "--workers", "1", "--no-progress")
    assert r.returncode == 0, r.stderr
    return store


def test_reference_run_stores_every_point_once(reference):
    points = sweep_spec.load(SMALL).points()
    rows = result_columns(reference)
    assert sorted(r[0] for r in rows) == sorted(p.key for p in points)
    data = {row["key"]: row for row in sweep.export_rows(reference)}
    assert all(r["status"] == "ok" for r in data.values())
    some = data[points[5].key]
    assert some["result"]["workload"] == points[5].workload
    assert some["result"]["total_cycles"] == some["total_cycles"] > 0
    assert some["result"]["config"] == some["config"]


def test_two_workers_give_identical_results(reference, tmp_path):
    store = tmp_path / "two.sqlite"
    r = nmsat("sweep", SMALL, "-o", store, "--workers", "2", "--no-progress")
    assert r.returncode == 0, r.stderr
    assert result_columns(store) == result_columns(reference)
    with sqlite3.connect(store) as conn:
        workers = {w for (w,) in conn.execute("SELECT DISTINCT worker FROM points")}
    assert len(workers) == 2  # both workers did some of it


def test_external_scheduler_gives_identical_results(reference, tmp_path):
    sched_file = tmp_path / "scheduler.json"
    port = free_port()
    procs = [subprocess.Popen([sys.executable, "-m", "dask", "scheduler", "--host", "127.0.0.1",
                               "--port", str(port), "--no-dashboard", "--scheduler-file",
                               str(sched_file)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)]
    try:
        deadline = time.monotonic() + 30
        while not sched_file.exists():
            assert time.monotonic() < deadline, "dask scheduler did not start"
            time.sleep(0.1)
        # two worker processes started separately, as on two machines
        for name in ("w1", "w2"):
            procs.append(subprocess.Popen([sys.executable, "-m", "dask", "worker",
                                           f"tcp://127.0.0.1:{port}", "--nworkers", "1",
                                           "--nthreads", "1", "--no-dashboard", "--name",
                                           name], stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL, start_new_session=True))
        from distributed import Client

        with Client(f"tcp://127.0.0.1:{port}", timeout="30s") as client:
            client.wait_for_workers(2, timeout=60)
        store = tmp_path / "ext.sqlite"
        r = nmsat("sweep", SMALL, "-o", store, "--scheduler", f"tcp://127.0.0.1:{port}",
                  "--no-progress")
        assert r.returncode == 0, r.stderr
        assert f"on tcp://127.0.0.1:{port}" in r.stderr
        assert result_columns(store) == result_columns(reference)
        with sqlite3.connect(store) as conn:
            workers = {w for (w,) in conn.execute("SELECT DISTINCT worker FROM points")}
        assert len(workers) == 2  # both worker processes evaluated points
    finally:
        for p in reversed(procs):
            os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            p.wait(timeout=30)


def test_sigkill_then_resume_stores_every_point_exactly_once(reference, tmp_path):
    points = sweep_spec.load(SMALL).points()
    store = tmp_path / "killed.sqlite"
    proc = subprocess.Popen([sys.executable, "-m", "nmsat", "sweep", str(SMALL), "-o", str(store),
                             "--workers", "1", "--no-progress"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 60
    while stored_count(store) < 3:
        assert proc.poll() is None, "the sweep ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    # Freeze the session (the nmsat client and its local Dask cluster): the sweep runs
    # about 30 points a second, and the second sweep below takes longer than that to start,
    # so a running sweep could finish before it is killed. A stopped process keeps its lease.
    os.killpg(proc.pid, signal.SIGSTOP)
    # A second sweep on the same store while the first runs is refused by the lease, even
    # with --resume (it would otherwise run every missing point a second time).
    second = nmsat("sweep", SMALL, "-o", store, "--workers", "1", "--resume", "--no-progress")
    assert second.returncode == 2 and second.stderr.count("\n") == 1, second.stderr
    assert f"store {store} is in use by another nmsat sweep (pid {proc.pid})" in second.stderr
    # the whole session, like a crash (SIGKILL also ends a stopped process)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    partial = stored_count(store)
    assert 3 <= partial < len(points), partial

    r = nmsat("sweep", SMALL, "-o", store, "--workers", "1", "--resume", "--no-progress")
    assert r.returncode == 0, r.stderr
    assert f"{len(points)} points, {partial} already stored" in r.stderr
    rows = result_columns(store)
    keys = [row[0] for row in rows]
    assert len(keys) == len(set(keys)) == len(points)
    assert rows == result_columns(reference)  # bit-identical: same JSON text, same REAL bits
    with sqlite3.connect(store) as conn:
        assert conn.execute("SELECT count(*) FROM runs").fetchone() == (2,)


@pytest.mark.parametrize("args, fragment", [
    ([DATA / "malformed.toml"], "invalid TOML: Unclosed array"),
    ([DATA / "unknown_axis.yaml"], "unknown axis 'array.colums'"),
    ([SMALL, "--scheduler", "tcp://127.0.0.1:{port}", "--connect-timeout", "1"],
     "cannot reach the Dask scheduler at tcp://127.0.0.1:"),
])
@pytest.mark.parametrize("existing", [False, True])
def test_bad_input_exits_2_with_one_line_and_no_store(tmp_path, args, fragment, existing):
    store = tmp_path / "out.sqlite"
    before = None
    if existing:
        sweep.ResultStore.create(store).close()
        before = store.read_bytes()
    args = [str(a).format(port=free_port()) for a in args]
    r = nmsat("sweep", *args, "-o", store, *(["--resume"] if existing else []))
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nmsat: error: "), r.stderr
    assert fragment in lines[0]
    assert r.stdout == ""
    if existing:
        assert store.read_bytes() == before
        assert sorted(p.name for p in tmp_path.iterdir()) == ["out.sqlite"]
    else:
        assert list(tmp_path.iterdir()) == []


def test_existing_store_without_resume_is_refused(reference):
    before = reference.read_bytes()
    r = nmsat("sweep", SMALL, "-o", reference, "--workers", "1")
    assert r.returncode == 2
    assert "already exists; pass --resume" in r.stderr and len(r.stderr.splitlines()) == 1
    assert reference.read_bytes() == before


def test_export_csv_and_json(reference, tmp_path):
    rows = sweep.export_rows(reference)
    r = nmsat("sweep", "export", reference, "--csv")
    assert r.returncode == 0, r.stderr
    table = list(csv.DictReader(io.StringIO(r.stdout)))
    assert [t["key"] for t in table] == [row["key"] for row in rows]
    assert set(table[0]) >= {"workload", "array.rows", "buffers.weight.kib", "method",
                             "interleave", "status", "total_cycles", "seconds", "energy_pj",
                             "speedup_vs_dense"}
    assert [float(t["energy_pj"]) for t in table] == [row["energy_pj"] for row in rows]
    out = tmp_path / "points.json"
    r = nmsat("sweep", "export", reference, "--json", "--out", out)
    assert r.returncode == 0, r.stderr
    data = json.loads(out.read_text())
    assert [d["key"] for d in data] == [row["key"] for row in rows]
    assert data[0]["result"] == rows[0]["result"]
    out = tmp_path / "points.parquet"
    r = nmsat("sweep", "export", reference, "--parquet", "--out", out)
    assert r.returncode == 0, r.stderr
    assert out.read_bytes()[:4] == b"PAR1"
    for bad, msg in ((["export", reference], "choose --csv, --json or --parquet"),
                     (["export", reference, "--parquet"], "give --out FILE"),
                     (["export", tmp_path / "none.sqlite", "--csv"], "no sweep store at"),
                     (["export", reference, "--csv", "--json"], "not allowed with"),
                     ([SMALL, "--csv"], "are for `nmsat sweep export STORE`")):
        r = nmsat("sweep", *bad)
        assert r.returncode == 2 and msg in r.stderr and len(r.stderr.splitlines()) == 1, r.stderr


def test_sweep_figures_from_a_real_store(reference, tmp_path):
    from nmsat.reports.sweep_figures import load_points, pareto_front, sweep_figures

    files = sweep_figures(reference, tmp_path)
    assert sorted(p.name for p in files) == sorted(
        f"sweep_{kind}_{wl}.{fmt}" for kind in ("pareto", "sensitivity")
        for wl in ("mlp", "cnn") for fmt in ("png", "svg", "csv"))
    from nmsat.config import SMALL
    from nmsat.simulator import area

    points, failed = load_points(reference)
    # The spec sweeps the fp16 small preset: resource columns are filled exactly when the
    # committed synthesis calibration table fits fp16, and empty otherwise.
    calibrated = area.estimate(SMALL) is not None
    assert failed == 0 and len(points) == 32
    assert all((p.lut is not None) == calibrated for p in points)
    # the front is over time, energy and area (the multiplier count without an estimate)
    cnn = [p for p in points if p.workload == "cnn"]
    front = pareto_front([(p.seconds, p.energy_j, p.lut if calibrated else p.multipliers)
                          for p in cnn])
    best = min(range(len(cnn)), key=lambda i: (cnn[i].seconds, cnn[i].energy_j))
    assert best in front


def test_sweep_report_of_a_real_store(reference, tmp_path):
    from nmsat.reports import sweep_figures as sf

    out = tmp_path / "report"
    r = nmsat("sweep", "report", reference, "-o", out)
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"wrote {out / 'index.html'}\n"
    page = (out / "index.html").read_text()
    for wl in ("mlp", "cnn"):
        for kind in ("pareto", "sensitivity"):
            assert f'<img src="sweep_{kind}_{wl}.svg"' in page
            assert (out / f"sweep_{kind}_{wl}.png").stat().st_size > 1000
    # the figure's points are the store's, and the page lists the front with its cycles
    rows = [row for row in sweep.export_rows(reference) if row["workload"] == "cnn"]
    points, failed = sf.load_store(reference)
    (plot,) = [p for p in sf.sweep_plots(points, failed) if p.name == "sweep_pareto_cnn"]
    want = [(row["energy_pj"] / plot.artists["energy_scale"], 1.0 / row["seconds"])
            for row in rows]
    got = plot.artists["energy"].get_offsets()
    assert len(got) == len(want) == 16
    for (x, y), (wx, wy) in zip(got, want):
        assert x == pytest.approx(wx, rel=1e-12) and y == wy
    by_key = {row["key"]: row for row in rows}
    assert plot.artists["front"]
    for key in plot.artists["front"]:
        assert f"<td>{key[:12]}</td>" in page
        cycles = by_key[key]["total_cycles"]
        assert f'<td class="num" data-v="{cycles!r}">{cycles:,}</td>' in page
