"""The compiler's memo of tiling searches (``offline_schedule(memo=...)``) is exact.

* the key is complete: over zoo workloads, methods, patterns, modes and options on several
  configs, every GEMM task searched on its own (no memo, no other task in the program)
  gets the one tiling its :func:`~nmsat.dataflow.compiler.tiling_key` names, so a memo
  can never hand a task another task's tiling;
* property: compiling random sequences of workloads and options on one config through a
  shared memo gives programs equal to compiling each alone.
"""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nmsat import config as nmconfig
from nmsat.dataflow.compiler import (
    CompileOptions,
    GemmTask,
    Lowered,
    compile_workload,
    lower,
    offline_schedule,
    tiling_key,
)
from nmsat.errors import NmsatError
from nmsat.simulator import sweep

CONFIGS = {
    "small": nmconfig.preset("small"),
    "small-ws-int8": nmconfig.preset("small").replace(**{"array.dataflows": ["ws"],
                                                         "numerics.dtype": "int8"}),
    "vcu1525-16k": nmconfig.preset("vcu1525").replace(**{"buffers.weight.kib": 16,
                                                         "buffers.activation.kib": 32}),
}

OPTIONS = [CompileOptions(method=m, nm=nm, mode=mode, interleave=il, offline_schedule=off,
                          engine_words=ew)
           for m in ("bdwp", "srste", "dense") for nm in ("2:4", "2:8")
           for mode in ("train", "inference") for il in (True, False)
           for off in (True, False) for ew in (True, False)
           if not (m == "dense" and nm == "2:8")]


def _alone(low: Lowered, i: int, cfg, opts: CompileOptions):
    """The tiling of task ``i`` searched in a program holding only that task."""
    one = Lowered(low.tensors, low.layers, [low.tasks[i]])
    offline_schedule(one, cfg, opts)
    return one.tilings[0]


@pytest.mark.parametrize("cfg_name", sorted(CONFIGS))
def test_equal_keys_mean_equal_tilings(cfg_name):
    cfg = CONFIGS[cfg_name]
    seen: dict[tuple, object] = {}
    shared = 0
    for workload in ("mlp", "cnn", "resnet18"):
        wl = sweep._workload(workload, 2, None).workload
        for opts in OPTIONS[:: 3 if workload == "resnet18" else 1]:
            low = lower(wl, cfg, opts)
            for i, task in enumerate(low.tasks):
                if not isinstance(task, GemmTask):
                    continue
                try:
                    tiling = _alone(low, i, cfg, opts)
                except NmsatError:
                    continue  # the task's minimum tile does not fit this config
                key = tiling_key(task, low, opts)
                if key in seen:
                    shared += 1
                    assert seen[key] == tiling, (workload, opts, task)
                seen[key] = tiling
    assert shared > len(seen)  # the memo has something to share


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cfg_name=st.sampled_from(sorted(CONFIGS)),
       runs=st.lists(st.tuples(st.sampled_from(["mlp", "cnn"]), st.sampled_from(OPTIONS)),
                     min_size=2, max_size=6))
def test_programs_through_a_shared_memo_equal_programs_alone(cfg_name, runs):
    cfg = CONFIGS[cfg_name]
    memo: dict = {}
    for workload, opts in runs:
        wl = sweep._workload(workload, 4, None).workload
        try:
            alone = compile_workload(wl, cfg, opts)
        except NmsatError as e:
            with pytest.raises(type(e)):
                compile_workload(wl, cfg, opts, memo)
            continue
        assert compile_workload(wl, cfg, opts, memo) == alone
        # and the memo never changes a program compiled after it was filled
        assert compile_workload(wl, cfg, dataclasses.replace(opts), memo) == alone
