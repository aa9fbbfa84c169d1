"""A whole layer program on the RTL tile controller
(:class:`~nmsat.rtl.controller.ControlledEngine`).

The host writes the encoded program into the controller's instruction memory and pulses
``start``; from then on the controller runs it: loops, LOAD/STORE tiles, ring waits,
barriers. The testbench (:mod:`nmsat.rtl.tb.cocotb_controller`) is only the DMA and DRAM:
it serves each LOAD command by writing that tile's engine buffer words, and each STORE
command by collecting the engine's store stream and comparing it with the golden
executor (``nmsat.dataflow.execute``).

The words a LOAD writes are its tile (what the golden executor loads) in the engine's
ACT windows or WGT slot vectors for the LOAD's own pattern (``Load.nm``, the layout field
a hardware DMA reads): :func:`load_port_words`.

DMA timing is the memory model the system model uses (:class:`nmsat.dataflow.memory.Dma`
from each program's config: the DRAM model ``dram.model`` selects, completions in queue
order one per cycle; one definition, not a copy), and each transfer's beats through its
buffer's DMA port (:func:`nmsat.dataflow.machine.port_cycles`, the law both charge); the
testbench checks
that a LOAD writes exactly that many beats and a STORE reads that many, and that none
crosses the port after the transfer's completion.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import sys
import tempfile
from dataclasses import fields
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from nmsat.config import AcceleratorConfig, to_dict
from nmsat.dataflow import execute as ex
from nmsat.dataflow import isa, machine
from nmsat.types import DEFAULT_NM, NM, ActZero

from ..layouts import EngineShape
from .engine_model import LoadBeat, load_words, store_beats
from .program import layer_ops
from .runner import RtlRunError, build_and_test
from .tiles import encode

TOP = "nmsat_controlled_engine"

WATCHDOG_FACTOR, WATCHDOG_MARGIN = 4, 1000
"""A program on the controlled engine that has not signalled ``done`` by
``WATCHDOG_FACTOR`` x the system model's total cycles + ``WATCHDOG_MARGIN`` is hung: the
RTL equals the model cycle for cycle when it is right, so four times (plus a margin for
the shortest programs) is far past any legitimate run, yet bounded."""


def watchdog_cycles(model_cycles: int) -> int:
    """The cycle by which a program whose system-model total is ``model_cycles`` must
    have signalled ``done`` on the RTL (see :data:`WATCHDOG_FACTOR`)."""
    return WATCHDOG_FACTOR * model_cycles + WATCHDOG_MARGIN


class RtlHangError(RtlRunError):
    """The controller never signalled ``done`` within :func:`watchdog_cycles`."""


class _LoadTiles(ex.Executor):
    """The golden executor, keeping every LOAD's tile (execution order)."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.tiles: list[np.ndarray] = []

    def _load(self, ins, r0, c0):
        tile = super()._load(ins, r0, c0)
        self.tiles.append(tile)
        return tile


def load_port_words(shape: EngineShape, ins: isa.Load, tile: np.ndarray, layout,
                    half: int = 0, words: int = 0) -> list[int]:
    """A LOAD's tile as the load port's beats (packed ``layout`` payloads): ACT windows
    or WGT slot vectors for the LOAD's pattern ``ins.nm``, from the LOAD alone, in ring
    half ``half`` of ``words`` words per bank (at ``half * words`` on)."""
    if ins.buffer is isa.Buffer.ACT:
        t = encode(shape, tile, np.zeros((tile.shape[1], 1)), ins.nm)
        beats = load_words(shape, t).act
    else:
        t = encode(shape, np.zeros((1, tile.shape[0])), tile, ins.nm)
        beats = load_words(shape, t).wgt
    if words and any(b.addr >= words for b in beats):
        raise ValueError(f"a LOAD into {ins.buffer.name} of {len(beats)} beats overflows "
                         f"a half of {words} words per bank")
    return [LoadBeat(b.addr + half * words, b.words).pack(layout) for b in beats]


def _dma_timing(ins: isa.Load | isa.Store, cfg: AcceleratorConfig) -> dict:
    """What the testbench's DMA charges a LOAD or STORE, as the system model does: its
    port cycles, channel bytes and tail (``dataflow.machine``)."""
    return {"port_cycles": machine.port_cycles(ins, cfg),
            "dma_bytes": machine.dma_bytes(ins, cfg),
            "tail": machine.dma_tail_cycles(ins, cfg)}


def controller_host(prog: isa.Program, cfg: AcceleratorConfig, dram: dict) -> dict:
    """What the testbench needs: the program words, per LOAD (execution order) its tile,
    its packed engine-port words (from the LOAD and its data alone) and its port cycles,
    per STORE its tile, port cycles and the executor's OUT words, per COMPUTE its
    description and ``timing`` cycles."""
    from ..engine import buffer_geometry, load_layouts, ring_halves

    shape = EngineShape.from_config(cfg)
    layouts = dict(zip((isa.Buffer.ACT, isa.Buffer.WGT), load_layouts(cfg, shape)))
    g = buffer_geometry(cfg, shape)
    ha, hw, ho = ring_halves(cfg)
    ring = {isa.Buffer.ACT: (ha, g["act"]), isa.Buffer.WGT: (hw, g["wgt"])}
    nloads = {isa.Buffer.ACT: 0, isa.Buffer.WGT: 0}  # LOADs into each buffer so far
    ops = layer_ops(prog, cfg, dram)
    rec = _LoadTiles(prog, cfg, dram)
    rec.run()
    tiles = iter(rec.tiles)
    comps = iter([o for o in ops if o["kind"] == "compute"])
    outs = iter([o for o in ops if o["kind"] == "store"])
    loads, stores, computes = [], [], []
    for ins, r0, c0 in prog.unrolled():
        if isinstance(ins, isa.Load):
            halves, depth = ring[ins.buffer]
            half = nloads[ins.buffer] % halves
            nloads[ins.buffer] += 1
            words = load_port_words(shape, ins, next(tiles), layouts[ins.buffer], half, depth)
            beats = machine.port_beats(ins, cfg)
            if len(words) != beats:  # the law and the layout disagree
                raise AssertionError(f"LOAD {len(loads)}: {len(words)} port beats, "
                                     f"machine.port_beats says {beats}")
            loads.append({"tile": _tile(ins, r0, c0, int(ins.buffer), half),
                          "port": int(ins.buffer),
                          "words": words, **_dma_timing(ins, cfg)})
        elif isinstance(ins, isa.Compute):
            c = next(comps)
            computes.append({"instr": c["instr"], "model_cycles": c["model_cycles"]})
        elif isinstance(ins, isa.Store):
            o = next(outs)
            if machine.port_beats(ins, cfg) != store_beats(shape, ins.rows, ins.cols):
                raise AssertionError(f"STORE {len(stores)}: machine.port_beats disagrees "
                                     f"with the engine's store beats")
            stores.append({"tile": _tile(ins, r0, c0, 0, len(stores) % ho),
                           "rows": ins.rows, "cols": ins.cols, **_dma_timing(ins, cfg),
                           "expected": shape.numeric.acc_to_bits(o["expected"])})
    return {"words": [int.from_bytes(isa.encode(i), "little") for i in prog.instructions],
            "loads": loads, "stores": stores, "computes": computes,
            # the program's DRAM (the testbench's Dma is built from the build's config
            # with these)
            "dma": {f"dram.{f.name}": getattr(cfg.dram, f.name) for f in fields(cfg.dram)}}


def _tile(ins, r0: int, c0: int, buffer: int, half: int) -> dict:
    return {"buffer": buffer, "tensor": ins.tensor, "transform": int(ins.transform),
            "r0": r0 % 2**32, "c0": c0 % 2**32, "rows": ins.rows, "cols": ins.cols,
            "bytes": ins.bytes, "half": half}


def cached_controlled(cfg: AcceleratorConfig, dtype: str, depth: int) -> Path:
    """Verilog of :class:`ControlledEngine` for simulation, generated once per config,
    operand type, depth and RTL sources (under ``NMSAT_RTL_CACHE``)."""
    from ..controller import ControlledEngine
    from ..generate import source_hash, to_verilog

    h = hashlib.sha256(source_hash(cfg, dtype).encode())
    h.update((Path(__file__).parents[1] / "controller.py").read_bytes())
    h.update(str(depth).encode())
    root = Path(os.environ.get("NMSAT_RTL_CACHE", Path.home() / ".cache" / "nmsat" / "rtl"))
    d = root / f"ctrl_{h.hexdigest()[:16]}"
    f = d / f"{TOP}.v"
    if not f.exists():
        from nmsat.log import status

        status("rtl: generating the Verilog of the %s controlled engine (first run for this "
               "configuration; cached in %s)", cfg.name, d)
        d.mkdir(parents=True, exist_ok=True)
        tmp = d / f"{f.name}.tmp{os.getpid()}"
        tmp.write_text(to_verilog(ControlledEngine(cfg, dtype, depth), TOP), encoding="utf-8")
        tmp.replace(f)
    return f


class SystemModel(Protocol):
    """The whole-program timing the RTL is compared with, called as
    :func:`nmsat.simulator.system.run` is (the caller passes that function in: the RTL
    floor does not import the simulator, docs/architecture.md's floors). Its result has
    ``total_cycles``, ``engine_end`` and ``intervals`` (``unit``, ``kind``, ``start``)."""

    def __call__(self, prog: isa.Program, cfg: AcceleratorConfig, *,
                 extrapolate: bool = ..., record: bool = ...) -> Any: ...


def run_controller_program(prog: isa.Program, cfg: AcceleratorConfig, dram: dict,
                           sim: str | None = None, *, system_model: SystemModel,
                           fault: str | None = None) -> dict:
    """Run ``prog`` on the controlled engine under cocotb; the report of
    :func:`nmsat.rtl.tb.program.run_program` plus ``program_cycles`` (start to done on
    the RTL) and ``system_cycles`` (``system_model``'s total for the same program: pass
    :func:`nmsat.simulator.system.run`). ``fault``: as :func:`run_controller_programs`."""
    return run_controller_programs([(prog, cfg, dram)], sim, system_model=system_model,
                                   fault=fault)[0]


def _engine_key(cfg: AcceleratorConfig) -> tuple:
    """What the generated RTL depends on (DRAM timing and port counts are the DMA's)."""
    b = cfg.buffers
    return (cfg.array, cfg.numerics, b.act_layout,
            tuple((x.kib, x.double_buffered) for x in (b.activation, b.weight, b.output)))


def run_controller_programs(runs: list[tuple[isa.Program, AcceleratorConfig, dict]],
                            sim: str | None = None, *,
                            system_model: SystemModel, fault: str | None = None) -> list[dict]:
    """Run several (program, config, DRAM image) on one controlled engine, one after the
    other in one cocotb session (each config may differ from the first in its DMA: DRAM
    timing and buffer ports, not in what the RTL builds); one report each, as
    :func:`run_controller_program`. A program that does not signal ``done`` within
    :func:`watchdog_cycles` of its system-model total raises :class:`RtlHangError`.
    ``fault="no_load_done"`` makes the testbench's DMA never complete a LOAD (a memory
    that does not answer: what the watchdog's test runs)."""
    if fault not in (None, "no_load_done"):
        raise ValueError(f"fault must be None or 'no_load_done', not {fault!r}")
    from cocotb_tools.runner import get_runner

    from ..controller import check_controlled

    cfg0 = runs[0][1]
    for _, cfg, _ in runs:
        check_controlled(cfg)
        if _engine_key(cfg) != _engine_key(cfg0):
            raise ValueError("programs run in one session must share the engine's config "
                             "(array, numerics, buffer sizes and halves)")
    sim = sim or "icarus"
    if sim not in ("icarus", "verilator"):
        raise ValueError(f"the controller testbench runs under icarus or verilator, not {sim}")
    hosts = [controller_host(prog, cfg, dram) for prog, cfg, dram in runs]
    models = [system_model(prog, cfg, extrapolate=False) for prog, cfg, _ in runs]
    for host, model in zip(hosts, models):
        host["watchdog"] = watchdog_cycles(model.total_cycles)
        host["fault"] = fault
    longest = max(len(prog.instructions) for prog, _, _ in runs)
    depth = max(16, 1 << (longest - 1).bit_length())
    src = cached_controlled(cfg0, cfg0.numerics.dtype, depth)
    build_args = []
    if sim == "verilator":
        from .runner import VERILATOR_ARGS, verilator_env

        build_dir = src.parent / f"{sim}{verilator_env()}"
        build_args = list(VERILATOR_ARGS)
    else:
        build_dir = src.parent / sim
    runner = get_runner(sim)
    overrides = {k: v for k, v in to_dict(cfg0).items() if k != "name"}
    with tempfile.TemporaryDirectory() as tmp:  # build_and_test locks the build folder
        hp, pfile, result = Path(tmp) / "host.pkl", Path(tmp) / "p.json", Path(tmp) / "r.json"
        hp.write_bytes(pickle.dumps({"programs": hosts}))
        pfile.write_text(json.dumps({"preset": "vcu1525", "overrides": overrides,
                                     "dtype": cfg0.numerics.dtype, "host": str(hp)}))
        build_and_test(
            runner, sim, build_dir,
            dict(sources=[src], hdl_toplevel=TOP, build_args=build_args,
                 timescale=("1ns", "1ps")),
            dict(hdl_toplevel=TOP, test_module="nmsat.rtl.tb.cocotb_controller", test_dir=tmp,
                 results_xml=str(Path(tmp) / "x.xml"),
                 extra_env={"NMSAT_TB_PARAMS": str(pfile), "NMSAT_TB_RESULT": str(result),
                            "PYTHONPATH": os.pathsep.join(sys.path)}),
            result, f"the {cfg0.name} controlled engine")
        results = json.loads(result.read_text())
    for i, (res, model) in enumerate(zip(results, models)):
        if res["hung"]:
            raise RtlHangError(
                f"the RTL hung: program {i + 1} of {len(runs)} on the {cfg0.name} controlled "
                f"engine did not signal done within {watchdog_cycles(model.total_cycles)} "
                f"cycles ({WATCHDOG_FACTOR} x the system model's {model.total_cycles} + "
                f"{WATCHDOG_MARGIN}): {res['hung']}")
    if len(results) != len(runs):
        raise RuntimeError(f"the testbench ran {len(results)} of {len(runs)} programs")
    return [_report(prog, cfg, host, res, sim, model)
            for (prog, cfg, _), host, res, model in zip(runs, hosts, results, models)]


def _report(prog: isa.Program, cfg: AcceleratorConfig, host: dict, res: dict,
            sim: str, model: Any) -> dict:
    comps = host["computes"]
    rows = [{"instr": c["instr"], "rtl_cycles": r, "model_cycles": c["model_cycles"]}
            for c, r in zip(comps, res["compute_cycles"])]
    errors = list(res["tile_errors"])
    if len(res["compute_cycles"]) != len(comps):
        errors.append(f"the RTL ran {len(res['compute_cycles'])} COMPUTEs, the program "
                      f"has {len(comps)}")
    tl = res["timeline"]
    starts = [iv.start for iv in model.intervals if iv.unit == "engine" and iv.kind == "compute"]
    return {"sim": sim, "computes": rows, "rtl_cycles": sum(res["compute_cycles"]),
            "model_cycles": sum(c["model_cycles"] for c in comps),
            "words": res["words"], "mismatches": res["mismatches"],
            "tile_errors": errors, "program_cycles": res["program_cycles"],
            "system_cycles": model.total_cycles, "system_engine_end": model.engine_end,
            # the engine's idle cycles before each of its instructions, and the model's
            # engine stall (every cause): the same quantity
            "engine_stall": res["engine_stall"],
            "system_engine_stall": sum(model.stall.get("engine", {}).values()),
            # where the RTL's time goes relative to the model: LOAD (STORE) completions
            # held beyond the DMA timing because their beats had not crossed the engine's
            # port (0 when the port law holds), and each COMPUTE's first busy cycle on the
            # RTL beside its accept cycle in the model
            "load_port_cycles": sum(max(0, d - due) for _, due, d in tl["load"]),
            "store_port_cycles": sum(max(0, d - due) for _, due, d in tl["store"]),
            "compute_starts": list(zip(tl["compute"], starts)),
            # per LOAD and STORE (issue, due by the DMA timing, done) cycles on the RTL
            "transfers": {"load": tl["load"], "store": tl["store"]},
            "sim_cycles": res["cycles"], "seconds": res["seconds"], "error": res["error"],
            "act_zero": str(ActZero.parse(cfg.array.act_zero))}


def run_layer_controller(workload: str, layer: str, phase: str, cfg: AcceleratorConfig,
                         nm: str | NM = DEFAULT_NM, method: str = "bdwp",
                         batch: int | None = None,
                         sim: str | None = None, seed: int = 0, *,
                         system_model: SystemModel, dataflow: str = "auto") -> dict:
    """:func:`nmsat.rtl.tb.program.run_layer` through the tile controller: the same
    program, operands and report (plus the whole-program cycles, beside
    ``system_model``'s)."""
    from nmsat.dataflow.compiler import CompileOptions, compile_layer
    from nmsat.types import Phase
    from nmsat.workloads.zoo import load

    from ..controller import check_controlled
    from .program import layer_dram

    check_controlled(cfg)
    wl = load(workload, batch=batch)
    opts = CompileOptions(method=wl.method or method, nm=nm, batch=batch,
                          layer_nm=tuple(wl.layer_nm.items()), dataflow=dataflow)
    prog = compile_layer(wl.workload, layer, Phase.parse(phase), cfg, opts)
    dram = layer_dram(prog, cfg, wl, workload, layer, seed)
    return {"workload": workload, "layer": layer, "phase": phase,
            **run_controller_program(prog, cfg, dram, sim=sim, system_model=system_model)}
