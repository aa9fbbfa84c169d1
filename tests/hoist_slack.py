"""How far weight-load hoisting (``nmsat.dataflow.hoist``) may move DRAM time between
neighbouring layers' attributed cycles: shared by the inference memory tests."""

from __future__ import annotations

import dataclasses

from nmsat.dataflow.hoist import hoisted_loads
from nmsat.dataflow.inference import ActDensity, compile_inference
from nmsat.simulator.inference import InferenceOptions, load
from nmsat.workloads import llm

_HOISTS: dict = {}


def hoist_cycles(name: str, nm: str, cfg, kv: int = 16) -> float:
    """The longest DRAM time (cycles) of a weight block issued ahead of its layer's
    barrier (``nmsat.dataflow.hoist``) in the batch-1 program of ``name`` at ``nm`` (an
    LLM's decode step, three decoder layers: the same shapes). A layer's attributed time
    can lose its own first block's transfer to the previous layer's and gain the next
    layer's."""
    key = (name, nm, cfg.name, kv)
    if key not in _HOISTS:
        if llm.is_llm(name):
            s = llm.spec(name)
            w = llm.workload(dataclasses.replace(s, layers=min(3, s.layers)), "decode", 1,
                             kv_len=kv)
        else:
            w = load(name, InferenceOptions(batch=1)).workload
        _, prog = compile_inference(w, cfg, nm, None, ActDensity.dense())
        _HOISTS[key] = max((ld.bytes for ld in hoisted_loads(prog)), default=0) \
            / cfg.dram.total_bytes_per_cycle
    return _HOISTS[key]


def ratio_slack(name: str, nm: str, cfg, ratio: float, kv: int = 16) -> float:
    """How far a memory-bound layer's dense time may pass ``ratio`` x its N:M time: the
    N:M layer's window can miss its own hoisted block (``h``, N:M), the dense one can hold
    the next layer's (``h``, dense): dense <= ratio (N:M + h_nm) + h_dense."""
    return ratio * hoist_cycles(name, nm, cfg, kv) + hoist_cycles(name, "1:1", cfg, kv)
