"""The generated SORE under cocotb (Icarus): random FF/BP views equal reference.compress bit
for bit under random gaps and backpressure, and each view's cycles equal the formula of
docs/architecture.md section 5 when nothing stalls."""

import shutil

import pytest

from nmsat.config import SMALL

pytest.importorskip("cocotb_tools")
pytestmark = [pytest.mark.rtl,
              pytest.mark.skipif(not shutil.which("iverilog"), reason="needs Icarus Verilog")]

from nmsat.rtl.cocotb_parts.sore_tb import run_sore_tb  # noqa: E402


def test_random_views_under_gaps_and_backpressure():
    rep = run_sore_tb(SMALL, "fp16", jobs=40, seed=11, gap=0.3, ready=0.6, sim="icarus")
    assert (rep["tiles"], rep["mismatches"], rep["cycle_mismatches"]) == (40, 0, 0), rep


def test_view_cycles_equal_formula_other_lanes_and_latency():
    cfg = SMALL.replace(**{"sore.lanes": 3, "sore.pipeline_latency": 2,
                           "numerics.dtype": "bf16"})
    rep = run_sore_tb(cfg, "bf16", jobs=12, seed=5, sim="icarus")
    assert (rep["tiles"], rep["mismatches"], rep["cycle_mismatches"]) == (12, 0, 0), rep
