"""The generated weight-update engine under cocotb (Icarus): every word equal to
reference.weight_update and quantize (fp16 copy) on corner values (subnormals, fp16
rounding ties, overflow edges) under random gaps and backpressure, and each job's cycles
equal ceil(weights / lanes) + pipeline_latency when nothing stalls."""

import shutil

import pytest

from nmsat.config import SMALL

pytest.importorskip("cocotb_tools")
pytestmark = [pytest.mark.rtl,
              pytest.mark.skipif(not shutil.which("iverilog"), reason="needs Icarus Verilog")]

from nmsat.rtl.cocotb_parts.wu_tb import run_wu_tb  # noqa: E402


def test_updates_under_gaps_and_backpressure():
    rep = run_wu_tb(SMALL, jobs=30, seed=7, gap=0.3, ready=0.6, sim="icarus")
    assert (rep["tiles"], rep["mismatches"], rep["cycle_mismatches"]) == (30, 0, 0), rep


def test_cycles_equal_formula():
    cfg = SMALL.replace(**{"weight_update.lanes": 3, "weight_update.pipeline_latency": 5})
    rep = run_wu_tb(cfg, jobs=10, seed=3, sim="icarus")
    assert (rep["tiles"], rep["mismatches"], rep["cycle_mismatches"]) == (10, 0, 0), rep
