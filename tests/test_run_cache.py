"""The program/run cache of sweeps (``nmsat.simulator.run_cache``) is exact.

* every config field is classified (program, timing or result); a new field fails here;
* a field outside the program key leaves the compiled program identical, and a result
  field leaves the whole run (timing, activity) identical, for every alternative value;
* property: for random pairs of configs and options, a simulation that may reuse the
  first one's programs and runs gives the byte-identical result of an uncached one;
* a sweep run through the cache stores exactly what uncached evaluation gives.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nmsat import config as nmconfig
from nmsat.dataflow.compiler import CompileOptions, compile_workload
from nmsat.errors import NmsatError
from nmsat.simulator import api, run_cache, sweep, sweep_spec
from nmsat.simulator.run_cache import RunCache, classify, leaf_fields
from nmsat.types import NM, Method

WORKLOADS = ("mlp", "cnn")

# Alternative values per field on the `small` preset (others: see alternatives()).
ALTERNATIVES: dict[str, list[Any]] = {
    "name": ["small", "other"],
    "clock_mhz": [150.0, 300.0],
    "array.rows": [2, 3, 8],
    "array.cols": [2, 5, 8],
    "array.macs_per_pe": [2, 4],
    "array.act_window": [8, 16],
    "array.dataflows": [["os"], ["ws"], ["os", "ws"]],
    "array.acc_latency": [1, 2, 4],
    "array.act_zero": ["none", "gate", "skip"],
    "array.shadow_weights": [False, True],
    "array.weight_load_ports": [1, 2, 4],
    "numerics.dtype": ["fp16", "bf16", "int8"],
    "buffers.act_layout": ["fmap", "windows"],
    "dram.channels": [1, 2, 3],
    "dram.bytes_per_cycle": [8, 16, 64],
    "dram.latency_cycles": [1, 10, 40],
    "dram.burst_bytes": [32, 64],
    "dram.model": ["simple", "row_buffer"],
    "dram.dma": ["packed", "word_slots"],
    "dram.banks": [1, 4, 16],
    "dram.row_bytes": [1024, 8192],
    "dram.t_rp_cycles": [0, 3, 20],
    "dram.t_rcd_cycles": [0, 3, 20],
    "sore.lanes": [1, 4, 8],
    "sore.cycles_per_weight": [1, 2],
    "sore.pipeline_latency": [0, 4, 9],
    "weight_update.lanes": [1, 4, 16],
    "weight_update.pipeline_latency": [0, 8, 20],
    "weight_update.momentum": [0.0, 0.9],
}
for _b in ("activation", "weight", "output"):
    ALTERNATIVES.update({f"buffers.{_b}.kib": [16, 32, 64], f"buffers.{_b}.banks": [2, 4, 8],
                         f"buffers.{_b}.bank_bytes_per_cycle": [2, 16, 64],
                         f"buffers.{_b}.ports": [1, 2],
                         f"buffers.{_b}.double_buffered": [True, False]})

BASE = nmconfig.preset("small")


def alternatives(field: str, value: Any) -> list[Any]:
    """Values to try for ``field``: the table's, else a generic change of ``value`` (a new
    field is still perturbed: numbers doubled, booleans flipped)."""
    if field in ALTERNATIVES:
        return ALTERNATIVES[field]
    if isinstance(value, bool):
        return [value, not value]
    if isinstance(value, int | float):
        return [value, value * 2 if value else 1]
    return [value]


def with_changes(changes: dict[str, Any]) -> nmconfig.AcceleratorConfig | None:
    try:
        return BASE.replace(**changes)
    except NmsatError:
        return None


def run_parts(run: Any) -> tuple:
    """Everything of a system-model run that a result is assembled from."""
    t = run.timing
    return (run.program, run.wall, run.counts, run.macs, run.dense_macs, run.dram_operand,
            t.total_cycles, t.unit_end, t.busy, t.stall, t.engine_time, t.channel_busy,
            t.simulated_instructions)


def result_json(result: Any) -> str:
    return json.dumps(result.to_dict(events=False, timing=False), sort_keys=True)


def test_every_config_field_is_classified():
    """A new config field must be put in a stage's key (or shown irrelevant) before
    sweeps may cache across it."""
    for name in ("vcu1525", "small"):
        for field in leaf_fields(nmconfig.preset(name)):
            assert classify(field) in ("program", "timing", "result")
    assert not run_cache.PROGRAM_FIELDS & run_cache.TIMING_FIELDS
    assert not (run_cache.PROGRAM_FIELDS | run_cache.TIMING_FIELDS) & run_cache.RESULT_FIELDS
    with pytest.raises(run_cache.UnclassifiedField):
        classify("array.new_knob")


@pytest.mark.parametrize("workload", WORKLOADS)
def test_fields_outside_a_key_do_not_change_that_stage(workload):
    wl = api.load_workload(workload, batch=4)
    opts = api.SimOptions(events=False)
    copts = CompileOptions()
    base_prog = compile_workload(wl.workload, BASE, copts)
    base_run = run_parts(api._run(wl.workload, BASE, opts, False))
    checked = 0
    for field, value in leaf_fields(BASE).items():
        stage = classify(field)
        if stage == "program" or field.endswith(".source"):
            continue
        valid = 0
        for alt in alternatives(field, value):
            cfg = with_changes({field: alt})
            if cfg is None:
                continue
            valid += 1
            assert compile_workload(wl.workload, cfg, copts) == base_prog, (field, alt)
            if stage == "result":
                assert run_parts(api._run(wl.workload, cfg, opts, False)) == base_run, \
                    (field, alt)
        assert valid >= 1, f"no valid alternative for {field}"
        checked += 1
    assert checked >= len(run_cache.TIMING_FIELDS) + len(run_cache.RESULT_FIELDS)


FIELDS = sorted(f for f in leaf_fields(BASE) if not f.endswith(".source"))


@st.composite
def changes(draw, n: int) -> dict[str, Any]:
    fields = draw(st.lists(st.sampled_from(FIELDS), min_size=0, max_size=n, unique=True))
    base = leaf_fields(BASE)
    return {f: draw(st.sampled_from(alternatives(f, base[f]))) for f in fields}


@st.composite
def config_pairs(draw):
    first = draw(changes(4))
    # the second differs from the first in a few fields: often only timing or result
    # fields, so the cache is hit; sometimes in program fields too
    only_late = draw(st.booleans())
    pool = [f for f in FIELDS if not only_late or classify(f) != "program"]
    extra_fields = draw(st.lists(st.sampled_from(pool), max_size=3, unique=True))
    base = leaf_fields(BASE)
    second = dict(first)
    for f in extra_fields:
        second[f] = draw(st.sampled_from(alternatives(f, base[f])))
    return first, second


OPTIONS = st.builds(
    lambda method, nm, mode, interleave: api.SimOptions.create(
        method, nm, mode, interleave=interleave, events=False),
    st.sampled_from(["bdwp", "srste", "dense"]), st.sampled_from(["2:4", "2:8", "1:4"]),
    st.sampled_from(["train", "inference"]), st.booleans())


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pair=config_pairs(), workload=st.sampled_from(WORKLOADS), opts=st.tuples(OPTIONS, OPTIONS))
def test_cached_results_are_byte_identical_to_uncached(pair, workload, opts):
    cfgs = [with_changes(c) for c in pair]
    wl = sweep._workload(workload, 4, None)
    cache = RunCache()
    for cfg, opt in zip(cfgs, opts):
        if cfg is None:
            continue
        try:
            uncached = result_json(api.simulate(wl, cfg, opt))
        except NmsatError as e:  # the pattern or a tile does not fit: same error cached
            with pytest.raises(type(e)):
                api.simulate(wl, cfg, opt, cache=cache, workload_key=(workload, 4, None))
            continue
        cached = result_json(api.simulate(wl, cfg, opt, cache=cache,
                                          workload_key=(workload, 4, None)))
        assert cached == uncached


SPEC = """
name = "cache"
base = "small"
workloads = ["mlp", "cnn"]
[options]
batch = 4
[axes]
"dram.latency_cycles" = [10, 40]
"sore.lanes" = [2, 4]
"clock_mhz" = [100.0, 200.0]
method = ["srste", "bdwp"]
nm = ["2:4", "2:8"]
"""


def test_sweep_through_the_cache_stores_what_uncached_evaluation_gives(tmp_path):
    spec = sweep_spec.loads(SPEC, "toml")
    store = tmp_path / "s.sqlite"
    sweep._CACHE = None
    with sweep.DaskCluster(workers=1) as cluster:
        sweep.run(sweep.plan(spec, store, False), store, cluster)
    stored = {r["key"]: r for r in sweep.export_rows(store)}
    points = spec.points()
    assert len(stored) == len(points)
    groups = sweep.group_points(points)
    assert len(groups) < len(points)  # points do share tasks
    cache = sweep.worker_cache()
    for pt in points:
        cache.clear()  # every point from scratch
        record = sweep.evaluate_point(sweep.PointTask.of(pt))
        row = stored[pt.key]
        assert record["status"] == row["status"] == "ok"
        for col in (*sweep.METRICS, *sweep.AREA):
            assert record.get(col) == row[col], col
        assert json.loads(record["result"]) == row["result"]


def test_a_group_shares_programs_and_the_dense_baseline():
    points = sweep_spec.loads(SPEC, "toml").points()
    group = next(g for g in sweep.group_points(points) if len(g) == sweep.GROUP_POINTS)
    sweep._CACHE = RunCache()
    for pt in group:
        sweep.evaluate_point(sweep.PointTask.of(pt))
    cache = sweep.worker_cache()
    # GROUP_POINTS points of one workload and hardware program: one dense program, one per pattern
    # and method; the clock and SORE lanes of a group never force a recompile
    assert cache.misses["program"] <= 5
    assert cache.hits["run"] >= 1


@pytest.mark.parametrize("workload", WORKLOADS)
@pytest.mark.parametrize("method,mode", [("dense", "train"), ("bdwp", "inference"),
                                         ("srste", "inference")])
def test_programs_without_an_instruction_kind_ignore_its_unit_fields(workload, method, mode):
    """A run's key leaves out the fields of units its program has no instruction for
    (run_cache.UNIT_TIMING_FIELDS): every alternative value of those fields gives the
    identical run, and the keys agree."""
    from nmsat.dataflow import isa

    for kind in run_cache.UNIT_TIMING_FIELDS:
        assert isinstance(getattr(isa, kind), type)  # a real instruction class
    wl = api.load_workload(workload, batch=4)
    opts = api.SimOptions.create(method, "2:4", mode, events=False)
    base_run = api._run(wl.workload, BASE, opts, False)
    dropped = run_cache.unread_timing_prefixes(base_run.program)
    assert dropped == ("sore.",)
    base_key = run_cache.run_key((), BASE, False, base_run.program)
    checked = 0
    for field, value in leaf_fields(BASE).items():
        if not field.startswith(dropped) or field.endswith(".source"):
            continue
        for alt in alternatives(field, value):
            cfg = with_changes({field: alt})
            if cfg is None:
                continue
            run = api._run(wl.workload, cfg, opts, False)
            assert run_parts(run) == run_parts(base_run), (field, alt)
            assert run_cache.run_key((), cfg, False, run.program) == base_key
            checked += 1
    assert checked >= 3


def test_a_sparse_training_program_keeps_its_sore_fields():
    wl = api.load_workload("mlp", batch=4)
    run = api._run(wl.workload, BASE, api.SimOptions(events=False), False)
    assert run_cache.unread_timing_prefixes(run.program) == ()
    other = BASE.replace(**{"sore.lanes": BASE.sore.lanes * 2})
    assert (run_cache.run_key((), BASE, False, run.program)
            != run_cache.run_key((), other, False, run.program))


@pytest.mark.parametrize("workload", WORKLOADS)
def test_cycle_fields_reach_a_run_only_through_the_unit_cycles(workload, monkeypatch):
    """run_cache.CYCLE_FIELDS: a run on a config with any value of one of them, given the
    base config's instruction cycles, is the base run (so the system model and the
    activity read them only through the cycles); and a run's key changes exactly when
    the unit instructions' cycles do."""
    from nmsat.dataflow.memory import memory_model
    from nmsat.simulator import system, units

    assert run_cache.CYCLE_FIELDS <= run_cache.TIMING_FIELDS
    wl = api.load_workload(workload, batch=4)
    base_fields = leaf_fields(BASE)
    checked = same_cycles = 0
    for method in ("bdwp", "dense"):
        copts = CompileOptions(method=Method.parse(method), nm=NM.parse("2:4"))
        prog = compile_workload(wl.workload, BASE, copts)
        base_run = run_parts(api._timed(prog, BASE, False))
        base_cycles = units.instruction_cycles(prog.instructions, BASE, memory_model(BASE))
        base_units = units.unit_cycles(prog.instructions, BASE, memory_model(BASE))
        base_key = run_cache.run_key(("p",), BASE, False, prog)
        for field in sorted(run_cache.CYCLE_FIELDS):
            for alt in alternatives(field, base_fields[field]):
                cfg = with_changes({field: alt})
                if cfg is None:
                    continue
                with monkeypatch.context() as m:
                    m.setattr(system, "instruction_cycles",
                              lambda *_, c=tuple(base_cycles): list(c))
                    assert run_parts(api._timed(prog, cfg, False)) == base_run, (field, alt)
                same = units.unit_cycles(prog.instructions, cfg, memory_model(cfg)) == base_units
                assert (run_cache.run_key(("p",), cfg, False, prog) == base_key) == same
                checked += 1
                same_cycles += same
    assert checked >= 12 and same_cycles >= 1


def test_equal_unit_cycles_share_a_run():
    """Where the vector engine streams at the DRAM's rate, two lane counts give equal unit
    cycles, one run key, and (simulated uncached) identical runs."""
    from nmsat.dataflow.memory import memory_model
    from nmsat.simulator import units

    wl = api.load_workload("cnn", batch=4)
    slow = BASE.replace(**{"dram.channels": 1, "dram.bytes_per_cycle": 8})
    opts = api.SimOptions(events=False)
    runs = {}
    for lanes in (16, 32, 64):
        cfg = slow.replace(**{"weight_update.lanes": lanes})
        run = api._run(wl.workload, cfg, opts, False)
        key = run_cache.run_key(("p",), cfg, False, run.program)
        runs[lanes] = (key, units.unit_cycles(run.program.instructions, cfg, memory_model(cfg)),
                       run_parts(run))
    pairs = [(a, b) for a in runs for b in runs if a < b and runs[a][0] == runs[b][0]]
    assert pairs, "no two lane counts with equal unit cycles: choose a slower DRAM"
    for a, b in pairs:
        assert runs[a][1] == runs[b][1]
        assert runs[a][2] == runs[b][2]


def _assert_immutable(obj: Any, path: str) -> None:
    import dataclasses
    import enum

    if dataclasses.is_dataclass(obj):
        assert type(obj).__dataclass_params__.frozen, f"{path}: {type(obj).__name__} not frozen"
        for f in dataclasses.fields(obj):
            _assert_immutable(getattr(obj, f.name), f"{path}.{f.name}")
    elif isinstance(obj, tuple | frozenset):
        for i, v in enumerate(obj):
            _assert_immutable(v, f"{path}[{i}]")
    else:
        assert obj is None or isinstance(obj, int | float | str | bytes | enum.Enum), \
            f"{path}: {type(obj).__name__} is mutable"


@pytest.mark.parametrize("preset", sorted(nmconfig.PRESETS))
def test_configs_are_immutable_so_their_projections_can_be_memoised(preset):
    # run_cache memoises a config's key projections on the config object: sound only
    # because nothing in a config can change after it is made
    _assert_immutable(nmconfig.PRESETS[preset], preset)


@settings(max_examples=60, deadline=None)
@given(changes(5))
def test_memoised_projections_equal_fresh_ones(ch):
    cfg = with_changes(ch)
    if cfg is None:
        return
    for _ in range(2):  # the first call fills the memo, the second reads it
        for stage in ("program", "timing", "result"):
            fresh = json.dumps({k: v for k, v in leaf_fields(cfg).items()
                                if classify(k) == stage}, sort_keys=True, separators=(",", ":"))
            assert run_cache._projection(cfg, stage) == fresh
    twin = nmconfig.from_dict(nmconfig.to_dict(cfg))  # an equal config, no memo yet
    assert run_cache.program_key("w", twin, "o") == run_cache.program_key("w", cfg, "o")
    assert run_cache.run_key(("k",), twin, False) == run_cache.run_key(("k",), cfg, False)
