"""The distribution installs every package under the single ``nmsat`` namespace.

A non-editable ``pip install .`` only ships the packages listed in pyproject.toml, so a
new sub-package that is not listed would work in development and break for users.
"""

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _setuptools():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def test_every_package_folder_is_listed():
    st = _setuptools()
    listed = set(st["packages"])
    found = set()
    for namespace, folder in st["package-dir"].items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder)
            found.add(".".join([namespace, *rel.parts]))
    assert found - listed == set(), "add these to [tool.setuptools] packages"
    assert listed - found == set(), "listed packages without a folder"


def test_no_bare_top_level_packages():
    st = _setuptools()
    assert all(name == "nmsat" or name.startswith("nmsat.") for name in st["packages"])
    assert all(name.startswith("nmsat") for name in st["package-dir"])
