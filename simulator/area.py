"""FPGA resource estimate (LUT, FF, DSP, BRAM) of an accelerator config, for sweeps.

The estimate is a linear model per resource over structural counts of the config
(:func:`features`): PEs, multipliers, activation index-mux inputs, accumulator pipeline
stages, array edge length, SORE and weight-update lanes. Its coefficients are fitted by
least squares to :data:`CALIBRATION`, a committed table of Yosys ``synth_xilinx`` results
of generated configurations, each with the command that produced it; operand types are
fitted separately (an fp16 multiplier and an int8 one cost different fabric).

:func:`calibration_error` states the model's error as the leave-one-out relative error
over the table. A config whose operand type has no calibration gets no estimate
(:func:`estimate` returns ``None``): the sweep then leaves the resource columns empty
rather than report numbers nobody measured.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from nmsat import config as nmconfig
from nmsat.config import AcceleratorConfig

RESOURCES: tuple[str, ...] = ("lut", "ff", "dsp", "bram")

FEATURES: tuple[str, ...] = ("fixed", "pes", "multipliers", "mux_inputs", "acc_stages",
                             "edge", "sore_lanes", "wu_lanes", "buffer_bram36")
"""Structural counts the resources are linear in (see :func:`features`)."""


def features(cfg: AcceleratorConfig) -> dict[str, float]:
    """The structural counts of ``cfg`` that the model is linear in.

    ``mux_inputs`` = multipliers x A (each multiplier's A:1 activation mux);
    ``acc_stages`` = PEs x La (the accumulator pipeline, La accumulators per PE under
    interleave mapping); ``edge`` = rows + cols (operand feeders and skew registers);
    ``buffer_bram36`` = :func:`buffer_bram36`.
    """
    a = cfg.array
    mults = a.pes * a.macs_per_pe
    return {
        "fixed": 1.0,
        "pes": float(a.pes),
        "multipliers": float(mults),
        "mux_inputs": float(mults * a.act_window),
        "acc_stages": float(a.pes * a.acc_latency),
        "edge": float(a.rows + a.cols),
        "sore_lanes": float(cfg.sore.lanes),
        "wu_lanes": float(cfg.weight_update.lanes),
        "buffer_bram36": float(buffer_bram36(cfg)),
    }


def buffer_bram36(cfg: AcceleratorConfig) -> int:
    """RAMB36 blocks the three buffers need in Xilinx's mapping of a simple dual-port
    memory: per bank, ceil(width / 72 bits) x ceil(depth / 512) blocks in the 512 x 72
    shape (UltraScale+ RAMB36E2), width = ``bank_bytes_per_cycle`` bytes."""
    total = 0
    for b in (cfg.buffers.activation, cfg.buffers.weight, cfg.buffers.output):
        width_bits = 8 * b.bank_bytes_per_cycle
        depth = math.ceil(b.bytes / b.banks / b.bank_bytes_per_cycle)
        total += b.banks * math.ceil(width_bits / 72) * math.ceil(depth / 512)
    return total


@dataclass(frozen=True)
class Resources:
    """FPGA resources: LUTs, flip-flops, DSP slices and RAMB36 blocks."""

    lut: int
    ff: int
    dsp: int
    bram: int

    def __post_init__(self) -> None:
        for name in RESOURCES:
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise ValueError(f"{name} must be a non-negative integer, not {v!r}")

    def as_dict(self) -> dict[str, int]:
        return {r: getattr(self, r) for r in RESOURCES}


@dataclass(frozen=True)
class CalibrationPoint:
    """One synthesised configuration: changes to a preset, what Yosys reported, and the
    command that reproduces it."""

    preset: str
    changes: tuple[tuple[str, Any], ...]
    resources: Resources
    command: str

    @functools.cached_property
    def config(self) -> AcceleratorConfig:
        return nmconfig.preset(self.preset).replace(**dict(self.changes))


CALIBRATION: tuple[CalibrationPoint, ...] = ()
"""Yosys synthesis results the model is fitted to (see the module docstring)."""


@dataclass(frozen=True)
class AreaModel:
    """Per-resource linear coefficients over :data:`FEATURES` for one operand type."""

    dtype: str
    coefficients: tuple[tuple[str, tuple[float, ...]], ...]

    def estimate(self, cfg: AcceleratorConfig) -> Resources:
        x = np.array([features(cfg)[f] for f in FEATURES])
        coef = dict(self.coefficients)
        return Resources(**{r: max(0, int(round(float(x @ np.array(coef[r])))))
                            for r in RESOURCES})


def fit(points: tuple[CalibrationPoint, ...], dtype: str) -> AreaModel:
    """Least-squares coefficients from the calibration points of operand type ``dtype``.

    Features that do not vary over the points (other than ``fixed``) cannot be separated
    from the constant and get coefficient 0. Raises ``ValueError`` if there are fewer
    points than free coefficients.
    """
    pts = [p for p in points if p.config.numerics.dtype == dtype]
    if not pts:
        raise ValueError(f"no calibration points for operand type {dtype!r}")
    X = np.array([[features(p.config)[f] for f in FEATURES] for p in pts])
    free = [0] + [j for j in range(1, len(FEATURES)) if np.ptp(X[:, j]) > 0]
    if len(pts) < len(free):
        raise ValueError(f"{len(pts)} calibration points cannot fit {len(free)} coefficients "
                         f"for {dtype}")
    coefficients = []
    for r in RESOURCES:
        y = np.array([getattr(p.resources, r) for p in pts], dtype=float)
        sol, *_ = np.linalg.lstsq(X[:, free], y, rcond=None)
        full = np.zeros(len(FEATURES))
        full[free] = sol
        coefficients.append((r, tuple(float(c) for c in full)))
    return AreaModel(dtype, tuple(coefficients))


@functools.cache
def models() -> Mapping[str, AreaModel]:
    """The fitted model per calibrated operand type."""
    dtypes = sorted({p.config.numerics.dtype for p in CALIBRATION})
    return {d: fit(CALIBRATION, d) for d in dtypes}


def estimate(cfg: AcceleratorConfig) -> Resources | None:
    """Resources of ``cfg``, or ``None`` if its operand type has no calibration."""
    model = models().get(cfg.numerics.dtype)
    return None if model is None else model.estimate(cfg)


def calibration_error(points: tuple[CalibrationPoint, ...] = CALIBRATION
                      ) -> dict[str, dict[str, float]]:
    """Leave-one-out error per operand type and resource: each point is predicted by a
    model fitted to the others. Returns ``{dtype: {resource: mean |relative error|,
    resource + "_max": max |relative error|}}`` (points measuring 0 are skipped)."""
    out: dict[str, dict[str, float]] = {}
    for dtype in sorted({p.config.numerics.dtype for p in points}):
        pts = tuple(p for p in points if p.config.numerics.dtype == dtype)
        errs: dict[str, list[float]] = {r: [] for r in RESOURCES}
        for i, p in enumerate(pts):
            try:
                model = fit(pts[:i] + pts[i + 1:], dtype)
            except ValueError:
                continue
            est = model.estimate(p.config)
            for r in RESOURCES:
                true = getattr(p.resources, r)
                if true:
                    errs[r].append(abs(getattr(est, r) - true) / true)
        out[dtype] = {}
        for r in RESOURCES:
            if errs[r]:
                out[dtype][r] = float(np.mean(errs[r]))
                out[dtype][f"{r}_max"] = float(np.max(errs[r]))
    return out
