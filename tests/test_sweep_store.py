"""The result store, the Dask runner, export, the sweep figures and the area model's fit.

These run in-process. The store/resume machinery is exercised with a tiny analytic
evaluator (:func:`analytic`) so that it does not depend on simulator speed; the shipped
sweep's evaluator (the real simulator) is exercised end to end in test_sweep_cli.py.
"""

from __future__ import annotations

import csv
import io
import json
import os
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
    cols = [c for c in sweep.POINT_COLUMNS if c not in sweep.HOST_COLUMNS]
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
    with pytest.raises(SweepError, match=r"not a sweep store \(no points or runs table\)"):
        sweep.plan(spec, plain, resume=True)
    assert not sweep.plan(spec, tmp_path / "new.sqlite", resume=True).skipped
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.sqlite", "plain.sqlite",
                                                           "s.sqlite"]


def test_unreachable_scheduler_raises_before_anything(tmp_path):
    with (pytest.raises(SweepError, match="cannot reach the Dask scheduler at tcp://127.0.0.1:9"),
          DaskCluster(address="tcp://127.0.0.1:9", timeout_s=1)):
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


def test_parquet_export_holds_every_column_exactly(tmp_path, cluster):
    pq = pytest.importorskip("pyarrow.parquet")
    from nmsat.simulator.sweep_parquet import export_parquet

    spec = sweep_spec.loads(SPEC, "toml")
    store = tmp_path / "s.sqlite"
    sweep.run(sweep.plan(spec, store, False), store, cluster, evaluate=analytic)
    rows = sweep.export_rows(store)
    data = export_parquet(store)
    assert data == export_parquet(store)  # same store, same bytes
    out = tmp_path / "points.parquet"
    out.write_bytes(data)
    table = pq.read_table(out)
    assert table.schema.field("axis.array.rows").type == "int64"
    assert table.schema.field("seconds").type == "double"
    back = table.to_pylist()
    assert [b["key"] for b in back] == [r["key"] for r in rows]
    for b, r in zip(back, rows):
        assert b["axis.array.rows"] == r["params"]["array.rows"]
        assert b["axis.sore.lanes"] == r["params"]["sore.lanes"]
        for c in ("idx", "workload", "status", "error", *sweep.METRICS, *sweep.AREA,
                  "nmsat_version", "run", "worker", "elapsed_s", "finished_at"):
            assert b[c] == r[c], c  # floats bit-identical, missing values null
        for c in ("params", "config", "options", "result"):
            assert (None if b[c] is None else json.loads(b[c])) == r[c], c
    assert sum(b["status"] == "failed" for b in back) == sum(
        r["status"] == "failed" for r in rows) > 0


def test_sweep_figures_from_the_store(tmp_path, cluster):
    from nmsat.reports import sweep_figures as sf

    spec = sweep_spec.loads(SPEC, "toml")
    store = tmp_path / "s.sqlite"
    sweep.run(sweep.plan(spec, store, False), store, cluster, evaluate=analytic)
    files = sf.sweep_figures(store, tmp_path / "fig")
    names = sorted(p.name for p in files)
    assert names == sorted(f"sweep_{k}_{w}.{f}" for k in ("pareto", "sensitivity")
                           for w in ("mlp", "cnn") for f in ("png", "svg", "csv"))
    assert all(p.stat().st_size > 1000 for p in files if p.suffix != ".csv")
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


TRUE = {  # per-instance resources of each unit, linear in its features (synthetic)
    "pe_cell": lambda c: (40 + 90 * c.array.macs_per_pe + 6 * c.array.macs_per_pe
                          * c.array.act_window + 35 * c.array.acc_latency),
    "sore_lane": lambda c: 310, "wu_lane": lambda c: 900,
    "act_bank": lambda c: 20 + 3 * c.buffers.activation.kib / c.array.rows,
    "wgt_bank": lambda c: 20 + 3 * c.buffers.weight.kib / c.array.cols,
    "out_bank": lambda c: 10 + 2 * c.buffers.output.kib / c.array.pes,
}


def synthetic_table(changes_list):
    """A table in the format of `nmsat rtl synth --calibrate`, from the TRUE costs."""
    from nmsat.rtl.synth import unit

    points = []
    for changes in changes_list:
        cfg = nmconfig.SMALL.replace(**dict(changes))
        units, total = [], dict.fromkeys(("lut", "ff", "dsp", "bram36", "uram"), 0)
        for name, cost in TRUE.items():
            lut = round(cost(cfg))
            each = {"lut": lut, "ff": lut // 2, "dsp": cfg.array.macs_per_pe
                    if name == "pe_cell" else 0, "bram36": 0.5 if name.endswith("bank") else 0,
                    "uram": 0}
            n = unit(name).instances(cfg)
            units.append({"name": name, "instances": n, "each": each})
            for k in total:
                total[k] += n * each[k]
        points.append({"preset": "small", "changes": [list(c) for c in changes],
                       "units": units, "total": total})
    return {"command": "synthetic", "tool": "none", "points": points}


def test_area_fit_recovers_the_per_unit_costs_and_reports_its_error():
    changes = [(), (("array.rows", 8), ("array.cols", 8)),
               (("array.macs_per_pe", 2), ("array.act_window", 4),
                ("array.nm_patterns", ["1:4", "2:4"])),
               (("array.macs_per_pe", 8), ("array.act_window", 16)),
               (("array.acc_latency", 4),), (("array.act_window", 16),),
               (("buffers.activation.kib", 64), ("buffers.weight.kib", 32),
                ("buffers.output.kib", 128)),
               (("array.rows", 2), ("array.cols", 4), ("array.acc_latency", 2))]
    cal = area.parse_table(synthetic_table(changes))
    model = area.fit(cal.points, "fp16")
    big = nmconfig.VCU1525  # 16 x 16, P = 4, A = 16, La = 4, 2 MiB buffers: far outside
    est = model.estimate(big)
    # the area model's instance counts (the column layout's WGT banks; per-unit synthesis
    # counts the engine's R x chains banks with shadow weights, tests/test_rtl_synth.py)
    want = sum(area._instances(n, big) * round(c(big)) for n, c in TRUE.items())
    want += area.shadow_weight_extra(big).get("lut", 0)  # counted, not fitted
    assert abs(est.lut - want) <= len(TRUE) * 256  # per-instance rounding only
    assert est.dsp == big.array.pes * 4
    err = area.calibration_error(cal.points)["fp16"]
    assert err["points"] >= 1 and err["lut"] < 0.01 and err["dsp"] < 1e-9
    with pytest.raises(ValueError, match="no calibration points for operand type 'int8'"):
        area.fit(cal.points, "int8")
    with pytest.raises(ValueError, match="does not vary"):
        area.fit(cal.points[:1], "fp16")
    with pytest.raises(ValueError, match="malformed"):
        area.parse_table({"points": [{"preset": "small"}]})


def test_uncalibrated_operand_types_get_no_estimate():
    # no table, or one too small to fit every coefficient (e.g. still being synthesised)
    fitted = area.models()
    for cfg in (nmconfig.SMALL, nmconfig.SMALL.replace(**{"numerics.dtype": "int16"})):
        assert (area.estimate(cfg) is None) == (cfg.numerics.dtype not in fitted)
    assert "int16" not in fitted


def test_store_lease_refuses_a_second_holder_and_is_released(tmp_path):
    from nmsat.simulator.sweep import StoreLock, SweepError

    store = tmp_path / "sub" / "s.sqlite"
    with StoreLock(store) as lease:
        assert lease.path.read_text() == f"{os.getpid()}\n"
        with pytest.raises(SweepError, match=r"is in use by another nmsat sweep \(pid \d+\)"):
            StoreLock(store).__enter__()
    assert not lease.path.exists() and not store.parent.exists()  # the folder it made too
    with StoreLock(store):  # released: taken again at once
        pass
    store.parent.mkdir()
    lease.path.write_text("12345\n")  # a lock file left by a killed sweep holds no lease
    with StoreLock(store):
        pass


def test_local_cluster_starts_cleanly_when_the_default_http_port_is_taken():
    """The scheduler's HTTP server must not try Dask's default port 8787: when that port is
    taken (another sweep, a user's cluster), distributed retries on a free one but leaks the
    first socket, a ResourceWarning (an error under this suite's filterwarnings)."""
    import gc
    import socket
    import warnings

    holder = socket.socket()
    try:
        try:
            holder.bind(("127.0.0.1", 8787))
            holder.listen(1)
        except OSError:
            pass  # already taken by another process: the case under test either way
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with DaskCluster(workers=1) as c:
                assert c.workers == 1
            gc.collect()
        leaks = [w for w in caught if issubclass(w.category, ResourceWarning)]
        assert not leaks, [str(w.message) for w in leaks]
    finally:
        holder.close()
