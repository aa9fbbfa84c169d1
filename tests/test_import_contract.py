"""The floors of the code (docs/architecture.md, appendix) as an import-linter contract.

The contracts live in ``pyproject.toml`` (``[tool.importlinter]``): core ``nmsat`` ->
workloads -> dataflow -> simulator | rtl (independent) -> reports -> commands ->
``nmsat.__main__``, and the RTL generator never asks the compiler. import-linter reads a
package from its folder, but the floors sit in sibling folders that setuptools maps into
``nmsat`` (``[tool.setuptools.package-dir]``), so each test lays the package out as it is
installed in a temporary folder and runs ``lint-imports`` there. Imports inside functions
count like module-level ones.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = ROOT / "pyproject.toml"
LINT = ("import sys; from importlinter.cli import lint_imports_command; "
        "sys.exit(lint_imports_command())")


def stage(dest: Path) -> Path:
    """Copy the package's sources to ``dest/nmsat`` in their installed layout; ``dest``."""
    dirs = tomllib.loads(PYPROJECT.read_text())["tool"]["setuptools"]["package-dir"]
    skip = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name, folder in sorted(dirs.items()):  # "nmsat" first, then its subpackages
        shutil.copytree(ROOT / folder, dest / name.replace(".", "/"), ignore=skip)
    return dest


def lint_imports(tree: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", LINT, "--config", str(PYPROJECT),
                           "--no-cache"], cwd=tree, env={**os.environ, "PYTHONPATH": str(tree)},
                          capture_output=True, text=True, timeout=300)


def test_the_floors_hold(tmp_path):
    res = lint_imports(stage(tmp_path))
    assert res.returncode == 0, res.stdout + res.stderr
    assert re.search(r"Contracts: \d+ kept, 0 broken", res.stdout), res.stdout
    # every file of every floor was read: a contract over modules it cannot find is no check
    files = len(list(tmp_path.rglob("*.py")))
    assert f"Analyzed {files} files" in res.stdout, res.stdout


def _inject(path: Path, line: str, *, lazy: bool) -> None:
    """Append an import to ``path``: at module level, or inside a function (lazy)."""
    code = (f"\n\ndef _upward():\n    {line}\n    return 0\n" if lazy else f"\n{line}\n")
    path.write_text(path.read_text() + code)


UPWARD = [
    # (file in the staged tree, import, contract that must break, words of its report)
    ("nmsat/dataflow/compiler.py", "from nmsat.simulator import system", True,
     "nmsat.dataflow is not allowed to import nmsat.simulator"),
    ("nmsat/workloads/zoo.py", "import nmsat.dataflow.compiler", False,
     "nmsat.workloads is not allowed to import nmsat.dataflow"),
    ("nmsat/rtl/engine.py", "from nmsat.simulator.system import run", True,
     "nmsat.rtl is not allowed to import nmsat.simulator"),
    ("nmsat/simulator/api.py", "from nmsat.rtl import synth", False,
     "nmsat.simulator is not allowed to import nmsat.rtl"),
    ("nmsat/simulator/api.py", "from nmsat.reports import html", True,
     "nmsat.simulator is not allowed to import nmsat.reports"),
    ("nmsat/reports/html.py", "from nmsat.commands import main", True,
     "nmsat.reports is not allowed to import nmsat.commands"),
    ("nmsat/config.py", "from nmsat.workloads import zoo", True,
     "Illegal imports of protected package"),
    ("nmsat/__init__.py", "from nmsat.commands import main", False,
     "Illegal imports of protected package"),
    ("nmsat/rtl/controller.py", "from nmsat.dataflow.compiler import compile_layer", True,
     "nmsat.rtl is not allowed to import nmsat.dataflow.compiler"),
    ("nmsat/rtl/engine.py", "from nmsat.dataflow import tiling", False,
     "nmsat.rtl is not allowed to import nmsat.dataflow.tiling"),
]


@pytest.mark.parametrize(("where", "line", "lazy", "report"), UPWARD,
                         ids=[f"{w.split('/', 1)[1]}:{x.split()[1]}" for w, x, _, _ in UPWARD])
def test_an_upward_import_breaks_the_contract(tmp_path, where, line, lazy, report):
    tree = stage(tmp_path)
    _inject(tree / where, line, lazy=lazy)
    res = lint_imports(tree)
    assert res.returncode == 1, res.stdout + res.stderr
    assert re.search(r"Contracts: \d+ kept, [1-9]\d* broken", res.stdout), res.stdout
    assert report in res.stdout, res.stdout
