"""FPGA resources and devices, the synthesis calibration table and the unit instance
counts, shared by the RTL's
synthesis flow (:mod:`nmsat.rtl.synth`, which writes the table) and the area model
(:mod:`nmsat.simulator.area`, which fits to it), so neither back end imports the other.

The design is synthesised per unit (one PE cell, one SORE lane, one weight-update lane, one
bank of each buffer) and scaled by how many of each unit a configuration instantiates
(:data:`UNIT_INSTANCES`). ``nmsat rtl synth --calibrate`` writes the table
(:data:`TABLE_PATH` in this package: Yosys ``synth_xilinx`` per-unit results of generated
configurations, with the command and Yosys version that produced them).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources as importlib_resources
from typing import Any

from nmsat.config import AcceleratorConfig

__all__ = ["RESOURCES", "TABLE_PATH", "UNIT_INSTANCES", "XCVU9P", "Device", "Resources",
           "instances", "read_table"]

RESOURCES: tuple[str, ...] = ("lut", "ff", "dsp", "bram36", "uram")


@dataclass(frozen=True)
class Resources:
    """FPGA resources of a design (BRAM in RAMB36 units: a RAMB18 counts a half)."""

    lut: int = 0
    ff: int = 0
    dsp: int = 0
    bram36: float = 0.0
    uram: int = 0

    def __add__(self, other: Resources) -> Resources:
        return Resources(*(getattr(self, r) + getattr(other, r) for r in RESOURCES))

    def scale(self, k: int) -> Resources:
        return Resources(*(getattr(self, r) * k for r in RESOURCES))

    def as_dict(self) -> dict[str, float]:
        return {r: getattr(self, r) for r in RESOURCES}


@dataclass(frozen=True)
class Device:
    """An FPGA's capacity."""

    name: str
    capacity: Resources

    def utilisation(self, used: Resources) -> dict[str, float]:
        """Fraction of each resource used."""
        return {r: getattr(used, r) / getattr(self.capacity, r) for r in RESOURCES}

    def fits(self, used: Resources) -> bool:
        return all(u <= 1.0 for u in self.utilisation(used).values())


XCVU9P = Device("xcvu9p", Resources(lut=1_182_240, ff=2_364_480, dsp=6_840, bram36=2_160,
                                    uram=960))
"""Xilinx Virtex UltraScale+ VU9P (the VCU1525's FPGA)."""

TABLE_PATH = "data/synth_calibration.json"
"""The committed calibration table, relative to the ``nmsat`` package."""

UNIT_INSTANCES: dict[str, Callable[[AcceleratorConfig], int]] = {
    "pe_cell": lambda cfg: cfg.array.pes,  # one PE per array position
    "sore_lane": lambda cfg: cfg.sore.lanes,
    "wu_lane": lambda cfg: cfg.weight_update.lanes,
    "act_bank": lambda cfg: cfg.array.rows,  # one activation bank per array row
    "wgt_bank": lambda cfg: cfg.array.cols,  # one weight bank per array column
    "out_bank": lambda cfg: cfg.array.pes,  # one output bank per PE
}
"""How many of each synthesis unit a configuration instantiates."""


def instances(unit: str, cfg: AcceleratorConfig) -> int:
    """How many ``unit`` (a key of :data:`UNIT_INSTANCES`) ``cfg`` instantiates."""
    try:
        count = UNIT_INSTANCES[unit]
    except KeyError:
        raise ValueError(f"unknown synthesis unit {unit!r} (choose from "
                         f"{', '.join(UNIT_INSTANCES)})") from None
    return count(cfg)


def read_table() -> dict[str, Any] | None:
    """The committed calibration table as JSON data, or ``None`` if there is none."""
    try:
        text = importlib_resources.files("nmsat").joinpath(TABLE_PATH).read_text(
            encoding="utf-8")
    except FileNotFoundError:
        return None
    data: dict[str, Any] = json.loads(text)
    return data
