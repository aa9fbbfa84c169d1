"""Shared fixtures of the RTL tests: generated Verilog and simulator builds go to one
session temporary directory (reused by every test of the run, and by every pytest-xdist
worker of it; removed by pytest)."""

import os

import pytest


@pytest.fixture(scope="session", autouse=True)
def rtl_cache(tmp_path_factory):
    # pytest-xdist workers share one cache under the run's common temporary root: a
    # build is made once, under its lock (rtl/tb/runner.py), and the others reuse it
    if "PYTEST_XDIST_WORKER" not in os.environ:
        path = tmp_path_factory.mktemp("nmsat_rtl")
    else:
        path = tmp_path_factory.getbasetemp().parent / "nmsat_rtl"
        path.mkdir(exist_ok=True)
    old = os.environ.get("NMSAT_RTL_CACHE")
    os.environ["NMSAT_RTL_CACHE"] = str(path)
    # short simulations: the C++ build dominates, so Verilator builds at -O0 here
    # (nmsat rtl run and the benchmarks build at -O2, rtl/tb/runner.VERILATOR_OPT)
    os.environ.setdefault("NMSAT_VERILATOR_OPT", "-O0")
    yield path
    if old is None:
        os.environ.pop("NMSAT_RTL_CACHE", None)
    else:
        os.environ["NMSAT_RTL_CACHE"] = old


SMALL_2X2_TOML = 'preset = "small"\n\n[array]\nrows = 2\ncols = 2\n'
"""The ``small`` preset with a 2 x 2 array (same PE: P = 4, A = 8, La = 1, every pattern):
the float engines' Verilator builds take minutes per type at 4 x 4, so the float cocotb
regressions and the layer runs use this; the 4 x 4 float engine is covered in Amaranth's
simulator (``tests/test_rtl_engine.py``)."""


@pytest.fixture(scope="session")
def small_2x2(tmp_path_factory):
    from nmsat.config import load

    path = tmp_path_factory.mktemp("cfg") / "small_2x2.toml"
    path.write_text(SMALL_2X2_TOML)
    return path, load(path)
