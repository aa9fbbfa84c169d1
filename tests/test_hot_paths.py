"""The system model's and compiler's hot-path shortcuts equal the general code they skip.

Each shortcut is a plain speed-up of one function (no modelled behaviour changes); these
tests compare it with the general path on random inputs, so a shortcut that drifts from
its reference fails here before any figure moves:

* ``SimpleDram.transfer`` (``serve`` inline, data cycles memoised) against
  ``StripedDram.transfer`` (the generic path through ``serve``), with state shifts between;
* ``Streams.peek`` / ``cause`` / ``get`` answering completions past the last skipped
  segment straight from the record, against ``Streams.resolve``;
* ``Cursor.mark``'s position keys against ``(it,) + subpos(depth)``;
* the ISA field checks' plain-int shortcut against ``_field_int`` on compiled programs;
* ``ActivityCounts``' cached field names against ``dataclasses.fields``.

The whole system model is checked end to end elsewhere (``test_system_extrapolation.py``:
random programs and the zoo; the sweep benchmark's results digest).
"""

from __future__ import annotations

import dataclasses
import random

import simpy
from hypothesis import given, settings
from hypothesis import strategies as st

from nmsat import config
from nmsat.dataflow.compiler import CompileOptions, compile_workload
from nmsat.dataflow.isa import ENCODING
from nmsat.dataflow.isa.encoding import _field_int
from nmsat.dataflow.memory import SimpleDram, StripedDram
from nmsat.simulator.energy import ActivityCounts, _count_names
from nmsat.simulator.program_walk import MIN_SKIP_COUNT, Cursor, Frame, Node
from nmsat.simulator.stalls import STREAM_CAUSE
from nmsat.simulator.streams import Streams
from nmsat.types import Method
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
