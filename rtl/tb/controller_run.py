"""A whole layer program on the RTL tile controller (:class:`~nmsat.rtl.controller.ControlledEngine`).

The host writes the encoded program into the controller's instruction memory and pulses
``start``; from then on the controller runs it: loops, LOAD/STORE tiles, ring waits,
barriers. The testbench (:mod:`nmsat.rtl.tb.cocotb_controller`) is only the DMA and DRAM:
it serves each LOAD command by writing that tile's engine buffer words, and each STORE
command by collecting the engine's store stream and comparing it with the golden
executor (``nmsat.dataflow.execute``).

The words a LOAD writes depend on the COMPUTE that consumes the half (the engine's
ACT/WGT word layout follows its N:M pattern and chunk width), which the ISA's LOAD does
not carry: :func:`controller_host` pairs each LOAD with the first COMPUTE that reads its
half (execution model: a COMPUTE reads the oldest filled halves) and takes that COMPUTE's
words from :func:`nmsat.rtl.tb.program.layer_ops`. A hardware DMA would need the pattern
(or the words' layout) in the LOAD.

DMA timing is the memory model the system model uses (:class:`nmsat.dataflow.memory.Dma`
from the config: the DRAM model ``dram.model`` selects, the buffers' DMA ports,
completions in queue order; one definition, not a copy); a completion is also no
earlier than the cycle the tile's last beat crossed the engine port (a LOAD: one beat of
R windows or C slot vectors per cycle; a STORE: one beat of R x C OUT words per cycle).
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import sys
import tempfile
from collections import deque
from pathlib import Path

from nmsat.dataflow import isa
from nmsat.simulator import system

from nmsat.config import AcceleratorConfig, to_dict
from nmsat.fileio import file_lock
from nmsat.types import ActZero

from ..layouts import EngineShape
from .program import layer_ops

TOP = "nmsat_controlled_engine"


def controller_host(prog: isa.Program, cfg: AcceleratorConfig, dram: dict) -> dict:
    """What the testbench needs: the program words, per LOAD (execution order) its tile
    and packed engine-port words, per STORE its tile and the executor's OUT words, per
    COMPUTE its description and ``tile_model`` cycles."""
    from ..engine import load_layouts

    shape = EngineShape.from_config(cfg)
    act_l, wgt_l = load_layouts(cfg, shape)
    ops = layer_ops(prog, cfg, dram)
    comps = iter([o for o in ops if o["kind"] == "compute"])
    outs = iter([o for o in ops if o["kind"] == "store"])
    loads, stores, computes = [], [], []
    pending = {isa.Buffer.ACT: deque(), isa.Buffer.WGT: deque()}
    for ins, r0, c0 in prog.unrolled():
        if isinstance(ins, isa.Load):
            pending[ins.buffer].append(len(loads))
            loads.append({"tile": _tile(ins, r0, c0, int(ins.buffer)), "port": int(ins.buffer),
                          "words": None})
        elif isinstance(ins, isa.Compute):
            c = next(comps)
            computes.append({"instr": c["instr"], "model_cycles": c["model_cycles"]})
            lw = c["loads"]
            for buf, lay, words, pop in ((isa.Buffer.ACT, act_l, lw.act, ins.pop_a),
                                         (isa.Buffer.WGT, wgt_l, lw.wgt, ins.pop_b)):
                packed = [b.pack(lay) for b in words]
                j = pending[buf][0]
                if loads[j]["words"] is None:
                    loads[j]["words"] = packed
                elif loads[j]["words"] != packed:  # a resident half read with another layout
                    raise ValueError(f"LOAD {j} is read by COMPUTEs with different "
                                     f"{buf.name} word layouts")
                if pop:
                    pending[buf].popleft()
        elif isinstance(ins, isa.Release):
            j = pending[ins.buffer].popleft()
            loads[j]["words"] = loads[j]["words"] or []
        elif isinstance(ins, isa.Store):
            o = next(outs)
            stores.append({"tile": _tile(ins, r0, c0, 0), "rows": ins.rows, "cols": ins.cols,
                           "expected": shape.numeric.acc_to_bits(o["expected"])})
    return {"words": [int.from_bytes(isa.encode(i), "little") for i in prog.instructions],
            "loads": loads, "stores": stores, "computes": computes}


def _tile(ins, r0: int, c0: int, buffer: int) -> dict:
    return {"buffer": buffer, "tensor": ins.tensor, "transform": int(ins.transform),
            "r0": r0 % 2**32, "c0": c0 % 2**32, "rows": ins.rows, "cols": ins.cols,
            "bytes": ins.bytes}


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
        d.mkdir(parents=True, exist_ok=True)
        tmp = d / f"{f.name}.tmp{os.getpid()}"
        tmp.write_text(to_verilog(ControlledEngine(cfg, dtype, depth), TOP), encoding="utf-8")
        tmp.replace(f)
    return f


def run_controller_program(prog: isa.Program, cfg: AcceleratorConfig, dram: dict,
                           sim: str | None = None) -> dict:
    """Run ``prog`` on the controlled engine under cocotb; the report of
    :func:`nmsat.rtl.tb.program.run_program` plus ``program_cycles`` (start to done on
    the RTL) and ``system_cycles`` (the SimPy system model's total for the same program)."""
    from cocotb_tools.runner import get_runner

    from ..controller import check_controlled

    check_controlled(cfg)
    sim = sim or "icarus"
    if sim != "icarus":
        raise ValueError(f"the controller testbench runs under icarus, not {sim}")
    host = controller_host(prog, cfg, dram)
    depth = max(16, 1 << (len(prog.instructions) - 1).bit_length())
    src = cached_controlled(cfg, cfg.numerics.dtype, depth)
    build_dir = src.parent / sim
    runner = get_runner(sim)
    overrides = {k: v for k, v in to_dict(cfg).items() if k != "name"}
    # the build folder is shared by every process: build and run under its lock
    with file_lock(build_dir.with_name(build_dir.name + ".lock")), \
            tempfile.TemporaryDirectory() as tmp:
        runner.build(sources=[src], hdl_toplevel=TOP, build_dir=build_dir,
                     timescale=("1ns", "1ps"))
        hp, pfile, result = Path(tmp) / "host.pkl", Path(tmp) / "p.json", Path(tmp) / "r.json"
        hp.write_bytes(pickle.dumps(host))
        pfile.write_text(json.dumps({"preset": "vcu1525", "overrides": overrides,
                                     "dtype": cfg.numerics.dtype, "host": str(hp)}))
        runner.test(hdl_toplevel=TOP, test_module="nmsat.rtl.tb.cocotb_controller",
                    build_dir=build_dir, test_dir=tmp, results_xml=str(Path(tmp) / "x.xml"),
                    extra_env={"NMSAT_TB_PARAMS": str(pfile), "NMSAT_TB_RESULT": str(result),
                               "PYTHONPATH": os.pathsep.join(sys.path)})
        if not result.exists():
            raise RuntimeError(f"cocotb run of the controller on {sim} produced no result")
        res = json.loads(result.read_text())
    comps = host["computes"]
    rows = [{"instr": c["instr"], "rtl_cycles": r, "model_cycles": c["model_cycles"]}
            for c, r in zip(comps, res["compute_cycles"])]
    if len(res["compute_cycles"]) != len(comps):
        raise RuntimeError(f"the RTL ran {len(res['compute_cycles'])} COMPUTEs, the program "
                           f"has {len(comps)}")
    model = system.run(prog, cfg, extrapolate=False)
    tl = res["timeline"]
    starts = [iv.start for iv in model.intervals if iv.unit == "engine" and iv.kind == "compute"]
    return {"sim": sim, "computes": rows, "rtl_cycles": sum(res["compute_cycles"]),
            "model_cycles": sum(c["model_cycles"] for c in comps),
            "words": res["words"], "mismatches": res["mismatches"],
            "tile_errors": res["tile_errors"], "program_cycles": res["program_cycles"],
            "system_cycles": model.total_cycles, "system_engine_end": model.engine_end,
            # where the RTL's time goes relative to the model: LOAD (STORE) completions
            # held beyond the DMA timing by the engine's load ports, one beat of R (C) words
            # per cycle (its store port, R x C words per cycle), and each COMPUTE's first busy
            # cycle on the RTL beside its start in the model
            "load_port_cycles": sum(max(0, d - due) for _, due, d in tl["load"]),
            "store_port_cycles": sum(max(0, d - due) for _, due, d in tl["store"]),
            "compute_starts": list(zip(tl["compute"], starts)),
            "sim_cycles": res["cycles"], "seconds": res["seconds"], "error": res["error"],
            "act_zero": str(ActZero.parse(cfg.array.act_zero))}


def run_layer_controller(workload: str, layer: str, phase: str, cfg: AcceleratorConfig,
                         nm: str = "2:8", method: str = "bdwp", batch: int | None = None,
                         sim: str | None = None, seed: int = 0) -> dict:
    """:func:`nmsat.rtl.tb.program.run_layer` through the tile controller: the same
    program, operands and report (plus the whole-program cycles)."""
    from nmsat.dataflow.compiler import CompileOptions, compile_layer
    from nmsat.workloads.zoo import load

    from nmsat.types import Phase

    from ..controller import check_controlled
    from .program import random_dram, trace_dram

    check_controlled(cfg)
    wl = load(workload, batch=batch)
    opts = CompileOptions(method=wl.method or method, nm=nm, batch=batch,
                          layer_nm=tuple(wl.layer_nm.items()))
    prog = compile_layer(wl.workload, layer, Phase.parse(phase), cfg, opts)
    dram = (random_dram(prog, cfg.numerics.operand, seed) if wl.source == "zoo"
            else trace_dram(prog, workload, layer))
    return {"workload": workload, "layer": layer, "phase": phase,
            **run_controller_program(prog, cfg, dram, sim=sim)}
