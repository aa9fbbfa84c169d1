"""Energy model: activity counts times the configuration's energy table.

The system model (:mod:`nmsat.simulator.system`) counts what each unit did while it ran
a tile program; this module turns those counts into picojoules with the per-operation
and per-byte figures of :class:`nmsat.config.EnergyConfig`. No energy figure lives in
this file: every factor is a field of ``cfg.energy`` with its documented source, so a
user swaps in measured numbers through a config file.

Components (all pJ)

``mac``
    Multiplier-lane operations of the tensor engine, at the operand type's MAC energy
    (``energy.mac_fp16`` and so on). In N:M mode only the kept weights' lanes fire, so a
    2:8 GEMM counts a quarter of the dense GEMM's MACs.
``buffer``
    Bytes read from and written to the three engine-side SRAM buffers (activation,
    weight, output) by the DMA engines and the tensor engine, at ``energy.buffer_byte``.
``register``
    Bytes moved through PE pipeline registers (operand forwarding between neighbouring
    PEs and accumulator read-modify-write), at ``energy.register_byte``.
``dram``
    Bytes transferred to or from DRAM, after burst rounding, at ``energy.dram_byte``.
``sorter``
    Magnitude comparisons in the SORE's top-N-of-M sorters, at ``energy.compare``.
``weight_update``
    fp32 operations of the weight-update vector engine, at ``energy.fp32_op``.
``static``
    ``energy.static_watts`` times the simulated wall-clock time.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from nmsat.config import AcceleratorConfig
from nmsat.types import DType

COMPONENTS: tuple[str, ...] = ("mac", "buffer", "register", "dram", "sorter", "weight_update",
                               "static")
"""Energy components in the order the CLI, JSON and reports show them."""

BUFFER_LEVELS: tuple[str, ...] = ("activation", "weight", "output")


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
    register_bytes
        Bytes through PE pipeline registers.
    dram_bytes
        Bytes transferred on the DRAM channels (burst-rounded).
    compares
        SORE magnitude comparisons.
    wu_ops
        fp32 operations of the weight-update vector engine.
    """

    macs: int = 0
    act_buffer_bytes: int = 0
    weight_buffer_bytes: int = 0
    output_buffer_bytes: int = 0
    register_bytes: int = 0
    dram_bytes: int = 0
    compares: int = 0
    wu_ops: int = 0

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise ValueError(f"ActivityCounts.{f.name} must be a non-negative integer, "
                                 f"not {v!r}")

    def __add__(self, other: ActivityCounts) -> ActivityCounts:
        if not isinstance(other, ActivityCounts):
            return NotImplemented
        return ActivityCounts(**{f.name: getattr(self, f.name) + getattr(other, f.name)
                                 for f in fields(self)})

    def scaled(self, times: int) -> ActivityCounts:
        """These counts repeated ``times`` times (``times`` >= 0)."""
        if not isinstance(times, int) or times < 0:
            raise ValueError(f"times must be a non-negative integer, not {times!r}")
        return ActivityCounts(**{f.name: getattr(self, f.name) * times for f in fields(self)})

    @property
    def buffer_bytes(self) -> int:
        return self.act_buffer_bytes + self.weight_buffer_bytes + self.output_buffer_bytes

    def to_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


ZERO_COUNTS = ActivityCounts()


@dataclass(frozen=True)
class EnergyBreakdown:
    """Energy in pJ by component; ``total`` is their sum."""

    mac: float
    buffer: float
    register: float
    dram: float
    sorter: float
    weight_update: float
    static: float

    @property
    def total(self) -> float:
        # Summed in COMPONENTS order so the total is reproducible bit for bit.
        t = 0.0
        for name in COMPONENTS:
            t += getattr(self, name)
        return t

    def to_dict(self) -> dict[str, float]:
        out = {name: getattr(self, name) for name in COMPONENTS}
        out["total"] = self.total
        return out


def static_pj(cfg: AcceleratorConfig, cycles: int) -> float:
    """Static energy in pJ over ``cycles`` engine cycles: watts x seconds x 1e12."""
    if cycles < 0:
        raise ValueError(f"cycles must be >= 0, not {cycles}")
    return cfg.energy.static_watts.pj * cycles * cfg.cycle_seconds * 1e12


def energy(counts: ActivityCounts, cfg: AcceleratorConfig, cycles: int) -> EnergyBreakdown:
    """Energy of ``counts`` plus static power over ``cycles`` cycles.

    Parameters
    ----------
    counts
        Activity of the run (or of one layer).
    cfg
        The accelerator; ``cfg.energy`` supplies every factor and ``cfg.numerics.dtype``
        picks the MAC figure.
    cycles
        Wall-clock cycles the static power is charged for.
    """
    e = cfg.energy
    dtype = DType.parse(cfg.numerics.dtype)
    return EnergyBreakdown(
        mac=counts.macs * e.mac(dtype),
        buffer=counts.buffer_bytes * e.buffer_byte.pj,
        register=counts.register_bytes * e.register_byte.pj,
        dram=counts.dram_bytes * e.dram_byte.pj,
        sorter=counts.compares * e.compare.pj,
        weight_update=counts.wu_ops * e.fp32_op.pj,
        static=static_pj(cfg, cycles),
    )
