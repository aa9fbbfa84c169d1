#!/usr/bin/env bash
# Code habits (issue 16): ruff (lint and import order, `nmsat` first-party) on every Python
# file, and mypy on the core, dataflow and simulator floors. The import contract of the
# floors runs in the test suite (tests/test_import_contract.py). scripts/test.sh runs this
# before pytest; PYTHON picks the interpreter (default python3), e.g. a venv's.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
# Re-sort imports and apply ruff's safe fixes: "$PYTHON" -m ruff check --fix .

"$PYTHON" -m ruff check --quiet .

"$PYTHON" scripts/typecheck.py
