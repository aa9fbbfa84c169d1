"""Accelerator configuration: presets, derived values, validation messages, replace, describe."""

from __future__ import annotations

import dataclasses

import pytest

from nmsat import config as C
from nmsat.energy_config import entries as energy_entries
from nmsat.energy_config import unit_of
from nmsat.errors import ConfigError
from nmsat.types import NM


def flatten(d, prefix=""):
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def test_presets_are_valid_and_named():
    assert set(C.PRESETS) == {"vcu1525", "small"}
    for name, cfg in C.PRESETS.items():
        C.validate(cfg)
        assert cfg.name == name and C.preset(name) is cfg
        assert C.resolve(name) is cfg
    assert C.resolve(None) is C.VCU1525
    assert C.VCU1525 == C.AcceleratorConfig()
    with pytest.raises(ConfigError, match=r"^unknown preset 'big' \(choose from vcu1525, "
                                          r"small\)$"):
        C.preset("big")


def test_presets_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        C.VCU1525.array.rows = 8  # type: ignore[misc]


def test_small_is_a_delta_on_vcu1525():
    a, b = flatten(C.to_dict(C.VCU1525)), flatten(C.to_dict(C.SMALL))
    diff = {k: b[k] for k in a if a[k] != b[k]}
    assert diff == {
        "name": "small", "array.rows": 4, "array.cols": 4, "array.act_window": 8,
        "array.acc_latency": 1, "array.shadow_weights": False, "array.weight_load_ports": 1,
        "buffers.activation.kib": 16, "buffers.activation.banks": 4,
        "buffers.weight.kib": 16, "buffers.weight.banks": 4,
        "buffers.output.kib": 16, "buffers.output.banks": 4, "buffers.act_layout": "windows",
        "dram.channels": 1, "dram.bytes_per_cycle": 16, "dram.latency_cycles": 10,
        "sore.lanes": 4, "weight_update.lanes": 4,
    }


# docs/architecture.md section 3.1: (g, K per cycle, peak ratio) per pattern
@pytest.mark.parametrize("preset, table", [
    ("vcu1525", {"1:4": (4, 16, 4.0), "2:4": (2, 8, 2.0), "4:8": (1, 8, 2.0),
                 "2:8": (2, 16, 4.0), "1:8": (2, 16, 4.0)}),
    ("small", {"1:4": (2, 8, 2.0), "2:4": (2, 8, 2.0), "4:8": (1, 8, 2.0),
               "2:8": (1, 8, 2.0), "1:8": (1, 8, 2.0)}),
])
def test_engine_throughput_table(preset, table):
    arr = C.preset(preset).array
    assert arr.k_per_cycle(NM(1, 1)) == 4 and arr.sparse_speedup(NM(1, 1)) == 1.0
    for nm, (g, kpc, ratio) in table.items():
        assert arr.groups_per_cycle(NM.parse(nm)) == g
        assert arr.k_per_cycle(NM.parse(nm)) == kpc
        assert arr.sparse_speedup(NM.parse(nm)) == ratio


def test_derived_sizes():
    v = C.VCU1525
    assert v.array.pes == 256 and v.array.peak_macs_per_cycle == 1024
    assert v.buffers.weight.bytes == 2 * 1024 * 1024
    assert v.buffers.weight.usable_bytes == 1024 * 1024
    assert v.buffers.weight.bytes_per_cycle == 16 * 16 * 2
    assert v.dram.total_bytes_per_cycle == 256
    assert v.cycle_seconds == pytest.approx(5e-9)
    assert v.numerics.operand.bytes == 2 and v.energy.asic.mac(v.numerics.operand).value == 2.0


def test_k_per_cycle_rejects_unsupported_and_normalises():
    with pytest.raises(ConfigError, match=r"^N:M pattern 1:2 is not supported by this array "
                                          r"\(array.nm_patterns = 1:4, 2:4, 1:8, 2:8, 4:8\)$"):
        C.VCU1525.array.k_per_cycle(NM(1, 2))
    cfg = C.VCU1525.replace(**{"array.nm_patterns": ["2:8"]})
    assert cfg.array.k_per_cycle(NM(2, 8)) == 16


@pytest.mark.parametrize("written", ["2:08", " 2:8", "2:8 ", "02:8", "2 : 8", "+2:8"])
def test_nm_patterns_must_be_canonical(written):
    """A pattern the config accepts is one every simulation and the RTL accept: "2:8" only."""
    with pytest.raises(ConfigError, match=r"^array.nm_patterns: write .* as '2:8' "):
        C.VCU1525.replace(**{"array.nm_patterns": [written]})


@pytest.mark.parametrize("changes, message", [
    ({"array.rows": 0}, "array.rows must be between 1 and 256, not 0"),
    ({"array.cols": 257}, "array.cols must be between 1 and 256, not 257"),
    ({"array.rows": "16"}, "array.rows must be of type int, not '16'"),
    ({"array.rows": True}, "array.rows must be of type int, not True"),
    ({"array.rows": 16.0}, "array.rows must be of type int, not 16.0"),
    ({"clock_mhz": 0.5}, "clock_mhz must be between 1 and 5000, not 0.5"),
    ({"clock_mhz": float("nan")}, "clock_mhz must be of type float, not nan"),
    ({"clock_mhz": "fast"}, "clock_mhz must be of type float, not 'fast'"),
    ({"name": 5}, "name must be of type str, not 5"),
    ({"array.nm_patterns": "2:4"}, "array.nm_patterns must be a list, not '2:4'"),
    ({"array.nm_patterns": [2, 4]}, "array.nm_patterns must be a list of strings, not [2, 4]"),
    ({"array.nm_patterns": ["9:8"]}, "array.nm_patterns: N must be between 1 and M, not 9 (M=8)"),
    ({"array.nm_patterns": ["2:4", "9:8"]},
     "array.nm_patterns: N must be between 1 and M, not 9 (M=8)"),
    ({"array.nm_patterns": ["two:8"]},
     "array.nm_patterns: N:M pattern must look like 2:8, not 'two:8'"),
    ({"array.nm_patterns": ["8:16"]}, "array.nm_patterns: 8:16 needs N <= macs_per_pe and "
                                      "M <= act_window (macs_per_pe=4, act_window=16)"),
    ({"array.nm_patterns": ["1:32"]}, "array.nm_patterns: 1:32 needs N <= macs_per_pe and "
                                      "M <= act_window (macs_per_pe=4, act_window=16)"),
    ({"array.macs_per_pe": 2, "array.nm_patterns": ["4:8"]},
     "array.nm_patterns: 4:8 needs N <= macs_per_pe and M <= act_window "
     "(macs_per_pe=2, act_window=16)"),
    ({"array.nm_patterns": ["4:4"]}, "array.nm_patterns: 4:4 is dense; dense is always supported"),
    ({"array.nm_patterns": ["2:4", "2:4"]}, "array.nm_patterns has duplicates: ['2:4', '2:4']"),
    ({"array.dataflows": ["is"]}, "array.dataflows: unknown Dataflow 'is' (choose from os, ws)"),
    ({"array.dataflows": []}, "array.dataflows must name at least one of os, ws"),
    # bug fixed: with the default patterns this used to blame array.nm_patterns
    ({"array.act_window": 3}, "array.act_window must be at least macs_per_pe (4), not 3"),
    ({"array.act_window": 3, "array.nm_patterns": []},
     "array.act_window must be at least macs_per_pe (4), not 3"),
    ({"array.acc_latency": 17}, "array.acc_latency must be between 1 and 16, not 17"),
    ({"numerics.dtype": "fp8"},
     "numerics.dtype: unknown DType 'fp8' (choose from int8, int16, fp16, bf16)"),
    ({"numerics.master_dtype": "fp16"}, "numerics.master_dtype must be fp32, not 'fp16'"),
    ({"buffers.activation.double_buffered": 1},
     "buffers.activation.double_buffered must be of type bool, not 1"),
    ({"buffers.weight.ports": 3}, "buffers.weight.ports must be between 1 and 2, not 3"),
    ({"buffers.act_layout": "im2col"},
     "buffers.act_layout must be one of fmap, windows, not 'im2col'"),
    # bug fixed: the limit was printed as 1.04858e+06
    ({"buffers.output.kib": 0}, "buffers.output.kib must be between 1 and 1048576, not 0"),
    ({"dram.channels": 0}, "dram.channels must be between 1 and 64, not 0"),
    ({"dram.latency_cycles": -1}, "dram.latency_cycles must be between 0 and 10000, not -1"),
    ({"sore.lanes": 0}, "sore.lanes must be between 1 and 1024, not 0"),
    ({"weight_update.momentum": 1.5}, "weight_update.momentum must be between 0 and 1, not 1.5"),
    ({"energy.asic.mac_fp16.value": -1.0},
     "energy.asic.mac_fp16.value must be a finite number >= 0, not -1.0"),
    ({"energy.dram_byte.value": float("inf")},
     "energy.dram_byte.value must be a finite number >= 0, not inf"),
    ({"energy.asic.mac_int8.value": True},
     "energy.asic.mac_int8.value must be a finite number >= 0, not True"),
    ({"energy.fpga.bram_access.high": 1.0},
     "energy.fpga.bram_access.value must lie in its range low .. high (2.5 .. 1), not 5"),
    ({"energy.fpga.dsp_cycle.low": 1.0, "energy.fpga.dsp_cycle.high": 1.0},
     "energy.fpga.dsp_cycle is an estimate, so it needs a range with low < high, not 1 .. 1"),
    ({"energy.mode": "fpga2"}, "energy.mode must be one of fpga, asic, not 'fpga2'"),
    ({"energy.asic.node_nm": 2}, "energy.asic.node_nm must be between 3 and 180, not 2"),
    # bug fixed: an energy figure could lose its source
    ({"energy.asic.mac_fp16.source": ""},
     "energy.asic.mac_fp16.source must name the figure's source, not ''"),
    ({"energy.asic.compare.source": 3},
     "energy.asic.compare.source must name the figure's source, not 3"),
    ({"array": 5}, "array must be a table, not 5"),
    ({"energy.asic.mac_fp16": 3}, "energy.asic.mac_fp16 must be a table, not 3"),
    ({"array.rowz": 1}, "unknown config field 'array.rowz'"),
    ({"array.rows.x": 1}, "unknown config field 'array.rows.x'"),
    ({"colour": "red"}, "unknown config field 'colour'"),
])
def test_invalid_values_are_rejected_naming_field_and_value(changes, message):
    with pytest.raises(ConfigError) as e:
        C.VCU1525.replace(**changes)
    assert str(e.value) == message
    assert isinstance(e.value, ValueError)  # the CLI and callers may catch ValueError


def test_replace_with_dotted_paths():
    cfg = C.VCU1525.replace(**{"array.rows": 8, "dram.channels": 2,
                               "energy.asic.mac_fp16.value": 1.5,
                               "buffers.weight.double_buffered": False,
                               "array.nm_patterns": ("2:4",), "name": "mine"})
    assert cfg.array.rows == 8 and cfg.dram.channels == 2 and cfg.name == "mine"
    assert cfg.energy.asic.mac_fp16.value == 1.5 and cfg.energy.asic.mac_fp16.source == (
        C.VCU1525.energy.asic.mac_fp16.source)
    assert cfg.buffers.weight.double_buffered is False
    assert cfg.buffers.weight.usable_bytes == cfg.buffers.weight.bytes
    assert cfg.array.nm_patterns == ("2:4",)
    # everything else untouched
    a, b = flatten(C.to_dict(C.VCU1525)), flatten(C.to_dict(cfg))
    assert {k for k in a if a[k] != b[k]} == {
        "array.rows", "dram.channels", "energy.asic.mac_fp16.value",
        "buffers.weight.double_buffered",
        "array.nm_patterns", "name"}
    # a whole sub-table
    cfg2 = C.SMALL.replace(array={"rows": 2, "cols": 3})
    assert (cfg2.array.rows, cfg2.array.cols, cfg2.array.act_window) == (2, 3, 16)  # defaults


def test_from_dict_base_and_preset_key():
    cfg = C.from_dict({"preset": "small", "array": {"rows": 8}})
    assert cfg == C.SMALL.replace(**{"array.rows": 8})
    cfg = C.from_dict({"array": {"rows": 8}}, base=C.SMALL)
    assert cfg == C.SMALL.replace(**{"array.rows": 8})
    assert C.from_dict({}) == C.VCU1525
    with pytest.raises(ConfigError, match=r"^preset must be a name, not 5$"):
        C.from_dict({"preset": 5})
    with pytest.raises(ConfigError, match=r"^unknown preset 'tiny' \(choose from vcu1525, "
                                          r"small\)$"):
        C.from_dict({"preset": "tiny"})
    with pytest.raises(ConfigError, match=r"^unknown config field 'array.rowz'$"):
        C.from_dict({"preset": "small", "array": {"rowz": 8}})
    with pytest.raises(ConfigError, match=r"^unknown config field 'array.rowz' \(known: "
                                          r"acc_latency, act_window, act_zero, cols, dataflows, "
                                          r"macs_per_pe, nm_patterns, rows, shadow_weights, "
                                          r"weight_load_ports\)$"):
        C.from_dict({"array": {"rowz": 8}})


def test_from_dict_rejects_non_tables_and_odd_keys():
    # bugs fixed: a YAML list/scalar document gave a TypeError (a traceback in the CLI) or
    # a message about "dictionary update sequence"; int keys next to str keys crashed sorting
    with pytest.raises(ConfigError, match=r"^config must be a table of fields, not \[1, 2\]$"):
        C.from_dict([1, 2])  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"^config must be a table of fields, not 'abc'$"):
        C.from_dict("abc")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"^unknown config field '1' \(known: "):
        C.from_dict({1: 2, "colour": 3})


def test_describe_documents_every_leaf():
    for cfg in C.PRESETS.values():
        rows = C.describe(cfg)
        flat = flatten(C.to_dict(cfg))
        # one row per leaf; an energy entry (value, source, low, high) is one row
        entry = {f"energy.{n}" for n, _ in energy_entries(cfg.energy)}
        leaves = [k.rsplit(".", 1)[0] if k.rsplit(".", 1)[0] in entry else k for k in flat]
        assert [r[0] for r in rows] == list(dict.fromkeys(leaves))
        for name, value, doc in rows:
            assert isinstance(doc, str) and len(doc.strip()) > 10, name
            if name in entry:
                v = flat[f"{name}.value"]
                assert value == f"{v:g} {unit_of(name[len('energy.'):])}"
                assert doc == (f"{flat[f'{name}.source']} [range {flat[f'{name}.low']:g} .. "
                               f"{flat[f'{name}.high']:g}]")
            elif isinstance(flat[name], list):
                assert value == ", ".join(flat[name])
            else:
                assert value == flat[name]

