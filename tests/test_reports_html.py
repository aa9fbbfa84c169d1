"""The report page and the ``nmsat report`` / ``nmsat simulate --report`` commands.

The page is opened in headless Chromium (Debian's, at /usr/bin/chromium, driven by the
``playwright`` package): no console errors, every image loaded, no network requests.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from chromium_page import parse as _parse
from chromium_page import render

from nmsat.commands import main


def _simulate(path: Path, workload: str, method: str, nm: str = "2:8", *extra: str) -> Path:
    rc = main(["simulate", workload, "--config", "small", "--method", method, "--nm", nm,
               "--batch", "8", "--json", str(path), *extra])
    assert rc == 0
    return path


@pytest.fixture(scope="module")
def result_files(tmp_path_factory) -> list[Path]:
    d = tmp_path_factory.mktemp("results")
    return [_simulate(d / "dense.json", "mlp", "dense"),
            _simulate(d / "bdwp.json", "mlp", "bdwp"),
            _simulate(d / "srste.json", "mlp", "srste"),
            _simulate(d / "cnn.json", "cnn", "bdwp", "2:4")]


@pytest.fixture(scope="module")
def trace_files(tmp_path_factory) -> list[Path]:
    """A BDWP trace with its dense baseline and an SR-STE trace (tiny training runs)."""
    pytest.importorskip("torch")
    from nmsat.workloads.trace import save_trace
    from nmsat.workloads.train import TrainConfig, dense_config, train, with_baseline

    d = tmp_path_factory.mktemp("traces")
    cfg = TrainConfig(model="mlp", method="bdwp", nm="2:8", epochs=1, train_limit=128)
    save_trace(with_baseline(train(cfg), train(dense_config(cfg))), d / "bdwp.nmt")
    save_trace(train(TrainConfig(model="mlp", method="srste", nm="2:4", epochs=1,
                                 train_limit=128)), d / "srste.nmt")
    return [d / "bdwp.nmt", d / "srste.nmt"]


@pytest.fixture(scope="module")
def report(result_files, trace_files, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report")
    traces = [a for t in trace_files for a in ("--trace", str(t))]
    assert main(["report", *map(str, result_files), *traces, "-o", str(out)]) == 0
    return out / "index.html"




def test_page_references_only_local_files_that_exist(report):
    page = _parse(report)
    assert page.external == []
    names = [Path(src).stem for src in page.images]
    # speedup, phases, energy, accuracy, loss, flip rates; per run: layers, layer energy
    # and timeline (one configuration: no comparison figures)
    assert names[:6] == ["speedup", "phases", "energy", "accuracy", "loss", "flip-rates"]
    assert len(names) == 6 + 3 * 4
    for src in page.images + [h for h in page.links if not h.startswith("#")]:
        assert (report.parent / src).is_file(), src
        assert (report.parent / src).stat().st_size > 0
    for src in page.images:
        assert (report.parent / src.replace(".svg", ".png")).is_file()


def test_page_tables_show_the_numbers(report, result_files, trace_files):
    from nmsat.workloads.trace import load_trace

    cells = _parse(report).cells
    for path in trace_files:
        t = load_trace(path)
        assert f"{100 * t.final_accuracy:.3f}".rstrip("0").rstrip(".") in cells
    for path in result_files:
        data = json.loads(path.read_text())
        assert f"{data['total_cycles']:,}" in cells
        for layer in data["layers"]:
            assert layer["name"] in cells
        for phase in ("ff", "bp", "wg"):
            assert f"{data['phase_cycles'][phase]:,}" in cells


@pytest.mark.browser
def test_page_renders_in_chromium(report):
    r = render(report)
    problems, requests, images = r.problems, r.requests, r.images
    title, headings = r.title, r.headings
    assert problems == []
    assert images and len(images) == len(_parse(report).images)
    for src, complete, width, height in images:
        assert complete and width > 0 and height > 0, src
    assert all(u.startswith("file://") for u in requests), requests
    assert title.startswith("nmsat report")
    assert "Speedup over dense" in headings and "Phase breakdown" in headings


def _run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.mark.parametrize("content", [
    None,  # missing file
    "{not json",
    "[1, 2]",
    "{}",
    "drop:total_cycles",
    "set:total_cycles=-5",
    "set:speedup_vs_dense=\"fast\"",
    "set:phase_cycles={\"ff\": 1, \"xx\": 2}",
])
def test_bad_result_one_line_exit_2_no_output(content, result_files, tmp_path, capsys):
    bad = tmp_path / "bad.json"
    if content is not None:
        if content.startswith(("drop:", "set:")):
            data = json.loads(result_files[1].read_text())
            if content.startswith("drop:"):
                del data[content[5:]]
            else:
                key, _, value = content[4:].partition("=")
                data[key] = json.loads(value)
            bad.write_text(json.dumps(data))
        else:
            bad.write_text(content)
    out = tmp_path / "out"
    rc, stdout, err = _run_cli(capsys, "report", str(result_files[0]), str(bad), "-o", str(out))
    assert rc == 2
    assert stdout == ""
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("nmsat: error: ") and "bad.json" in err
    assert not out.exists()


def test_bad_trace_leaves_existing_report_untouched(report, result_files, tmp_path, capsys):
    out = tmp_path / "out"
    shutil.copytree(report.parent, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    bad = tmp_path / "t.nmt"
    bad.write_bytes(b"PK\x03\x04 truncated")
    rc, stdout, err = _run_cli(capsys, "report", str(result_files[1]), "--trace", str(bad),
                               "-o", str(out))
    assert rc == 2 and stdout == "" and len(err.strip().splitlines()) == 1
    assert "t.nmt" in err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_report_without_inputs_is_a_usage_error(capsys, tmp_path):
    rc, _, err = _run_cli(capsys, "report", "-o", str(tmp_path / "o"))
    assert rc == 2 and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_output_path_that_is_a_file(result_files, tmp_path, capsys):
    target = tmp_path / "file"
    target.write_text("keep")
    rc, _, err = _run_cli(capsys, "report", str(result_files[0]), "-o", str(target))
    assert rc == 2 and "not a folder" in err
    assert target.read_text() == "keep"


def test_simulate_report_option(tmp_path, capsys):
    out = tmp_path / "out"
    rc, stdout, err = _run_cli(capsys, "simulate", "mlp", "--config", "small", "--method",
                               "bdwp", "--nm", "2:8", "--batch", "8", "--report", str(out))
    assert rc == 0, err
    assert f"wrote {out / 'index.html'}" in stdout
    page = _parse(out / "index.html")
    names = {Path(s).stem for s in page.images}
    assert {"speedup", "phases", "energy"} <= names
    assert any(n.startswith("timeline-") for n in names)
    assert any(n.startswith("layers-") for n in names)
    # the dense baseline is simulated too, so the phase breakdown is dense vs sparse
    assert "mlp · dense" in page.cells


def test_simulate_report_into_a_file_writes_nothing(tmp_path, capsys):
    target = tmp_path / "file"
    target.write_text("keep")
    out_json = tmp_path / "r.json"
    rc, stdout, err = _run_cli(capsys, "simulate", "mlp", "--config", "small", "--batch", "8",
                               "--json", str(out_json), "--report", str(target))
    assert rc == 2 and stdout == "" and len(err.strip().splitlines()) == 1
    assert "not a folder" in err
    assert target.read_text() == "keep" and not out_json.exists()
