"""Energy model: every component is counts x the config's table entry, and they sum."""

from __future__ import annotations

import dataclasses

import pytest
from nmsat.simulator.api import SimOptions, simulate
from nmsat.simulator.energy import COMPONENTS, ActivityCounts, energy, static_pj
from nmsat.workloads import zoo

from nmsat import config
from nmsat.config import EnergyEntry

COUNTS = ActivityCounts(macs=1000, act_buffer_bytes=10, weight_buffer_bytes=20,
                        output_buffer_bytes=30, register_bytes=40, dram_bytes=50,
                        compares=60, wu_ops=70)


def test_components_are_counts_times_table():
    cfg = config.VCU1525
    e = cfg.energy
    b = energy(COUNTS, cfg, cycles=2000)
    assert b.mac == 1000 * e.mac_fp16.pj
    assert b.buffer == 60 * e.buffer_byte.pj
    assert b.register == 40 * e.register_byte.pj
    assert b.dram == 50 * e.dram_byte.pj
    assert b.sorter == 60 * e.compare.pj
    assert b.weight_update == 70 * e.fp32_op.pj
    assert b.static == pytest.approx(e.static_watts.pj * 2000 / (cfg.clock_mhz * 1e6) * 1e12)
    d = b.to_dict()
    assert list(d) == list(COMPONENTS) + ["total"]
    assert d["total"] == pytest.approx(sum(d[c] for c in COMPONENTS), rel=1e-15)


def test_table_entries_drive_every_component():
    """Doubling an entry doubles exactly its component (no constant hides in code)."""
    cfg = config.VCU1525
    base = energy(COUNTS, cfg, 1000)
    field_of = {"mac": "mac_fp16", "buffer": "buffer_byte", "register": "register_byte",
                "dram": "dram_byte", "sorter": "compare", "weight_update": "fp32_op",
                "static": "static_watts"}
    for comp, fname in field_of.items():
        old = getattr(cfg.energy, fname)
        new_energy = dataclasses.replace(cfg.energy, **{fname: EnergyEntry(old.pj * 2, "x")})
        cfg2 = dataclasses.replace(cfg, energy=new_energy)
        b2 = energy(COUNTS, cfg2, 1000)
        for c in COMPONENTS:
            want = getattr(base, c) * (2 if c == comp else 1)
            assert getattr(b2, c) == pytest.approx(want), (comp, c)


def test_mac_energy_follows_operand_type():
    cfg = config.VCU1525.replace(**{"numerics.dtype": "int8"})
    assert energy(COUNTS, cfg, 0).mac == 1000 * cfg.energy.mac_int8.pj


def test_counts_validate_and_add():
    with pytest.raises(ValueError, match="macs must be a non-negative integer, not -1"):
        ActivityCounts(macs=-1)
    assert (COUNTS + COUNTS).scaled(3) == COUNTS.scaled(6)
    assert static_pj(config.VCU1525, 0) == 0.0


def test_simulated_energy_matches_its_counts():
    """A real run: the JSON's energy is its counts times the table, components sum."""
    cfg = config.preset("small")
    r = simulate(zoo.get("mlp", batch=4), cfg, SimOptions(events=False))
    c = ActivityCounts(**r.counts)
    b = energy(c, cfg, r.total_cycles).to_dict()
    assert b == r.energy_pj
    assert r.energy_pj["total"] == pytest.approx(
        sum(r.energy_pj[k] for k in COMPONENTS), rel=1e-12)
    assert c.macs == r.macs
    # per-layer energies add up to the run's dynamic energy (static is per-layer time)
    dyn = sum(layer.energy_pj["total"] - layer.energy_pj["static"] for layer in r.layers)
    assert dyn == pytest.approx(r.energy_pj["total"] - r.energy_pj["static"], rel=1e-9)
    assert sum(layer.energy_pj["static"] for layer in r.layers) == pytest.approx(
        r.energy_pj["static"], rel=1e-9)
