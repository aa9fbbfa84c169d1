"""SCALE-Sim users: ``--config scale.cfg`` (SCALE-Sim's own configs, tests/data/scalesim/
configs, copied from scale-sim-v3) and ``--scalesim-reports`` with SCALE-Sim 3.0.0's exact
headers (transcribed from scale-sim-v3 ``scalesim/simulator.py``, ``generate_reports``)."""

from __future__ import annotations

import configparser
import json
from pathlib import Path

import pytest

from nmsat import config as C
from nmsat.commands import main
from nmsat.scalesim_config import read

DATA = Path(__file__).parent / "data" / "scalesim"
CONFIGS = sorted((DATA / "configs").glob("*.cfg"))

# scale-sim-v3 scalesim/simulator.py, generate_reports (no sparsity support)
V3_COMPUTE = ("LayerID, Total Cycles (incl. prefetch), Total Cycles, Stall Cycles, "
              "Overall Util %, Mapping Efficiency %, Compute Util %,")
V3_BANDWIDTH = ("LayerID, Avg IFMAP SRAM BW, Avg FILTER SRAM BW, Avg OFMAP SRAM BW, "
                "Avg IFMAP DRAM BW, Avg FILTER DRAM BW, Avg OFMAP DRAM BW,")
V3_DETAILED = ("LayerID, SRAM IFMAP Start Cycle, SRAM IFMAP Stop Cycle, SRAM IFMAP Reads, "
               "SRAM Filter Start Cycle, SRAM Filter Stop Cycle, SRAM Filter Reads, "
               "SRAM OFMAP Start Cycle, SRAM OFMAP Stop Cycle, SRAM OFMAP Writes, "
               "DRAM IFMAP Start Cycle, DRAM IFMAP Stop Cycle, DRAM IFMAP Reads, "
               "DRAM Filter Start Cycle, DRAM Filter Stop Cycle, DRAM Filter Reads, "
               "DRAM OFMAP Start Cycle, DRAM OFMAP Stop Cycle, DRAM OFMAP Writes,")

MAPPED = {"run_name", "arrayheight", "arraywidth", "ifmapsramszkb", "filtersramszkb",
          "ofmapsramszkb"}


def _ini(path: Path) -> configparser.ConfigParser:
    p = configparser.ConfigParser(interpolation=None)
    p.read(path)
    return p


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_cfg_maps_array_sram_dataflow_bandwidth(path):
    ini = _ini(path)
    a = ini["architecture_presets"]
    cfg, notes = read(path)
    assert cfg.name == ini["general"]["run_name"]
    assert (cfg.array.rows, cfg.array.cols) == (int(a["ArrayHeight"]), int(a["ArrayWidth"]))
    assert cfg.buffers.activation.kib == int(a["IfmapSramSzkB"])
    assert cfg.buffers.weight.kib == int(a["FilterSramSzkB"])
    assert cfg.buffers.output.kib == int(a["OfmapSramSzkB"])
    # SCALE-Sim: one MAC per PE, 1-byte words, double-buffered scratchpads
    assert cfg.array.macs_per_pe == 1 and cfg.array.acc_latency == 1
    assert cfg.numerics.operand.bytes == 1 and cfg.buffers.activation.double_buffered
    assert cfg.array.dataflows == (a["Dataflow"].strip(),)
    user = ini["run_presets"]["InterfaceBandwidth"].strip() == "USER"
    if user:
        assert (cfg.dram.channels, cfg.dram.bytes_per_cycle) == (1, int(a["Bandwidth"]))
    else:
        assert cfg.dram == C.VCU1525.dram
    # one note per field that does not map, naming it
    mapped = MAPPED | {"dataflow"} | ({"interfacebandwidth"} if user else set())
    unmapped = [(s, k) for s in ini.sections() for k in ini[s] if k not in mapped]
    assert len(notes) == len(unmapped)
    for section, key in unmapped:
        hits = [n for n in notes if n.lower().startswith(f"{section}.{key} =")]
        assert len(hits) == 1, (section, key, notes)


def test_cfg_round_trips_through_toml(tmp_path, capsys):
    path = DATA / "configs" / "ref_32x32_ws_user.cfg"
    assert main(["config", "show", str(path), "--toml"]) == 0
    out, err = capsys.readouterr()
    cfg, notes = read(path)
    assert err.splitlines() == [f"note: {path}: {n}" for n in notes]
    toml = tmp_path / "ws.toml"
    toml.write_text(out)
    assert C.load(toml) == cfg
    assert main(["-q", "config", "show", str(path), "--toml"]) == 0
    assert capsys.readouterr() == (out, "")


@pytest.mark.parametrize("text, fragment", [
    ("[architecture_presets]\nArrayWidth: 8\n", "ArrayHeight is missing"),
    ("no section here\n", "not a SCALE-Sim .cfg"),
    ("[architecture_presets]\nArrayHeight: 8\nArrayWidth: x\n",
     "ArrayWidth = 'x' is not an integer"),
    ("[architecture_presets]\nArrayHeight: 999\nArrayWidth: 8\n", "array.rows"),
    ("[architecture_presets]\nArrayHeight: 8\nArrayWidth: 8\nBandwidth: 0\n"
     "[run_presets]\nInterfaceBandwidth: USER\n", "Bandwidth = '0'"),
])
def test_bad_cfg_is_one_line_exit_2(tmp_path, capsys, text, fragment):
    bad = tmp_path / "bad.cfg"
    bad.write_text(text)
    assert main(["config", "check", str(bad)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.splitlines()) == 1 and fragment in err, err


@pytest.mark.parametrize("mode", ["train", "inference"])
def test_scalesim_reports_have_v3_headers_and_the_json_numbers(tmp_path, capsys, mode):
    topo = DATA / "topologies" / "conv_nets" / "alexnet.csv"
    cfgfile = DATA / "configs" / "ref_32x32_os_user.cfg"
    d, js = tmp_path / "ss", tmp_path / "r.json"
    extra = ["--mode", "inference", "--nm", "1:1"] if mode == "inference" else \
        ["--method", "dense"]
    assert main(["-q", "simulate", str(topo), "--config", str(cfgfile), *extra,
                 "--scalesim-reports", str(d), "--json", str(js)]) == 0
    assert capsys.readouterr().err == ""
    comp = (d / "COMPUTE_REPORT.csv").read_text().splitlines()
    bw = (d / "BANDWIDTH_REPORT.csv").read_text().splitlines()
    det = (d / "DETAILED_ACCESS_REPORT.csv").read_text().splitlines()
    assert (comp[0], bw[0], det[0]) == (V3_COMPUTE, V3_BANDWIDTH, V3_DETAILED)
    layers = json.loads(js.read_text())["layers"]
    gemm = [x for x in layers if x["dense_macs"]]
    assert [x["name"].strip() for x in gemm] == ["Conv1", "Conv2", "Conv3", "Conv4", "Conv5"]
    assert len(comp) == len(bw) == len(det) == 1 + len(gemm)
    for lid, (c, row, x) in enumerate(zip(comp[1:], det[1:], gemm)):
        cv = [v.strip() for v in c.split(",")[:-1]]
        assert int(cv[0]) == lid and int(cv[1]) == int(cv[2]) == x["total_cycles"]
        v = [int(s) for s in row.split(",")[:-1]]
        assert v[0] == lid and len(v) == 19
        b, dr = x["buffer_bytes"], x["dram_bytes_by_operand"]  # 1-byte words
        assert v[1:10] == [0, x["total_cycles"] - 1, b["activation"],
                           0, x["total_cycles"] - 1, b["weight"],
                           0, x["total_cycles"] - 1, b["output"]]
        assert v[12::3] == [dr["activation"], dr["weight"], dr["output"]]
