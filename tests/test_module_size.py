"""Size limits of the package's code (issue 16): no module over 700 lines and no function
over 120, so each module is one concern a newcomer can read alone. Generated tables are
the only exceptions, each listed by path with the reason."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAX_MODULE_LINES = 700
MAX_FUNCTION_LINES = 120

EXEMPT: dict[str, str] = {
    # "path/relative/to/repo.py": "why it may be longer (e.g. a generated table)",
}
"""Modules allowed past the limits: generated tables only, each with its reason."""


def _package_dirs() -> list[Path]:
    """The source folders installed as ``nmsat.*`` (pyproject ``package-dir``)."""
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    dirs = meta["tool"]["setuptools"]["package-dir"].values()
    return sorted({ROOT / d for d in dirs})


def _modules() -> list[Path]:
    return sorted(p for d in _package_dirs() for p in d.rglob("*.py"))


def oversized(source: str, name: str) -> list[str]:
    """What in ``source`` (a module called ``name``) breaks a limit, one line each."""
    out = []
    lines = len(source.splitlines())
    if lines > MAX_MODULE_LINES:
        out.append(f"{name}: {lines} lines (limit {MAX_MODULE_LINES})")
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            length = node.end_lineno - node.lineno + 1
            if length > MAX_FUNCTION_LINES:
                out.append(f"{name}:{node.lineno} {node.name}: {length} lines "
                           f"(limit {MAX_FUNCTION_LINES})")
    return out


def test_the_scan_covers_the_package():
    names = {p.relative_to(ROOT).as_posix() for p in _modules()}
    for expected in ("nmsat/config.py", "dataflow/compiler.py", "simulator/system.py",
                     "rtl/controller.py", "reports/figures.py", "commands/__init__.py"):
        assert expected in names


def test_oversized_finds_long_modules_and_functions():
    body = "".join(f"    x{i} = {i}\n" for i in range(MAX_FUNCTION_LINES - 1))
    at_limit = "def f():\n" + body  # exactly MAX_FUNCTION_LINES lines
    assert oversized(at_limit, "m") == []
    over = "class C:\n    def g(self):\n" + "    " + body.replace("\n", "\n    ").rstrip() + \
        "\n        return 0\n"
    assert oversized(over, "m") == [f"m:2 g: {MAX_FUNCTION_LINES + 1} lines "
                                    f"(limit {MAX_FUNCTION_LINES})"]
    long_module = "x = 0\n" * (MAX_MODULE_LINES + 1)
    assert oversized(long_module, "m") == [f"m: {MAX_MODULE_LINES + 1} lines "
                                           f"(limit {MAX_MODULE_LINES})"]


@pytest.mark.parametrize("path", _modules(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_module_and_function_sizes(path):
    name = path.relative_to(ROOT).as_posix()
    problems = oversized(path.read_text(), name)
    if name in EXEMPT:
        assert problems, f"{name} is within the limits now: drop it from EXEMPT"
        return
    assert problems == [], "split into cohesive modules / named helpers:\n" + \
        "\n".join(problems)


def test_exemptions_name_real_modules_with_a_reason():
    for name, reason in EXEMPT.items():
        assert (ROOT / name).is_file(), name
        assert reason.strip(), name
