"""Commands load the library lazily: ``nmsat --help`` and ``--version`` import no part of
the library, and a subcommand imports its own command module and what it uses, never the
other commands. (Whole-process times: ``benchmarks/cli_startup.py``.)"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from nmsat.commands import SUBCOMMANDS

HEAVY = ("numpy", "simpy", "amaranth", "matplotlib", "torch", "dask", "tqdm")
LIBRARY = ("nmsat.simulator", "nmsat.dataflow", "nmsat.rtl", "nmsat.reports",
           "nmsat.workloads")


def _loaded(*argv: str) -> set[str]:
    """The modules loaded after ``nmsat argv`` in a fresh interpreter."""
    code = (
        "import contextlib, io, json, sys\n"
        "from nmsat.commands import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    try:\n"
        f"        main({list(argv)!r})\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print(json.dumps(sorted(sys.modules)))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    return set(json.loads(out))


def _nmsat(mods: set[str]) -> set[str]:
    return {m for m in mods if m == "nmsat" or m.startswith("nmsat.")}


@pytest.mark.parametrize("flag", ["--help", "--version"])
def test_top_level_loads_no_library(flag):
    mods = _loaded(flag)
    # nmsat.log: the --quiet/--verbose logger set-up (imports only logging and sys)
    assert _nmsat(mods) == {"nmsat", "nmsat.commands", "nmsat.errors", "nmsat.log"}
    assert not {m.split(".")[0] for m in mods} & set(HEAVY)


@pytest.mark.parametrize("command", list(SUBCOMMANDS))
def test_a_subcommand_loads_only_its_own_command(command):
    mods = _nmsat(_loaded(command, "--help"))
    commands = {m for m in mods if m.startswith("nmsat.commands.")}
    own = {SUBCOMMANDS[command][0]}
    if command == "simulate":
        own.add("nmsat.commands.simulate_inference")  # its --mode inference half
    assert commands == own
    # Building a parser runs no simulator, RTL or report code.
    assert not {m for m in mods if m.startswith(("nmsat.simulator", "nmsat.rtl",
                                                 "nmsat.reports", "nmsat.dataflow"))}


def test_config_list_loads_only_the_config():
    mods = _loaded("config", "list")
    assert not {m for m in _nmsat(mods) if m.startswith(LIBRARY)}
    assert not {m.split(".")[0] for m in mods} & set(HEAVY)


def test_an_unknown_command_is_one_line_and_status_2():
    p = subprocess.run([sys.executable, "-m", "nmsat", "bogus"], capture_output=True,
                       text=True)
    assert p.returncode == 2 and p.stdout == ""
    assert p.stderr.count("\n") == 1 and "invalid choice: 'bogus'" in p.stderr
