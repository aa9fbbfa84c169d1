"""Inference simulation: one FF pass (or one LLM prefill / decode step) on the configured
accelerator, against dense inference on the same hardware.

:func:`simulate_inference` compiles the pass with pre-compressed N:M weights
(:mod:`nmsat.dataflow.inference`), runs the tile program on the SimPy system model
(:func:`nmsat.simulator.system.run`), and returns an :class:`InferenceResult`: cycles,
seconds, tokens per second (LLMs), DRAM traffic split into compressed weights and KV-cache
reads, energy, the speedup over dense inference, and per layer the bytes moved, the
arithmetic intensity and the roofline classification (:mod:`nmsat.simulator.roofline`).

Dense baseline: the same workload, batch and hardware with dense weights and no
activation sparsity (``act_zero = none``): both sparsities are switched off.

Identical decoder layers
    An LLM's decoder layers are identical, so a decode or prefill step of L layers is
    simulated with 1, 2 and 3 layers (plus embeddings and head) and extended: the result
    is used only if the 1->2 and 2->3 increments of the total cycles are equal and the
    middle layer's attributed cycles equal that increment; otherwise (or with
    ``exact=True``) the whole program is simulated. Traffic, MACs and energy counts always
    come from the whole program. ``tests/test_inference_llm.py`` checks the extension
    equals the full simulation.

Energy (pJ, ``cfg.energy``): the training simulator's activity counts
(:func:`nmsat.simulator.api.activity`: MACs, buffer, register and DRAM bytes, vector-lane
operations) and static power; with ``act_zero`` gate or skip a layer's MACs count only
multiplies with a nonzero activation (MACs x density).
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from typing import Any

from nmsat.config import AcceleratorConfig, to_dict
from nmsat.dataflow.inference import ActDensity, compile_inference
from nmsat.dataflow.inference_workload import (
    InferenceOptions,
    InferenceWorkload,
    load,
    weight_byte_ratio,
)
from nmsat.dataflow.isa import Program
from nmsat.simulator import energy as en
from nmsat.simulator import system
from nmsat.simulator.inference_result import (
    InferenceResult,
    LayerRow,
    result_from_dict,
)
from nmsat.simulator.roofline import (
    Bound,
    LayerTraffic,
    Roof,
    attribution,
    layer_traffic,
    limiter_ratio,
    simulated_bound,
)
from nmsat.types import NM, ActZero
from nmsat.workloads import llm
from nmsat.workloads.layers import Workload


@dataclass
class _Run:
    total: int
    attributed: dict[str, int]  # layer name -> cycles
    stalls: dict[str, int]
    extended: bool


def _run_program(prog: Program, cfg: AcceleratorConfig) -> _Run:
    r = system.run(prog, cfg, record=False)
    wall = system.attribute_wall_time(r)
    per: dict[str, int] = {}
    for (layer, _phase), c in wall.items():
        per[layer] = per.get(layer, 0) + c
    stalls = {"memory": 0, "sore": 0, "vector": 0, "dependency": 0}
    for (_, _, cause), c in r.stall.get(system.ENGINE, {}).items():
        stalls[cause] = stalls.get(cause, 0) + c
    return _Run(r.total_cycles, per, stalls, False)


def _layer_index_name(spec: llm.DecoderSpec, i: int) -> str:
    return f"model.layers.{i}." if spec.hf_names == "llama" else f"h.{i}."


def _rename(name: str, s: llm.DecoderSpec, src: int, dst: int) -> str:
    pre = _layer_index_name(s, src)
    return _layer_index_name(s, dst) + name[len(pre):] if name.startswith(pre) else name


def _extend_counts(c: list[en.ActivityCounts], L: int) -> en.ActivityCounts | None:
    d = [c[i + 1].to_dict() for i in range(2)]
    base = [x.to_dict() for x in c]
    inc1 = {k: d[0][k] - base[0][k] for k in base[0]}
    inc2 = {k: d[1][k] - base[1][k] for k in base[0]}
    if inc1 != inc2 or any(v < 0 for v in inc2.values()):
        return None
    return en.ActivityCounts(**{k: base[2][k] + (L - 3) * inc2[k] for k in base[0]})


def _pass_llm(iw: InferenceWorkload, cfg: AcceleratorConfig, nm: NM, batch: int,
              density: ActDensity, compile_opts: dict) -> _Pass | None:
    """The identical-layer extension (module docstring) of a whole pass: timing from the
    1-, 2- and 3-layer runs, traffic and activity counts from the 3-layer program with its
    middle layer repeated. None when the increments differ (then simulate in full)."""
    s = iw.spec
    assert s is not None and iw.phase is not None
    L = s.layers
    if L <= 3:
        return None
    runs, progs, counts = [], [], []
    act = ActZero.parse(cfg.array.act_zero)
    for n in (1, 2, 3):
        sn = dataclasses.replace(s, layers=n)
        w = llm.workload(sn, iw.phase, batch, seq_len=iw.seq_len if iw.phase is
                         llm.LlmPhase.PREFILL else None, kv_len=iw.kv_len)
        _, prog = compile_inference(w, cfg, nm, None, density, **compile_opts)
        runs.append(_run_program(prog, cfg))
        progs.append((w, prog))
        counts.append(_counts(prog, w, density, act, cfg)[0])
    d1, d2 = runs[1].total - runs[0].total, runs[2].total - runs[1].total
    if d1 != d2:
        return None
    r3 = runs[2]
    p1 = _layer_index_name(s, 1)
    mid = sum(c for n, c in r3.attributed.items() if n.startswith(p1))
    if mid != d2:
        return None
    per: dict[str, int] = {}
    for name, c in r3.attributed.items():
        if name.startswith(p1):
            for i in range(1, L - 1):
                per[_rename(name, s, 1, i)] = c
        else:
            per[_rename(name, s, 2, L - 1)] = c
    total = r3.total + (L - 3) * d2
    if sum(per.values()) != total:
        return None
    stalls = {k: r3.stalls[k] + (L - 3) * (r3.stalls[k] - runs[1].stalls[k])
              for k in r3.stalls}
    extended = _extend_counts(counts, L)
    if extended is None:
        return None
    w3, prog3 = progs[2]
    operands = {}
    for name, o in _counts(prog3, w3, density, act, cfg)[1].items():
        if name.startswith(p1):
            operands.update({_rename(name, s, 1, i): o for i in range(1, L - 1)})
        else:
            operands[_rename(name, s, 2, L - 1)] = o
    kv = llm.kv_cache_layers(w3) if iw.phase is llm.LlmPhase.DECODE else ()
    traffic: list[LayerTraffic] = []
    for t in layer_traffic(prog3, cfg, kv):
        if t.name.startswith(p1):
            traffic.extend(dataclasses.replace(t, name=_rename(t.name, s, 1, i))
                           for i in range(1, L - 1))
        else:
            traffic.append(dataclasses.replace(t, name=_rename(t.name, s, 2, L - 1)))
    return _Pass(_Run(total, per, stalls, True), traffic, extended, operands)


def _counts(prog: Program, wl: Workload, density: ActDensity, act: ActZero,
            cfg: AcceleratorConfig) -> tuple[en.ActivityCounts, dict[str, dict]]:
    """Activity of the run by the simulator's counting rules (:func:`api.activity`); with
    ``act_zero`` gate or skip, a layer's multiplier-lane operations are scaled by its
    activation density (a zero activation gates its multiplier). Also per layer its
    buffer bytes and burst-rounded DRAM bytes by operand (``buffer``, ``dram``: activation,
    weight, output), as the training result's layers have them."""
    from nmsat.simulator import api

    attr = attribution(prog)
    per, _, _, dram_op = api.activity(prog, cfg, attr)
    dens = {layer.name: density.of(layer) for layer in wl.layers}
    total = en.ActivityCounts()
    operands: dict[str, dict] = {}
    for (layer, _phase), c in per.items():
        d = dens.get(layer, 1.0) if act is not ActZero.NONE else 1.0
        if d < 1.0:
            c = dataclasses.replace(c, macs=int(round(c.macs * d)))
        total = total + c
        o = operands.setdefault(layer, {"buffer": {"activation": 0, "weight": 0,
                                                   "output": 0}})
        o["counts"] = o.get("counts", en.ZERO_COUNTS) + c
        b = o["buffer"]
        b["activation"] += c.act_buffer_bytes
        b["weight"] += c.weight_buffer_bytes
        b["output"] += c.output_buffer_bytes
    for layer, d in dram_op.items():
        operands.setdefault(layer, {"buffer": {"activation": 0, "weight": 0, "output": 0}})
        operands[layer]["dram"] = dict(d)
    for o in operands.values():
        o.setdefault("dram", {"activation": 0, "weight": 0, "output": 0})
        o.setdefault("counts", en.ZERO_COUNTS)
    return total, operands


@dataclass
class _Pass:
    run: _Run
    traffic: list[LayerTraffic]
    counts: en.ActivityCounts
    operands: dict[str, dict] = field(default_factory=dict)  # _counts' per-layer bytes


def _simulate_pass(iw: InferenceWorkload, cfg: AcceleratorConfig, nm: NM,
                   density: ActDensity, opts: InferenceOptions,
                   layer_nm: tuple[tuple[str, NM], ...] = ()) -> _Pass:
    compile_opts: dict[str, Any] = {"interleave": opts.interleave,
                                    "offline_schedule": opts.offline_schedule,
                                    "dataflow": opts.dataflow}
    if layer_nm:
        compile_opts["layer_nm"] = layer_nm
    wl = iw.workload
    if iw.spec is not None and not opts.exact and not layer_nm:
        done = _pass_llm(iw, cfg, nm, wl.batch, density, compile_opts)
        if done is not None:
            return done
    _, prog = compile_inference(wl, cfg, nm, None, density, **compile_opts)
    run = _run_program(prog, cfg)
    kv = llm.kv_cache_layers(wl) if iw.phase is llm.LlmPhase.DECODE else ()
    traffic = layer_traffic(prog, cfg, kv)
    counts, operands = _counts(prog, wl, density, ActZero.parse(cfg.array.act_zero), cfg)
    return _Pass(run, traffic, counts, operands)


def simulate_patterns(spec: str | InferenceWorkload, cfg: AcceleratorConfig,
                      patterns, opts: InferenceOptions | None = None
                      ) -> dict[str, InferenceResult]:
    """:func:`simulate_inference` of ``spec`` for each N:M pattern in ``patterns`` (``opts``
    gives everything else), simulating the shared dense baseline once. Returns pattern
    (as given) -> result, each equal to its own :func:`simulate_inference` result."""
    opts = opts or InferenceOptions()
    iw = load(spec, opts) if isinstance(spec, str) else spec
    shared: dict = {}
    return {str(nm): simulate_inference(iw, cfg, dataclasses.replace(opts, nm=NM.parse(nm)),
                                        _baseline=shared)
            for nm in patterns}


def simulate_inference(spec: str | InferenceWorkload, cfg: AcceleratorConfig,
                       opts: InferenceOptions | None = None, *,
                       _baseline: dict | None = None) -> InferenceResult:
    """Simulate one inference pass of ``spec`` (see :func:`load`) and its dense baseline.

    Raises
    ------
    ValueError, NmsatError
        Bad options for the workload (the message names the option), an N:M pattern the
        array does not support, or buffers too small for a layer.
    """
    t0 = time.perf_counter()
    opts = opts or InferenceOptions()
    iw = load(spec, opts) if isinstance(spec, str) else spec
    wl = iw.workload
    nm = opts.nm
    act = ActZero.parse(cfg.array.act_zero)
    sparse = _simulate_pass(iw, cfg, nm, opts.density, opts, opts.layer_nm)
    dense_cfg = cfg if act is ActZero.NONE else cfg.replace(**{"array.act_zero": "none"})
    all_dense = nm.dense and all(p.dense for _, p in opts.layer_nm)
    if all_dense and act is ActZero.NONE:
        dense = sparse
    elif _baseline is not None and "dense" in _baseline:  # simulate_patterns: same baseline
        dense = _baseline["dense"]
    else:
        dense = _simulate_pass(iw, dense_cfg, NM(1, 1), ActDensity.dense(), opts)
    if _baseline is not None:
        _baseline["dense"] = dense
    roof = Roof.of(cfg, nm)
    secs = cfg.cycle_seconds
    dense_by_layer = dense.run.attributed
    dense_traffic_by = {t.name: t for t in dense.traffic}
    dense_roof = Roof.of(cfg, NM(1, 1))
    dens_of = {layer.name: opts.density.of(layer) for layer in wl.layers}
    er = en.report({(name, "ff"): (sparse.operands.get(name, {}).get("counts", en.ZERO_COUNTS),
                                   sparse.run.attributed.get(name, 0))
                    for name in sorted(set(sparse.run.attributed) | set(sparse.operands))}, cfg)
    energy = er.by_unit()
    rows = []
    traffic_by = {t.name: t for t in sparse.traffic}
    sched_macs = {layer.name: layer.macs(wl.batch) for layer in wl.layers}
    names = [layer.name for layer in wl.layers]
    for name in names:
        cyc = sparse.run.attributed.get(name, 0)
        t = traffic_by.get(name)
        if t is None and cyc == 0:
            continue
        t = t or LayerTraffic(name)
        dmacs = sched_macs.get(name, t.dense_macs)
        dcyc = dense_by_layer.get(name, 0)
        lroof = Roof.of(cfg, NM.parse(t.nm))
        dt = dense_traffic_by.get(name) or LayerTraffic(name)
        intensity = dmacs / t.dram_bytes if t.dram_bytes else math.inf
        bound = simulated_bound(t, lroof, cyc)
        rows.append(LayerRow(
            name=name, nm=t.nm, total_cycles=cyc, seconds=cyc * secs, macs=t.macs,
            dense_macs=dmacs, dram_bytes=t.dram_bytes, weight_bytes=t.weight_bytes,
            kv_cache_bytes=t.kv_bytes, engine_cycles=t.engine_cycles,
            dram_cycles=t.dram_cycles(lroof), intensity=intensity,
            bound=str(bound),
            ideal_bound=str(lroof.classify(intensity) if dmacs else t.bound(lroof)),
            act_density=dens_of.get(name, 1.0), dense_total_cycles=dcyc,
            speedup_vs_dense=dcyc / cyc if cyc else 1.0,
            dense_dram_bytes=dt.dram_bytes,
            dense_bound=str(simulated_bound(dt, dense_roof, dcyc)),
            buffer_bytes=dict(sparse.operands.get(name, {}).get("buffer", {})),
            dram_bytes_by_operand=dict(sparse.operands.get(name, {}).get("dram", {})),
            energy_pj=er.by_unit(name), peak_macs_per_cycle=lroof.peak_macs_per_cycle,
            array_fill=t.array_fill(lroof), dataflow=t.dataflow,
            limiter_ratio=limiter_ratio(t, lroof, cyc, bound)))
    total = sparse.run.total
    dense_total = dense.run.total
    tokens = iw.tokens
    seconds = total * secs
    dense_seconds = dense_total * secs
    peak = cfg.array.peak_macs_per_cycle
    macs = sum(t.macs for t in sparse.traffic)
    return InferenceResult(
        workload=wl.name, config=to_dict(cfg), phase=str(iw.phase) if iw.phase else None,
        nm=str(nm), batch=wl.batch, seq_len=iw.seq_len, kv_len=iw.kv_len,
        act_zero=str(act), act_density=opts.density.source, tokens=tokens,
        total_cycles=total, seconds=seconds, stall_cycles=sparse.run.stalls,
        utilization=macs / (total * peak) if total else 0.0, macs=macs,
        dense_macs=sum(sched_macs.values()),
        dram_bytes=sum(t.dram_bytes for t in sparse.traffic),
        weight_bytes=sum(t.weight_bytes for t in sparse.traffic),
        kv_cache_bytes=sum(t.kv_bytes for t in sparse.traffic),
        weight_byte_ratio=weight_byte_ratio(wl, nm, cfg, opts.layer_nm), energy_pj=energy,
        dense_total_cycles=dense_total,
        speedup_vs_dense=dense_total / total if total else 1.0,
        tokens_per_second=tokens / seconds if tokens and iw.spec is not None else None,
        dense_tokens_per_second=(tokens / dense_seconds if tokens and iw.spec is not None
                                 else None),
        roofline={"peak_macs_per_cycle": roof.peak_macs_per_cycle,
                  "dense_peak_macs_per_cycle": float(peak),
                  "dram_bytes_per_cycle": roof.dram_bytes_per_cycle, "ridge": roof.ridge},
        layers=tuple(rows), extended_layers=sparse.run.extended,
        options={"interleave": opts.interleave, "offline_schedule": opts.offline_schedule,
                 **({"layer_nm": {k: str(v) for k, v in opts.layer_nm}}
                    if opts.layer_nm else {}),
                 **({"dataflow": opts.dataflow} if opts.dataflow != "auto" else {})},
        counts=sparse.counts.to_dict(), energy_mode=er.mode,
        energy_by_kind_pj=er.by_kind(),
        simulate_seconds=time.perf_counter() - t0)


__all__ = [
    "Bound",
    "InferenceOptions",
    "InferenceResult",
    "InferenceWorkload",
    "LayerRow",
    "load",
    "result_from_dict",
    "simulate_inference",
    "simulate_patterns",
    "weight_byte_ratio",
]
