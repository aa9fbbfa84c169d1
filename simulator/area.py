"""FPGA resource estimate (LUT, FF, DSP, BRAM) of an accelerator config, for sweeps.

The model follows the RTL's own structure (:mod:`nmsat.rtl.synth`): the design is units
(PE cell, SORE lane, weight-update lane, one bank of each buffer) times their instance
counts in the config. Each unit's per-instance resources are linear in a few structural
counts of the config (:data:`UNIT_FEATURES`: for a PE cell its multipliers P, index-mux
inputs P x A and accumulator stages La; for a buffer bank its KiB), with coefficients
fitted by least squares, per operand type, to the calibration table that ``nmsat rtl
synth --calibrate`` writes (``nmsat/data/synth_calibration.json``, read by
:mod:`nmsat.synth_table`: Yosys ``synth_xilinx``
per-unit results of generated configurations, with the command and Yosys version that
produced them). Glue between units is not in the per-unit figures (see
:mod:`nmsat.rtl.synth`), so the estimate is a lower bound on logic like the per-unit
synthesis it is fitted to.

:func:`calibration_error` is the leave-one-out error of the fit on the table's totals. An
operand type without enough calibration points to fit every coefficient gets no estimate:
:func:`estimate` returns ``None`` and a sweep leaves the resource columns empty rather than
report numbers nobody measured. BRAM is in RAMB36 units (a RAMB18 counts a half); UltraRAM
is not modelled (the generated buffers map to block RAM).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from nmsat import config as nmconfig
from nmsat import synth_table
from nmsat.arith import ceil_div
from nmsat.config import AcceleratorConfig

__all__ = ["RESOURCES", "UNIT_FEATURES", "AreaModel", "Calibration", "CalibrationPoint",
           "Resources", "UnitSample", "calibration", "calibration_error", "estimate", "fit",
           "models", "parse_table", "shadow_weight_extra", "unit_resources"]

RESOURCES: tuple[str, ...] = ("lut", "ff", "dsp", "bram")


def _pe(cfg: AcceleratorConfig) -> dict[str, float]:
    a = cfg.array
    return {"fixed": 1.0, "multipliers": float(a.macs_per_pe),
            "mux_inputs": float(a.macs_per_pe * a.act_window),
            "acc_stages": float(a.acc_latency)}


def _bank(buffer: str, banks: Callable[[AcceleratorConfig], int]
          ) -> Callable[[AcceleratorConfig], dict[str, float]]:
    def f(cfg: AcceleratorConfig) -> dict[str, float]:
        return {"fixed": 1.0, "kib": getattr(cfg.buffers, buffer).kib / banks(cfg)}
    return f


UNIT_FEATURES: Mapping[str, Callable[[AcceleratorConfig], dict[str, float]]] = {
    "pe_cell": _pe,
    "sore_lane": lambda cfg: {"fixed": 1.0},
    "wu_lane": lambda cfg: {"fixed": 1.0},
    "act_bank": _bank("activation", lambda cfg: cfg.array.rows),
    "wgt_bank": _bank("weight", lambda cfg: cfg.array.cols),
    "out_bank": _bank("output", lambda cfg: cfg.array.pes),
}
"""Per synthesis unit: the structural counts its per-instance resources are linear in. The
bank sizes follow the RTL's banking (one activation bank per row, one weight bank per
column, one output bank per PE)."""


@dataclass(frozen=True)
class Resources:
    """FPGA resources: LUTs, flip-flops, DSP slices and block RAM (RAMB36 units)."""

    lut: int
    ff: int
    dsp: int
    bram: float

    def __post_init__(self) -> None:
        for name in RESOURCES:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
                raise ValueError(f"{name} must be a number >= 0, not {v!r}")

    def as_dict(self) -> dict[str, float]:
        return {r: getattr(self, r) for r in RESOURCES}


@dataclass(frozen=True)
class UnitSample:
    """One unit's per-instance synthesis result in one calibration configuration."""

    unit: str
    config: AcceleratorConfig
    each: Resources


@dataclass(frozen=True)
class CalibrationPoint:
    """One synthesised configuration: its per-unit results and the scaled total."""

    label: str
    config: AcceleratorConfig
    units: tuple[UnitSample, ...]
    total: Resources


@dataclass(frozen=True)
class Calibration:
    """The calibration table: points plus the command and tool that produced them."""

    command: str
    tool: str
    points: tuple[CalibrationPoint, ...]


def _resources(d: Mapping[str, Any]) -> Resources:
    return Resources(int(d["lut"]), int(d["ff"]), int(d["dsp"]), float(d["bram36"]))


def parse_table(data: Mapping[str, Any]) -> Calibration:
    """Read the JSON written by ``nmsat rtl synth --calibrate`` (raises ``ValueError`` on a
    malformed table)."""
    try:
        points = []
        for row in data["points"]:
            # The generated RTL has no shadow-weight preload: every synthesised point is
            # a design without it (its resources are shadow_weight_extra's).
            cfg = nmconfig.preset(row["preset"]).replace(
                **{"array.shadow_weights": False,
                   **{k: tuple(v) if isinstance(v, list) else v for k, v in row["changes"]}})
            units = tuple(UnitSample(u["name"], cfg, _resources(u["each"]))
                          for u in row["units"] if u["name"] in UNIT_FEATURES)
            label = row["preset"] + "".join(f", {k}={v}" for k, v in row["changes"])
            points.append(CalibrationPoint(label, cfg, units, _resources(row["total"])))
        return Calibration(str(data["command"]), str(data.get("tool", "unknown")),
                           tuple(points))
    except (KeyError, TypeError) as e:
        raise ValueError(f"malformed synthesis calibration table: {e!r}") from None


@functools.cache
def calibration() -> Calibration | None:
    """The committed calibration table, or ``None`` if the RTL has not produced one."""
    data = synth_table.read_table()
    return None if data is None else parse_table(data)


def _instances(unit: str, cfg: AcceleratorConfig) -> int:
    return synth_table.instances(unit, cfg)


def shadow_weight_extra(cfg: AcceleratorConfig) -> dict[str, float]:
    """Resources ``array.shadow_weights`` adds to the calibrated design, counted from the
    mechanism (docs/architecture.md 4.1), an estimate: the calibration table was
    synthesised without it. The RTL builds it; its synthesised ``vcu1525`` PE cell is
    +66 LUT and +2 FF per PE against ``array.shadow_weights = false``, where this counts
    +38 LUT and +2 FF (``docs/rtl.md``; the chain heads are glue per-unit synthesis does
    not count). The shadow register itself is already in every PE
    (interleaved WS double-buffers weights today); the row-wave load adds per PE a 2-bit
    wave token (shift enable, last step) and a 2:1 mux on the shadow register's input (from
    the left neighbour instead of from above), and per load chain (R x ports) a head
    register of one chunk (P slots of value and index bits) fed by its weight bank. Mux
    bits are counted as one LUT per two bits (a LUT6 holds two 2:1 muxes sharing the
    select)."""
    a = cfg.array
    if not a.shadow_weights:
        return {}
    slot_bits = cfg.numerics.operand.bytes * 8 + max(
        [1] + [p.index_bits for p in a.patterns])
    chunk_bits = a.macs_per_pe * slot_bits
    chains = a.rows * min(a.weight_load_ports, a.cols)
    return {"ff": a.pes * 2 + chains * chunk_bits,
            "lut": a.pes * ceil_div(chunk_bits, 2)}


@dataclass(frozen=True)
class AreaModel:
    """Fitted per-instance coefficients, per unit and resource, for one operand type."""

    dtype: str
    coefficients: tuple[tuple[str, tuple[tuple[str, tuple[float, ...]], ...]], ...]

    def per_unit(self, cfg: AcceleratorConfig,
                 instances: Callable[[str, AcceleratorConfig], int] = _instances
                 ) -> dict[str, tuple[int, dict[str, float]]]:
        """Per synthesis unit: (instances, predicted resources of one instance)."""
        out = {}
        for unit, per_resource in self.coefficients:
            feats = UNIT_FEATURES[unit](cfg)
            x = np.array([feats[f] for f in sorted(feats)])
            out[unit] = (instances(unit, cfg),
                         {r: max(0.0, float(x @ np.array(coef))) for r, coef in per_resource})
        return out

    def estimate(self, cfg: AcceleratorConfig,
                 instances: Callable[[str, AcceleratorConfig], int] = _instances) -> Resources:
        totals = dict.fromkeys(RESOURCES, 0.0)
        for n, each in self.per_unit(cfg, instances).values():
            for r in RESOURCES:
                totals[r] += n * each[r]
        for r, v in shadow_weight_extra(cfg).items():
            totals[r] += v
        return Resources(round(totals["lut"]), round(totals["ff"]),
                         round(totals["dsp"]), round(totals["bram"], 1))


def fit(points: tuple[CalibrationPoint, ...], dtype: str) -> AreaModel:
    """Least-squares per-instance coefficients of every unit from the points of operand type
    ``dtype``. A feature that does not vary over the samples of its unit is not separable
    from the constant and raises, like too few points for the coefficients: the model does
    not extrapolate along a direction it was never shown."""
    pts = [p for p in points if p.config.numerics.dtype == dtype]
    if not pts:
        raise ValueError(f"no calibration points for operand type {dtype!r}")
    coefficients = []
    for unit, features in UNIT_FEATURES.items():
        samples = [u for p in pts for u in p.units if u.unit == unit]
        if not samples:
            raise ValueError(f"no calibration samples of unit {unit!r} for {dtype}")
        names = sorted(features(samples[0].config))
        X = np.array([[features(s.config)[f] for f in names] for s in samples])
        for j, f in enumerate(names):
            if f != "fixed" and np.ptp(X[:, j]) == 0:
                raise ValueError(f"{unit}: feature {f} does not vary over the {dtype} "
                                 f"calibration points")
        if np.linalg.matrix_rank(X) < len(names):
            raise ValueError(f"{unit}: {len(samples)} {dtype} samples cannot fit "
                             f"{len(names)} coefficients")
        per_resource = []
        for r in RESOURCES:
            y = np.array([getattr(s.each, r) for s in samples], dtype=float)
            sol, *_ = np.linalg.lstsq(X, y, rcond=None)
            per_resource.append((r, tuple(float(c) for c in sol)))
        coefficients.append((unit, tuple(per_resource)))
    return AreaModel(dtype, tuple(coefficients))


@functools.cache
def models() -> Mapping[str, AreaModel]:
    """The fitted model per operand type that the table calibrates fully."""
    cal = calibration()
    if cal is None:
        return {}
    out = {}
    for dtype in sorted({p.config.numerics.dtype for p in cal.points}):
        try:
            out[dtype] = fit(cal.points, dtype)
        except ValueError:
            continue  # not enough points for this type: no estimate, see the docstring
    return out


def estimate(cfg: AcceleratorConfig) -> Resources | None:
    """Resources of ``cfg``, or ``None`` if its operand type is not calibrated."""
    model = models().get(cfg.numerics.dtype)
    return None if model is None else model.estimate(cfg)


def calibration_error(points: tuple[CalibrationPoint, ...] | None = None,
                      instances: Callable[[str, AcceleratorConfig], int] = _instances
                      ) -> dict[str, dict[str, float]]:
    """Leave-one-out error per operand type and resource: each point's total is predicted by
    a model fitted to the other points (skipped when those cannot fit it). Returns
    ``{dtype: {resource: mean |relative error|, resource + "_max": max, "points": n}}``;
    resources measuring 0 are skipped."""
    if points is None:
        cal = calibration()
        points = cal.points if cal is not None else ()
    out: dict[str, dict[str, float]] = {}
    for dtype in sorted({p.config.numerics.dtype for p in points}):
        pts = tuple(p for p in points if p.config.numerics.dtype == dtype)
        errs: dict[str, list[float]] = {r: [] for r in RESOURCES}
        n = 0
        for i, p in enumerate(pts):
            try:
                model = fit(pts[:i] + pts[i + 1:], dtype)
            except ValueError:
                continue
            n += 1
            est = model.estimate(p.config, instances)
            for r in RESOURCES:
                true = getattr(p.total, r)
                if true:
                    errs[r].append(abs(getattr(est, r) - true) / true)
        out[dtype] = {"points": float(n)}
        for r in RESOURCES:
            if errs[r]:
                out[dtype][r] = float(np.mean(errs[r]))
                out[dtype][f"{r}_max"] = float(np.max(errs[r]))
    return out


def unit_resources(cfg: AcceleratorConfig) -> dict[str, tuple[int, dict[str, float]]] | None:
    """Per unit (instances, resources of one instance) of ``cfg``, for the FPGA energy
    model. An operand type the table cannot fit on its own but has a point for, synthesised
    at the base configuration with only ``numerics.dtype`` changed, is predicted by the
    fitted model of a type that is calibrated at that base, times that point's per-unit,
    per-resource ratio between the two types (the type changes each unit by a constant
    factor). ``None`` when neither applies."""
    dtype = cfg.numerics.dtype
    model = models().get(dtype)
    if model is not None:
        return model.per_unit(cfg)
    cal = calibration()
    if cal is None:
        return None
    typed = [p for p in cal.points if p.config.numerics.dtype == dtype
             and p.config == p.config.replace(**{"numerics.dtype": dtype})]
    for p in typed:
        base_cfg = None
        for ref, m in models().items():
            try:
                base_cfg = p.config.replace(**{"numerics.dtype": ref})
            except ValueError:
                continue
            base = [q for q in cal.points if q.config == base_cfg]
            if not base:
                continue
            ratio = {}
            for u in p.units:
                b = next(x for x in base[0].units if x.unit == u.unit)
                ratio[u.unit] = {r: (getattr(u.each, r) / getattr(b.each, r)
                                     if getattr(b.each, r) else 1.0) for r in RESOURCES}
            est = m.per_unit(cfg.replace(**{"numerics.dtype": ref}))
            return {u: (n, {r: each[r] * ratio[u][r] for r in RESOURCES})
                    for u, (n, each) in est.items()}
    return None
