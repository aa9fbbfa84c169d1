"""Typed simulation results and their JSON form.

A :class:`SimResult` is what :func:`nmsat.simulator.api.simulate` returns and what
``nmsat simulate --json`` writes; the report layer reads the JSON back with
:func:`load_json`. Every cycle figure is an integer number of engine cycles, every
energy figure is in pJ, every byte count is bytes.

Attribution (see ``docs/simulator.md``)
    ``phase_cycles`` partitions the wall-clock cycles of the run: each cycle is charged
    to exactly one phase, so the phases sum to ``total_cycles``. Per-layer rows partition
    the same cycles by layer. ``stall_cycles`` counts, per cause, the cycles the tensor
    engine waited with work pending (memory: an operand load or a store it depends on;
    sore: a mask not yet generated; vector: a vector-engine op such as a normalisation,
    pooling or softmax; dependency: another unit's result, e.g. the weight update, or a
    barrier). ``unit_stall_cycles`` gives the same per unit. The engine's vector waits
    are also the ``vector`` phase (of the waiting layer).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nmsat import __version__
from nmsat.types import Phase

__all__ = ["BANDWIDTH_REPORT_HEADER", "COMPUTE_REPORT_HEADER", "DETAILED_ACCESS_REPORT_HEADER",
           "EVENT_FIELDS", "PHASES", "SCHEMA_VERSION", "STALL_CAUSES", "Event", "LayerResult",
           "SimResult", "bandwidth_report_csv", "compute_report_csv", "detailed_access_report_csv",
           "detailed_access_rows", "energy_report_csv", "from_dict", "load_json"]

PHASES: tuple[str, ...] = (*(p.value for p in Phase), "vector")
"""Phase keys of ``phase_cycles``: ff, bp, wg, wu, sore, and vector: the cycles the
tensor engine waited for the vector engine (normalisation, pooling, softmax, activation,
residual add), charged to the waiting layer."""

STALL_CAUSES: tuple[str, ...] = ("memory", "sore", "vector", "dependency")
"""Stall causes of ``stall_cycles``."""

SCHEMA_VERSION = 1


def _phase_dict(values: dict[str, int]) -> dict[str, int]:
    unknown = set(values) - set(PHASES)
    if unknown:
        raise ValueError(f"unknown phase {sorted(unknown)[0]!r} (choose from {', '.join(PHASES)})")
    return {p: int(values.get(p, 0)) for p in PHASES}


def _stall_dict(values: dict[str, int]) -> dict[str, int]:
    unknown = set(values) - set(STALL_CAUSES)
    if unknown:
        raise ValueError(f"unknown stall cause {sorted(unknown)[0]!r} "
                         f"(choose from {', '.join(STALL_CAUSES)})")
    return {c: int(values.get(c, 0)) for c in STALL_CAUSES}


@dataclass(frozen=True)
class Event:
    """One interval of activity on one unit, for the timeline (Gantt) figure.

    ``kind`` is ``busy`` for work, or ``stall:<cause>`` while a unit waits with an
    instruction pending.
    """

    unit: str
    start: int
    end: int
    layer: str
    phase: str
    kind: str

    def __post_init__(self) -> None:
        if self.end < self.start:
            raise ValueError(f"event on {self.unit} ends ({self.end}) before it starts "
                             f"({self.start})")

    def to_list(self) -> list[Any]:
        return [self.unit, self.start, self.end, self.layer, self.phase, self.kind]


EVENT_FIELDS = ("unit", "start", "end", "layer", "phase", "kind")


@dataclass(frozen=True)
class LayerResult:
    """One layer's share of the run: the cycles charged to it and its activity."""

    name: str
    total_cycles: int
    seconds: float
    phase_cycles: dict[str, int]
    stall_cycles: dict[str, int]
    macs: int
    dense_macs: int
    utilization: float
    dram_bytes: int
    energy_pj: dict[str, float]
    dense_total_cycles: int
    speedup_vs_dense: float
    dram_bytes_by_operand: dict[str, int] = field(default_factory=dict)
    buffer_bytes: dict[str, int] = field(default_factory=dict)
    engine_busy_cycles: int = 0
    energy_by_phase_pj: dict[str, float] = field(default_factory=dict)
    dataflow: dict[str, str] = field(default_factory=dict)  # phase -> os, ws or os+ws

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "total_cycles": self.total_cycles,
            "seconds": self.seconds,
            "phase_cycles": dict(self.phase_cycles),
            "stall_cycles": dict(self.stall_cycles),
            "macs": self.macs,
            "dense_macs": self.dense_macs,
            "utilization": self.utilization,
            "dram_bytes": self.dram_bytes,
            "energy_pj": dict(self.energy_pj),
            "dense_total_cycles": self.dense_total_cycles,
            "speedup_vs_dense": self.speedup_vs_dense,
            "dram_bytes_by_operand": dict(self.dram_bytes_by_operand),
            "buffer_bytes": dict(self.buffer_bytes),
            "engine_busy_cycles": self.engine_busy_cycles,
            "energy_by_phase_pj": dict(self.energy_by_phase_pj),
            "dataflow": dict(self.dataflow),
        }


@dataclass(frozen=True)
class SimResult:
    """The result of simulating one workload under one method on one accelerator.

    ``utilization`` is issued multiplier-lane operations over (cycles x peak MACs per
    cycle), so it never exceeds 1; ``effective_utilization`` uses the dense-equivalent
    MACs instead (an N:M run can exceed 1 there, which is its speedup).
    """

    workload: str
    config: dict[str, Any]
    method: str
    nm: str
    batch: int
    mode: str
    options: dict[str, Any]
    total_cycles: int
    seconds: float
    phase_cycles: dict[str, int]
    stall_cycles: dict[str, int]
    unit_stall_cycles: dict[str, dict[str, int]]
    unit_busy_cycles: dict[str, int]
    phase_utilization: dict[str, float | None]  # None: the phase has no cycles
    utilization: float
    effective_utilization: float
    macs: int
    dense_macs: int
    dram_bytes: int
    energy_pj: dict[str, float]
    counts: dict[str, int]
    dense_total_cycles: int
    speedup_vs_dense: float
    layers: tuple[LayerResult, ...]
    events: tuple[Event, ...] = field(default=(), repr=False)
    events_truncated: bool = False
    simulated_instructions: int = 0
    executed_instructions: int = 0
    energy_mode: str = ""
    energy_by_phase_pj: dict[str, float] = field(default_factory=dict)
    energy_by_kind_pj: dict[str, float] = field(default_factory=dict)
    simulate_seconds: float | None = field(default=None, compare=False)
    version: str = __version__

    def __post_init__(self) -> None:
        object.__setattr__(self, "phase_cycles", _phase_dict(self.phase_cycles))
        object.__setattr__(self, "stall_cycles", _stall_dict(self.stall_cycles))
        if sum(self.phase_cycles.values()) != self.total_cycles:
            raise ValueError(f"phase cycles {self.phase_cycles} do not sum to total_cycles "
                             f"{self.total_cycles}")

    def to_dict(self, *, events: bool = True, timing: bool = False) -> dict[str, Any]:
        """Plain data for JSON. ``timing`` adds the host's simulate time (not reproducible,
        so off by default: the same inputs give the same JSON bytes)."""
        out: dict[str, Any] = {
            "schema": SCHEMA_VERSION,
            "nmsat_version": self.version,
            "workload": self.workload,
            "method": self.method,
            "nm": self.nm,
            "batch": self.batch,
            "mode": self.mode,
            "options": dict(self.options),
            "total_cycles": self.total_cycles,
            "seconds": self.seconds,
            "phase_cycles": dict(self.phase_cycles),
            "stall_cycles": dict(self.stall_cycles),
            "unit_stall_cycles": {u: dict(v) for u, v in self.unit_stall_cycles.items()},
            "unit_busy_cycles": dict(self.unit_busy_cycles),
            "utilization": self.utilization,
            "effective_utilization": self.effective_utilization,
            "phase_utilization": dict(self.phase_utilization),
            "macs": self.macs,
            "dense_macs": self.dense_macs,
            "dram_bytes": self.dram_bytes,
            "energy_pj": dict(self.energy_pj),
            "energy_mode": self.energy_mode,
            "energy_by_phase_pj": dict(self.energy_by_phase_pj),
            "energy_by_kind_pj": dict(self.energy_by_kind_pj),
            "counts": dict(self.counts),
            "dense_total_cycles": self.dense_total_cycles,
            "speedup_vs_dense": self.speedup_vs_dense,
            "executed_instructions": self.executed_instructions,
            "simulated_instructions": self.simulated_instructions,
            "layers": [layer.to_dict() for layer in self.layers],
            "config": self.config,
        }
        if events:
            out["event_fields"] = list(EVENT_FIELDS)
            out["events"] = [e.to_list() for e in self.events]
            out["events_truncated"] = self.events_truncated
        if timing and self.simulate_seconds is not None:
            out["simulate_seconds"] = self.simulate_seconds
        return out

    def to_json(self, *, events: bool = True, timing: bool = False) -> str:
        """Deterministic JSON text (fixed key order, no host timing unless asked)."""
        return json.dumps(self.to_dict(events=events, timing=timing), indent=1,
                          allow_nan=False) + "\n"


def _layer_from_dict(d: dict[str, Any]) -> LayerResult:
    return LayerResult(**{k: d[k] for k in LayerResult.__dataclass_fields__ if k in d})


def from_dict(d: dict[str, Any]) -> SimResult:
    """Rebuild a :class:`SimResult` from :meth:`SimResult.to_dict` output."""
    if d.get("schema") != SCHEMA_VERSION:
        raise ValueError(f"unsupported result schema {d.get('schema')!r} "
                         f"(this nmsat reads {SCHEMA_VERSION})")
    fields_ = dict(d)
    events = tuple(Event(*e) for e in fields_.pop("events", []))
    truncated = fields_.pop("events_truncated", False)
    fields_.pop("event_fields", None)
    fields_.pop("schema")
    version = fields_.pop("nmsat_version")
    seconds_host = fields_.pop("simulate_seconds", None)
    layers = tuple(_layer_from_dict(x) for x in fields_.pop("layers"))
    return SimResult(**fields_, layers=layers, events=events, events_truncated=truncated,
                     simulate_seconds=seconds_host, version=version)


def load_json(path: str | Path) -> SimResult:
    """Read a result written by ``nmsat simulate --json``."""
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{p}: not a result JSON file: {e}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{p}: not a result JSON file")
    return from_dict(data)


# --------------------------------------------------------------------------- SCALE-Sim


# SCALE-Sim 3.0.0's report headers, as scale-sim-v3 ``scalesim/simulator.py``
# (``generate_reports``) writes them: ", " separators and a trailing comma.
COMPUTE_REPORT_HEADER = ("LayerID, Total Cycles (incl. prefetch), Total Cycles, Stall Cycles, "
                         "Overall Util %, Mapping Efficiency %, Compute Util %,")
BANDWIDTH_REPORT_HEADER = ("LayerID, Avg IFMAP SRAM BW, Avg FILTER SRAM BW, Avg OFMAP SRAM BW, "
                           "Avg IFMAP DRAM BW, Avg FILTER DRAM BW, Avg OFMAP DRAM BW,")
DETAILED_ACCESS_REPORT_HEADER = (
    "LayerID, "
    "SRAM IFMAP Start Cycle, SRAM IFMAP Stop Cycle, SRAM IFMAP Reads, "
    "SRAM Filter Start Cycle, SRAM Filter Stop Cycle, SRAM Filter Reads, "
    "SRAM OFMAP Start Cycle, SRAM OFMAP Stop Cycle, SRAM OFMAP Writes, "
    "DRAM IFMAP Start Cycle, DRAM IFMAP Stop Cycle, DRAM IFMAP Reads, "
    "DRAM Filter Start Cycle, DRAM Filter Stop Cycle, DRAM Filter Reads, "
    "DRAM OFMAP Start Cycle, DRAM OFMAP Stop Cycle, DRAM OFMAP Writes,")


def _row(lid: int, values: Sequence[float]) -> str:
    # SCALE-Sim writes "id, v1, v2, ...," with ", " separators and a trailing comma.
    return f"{lid}, " + ", ".join(repr(float(v)) if isinstance(v, float) else str(v)
                                  for v in values) + ","


def compute_report_csv(r: SimResult, cfg) -> str:
    """SCALE-Sim-style ``COMPUTE_REPORT.csv``: one row per layer, all phases together.

    Total Cycles = the layer's share of the run; Total Cycles (incl. prefetch) = the same
    (nmsat charges a layer's DRAM loads to its own cycles and does not count a prefetch
    window apart, docs/scalesim.md); Stall Cycles = engine stall cycles; Overall Util % =
    MACs / (Total Cycles x peak MACs per cycle); Compute Util % = MACs / ((Total - Stall)
    x peak); Mapping Efficiency % = MACs / (engine busy cycles x peak): how well the tiles
    fill the array while it runs (fill/drain and edge tiles lower it).
    """
    peak = cfg.array.peak_macs_per_cycle
    lines = [COMPUTE_REPORT_HEADER]
    for lid, layer in enumerate(r.layers):
        stall = sum(layer.stall_cycles.values())
        tot = layer.total_cycles
        busy = layer.engine_busy_cycles
        overall = 100.0 * layer.macs / (tot * peak) if tot else 0.0
        mapping = 100.0 * layer.macs / (busy * peak) if busy else 0.0
        comp = 100.0 * layer.macs / ((tot - stall) * peak) if tot > stall else 0.0
        lines.append(_row(lid, [tot, tot, stall, overall, mapping, comp]))
    return "\n".join(lines) + "\n"


def bandwidth_report_csv(r: SimResult, cfg) -> str:
    """SCALE-Sim-style ``BANDWIDTH_REPORT.csv`` in words (operand elements) per cycle of
    the layer: SRAM = buffer bytes read and written, DRAM = bytes moved for that
    operand (IFMAP: activation loads, FILTER: weight loads, OFMAP: stores)."""
    word = cfg.numerics.operand.bytes
    lines = [BANDWIDTH_REPORT_HEADER]
    for lid, layer in enumerate(r.layers):
        tot = layer.total_cycles or 1
        b = layer.buffer_bytes
        d = layer.dram_bytes_by_operand
        vals = [b.get("activation", 0) / word / tot, b.get("weight", 0) / word / tot,
                b.get("output", 0) / word / tot, d.get("activation", 0) / word / tot,
                d.get("weight", 0) / word / tot, d.get("output", 0) / word / tot]
        lines.append(_row(lid, vals))
    return "\n".join(lines) + "\n"


def detailed_access_rows(layers, word: int) -> list[str]:
    """The rows of ``DETAILED_ACCESS_REPORT.csv`` for layers with ``total_cycles``,
    ``buffer_bytes`` and ``dram_bytes_by_operand``.

    SCALE-Sim runs each layer on its own clock from cycle 0; so does this report: every
    start is 0 and every stop the layer's last cycle (``total_cycles - 1``). nmsat
    overlaps a layer's loads with the previous layer's compute and charges them to the
    layer; it does not report the first and last access of each operand, so the window
    is the layer's, not SCALE-Sim's negative-start prefetch window (docs/scalesim.md).
    Counts are words of ``word`` bytes: SRAM = buffer bytes read (OFMAP: read and
    written), DRAM = bytes moved (OFMAP: stored)."""
    rows = []
    for lid, layer in enumerate(layers):
        stop = max(0, layer.total_cycles - 1)
        b, d = layer.buffer_bytes, layer.dram_bytes_by_operand
        vals: list[int] = []
        for counts in (b, d):
            for op in ("activation", "weight", "output"):
                vals += [0, stop, counts.get(op, 0) // word]
        rows.append(_row(lid, vals))
    return rows


def detailed_access_report_csv(r: SimResult, cfg) -> str:
    """SCALE-Sim 3.0.0's ``DETAILED_ACCESS_REPORT.csv`` (:func:`detailed_access_rows`)."""
    lines = [DETAILED_ACCESS_REPORT_HEADER, *detailed_access_rows(r.layers,
                                                                   cfg.numerics.operand.bytes)]
    return "\n".join(lines) + "\n"


def energy_report_csv(layers) -> str:
    """``ENERGY_REPORT.csv`` (not a SCALE-Sim file; written next to them in the same row
    format): per layer its energy in pJ by unit, by phase, and the total. ``layers`` are
    result layers with ``energy_pj`` (and, for training, ``energy_by_phase_pj``)."""
    from nmsat.simulator.energy import PHASES as ENERGY_PHASES  # training phases, no 'vector'
    from nmsat.simulator.energy import UNITS

    header = ("LayerID, Layer, " + ", ".join(f"{u} pJ" for u in UNITS) + ", "
              + ", ".join(f"{p} pJ" for p in ENERGY_PHASES) + ", total pJ,")
    lines = [header]
    for lid, layer in enumerate(layers):
        e = layer.energy_pj
        ph = getattr(layer, "energy_by_phase_pj", None) or {"ff": e["total"]}
        vals = [float(e[u]) for u in UNITS] + [float(ph.get(p, 0.0)) for p in ENERGY_PHASES]
        lines.append(_row(lid, [layer.name.replace(",", ";"), *vals, float(e["total"])]))
    return "\n".join(lines) + "\n"
