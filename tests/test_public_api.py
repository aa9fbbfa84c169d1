"""Every library module states its public names in ``__all__``, and the list is true.

Read from the source (no import): ``__all__`` is a literal list without repeats, each name
in it is bound at the module's top level (defined, assigned or imported: a package may
re-export), and every public top-level function and class of the module is listed
(a helper not meant for other modules starts with ``_``). The command modules (their API
is ``nmsat.commands.main``) and the cocotb testbenches (``rtl/tb``, ``rtl/cocotb_parts``,
run by cocotb, not imported by users) are left out.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GLOBS = ["nmsat/*.py", "workloads/*.py", "dataflow/*.py", "dataflow/isa/*.py", "simulator/*.py",
         "reports/*.py", "rtl/*.py"]
MODULES = sorted(p.relative_to(ROOT).as_posix() for g in GLOBS for p in ROOT.glob(g)
                 if p.name != "__main__.py")


def _bound(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {t.id for t in targets if isinstance(t, ast.Name)}
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, (ast.If, ast.Try)):  # e.g. a guarded optional import
            names |= _bound(ast.Module(body=node.body, type_ignores=[]))
    return names


def _all(tree: ast.Module) -> list[str] | None:
    for node in tree.body:
        if (isinstance(node, ast.Assign) and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name) and node.targets[0].id == "__all__"):
            value = ast.literal_eval(node.value)
            assert isinstance(value, list), "__all__ must be a literal list"
            return value
    return None


@pytest.mark.parametrize("rel", MODULES)
def test_module_states_its_public_names(rel):
    tree = ast.parse((ROOT / rel).read_text(), rel)
    names = _all(tree)
    defs = [n.name for n in tree.body
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
            and not n.name.startswith("_")]
    if names is None:
        assert rel.endswith("__init__.py") and not defs, f"{rel} has no __all__"
        return
    assert len(names) == len(set(names)), f"{rel}: __all__ repeats a name"
    assert not set(names) - _bound(tree), f"{rel}: __all__ names what it does not bind"
    missing = [d for d in defs if d not in names]
    assert not missing, f"{rel}: public but not in __all__ (add it, or start it with _)"


def test_the_scan_sees_the_floors():
    assert {m.split("/")[0] for m in MODULES} == {"nmsat", "workloads", "dataflow",
                                                  "simulator", "reports", "rtl"}
    assert len(MODULES) > 60
