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


def _misbehave(how: str, root):
    """A stand-in for ``nmsat demo`` that misbehaves in one way the judge must see."""
    import os
    import time

    import numpy as np

    from nmsat.errors import NmsatError

    def func(args):
        if how == "traceback":
            raise KeyError("x")
        if how == "slow":  # busy: CPU time
            t = time.process_time()
            while time.process_time() - t < F.TIME_LIMIT_S + 0.2:
                pass
        if how == "blocked":  # asleep: wall time
            time.sleep(F.WALL_LIMIT_S + 0.2)
        if how == "memory":
            np.ones(F.MEMORY_LIMIT // 8 * 2)
        if how == "partial":
            (root / "out" / "half.json").write_text("{")
            raise NmsatError("--json: out/half.json: disk full")
        if how == "clobber":
            (root / "out" / "keep.json").write_text("{}")
            raise NmsatError("--json: out/keep.json: disk full")
        if how == "fifo":
            os.replace(root / "out" / "keep.json", root / "out" / "fifo")
            return 0
        if how == "stdout":
            print("layer  cycles")
            raise NmsatError("--json: out/x.json: disk full")
        if how == "two lines":
            print("warning: something", file=__import__("sys").stderr)
            raise NmsatError("--json: out/x.json: disk full")
        if how == "nameless":
            raise NmsatError("something is wrong")
        if how == "library":
            np.zeros(4).reshape(3)
        if how == "exit":
            return 1
        return 0
    return func


@pytest.mark.parametrize("how, verdict", [
    ("traceback", "traceback"), ("slow", "over 10 s"), ("blocked", "over 10 s"),
    ("memory", "over 1 GiB"),
    ("partial", "partial output"), ("clobber", "partial output"),
    ("fifo", "non-regular file replaced"), ("stdout", "partial output"),
    ("two lines", "multi-line message"), ("nameless", "refusal not naming"),
    ("library", "library error passed through"), ("exit", "exit code"), ("fine", "ok"),
])
def test_the_judge_sees_each_defect(how, verdict, sandbox, monkeypatch):
    """A harness that cannot see a failure proves nothing: a command made to misbehave in
    each way is judged as that defect (the time limit shortened to keep this quick)."""
    import nmsat.commands as c

    monkeypatch.setattr(F, "TIME_LIMIT_S", 0.3)
    monkeypatch.setattr(F, "WALL_LIMIT_S", 0.6)
    parser = c.build_parser()  # the sandbox's one parser
    demo = parser._subparsers._group_actions[0].choices["demo"]
    old = demo._defaults["func"]
    demo.set_defaults(func=_misbehave(how, sandbox.root))
    F._wrap_commands(demo)
    try:
        out = sandbox.run(["demo"])
    finally:
        demo.set_defaults(func=old)
    assert out.kind == verdict, out.detail
    if how == "fifo":  # put the sandbox back as it was
        import os

        sandbox.root.joinpath("out", "fifo").unlink()
        os.mkfifo(sandbox.root / "out" / "fifo")
