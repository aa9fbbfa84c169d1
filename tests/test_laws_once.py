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
    here = Path(__file__).resolve()
    return sorted(p for d in FOLDERS if (ROOT / d).is_dir() for p in (ROOT / d).rglob("*.py")
                  if p.resolve() != here)


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


def test_groups_per_chunk_is_written_once():
    """``min(P // N, A // M)`` lives only in :meth:`nmsat.types.NM.groups_per_chunk`."""
    assert _hits(r"min\(\s*[\w.]+\s*//\s*[\w.]*\bn\s*,\s*[\w.]+\s*//\s*[\w.]*\bm\s*\)",
                 allow=("nmsat/types.py",)) == []


def test_option_defaults_are_stated_once():
    """The default N:M pattern and the dataflow choices of every option set and command
    live only in :mod:`nmsat.types` (``DEFAULT_NM``, ``DATAFLOW_CHOICES``)."""
    package = ("nmsat/", "workloads/", "dataflow/", "simulator/", "rtl/", "reports/")
    hits = [h for h in _hits(r"(?<!`)NM\(\s*2\s*,\s*8\s*\)|=\s*\"2:8\"|"
                             r"\(\s*\"auto\"\s*,\s*\"os\"\s*,\s*\"ws\"\s*\)",
                             allow=("nmsat/types.py",))
            if h.startswith(package)]
    assert hits == []


def test_halves_are_written_once():
    """A buffer's ring size lives only in :attr:`BufferConfig.halves`."""
    assert _hits(r"double_buffered\s+else", allow=("nmsat/config.py",)) == []


def test_bank_words_are_the_configs():
    """The RTL engine's bank depths are the config's :meth:`bank_words`, which the compiler
    also limits its blocks to; nothing else computes them."""
    from nmsat.config import SMALL, VCU1525
    from nmsat.rtl.engine import buffer_geometry
    from nmsat.rtl.layouts import EngineShape

    assert _hits(r"engine_buffer_words|act_window\s*\*\s*e\b", allow=("nmsat/config.py",)) == []
    for cfg in (SMALL, VCU1525):
        sh = EngineShape.from_config(cfg)
        words = cfg.bank_words(sh.numeric.width // 8)
        g = buffer_geometry(cfg, sh)
        # with shadow weights a column's words spread over R banks (vcu1525: 5461 // 16)
        wgt = words["buffers.weight"] // (sh.rows if sh.shadow else 1)
        assert (g["act"], g["wgt"], g["out"]) == (words["buffers.activation"], wgt,
                                                 words["buffers.output"])
        assert sh.shadow == cfg.array.shadow_weights


@pytest.mark.parametrize("n,m", [(1, 4), (2, 4), (1, 8), (2, 8), (4, 8), (3, 7)])
@pytest.mark.parametrize("lanes,window", [(4, 16), (4, 8), (2, 8), (8, 8), (1, 4)])
def test_groups_per_chunk_law(n, m, lanes, window):
    """g = min(P // N, A // M): g groups fill at most P lanes and span at most A elements,
    and one more group would break one of the two."""
    from nmsat.types import NM

    nm = NM(n, m)
    g = nm.groups_per_chunk(lanes, window)
    assert g * n <= lanes and g * m <= window
    assert (g + 1) * n > lanes or (g + 1) * m > window
    assert nm.k_per_chunk(lanes, window) == g * m


# Where the timing laws sit (the dataflow floor imports no back end; the RTL generator
# does not ask the compiler for its geometry) is the import contract's to check:
# pyproject.toml [tool.importlinter], run by tests/test_import_contract.py.


@pytest.mark.parametrize("m", [1, 15, 16, 17, 64, 65, 1000])
@pytest.mark.parametrize("interleave", [False, True])
def test_os_passes(m, interleave):
    """OS passes = ceil(row blocks / slots): enough passes for every row block, and one
    fewer would leave some out."""
    from nmsat.config import VCU1525
    from nmsat.dataflow.timing import Geometry

    g = Geometry.of(VCU1525)
    blocks, s = ceil_div(m, g.rows), g.os_slots(interleave)
    p = g.os_passes(m, interleave)
    assert (p - 1) * s < blocks <= p * s
