"""Energy model: activity counts times the configuration's coefficients, in two modes.

The system model (:mod:`nmsat.simulator.system`) and :func:`nmsat.simulator.api.activity`
count what each unit did per (layer, phase); this module turns those counts into
picojoules with ``cfg.energy`` (:mod:`nmsat.energy_config`). No energy figure lives in
this file. ``docs/energy.md`` documents both modes and every coefficient.

Units (``UNITS``; the keys of a result's ``energy_pj``)
    ``engine`` (the PE array), ``act_buffer``, ``weight_buffer``, ``output_buffer``,
    ``sore``, ``vector`` (weight-update / vector engine), ``dram``, ``static``.

Kinds (``KINDS[mode]``; the keys of ``energy_by_kind_pj``)
    fpga: ``lut``, ``ff``, ``dsp``, ``bram``, ``uram``, ``routing``, ``clock``, ``dram``,
    ``static``. asic: ``mac``, ``register``, ``sram_read``, ``sram_write``, ``compare``,
    ``vector_op``, ``dram``, ``static``.

Exact sums
    Every (layer, phase, unit, kind) cell is rounded to a multiple of one power of two
    ``2**(e - 50)`` pJ chosen per run so the run's total is below ``2**50`` of them; every
    sum of such cells is then exact in floating point, in any order, so a result's
    totals are exactly the sums of its units, its phases, its kinds and its layers.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass, fields

from nmsat.config import AcceleratorConfig
from nmsat.errors import ConfigError
from nmsat.types import DType, Phase

__all__ = ["KINDS", "PHASES", "PRIMITIVE_BYTES", "UNITS", "ZERO_COUNTS", "ActivityCounts", "Cell",
           "EnergyReport", "cell", "energy", "fpga_resources", "report", "static_pj"]

UNITS: tuple[str, ...] = ("engine", "act_buffer", "weight_buffer", "output_buffer", "sore",
                          "vector", "dram", "static")
"""Energy by hardware unit, in the order the CLI, JSON and reports show them."""

KINDS: dict[str, tuple[str, ...]] = {
    "fpga": ("lut", "ff", "dsp", "bram", "uram", "routing", "clock", "dram", "static"),
    "asic": ("mac", "register", "sram_read", "sram_write", "compare", "vector_op", "dram",
             "static"),
}
"""Energy by what was spent, per mode: FPGA resources, or ASIC actions."""

PHASES: tuple[str, ...] = tuple(p.value for p in Phase)

PRIMITIVE_BYTES = 9
"""Bytes one 72-bit RAMB36E2 or URAM288 port access moves."""

_BUFFERS = (("act_buffer", "activation", "act_bank", "act"),
            ("weight_buffer", "weight", "wgt_bank", "weight"),
            ("output_buffer", "output", "out_bank", "output"))
_LOGIC_UNITS = (("engine", "pe_cell"), ("sore", "sore_lane"), ("vector", "wu_lane"))


@dataclass(frozen=True)
class ActivityCounts:
    """What the accelerator did: counts that are additive across layers and repetitions.

    Parameters
    ----------
    macs
        Multiplier-lane operations of the tensor engine at the operand type
        (``numerics.dtype``). N:M GEMMs count only the kept weights' products.
    act_buffer_bytes, weight_buffer_bytes, output_buffer_bytes
        Bytes read plus bytes written at each engine-side SRAM buffer.
    act_buffer_write_bytes, weight_buffer_write_bytes, output_buffer_write_bytes
        The written part of those bytes (the rest are reads).
    register_bytes
        Bytes through PE pipeline registers.
    dram_bytes
        Bytes transferred on the DRAM channels (burst-rounded).
    compares
        SORE magnitude comparisons.
    wu_ops
        fp32 operations of the weight-update / vector engine.
    sore_lane_cycles, vector_lane_cycles
        Lane-cycles of work of the SORE (a weight takes ``sore.cycles_per_weight``) and
        of the weight-update / vector engine (a weight update or one pass over an
        element takes one).
    """

    macs: int = 0
    act_buffer_bytes: int = 0
    weight_buffer_bytes: int = 0
    output_buffer_bytes: int = 0
    register_bytes: int = 0
    dram_bytes: int = 0
    compares: int = 0
    wu_ops: int = 0
    act_buffer_write_bytes: int = 0
    weight_buffer_write_bytes: int = 0
    output_buffer_write_bytes: int = 0
    sore_lane_cycles: int = 0
    vector_lane_cycles: int = 0

    def __post_init__(self) -> None:
        for name in _count_names():
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise ValueError(f"ActivityCounts.{name} must be a non-negative integer, "
                                 f"not {v!r}")
        for level in ("act", "weight", "output"):
            if getattr(self, f"{level}_buffer_write_bytes") > getattr(self,
                                                                      f"{level}_buffer_bytes"):
                raise ValueError(f"ActivityCounts.{level}_buffer_write_bytes exceeds "
                                 f"{level}_buffer_bytes")

    def __add__(self, other: ActivityCounts) -> ActivityCounts:
        if not isinstance(other, ActivityCounts):
            return NotImplemented
        return ActivityCounts(**{name: getattr(self, name) + getattr(other, name)
                                 for name in _count_names()})

    def scaled(self, times: int) -> ActivityCounts:
        """These counts repeated ``times`` times (``times`` >= 0)."""
        if not isinstance(times, int) or times < 0:
            raise ValueError(f"times must be a non-negative integer, not {times!r}")
        return ActivityCounts(**{name: getattr(self, name) * times for name in _count_names()})

    @property
    def buffer_bytes(self) -> int:
        return self.act_buffer_bytes + self.weight_buffer_bytes + self.output_buffer_bytes

    def to_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in _count_names()}


@functools.cache
def _count_names() -> tuple[str, ...]:
    """The field names of :class:`ActivityCounts`, in order (``fields()`` once, not per
    object: thousands of counts are made per simulation)."""
    return tuple(f.name for f in fields(ActivityCounts))


ZERO_COUNTS = ActivityCounts()

Cell = dict[tuple[str, str], float]
"""(unit, kind) -> pJ of one piece of activity."""


def _static_pj(watts: float, cfg: AcceleratorConfig, cycles: int) -> float:
    return watts * cycles * cfg.cycle_seconds * 1e12


def static_pj(cfg: AcceleratorConfig, cycles: int) -> float:
    """Static (fpga) or leakage (asic) energy in pJ over ``cycles`` engine cycles."""
    if cycles < 0:
        raise ValueError(f"cycles must be >= 0, not {cycles}")
    e = cfg.energy
    w = e.fpga.static_watts.value if e.mode == "fpga" else e.asic.leakage_watts.value
    return _static_pj(w, cfg, cycles)


def fpga_resources(cfg: AcceleratorConfig) -> dict[str, tuple[int, dict[str, float]]]:
    """Per energy unit (instances, FPGA resources of one instance) from the area model.

    Raises :class:`ConfigError` when the area model cannot estimate ``cfg``'s operand type."""
    from nmsat.simulator import area

    per = area.unit_resources(cfg)
    if per is None:
        raise ConfigError(f"energy.mode = fpga needs the area model's resources, which has "
                          f"no calibration for numerics.dtype {cfg.numerics.dtype}; use "
                          f"energy.mode = asic")
    names = dict(_LOGIC_UNITS) | {u: bank for u, _, bank, _ in _BUFFERS}
    return {unit: per[synth] for unit, synth in names.items()}


def _fpga_cell(c: ActivityCounts, cfg: AcceleratorConfig, cycles: int,
               res: Mapping[str, tuple[int, dict[str, float]]]) -> Cell:
    f = cfg.energy.fpga
    a = f.toggle_rate.value
    out: Cell = {}
    active = {"engine": c.macs / cfg.array.macs_per_pe, "sore": c.sore_lane_cycles,
              "vector": c.vector_lane_cycles}
    for unit, _ in _LOGIC_UNITS:
        _, each = res[unit]
        n = active[unit]
        lut = n * each["lut"] * a * f.lut_toggle.value
        ff = n * each["ff"] * a * f.ff_toggle.value
        out[(unit, "lut")], out[(unit, "ff")] = lut, ff
        out[(unit, "dsp")] = n * each["dsp"] * f.dsp_cycle.value
        out[(unit, "routing")] = (lut + ff) * f.routing_factor.value
    for unit, _, _, level in _BUFFERS:
        _, each = res[unit]
        accesses = getattr(c, f"{level}_buffer_bytes") / PRIMITIVE_BYTES
        kind, per = (("uram", f.uram_access) if each.get("uram", 0.0) > 0
                     else ("bram", f.bram_access))
        out[(unit, kind)] = accesses * per.value
    for unit in [u for u, _ in _LOGIC_UNITS] + [u for u, *_ in _BUFFERS]:
        n, each = res[unit]
        out[(unit, "clock")] = cycles * n * each["ff"] * f.clock_ff.value
    out[("dram", "dram")] = c.dram_bytes * cfg.energy.dram_byte.value
    out[("static", "static")] = _static_pj(f.static_watts.value, cfg, cycles)
    return out


def _asic_cell(c: ActivityCounts, cfg: AcceleratorConfig, cycles: int) -> Cell:
    s = cfg.energy.asic
    k = s.scale()
    out: Cell = {("engine", "mac"): c.macs * s.mac(DType.parse(cfg.numerics.dtype)).value * k,
                 ("engine", "register"): c.register_bytes * s.register_byte.value * k}
    for unit, name, _, level in _BUFFERS:
        buf = getattr(cfg.buffers, name)
        rd = s.sram_read_byte(buf.kib / buf.banks) * k
        total = getattr(c, f"{level}_buffer_bytes")
        written = getattr(c, f"{level}_buffer_write_bytes")
        out[(unit, "sram_read")] = (total - written) * rd
        out[(unit, "sram_write")] = written * rd * s.sram_write_factor.value
    out[("sore", "compare")] = c.compares * s.compare.value * k
    out[("vector", "vector_op")] = c.wu_ops * s.vector_op.value * k
    out[("dram", "dram")] = c.dram_bytes * cfg.energy.dram_byte.value
    out[("static", "static")] = _static_pj(s.leakage_watts.value, cfg, cycles)
    return out


def cell(counts: ActivityCounts, cfg: AcceleratorConfig, cycles: int,
         resources: Mapping[str, tuple[int, dict[str, float]]] | None = None) -> Cell:
    """Unrounded energy (pJ) of ``counts`` over ``cycles`` wall-clock cycles by (unit, kind),
    in ``cfg.energy.mode``. ``resources`` (fpga): :func:`fpga_resources` of ``cfg``."""
    if cycles < 0:
        raise ValueError(f"cycles must be >= 0, not {cycles}")
    if cfg.energy.mode == "fpga":
        return _fpga_cell(counts, cfg, cycles, resources or fpga_resources(cfg))
    return _asic_cell(counts, cfg, cycles)


@dataclass(frozen=True)
class EnergyReport:
    """Energy of a run by (layer, phase) and (unit, kind), every cell on one exact grid."""

    mode: str
    cells: Mapping[tuple[str, str], Cell]

    def _layer_cells(self, layer: str | None) -> list[tuple[tuple[str, str], Cell]]:
        """The cells of ``layer`` (all with None), in the order of :attr:`cells`: grouped
        once per report, so a per-layer table costs its own cells, not the whole run's."""
        if layer is None:
            return list(self.cells.items())
        groups = self.__dict__.get("_by_layer")
        if groups is None:
            groups = {}
            for key, c in self.cells.items():
                groups.setdefault(key[0], []).append((key, c))
            object.__setattr__(self, "_by_layer", groups)
        return groups.get(layer, [])

    def _sum(self, key, layer: str | None = None) -> dict[str, float]:
        # the same cells added in the same order as a filter over all cells: equal sums
        out: dict[str, float] = {}
        for (ly, ph), c in self._layer_cells(layer):
            for (u, k), v in c.items():
                name = key(ly, ph, u, k)
                out[name] = out.get(name, 0.0) + v
        return out

    @staticmethod
    def _ordered(d: dict[str, float], order: tuple[str, ...]) -> dict[str, float]:
        out = {k: d.get(k, 0.0) for k in order}
        total = 0.0
        for v in out.values():
            total += v
        out["total"] = total
        return out

    def by_unit(self, layer: str | None = None) -> dict[str, float]:
        """pJ per unit (``UNITS`` order) and ``total``, of the run or of one layer."""
        return self._ordered(self._sum(lambda ly, ph, u, k: u, layer), UNITS)

    def by_phase(self, layer: str | None = None) -> dict[str, float]:
        """pJ per phase (ff, bp, wg, wu, sore) and ``total``."""
        return self._ordered(self._sum(lambda ly, ph, u, k: ph, layer), PHASES)

    def by_kind(self, layer: str | None = None) -> dict[str, float]:
        """pJ per kind (``KINDS[mode]``) and ``total``."""
        return self._ordered(self._sum(lambda ly, ph, u, k: k, layer), KINDS[self.mode])

    @property
    def total(self) -> float:
        return self.by_unit()["total"]


def report(activity: Mapping[tuple[str, str], tuple[ActivityCounts, int]],
           cfg: AcceleratorConfig) -> EnergyReport:
    """The energy of a run from its activity and wall-clock cycles per (layer, phase)."""
    res = fpga_resources(cfg) if cfg.energy.mode == "fpga" else None
    raw = {key: cell(c, cfg, cyc, res) for key, (c, cyc) in activity.items()}
    bound = math.fsum(abs(v) for c in raw.values() for v in c.values())
    if bound > 0:
        grid = math.ldexp(1.0, math.frexp(bound * 1.01)[1] - 50)
        raw = {key: {uk: round(v / grid) * grid for uk, v in c.items()}
               for key, c in raw.items()}
    return EnergyReport(cfg.energy.mode, raw)


def energy(counts: ActivityCounts, cfg: AcceleratorConfig, cycles: int) -> dict[str, float]:
    """pJ per unit and ``total`` of ``counts`` over ``cycles`` cycles (one cell)."""
    return report({("", "ff"): (counts, cycles)}, cfg).by_unit()
