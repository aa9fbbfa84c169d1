"""The co-design ranking of a sweep store (reports/codesign.py), on hand-made rows whose
answers are known: complete designs only, the preset found as baseline, the winners per
objective, the Pareto front and which component of the iteration shrank."""

from __future__ import annotations

import copy

import pytest

from nmsat import config as nmconfig
from nmsat.reports import codesign

BASE = nmconfig.to_dict(nmconfig.preset("vcu1525"))  # 200 MHz: 5 ns per cycle


def row(idx: int, workload: str, lanes: int, rows: int, cycles: dict[str, int],
        energy_pj: float, status: str = "ok") -> dict:
    cfg = copy.deepcopy(BASE)
    cfg["weight_update"]["lanes"] = lanes
    cfg["array"]["rows"] = rows
    busy, dep, mem, sore, tail = (cycles[k] for k in ("busy", "dep", "mem", "sore", "tail"))
    total = busy + dep + mem + sore + tail
    result = {"total_cycles": total, "unit_busy_cycles": {"engine": busy},
              "unit_stall_cycles": {"engine": {"dependency": dep, "memory": mem,
                                               "sore": sore}}}
    return {"key": f"k{idx}", "idx": idx, "workload": workload,
            "params": {"weight_update.lanes": lanes, "array.rows": rows}, "config": cfg,
            "status": status, "seconds": total * 5e-9, "energy_pj": energy_pj,
            "lut": 1000 * rows + lanes, "result": result if status == "ok" else None}


def rows_of() -> list[dict]:
    c = {"busy": 100, "dep": 50, "mem": 10, "sore": 0, "tail": 5}
    return [
        # the preset: 16 rows, 16 lanes
        row(0, "a", 16, 16, c, 100.0), row(1, "b", 16, 16, dict(c, busy=200), 200.0),
        # more vector lanes: the dependency wait shrinks (faster, same energy)
        row(2, "a", 64, 16, dict(c, dep=10), 100.0),
        row(3, "b", 64, 16, dict(c, busy=200, dep=10), 200.0),
        # fewer rows: slower, cheaper
        row(4, "a", 16, 8, dict(c, busy=180), 60.0),
        row(5, "b", 16, 8, dict(c, busy=360), 120.0),
        # incomplete: its "b" failed, so it is no design (though it would be fastest)
        row(6, "a", 128, 16, dict(c, dep=0), 90.0),
        row(7, "b", 128, 16, c, 0.0, status="failed"),
    ]


def test_designs_baseline_winners_and_why():
    ds, workloads = codesign.designs(rows_of())
    assert workloads == ("a", "b")
    assert [dict(d.params)["weight_update.lanes"] for d in ds] == [16, 64, 16]
    base = codesign.baseline(ds)
    assert base is ds[0]
    assert base.mean_seconds == pytest.approx((165 + 265) / 2 * 5e-9)
    assert base.parts["dependency"] == pytest.approx(100 * 5e-9)
    (_, fastest), (_, frugal) = codesign.winners(ds)
    assert fastest is ds[1] and frugal is ds[2]
    v = codesign.verdict(fastest, base)
    assert v.changes == (("weight_update.lanes", 16, 64),)
    assert v.main_part == "dependency"
    assert v.deltas["dependency"] == pytest.approx(80 * 5e-9)
    assert v.speedup == pytest.approx(430 / 350)
    assert v.per_workload == {"a": pytest.approx(165 / 125), "b": pytest.approx(265 / 225)}
    assert v.energy_ratio == pytest.approx(1.0)
    assert "vector engine" in v.why()
    slow = codesign.verdict(frugal, base)
    assert slow.speedup < 1 and slow.energy_ratio == pytest.approx(0.6)
    # the front: the fastest and the cheapest; the preset is beaten by the fastest in time
    # and matched in energy but has fewer LUTs, so it stays on the three-way front
    assert {dict(d.params)["weight_update.lanes"] for d in codesign.front(ds)} == {16, 64}
    assert len(codesign.front(ds)) == 3


def test_section_names_the_winners_and_the_baseline():
    html = codesign.section_html(rows_of())
    assert html is not None
    assert "fastest (mean time per iteration)" in html and "baseline" in html
    assert "weight_update.lanes 16 → 64" in html
    assert "1.229× faster on the mean" in html
    one = [r for r in rows_of() if r["workload"] == "a"]
    assert codesign.section_html(one) is None  # one workload: no co-design section
