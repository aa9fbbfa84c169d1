"""Inference in the report: `nmsat simulate --mode inference --report DIR`,
`--scalesim-reports DIR`, and `nmsat report` reading inference result JSON (alone or
mixed with training results)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from nmsat.commands import main
from nmsat.config import SMALL
from nmsat.reports import ReportError, build_report, load_result
from nmsat.reports import inference_figures as F
from nmsat.simulator import inference as I
from nmsat.simulator import inference_sweeps as S
from nmsat.simulator.inference import InferenceOptions, simulate_inference


def _cli(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def _images(index: Path) -> set[str]:
    return set(re.findall(r'src="([^"]+)"', index.read_text()))


@pytest.fixture(scope="module")
def mlp_json(tmp_path_factory) -> dict[tuple[str, int], Path]:
    """mlp inference results on `small`: 2:4 and 2:8 at batch 1, 16 and 256."""
    d = tmp_path_factory.mktemp("inf")
    out = {}
    for nm in ("2:4", "2:8"):
        for b in (1, 16, 256):
            p = d / f"mlp-{nm.replace(':', '')}-{b}.json"
            r = simulate_inference("mlp", SMALL, InferenceOptions(nm=nm, batch=b))
            p.write_text(r.to_json())
            out[(nm, b)] = p
    return out


def test_result_json_round_trips():
    r = simulate_inference("gpt2_small", SMALL, InferenceOptions(
        nm="2:8", phase="decode", kv_len=32, batch=2))
    back = I.result_from_dict(json.loads(r.to_json()))
    assert back.to_json() == r.to_json()
    assert all(x.buffer_bytes and x.dram_bytes_by_operand for x in back.layers if x.dense_macs)


def test_simulate_report_writes_every_inference_figure(tmp_path, capsys):
    out = tmp_path / "rep"
    rc, stdout, err = _cli(capsys, "simulate", "mlp", "--mode", "inference", "--config",
                           "small", "--nm", "2:4", "--batch", "8", "--report", str(out))
    assert rc == 0, err
    assert f"wrote {out / 'index.html'}" in stdout
    imgs = _images(out / "index.html")
    stems = {Path(s).stem for s in imgs}
    # not a transformer: the batch sweep only; the roofline and the layer table per run
    assert "inference-speedup-batch" in stems and "inference-speedup-seq" not in stems
    assert any(s.startswith("inference-roofline-") for s in stems)
    assert any(s.startswith("inference-layers-") for s in stems)
    for s in stems:
        assert (out / f"{s}.png").stat().st_size > 0 and (out / f"{s}.svg").stat().st_size > 0
    page = (out / "index.html").read_text()
    assert "Inference runs" in page and "dense inference" in page
    # the batch sweep covers every pattern the array supports, at the run's batch too
    d = S.simulate_sweeps("mlp", SMALL, simulate_inference(
        "mlp", SMALL, InferenceOptions(nm="2:4", batch=8)), InferenceOptions(nm="2:4", batch=8))
    assert list(d[0]["speedup"]) == list(SMALL.array.nm_patterns)
    assert d[0]["values"] == sorted({*S.BATCHES, 8})
    for v in d[0]["speedup"]["2:4"]:
        assert f"{v:.3f}".rstrip("0").rstrip(".") in page
    # same inputs, same bytes
    again = tmp_path / "again"
    assert _cli(capsys, "simulate", "mlp", "--mode", "inference", "--config", "small",
                "--nm", "2:4", "--batch", "8", "--report", str(again))[0] == 0
    assert {p.name: p.read_bytes() for p in out.iterdir()} == \
        {p.name: p.read_bytes() for p in again.iterdir()}


def test_simulate_report_of_an_llm_has_the_sequence_sweep(tmp_path, capsys):
    out = tmp_path / "rep"
    rc, _, err = _cli(capsys, "simulate", "gpt2_small", "--mode", "inference", "--phase",
                      "decode", "--kv-len", "64", "--batch", "1", "--nm", "2:8", "--config",
                      "small", "--report", str(out))
    assert rc == 0, err
    stems = {Path(s).stem for s in _images(out / "index.html")}
    assert {"inference-speedup-batch", "inference-speedup-seq"} <= stems
    page = (out / "index.html").read_text()
    assert "KV-cache length" in page or "kv len" in page


def test_report_of_inference_results_forms_sweeps_from_them(mlp_json, tmp_path, capsys):
    out = tmp_path / "rep"
    rc, _, err = _cli(capsys, "report", *map(str, mlp_json.values()), "-o", str(out))
    assert rc == 0, err
    stems = {Path(s).stem for s in _images(out / "index.html")}
    assert "inference-speedup-batch" in stems
    assert sum(s.startswith("inference-roofline-") for s in stems) == len(mlp_json)
    results = {k: load_result(p) for k, p in mlp_json.items()}
    d = F.sweeps_from_results(list(results.values()))
    assert len(d) == 1 and d[0]["axis"] == "batch" and d[0]["values"] == [1, 16, 256]
    for nm in ("2:4", "2:8"):
        assert d[0]["speedup"][nm] == [results[(nm, b)].speedup_vs_dense for b in (1, 16, 256)]
    # one result alone: its own figures, no sweep (nothing to sweep over)
    one = tmp_path / "one"
    assert _cli(capsys, "report", str(mlp_json[("2:4", 1)]), "-o", str(one))[0] == 0
    stems = {Path(s).stem for s in _images(one / "index.html")}
    assert not any(s.startswith("inference-speedup") for s in stems)
    assert any(s.startswith("inference-roofline-") for s in stems)


def test_report_mixing_training_and_inference(mlp_json, tmp_path, capsys):
    train = tmp_path / "train.json"
    assert _cli(capsys, "simulate", "mlp", "--config", "small", "--batch", "8", "--json",
                str(train))[0] == 0
    out = tmp_path / "rep"
    rc, _, err = _cli(capsys, "report", str(train), str(mlp_json[("2:8", 16)]), "-o", str(out))
    assert rc == 0, err
    page = (out / "index.html").read_text()
    assert 'id="runs"' in page and 'id="inference-runs"' in page
    assert "no figure mixes the two" in page
    stems = {Path(s).stem for s in _images(out / "index.html")}
    assert "speedup" in stems  # the training speedup figure, over the training run only
    assert any(s.startswith("inference-roofline-") for s in stems)
    # the training figures' tables list the training run only
    speedup_table = page.split('id="speedup"')[1].split("</section>")[0]
    assert "inference" not in speedup_table


@pytest.mark.parametrize("edit", [
    "drop:total_cycles",
    "set:speedup_vs_dense=-1",
    "layer:bound=\"fast\"",
    "layer:dram_bytes=1.5",
    "set:layers={}",
])
def test_bad_inference_json_is_one_line_exit_2_and_writes_nothing(edit, mlp_json, tmp_path,
                                                                  capsys):
    data = json.loads(mlp_json[("2:4", 1)].read_text())
    kind, _, rest = edit.partition(":")
    key, _, value = rest.partition("=")
    if kind == "drop":
        del data[key]
    elif kind == "set":
        data[key] = json.loads(value)
    else:
        data["layers"][0][key] = json.loads(value)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data))
    out = tmp_path / "out"
    rc, stdout, err = _cli(capsys, "report", str(mlp_json[("2:8", 1)]), str(bad), "-o",
                           str(out))
    assert rc == 2 and stdout == ""
    assert len(err.strip().splitlines()) == 1 and "bad.json" in err, err
    assert not out.exists()
    # an existing report is left as it was
    good = tmp_path / "good"
    assert _cli(capsys, "report", str(mlp_json[("2:8", 1)]), "-o", str(good))[0] == 0
    before = {p.name: p.read_bytes() for p in good.iterdir()}
    assert _cli(capsys, "report", str(bad), "-o", str(good))[0] == 2
    assert {p.name: p.read_bytes() for p in good.iterdir()} == before
    with pytest.raises(ReportError):
        build_report([data], tmp_path / "api")


def test_simulate_inference_report_into_a_file_writes_nothing(tmp_path, capsys):
    target = tmp_path / "file"
    target.write_text("keep")
    js = tmp_path / "r.json"
    rc, stdout, err = _cli(capsys, "simulate", "mlp", "--mode", "inference", "--config",
                           "small", "--json", str(js), "--scalesim-reports",
                           str(tmp_path / "ss"), "--report", str(target))
    assert rc == 2 and stdout == "" and len(err.strip().splitlines()) == 1
    assert "not a folder" in err
    assert target.read_text() == "keep" and not js.exists() and not (tmp_path / "ss").exists()


def test_scalesim_reports_in_inference_mode(tmp_path, capsys):
    d = tmp_path / "ss"
    js = tmp_path / "r.json"
    rc, _, err = _cli(capsys, "simulate", "mlp", "--mode", "inference", "--config", "small",
                      "--nm", "2:4", "--batch", "4", "--scalesim-reports", str(d), "--json",
                      str(js))
    assert rc == 0, err
    r = I.result_from_dict(json.loads(js.read_text()))
    gemm = [x for x in r.layers if x.dense_macs]
    comp = (d / "COMPUTE_REPORT.csv").read_text().splitlines()
    bw = (d / "BANDWIDTH_REPORT.csv").read_text().splitlines()
    assert comp[0].startswith("LayerID, Total Cycles") and len(comp) == 1 + len(gemm)
    assert bw[0].startswith("LayerID, Avg IFMAP SRAM BW") and len(bw) == 1 + len(gemm)
    peak = SMALL.array.peak_macs_per_cycle
    for lid, (row, x) in enumerate(zip(comp[1:], gemm)):
        v = [c.strip() for c in row.split(",")]
        assert int(v[0]) == lid and int(v[1]) == int(v[2]) == x.total_cycles
        assert int(v[3]) == max(0, x.total_cycles - x.engine_cycles)
        assert float(v[4]) == pytest.approx(100 * x.macs / (x.total_cycles * peak))
    for row, x in zip(bw[1:], gemm):
        v = [float(c) for c in row.split(",")[1:-1]]
        # FILTER DRAM: the compressed weights (burst-rounded), 2-byte words per cycle
        assert v[4] * 2 * x.total_cycles == pytest.approx(x.dram_bytes_by_operand["weight"])
        assert x.dram_bytes_by_operand["weight"] >= x.weight_bytes
    again = tmp_path / "ss2"
    main(["simulate", "mlp", "--mode", "inference", "--config", "small", "--nm", "2:4",
          "--batch", "4", "--scalesim-reports", str(again)])
    for name in ("COMPUTE_REPORT.csv", "BANDWIDTH_REPORT.csv"):
        assert (again / name).read_bytes() == (d / name).read_bytes()


def test_layer_table_columns_stay_apart_when_a_value_outgrows_its_width(mlp_json):
    """Every row of the text table splits into as many fields as the header, even with a
    bound of ``dependency``, an intensity of many digits and a long layer name (a fuzz case
    printed ``28.4dependency`` when columns were only padded, not separated)."""
    from dataclasses import replace

    from nmsat.commands.simulate_inference import format_table

    r = I.result_from_dict(json.loads(mlp_json[("2:8", 1)].read_text()))
    wide = [replace(x, name="x" * 60, bound="dependency", ideal_bound="dependency",
                    intensity=123456789.25, limiter_ratio=123.456) for x in r.layers]
    text = format_table(replace(r, layers=wide), top=0)
    lines = text.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("layer "))
    ncol = len(lines[head].replace("of peak", "of_peak").split())
    rows = lines[head + 1: head + 1 + len(wide)]
    assert rows and all(len(row.split()) == ncol for row in rows)
