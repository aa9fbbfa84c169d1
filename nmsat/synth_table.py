"""The synthesis calibration table and the unit instance counts, shared by the RTL's
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
from importlib import resources as importlib_resources
from typing import Any

from nmsat.config import AcceleratorConfig

__all__ = ["TABLE_PATH", "UNIT_INSTANCES", "instances", "read_table"]

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
