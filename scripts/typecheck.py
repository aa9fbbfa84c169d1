"""Run mypy on nmsat as it is installed: ``python scripts/typecheck.py [mypy options]``.

The floors sit in sibling folders that setuptools maps into ``nmsat``
(``[tool.setuptools.package-dir]``), and the editable install reaches them through an import
hook that mypy does not follow. So this lays the package out under ``build/typecheck/`` as
symlinks to the sources (rebuilt each run, so new files are seen), runs mypy there with
``[tool.mypy]`` of pyproject.toml (which names the packages checked: core, dataflow,
simulator), and prints each error under its path in the repository. Exit status is mypy's.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TREE = ROOT / "build" / "typecheck"


def lay_out() -> dict[str, str]:
    """Symlink the installed layout under TREE; {staged prefix: repository prefix}."""
    dirs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-dir"]
    pkg = TREE / "nmsat"
    if pkg.exists():
        shutil.rmtree(pkg)  # symlinks only: the sources they point at are untouched
    pkg.mkdir(parents=True)
    for entry in sorted((ROOT / dirs["nmsat"]).iterdir()):
        if entry.name != "__pycache__":
            (pkg / entry.name).symlink_to(entry)
    prefixes = {}
    for name, folder in dirs.items():
        if name != "nmsat":
            link = TREE / name.replace(".", "/")
            link.symlink_to(ROOT / folder, target_is_directory=True)
            prefixes[name.replace(".", "/") + "/"] = folder.rstrip("/") + "/"
    prefixes["nmsat/"] = dirs["nmsat"].rstrip("/") + "/"
    return prefixes


def main(argv: list[str]) -> int:
    prefixes = lay_out()
    res = subprocess.run([sys.executable, "-m", "mypy", "--config-file",
                          str(ROOT / "pyproject.toml"), *argv], cwd=TREE,
                         capture_output=True, text=True,
                         env={**os.environ, "MYPYPATH": str(TREE)})
    for line in (res.stdout + res.stderr).splitlines():
        for staged, real in sorted(prefixes.items(), key=lambda kv: -len(kv[0])):
            if line.startswith(staged):
                line = real + line[len(staged):]
                break
        print(line)
    return res.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
