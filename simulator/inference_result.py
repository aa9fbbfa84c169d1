"""Inference results: one
inference pass's result (:class:`InferenceResult`, :class:`LayerRow`), its JSON
(:meth:`InferenceResult.to_json`, :func:`result_from_dict`) and its SCALE-Sim-style
reports (:func:`compute_report_csv`, :func:`bandwidth_report_csv`).

:mod:`nmsat.simulator.inference` produces these; the reports read them.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any

from nmsat import __version__
from nmsat.simulator.roofline import (
    Bound,
)
from nmsat.types import DType, Phase

__all__ = ["PHASES", "InferenceResult", "LayerRow", "bandwidth_report_csv", "compute_report_csv",
           "detailed_access_report_csv", "result_from_dict"]

PHASES: tuple[str, ...] = tuple(p.value for p in Phase)


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
    energy_pj: dict[str, float] = field(default_factory=dict)  # per unit and total
    peak_macs_per_cycle: float = 0.0  # dense-equivalent roof at the layer's pattern
    array_fill: float = 1.0  # peak cycles / engine busy cycles (roofline.array_fill)
    limiter_ratio: float = 0.0  # limiter's cycles at peak / cycles (roofline.limiter_ratio)
    dataflow: str = ""  # its COMPUTE blocks' dataflow: os, ws or os+ws ("" without any)

    @property
    def achieved_macs_per_cycle(self) -> float:
        """Dense-equivalent MACs per cycle of the layer's simulated time."""
        return self.dense_macs / self.total_cycles if self.total_cycles else 0.0

    @property
    def achieved_bytes_per_cycle(self) -> float:
        """DRAM bytes per cycle of the layer's simulated time."""
        return self.dram_bytes / self.total_cycles if self.total_cycles else 0.0

    @property
    def byte_ratio(self) -> float:
        """Dense over N:M DRAM bytes this layer really moved (1 without traffic)."""
        return self.dense_dram_bytes / self.dram_bytes if self.dram_bytes else 1.0

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["achieved_macs_per_cycle"] = self.achieved_macs_per_cycle
        d["achieved_bytes_per_cycle"] = self.achieved_bytes_per_cycle
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
    energy_mode: str = ""
    energy_by_kind_pj: dict[str, float] = field(default_factory=dict)
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
            "energy_mode": self.energy_mode,
            "energy_by_phase_pj": {**{p: 0.0 for p in PHASES}, "ff": self.energy_pj["total"],
                                   "total": self.energy_pj["total"]},
            "energy_by_kind_pj": dict(self.energy_by_kind_pj),
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
    kw["energy_mode"] = text("energy_mode", data.get("energy_mode", ""))
    kw["energy_by_kind_pj"] = {k: num(f"energy_by_kind_pj.{k}", v) for k, v in
                               obj("energy_by_kind_pj", data.get("energy_by_kind_pj", {})).items()}
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
            if f.name in ("name", "nm", "dataflow"):
                v = text(f"{w}.{f.name}", v)
            elif f.name in ("bound", "ideal_bound", "dense_bound"):
                if v not in bounds and not (f.name == "dense_bound" and v == ""):
                    raise ValueError(f"{w}.{f.name} must be one of {sorted(bounds)}, "
                                     f"not {v!r}")
            elif f.name == "intensity":
                v = math.inf if v is None else num(f"{w}.intensity", v)
            elif f.name in ("buffer_bytes", "dram_bytes_by_operand", "energy_pj"):
                v = {k: num(f"{w}.{f.name}.{k}", n, integer=f.name != "energy_pj")
                     for k, n in obj(f"{w}.{f.name}", v).items()}
            else:
                v = num(f"{w}.{f.name}", v, integer=f.type in (int, "int"))
            row[f.name] = v
        rows.append(LayerRow(**row))
    kw["layers"] = tuple(rows)
    return InferenceResult(**kw)


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
        lines.append(_row(lid, [tot, tot, stall, overall, mapping, comp]))
    return "\n".join(lines) + "\n"


def detailed_access_report_csv(r: InferenceResult) -> str:
    """SCALE-Sim 3.0.0's ``DETAILED_ACCESS_REPORT.csv`` of an inference pass, one row per
    GEMM layer (see :func:`nmsat.simulator.results.detailed_access_rows`)."""
    from nmsat.simulator.results import DETAILED_ACCESS_REPORT_HEADER, detailed_access_rows

    word = DType.parse(r.config["numerics"]["dtype"]).bytes
    lines = [DETAILED_ACCESS_REPORT_HEADER, *detailed_access_rows(_gemm_rows(r), word)]
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
