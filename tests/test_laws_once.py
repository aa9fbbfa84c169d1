"""Each law of the machine is written once: the source holds no second copy of it.

These scans read every Python file of the installed packages (core, workloads, dataflow,
simulator, rtl, reports) and of the tests; a copied formula makes them fail with its place.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from nmsat.arith import ceil_div

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ["nmsat", "workloads", "dataflow", "simulator", "rtl", "reports", "tests", "benchmarks"]


def _sources() -> list[Path]:
    return sorted(p for d in FOLDERS if (ROOT / d).is_dir() for p in (ROOT / d).rglob("*.py"))


def _hits(pattern: str, *, allow: tuple[str, ...] = ()) -> list[str]:
    rx = re.compile(pattern)
    out = []
    for p in _sources():
        rel = p.relative_to(ROOT).as_posix()
        if rel in allow:
            continue
        for i, line in enumerate(p.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            if rx.search(code):
                out.append(f"{rel}:{i}: {line.strip()}")
    return out


def test_ceil_division_is_written_once():
    """The negated floor division trick lives only in :func:`nmsat.arith.ceil_div`."""
    assert _hits(r"-\s*\(\s*-.*//", allow=("nmsat/arith.py",)) == []


@pytest.mark.parametrize("a", [-7, -1, 0, 1, 2, 7, 8, 9, 10**20 + 1])
@pytest.mark.parametrize("b", [1, 2, 3, 8, 10**9])
def test_ceil_div_is_the_exact_ceiling(a, b):
    q = ceil_div(a, b)
    assert (q - 1) * b < a <= q * b
