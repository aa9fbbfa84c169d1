"""The ``nmsat`` command line: help, version, ``config``, ``demo`` and bad usage."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tomllib

import pytest

from nmsat import __version__
from nmsat import config as C
from nmsat.commands import SUBCOMMANDS, build_parser, main


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_usage_error(capsys, argv, message):
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1 and err.endswith("\n")
    assert err == f"nmsat: error: {message}\n"


def test_help_lists_config_and_demo(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: nmsat ")
    assert "config" in out and "demo" in out


def test_every_subcommand_has_help(capsys):
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert list(sub.choices) == list(SUBCOMMANDS)  # every subcommand, in the listed order
    lazy = next(a for a in build_parser(lazy=True)._actions if a.dest == "command")
    assert list(lazy.choices) == list(SUBCOMMANDS)
    assert [c.help for c in sub._choices_actions] == [c.help for c in lazy._choices_actions]
    for name in sub.choices:
        with pytest.raises(SystemExit) as e:
            main([name, "--help"])
        assert e.value.code == 0
        assert capsys.readouterr().out.startswith(f"usage: nmsat {name}")


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out == f"nmsat {__version__}\n"


def test_no_command_is_one_line_error(capsys):
    code, out, err = run(capsys)
    assert code == 2 and out == ""
    assert err == "nmsat: error: a command is required (see nmsat --help)\n"


def test_config_show_table(capsys):
    code, out, err = run(capsys, "config", "show", "vcu1525")
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert lines[0] == "# vcu1525: 16x16 PEs x 4 multipliers = 1024 fp16 MACs/cycle at 200 MHz"
    rows = C.describe(C.VCU1525)
    assert len(lines) == 1 + len(rows)
    for line, (name, value, doc) in zip(lines[1:], rows):
        assert line.split()[0] == name and line.endswith(doc) and str(value) in line


def test_config_show_json_is_the_full_config(capsys):
    code, out, err = run(capsys, "config", "show", "vcu1525", "--json")
    assert code == 0 and err == ""
    assert json.loads(out) == C.to_dict(C.VCU1525)


def test_config_show_toml_loads_back(capsys, tmp_path):
    code, out, err = run(capsys, "config", "show", "small", "--toml")
    assert code == 0 and err == ""
    assert C.from_dict(tomllib.loads(out)) == C.SMALL
    p = tmp_path / "small.toml"
    p.write_text(out)
    assert C.load(p) == C.SMALL
    code, out, err = run(capsys, "config", "show", str(p), "--json")
    assert code == 0 and json.loads(out) == C.to_dict(C.SMALL)
    code, out, err = run(capsys, "config", "check", str(p))
    assert (code, out, err) == (0, f"{p}: valid (small)\n", "")


def test_config_check_presets_and_files(capsys, tmp_path):
    assert run(capsys, "config", "check", "vcu1525") == (0, "vcu1525: valid (vcu1525)\n", "")
    good = tmp_path / "good.yaml"
    good.write_text("preset: small\nname: mine\narray:\n  rows: 2\n")
    assert run(capsys, "config", "check", str(good)) == (0, f"{good}: valid (mine)\n", "")


def test_config_list(capsys):
    code, out, err = run(capsys, "config", "list")
    assert code == 0 and err == ""
    assert out.splitlines() == ["vcu1525    16x16x4 fp16 @ 200 MHz",
                                "small      4x4x4 fp16 @ 200 MHz"]


def test_demo(capsys):
    code, out, err = run(capsys, "demo")
    assert code == 0 and err == ""
    assert out.startswith("nmsat reference model: one BDWP 2:8 training step")
    assert "compressed weight bytes (fp16)" in out and "29.69% of dense" in out
    assert "peak speedup 4x" in out
    code, out, err = run(capsys, "demo", "--nm", "2:4", "--config", "small", "--seed", "3")
    assert code == 0 and "BDWP 2:4" in out and "56.25% of dense" in out


@pytest.mark.parametrize("argv, message", [
    (["--frobnicate"], "unrecognized arguments: --frobnicate"),
    (["config", "show", "vcu1525", "--yaml"], "unrecognized arguments: --yaml"),
    (["config", "show", "vcu1525", "--json", "--toml"],
     "config show: argument --toml: not allowed with argument --json"),
    (["config"], "config: the following arguments are required: ACTION"),
    (["config", "show"], "config show: the following arguments are required: PRESET|FILE"),
    (["config", "show", "vcu9"],
     "'vcu9' is neither a preset (vcu1525, small) nor a .toml/.yaml/.yml/.json config file "
     "or a SCALE-Sim .cfg"),
    (["config", "check", "big"],
     "'big' is neither a preset (vcu1525, small) nor a .toml/.yaml/.yml/.json config file "
     "or a SCALE-Sim .cfg"),
    (["demo", "--seed", "x"], "demo: argument --seed: must be a non-negative integer, not 'x'"),
    (["demo", "--nm", "9:8"], "demo: argument --nm: N must be between 1 and M, not 9 (M=8)"),
    (["demo", "--nm", "1:16"], "N:M pattern 1:16 is not supported by this array "
                               "(array.nm_patterns = 1:4, 2:4, 1:8, 2:8, 4:8)"),
    (["demo", "--config", "tiny"],
     "'tiny' is neither a preset (vcu1525, small) nor a .toml/.yaml/.yml/.json config file "
     "or a SCALE-Sim .cfg"),
])
def test_bad_usage_is_one_line_and_status_2(capsys, argv, message):
    assert_usage_error(capsys, argv, message)


def test_unknown_command(capsys):
    code, out, err = run(capsys, "bogus")
    assert code == 2 and out == ""
    assert err.count("\n") == 1
    assert err.startswith("nmsat: error: argument COMMAND: invalid choice: 'bogus' (choose from ")


def test_bad_and_missing_files(capsys, tmp_path):
    missing = tmp_path / "missing.toml"
    assert_usage_error(capsys, ["config", "check", str(missing)],
                       f"config file not found: {missing}")
    assert_usage_error(capsys, ["config", "show", str(missing), "--json"],
                       f"config file not found: {missing}")
    bad = tmp_path / "bad.toml"
    bad.write_text("[array]\nrows = 0\n")
    assert_usage_error(capsys, ["config", "check", str(bad)],
                       f"{bad}: array.rows must be between 1 and 256, not 0")
    assert_usage_error(capsys, ["demo", "--config", str(bad)],
                       f"{bad}: array.rows must be between 1 and 256, not 0")
    dup = tmp_path / "dup.yaml"
    dup.write_text("name: a\nname: b\n")
    assert_usage_error(capsys, ["config", "check", str(dup)],
                       f"{dup}: duplicate key 'name' (line 2)")
    lst = tmp_path / "list.yaml"  # bug fixed: a YAML list used to end in a TypeError traceback
    lst.write_text("- 1\n- 2\n")
    assert_usage_error(capsys, ["config", "check", str(lst)],
                       f"{lst}: config must be a table of fields, not [1, 2]")
    syntax = tmp_path / "syntax.toml"
    syntax.write_text("[array\n")
    code, out, err = run(capsys, "config", "check", str(syntax))
    assert code == 2 and out == "" and err.count("\n") == 1
    assert err.startswith(f"nmsat: error: {syntax}: invalid TOML: ")


def test_installed_console_script(tmp_path):
    exe = shutil.which("nmsat")
    if exe is None:  # not on PATH: use the entry point through this interpreter
        cmd = [sys.executable, "-m", "nmsat"]
    else:
        cmd = [exe]
    ok = subprocess.run(cmd + ["config", "show", "small", "--json"], capture_output=True,
                        text=True, cwd=tmp_path, timeout=60)
    assert ok.returncode == 0 and ok.stderr == ""
    assert json.loads(ok.stdout) == C.to_dict(C.SMALL)
    bad = subprocess.run(cmd + ["config", "show", "nope"], capture_output=True, text=True,
                         cwd=tmp_path, timeout=60)
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr == ("nmsat: error: 'nope' is neither a preset (vcu1525, small) nor a "
                          ".toml/.yaml/.yml/.json config file or a SCALE-Sim .cfg\n")
    ver = subprocess.run([sys.executable, "-m", "nmsat", "--version"], capture_output=True,
                         text=True, cwd=tmp_path, timeout=60)
    assert ver.returncode == 0 and ver.stdout == f"nmsat {__version__}\n"
