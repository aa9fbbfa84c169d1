"""The result store, the Dask runner, export, the sweep figures and the area model's fit.

These run in-process. The store/resume machinery is exercised with a tiny analytic
evaluator (:func:`analytic`) so that it does not depend on simulator speed; the shipped
sweep's evaluator (the real simulator) is exercised end to end in test_sweep_cli.py.
"""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from pathlib import Path

import pytest

from nmsat import config as nmconfig
from nmsat.simulator import area, sweep, sweep_spec
from nmsat.simulator.sweep import DaskCluster, ResultStore, SweepError

SPEC = """
name = "store"
base = "small"
workloads = ["mlp", "cnn"]
[axes]
"array.rows" = [1, 2, 3, 4]
"sore.lanes" = [1, 2, 4]
"""


def analytic(task: sweep.PointTask) -> dict:
    """Test evaluator: cheap, deterministic, fails on rows == 3."""
    rows = task.config["array"]["rows"]
    if rows == 3:
        raise ValueError("three rows are unlucky")
    lanes = task.config["sore"]["lanes"]
    cycles = 1000 // rows + 7 * lanes + len(task.workload)
    return {"status": "ok", "total_cycles": cycles, "seconds": cycles / 3e8,
            "energy_pj": cycles * 0.1, "speedup_vs_dense": 1 + 1 / rows,
            "utilization": 1 / 3, "dram_bytes": 64 * lanes, "lut": 100 * rows, "ff": 1,
            "dsp": rows, "bram": 2, "result": json.dumps({"cycles": cycles})}


@pytest.fixture(scope="module")
def cluster():
    with DaskCluster(workers=1) as c:
        yield c


def result_columns(path: Path) -> list[tuple]:
    cols = [c for c in sweep._POINT_COLUMNS if c not in sweep.HOST_COLUMNS]
    with sqlite3.connect(path) as conn:
        return conn.execute(f"SELECT {', '.join(cols)} FROM points ORDER BY key").fetchall()


def test_run_stores_every_point_and_records_failures(tmp_path, cluster):
    spec = sweep_spec.loads(SPEC, "toml")
    store = tmp_path / "s.sqlite"
    seen = []
    plan = sweep.plan(spec, store, resume=False)
    summary = sweep.run(plan, store, cluster, seen.append, evaluate=analytic)
    assert (summary.ok, summary.failed, summary.skipped) == (18, 6, 0)
    assert len(seen) == 24
    with ResultStore.open(store) as st:
        rows = st.rows()
    assert [r["idx"] for r in rows] == list(range(24))
    assert {r["key"] for r in rows} == {p.key for p in plan.points}
    bad = [r for r in rows if r["status"] == "failed"]
    assert {r["params"]["array.rows"] for r in bad} == {3}
    assert all(r["error"] == "ValueError: three rows are unlucky" for r in bad)
    assert all(r["total_cycles"] is None for r in bad)
    good = rows[0]
    assert good["config"] == nmconfig.to_dict(plan.points[0].config)
    assert good["options"] == plan.points[0].options_dict
    with sqlite3.connect(store) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)

    # resume: nothing left to do; a new run with more values adds only the new points
    again = sweep.plan(spec, store, resume=True)
    assert again.todo == () and again.skipped == 24
    before = result_columns(store)
    bigger = sweep_spec.loads(SPEC.replace("[1, 2, 4]", "[1, 2, 4, 8]"), "toml")
    more = sweep.plan(bigger, store, resume=True)
    assert len(more.todo) == 8
    sweep.run(more, store, cluster, evaluate=analytic)
    after = result_columns(store)
    assert len(after) == 32 and set(before) <= set(after)


def test_existing_store_needs_resume_and_a_store(tmp_path):
    spec = sweep_spec.loads(SPEC, "toml")
    store = tmp_path / "s.sqlite"
    ResultStore.create(store).close()
    with pytest.raises(SweepError, match="already exists; pass --resume"):
        sweep.plan(spec, store, resume=False)
    other = tmp_path / "notes.sqlite"
    other.write_bytes(b"not a database at all, just some bytes" * 10)
    with pytest.raises(SweepError, match="is not a sweep store"):
        sweep.plan(spec, other, resume=True)
    plain = tmp_path / "plain.sqlite"
    with sqlite3.connect(plain) as conn:
        conn.execute("CREATE TABLE meta (key TEXT, value TEXT)")
    with pytest.raises(SweepError, match="schema None"):
        sweep.plan(spec, plain, resume=True)
    assert not sweep.plan(spec, tmp_path / "new.sqlite", resume=True).skipped
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.sqlite", "plain.sqlite",
                                                           "s.sqlite"]


def test_unreachable_scheduler_raises_before_anything(tmp_path):
    with pytest.raises(SweepError, match="cannot reach the Dask scheduler at tcp://127.0.0.1:9"):
        with DaskCluster(address="tcp://127.0.0.1:9", timeout_s=1):
            pass


def test_export_round_trips_exactly(tmp_path, cluster):
    spec = sweep_spec.loads(SPEC, "toml")
    store = tmp_path / "s.sqlite"
    sweep.run(sweep.plan(spec, store, False), store, cluster, evaluate=analytic)
    rows = sweep.export_rows(store)
    data = json.loads(sweep.export_json(store))
    assert data == json.loads(json.dumps(rows))
    table = list(csv.DictReader(io.StringIO(sweep.export_csv(store))))
    assert [t["key"] for t in table] == [r["key"] for r in rows]
    assert list(table[0])[:5] == ["key", "idx", "workload", "array.rows", "sore.lanes"]
    for t, r in zip(table, rows):
        assert t["status"] == r["status"]
        if r["status"] == "ok":
            assert float(t["seconds"]) == r["seconds"]  # bit-identical through text
            assert int(t["total_cycles"]) == r["total_cycles"]
            assert int(t["lut"]) == r["lut"]
        else:
            assert t["seconds"] == "" and t["error"] == r["error"]


def test_sweep_figures_from_the_store(tmp_path, cluster):
    from nmsat.reports import sweep_figures as sf

    spec = sweep_spec.loads(SPEC, "toml")
    store = tmp_path / "s.sqlite"
    sweep.run(sweep.plan(spec, store, False), store, cluster, evaluate=analytic)
    files = sf.sweep_figures(store, tmp_path / "fig")
    names = sorted(p.name for p in files)
    assert names == sorted(f"sweep_{k}_{w}.{f}" for k in ("pareto", "sensitivity")
                           for w in ("mlp", "cnn") for f in ("png", "svg"))
    assert all(p.stat().st_size > 1000 for p in files)
    points, failed = sf.load_points(store)
    assert failed == 6 and len(points) == 18
    mlp = [p for p in points if p.workload == "mlp"]
    sens = dict(sf.sensitivity(mlp, "array.rows"))
    assert sorted(sens) == [1, 2, 4]
    secs = [p.seconds for p in mlp if p.params["array.rows"] == 2]
    assert sens[2]["seconds"] == (min(secs), sorted(secs)[1], max(secs))


def test_pareto_front():
    pts = [(1, 5, 1), (2, 2, 2), (3, 3, 3), (1, 5, 1), (5, 1, 9), (2, 2, 3)]
    # (3,3,3) is dominated by (2,2,2); (2,2,3) too; the duplicates both stay
    assert sorted(sweep_figures_front(pts)) == [0, 1, 3, 4]
    assert sweep_figures_front([]) == []


def sweep_figures_front(pts):
    from nmsat.reports.sweep_figures import pareto_front

    return pareto_front(pts)


def test_area_fit_recovers_a_linear_table_and_reports_its_error():
    true = {"fixed": 500.0, "pes": 30.0, "multipliers": 12.0, "mux_inputs": 2.0,
            "acc_stages": 40.0, "edge": 9.0, "sore_lanes": 70.0, "wu_lanes": 110.0,
            "buffer_bram36": 0.0}
    configs = [{"array.rows": r, "array.cols": c, "array.act_window": a,
                "array.acc_latency": la, "sore.lanes": s, "weight_update.lanes": w}
               for r, c, a, la, s, w in [(1, 1, 12, 1, 1, 1), (2, 1, 8, 2, 2, 1),
                                         (2, 2, 12, 1, 4, 2), (4, 2, 8, 3, 1, 4),
                                         (4, 4, 16, 2, 2, 2), (3, 2, 12, 4, 8, 1),
                                         (1, 4, 8, 1, 2, 8), (2, 3, 16, 2, 1, 3),
                                         (3, 3, 8, 1, 4, 4), (4, 1, 12, 2, 2, 1)]]
    points = []
    for ch in configs:
        cfg = nmconfig.SMALL.replace(**ch)
        f = area.features(cfg)
        v = int(round(sum(true[k] * f[k] for k in area.FEATURES)))
        points.append(area.CalibrationPoint("small", tuple(ch.items()),
                                            area.Resources(v, v // 2, 4 * cfg.array.pes,
                                                           area.buffer_bram36(cfg)),
                                            "synthetic"))
    model = area.fit(tuple(points), "fp16")
    big = nmconfig.SMALL.replace(**{"array.rows": 8, "array.cols": 8, "sore.lanes": 16})
    f = area.features(big)
    assert model.estimate(big).lut == int(round(sum(true[k] * f[k] for k in area.FEATURES)))
    assert model.estimate(big).dsp == 4 * 64
    err = area.calibration_error(tuple(points))["fp16"]
    assert err["lut"] < 1e-6 and err["dsp"] < 1e-6
    with pytest.raises(ValueError, match="no calibration points for operand type 'int8'"):
        area.fit(tuple(points), "int8")
    with pytest.raises(ValueError, match="cannot fit"):
        area.fit(tuple(points[:3]), "fp16")


def test_buffer_bram36_follows_the_ramb36_geometry():
    # vcu1525: 3 buffers x 16 banks x 128 KiB, 16 B wide -> 2 x 16 blocks of 512 x 72 per bank
    assert area.buffer_bram36(nmconfig.VCU1525) == 3 * 16 * 2 * 16
    # small: 16 KiB over 4 banks of 16 B -> depth 256 -> 2 blocks (128 bits wide) per bank
    assert area.buffer_bram36(nmconfig.SMALL) == 3 * 4 * 2 * 1
