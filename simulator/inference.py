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
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nmsat.dataflow.inference import ActDensity, compile_inference
from nmsat.dataflow.isa import Program
from nmsat.simulator import energy as en
from nmsat.simulator import system
from nmsat.simulator.roofline import (
    Bound,
    LayerTraffic,
    Roof,
    attribution,
    layer_traffic,
    simulated_bound,
)
from nmsat.workloads import llm
from nmsat.workloads.layers import Conv2d, Linear, Workload

from nmsat import __version__
from nmsat.config import AcceleratorConfig, to_dict
from nmsat.reference import compressed_bytes, dense_bytes
from nmsat.types import NM, ActZero, DType, Method, Phase


@dataclass(frozen=True)
class InferenceOptions:
    """What to simulate. ``phase`` is for LLM workloads (``prefill`` or ``decode``);
    ``seq_len`` is the prompt length (prefill, and the zoo's language models), ``kv_len``
    the KV-cache positions of a decode step."""

    nm: NM = NM(2, 4)
    batch: int = 1
    phase: llm.LlmPhase | None = None
    seq_len: int | None = None
    kv_len: int | None = None
    density: ActDensity = field(default_factory=ActDensity.dense)
    interleave: bool = True
    offline_schedule: bool = True
    exact: bool = False  # simulate every decoder layer (no identical-layer extension)
    layer_nm: tuple[tuple[str, NM], ...] = ()
    """Per-layer patterns that replace ``nm`` for the named layers (``1:1``: dense), as a
    training trace or a SCALE-Sim v3 ``Sparsity`` column fixes them (the CLI takes them
    from the workload file unless ``--nm`` is given)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "nm", NM.parse(self.nm))
        object.__setattr__(self, "layer_nm", tuple(
            (str(k), NM.parse(v)) for k, v in dict(self.layer_nm).items()))
        if self.phase is not None:
            object.__setattr__(self, "phase", llm.LlmPhase.parse(self.phase))
        for f in ("batch",):
            v = getattr(self, f)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"batch must be a positive integer, not {v!r}")
        for f in ("seq_len", "kv_len"):
            v = getattr(self, f)
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
                raise ValueError(f"{f} must be a positive integer, not {v!r}")
        if not isinstance(self.density, ActDensity):
            raise ValueError(f"density must be an ActDensity, not {self.density!r}")


@dataclass(frozen=True)
class LayerRow:
    """One layer of an inference result."""

    name: str
    nm: str
    total_cycles: int
    seconds: float
    macs: int
    dense_macs: int
    dram_bytes: int
    weight_bytes: int
    kv_cache_bytes: int
    engine_cycles: int
    dram_cycles: float
    intensity: float
    bound: str
    ideal_bound: str
    act_density: float
    dense_total_cycles: int
    speedup_vs_dense: float
    dense_dram_bytes: int = 0  # the dense baseline's DRAM bytes for this layer
    dense_bound: str = ""  # the dense baseline's ``bound`` for this layer
    buffer_bytes: dict[str, int] = field(default_factory=dict)  # activation, weight, output
    dram_bytes_by_operand: dict[str, int] = field(default_factory=dict)  # burst-rounded

    @property
    def byte_ratio(self) -> float:
        """Dense over N:M DRAM bytes this layer really moved (1 without traffic)."""
        return self.dense_dram_bytes / self.dram_bytes if self.dram_bytes else 1.0

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        if math.isinf(self.intensity):
            d["intensity"] = None  # a layer without DRAM traffic
        return d


@dataclass(frozen=True)
class InferenceResult:
    """The result of one inference simulation (see the module docstring)."""

    workload: str
    config: dict[str, Any]
    phase: str | None
    nm: str
    batch: int
    seq_len: int | None
    kv_len: int | None
    act_zero: str
    act_density: str
    tokens: int
    total_cycles: int
    seconds: float
    stall_cycles: dict[str, int]
    utilization: float
    macs: int
    dense_macs: int
    dram_bytes: int
    weight_bytes: int
    kv_cache_bytes: int
    weight_byte_ratio: float
    energy_pj: dict[str, float]
    dense_total_cycles: int
    speedup_vs_dense: float
    tokens_per_second: float | None
    dense_tokens_per_second: float | None
    roofline: dict[str, float]
    layers: tuple[LayerRow, ...]
    extended_layers: bool
    options: dict[str, Any] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    simulate_seconds: float | None = field(default=None, compare=False)

    @property
    def bytes_per_layer(self) -> dict[str, int]:
        return {r.name: r.dram_bytes for r in self.layers}

    def to_dict(self, *, timing: bool = False) -> dict[str, Any]:
        """Plain data for JSON: the training result's fields that apply to inference
        (``phase_cycles`` has only ``ff``), plus ``tokens_per_second``,
        ``bytes_per_layer`` and per layer ``bound``."""
        peak = self.config["array"]["rows"] * self.config["array"]["cols"] * \
            self.config["array"]["macs_per_pe"]
        out: dict[str, Any] = {
            "nmsat_version": __version__,
            "workload": self.workload,
            "mode": "inference",
            "method": "inference",
            "phase": self.phase,
            "options": dict(self.options),
            "nm": self.nm,
            "batch": self.batch,
            "seq_len": self.seq_len,
            "kv_len": self.kv_len,
            "act_zero": self.act_zero,
            "act_density": self.act_density,
            "tokens": self.tokens,
            "total_cycles": self.total_cycles,
            "seconds": self.seconds,
            "phase_cycles": {"ff": self.total_cycles, "bp": 0, "wg": 0, "wu": 0, "sore": 0},
            "stall_cycles": dict(self.stall_cycles),
            "utilization": self.utilization,
            "effective_utilization": (self.dense_macs / (self.total_cycles * peak)
                                      if self.total_cycles else 0.0),
            "macs": self.macs,
            "dense_macs": self.dense_macs,
            "dram_bytes": self.dram_bytes,
            "weight_bytes": self.weight_bytes,
            "kv_cache_bytes": self.kv_cache_bytes,
            "weight_byte_ratio": self.weight_byte_ratio,
            "energy_pj": dict(self.energy_pj),
            "counts": dict(self.counts),
            "dense_total_cycles": self.dense_total_cycles,
            "speedup_vs_dense": self.speedup_vs_dense,
            "tokens_per_second": self.tokens_per_second,
            "dense_tokens_per_second": self.dense_tokens_per_second,
            "roofline": dict(self.roofline),
            "bytes_per_layer": self.bytes_per_layer,
            "layers": [r.to_dict() for r in self.layers],
            "extended_layers": self.extended_layers,
            "config": self.config,
        }
        if timing and self.simulate_seconds is not None:
            out["simulate_seconds"] = self.simulate_seconds
        return out

    def to_json(self, *, timing: bool = False) -> str:
        return json.dumps(self.to_dict(timing=timing), indent=1, allow_nan=False) + "\n"


def result_from_dict(data: dict[str, Any]) -> InferenceResult:
    """The :class:`InferenceResult` of :meth:`InferenceResult.to_dict` (a ``--json``
    file of ``nmsat simulate --mode inference``). Checks what the report reads: raises
    ``KeyError`` for a missing field and ``ValueError`` naming a malformed one."""
    if not isinstance(data, dict) or data.get("mode") != "inference":
        raise ValueError("not an inference result (mode is not 'inference')")

    def num(where: str, v: Any, *, integer: bool = False, optional: bool = False) -> Any:
        if v is None and optional:
            return None
        if isinstance(v, bool) or not isinstance(v, (int, float)) or \
                (integer and not isinstance(v, int)) or not math.isfinite(v) or v < 0:
            kind = "an integer" if integer else "a finite number"
            raise ValueError(f"{where} must be {kind} >= 0, not {v!r}")
        return v

    def text(where: str, v: Any, *, optional: bool = False) -> Any:
        if v is None and optional:
            return None
        if not isinstance(v, str):
            raise ValueError(f"{where} must be a string, not {v!r}")
        return v

    def obj(where: str, v: Any) -> dict:
        if not isinstance(v, dict):
            raise ValueError(f"{where} must be an object, not {v!r}")
        return v

    ints = ("batch", "tokens", "total_cycles", "macs", "dense_macs", "dram_bytes",
            "weight_bytes", "kv_cache_bytes", "dense_total_cycles")
    floats = ("seconds", "utilization", "weight_byte_ratio", "speedup_vs_dense")
    kw: dict[str, Any] = {k: num(k, data[k], integer=True) for k in ints}
    kw.update({k: num(k, data[k]) for k in floats})
    if kw["total_cycles"] == 0:
        raise ValueError("total_cycles must be positive, not 0")
    for k in ("workload", "nm", "act_zero", "act_density"):
        kw[k] = text(k, data[k])
    kw["phase"] = text("phase", data["phase"], optional=True)
    for k in ("seq_len", "kv_len"):
        kw[k] = num(k, data[k], integer=True, optional=True)
    for k in ("tokens_per_second", "dense_tokens_per_second"):
        kw[k] = num(k, data[k], optional=True)
    kw["config"] = obj("config", data["config"])
    arr = obj("config.array", kw["config"].get("array"))
    for k in ("rows", "cols", "macs_per_pe"):
        num(f"config.array.{k}", arr.get(k), integer=True)
    kw["options"] = obj("options", data.get("options", {}))
    kw["stall_cycles"] = {k: num(f"stall_cycles.{k}", v, integer=True)
                          for k, v in obj("stall_cycles", data["stall_cycles"]).items()}
    kw["energy_pj"] = {k: num(f"energy_pj.{k}", v)
                       for k, v in obj("energy_pj", data["energy_pj"]).items()}
    kw["counts"] = dict(obj("counts", data.get("counts", {})))
    kw["roofline"] = {k: num(f"roofline.{k}", data["roofline"][k])
                      for k in ("peak_macs_per_cycle", "dense_peak_macs_per_cycle",
                                "dram_bytes_per_cycle", "ridge")}
    kw["extended_layers"] = bool(data.get("extended_layers", False))
    if not isinstance(data["layers"], list):
        raise ValueError(f"layers must be a list, not {data['layers']!r}")
    rows = []
    bounds = {str(b) for b in Bound}
    for i, x in enumerate(data["layers"]):
        w = f"layers[{i}]"
        obj(w, x)
        row: dict[str, Any] = {}
        for f in dataclasses.fields(LayerRow):
            if f.name not in x:
                if f.default is dataclasses.MISSING:
                    raise KeyError(f"{w}.{f.name}")
                continue
            v = x[f.name]
            if f.name in ("name", "nm"):
                v = text(f"{w}.{f.name}", v)
            elif f.name in ("bound", "ideal_bound", "dense_bound"):
                if v not in bounds and not (f.name == "dense_bound" and v == ""):
                    raise ValueError(f"{w}.{f.name} must be one of {sorted(bounds)}, "
                                     f"not {v!r}")
            elif f.name == "intensity":
                v = math.inf if v is None else num(f"{w}.intensity", v)
            elif f.name in ("buffer_bytes", "dram_bytes_by_operand"):
                v = {k: num(f"{w}.{f.name}.{k}", n, integer=True)
                     for k, n in obj(f"{w}.{f.name}", v).items()}
            else:
                v = num(f"{w}.{f.name}", v, integer=f.type in (int, "int"))
            row[f.name] = v
        rows.append(LayerRow(**row))
    kw["layers"] = tuple(rows)
    return InferenceResult(**kw)


# --------------------------------------------------------------------------- workloads


@dataclass(frozen=True)
class InferenceWorkload:
    """A workload to serve, with what the LLM machinery needs to know about it."""

    workload: Workload
    spec: llm.DecoderSpec | None = None
    phase: llm.LlmPhase | None = None
    seq_len: int | None = None
    kv_len: int | None = None

    @property
    def tokens(self) -> int:
        """Tokens produced (decode) or consumed (prefill, language models) per pass."""
        if self.phase is llm.LlmPhase.DECODE:
            return self.workload.batch
        if self.seq_len is not None:
            return self.workload.batch * self.seq_len
        return 0


def load(spec: str, opts: InferenceOptions) -> InferenceWorkload:
    """Resolve WORKLOAD for inference: an LLM preset (``gpt2_small``, ``llama_7b``) in the
    given phase (prefill when none is given), or any other zoo name or workload file
    (``phase`` must then be unset)."""
    if llm.is_llm(spec):
        s = llm.spec(spec)
        phase = opts.phase or llm.LlmPhase.PREFILL
        if phase is llm.LlmPhase.DECODE:
            if opts.seq_len is not None:
                raise ValueError("the decode phase takes --kv-len (cache positions), "
                                 "not --seq-len")
            if opts.kv_len is None:
                raise ValueError("the decode phase needs --kv-len (cache positions)")
            w = llm.workload(s, phase, opts.batch, kv_len=opts.kv_len)
            return InferenceWorkload(w, s, phase, None, opts.kv_len)
        if opts.kv_len is not None:
            raise ValueError("--kv-len is for the decode phase")
        seq = opts.seq_len if opts.seq_len is not None else min(1024, s.max_positions)
        w = llm.workload(s, phase, opts.batch, seq_len=seq)
        return InferenceWorkload(w, s, phase, seq, None)
    if opts.phase is not None:
        raise ValueError(f"--phase is for LLM workloads ({', '.join(llm.PRESETS)}), "
                         f"not {spec}")
    if opts.kv_len is not None:
        raise ValueError(f"--kv-len is for LLM workloads ({', '.join(llm.PRESETS)})")
    from nmsat.workloads import zoo

    loaded = zoo.load(spec, batch=opts.batch, seq_len=opts.seq_len)
    seq = opts.seq_len
    if seq is None and spec in zoo.names():
        seq = zoo.model(spec).seq_len
    return InferenceWorkload(loaded.workload, seq_len=seq)


def weight_byte_ratio(workload: Workload, nm: NM, cfg: AcceleratorConfig,
                      layer_nm: tuple[tuple[str, NM], ...] = ()) -> float:
    """Dense weight bytes over stored weight bytes under ``nm`` (or a layer's
    ``layer_nm`` pattern; layers N:M cannot apply to stay dense), computed with
    :func:`nmsat.reference.compressed_bytes`."""
    dt = DType.parse(cfg.numerics.dtype)
    per = dict(layer_nm)
    default = nm
    dense = sparse = 0
    for layer in workload.layers:
        if not isinstance(layer, (Linear, Conv2d)):
            continue
        if isinstance(layer, Conv2d):
            shape = (layer.kh * layer.kw * (layer.in_ch // layer.groups), layer.out_ch)
        else:
            shape = (layer.in_features, layer.out_features)
        d = dense_bytes(shape, dt)
        dense += d
        nm = per.get(layer.name, default)
        if not nm.dense and layer.nm_applies(Phase.FF, Method.BDWP, nm):
            sparse += compressed_bytes(shape, nm, 0, dt)
        else:
            sparse += d
    return dense / sparse if sparse else 1.0


# --------------------------------------------------------------------------- running


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
    stalls = {"memory": 0, "sore": 0, "dependency": 0}
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
    traffic = []
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
        b = operands.setdefault(layer, {"buffer": {"activation": 0, "weight": 0,
                                                   "output": 0}})["buffer"]
        b["activation"] += c.act_buffer_bytes
        b["weight"] += c.weight_buffer_bytes
        b["output"] += c.output_buffer_bytes
    for layer, d in dram_op.items():
        operands.setdefault(layer, {"buffer": {"activation": 0, "weight": 0, "output": 0}})
        operands[layer]["dram"] = dict(d)
    for o in operands.values():
        o.setdefault("dram", {"activation": 0, "weight": 0, "output": 0})
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
    compile_opts = {"interleave": opts.interleave, "offline_schedule": opts.offline_schedule}
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
        rows.append(LayerRow(
            name=name, nm=t.nm, total_cycles=cyc, seconds=cyc * secs, macs=t.macs,
            dense_macs=dmacs, dram_bytes=t.dram_bytes, weight_bytes=t.weight_bytes,
            kv_cache_bytes=t.kv_bytes, engine_cycles=t.engine_cycles,
            dram_cycles=t.dram_cycles(lroof), intensity=intensity,
            bound=str(simulated_bound(t, lroof, cyc)),
            ideal_bound=str(lroof.classify(intensity) if dmacs else t.bound(lroof)),
            act_density=dens_of.get(name, 1.0), dense_total_cycles=dcyc,
            speedup_vs_dense=dcyc / cyc if cyc else 1.0,
            dense_dram_bytes=dt.dram_bytes,
            dense_bound=str(simulated_bound(dt, dense_roof, dcyc)),
            buffer_bytes=dict(sparse.operands.get(name, {}).get("buffer", {})),
            dram_bytes_by_operand=dict(sparse.operands.get(name, {}).get("dram", {}))))
    total = sparse.run.total
    dense_total = dense.run.total
    tokens = iw.tokens
    seconds = total * secs
    dense_seconds = dense_total * secs
    peak = cfg.array.peak_macs_per_cycle
    macs = sum(t.macs for t in sparse.traffic)
    energy = en.energy(sparse.counts, cfg, total).to_dict()
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
                    if opts.layer_nm else {})},
        counts=sparse.counts.to_dict(),
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


# --------------------------------------------------------------------------- CLI


INFERENCE_ONLY = ("phase", "kv_len", "act_density", "act_zero")
"""``nmsat simulate`` options that only apply with ``--mode inference``."""


def add_arguments(p) -> None:
    """The inference options of ``nmsat simulate`` (called by its parser)."""
    p.add_argument("--phase", default=None, choices=tuple(x.value for x in llm.LlmPhase),
                   help="LLM serving phase with --mode inference: prefill (the whole prompt "
                        "of --seq-len tokens) or decode (one token per sequence against a "
                        f"KV cache of --kv-len positions); LLM workloads: "
                        f"{', '.join(llm.PRESETS)} (default: prefill)")
    from nmsat.commands import positive_int

    p.add_argument("--kv-len", type=positive_int, default=None, metavar="L",
                   help="KV-cache positions of a decode step")
    p.add_argument("--act-density", type=_fraction, default=None, metavar="D",
                   help="fraction of nonzero activations at every weighted layer's input "
                        "(default: measured per layer from a .nmt training trace, else 1)")
    p.add_argument("--act-zero", default=None, choices=tuple(x.value for x in ActZero),
                   help="override the config's array.act_zero: what the PE does with zero "
                        "activations (none, gate: energy only, skip: gate and skip all-zero "
                        "WS rows)")


def _fraction(text: str) -> float:
    import argparse

    try:
        v = float(text)
    except ValueError:
        v = float("nan")
    if not 0.0 <= v <= 1.0:
        raise argparse.ArgumentTypeError(f"must be a number between 0 and 1, not {text!r}")
    return v


def check_train_args(args) -> None:
    """Reject inference-only options in a training run."""
    for name in INFERENCE_ONLY:
        if getattr(args, name, None) is not None:
            flag = "--" + name.replace("_", "-")
            raise ValueError(f"{flag} is only for --mode inference")


def options_from_args(args) -> InferenceOptions:
    if args.act_density is not None:
        density = ActDensity.uniform(args.act_density)
    elif str(args.workload).lower().endswith(".nmt"):
        density = ActDensity.from_trace(args.workload)
    else:
        density = ActDensity.dense()
    nm, layer_nm = _patterns_from_args(args)
    return InferenceOptions(nm=nm, batch=args.batch, phase=args.phase,
                            seq_len=args.seq_len, kv_len=args.kv_len, density=density,
                            interleave=not args.no_interleave,
                            offline_schedule=not args.no_offline_schedule, layer_nm=layer_nm)


def _patterns_from_args(args) -> tuple[NM, tuple[tuple[str, NM], ...]]:
    """``--nm`` wins for every layer; without it a workload file's per-layer patterns
    (a training trace: every weight layer's trained pattern, ``1:1`` for a dense run; a
    SCALE-Sim v3 ``Sparsity`` column) apply, as in training mode
    (:func:`nmsat.commands.simulate.load_and_resolve`), and other layers take the default."""
    from nmsat.commands.simulate import DEFAULT_NM
    from nmsat.workloads import zoo

    if args.nm is not None:
        return NM.parse(args.nm), ()
    spec = str(args.workload)
    if llm.is_llm(spec) or os.path.splitext(spec)[1].lower() not in zoo.FILE_LOADERS:
        return NM.parse(DEFAULT_NM), ()
    loaded = zoo.load(spec, batch=args.batch, seq_len=args.seq_len)
    patterns = {str(p) for p in loaded.layer_nm.values()}
    nm = patterns.pop() if len(patterns) == 1 else DEFAULT_NM
    return NM.parse(nm), tuple(sorted(loaded.layer_nm.items()))


def _gemm_rows(r: InferenceResult) -> list[LayerRow]:
    return [x for x in r.layers if x.dense_macs]


def compute_report_csv(r: InferenceResult) -> str:
    """SCALE-Sim-style ``COMPUTE_REPORT.csv`` of an inference pass: one row per GEMM
    layer (SCALE-Sim topologies list only conv and GEMM layers, and SCALE-Sim simulates
    inference, so the row ids line up with a topology's), columns as in
    :func:`nmsat.simulator.results.compute_report_csv`; Stall Cycles = the layer's
    cycles minus its engine busy cycles (its attributed wall time is busy plus waits)."""
    from nmsat.simulator.results import COMPUTE_REPORT_HEADER, _row

    a = r.config["array"]
    peak = a["rows"] * a["cols"] * a["macs_per_pe"]
    lines = [COMPUTE_REPORT_HEADER]
    for lid, x in enumerate(_gemm_rows(r)):
        tot, busy = x.total_cycles, x.engine_cycles
        stall = max(0, tot - busy)
        overall = 100.0 * x.macs / (tot * peak) if tot else 0.0
        mapping = 100.0 * x.macs / (busy * peak) if busy else 0.0
        comp = 100.0 * x.macs / ((tot - stall) * peak) if tot > stall else 0.0
        lines.append(_row(lid, [tot, stall, overall, mapping, comp]))
    return "\n".join(lines) + "\n"


def bandwidth_report_csv(r: InferenceResult) -> str:
    """SCALE-Sim-style ``BANDWIDTH_REPORT.csv`` of an inference pass, one row per GEMM
    layer, in operand words per cycle of the layer (as
    :func:`nmsat.simulator.results.bandwidth_report_csv`): SRAM = buffer bytes read and
    written, DRAM = burst-rounded bytes moved (IFMAP: activation loads, FILTER: the
    compressed weight loads, OFMAP: stores)."""
    from nmsat.simulator.results import BANDWIDTH_REPORT_HEADER, _row

    word = DType.parse(r.config["numerics"]["dtype"]).bytes
    lines = [BANDWIDTH_REPORT_HEADER]
    for lid, x in enumerate(_gemm_rows(r)):
        tot = x.total_cycles or 1
        b, d = x.buffer_bytes, x.dram_bytes_by_operand
        vals = [b.get("activation", 0) / word / tot, b.get("weight", 0) / word / tot,
                b.get("output", 0) / word / tot, d.get("activation", 0) / word / tot,
                d.get("weight", 0) / word / tot, d.get("output", 0) / word / tot]
        lines.append(_row(lid, vals))
    return "\n".join(lines) + "\n"


def run_cli(args) -> int:
    """``nmsat simulate ... --mode inference``: simulate, print the table, write the JSON,
    the SCALE-Sim-style reports and the HTML report. Everything is rendered (and the
    report's sweeps simulated) before the first file is written."""
    import sys

    from nmsat import config
    from nmsat.fileio import atomic_write_many

    if args.method in ("dense", "srste"):
        raise ValueError(f"--method {args.method} is for training; inference takes the "
                         f"weights' pattern from --nm (dense: --nm 1:1)")
    if getattr(args, "no_pregen", False):  # inference makes no masks: nothing to pre-generate
        raise ValueError("--no-pregen is for training: inference has no SORE mask generation")
    cfg = config.resolve(args.config)
    if args.act_zero is not None:
        cfg = cfg.replace(**{"array.act_zero": args.act_zero})
    opts = options_from_args(args)
    result = simulate_inference(str(args.workload), cfg, opts)

    outputs: list[tuple[Path, str]] = []
    if args.json is not None:
        outputs.append((args.json, result.to_json()))
    if args.scalesim_reports is not None:
        d = args.scalesim_reports
        outputs.append((d / "COMPUTE_REPORT.csv", compute_report_csv(result)))
        outputs.append((d / "BANDWIDTH_REPORT.csv", bandwidth_report_csv(result)))
    sweeps = None
    if args.report is not None:
        from nmsat.reports import check_report_folder, make_report_folder
        from nmsat.reports.inference_figures import simulate_sweeps

        check_report_folder(args.report)
        sweeps = simulate_sweeps(str(args.workload), cfg, result, opts)
        make_report_folder(args.report)
    atomic_write_many([(path, text.encode("utf-8")) for path, text in outputs])
    index = None
    if args.report is not None:
        from nmsat.reports import build_report

        index = build_report([result], args.report, inference_sweeps=sweeps)
    sys.stdout.write(format_table(result))
    for path, _ in outputs:
        print(f"wrote {path}")
    if index is not None:
        print(f"wrote {index}")
    return 0


def format_table(r: InferenceResult) -> str:
    """The summary ``nmsat simulate --mode inference`` prints."""
    c = r.config
    what = f"  phase={r.phase}" if r.phase else ""
    lens = "".join(f"  {k}={v}" for k, v in (("seq_len", r.seq_len), ("kv_len", r.kv_len))
                   if v is not None)
    lines = [f"{r.workload}  inference{what}  nm={r.nm}  batch={r.batch}{lens}  on "
             f"{c['name']} ({c['array']['rows']}x{c['array']['cols']}x"
             f"{c['array']['macs_per_pe']} @ {c['clock_mhz']:g} MHz)",
             f"activations: act_zero={r.act_zero}, density from {r.act_density}", ""]
    rf = r.roofline
    lines.append(f"{'layer':<44}{'cycles':>14}{'MiB':>9}{'MAC/B':>8}{'bound':>9}"
                 f"{'ideal':>8}{'speedup':>9}")
    for x in r.layers:
        inten = "-" if math.isinf(x.intensity) else f"{x.intensity:.1f}"
        lines.append(f"{x.name[:43]:<44}{x.total_cycles:>14,}{x.dram_bytes / 2**20:>9.2f}"
                     f"{inten:>8}{x.bound:>9}{x.ideal_bound:>8}{x.speedup_vs_dense:>8.2f}x")
    lines.append("")
    n_mem = sum(x.bound == "memory" for x in r.layers)
    lines.append(f"total           {r.total_cycles:,} cycles, {r.seconds * 1e3:,.3f} ms")
    if r.tokens_per_second is not None:
        lines.append(f"tokens/s        {r.tokens_per_second:,.2f} (dense "
                     f"{r.dense_tokens_per_second:,.2f})")
    lines.append(f"DRAM traffic    {r.dram_bytes / 2**20:,.1f} MiB (weights "
                 f"{r.weight_bytes / 2**20:,.1f}, KV cache {r.kv_cache_bytes / 2**20:,.1f})")
    lines.append(f"roofline        peak {rf['peak_macs_per_cycle']:,.0f} MAC/cycle, DRAM "
                 f"{rf['dram_bytes_per_cycle']:,.0f} B/cycle, ridge {rf['ridge']:.2f} MAC/B; "
                 f"{n_mem} of {len(r.layers)} layers memory-bound")
    e = r.energy_pj
    lines.append(f"energy          {e['total'] / 1e9:,.3f} mJ")
    lines.append(f"dense           {r.dense_total_cycles:,} cycles on the same hardware")
    lines.append(f"speedup         {r.speedup_vs_dense:.3f}x over dense (weight bytes "
                 f"{r.weight_byte_ratio:.3f}x smaller)")
    return "\n".join(lines) + "\n"
