"""Configuration files: TOML, YAML and JSON round trips, and rejected files."""

from __future__ import annotations

import json
import tomllib

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nmsat import config as C
from nmsat.errors import ConfigError

FORMATS = {"toml": ".toml", "yaml": ".yaml", "json": ".json"}


@pytest.mark.parametrize("name", ["vcu1525", "small"])
@pytest.mark.parametrize("fmt", ["toml", "yaml", "json"])
def test_round_trips(tmp_path, name, fmt):
    cfg = C.preset(name)
    d = C.to_dict(cfg)
    assert C.from_dict(d) == cfg
    text = C.dumps(cfg, fmt)
    parsed = {"toml": tomllib.loads, "yaml": yaml.safe_load, "json": json.loads}[fmt](text)
    assert parsed == d  # the text is plain data equal to to_dict
    path = tmp_path / f"cfg{FORMATS[fmt]}"
    path.write_text(text)
    assert C.load(path) == cfg
    out = tmp_path / "sub" / f"saved{FORMATS[fmt]}"
    C.save(cfg, out)
    assert out.read_text() == text
    assert C.load(out) == cfg
    assert C.resolve(str(out)) == cfg
    assert [p.name for p in out.parent.iterdir()] == [out.name]  # no temporary file left


def test_yml_suffix(tmp_path):
    p = tmp_path / "c.yml"
    C.save(C.SMALL, p)
    assert C.load(p) == C.SMALL


@settings(database=None, max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.integers(1, 256), clock=st.floats(1.0, 5000.0), pj=st.floats(162.5, 325.0),
       momentum=st.floats(0.0, 1.0), patterns=st.lists(st.sampled_from(
           ["1:4", "2:4", "1:8", "2:8", "4:8"]), unique=True), fmt=st.sampled_from(list(FORMATS)),
       src=st.text(st.characters(codec="utf-8", exclude_categories=["Cs", "Cc"]), min_size=1,
                   max_size=20).filter(str.strip))
def test_round_trip_arbitrary_values(tmp_path, rows, clock, pj, momentum, patterns, fmt, src):
    cfg = C.VCU1525.replace(**{"array.rows": rows, "clock_mhz": clock, "energy.dram_byte.value": pj,
                               "energy.dram_byte.source": src,
                               "weight_update.momentum": momentum, "array.nm_patterns": patterns})
    path = tmp_path / f"x{FORMATS[fmt]}"
    C.save(cfg, path)
    back = C.load(path)
    assert back == cfg
    assert back.clock_mhz == clock and back.energy.dram_byte.source == src


def test_preset_key_in_files(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text('preset = "small"\nname = "small8"\n[array]\nrows = 8\n')
    assert C.load(p) == C.SMALL.replace(**{"array.rows": 8, "name": "small8"})
    # a file that sets no name is named by its file (reports tell it from its preset)
    p = tmp_path / "c.yaml"
    p.write_text("preset: small\ndram:\n  channels: 2\n")
    assert C.load(p) == C.SMALL.replace(**{"dram.channels": 2, "name": "c"})
    p = tmp_path / "empty.yaml"
    p.write_text("")
    assert C.load(p) == C.VCU1525.replace(name="empty")
    p = tmp_path / "partial.toml"  # without a preset, missing fields take the defaults
    p.write_text("[array]\nrows = 8\n")
    assert C.load(p) == C.VCU1525.replace(**{"array.rows": 8, "name": "partial"})


def _load_error(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    with pytest.raises(ConfigError) as e:
        C.load(p)
    msg = str(e.value)
    assert msg.startswith(f"{p}: ")
    return msg[len(f"{p}: "):]


@pytest.mark.parametrize("name, text, message", [
    # duplicate keys (bug fixed: TOML errors gave only a line number, not the key)
    ("d.toml", "[array]\nrows = 4\nrows = 5\n", "duplicate key 'array.rows' (line 3: rows = 5)"),
    ("d.toml", 'name = "a"\nname = "b"\n', "duplicate key 'name' (line 2: name = \"b\")"),
    ("d.toml", "[array]\nrows = 4\n[array]\ncols = 4\n", "duplicate key 'array' (line 3: [array])"),
    ("d.toml", "[energy.mac_fp16]\nvalue = 1.0\nvalue = 2.0\n",
     "duplicate key 'energy.mac_fp16.value' (line 3: value = 2.0)"),
    ("d.yaml", "array:\n  rows: 4\n  rows: 5\n", "duplicate key 'array.rows' (line 3)"),
    ("d.yaml", "energy:\n  mac_fp16: {value: 1, value: 2}\n",
     "duplicate key 'energy.mac_fp16.value' (line 2)"),
    ("d.yaml", "name: a\nname: b\n", "duplicate key 'name' (line 2)"),
    ("d.json", '{"array": {"rows": 4, "rows": 5}}', "duplicate key 'rows' (values 4 and 5)"),
    # unknown keys
    ("u.toml", "[array]\nrowz = 4\n", "unknown config field 'array.rowz' (known: acc_latency, "
                                       "act_window, act_zero, cols, dataflows, macs_per_pe, "
                                       "nm_patterns, "
                                       "rows, shadow_weights, weight_load_ports)"),
    ("u.yaml", "colour: red\n", "unknown config field 'colour' (known: array, buffers, "
                                "clock_mhz, dram, energy, name, numerics, sore, weight_update)"),
    ("u.toml", 'preset = "small"\n[sore]\nlane = 3\n', "unknown config field 'sore.lane'"),
    ("u.yaml", "1: 2\nname: x\n", "key 1 is not a string (line 1)"),
    # types and ranges
    ("t.toml", '[array]\nrows = "16"\n', "array.rows must be of type int, not '16'"),
    ("t.yaml", "array:\n  rows: 16.0\n", "array.rows must be of type int, not 16.0"),
    ("t.toml", "clock_mhz = nan\n", "clock_mhz must be of type float, not nan"),
    ("t.json", '{"buffers": {"weight": {"double_buffered": "yes"}}}',
     "buffers.weight.double_buffered must be of type bool, not 'yes'"),
    ("r.toml", "[array]\nrows = 0\n", "array.rows must be between 1 and 256, not 0"),
    ("r.yaml", "dram:\n  channels: 65\n", "dram.channels must be between 1 and 64, not 65"),
    ("p.toml", '[array]\nnm_patterns = ["2:4", "9:8"]\n',
     "array.nm_patterns: N must be between 1 and M, not 9 (M=8)"),
    ("p.yaml", "array:\n  nm_patterns: ['8:16']\n",
     "array.nm_patterns: 8:16 needs N <= macs_per_pe and M <= act_window "
     "(macs_per_pe=4, act_window=16)"),
    ("p.toml", "[array]\nact_window = 2\n",
     "array.act_window must be at least macs_per_pe (4), not 2"),
    ("e.toml", "[energy.asic.mac_fp16]\nvalue = -2.0\nsource = \"x\"\n",
     "energy.asic.mac_fp16.value must be a finite number >= 0, not -2.0"),
    ("m.toml", "[energy]\nmode = \"gpu\"\n", "energy.mode must be one of fpga, asic, not 'gpu'"),
    ("r.toml", "[energy.fpga.lut_toggle]\nvalue = 0.5\n",
     "energy.fpga.lut_toggle.value must lie in its range low .. high (0.005 .. 0.04), not 0.5"),
    # not a table (bug fixed: a YAML list gave a TypeError traceback)
    ("l.yaml", "- 1\n- 2\n", "config must be a table of fields, not [1, 2]"),
    ("s.yaml", "hello\n", "config must be a table of fields, not 'hello'"),
    ("l.json", "[1, 2]", "config must be a table of fields, not [1, 2]"),
    ("a.yaml", "array: [1, 2]\n", "array must be a table, not [1, 2]"),
])
def test_bad_files_are_rejected(tmp_path, name, text, message):
    assert _load_error(tmp_path, name, text) == message


def test_syntax_errors(tmp_path):
    assert _load_error(tmp_path, "x.toml", "[array\n").startswith("invalid TOML: ")
    assert _load_error(tmp_path, "x.yaml", "a: [1\n") == (
        "invalid YAML: expected ',' or ']', but got '<stream end>' (line 2, column 1)")
    assert _load_error(tmp_path, "y.yaml", "a: b: c\n") == (
        "invalid YAML: mapping values are not allowed here (line 1, column 5)")
    assert _load_error(tmp_path, "x.json", "{").startswith("invalid JSON: ")


def test_missing_unreadable_and_wrong_suffix(tmp_path):
    with pytest.raises(ConfigError, match=r"^config file not found: .*nope\.toml$"):
        C.load(tmp_path / "nope.toml")
    p = tmp_path / "c.ini"
    p.write_text("x")
    with pytest.raises(ConfigError, match=r"^config file must end in \.toml, \.yaml, \.yml or "
                                          r"\.json, not c\.ini$"):
        C.load(p)
    with pytest.raises(ConfigError, match=r"^config file must end in \.toml, \.yaml, \.yml or "
                                          r"\.json, not c\.ini$"):
        C.save(C.VCU1525, p)
    b = tmp_path / "bin.toml"
    b.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ConfigError, match=r"^cannot read config file .*bin\.toml: "):
        C.load(b)
    with pytest.raises(ConfigError, match=r"^unknown config format 'ini' \(choose from toml, "
                                          r"yaml, json\)$"):
        C.dumps(C.VCU1525, "ini")
    # (the message used to say "--config must be ...", also for `nmsat config show big`)
    with pytest.raises(ConfigError, match=r"^'big' is neither a preset \(vcu1525, small\) nor a "
                                          r"\.toml/\.yaml/\.yml/\.json config file "
                                          r"or a SCALE-Sim \.cfg$"):
        C.resolve("big")


def test_save_json_loads_back(tmp_path):
    # bug fixed: save() wrote .json but load() refused it
    p = tmp_path / "c.json"
    C.save(C.SMALL, p)
    assert json.loads(p.read_text()) == C.to_dict(C.SMALL)
    assert C.load(p) == C.SMALL


def test_save_gives_normal_file_permissions(tmp_path):
    # bug fixed: the atomic write renamed a mkstemp file over the target, so every saved
    # file was created 0o600 (unreadable by the group) and an existing file lost its mode
    import os

    mask = os.umask(0)
    os.umask(mask)
    p = tmp_path / "c.toml"
    C.save(C.SMALL, p)
    assert p.stat().st_mode & 0o777 == 0o666 & ~mask
    p.chmod(0o640)
    C.save(C.VCU1525, p)
    assert p.stat().st_mode & 0o777 == 0o640 and C.load(p) == C.VCU1525
