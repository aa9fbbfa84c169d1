"""Regressions from the CLI bad-input audit: each case is one ``nmsat: error:`` line, exit
status 2, and no file written or changed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from nmsat.commands import main
from nmsat.errors import OutputError
from nmsat.fileio import atomic_write_text

SMALL = ["mlp", "--config", "small", "--batch", "2"]


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


def assert_one_line_error(capsys, argv, fragment, root: Path):
    before = _files(root)
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert (code, out) == (2, "")
    assert err.startswith("nmsat: error: ") and err.count("\n") == 1, err
    assert fragment in err, err
    assert _files(root) == before  # nothing written, nothing clobbered


@pytest.fixture
def tree(tmp_path) -> Path:
    (tmp_path / "afile").write_text("not a folder\n")
    (tmp_path / "folder.nmt").mkdir()
    (tmp_path / "folder.csv").mkdir()
    (tmp_path / "keep.json").write_text("KEEP\n")
    (tmp_path / "int8.toml").write_text('preset = "small"\n[numerics]\ndtype = "int8"\n')
    return tmp_path


def test_unwritable_json_names_the_file_not_a_temporary(capsys, tree):
    target = tree / "afile" / "r.json"  # its parent is a file: cannot be created
    assert_one_line_error(capsys, ["simulate", *SMALL, "--json", target],
                          f"nmsat: error: --json: cannot write {target}: {target.parent} "
                          "is not a folder",
                          tree)


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux /proc")
def test_json_under_proc_names_the_file(capsys, tree):
    assert_one_line_error(capsys, ["simulate", *SMALL, "--mode", "inference", "--json",
                                   "/proc/x.json"],
                          "nmsat: error: --json: cannot write /proc/x.json: ", tree)


def test_unwritable_report_folder(capsys, tree):
    out = tree / "afile" / "report"
    assert_one_line_error(capsys, ["simulate", *SMALL, "--report", out],
                          f"--report: cannot write {out}: {out.parent} is not a folder", tree)


def test_atomic_write_to_a_folder_raises_output_error(tree):
    with pytest.raises(OutputError, match="it is a folder"):
        atomic_write_text(tree / "folder.nmt", "x")
    assert (tree / "folder.nmt").is_dir()


@pytest.mark.parametrize("name", ["folder.nmt", "folder.csv"])
def test_workload_that_is_a_folder_says_so(capsys, tree, name):
    for cmd in (["simulate", tree / name, "--config", "small"], ["workloads", "show", tree / name]):
        assert_one_line_error(capsys, cmd, f"{tree / name}: is a folder, not a workload file",
                              tree)


@pytest.mark.parametrize("seed", ["-1", "x"])
def test_demo_seed_must_be_non_negative(capsys, tree, seed):
    assert_one_line_error(capsys, ["demo", "--seed", seed],
                          f"demo: argument --seed: must be a non-negative integer, not '{seed}'",
                          tree)


def test_demo_uses_the_configs_numerics(capsys, tree):
    assert_one_line_error(capsys, ["demo", "--config", tree / "int8.toml"],
                          "needs a float numerics.dtype (fp16 or bf16), not int8", tree)
    bf16 = tree / "bf16.toml"
    bf16.write_text('preset = "small"\n[numerics]\ndtype = "bf16"\n')
    assert main(["demo", "--config", str(bf16)]) == 0
    out = capsys.readouterr().out
    assert "bf16 x bf16 -> fp32" in out and "compressed weight bytes (bf16)" in out


def test_inference_rejects_no_pregen(capsys, tree):
    assert_one_line_error(capsys, ["simulate", *SMALL, "--mode", "inference", "--no-pregen",
                                   "--json", tree / "keep.json"],
                          "--no-pregen is for training", tree)


@pytest.mark.parametrize("bad", [["--report", "afile/report"],
                                 ["--scalesim-reports", "afile/csv"]])
@pytest.mark.parametrize("json_name", ["keep.json", "new.json"])
def test_one_bad_output_writes_no_other_output(capsys, tree, bad, json_name):
    """--json with a bad --report or --scalesim-reports folder: the JSON is neither
    created nor overwritten."""
    argv = ["simulate", *SMALL, "--json", tree / json_name, bad[0], tree / bad[1]]
    assert_one_line_error(capsys, argv, "afile", tree)


def test_atomic_write_many_is_all_or_nothing(tree):
    from nmsat.fileio import atomic_write_many

    with pytest.raises(OutputError):
        atomic_write_many([(tree / "keep.json", b"NEW\n"), (tree / "afile" / "x", b"x")])
    assert (tree / "keep.json").read_text() == "KEEP\n"
    assert sorted(p.name for p in tree.iterdir()) == sorted(
        ["afile", "folder.nmt", "folder.csv", "keep.json", "int8.toml"])
