"""Shared fixtures of the RTL tests: generated Verilog and simulator builds go to one
session temporary directory (reused by every test of the run, removed by pytest)."""

import os

import pytest


@pytest.fixture(scope="session", autouse=True)
def rtl_cache(tmp_path_factory):
    path = tmp_path_factory.mktemp("nmsat_rtl")
    old = os.environ.get("NMSAT_RTL_CACHE")
    os.environ["NMSAT_RTL_CACHE"] = str(path)
    yield path
    if old is None:
        os.environ.pop("NMSAT_RTL_CACHE", None)
    else:
        os.environ["NMSAT_RTL_CACHE"] = old
