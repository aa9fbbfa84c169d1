"""Verilog generation: the top level and each unit, plus a JSON manifest.

Generated files are build outputs: they go to a directory the caller names (``nmsat rtl
generate -o DIR``) or to the per-user cache (``NMSAT_RTL_CACHE``, default
``~/.cache/nmsat/rtl``) for simulation, keyed by a hash of the configuration and the RTL
sources so an edit regenerates.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from amaranth.back import verilog
from amaranth.hdl import Shape
from amaranth.lib import wiring

from nmsat.config import AcceleratorConfig, to_dict
from nmsat.types import DType

__all__ = ["ACCELERATOR", "HARDWARE_SOURCES", "TOP", "Unit", "accelerator", "cached_top",
           "generate", "hierarchical_top", "ports", "source_hash", "to_verilog", "units"]

TOP = "nmsat_engine"
HARDWARE_SOURCES = ("fp.py", "layouts.py", "pe.py", "array.py", "schedule.py", "rowlist.py",
                    "engine.py", "sore.py", "wu.py", "generate.py")
"""The files that define the generated hardware (the simulation cache key)."""


@dataclass(frozen=True)
class Unit:
    """A generated unit: Verilog module name and how to build its component."""

    name: str
    build: Callable[[AcceleratorConfig, DType], wiring.Component]
    instances: Callable[[AcceleratorConfig], int]


def units() -> list[Unit]:
    """The top level first, then the units that per-unit synthesis scales by count."""
    from .array import Cell
    from .engine import TensorEngine, buffer_geometry
    from .layouts import EngineShape
    from .pe import ChunkDot
    from .sore import Sore
    from .wu import WeightUpdateEngine

    def cell(cfg, dt):
        sh = EngineShape.from_config(cfg, dt)
        g = buffer_geometry(cfg, sh)
        return Cell(sh, 1, g["row_bits"], g["ct_bits"])

    return [
        Unit(TOP, lambda cfg, dt: TensorEngine(cfg, dt), lambda cfg: 1),
        Unit("nmsat_pe_cell", cell, lambda cfg: cfg.array.rows * cfg.array.cols),
        Unit("nmsat_chunk_dot", lambda cfg, dt: ChunkDot(EngineShape.from_config(cfg, dt)),
             lambda cfg: cfg.array.rows * cfg.array.cols),
        Unit("nmsat_sore", lambda cfg, dt: Sore(cfg), lambda cfg: 1),
        Unit("nmsat_weight_update", lambda cfg, dt: WeightUpdateEngine(cfg), lambda cfg: 1),
    ]


def ports(component: wiring.Component) -> list[dict]:
    """Port list of a component as the Verilog sees it (flattened names), plus clk/rst."""
    out = [{"name": "clk", "dir": "in", "width": 1}, {"name": "rst", "dir": "in", "width": 1}]
    for path, member, _ in component.signature.flatten(component):
        out.append({"name": "__".join(str(p) for p in path),
                    "dir": "in" if member.flow is wiring.In else "out",
                    "width": Shape.cast(member.shape).width})
    return out


def to_verilog(component: wiring.Component, name: str) -> str:
    return verilog.convert(component, name=name, emit_src=False)


def hierarchical_top(cfg: AcceleratorConfig, dtype: DType | str | None = None) -> str:
    """The top level with its R x C cells as instances of two shared modules (the first
    row's cell and every other row's, :class:`~nmsat.rtl.array.SharedCell`), followed by
    those two modules: the same hardware as :data:`TOP` from :func:`to_verilog`, in the
    form an FPGA flow synthesises each cell module once (``tests/rtl`` runs tiles on it)."""
    from .array import SHARED_CELLS, SharedCell
    from .engine import TensorEngine

    eng = TensorEngine(cfg, dtype, shared_cells=True)
    parts = [to_verilog(eng, TOP)]
    for first, name in zip((True, False), SHARED_CELLS):
        parts.append(to_verilog(SharedCell(eng.shape, first, eng.row_bits, eng.ct_bits), name))
    return "\n".join(parts)


def generate(cfg: AcceleratorConfig, out_dir: str | Path, dtype: DType | str | None = None,
             which: list[str] | None = None) -> dict:
    """Write ``<unit>.v`` for the top level and every unit, and ``manifest.json``."""
    dt = DType.parse(dtype or cfg.numerics.dtype)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    manifest = {"top": TOP, "dtype": dt.value, "config": to_dict(cfg), "units": {}}
    from nmsat.log import status

    todo = [u for u in units() if which is None or u.name in which]
    top = which is None or ACCELERATOR in which
    steps = len(todo) + top
    for i, u in enumerate(todo, 1):
        status("rtl generate: %s (%d of %d)", u.name, i, steps)
        comp = u.build(cfg, dt)
        (out / f"{u.name}.v").write_text(to_verilog(comp, u.name), encoding="utf-8")
        manifest["units"][u.name] = {"file": f"{u.name}.v", "instances": u.instances(cfg),
                                     "ports": ports(comp)}
    if top:
        status("rtl generate: %s, the accelerator top (%d of %d)", ACCELERATOR, steps, steps)
        manifest["accelerator"] = accelerator(cfg, dt, out)
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


ACCELERATOR = "nmsat_top"
"""The accelerator top's module (:class:`~nmsat.rtl.top.AcceleratorTop`)."""


def accelerator(cfg: AcceleratorConfig, dt: DType, out: Path) -> dict:
    """Write ``nmsat_top.v`` (AXI4-Lite control, AXI4 master, controller, engine, DMA) into
    ``out``; its manifest entry: file, ports, register map, AXI geometry, DMA word slots and
the system model's DMA for it (``dram.dma = word_slots``).
    A config the top cannot build gets ``{"skipped": reason}`` instead (the engine and
    units are still written)."""
    from nmsat.dataflow.machine import DMA_REQUEST_CYCLES

    from .controller import check_controlled
    from .top import (
        DESC_BYTES,
        DESC_FIELDS,
        DESC_NAMES,
        LINE_BYTES,
        MAX_TENSORS,
        REGISTERS,
        AcceleratorTop,
    )

    try:
        check_controlled(cfg)
        top = AcceleratorTop(cfg, dt)
    except ValueError as e:
        return {"skipped": str(e)}
    (out / f"{ACCELERATOR}.v").write_text(to_verilog(top, ACCELERATOR), encoding="utf-8")
    return {"module": ACCELERATOR, "file": f"{ACCELERATOR}.v", "ports": ports(top),
            "registers": [{"name": n, "offset": o, "access": a, "meaning": m}
                          for n, o, a, m in REGISTERS],
            "axi": top.p._asdict(),
            "dma": {"instruction_bytes": LINE_BYTES, "descriptor_bytes": DESC_BYTES,
                    "max_tensors": MAX_TENSORS, "instruction_depth": top.depth,
                    # byte offsets in a tensor's descriptor line (32-bit fields)
                    "descriptor_fields": dict(zip(DESC_NAMES, DESC_FIELDS)),
                    "act_word_slot_bytes": top.ws["act"], "wgt_word_slot_bytes": top.ws["wgt"],
                    "store_block_bytes": top.beat_bytes["store"],
                    # the system model of this DMA (docs/simulator.md, "The DMA")
                    "system_model": {"dram.dma": "word_slots",
                                     "request_cycles": dict(zip(
                                         ("load", "store"),
                                         DMA_REQUEST_CYCLES["word_slots"]))}}}


def source_hash(cfg: AcceleratorConfig, dtype: DType | str) -> str:
    h = hashlib.sha256(json.dumps(to_dict(cfg), sort_keys=True).encode())
    h.update(str(DType.parse(dtype)).encode())
    for name in HARDWARE_SOURCES:
        h.update((Path(__file__).parent / name).read_bytes())
    return h.hexdigest()[:16]


def cached_top(cfg: AcceleratorConfig, dtype: DType | str, hierarchical: bool = False) -> Path:
    """The top level's Verilog for simulation, generated once per config/source hash
    (``hierarchical``: :func:`hierarchical_top`'s form, shared cell modules)."""
    root = Path(os.environ.get("NMSAT_RTL_CACHE", Path.home() / ".cache" / "nmsat" / "rtl"))
    d = root / source_hash(cfg, dtype)
    f = d / f"{TOP}{'_hier' if hierarchical else ''}.v"
    if not f.exists():
        from nmsat.log import status

        status("rtl: generating the Verilog of the %s engine (first run for this "
               "configuration; cached in %s)", cfg.name, d)
        d.mkdir(parents=True, exist_ok=True)
        from .engine import TensorEngine

        tmp = d / f"{f.name}.tmp{os.getpid()}"
        text = (hierarchical_top(cfg, dtype) if hierarchical
                else to_verilog(TensorEngine(cfg, dtype), TOP))
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(f)
    return f
