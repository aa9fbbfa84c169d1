"""Hostile inputs of every kind, through the whole command line (``tests/fuzz_inputs.py``).

Each kind runs 400 generated inputs (2,000 in all): accelerator configs, training traces,
SCALE-Sim CSVs, sweep specs and whole command lines. Every one must end ``ok`` or
``refused`` (exit 2, one line naming the file, field or flag), within 10 s and 1 GiB,
leaving no partial output and every FIFO, socket, device link and folder destination as it
was. ``python benchmarks/fuzz.py`` runs 100,000 and prints the counts.
"""

from __future__ import annotations

import fuzz_inputs as F
import pytest
from hypothesis import HealthCheck, Phase, Verbosity, given, settings

EXAMPLES = 400


@pytest.fixture(scope="module")
def sandbox():
    sb = F.Sandbox()
    yield sb
    sb.close()


@pytest.mark.parametrize("kind", F.KINDS)
def test_hostile_inputs_are_refused_cleanly(kind, sandbox):
    seen: dict[str, int] = {}

    @settings(max_examples=EXAMPLES, database=None, deadline=None, derandomize=True,
              phases=[Phase.generate], suppress_health_check=list(HealthCheck),
              verbosity=Verbosity.quiet, print_blob=False)
    @given(F.cases(kind))
    def one(case):
        files, argv = case
        sandbox.write_inputs(files)
        out = sandbox.run(argv)
        seen[out.kind] = seen.get(out.kind, 0) + 1
        assert out.kind in ("ok", "refused"), f"{out.kind}: {out.detail}"

    one()
    assert sum(seen.values()) == EXAMPLES
    assert seen.get("refused", 0) > EXAMPLES // 2  # the inputs really are hostile
