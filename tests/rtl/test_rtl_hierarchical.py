"""The hierarchical engine Verilog (shared cell modules) that whole-design synthesis reads
is the same hardware as the flat one: random tiles on it are bit- and cycle-exact."""

import re
import shutil

import pytest

from nmsat.config import SMALL

cocotb_tools = pytest.importorskip("cocotb_tools")

from nmsat.rtl.array import SHARED_CELLS
from nmsat.rtl.generate import TOP, hierarchical_top
from nmsat.rtl.tb.runner import run_engine_tb, simulator

LA2 = SMALL.replace(**{"array.acc_latency": 2})
"""La = 2: two accumulator slots per cell, so the shadow/drain ports are vectors."""


def test_two_cell_modules_instantiated_rows_times_cols():
    v = hierarchical_top(SMALL, "int8")
    defined = re.findall(r"^module (\S+?)\(", v, re.M)
    assert defined[0] == TOP
    assert set(SHARED_CELLS) <= set(defined)
    R, C = SMALL.array.rows, SMALL.array.cols
    uses = {name: len(re.findall(rf"^\s*{name}\s+\S+\s+\(", v, re.M)) for name in SHARED_CELLS}
    assert uses == {SHARED_CELLS[0]: C, SHARED_CELLS[1]: (R - 1) * C}
    # no flat copy of a cell is left in the top level
    assert not re.search(r"^module \\nmsat_engine\.array\.pe_\d+_\d+\.dot", v, re.M)


@pytest.mark.rtl
@pytest.mark.slow(seconds=60)
def test_hierarchical_engine_random_tiles_bit_and_cycle_exact():
    if simulator() == "icarus" and not shutil.which("iverilog"):
        pytest.skip("neither Verilator nor Icarus Verilog is installed")
    rep = run_engine_tb(LA2, "int8", 120, seed=41, hierarchical=True)
    assert rep["tiles"] == 120
    assert rep["mismatches"] == 0, rep["notes"]
    assert rep["cycle_mismatches"] == 0, rep["notes"]
