"""The system model's and compiler's hot-path shortcuts equal the general code they skip.

Each shortcut is a plain speed-up of one function (no modelled behaviour changes); these
tests compare it with the general path on random inputs, so a shortcut that drifts from
its reference fails here before any figure moves:

* ``SimpleDram.transfer`` (``serve`` inline, data cycles memoised) against
  ``StripedDram.transfer`` (the generic path through ``serve``), with state shifts between;
* ``Streams.peek`` / ``cause`` / ``get`` answering completions past the last skipped
  segment straight from the record, against ``Streams.resolve``;
* ``Cursor.mark``'s position keys against ``(it,) + subpos(depth)``;
* the cursor's cached barrier waits (``units.deps``) and each loop frame's cached
  steady-state record, checked at every use against fresh ones while random programs
  and compiled zoo programs run (extrapolating, so skips change barriers and keys);
* the ISA field checks' plain-int shortcut against ``_field_int`` on compiled programs;
* ``ActivityCounts``' cached field names against ``dataclasses.fields``.

The whole system model is checked end to end elsewhere (``test_system_extrapolation.py``:
random programs and the zoo; the sweep benchmark's results digest).
"""

from __future__ import annotations

import dataclasses
import random
import sys
from pathlib import Path

import simpy
from hypothesis import given, settings
from hypothesis import strategies as st

from nmsat import config
from nmsat.dataflow.compiler import CompileOptions, compile_workload
from nmsat.dataflow.isa import (
    ENCODING,
    Barrier,
    Buffer,
    Loop,
    Program,
    Sore,
    SoreView,
    Tensor,
    Unit,
)
from nmsat.dataflow.isa.encoding import _field_int
from nmsat.dataflow.memory import SimpleDram, StripedDram
from nmsat.simulator import steady_state, system, units
from nmsat.simulator.energy import ActivityCounts, _count_names
from nmsat.simulator.program_walk import MIN_SKIP_COUNT, UNIT_STREAM, Cursor, Frame, Node
from nmsat.simulator.stalls import STREAM_CAUSE
from nmsat.simulator.streams import Streams
from nmsat.types import NM, Method, Phase
from nmsat.workloads import zoo

transfers = st.lists(st.tuples(st.integers(0, 300), st.integers(1, 20_000),
                               st.integers(0, 3)), min_size=1, max_size=16)
geometry = st.tuples(st.integers(1, 4), st.sampled_from((8, 16, 64)), st.integers(0, 50),
                     st.sampled_from((32, 64)))


@settings(max_examples=300, deadline=None)
@given(geometry, transfers)
def test_simple_dram_transfer_equals_the_generic_path(g, xs):
    fast, ref = SimpleDram(*g), SimpleDram(*g)
    t = 0
    for dt, nbytes, shift in xs:
        t += dt
        assert fast.transfer(t, nbytes) == StripedDram.transfer(ref, t, nbytes)
        assert fast.ready == ref.ready
        if shift:  # a skipped period between transfers
            fast.shift(t, shift * 7)
            ref.shift(t, shift * 7)
            t += shift * 7


def _ref_peek(s: Streams, st_: int, n: int):
    real, shift = s.resolve(st_, n)
    t = s.rec[st_].get(real)
    return None if t is None else t + shift


def _ref_cause(s: Streams, st_: int, n: int) -> str:
    real, _ = s.resolve(st_, n)
    return s.rcause[st_].get(real, STREAM_CAUSE[st_])


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_stream_lookups_equal_resolve(seed):
    rng = random.Random(seed)
    streams = Streams(simpy.Environment())
    causes = ("memory", "dependency", "sore", "vector")
    t = 0
    for _ in range(rng.randint(1, 40)):
        s = rng.randrange(9)
        if rng.random() < 0.15 and streams.count[s] > 2:
            per = rng.randint(1, min(3, streams.count[s]))
            start = streams.count[s] - 1
            streams.skip(s, start, per * rng.randint(1, 4), per, rng.randint(1, 50))
        else:
            t += rng.randint(0, 20)
            streams.put(s, t, rng.choice(causes))
        for q in range(9):
            for n in range(streams.count[q] + 2):
                want = _ref_peek(streams, q, n)
                assert streams.peek(q, n) == want
                if want is not None:
                    assert streams.cause(q, n) == _ref_cause(streams, q, n)
                    gen = streams.get(q, n)
                    try:  # a scheduled completion: get returns without waiting
                        next(gen)
                        raise AssertionError("get waited for a scheduled completion")
                    except StopIteration as stop:
                        assert stop.value == want


def _ref_marks(cur: Cursor) -> dict:
    """Cursor.mark as it was: one subpos per frame."""
    out = {}
    n = len(cur.log)
    for depth in range(1, len(cur.frames)):
        f = cur.frames[depth]
        if f.node.count >= MIN_SKIP_COUNT:
            out[depth] = ((f.it,) + cur.subpos(depth), n)
    return out


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 9), st.integers(0, 8), st.integers(0, 5)),
                min_size=0, max_size=6), st.integers(0, 5))
def test_cursor_mark_keys_equal_subpos(levels, logged):
    root = Node(0, 1)
    cur = Cursor.__new__(Cursor)
    cur.frames = [Frame(root, (0, ()), ())]
    cur.log = [None] * logged
    for i, (count, it, child) in enumerate(levels):
        f = Frame(Node(i + 1, count), (i + 1, ()), ())
        f.it, f.child, f.depth = min(it, count - 1), child, i + 1
        cur.frames.append(f)
    cur.mark()
    want = _ref_marks(cur)
    for depth in range(1, len(cur.frames)):
        marks = cur.frames[depth].marks
        if depth in want:
            assert marks == {want[depth][0]: want[depth][1]}
        else:
            assert marks == {}


def test_isa_field_shortcut_reads_what_field_int_reads():
    wl = zoo.get("cnn", batch=4)
    cfg = config.VCU1525
    for method in (Method.BDWP, Method.DENSE):
        prog = compile_workload(wl, cfg, CompileOptions(method=method))
        for ins in prog.instructions:
            for name, _ in ENCODING[ins.OPCODE]:
                v = getattr(ins, name, None)
                if v.__class__ is int:
                    assert _field_int(ins, name) == v


def test_activity_count_names_are_the_dataclass_fields():
    assert _count_names() == tuple(f.name for f in dataclasses.fields(ActivityCounts))


sys.path.insert(0, str(Path(__file__).parent))
from test_system_extrapolation import (  # noqa: E402
    _compute,
    _load,
    _store,
    _summary,
    random_program,
)


def _checked_caches(monkeypatch) -> list[int]:
    """Make deps and iteration_done compare their caches with fresh values at every use;
    returns counters of the checks made (cached barrier waits used, frame records)."""
    seen = [0, 0]
    deps, done = units.deps, steady_state.SteadyState.iteration_done

    def checked_deps(recipe, cur):
        got = deps(recipe, cur)
        fresh = [(UNIT_STREAM[u][1], b[0] - 1) for u, b in enumerate(cur.barrier)
                 if b is not None and b[0] > 0]
        assert cur.barrier_deps == fresh
        seen[0] += bool(fresh)
        return got

    def checked_done(self, cur, frame):
        if frame.inst is not None:
            assert frame.inst is self.instances[frame.key]
            seen[1] += 1
        return done(self, cur, frame)

    for mod in (units, sys.modules["nmsat.simulator.dma"]):
        monkeypatch.setattr(mod, "deps", checked_deps)
    monkeypatch.setattr(steady_state.SteadyState, "iteration_done", checked_done)
    return seen


def test_cursor_caches_equal_fresh_values_on_random_programs(monkeypatch):
    seen = _checked_caches(monkeypatch)
    for seed in range(40):
        rng = random.Random(seed)
        cfg = config.preset("small") if seed % 3 == 0 else config.VCU1525
        system.run(random_program(rng), cfg, record=False)
    assert seen[0] > 0 and seen[1] > 0  # not vacuous: both caches were used


def test_cursor_caches_equal_fresh_values_on_a_zoo_program(monkeypatch):
    seen = _checked_caches(monkeypatch)
    prog = compile_workload(zoo.get("cnn", batch=4), config.VCU1525,
                            CompileOptions(method=Method.BDWP))
    system.run(prog, config.VCU1525, record=False)
    assert seen[0] > 0 and seen[1] > 0


def _barrier_loop_program(rng: random.Random) -> Program:
    """Loops whose bodies hold barriers (a skip then moves the barriers' counts)."""
    instrs: list = []
    for layer in range(rng.randint(1, 3)):
        if rng.random() < 0.5:
            instrs.append(Sore(src=0, dst=0, view=SoreView.FF, nm=NM(2, 8), weights=4096,
                               groups=512, read_bytes=8192, write_bytes=2560, layer=layer))
        body = [_load(rng, Buffer.WGT), _load(rng, Buffer.ACT),
                _compute(rng, layer, Phase.FF), _store(rng)]
        body.insert(rng.randint(0, len(body)), Barrier(rng.choice(
            (Unit.STORE, Unit.SORE, Unit.STORE | Unit.ENGINE, Unit.LOAD, Unit.all()))))
        inner = rng.choice((1, 2, 3))
        instrs += [Loop(rng.choice((8, 20, 60)), len(body) + 1), Loop(inner, len(body)), *body]
    return Program(tuple(instrs), tensors=(Tensor("t", 1 << 20, 64),), layers=("l0", "l1", "l2"))


def test_cursor_caches_with_barriers_inside_skipped_loops(monkeypatch):
    seen = _checked_caches(monkeypatch)
    jumped = 0
    for seed in range(40):
        rng = random.Random(seed)
        prog = _barrier_loop_program(rng)
        fast = system.run(prog, config.VCU1525, record=False)
        full = system.run(prog, config.VCU1525, extrapolate=False, record=False)
        assert _summary(fast) == _summary(full)
        jumped += bool(fast.jumps)
    assert jumped > 10 and seen[0] > 0 and seen[1] > 0
