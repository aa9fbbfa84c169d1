"""Energy model: hand-computed energies in both modes, exact sums, mode switching, refusals."""

from __future__ import annotations

import dataclasses
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nmsat import config, synth_table
from nmsat.commands import main
from nmsat.errors import ConfigError
from nmsat.simulator import area
from nmsat.simulator.api import SimOptions, simulate
from nmsat.simulator.energy import (
    KINDS,
    PHASES,
    UNITS,
    ActivityCounts,
    cell,
    energy,
    fpga_resources,
    report,
    static_pj,
)
from nmsat.workloads import zoo

COUNTS = ActivityCounts(macs=1000, act_buffer_bytes=90, weight_buffer_bytes=180,
                        output_buffer_bytes=360, register_bytes=40, dram_bytes=50,
                        compares=60, wu_ops=70, act_buffer_write_bytes=18,
                        weight_buffer_write_bytes=36, output_buffer_write_bytes=180,
                        sore_lane_cycles=8, vector_lane_cycles=16)

# 128 KiB buffers in 4 banks: 32 KiB banks, Horowitz's 20 pJ per 64-bit read = 2.5 pJ/B
ASIC = config.SMALL.replace(**{"energy.mode": "asic", **{
    f"buffers.{b}.{f}": v for b in ("activation", "weight", "output")
    for f, v in (("kib", 128), ("banks", 4))}})


def test_asic_cell_by_hand():
    c = cell(COUNTS, ASIC, cycles=2000)
    assert c[("engine", "mac")] == 2000.0  # 1000 fp16 MACs x (1.1 mult + 0.9 add)
    assert c[("engine", "register")] == pytest.approx(4.0, rel=1e-15)  # 40 B x 0.1
    assert c[("act_buffer", "sram_read")] == 72 * 2.5
    assert c[("act_buffer", "sram_write")] == 18 * 2.5  # write factor 1.0
    assert c[("weight_buffer", "sram_read")] == 144 * 2.5
    assert c[("output_buffer", "sram_write")] == 180 * 2.5
    assert c[("sore", "compare")] == pytest.approx(3.0, rel=1e-15)  # 60 x 0.05
    assert c[("vector", "vector_op")] == pytest.approx(161.0, rel=1e-15)  # 70 x 2.3
    assert c[("dram", "dram")] == 50 * 162.5
    # leakage 0.2 W for 2000 cycles of 5 ns = 2 uJ
    assert c[("static", "static")] == pytest.approx(2e6, rel=1e-15)
    assert set(k for _, k in c) <= set(KINDS["asic"]) and set(u for u, _ in c) <= set(UNITS)


def test_asic_node_scaling_rule():
    """E = E45 x (node / 45) x (vdd / 0.9)^2 on chip; DRAM and leakage unscaled."""
    scaled = ASIC.replace(**{"energy.asic.node_nm": 90, "energy.asic.vdd": 0.45})
    a, b = cell(COUNTS, ASIC, 2000), cell(COUNTS, scaled, 2000)
    for key in a:
        want = a[key] if key[0] in ("dram", "static") else a[key] * 2 * 0.25
        assert b[key] == pytest.approx(want, rel=1e-12), key


def test_asic_sram_energy_follows_bank_size():
    """CACTI-style sqrt(capacity) fitted to Horowitz: 8 KB 1.25, 1 MB ~14 pJ/B."""
    one_mib = ASIC.replace(**{"buffers.activation.kib": 4096})  # 1 MiB banks
    c = cell(ActivityCounts(act_buffer_bytes=1), one_mib, 0)
    assert c[("act_buffer", "sram_read")] == pytest.approx(1.25 * 128 ** 0.5, rel=1e-12)
    # Horowitz: 100 pJ per 64-bit read of 1 MB = 12.5 pJ/B; the fit is within 13%
    assert abs(c[("act_buffer", "sram_read")] / 12.5 - 1) < 0.14


RES = {"engine": (16, {"lut": 1000.0, "ff": 200.0, "dsp": 4.0, "bram": 0.0}),
       "sore": (4, {"lut": 500.0, "ff": 400.0, "dsp": 0.0, "bram": 0.0}),
       "vector": (4, {"lut": 100.0, "ff": 100.0, "dsp": 2.0, "bram": 0.0}),
       "act_buffer": (4, {"lut": 0.0, "ff": 0.0, "dsp": 0.0, "bram": 2.0}),
       "weight_buffer": (4, {"lut": 0.0, "ff": 10.0, "dsp": 0.0, "bram": 1.5}),
       "output_buffer": (16, {"lut": 40.0, "ff": 30.0, "dsp": 0.0, "bram": 0.0, "uram": 1.0})}


def test_fpga_cell_by_hand():
    cfg = config.SMALL  # fpga mode; P = 4 multipliers per PE
    c = cell(COUNTS, cfg, cycles=100, resources=RES)
    # engine: 1000 MACs / 4 = 250 PE-cycles; toggle rate 0.25
    assert c[("engine", "lut")] == pytest.approx(250 * 1000 * 0.25 * 0.015, rel=1e-12)
    assert c[("engine", "ff")] == pytest.approx(250 * 200 * 0.25 * 0.006, rel=1e-12)
    assert c[("engine", "dsp")] == pytest.approx(250 * 4 * 1.0, rel=1e-12)
    assert c[("engine", "routing")] == pytest.approx(3.75 * (937.5 + 75.0), rel=1e-12)
    # SORE: 8 lane-cycles; vector engine: 16 lane-cycles
    assert c[("sore", "lut")] == pytest.approx(8 * 500 * 0.25 * 0.015, rel=1e-12)
    assert c[("vector", "dsp")] == pytest.approx(16 * 2 * 1.0, rel=1e-12)
    # buffers: bytes / 9 per 72-bit access; the output banks are URAM here
    assert c[("act_buffer", "bram")] == pytest.approx(90 / 9 * 5.0, rel=1e-12)
    assert c[("weight_buffer", "bram")] == pytest.approx(180 / 9 * 5.0, rel=1e-12)
    assert c[("output_buffer", "uram")] == pytest.approx(360 / 9 * 10.0, rel=1e-12)
    # clock: every flip-flop of a unit, every cycle
    assert c[("engine", "clock")] == pytest.approx(100 * 16 * 200 * 0.006, rel=1e-12)
    assert c[("weight_buffer", "clock")] == pytest.approx(100 * 4 * 10 * 0.006, rel=1e-12)
    assert c[("dram", "dram")] == 50 * 162.5
    assert c[("static", "static")] == pytest.approx(3.5 * 100 * 5e-9 * 1e12, rel=1e-12)
    assert c[("static", "static")] == static_pj(cfg, 100)


def test_every_coefficient_drives_its_kind():
    """Doubling a coefficient doubles exactly the kinds it multiplies (no constant hides)."""
    drives = {"lut_toggle": {"lut"}, "ff_toggle": {"ff"}, "dsp_cycle": {"dsp"},
              "bram_access": {"bram"}, "uram_access": {"uram"}, "clock_ff": {"clock"},
              "static_watts": {"static"}, "routing_factor": {"routing"}}
    base = cell(COUNTS, config.SMALL, 100, RES)
    for name, kinds in drives.items():
        e = getattr(config.SMALL.energy.fpga, name)
        cfg = config.SMALL.replace(**{f"energy.fpga.{name}.value": e.value * 2,
                                      f"energy.fpga.{name}.high": e.high * 2})
        new = cell(COUNTS, cfg, 100, RES)
        for key, v in base.items():
            if key[1] in kinds:
                assert new[key] == pytest.approx(2 * v, rel=1e-12), (name, key)
            elif key[1] != "routing":
                assert new[key] == v, (name, key)
            else:  # routing is routing_factor x the unit's LUT + FF energy
                assert new[key] == pytest.approx(
                    3.75 * (new[(key[0], "lut")] + new[(key[0], "ff")]), rel=1e-12)


def test_fpga_resources_come_from_the_area_model():
    res = fpga_resources(config.VCU1525)
    per = area.unit_resources(config.VCU1525)
    assert res["engine"] == per["pe_cell"] and res["output_buffer"] == per["out_bank"]
    assert res["engine"][0] == 256
    with pytest.raises(ConfigError, match=r"^energy.mode = fpga needs the area model's "
                       r"resources, which has no calibration for numerics.dtype int16; "
                       r"use energy.mode = asic$"):
        fpga_resources(config.VCU1525.replace(**{"numerics.dtype": "int16"}))
    # bf16 / int8: the calibration's type ratio on the fp16 fit (the PE cell of the
    # table's small point in each type, read from the table itself)
    small = {}
    for row in synth_table.read_table()["points"]:
        changes = dict(row["changes"])
        if set(changes) <= {"numerics.dtype"}:
            pe = next(u for u in row["units"] if u["name"] == "pe_cell")
            small[changes.get("numerics.dtype", "fp16")] = pe["each"]["lut"]
    bf = area.unit_resources(config.VCU1525.replace(**{"numerics.dtype": "bf16"}))
    assert bf["pe_cell"][1]["lut"] == pytest.approx(
        per["pe_cell"][1]["lut"] * small["bf16"] / small["fp16"])


@settings(database=None, max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(parts=st.lists(st.tuples(st.integers(0, 10**9), st.integers(0, 10**6),
                                st.integers(0, 10**4), st.sampled_from(PHASES)),
                      min_size=1, max_size=12),
       mode=st.sampled_from(["fpga", "asic"]))
def test_report_sums_are_exact(parts, mode):
    """Any split of activity into (layer, phase) cells: units, phases, kinds and layers
    each sum to the total exactly (==), and the total is the unrounded sum to 1e-12."""
    cfg = config.SMALL.replace(**{"energy.mode": mode})
    act = {}
    for i, (macs, dram, cyc, ph) in enumerate(parts):
        c = ActivityCounts(macs=macs, dram_bytes=dram, act_buffer_bytes=dram * 3,
                           act_buffer_write_bytes=dram, compares=macs // 7,
                           sore_lane_cycles=macs // 11, wu_ops=macs // 5,
                           vector_lane_cycles=macs // 5, register_bytes=macs * 4)
        act[(f"l{i % 4}", ph)] = (c, cyc)
    r = report(act, cfg)
    total = r.total
    for d in (r.by_unit(), r.by_phase(), r.by_kind()):
        assert sum(v for k, v in d.items() if k != "total") == total == d["total"]
    assert sum(r.by_unit(f"l{i}")["total"] for i in range(4)) == total
    for u in UNITS:
        assert sum(r.by_unit(f"l{i}")[u] for i in range(4)) == r.by_unit()[u]
    raw = math.fsum(v for key, (c, cyc) in act.items() for v in cell(c, cfg, cyc).values())
    assert total == pytest.approx(raw, rel=1e-12, abs=1e-300)


@pytest.mark.parametrize("mode", ["fpga", "asic"])
def test_simulated_energy_sums_and_modes(mode):
    """A real run: totals are exactly the sums of units, phases, kinds and layers; the
    mode changes only energy fields."""
    cfg = config.preset("small").replace(**{"energy.mode": mode})
    r = simulate(zoo.get("mlp", batch=4), cfg, SimOptions(events=False))
    e = r.energy_pj
    assert list(e) == [*UNITS, "total"] and r.energy_mode == mode
    assert sum(e[u] for u in UNITS) == e["total"]
    assert sum(r.energy_by_phase_pj[p] for p in PHASES) == e["total"]
    assert sum(r.energy_by_kind_pj[k] for k in KINDS[mode]) == e["total"]
    for u in [*UNITS, "total"]:
        assert sum(layer.energy_pj[u] for layer in r.layers) == e[u]
    for p in PHASES:
        assert sum(layer.energy_by_phase_pj[p] for layer in r.layers) == \
            r.energy_by_phase_pj[p]
    for layer in r.layers:
        assert sum(layer.energy_by_phase_pj[p] for p in PHASES) == layer.energy_pj["total"]
    # the whole run as one cell gives the same energy up to rounding
    one = energy(ActivityCounts(**r.counts), cfg, r.total_cycles)
    assert one["total"] == pytest.approx(e["total"], rel=1e-9)
    other = simulate(zoo.get("mlp", batch=4), cfg.replace(
        **{"energy.mode": "asic" if mode == "fpga" else "fpga"}), SimOptions(events=False))
    a, b = r.to_dict(events=False), other.to_dict(events=False)
    changed = {k for k in a if a[k] != b[k]}
    assert changed == {"energy_pj", "energy_mode", "energy_by_phase_pj", "energy_by_kind_pj",
                       "layers", "config"}
    for la, lb in zip(a["layers"], b["layers"], strict=True):
        assert {k for k in la if la[k] != lb[k]} == {"energy_pj", "energy_by_phase_pj"}


def test_static_is_not_most_of_a_busy_fpga_run():
    """vcu1525, VGG-16 training at batch 8 (the engine busy most of the time): the device's
    static power is under half the energy with the default coefficients."""
    r = simulate(zoo.get("vgg16_cifar", batch=8), config.VCU1525, SimOptions(events=False))
    assert r.utilization > 0.5
    assert r.energy_pj["static"] < 0.5 * r.energy_pj["total"]


def test_bad_energy_values_are_refused_in_one_line(tmp_path, capsys):
    p = tmp_path / "e.toml"
    p.write_text('[energy.fpga.toggle_rate]\nvalue = 0.9\n')
    assert main(["config", "check", str(p)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert err.endswith("energy.fpga.toggle_rate.value must lie in its range low .. high "
                        "(0.125 .. 0.5), not 0.9")
    p.write_text('[energy]\nmode = "both"\n')
    assert main(["config", "check", str(p)]) == 2
    assert capsys.readouterr().err.strip().endswith(
        "energy.mode must be one of fpga, asic, not 'both'")


def test_counts_validate_and_add():
    with pytest.raises(ValueError, match="macs must be a non-negative integer, not -1"):
        ActivityCounts(macs=-1)
    with pytest.raises(ValueError, match="act_buffer_write_bytes exceeds act_buffer_bytes"):
        ActivityCounts(act_buffer_write_bytes=2, act_buffer_bytes=1)
    assert (COUNTS + COUNTS).scaled(3) == COUNTS.scaled(6)
    assert static_pj(config.VCU1525, 0) == 0.0
    assert dataclasses.asdict(COUNTS) == COUNTS.to_dict()


def test_energy_report_csv_rows_are_the_layers(tmp_path):
    d, js = tmp_path / "ss", tmp_path / "r.json"
    assert main(["simulate", "mlp", "--config", "small", "--batch", "4",
                 "--scalesim-reports", str(d), "--json", str(js)]) == 0
    import json

    layers = json.loads(js.read_text())["layers"]
    rows = (d / "ENERGY_REPORT.csv").read_text().splitlines()
    assert rows[0].startswith("LayerID, Layer, engine pJ,") and rows[0].endswith("total pJ,")
    assert len(rows) == len(layers) + 1
    for lid, (row, layer) in enumerate(zip(rows[1:], layers, strict=True)):
        cells = [c.strip() for c in row.rstrip(",").split(",")]
        assert int(cells[0]) == lid and cells[1] == layer["name"]
        want = [layer["energy_pj"][u] for u in UNITS] + \
            [layer["energy_by_phase_pj"][p] for p in PHASES] + [layer["energy_pj"]["total"]]
        assert [float(c) for c in cells[2:]] == want
