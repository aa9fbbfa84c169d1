"""The accelerator configuration: one frozen, validated dataclass tree.

Every number that models hardware is a named field here, with its source or the
reasoning behind it in the field's ``doc`` metadata (shown by ``nmsat config
show``) and in ``docs/config.md``. The simulator, dataflow compiler, RTL generator
and tests all read the same object.

Presets are deltas on :data:`VCU1525` made with :func:`dataclasses.replace`.
Files are TOML, YAML or JSON; unknown keys, duplicate keys and out-of-range values are
rejected with a :class:`~nmsat.errors.ConfigError` that names the field and value.
"""

from __future__ import annotations

import dataclasses
import json
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .energy_config import EnergyConfig, EnergyEntry
from .errors import ConfigError
from .fileio import LIMITS, InputError, parse_structured, read_text
from .types import NM, ActZero, Dataflow, DType

__all__ = ["ACT_LAYOUTS", "DMA_LAYOUTS", "DRAM_MODELS", "PRESETS", "SMALL", "VCU1525",
           "AcceleratorConfig",
           "ArrayConfig", "BufferConfig", "BuffersConfig", "DramConfig", "NumericsConfig",
           "SoreConfig", "WeightUpdateConfig", "describe", "dumps", "from_dict", "load", "preset",
           "resolve", "save", "to_dict", "validate"]


def _f(default: Any, doc: str, lo: float | None = None, hi: float | None = None, **kw: Any) -> Any:
    """A config field with a doc string (source/reasoning) and an inclusive valid range."""
    return field(default=default, metadata={"doc": doc, "min": lo, "max": hi}, **kw)


# --------------------------------------------------------------------------- units


@dataclass(frozen=True)
class ArrayConfig:
    """The N:M sparse tensor engine: a rows x cols array of PEs (see docs/architecture.md)."""

    rows: int = _f(16, "PE rows. Decided: 16x16 PEs x 4 multipliers = 1,024 fp16 MACs/cycle, "
                   "which leaves DSP, LUT and BRAM headroom on the XCVU9P for the fp32 adders, "
                   "index muxes, SORE and weight-update engine.", 1, 256)
    cols: int = _f(16, "PE columns (see rows).", 1, 256)
    macs_per_pe: int = _f(4, "Multipliers per PE (P): a PE reduces P products per cycle with an "
                          "adder tree. Decided; 4 lets 4:8 run at one group per cycle.", 1, 64)
    act_window: int = _f(16, "Activation window (A): how many consecutive activations each "
                         "multiplier's A:1 index mux can select from per cycle. A = 4P gives the "
                         "full M/N = 4x at 2:8 and 1:4; 1:8 is capped at A/P = 4x.", 1, 256)
    nm_patterns: tuple[str, ...] = _f(("1:4", "2:4", "1:8", "2:8", "4:8"),
                                      "N:M patterns the index muxes and control support "
                                      "(dense is always supported).")
    dataflows: tuple[str, ...] = _f(("os", "ws"), "Dataflows the flexible systolic interconnect "
                                    "can switch between at run time.")
    acc_latency: int = _f(4, "Pipeline depth in cycles of the accumulate adder (fp32 add on "
                          "UltraScale+ LUT/DSP fabric at 200 MHz needs 3-4 stages; decided 4). "
                          "Without interleave mapping a dependent accumulation waits this long. "
                          "The RTL fills these cycles with the PE's whole path (multipliers, "
                          "product tree, accumulate add; rtl/pe.dot_stages): about 48 MHz at 4 "
                          "by the synthesis estimate, docs/rtl.md.",
                          1, 16)
    act_zero: str = _f("none", "Zero-activation handling in the PE: none, gate (a zero-detect "
                       "on the activation operand gates the multiplier: MAC energy only) or "
                       "skip (gate, and in WS the feeder skips an activation row whose whole "
                       "K-tile slice is zero). Decided: none, as SAT states no activation "
                       "sparsity; docs/architecture.md section 3.3.")
    shadow_weights: bool = _f(True, "WS shadow-weight preload (docs/architecture.md 4.1): "
                              "each PE's second (shadow) weight register is loaded along its "
                              "PE row, one column per step, right behind the current tile's "
                              "swap wave, and WS blocks run K-tile outer / column tile inner, "
                              "so an interleaved WS tile costs max(m, ceil(C / "
                              "weight_load_ports)) steps instead of at least (R - 1) La + R + "
                              "C - 1 (TPU/Gemmini-style double-buffered weights; Gemmini "
                              "spends about 8 cycles per 8x8 block on a batch-1 FC layer). "
                              "Off: the shadow chain loads down the columns after the whole "
                              "array has swapped. Decided: on for vcu1525 (batch-1 decode then "
                              "runs at DRAM speed), off for small (its RTL tests keep the "
                              "column chain; the RTL builds both, docs/rtl.md).")
    weight_load_ports: int = _f(4, "Shadow weight load chains per PE row with shadow_weights: "
                                "the row's C shadow registers are split into this many chains "
                                "of ceil(C / ports) columns, each fed by its own weight-buffer "
                                "bank, so the array ingests R x ports weight chunks per cycle. "
                                "Decided 4 for vcu1525: 64 chunks/cycle = 512 B of fp16 values "
                                "(576 B with 2:4 indices), twice the 256 B/cycle of its four "
                                "DDR4 channels, so dense and N:M GEMVs are both DRAM-bound and "
                                "the N:M speedup stays under the weight-byte ratio (2 ports "
                                "match DRAM exactly: the dense baseline turns array-bound and "
                                "the speedup exceeds the byte ratio). Ignored without "
                                "shadow_weights; more ports than columns act as one per "
                                "column.", 1, 256)

    @property
    def pes(self) -> int:
        return self.rows * self.cols

    @property
    def peak_macs_per_cycle(self) -> int:
        """Dense multiply-accumulates per cycle of the whole array."""
        return self.rows * self.cols * self.macs_per_pe

    @property
    def patterns(self) -> tuple[NM, ...]:
        return tuple(NM.parse(p) for p in self.nm_patterns)

    def groups_per_cycle(self, nm: NM) -> int:
        """N:M groups one PE consumes per cycle (:meth:`NM.groups_per_chunk`); 0 if dense
        or unsupported."""
        if nm.dense:
            return 0
        return nm.groups_per_chunk(self.macs_per_pe, self.act_window)

    def k_per_cycle(self, nm: NM) -> int:
        """Reduction-axis (K) elements one PE consumes per cycle in mode ``nm``.

        Dense: P. N:M: groups_per_cycle * M. Raises if ``nm`` is not supported.
        """
        if nm.dense:
            return self.macs_per_pe
        if nm not in self.patterns:
            raise ConfigError(f"N:M pattern {nm} is not supported by this array "
                              f"(array.nm_patterns = {', '.join(self.nm_patterns)})")
        return nm.k_per_chunk(self.macs_per_pe, self.act_window)

    def sparse_speedup(self, nm: NM) -> float:
        """Peak sparse-over-dense throughput ratio of the engine for ``nm``."""
        return self.k_per_cycle(nm) / self.macs_per_pe

    def _check(self) -> None:
        if self.act_window < self.macs_per_pe:
            raise ConfigError(f"array.act_window must be at least macs_per_pe "
                              f"({self.macs_per_pe}), not {self.act_window}")
        for p in self.nm_patterns:
            try:
                nm = NM.parse(p)
            except ValueError as e:
                raise ConfigError(f"array.nm_patterns: {e}") from None
            if nm.dense:
                raise ConfigError(f"array.nm_patterns: {p} is dense; dense is always supported")
            if p != str(nm):  # what simulations and the RTL compare against
                raise ConfigError(f"array.nm_patterns: write {p!r} as {str(nm)!r} "
                                  f"(canonical N:M, no spaces or leading zeros)")
            if self.groups_per_cycle(nm) < 1:
                raise ConfigError(
                    f"array.nm_patterns: {p} needs N <= macs_per_pe and M <= act_window "
                    f"(macs_per_pe={self.macs_per_pe}, act_window={self.act_window})")
        if len(set(self.nm_patterns)) != len(self.nm_patterns):
            raise ConfigError(f"array.nm_patterns has duplicates: {list(self.nm_patterns)}")
        try:
            ActZero.parse(self.act_zero)
        except ValueError as e:
            raise ConfigError(f"array.act_zero: {e}") from None
        if not self.dataflows:
            raise ConfigError("array.dataflows must name at least one of os, ws")
        for d in self.dataflows:
            try:
                Dataflow.parse(d)
            except ValueError as e:
                raise ConfigError(f"array.dataflows: {e}") from None


@dataclass(frozen=True)
class NumericsConfig:
    """Operand and accumulator types of the tensor engine."""

    dtype: str = _f("fp16", "Engine operand type: int8 or int16 (int32 accumulate), fp16 or "
                    "bf16 (fp32 accumulate). SAT trains in fp16 with fp32 master weights.")
    master_dtype: str = _f("fp32", "Master-weight type in the weight-update engine (AMP-style).")

    @property
    def operand(self) -> DType:
        return DType.parse(self.dtype)

    def _check(self) -> None:
        try:
            DType.parse(self.dtype)
        except ValueError as e:
            raise ConfigError(f"numerics.dtype: {e}") from None
        if self.master_dtype != "fp32":
            raise ConfigError(f"numerics.master_dtype must be fp32, not {self.master_dtype!r}")


@dataclass(frozen=True)
class BufferConfig:
    """One on-chip SRAM buffer."""

    kib: int = _f(1024, "Capacity in KiB (both halves when double buffered).", 1, 1 << 20)
    banks: int = _f(16, "Independent banks (one per array row or column edge).", 1, 1024)
    bank_bytes_per_cycle: int = _f(16, "Bytes one bank delivers per cycle per port. A LOAD "
                                   "or STORE streams through the buffer's DMA port at banks "
                                   "x this (transfers of one buffer take turns); the "
                                   "presets' ports are at least as fast as DRAM.", 1, 4096)
    ports: int = _f(2, "Ports per bank (1 or 2: true dual-port BRAM/URAM). With 2 the DMA has "
                    "a port of its own; with 1 it shares the engine's and gets every other "
                    "cycle.", 1, 2)
    double_buffered: bool = _f(True, "Two halves: DMA fills one while the engine uses the other.")

    @property
    def bytes(self) -> int:
        return self.kib * 1024

    @property
    def halves(self) -> int:
        """Ring size: 2 halves when double buffered (the DMA fills one while the engine uses
        the other), else 1."""
        return 2 if self.double_buffered else 1

    @property
    def usable_bytes(self) -> int:
        """Bytes one tile may occupy: one half of the buffer."""
        return self.bytes // self.halves

    @property
    def bytes_per_cycle(self) -> int:
        return self.banks * self.bank_bytes_per_cycle * self.ports


ACT_LAYOUTS = ("fmap", "windows")
"""Values of ``buffers.act_layout``."""


@dataclass(frozen=True)
class BuffersConfig:
    """The three engine-side buffers. Sizes: XCVU9P has 960 URAM (36 KiB each, 33.75 MiB) and
    2,160 BRAM36 (4.5 KiB each, 9.5 MiB); 3 x 2 MiB = 6 MiB uses under a fifth of that."""

    activation: BufferConfig = field(default_factory=lambda: BufferConfig(kib=2048),
                                     metadata={"doc": "Activation (left operand) buffer."})
    weight: BufferConfig = field(default_factory=lambda: BufferConfig(kib=2048),
                                 metadata={"doc": "Weight (right, N:M) operand buffer; holds "
                                           "compressed values and indices."})
    output: BufferConfig = field(default_factory=lambda: BufferConfig(kib=2048),
                                 metadata={"doc": "Output / fp32 partial-sum buffer."})
    act_layout: str = _f(
        "fmap", "What the activation buffer holds: fmap (a convolution's input rows, from "
        "which the feeder forms im2col windows as it reads; dense chunks packed P to a "
        "chunk: blocks are limited by bytes) or windows (one A-element window per (im2col "
        "row, chunk) in R diagonal banks, formed by the DMA as it writes: blocks are also "
        "limited to those words). Decided: fmap, the design the simulator models; the RTL "
        "implements windows (docs/rtl.md), so the small preset uses it.")

    def _check(self) -> None:
        if self.act_layout not in ACT_LAYOUTS:
            raise ConfigError(f"buffers.act_layout must be one of {', '.join(ACT_LAYOUTS)}, "
                              f"not {self.act_layout!r}")


DRAM_MODELS = ("simple", "row_buffer")
"""Values of ``dram.model`` (``nmsat.dataflow.memory`` implements them)."""

DMA_LAYOUTS = ("packed", "word_slots")
"""Values of ``dram.dma`` (``nmsat.dataflow.machine.dma_bytes`` implements them)."""


@dataclass(frozen=True)
class DramConfig:
    """Off-chip memory. VCU1525: four DDR4-2400 x72 (64-bit data) channels, 19.2 GB/s peak each."""

    channels: int = _f(4, "DDR4 channels (VCU1525 has four).", 1, 64)
    bytes_per_cycle: int = _f(64, "Sustained bytes per accelerator cycle per channel: 19.2 GB/s "
                              "peak x ~0.67 efficiency = 12.8 GB/s = 64 B/cycle at 200 MHz.",
                              1, 4096)
    latency_cycles: int = _f(40, "Request-to-first-data latency in accelerator cycles: ~200 ns "
                             "through the MIG controller and interconnect at 200 MHz.", 0, 10000)
    burst_bytes: int = _f(64, "Transfer granularity: a 64-byte burst (BL8 x 64-bit).", 1, 4096)
    model: str = _f("simple", "DRAM timing model (nmsat.dataflow.memory): simple (latency, "
                    "then each channel's bus at bytes_per_cycle) or row_buffer (also banks "
                    "with an open row each: a transfer opens its rows with a precharge and "
                    "activate, the next row's bank activated while a row streams). Decided: "
                    "simple, the model the presets' figures were measured with.")
    dma: str = _f("packed", "The DMA's DRAM layout and request path "
                  "(nmsat.dataflow.machine.dma_bytes, docs/simulator.md, 'The DMA'): packed "
                  "(a LOAD or STORE moves its tile's elements in their element type, index "
                  "bits packed, one transfer requested in the cycle it issues: a DMA that "
                  "packs and unpacks the engine's words) or word_slots (the DMA of the RTL "
                  "accelerator top, rtl/top.py: the engine's buffer words in power-of-two "
                  "slots of at least one bus beat, one run per tile row, column tile or row "
                  "block, each run whole DRAM bursts from its start, and the top's "
                  "address pipeline). Decided: packed, the design the presets' figures were "
                  "measured with.")
    banks: int = _f(16, "Banks per channel (row_buffer model): DDR4 x8 devices have 16 banks "
                    "in 4 bank groups (Micron DDR4 SDRAM datasheet, Features).", 1, 256)
    row_bytes: int = _f(8192, "Bytes of one open row per channel (row_buffer model): a 1 KB "
                        "page per x8 device (Micron DDR4 datasheet, Addressing table) x 8 "
                        "devices on a 64-bit channel.", 1, 1 << 20)
    t_rp_cycles: int = _f(3, "Precharge (tRP) in accelerator cycles (row_buffer model): "
                          "DDR4-2400 at 17-17-17 (Micron 4Gb/8Gb DDR4 SDRAM datasheet, table "
                          "'DDR4-2400 Speed Bins', grade -083) has tRP = 14.16 ns = 2.8 cycles "
                          "of 5 ns at 200 MHz, rounded up.", 0, 1000)
    t_rcd_cycles: int = _f(3, "Activate to read (tRCD) in accelerator cycles (row_buffer "
                           "model): 14.16 ns at DDR4-2400 17-17-17 (same table as "
                           "t_rp_cycles) = 3 cycles. The column latency (CL) is part of "
                           "latency_cycles.", 0, 1000)

    @property
    def total_bytes_per_cycle(self) -> int:
        return self.channels * self.bytes_per_cycle

    def _check(self) -> None:
        if self.model not in DRAM_MODELS:
            raise ConfigError(f"dram.model must be one of {', '.join(DRAM_MODELS)}, "
                              f"not {self.model!r}")
        if self.dma not in DMA_LAYOUTS:
            raise ConfigError(f"dram.dma must be one of {', '.join(DMA_LAYOUTS)}, "
                              f"not {self.dma!r}")


@dataclass(frozen=True)
class SoreConfig:
    """Sparse online reduction engine: per lane a streaming top-N-of-M sorter."""

    lanes: int = _f(32, "Parallel sorter lanes (32, from reading notes on the SAT paper).", 1, 1024)
    cycles_per_weight: int = _f(1, "Cycles a lane spends per weight it reads: a group of M "
                                "weights takes M cycles (reading notes: M cycles per group).",
                                1, 16)
    pipeline_latency: int = _f(4, "Cycles from a group's last weight to its mask leaving the lane "
                               "(compare-swap network drain). Decided.", 0, 64)


@dataclass(frozen=True)
class WeightUpdateConfig:
    """Weight-update vector engine: fp32 master weights, fp16 working copy (AMP-style)."""

    lanes: int = _f(16, "fp32 lanes; 16 x 4 B = 64 B/cycle matches one DDR channel's share. "
                    "Decided.", 1, 1024)
    pipeline_latency: int = _f(8, "Cycles through the fp32 multiply-add pipeline. Decided.", 0, 64)
    momentum: float = _f(0.9, "SGD momentum used by the reference update and counted as one "
                         "extra fp32 state read and write per weight.", 0.0, 1.0)


@dataclass(frozen=True)
class AcceleratorConfig:
    """A SAT-class accelerator. Build with keyword deltas on a preset, or load a file."""

    name: str = _f("vcu1525", "Preset or user name of this configuration.")
    clock_mhz: float = _f(200.0, "Engine clock. Decided: 200 MHz, typical of fp16 systolic arrays "
                          "on UltraScale+ (the SAT paper's clock is not known).", 1.0, 5000.0)
    array: ArrayConfig = field(default_factory=ArrayConfig, metadata={"doc": "Tensor engine."})
    numerics: NumericsConfig = field(default_factory=NumericsConfig,
                                     metadata={"doc": "Operand and accumulator types."})
    buffers: BuffersConfig = field(default_factory=BuffersConfig,
                                   metadata={"doc": "On-chip buffers."})
    dram: DramConfig = field(default_factory=DramConfig, metadata={"doc": "Off-chip memory."})
    sore: SoreConfig = field(default_factory=SoreConfig,
                             metadata={"doc": "Sparse online reduction engine."})
    weight_update: WeightUpdateConfig = field(default_factory=WeightUpdateConfig,
                                              metadata={"doc": "Weight-update vector engine."})
    energy: EnergyConfig = field(default_factory=EnergyConfig,
                                 metadata={"doc": "Energy model: mode and coefficients."})

    def __post_init__(self) -> None:
        validate(self)

    @property
    def cycle_seconds(self) -> float:
        return 1e-6 / self.clock_mhz

    def bank_words(self, elem_bytes: int | None = None) -> dict[str, int]:
        """Words per bank in one half of the engine's word-organised buffers
        (``rtl/engine.py``; a double-buffered bank holds two such halves, one block each),
        keyed by config field: ``buffers.activation``, R banks of A-element windows;
        ``buffers.weight``, C banks of P (value, index) slots (a byte for the index;
        with ``array.shadow_weights`` the engine spreads a column's words over R banks and
        the compiler counts them in whole K-tiles of R chunks); ``buffers.output``,
        R x C banks of fp32/int32 words. At least 2 each.
        ``elem_bytes``: operand bytes (default the configured operand type's)."""
        a, b = self.array, self.buffers
        e = elem_bytes or self.numerics.operand.bytes
        return {"buffers.activation": max(2, b.activation.usable_bytes
                                          // (a.rows * a.act_window * e)),
                "buffers.weight": max(2, b.weight.usable_bytes
                                      // (a.cols * a.macs_per_pe * (e + 1))),
                "buffers.output": max(2, b.output.usable_bytes // (a.rows * a.cols * 4))}

    def replace(self, **changes: Any) -> AcceleratorConfig:
        """A copy with dotted-path changes, e.g. ``cfg.replace(**{"array.rows": 8})``."""
        data = to_dict(self)
        for path, value in changes.items():
            node = data
            *parents, leaf = path.split(".")
            for p in parents:
                if not isinstance(node, dict) or p not in node:
                    raise ConfigError(f"unknown config field {path!r}")
                node = node[p]
            if not isinstance(node, dict) or leaf not in node:
                raise ConfigError(f"unknown config field {path!r}")
            node[leaf] = value
        return from_dict(data)


# --------------------------------------------------------------------------- validation


def _walk(obj: Any, prefix: str = ""):
    """Yield (dotted name, dataclass field, value) for every leaf field."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        name = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value) and not isinstance(value, EnergyEntry):
            yield from _walk(value, name + ".")
        else:
            yield name, f, value


def validate(cfg: AcceleratorConfig) -> None:
    """Raise :class:`ConfigError` naming the first invalid field and its value."""
    for name, f, value in _walk(cfg):
        _check_type(name, _hints(type(_owner(cfg, name)))[f.name], value)
        lo, hi = f.metadata.get("min"), f.metadata.get("max")
        if lo is not None and value < lo or hi is not None and value > hi:
            raise ConfigError(f"{name} must be between {_num(lo)} and {_num(hi)}, not {value!r}")
    cfg.array._check()
    cfg.numerics._check()
    cfg.buffers._check()
    cfg.dram._check()
    cfg.energy._check()


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    """The resolved field types of a config dataclass (resolved once per class: a sweep
    builds a config per point)."""
    hints = _HINTS.get(cls)
    if hints is None:
        hints = _HINTS[cls] = typing.get_type_hints(cls)
    return hints


def _num(v: float | None) -> str:
    """A range limit as written: ints in full (1048576, not 1.04858e+06), floats short."""
    return str(v) if v is None or isinstance(v, int) else f"{v:g}"


def _owner(cfg: Any, dotted: str) -> Any:
    obj = cfg
    for part in dotted.split(".")[:-1]:
        obj = getattr(obj, part)
    return obj


def _check_type(name: str, hint: Any, value: Any) -> None:
    origin = typing.get_origin(hint)
    if hint is bool:
        ok = isinstance(value, bool)
    elif hint is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif hint is float:
        ok = (isinstance(value, (int, float)) and not isinstance(value, bool)
              and math.isfinite(value))
    elif hint is str:
        ok = isinstance(value, str)
    elif origin is tuple:
        ok = isinstance(value, tuple) and all(isinstance(v, str) for v in value)
    elif hint is EnergyEntry:
        ok = isinstance(value, EnergyEntry)
    else:  # pragma: no cover - a new field type must be added above
        raise TypeError(f"no validator for {name}: {hint}")
    if not ok:
        if origin is tuple:  # files hold lists; say so rather than "tuple"
            shown = list(value) if isinstance(value, tuple) else value
            raise ConfigError(f"{name} must be a list of strings, not {shown!r}")
        expected = getattr(hint, "__name__", str(hint))
        raise ConfigError(f"{name} must be of type {expected}, not {value!r}")


# --------------------------------------------------------------------------- dict / file I/O


def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain nested dict (tuples become lists) suitable for TOML, YAML and JSON."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        if dataclasses.is_dataclass(v):
            out[f.name] = to_dict(v)
        elif isinstance(v, tuple):
            out[f.name] = list(v)
        else:
            out[f.name] = v
    return out


def _build(cls: type, data: Any, prefix: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'} must be a table, not {data!r}")
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(known), key=str)
    if unknown:
        raise ConfigError(f"unknown config field '{prefix}{unknown[0]}'"
                          f" (known: {', '.join(sorted(known))})")
    hints = _hints(cls)
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        hint = hints[name]
        factory = known[name].default_factory
        if hint is EnergyEntry and isinstance(value, dict) and callable(factory):
            value = {**to_dict(factory()), **value}  # a partial entry keeps the rest
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            kwargs[name] = _build(hint, value, f"{prefix}{name}.")
        elif typing.get_origin(hint) is tuple:
            if not isinstance(value, (list, tuple)):
                raise ConfigError(f"{prefix}{name} must be a list, not {value!r}")
            kwargs[name] = tuple(value)
        else:
            kwargs[name] = value
    try:
        return cls(**kwargs)
    except TypeError as e:  # pragma: no cover - guarded by the unknown-key check
        raise ConfigError(f"{prefix.rstrip('.')}: {e}") from None


def from_dict(data: dict[str, Any], base: AcceleratorConfig | None = None) -> AcceleratorConfig:
    """Build a validated config. With ``base``, ``data`` holds only changes to it.

    A file may also say ``preset = "small"`` to start from that preset.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"config must be a table of fields, not {data!r}")
    data = dict(data)
    if "preset" in data:
        preset_name = data.pop("preset")
        if not isinstance(preset_name, str):
            raise ConfigError(f"preset must be a name, not {preset_name!r}")
        base = preset(preset_name)
    if base is not None:
        data = _merge(to_dict(base), data, "")
    # Validation of the whole tree happens in AcceleratorConfig.__post_init__, after the
    # nested pieces are built; type errors there name the dotted field.
    return _build(AcceleratorConfig, data, "")


def _merge(base: dict[str, Any], changes: dict[str, Any], prefix: str) -> dict[str, Any]:
    out = dict(base)
    for k, v in changes.items():
        if k not in base:
            raise ConfigError(f"unknown config field {prefix + k!r}")
        if isinstance(base[k], dict) and isinstance(v, dict):
            out[k] = _merge(base[k], v, f"{prefix}{k}.")
        else:
            out[k] = v
    return out


def load(path: str | Path) -> AcceleratorConfig:
    """Load a TOML (``.toml``), YAML (``.yaml``/``.yml``) or JSON (``.json``) config file."""
    p = Path(path)
    fmt = {".toml": "toml", ".yaml": "yaml", ".yml": "yaml", ".json": "json"}.get(
        p.suffix.lower())
    if fmt is None:
        raise ConfigError(f"config file must end in .toml, .yaml, .yml or .json, not {p.name}")
    try:
        data = parse_structured(read_text(p, "config file", LIMITS["config"]), fmt)
    except InputError as e:
        raise ConfigError(str(e) if str(p) in str(e) else f"{p}: {e}") from None
    if data is None:
        data = {}
    if isinstance(data, dict) and "name" not in data:
        # a file that names no configuration is named by its file, so results and reports
        # tell it from the preset it may start from
        data = {**data, "name": p.stem}
    try:
        return from_dict(data)
    except ConfigError as e:
        raise ConfigError(f"{p}: {e}") from None


def dumps(cfg: AcceleratorConfig, fmt: str = "toml") -> str:
    """Serialise to ``toml``, ``yaml`` or ``json``; ``load`` of the result gives ``cfg`` back."""
    data = to_dict(cfg)
    if fmt == "toml":
        import tomli_w

        return tomli_w.dumps(data)
    if fmt == "json":
        return json.dumps(data, indent=2) + "\n"
    if fmt == "yaml":
        import yaml

        return yaml.safe_dump(data, sort_keys=False)
    raise ConfigError(f"unknown config format {fmt!r} (choose from toml, yaml, json)")


def save(cfg: AcceleratorConfig, path: str | Path) -> None:
    """Write atomically (temporary file then rename) as TOML, YAML or JSON by suffix."""
    p = Path(path)
    fmt = {".toml": "toml", ".yaml": "yaml", ".yml": "yaml", ".json": "json"}.get(p.suffix.lower())
    if fmt is None:
        raise ConfigError(f"config file must end in .toml, .yaml, .yml or .json, not {p.name}")
    from .fileio import atomic_write_text

    atomic_write_text(p, dumps(cfg, fmt))


def describe(cfg: AcceleratorConfig) -> list[tuple[str, Any, str]]:
    """(dotted field, value, documented source/reasoning) rows for display."""
    rows = []
    for name, f, value in _walk(cfg):
        if isinstance(value, EnergyEntry):
            rows.append((name, f"{value.value:g} {f.metadata['unit']}",
                         f"{value.source} [range {value.low:g} .. {value.high:g}]"))
        else:
            if isinstance(value, tuple):
                value = ", ".join(value)
            rows.append((name, value, f.metadata.get("doc", "")))
    return rows


# --------------------------------------------------------------------------- presets

VCU1525 = AcceleratorConfig()

SMALL = dataclasses.replace(
    VCU1525,
    name="small",
    array=ArrayConfig(rows=4, cols=4, macs_per_pe=4, act_window=8, acc_latency=1,
                      shadow_weights=False, weight_load_ports=1),
    buffers=BuffersConfig(activation=BufferConfig(kib=16, banks=4),
                          weight=BufferConfig(kib=16, banks=4),
                          output=BufferConfig(kib=16, banks=4), act_layout="windows"),
    dram=dataclasses.replace(VCU1525.dram, channels=1, bytes_per_cycle=16, latency_cycles=10),
    sore=SoreConfig(lanes=4),
    weight_update=WeightUpdateConfig(lanes=4),
)
"""A tiny array for RTL tests: 4x4 PEs x 4 multipliers, an 8-wide activation window
(so 1:4, 2:4, 2:8, 1:8 and 4:8 all run), a single-cycle accumulator, 16 KiB buffers, and
the RTL's activation-buffer organisation (``buffers.act_layout = "windows"``), so that what
``nmsat simulate --config small`` compiles is what the RTL runs. No shadow-weight
preload (``array.shadow_weights``; the RTL builds it, tests/rtl/test_rtl_shadow.py runs
this preset with it on): the preset's cycle figures stay those of the column chain."""

PRESETS: dict[str, AcceleratorConfig] = {"vcu1525": VCU1525, "small": SMALL}


def preset(name: str) -> AcceleratorConfig:
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(f"unknown preset {name!r} (choose from {', '.join(PRESETS)})") from None


def resolve(spec: str | Path | AcceleratorConfig | None) -> AcceleratorConfig:
    """A preset name, a config file path (``.toml``/``.yaml``/``.json``, or a SCALE-Sim
    ``.cfg`` read by :mod:`nmsat.scalesim_config`, whose notes on fields that do not map
    go to the ``nmsat`` logger at INFO), or a config object -> config (default
    ``vcu1525``)."""
    if spec is None:
        return VCU1525
    if isinstance(spec, AcceleratorConfig):
        return spec
    s = str(spec)
    if s in PRESETS:
        return PRESETS[s]
    if Path(s).suffix.lower() in (".toml", ".yaml", ".yml", ".json"):
        return load(s)
    if Path(s).suffix.lower() == ".cfg":  # a SCALE-Sim config: one note per unmapped field
        import logging

        from .scalesim_config import read

        cfg, notes = read(s)
        log = logging.getLogger("nmsat")
        for note in notes:
            log.info("note: %s: %s", s, note)
        return cfg
    raise ConfigError(f"{s!r} is neither a preset ({', '.join(PRESETS)}) nor a "
                      f".toml/.yaml/.yml/.json config file or a SCALE-Sim .cfg")
