"""Inference sweeps: speedup over dense per N:M pattern against batch size, prefill
sequence length or decode KV-cache length, simulated point by point.

The data these functions return is what :mod:`nmsat.reports.inference_figures` draws
(``speedup_batch_figure``, ``speedup_seq_figure``); the figures never simulate. A sweep
dict has ``workload``, ``axis``, ``values``, ``config`` and per pattern ``speedup`` (one
per value), ``byte_ratio``, ``peak_ratio``, ``bound`` and ``ideal_bound`` (one per value,
:func:`majority_bound`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from nmsat.config import AcceleratorConfig
from nmsat.types import NM

__all__ = ["BATCHES", "SEQ_LENS", "majority_bound", "simulate_sweeps", "speedup_vs_batch",
           "speedup_vs_seq_len"]


def _sweep(spec: str, cfg: AcceleratorConfig, patterns: Sequence[str], axis: str,
           values: Sequence[int], fixed: dict[str, Any]) -> dict[str, Any]:
    from nmsat.dataflow.inference_workload import InferenceOptions
    from nmsat.simulator.inference import simulate_patterns

    out: dict[str, Any] = {"workload": spec, "axis": axis, "values": list(values),
                           "speedup": {}, "byte_ratio": {}, "peak_ratio": {},
                           "bound": {}, "ideal_bound": {}, "config": cfg.name}
    runs = {v: simulate_patterns(spec, cfg, patterns, InferenceOptions(**{**fixed, axis: v}))
            for v in values}
    for nm in patterns:
        rs = [runs[v][str(nm)] for v in values]
        out["speedup"][nm] = [r.speedup_vs_dense for r in rs]
        out["byte_ratio"][nm] = rs[0].weight_byte_ratio
        out["peak_ratio"][nm] = cfg.array.sparse_speedup(NM.parse(nm))
        out["bound"][nm] = [majority_bound(r) for r in rs]
        out["ideal_bound"][nm] = [majority_bound(r, "ideal_bound") for r in rs]
    return out


def majority_bound(result, which: str = "bound") -> str:
    """``memory`` when GEMM layers whose ``which`` (``bound``: on the hardware;
    ``ideal_bound``: the textbook roofline) is memory take more than half of ``result``'s
    GEMM cycles; else the array side: ``array`` when array-bound layers take more of the
    cycles than compute-bound ones, else ``compute``."""
    gemm = [x for x in result.layers if x.dense_macs]
    by: dict[str, int] = {}
    for x in gemm:
        by[getattr(x, which)] = by.get(getattr(x, which), 0) + x.total_cycles
    if 2 * by.get("memory", 0) > sum(by.values()):
        return "memory"
    return "array" if by.get("array", 0) > by.get("compute", 0) else "compute"


def speedup_vs_batch(spec: str, cfg: AcceleratorConfig, patterns: Sequence[str],
                     batches: Sequence[int], **fixed: Any) -> dict[str, Any]:
    """Speedup over dense inference per pattern at each batch size (``fixed``: further
    :class:`~nmsat.simulator.inference.InferenceOptions`, such as phase and kv_len).
    ``bound[nm][i]`` says whether most GEMM cycles were memory- or compute-bound."""
    return _sweep(spec, cfg, patterns, "batch", batches, fixed)


def speedup_vs_seq_len(spec: str, cfg: AcceleratorConfig, patterns: Sequence[str],
                       lengths: Sequence[int], axis: str = "seq_len",
                       **fixed: Any) -> dict[str, Any]:
    """Speedup per pattern against prefill ``seq_len`` (or decode ``kv_len``)."""
    if axis not in ("seq_len", "kv_len"):
        raise ValueError(f"axis must be seq_len or kv_len, not {axis!r}")
    return _sweep(spec, cfg, patterns, axis, lengths, fixed)


BATCHES = (1, 4, 16, 64, 256)
"""Batch sizes of ``nmsat simulate --mode inference --report`` (plus the run's own)."""
SEQ_LENS = (16, 64, 256, 1024, 4096)
"""Prefill sequence lengths (decode: KV-cache lengths) of the report, up to the model's
positions (plus the run's own)."""


def simulate_sweeps(spec: str, cfg: AcceleratorConfig, result, opts) -> list[dict[str, Any]]:
    """The report's sweeps for the run ``result`` of ``spec`` with ``opts``
    (:class:`~nmsat.simulator.inference.InferenceOptions`): speedup against batch size
    for every pattern the array supports (``array.nm_patterns``), and for language models
    against prefill sequence length (decode: KV-cache length), other settings as in the
    run. A sweep is simulated (dense baseline once per point)."""
    from nmsat.workloads import llm, zoo

    patterns = list(cfg.array.nm_patterns)
    fixed = {f.name: getattr(opts, f.name) for f in dataclasses.fields(opts)
             if f.name not in ("nm", "batch", "layer_nm")}
    if opts.layer_nm:
        fixed["layer_nm"] = ()  # a sweep compares uniform patterns
    out = [speedup_vs_batch(spec, cfg, patterns, sorted({*BATCHES, result.batch}),
                            **{k: v for k, v in fixed.items()})]
    max_pos = None
    if llm.is_llm(spec):
        max_pos = llm.spec(spec).max_positions
    elif spec in zoo.names() and zoo.model(spec).seq_len is not None:
        max_pos = zoo.model(spec).seq_len
    if max_pos is not None:
        axis = "kv_len" if result.kv_len is not None else "seq_len"
        own = getattr(result, axis)
        values = sorted({v for v in SEQ_LENS if v <= max_pos} | ({own} if own else set()))
        if len(values) >= 2:
            rest = {k: v for k, v in fixed.items() if k not in ("seq_len", "kv_len")}
            out.append(speedup_vs_seq_len(spec, cfg, patterns, values, axis=axis,
                                          batch=result.batch, **rest))
    return out
