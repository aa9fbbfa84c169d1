"""The energy part of the accelerator configuration: two modes, every coefficient sourced.

``energy.mode`` picks how activity becomes energy (``docs/energy.md``):

``fpga``
    Dynamic energy from the design's FPGA resources (per unit, as the calibrated area
    model :mod:`nmsat.simulator.area` predicts them) times the activity the simulator
    counts, plus the device's static power. Coefficients: :class:`FpgaEnergyConfig`.
``asic``
    Per-action energies of a named technology node (Horowitz, ISSCC 2014, 45 nm, scaled
    to ``asic.node_nm`` and ``asic.vdd`` by the rule in :meth:`AsicEnergyConfig.scale`).
    Coefficients: :class:`AsicEnergyConfig`.

Every coefficient is an :class:`EnergyEntry`: a value, its source (a publication, or
``estimate: ...`` with the reasoning) and the range ``low .. high`` the value is known
to within, which ``benchmarks/energy_sensitivity.py`` sweeps.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError
from .types import DType

__all__ = ["ENERGY_MODES", "H45", "AsicEnergyConfig", "EnergyConfig", "EnergyEntry",
           "FpgaEnergyConfig", "entries", "unit_of"]

ENERGY_MODES: tuple[str, ...] = ("fpga", "asic")
"""Values of ``energy.mode``."""

H45 = "Horowitz, ISSCC 2014, 45 nm"


@dataclass(frozen=True)
class EnergyEntry:
    """One energy coefficient: ``value`` (unit in the field's metadata), its ``source``,
    and the range ``low .. high`` it is known to within (``low <= value <= high``).
    A source that starts with ``estimate`` must give a real range (``low < high``)."""

    value: float
    source: str
    low: float
    high: float

    def _check(self, name: str) -> None:
        for part in ("value", "low", "high"):
            v = getattr(self, part)
            if not (isinstance(v, (int, float)) and not isinstance(v, bool)
                    and math.isfinite(v) and v >= 0):
                raise ConfigError(f"energy.{name}.{part} must be a finite number >= 0, "
                                  f"not {v!r}")
        if not (isinstance(self.source, str) and self.source.strip()):
            raise ConfigError(f"energy.{name}.source must name the figure's source, "
                              f"not {self.source!r}")
        if not self.low <= self.value <= self.high:
            raise ConfigError(f"energy.{name}.value must lie in its range low .. high "
                              f"({self.low:g} .. {self.high:g}), not {self.value:g}")
        if self.source.lower().startswith("estimate") and not self.low < self.high:
            raise ConfigError(f"energy.{name} is an estimate, so it needs a range with "
                              f"low < high, not {self.low:g} .. {self.high:g}")


def _e(value: float, unit: str, source: str, low: float, high: float) -> Any:
    return field(default_factory=lambda: EnergyEntry(value, source, low, high),
                 metadata={"doc": source, "unit": unit})


@dataclass(frozen=True)
class FpgaEnergyConfig:
    """FPGA-mode coefficients for an UltraScale+ (16 nm, VCCINT 0.85 V) device.

    No public per-resource energy table exists for UltraScale+ (Xilinx Power Estimator,
    UG440, computes them internally), so most figures are estimates with wide ranges,
    derived in ``docs/energy.md`` from switched capacitance and from Horowitz's 45 nm
    SRAM figures scaled to 16 nm; the routing share is Shang et al.'s measurement."""

    static_watts: EnergyEntry = _e(
        3.5, "W",
        "estimate: XCVU9P device static power at typical process and a 50-65 C junction, "
        "the order Xilinx Power Estimator (UG440) gives for a VU9P; up to ~10 W at "
        "maximum process and 100 C junction", 2.5, 10.0)
    toggle_rate: EnergyEntry = _e(
        0.25, "toggles/cycle",
        "estimate: fraction of a busy unit's LUT and FF outputs that toggle per active "
        "cycle; the low end is Xilinx Power Estimator's default 12.5% (UG440), the high "
        "end random operand bits (50%)", 0.125, 0.5)
    lut_toggle: EnergyEntry = _e(
        0.015, "pJ",
        "estimate: one LUT6 output toggle with its local CLB wiring, 1/2 C V^2 with "
        "C ~ 15-100 fF at 0.85 V (16 nm UltraScale+); general routing is routing_factor",
        0.005, 0.04)
    ff_toggle: EnergyEntry = _e(
        0.006, "pJ", "estimate: one flip-flop output toggle (data), 1/2 C V^2 with "
        "C ~ 5-40 fF at 0.85 V; its clock pin is clock_ff", 0.002, 0.015)
    clock_ff: EnergyEntry = _e(
        0.006, "pJ/FF/cycle",
        "estimate: clock-tree energy per flip-flop per cycle (leaf clock pin and its "
        "share of the spine, every cycle: the design is not clock-gated); Shang et al. "
        "(FPGA 2002) measured clocking at 14% of Virtex-II dynamic power", 0.003, 0.012)
    routing_factor: EnergyEntry = _e(
        3.75, "x logic",
        "Shang, Kaviani & Bathala, FPGA 2002 (Virtex-II): interconnect 60% vs logic 16% "
        "of dynamic power, so routing = 3.75 x LUT+FF energy; range down to 1.5 for "
        "newer fabrics (estimate)", 1.5, 4.0)
    dsp_cycle: EnergyEntry = _e(
        1.0, "pJ",
        "estimate: one DSP48E2 active cycle (27x18 multiply + 48-bit add, random "
        "operands): Horowitz's 45 nm int32 mult 3.1 pJ scaled to 16 nm / 0.85 V (x 0.32) "
        "= 1.0 pJ; x0.5-2.5 for operand width and hard-block overhead", 0.5, 2.5)
    bram_access: EnergyEntry = _e(
        5.0, "pJ",
        "estimate: one 72-bit port access of a RAMB36E2 (4.5 KB): Horowitz's 10 pJ "
        "64-bit read of an 8 KB SRAM scaled to 16 nm / 0.85 V (x 0.32) = 3.2 pJ, x1.5 "
        "for the block's programmable ports", 2.5, 10.0)
    uram_access: EnergyEntry = _e(
        10.0, "pJ",
        "estimate: one 72-bit port access of a URAM288 (36 KB): Horowitz's 20 pJ 64-bit "
        "read of a 32 KB SRAM scaled to 16 nm / 0.85 V (x 0.32) = 6.4 pJ, x1.5 for the "
        "block's ports and cascade", 5.0, 20.0)


@dataclass(frozen=True)
class AsicEnergyConfig:
    """ASIC-mode per-action energies, given at Horowitz's 45 nm / 0.9 V and scaled to
    ``node_nm`` / ``vdd`` by :meth:`scale` (all on-chip entries; not DRAM or leakage)."""

    node_nm: int = field(default=45, metadata={
        "doc": "Technology node of the ASIC the energies are scaled to. The table is "
               f"{H45} at 0.9 V; the scaling rule is E = E45 x (node_nm / 45) x "
               "(vdd / 0.9)^2 (switched capacitance proportional to feature size, "
               "Dennard-style; docs/energy.md gives its error)", "min": 3, "max": 180})
    vdd: float = field(default=0.9, metadata={
        "doc": "Supply voltage at node_nm (Horowitz's 45 nm figures are at 0.9 V).",
        "min": 0.3, "max": 1.8})
    mac_fp16: EnergyEntry = _e(2.0, "pJ", f"{H45}: fp16 mult 1.1 + fp32 add 0.9 pJ; low end "
                               "fp16 add 0.4 instead of fp32", 1.5, 2.0)
    mac_bf16: EnergyEntry = _e(2.0, "pJ", f"estimate: no bf16 figure in {H45}; fp16's 2.0 "
                               "pJ, down to an 8-bit-mantissa mult ~0.6 + fp32 add 0.9",
                               1.5, 2.0)
    mac_int8: EnergyEntry = _e(0.3, "pJ", f"{H45}: int8 mult 0.2 + int32 add 0.1 pJ; low "
                               "end int8 add 0.03", 0.23, 0.3)
    mac_int16: EnergyEntry = _e(0.9, "pJ", f"estimate: {H45} int8 mult 0.2 scaled by "
                                "width^2 = 0.8, + int32 add 0.1 pJ", 0.6, 1.2)
    sram_read_byte_8kib: EnergyEntry = _e(
        1.25, "pJ/B", f"{H45}: 64-bit read of an 8 KB SRAM 10 pJ = 1.25 pJ/B; a buffer bank "
        "of S KiB costs this x (S / 8)^sram_size_exponent", 1.25, 1.25)
    sram_size_exponent: EnergyEntry = _e(
        0.5, "-", f"fitted to {H45}: 8 KB 10 pJ, 32 KB 20 pJ (exponent 0.50), 1 MB 100 pJ "
        "(0.46 from 32 KB): wire-dominated, CACTI-style sqrt(capacity)", 0.46, 0.5)
    sram_write_factor: EnergyEntry = _e(
        1.0, "x read", "estimate: SRAM write energy per byte over read energy (Horowitz "
        "gives reads only; CACTI writes are within -20%..+50% of reads)", 0.8, 1.5)
    register_byte: EnergyEntry = _e(
        0.1, "pJ/B", "estimate: PE pipeline register / operand forwarding per byte, a "
        "tenth of an 8 KB SRAM byte; upper end Eyeriss (Chen et al., ISCA 2016): a "
        "register-file access costs about one 16-bit MAC (~1 pJ/B)", 0.05, 1.0)
    compare: EnergyEntry = _e(0.05, "pJ", f"{H45}: 16-bit magnitude compare ~ a 16-bit add, "
                              "between int8 add 0.03 and int32 add 0.1 pJ", 0.03, 0.1)
    vector_op: EnergyEntry = _e(2.3, "pJ", f"{H45}: mean of fp32 add 0.9 and fp32 mult 3.7 pJ "
                                "(one weight-update / vector-lane operation)", 0.9, 3.7)
    leakage_watts: EnergyEntry = _e(
        0.2, "W", "estimate: leakage of ~6 MB SRAM and 1,024 MAC lanes at 45 nm (tens of "
        "uW per KB of SRAM), not scaled with the node", 0.05, 1.0)

    def scale(self) -> float:
        """The node-scaling factor applied to every on-chip entry: (node / 45) (vdd / 0.9)^2."""
        return (self.node_nm / 45.0) * (self.vdd / 0.9) ** 2

    def mac(self, dtype: DType) -> EnergyEntry:
        return {DType.FP16: self.mac_fp16, DType.BF16: self.mac_bf16,
                DType.INT8: self.mac_int8, DType.INT16: self.mac_int16}[dtype]

    def sram_read_byte(self, bank_kib: float) -> float:
        """Unscaled read energy per byte (pJ) of an SRAM bank of ``bank_kib`` KiB."""
        return (self.sram_read_byte_8kib.value
                * (bank_kib / 8.0) ** self.sram_size_exponent.value)


@dataclass(frozen=True)
class EnergyConfig:
    """How activity becomes energy: the mode and each mode's coefficients."""

    mode: str = field(default="fpga", metadata={
        "doc": "fpga: dynamic energy from the design's FPGA resources times activity, "
               "plus device static power (the vcu1525 is an FPGA board); asic: per-action "
               "energies of a technology node (docs/energy.md)."})
    dram_byte: EnergyEntry = _e(162.5, "pJ/B", f"{H45}: 64-bit DRAM access 1.3-2.6 nJ = "
                                "162.5-325 pJ/B (device and interface; both modes)",
                                162.5, 325.0)
    fpga: FpgaEnergyConfig = field(default_factory=FpgaEnergyConfig,
                                   metadata={"doc": "FPGA-mode coefficients."})
    asic: AsicEnergyConfig = field(default_factory=AsicEnergyConfig,
                                   metadata={"doc": "ASIC-mode coefficients."})

    def _check(self) -> None:
        if self.mode not in ENERGY_MODES:
            raise ConfigError(f"energy.mode must be one of {', '.join(ENERGY_MODES)}, "
                              f"not {self.mode!r}")
        for name, entry in entries(self):
            entry._check(name)


def entries(cfg: EnergyConfig) -> list[tuple[str, EnergyEntry]]:
    """(name under ``energy.``, entry) of every coefficient, e.g. ``fpga.lut_toggle``."""
    out = []
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        if isinstance(v, EnergyEntry):
            out.append((f.name, v))
        elif dataclasses.is_dataclass(v):
            out.extend((f"{f.name}.{g.name}", getattr(v, g.name))
                       for g in dataclasses.fields(v)
                       if isinstance(getattr(v, g.name), EnergyEntry))
    return out


def unit_of(name: str) -> str:
    """The unit of coefficient ``name`` (as :func:`entries` names it)."""
    obj: Any = EnergyConfig
    *parents, leaf = name.split(".")
    for p in parents:
        obj = {f.name: f for f in dataclasses.fields(obj)}[p].default_factory
    return {f.name: f for f in dataclasses.fields(obj)}[leaf].metadata["unit"]
