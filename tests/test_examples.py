"""Every README and examples/ command runs, every subcommand's --help shows examples that
parse, and the quick-start notebook executes (nbclient)."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from nmsat.commands import build_parser, main

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


def documented_commands() -> list[str]:
    """Every `nmsat ...` command of README.md (inline code and ```sh blocks) and every
    `nmsat ...` / `python ...` line of the files in examples/, in order."""
    text = (ROOT / "README.md").read_text()
    cmds = [" ".join(m.split()) for m in re.findall(r"`(nmsat [^`]+)`", text)]
    for block in re.findall(r"```sh\n(.*?)```", text, re.S):
        cmds += [p.strip() for line in block.splitlines() for p in line.split("&&")
                 if p.strip().startswith("nmsat")]
    for path in sorted(EXAMPLES.iterdir()):
        if path.suffix in (".toml", ".py"):
            text = re.sub(r"\\\n[#\s]*", " ", path.read_text())  # join continued lines
            for line in text.splitlines():
                m = re.match(r"^[#\s]*((?:nmsat|python) \S.*)$", line)
                if m:
                    cmds.append(" ".join(m.group(1).split()))
    return cmds


# How each documented command runs here. "run": verbatim, in order, in a folder holding
# examples/ and the files the README's placeholders name (made by SETUP). "rtl": verbatim,
# in the slow RTL test. Anything else: the reason it is replaced, and by what.
PLAN: dict[str, str] = {
    "nmsat config show vcu1525": "run",
    "nmsat config check my.toml": "run",
    "nmsat simulate resnet50 --method bdwp --nm 2:8 --batch 32 --json r.json": "run",
    "nmsat workloads list": "run",
    "nmsat train --model mlp --dataset digits --method bdwp --nm 2:8 --trace t.nmt": "run",
    "nmsat simulate t.nmt": "run",
    "nmsat trace inspect t.nmt": "run",
    "nmsat simulate resnet50 --method bdwp --nm 2:8 --report out/": "run",
    "nmsat report a.json b.json -o out/": "run",
    "nmsat rtl generate --config small -o rtl_out/": "rtl",
    "nmsat rtl synth --config small --json": "rtl",
    "nmsat rtl run mlp --layer fc3 --phase ff --config small": "rtl",
    "nmsat rtl run mlp --all-layers --top --config small":
        "nine programs, 49,333 cycles on the 4 x 4 top (6 minutes of Icarus): "
        "tests/rtl/test_rtl_top_network.py runs --all-layers --top on a two-layer GEMM "
        "file, every phase",
    "nmsat sweep spec.toml -o store.sqlite --workers 2": "run",
    "nmsat sweep export store.sqlite --csv": "run",
    "nmsat sweep report store.sqlite -o out/": "run",
    "nmsat demo": "run",
    "nmsat rtl synth --config vcu1525 --per-unit":
        "the README's area measurement (Yosys on every vcu1525 unit, most of an hour): "
        "test_rtl_synth.py synthesises the units; here its pe_cell unit runs",
    "nmsat simulate": "run",
    "nmsat sweep examples/codesign-vcu1525.toml -o codesign.sqlite":
        "thousands of designs x 5 models (CPU-hours): every point's config is built and "
        "checked (sweep.plan), and examples/sweep-small.toml runs the same commands",
    "nmsat sweep report codesign.sqlite -o codesign-report/":
        "needs the codesign store (above); sweep report runs on sweep-small's store",
    "nmsat sweep examples/codesign-vcu1525-subset.toml -o subset.sqlite":
        "75 designs x 5 models (CPU-minutes): every point planned, as the full spec's",
    "nmsat sweep report subset.sqlite -o subset-report/":
        "needs the subset store (above); sweep report runs on sweep-small's store",
    "nmsat sweep": "the command's name in prose (README, Concurrency), not a command line",
    "nmsat rtl run": "the command's name in prose (README, Concurrency), not a command line",
    "nmsat config check examples/custom-accelerator.toml": "run",
    "nmsat config show examples/custom-accelerator.toml": "run",
    "nmsat simulate cnn --config examples/custom-accelerator.toml --batch 4": "run",
    "python examples/import_pytorch.py": "run",
    "nmsat simulate examples/tiny_cnn.py:tiny_cnn --input-shape 4,3,32,32 --config small":
        "run",
    "python examples/scalesim_roundtrip.py [OUT_DIR]": "run",
    "nmsat config show examples/scalesim/scale.cfg --toml": "run",
    "nmsat simulate examples/scalesim/tiny.csv --config examples/scalesim/scale.cfg --mode "
    "inference --nm 1:1 --scalesim-reports scalesim-out/": "run",
    "nmsat sweep examples/sweep-small.toml -o sweep-small.sqlite --workers 1": "run",
    "nmsat sweep export sweep-small.sqlite --csv": "run",
    "nmsat sweep report sweep-small.sqlite -o sweep-small-report/": "run",
}

NEEDS_TORCH = ("nmsat train", "t.nmt", "import_pytorch", "tiny_cnn.py")


def test_every_documented_command_has_a_plan():
    assert set(documented_commands()) == set(PLAN)


def _workdir(tmp_path: Path) -> Path:
    """A folder with examples/ and the README's placeholder inputs."""
    shutil.copytree(EXAMPLES, tmp_path / "examples")
    assert main(["-q", "config", "show", "small", "--toml"]) == 0
    return tmp_path


def _run(cmd: str, cwd: Path, capfd, env: dict[str, str] | None = None) -> None:
    """Run one documented command in its own process, as a user would (``nmsat`` through
    this interpreter; ``python`` as this interpreter)."""
    argv = [a for a in shlex.split(cmd) if a != "[OUT_DIR]"]
    argv = [sys.executable, *argv[1:]] if argv[0] == "python" else \
        [sys.executable, "-m", "nmsat", *argv[1:]]
    res = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=1800,
                         env=None if env is None else {**os.environ, **env})
    assert res.returncode == 0, (cmd, res.stderr[-2000:])


@pytest.mark.slow(seconds=110)
def test_readme_and_examples_commands_run(tmp_path, capfd):
    pytest.importorskip("torch")
    pytest.importorskip("sklearn")
    pytest.importorskip("distributed")
    cwd = _workdir(tmp_path)
    capfd.readouterr()
    (cwd / "my.toml").write_text((EXAMPLES / "custom-accelerator.toml").read_text())
    spec = (EXAMPLES / "sweep-small.toml").read_text().replace(
        'base = "custom-accelerator.toml"', 'base = "examples/custom-accelerator.toml"')
    (cwd / "spec.toml").write_text(spec)
    for name, method in (("a.json", "dense"), ("b.json", "bdwp")):
        assert main(["-q", "simulate", "mlp", "--config", "small", "--method", method,
                     "--json", str(cwd / name)]) == 0
    ran = []
    for cmd in documented_commands():
        if PLAN[cmd] != "run":
            continue
        _run(cmd, cwd, capfd)
        ran.append(cmd)
    assert (cwd / "out" / "index.html").exists() and (cwd / "t.nmt").exists()
    assert len(ran) == sum(v == "run" for v in PLAN.values())


@pytest.mark.parametrize("name", ["codesign-vcu1525.toml", "codesign-vcu1525-subset.toml"])
def test_codesign_spec_plans_every_point(tmp_path, name):
    from nmsat.simulator import sweep, sweep_spec

    spec = sweep_spec.load(EXAMPLES / name)
    plan = sweep.plan(spec, tmp_path / "codesign.sqlite", False)
    assert len(plan.todo) == len(plan.points) > 50 and plan.skipped == 0


RTL_COMMANDS = [c for c, how in PLAN.items() if how == "rtl"] + [
    "nmsat rtl synth --config vcu1525 --unit pe_cell --json"]


# one test per command, so that pytest-xdist runs them side by side (the whole-top
# synthesis of small alone takes minutes)
@pytest.mark.slow(seconds=300)
@pytest.mark.rtl
@pytest.mark.parametrize("cmd", RTL_COMMANDS)
def test_rtl_commands_run(tmp_path, capfd, cmd):
    if shutil.which("iverilog") is None:
        pytest.skip("Icarus Verilog is not installed")
    cwd = _workdir(tmp_path)
    # simulator builds in this test's folder, not the user's ~/.cache, and unoptimised:
    # the command is what is tested, and a -O2 C++ build of the controlled engine takes
    # longer than the simulation it serves (the RTL tests build at -O0 too)
    env = {"NMSAT_RTL_CACHE": str(tmp_path / "rtl-cache"), "NMSAT_VERILATOR_OPT": "-O0"}
    _run(cmd, cwd, capfd, env)


def _parsers(parser, prog=""):
    for action in parser._actions:
        if hasattr(action, "choices") and isinstance(action.choices, dict):
            for name, sub in action.choices.items():
                yield f"{prog} {name}".strip(), sub
                yield from _parsers(sub, f"{prog} {name}".strip())


def test_every_subcommand_help_has_examples_that_parse():
    parser = build_parser()
    seen = 0
    for name, sub in _parsers(parser):
        epilog = sub.epilog or ""
        assert epilog.startswith("examples:\n"), name
        lines = [x.strip() for x in epilog.splitlines()[1:]]
        assert lines, name
        for line in lines:
            argv = shlex.split(line)
            assert argv[0] == "nmsat"
            words = [a for a in argv[1:] if not a.startswith("-")]
            assert " ".join(words[:len(name.split())]) == name, (name, line)
            build_parser().parse_args(argv[1:])  # raises (UsageError) if it does not parse
        assert "examples:" in sub.format_help()
        seen += 1
    assert seen >= 18


def test_quickstart_notebook_executes():
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    nb = nbformat.read(EXAMPLES / "quickstart.ipynb", as_version=4)
    nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(ROOT)}}).execute()
    outputs = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                      for o in c.outputs)
    assert "x over dense" in outputs and "2:8:" in outputs
    assert not [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
                if o.output_type == "error"]
