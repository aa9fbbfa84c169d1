"""Whole programs on the accelerator top (:class:`~nmsat.rtl.top.AcceleratorTop`) under
cocotb with ``cocotbext-axi``: the host writes the DRAM image
(:mod:`nmsat.rtl.tb.dram_image`) into an ``AxiRam`` and drives the AXI4-Lite registers
(:mod:`nmsat.rtl.tb.cocotb_top`); the outputs are compared bit for bit with the golden
executor and the program cycles (``CYCLES``) with the system model's.

Before simulating, every LOAD's DMA beats (the address law read from the image,
:func:`~nmsat.rtl.tb.dram_image.model_load_beats`) are checked against the words the
engine expects for the executor's tile: a program the DMA's layouts cannot carry is
refused with one line naming the LOAD.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import sys
import tempfile
from pathlib import Path

import numpy as np

from nmsat.arith import ceil_div
from nmsat.config import AcceleratorConfig, to_dict
from nmsat.dataflow import isa
from nmsat.dataflow.sore_stream import check_sore_stream
from nmsat.dataflow.wu_stream import check_wu_stream

from ..axi import axi_params, burst_lengths
from ..engine import buffer_geometry, ring_halves
from ..layouts import EngineShape
from ..top import TOP_NAME, beat_bytes, check_beats
from .controller_run import SystemModel, _LoadTiles, controller_host
from .dram_image import (
    dma_runs_at,
    dram_image,
    golden_load_beats,
    model_load_beats,
    sore_tensors,
    unpack_store_region,
)
from .runner import build_and_test

__all__ = ["TB_PIPELINE", "cached_top_verilog", "check_top_config",
           "run_top_programs", "top_host"]

_SOURCES = ("top.py", "axi.py", "controller.py", "sore_stream.py", "sore.py", "wu_stream.py",
            "wu.py")

TB_PIPELINE = 2
"""Cycles from an AXI request the testbench's DRAM (``cocotb_top.ModelRam``) sees to the
first beat it can put on the bus: the shortest ``dram.latency_cycles`` it can time."""


def _f32_bits(x: float) -> int:
    return int(np.array(x, np.float32).view(np.uint32))


def check_top_config(cfg: AcceleratorConfig) -> None:
    """Raise ``ValueError`` naming the field when the top and its testbench cannot run
    any program of ``cfg``: one DRAM channel (the top's one AXI4 master), the ``simple``
    DRAM model, a latency the testbench's DRAM can time (:data:`TB_PIPELINE`),
    ``dram.dma = word_slots`` (the system model of this DMA), an AXI4 geometry
    (:func:`~nmsat.rtl.axi.axi_params`) whose bus width divides the buffer ports'
    beats."""
    if cfg.dram.channels != 1:
        raise ValueError(f"dram.channels = {cfg.dram.channels}: the top's AXI4 master is "
                         f"one DRAM channel")
    if cfg.dram.model != "simple":
        raise ValueError(f"dram.model = {cfg.dram.model}: the testbench's DRAM times each "
                         f"AXI burst as a transfer of its own, which the row_buffer model "
                         f"charges a row opening each (the system model one per LOAD)")
    if cfg.dram.latency_cycles < TB_PIPELINE:
        raise ValueError(f"dram.latency_cycles = {cfg.dram.latency_cycles}: the testbench's "
                         f"DRAM answers an AXI request {TB_PIPELINE} cycles after it at the "
                         f"earliest")
    if cfg.dram.dma != "word_slots":
        raise ValueError(f"dram.dma = {cfg.dram.dma}: the accelerator top's DMA moves the "
                         f"engine's word slots; run it with dram.dma = word_slots, so that "
                         f"the system model charges what it moves")
    p = axi_params(cfg)
    check_beats(beat_bytes(EngineShape.from_config(cfg), p), p)


def top_host(prog: isa.Program, cfg: AcceleratorConfig, dram: dict, lr: float = 0.01) -> dict:
    """The host's side of one program: the DRAM image, register values, expected STORE
    words; raises ``ValueError`` when the config is not one the top runs
    (:func:`check_top_config`) or the DMA's layouts cannot carry a LOAD or STORE."""
    check_top_config(cfg)
    vec = [i for i in prog.instructions if isinstance(i, isa.Vector)]
    if vec:
        raise ValueError(f"the RTL has no vector lanes for VECTOR {vec[0].kind.value}")
    _, sore_dst = sore_tensors(prog)
    if sore_dst:
        check_sore_stream(cfg)
    if any(isinstance(i, isa.WeightUpdate) for i in prog.instructions):
        check_wu_stream(cfg)
    shape = EngineShape.from_config(cfg)
    p = axi_params(cfg)
    img = dram_image(prog, cfg, dram, p, shape, lr)
    g = buffer_geometry(cfg, shape)
    halves = dict(zip((isa.Buffer.ACT, isa.Buffer.WGT), ring_halves(cfg)[:2]))
    depth = {isa.Buffer.ACT: g["act"], isa.Buffer.WGT: g["wgt"]}
    rec = _LoadTiles(prog, cfg, dram)
    rec.run()
    tiles = iter(rec.tiles)
    n = {isa.Buffer.ACT: 0, isa.Buffer.WGT: 0}
    R, C = shape.rows, shape.cols
    ctl = controller_host(prog, cfg, dram)
    stores = iter(ctl["stores"])
    expected: dict[int, np.ndarray] = {}
    covered: dict[int, np.ndarray] = {}
    burst = cfg.dram.burst_bytes
    for k, (ins, r0, c0) in enumerate(prog.unrolled()):
        if isinstance(ins, (isa.Load, isa.Store)):
            for addr, beats in dma_runs_at(img, shape, p, ins, r0, c0):
                if len(burst_lengths(addr, beats, p)) != ceil_div(beats, p.burst_beats):
                    raise ValueError(
                        f"{type(ins).__name__.upper()} {k} (tensor {ins.tensor} at [{r0}, "
                        f"{c0}]): its DMA run at {addr:#x} starts {addr % burst} bytes into "
                        f"a {burst}-byte burst (dram.burst_bytes) and crosses a 4 KiB page, "
                        f"where AXI cuts the burst; dram.dma = word_slots charges whole "
                        f"bursts from the run's start")
        if isinstance(ins, isa.Load):
            half = n[ins.buffer] % halves[ins.buffer]
            n[ins.buffer] += 1
            tile = next(tiles)
            if ins.tensor in sore_dst:  # the SORE's words, checked as its region after
                continue
            want = golden_load_beats(shape, ins, tile, half, depth[ins.buffer])
            got = model_load_beats(img, shape, p, ins, r0, c0, half, depth[ins.buffer])
            if got != want:
                raise ValueError(f"LOAD {k} (tensor {ins.tensor}, [{r0}+{ins.rows}, "
                                 f"{c0}+{ins.cols}]) is not aligned to the DMA's word layout "
                                 f"(chunks of its pattern, column tiles of {C})")
        elif isinstance(ins, isa.Store):
            if c0 % C:
                raise ValueError(f"STORE {k} at ({r0}, {c0}) does not start on a column "
                                 f"tile of {C}")
            if r0 % R and r0 % R + ins.rows > R:
                raise ValueError(f"STORE {k} at ({r0}, {c0}) of {ins.rows} rows starts "
                                 f"inside an R-row block ({R}) and does not end in it")
            geom = img.stores[ins.tensor]
            exp = expected.setdefault(ins.tensor, np.zeros((geom["rows"], geom["cols"]),
                                                           np.uint64))
            cov = covered.setdefault(ins.tensor, np.zeros(exp.shape, bool))
            exp[r0:r0 + ins.rows, c0:c0 + ins.cols] = next(stores)["expected"]
            cov[r0:r0 + ins.rows, c0:c0 + ins.cols] = True
    return {"segments": img.segments, "PROG_ADDR": img.prog_addr, "PROG_LEN": img.prog_len,
            "DESC_ADDR": img.desc_addr, "DESC_COUNT": img.desc_count, "size": img.size,
            "stores": {t: {**g, "bytes": ceil_div(g["rows"], R) * g["stride"]}
                       for t, g in img.stores.items()},
            "checks": img.checks,
            "LR": _f32_bits(lr), "MOMENTUM": _f32_bits(cfg.weight_update.momentum),
            "expected": expected, "covered": covered}


def cached_top_verilog(cfg: AcceleratorConfig, dtype: str, depth: int) -> Path:
    """Verilog of the top for simulation, generated once per config, operand type,
    instruction-memory depth and RTL sources (under ``NMSAT_RTL_CACHE``)."""
    from ..generate import source_hash, to_verilog
    from ..top import AcceleratorTop

    h = hashlib.sha256(source_hash(cfg, dtype).encode())
    for f in _SOURCES:
        h.update((Path(__file__).parents[1] / f).read_bytes())
    h.update(repr((depth, to_dict(cfg)["dram"])).encode())
    root = Path(os.environ.get("NMSAT_RTL_CACHE", Path.home() / ".cache" / "nmsat" / "rtl"))
    d = root / f"top_{h.hexdigest()[:16]}"
    f = d / f"{TOP_NAME}.v"
    if not f.exists():
        from nmsat.log import status

        status("rtl: generating the Verilog of the %s accelerator top (cached in %s)",
               cfg.name, d)
        d.mkdir(parents=True, exist_ok=True)
        tmp = d / f"{f.name}.tmp{os.getpid()}"
        tmp.write_text(to_verilog(AcceleratorTop(cfg, dtype, depth), TOP_NAME), encoding="utf-8")
        tmp.replace(f)
    return f


_KICK = re.compile(r"reg (\\\$auto\$verilog_backend\.cc:\d+:dump_module\$\d+) +(= 0|= 1'h0);")


def icarus_kick(text: str) -> str:
    """Yosys's Verilog runs its ``always @*`` blocks at time 0 by initialising a dummy
    register they read; Icarus may run that initialiser before the blocks wait, so a
    block whose inputs never change (the top's idle DMA) stays X. Initialise it at 1 ns
    instead: every such block sees the event (simulation only)."""
    return _KICK.sub(lambda mt: f"reg {mt.group(1)} ;\n  initial #1 {mt.group(1)}  = 1'h0;",
                     text)


def run_top_programs(runs: list[tuple[isa.Program, AcceleratorConfig, dict]],
                     sim: str | None = None, *, system_model: SystemModel,
                     max_cycles: int = 200_000) -> list[dict]:
    """Run (program, config, DRAM image) triples on one top (the configs must build the
    same hardware) in one cocotb session; per program: ``rtl_program_cycles`` (the
    ``CYCLES`` register), ``model_program_cycles`` (``system_model``'s total),
    ``mismatches`` and ``words`` compared, every register, and the system model's stall
    cycles of the engine by cause."""
    from cocotb_tools.runner import get_runner

    cfg0 = runs[0][1]
    key = lambda c: {k: v for k, v in to_dict(c).items() if k != "name"}
    for _, cfg, _ in runs:
        if key(cfg) != key(cfg0):
            raise ValueError("programs run in one session must share the config")
    sim = sim or "icarus"
    hosts = [top_host(prog, cfg, dram) for prog, cfg, dram in runs]
    longest = max(len(prog.instructions) for prog, _, _ in runs)
    depth = max(16, 1 << (longest - 1).bit_length())
    src = cached_top_verilog(cfg0, cfg0.numerics.dtype, depth)
    build_args: list[str] = []
    if sim == "verilator":
        from .runner import VERILATOR_ARGS, verilator_env

        build_dir = src.parent / f"{sim}{verilator_env()}"
        build_args = list(VERILATOR_ARGS)
    else:
        build_dir = src.parent / sim
        kicked = src.with_name(src.stem + "_icarus.v")
        if not kicked.exists():
            tmpf = kicked.with_name(f"{kicked.name}.tmp{os.getpid()}")
            tmpf.write_text(icarus_kick(src.read_text(encoding="utf-8")), encoding="utf-8")
            tmpf.replace(kicked)
        src = kicked
    runner = get_runner(sim)
    size = max(h["size"] for h in hosts)
    with tempfile.TemporaryDirectory() as tmp:  # build_and_test locks the build folder
        hp, pfile, result = Path(tmp) / "host.pkl", Path(tmp) / "p.json", Path(tmp) / "r.json"
        tb = [{k: h[k] for k in ("segments", "PROG_ADDR", "PROG_LEN", "DESC_ADDR",
                                 "DESC_COUNT", "stores", "LR", "MOMENTUM")}
              | {"max_cycles": max_cycles,
                 "checks": {k: {"addr": g["addr"], "bytes": g["bytes"]}
                            for k, g in h["checks"].items()}}
              for h in hosts]
        from ..axi import axi_lite_members, axi_master_members
        from ..sore_stream import sore_port
        from ..top import SORE_PREFIX, WU_PREFIX
        from ..wu_stream import wu_port

        p0 = axi_params(cfg0)
        units = [x for x, on in ((SORE_PREFIX, sore_port(cfg0)), (WU_PREFIX, wu_port(cfg0)))
                 if on]
        ports = {**axi_lite_members(8), **axi_master_members(p0)}
        for x in units:
            ports.update(axi_master_members(p0, x))
        inputs = [n for n, mb in ports.items() if mb.flow.name == "In"]
        hp.write_bytes(pickle.dumps({"programs": tb, "size": size, "inputs": inputs,
                                     "config": to_dict(cfg0),
                                     "unit_prefixes": [x[:-1] for x in units]}))
        pfile.write_text(json.dumps({"host": str(hp)}))
        build_and_test(
            runner, sim, build_dir,
            dict(sources=[src], hdl_toplevel=TOP_NAME, build_args=build_args,
                 timescale=("1ns", "1ps")),
            dict(hdl_toplevel=TOP_NAME, test_module="nmsat.rtl.tb.cocotb_top", test_dir=tmp,
                 results_xml=str(Path(tmp) / "x.xml"),
                 extra_env={"NMSAT_TB_PARAMS": str(pfile), "NMSAT_TB_RESULT": str(result),
                            "PYTHONPATH": os.pathsep.join(sys.path)}),
            result, f"the {cfg0.name} accelerator top")
        results = json.loads(result.read_text())
    if len(results) != len(runs):
        raise RuntimeError(f"the testbench ran {len(results)} of {len(runs)} programs")
    return [_report(prog, cfg, h, r, sim, system_model)
            for (prog, cfg, _), h, r in zip(runs, hosts, results)]


def _report(prog, cfg, host: dict, res: dict, sim: str, system_model: SystemModel) -> dict:
    shape = EngineShape.from_config(cfg)
    words = bad = 0
    first: list[tuple[int, int, int, int, int]] = []  # (tensor, row, col, RTL, golden)
    for t, exp in host["expected"].items():
        got = unpack_store_region(shape, bytes.fromhex(res["outputs"][str(t)]),
                                  host["stores"][t])
        cov = host["covered"][t]
        words += int(cov.sum())
        wrong = (got.astype(np.uint64) != exp) & cov
        bad += int(wrong.sum())
        first += [(t, int(r), int(c), int(got[r, c]), int(exp[r, c]))
                  for r, c in zip(*np.nonzero(wrong))][:8 - len(first)]
    unit_words = 0
    for name, g in host["checks"].items():  # what the SORE and update wrote, word by word
        got, w = bytes.fromhex(res["unit_outputs"][name]), g["word"]
        for i in range(0, len(got), w):
            words += 1
            unit_words += 1
            if got[i:i + w] != g["expected"][i:i + w]:
                bad += 1
                if len(first) < 8:
                    first.append((name, -1, i // w, int.from_bytes(got[i:i + w], "little"),
                                  int.from_bytes(g["expected"][i:i + w], "little")))
    model = system_model(prog, cfg, extrapolate=False, record=True)
    regs = res["registers"]
    stall = {}
    for (_layer, _phase, cause), v in model.stall.get("engine", {}).items():
        stall[cause] = stall.get(cause, 0) + v
    return {"sim": sim, "irq": res["irq"], "rtl_program_cycles": regs["CYCLES"],
            "model_program_cycles": model.total_cycles,
            "cycle_difference": regs["CYCLES"] - model.total_cycles,
            "words": words, "unit_words": unit_words, "mismatches": bad,
            "first_mismatches": first,
            "error": bool(regs["STATUS"] & 4),
            "registers": regs, "model_engine_stall": stall, "seconds": res["seconds"],
            # per LOAD / STORE: (command issued, completion) cycles on the RTL, and the
            # model's DRAM data spans of the same transfers (dma<ch> intervals, in order)
            "rtl_transfers": {q: list(zip(res["timeline"][q], res["timeline"][q + "_done"]))
                              for q in ("load", "store")},
            "axi": {ch: res["timeline"][ch] for ch in ("ar", "r", "aw", "w", "b")},
            "axi_debug": res["timeline"].get("dbg", []),  # NMSAT_TB_DEBUG: AW / W values
            "model_transfers": {q: [(iv.start, iv.end) for iv in model.intervals
                                    if iv.unit.startswith("dma") and iv.kind == q]
                                for q in ("load", "store")}}
