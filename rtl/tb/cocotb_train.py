"""cocotb test module: a whole training-step program on the controlled engine with its
SORE and weight-update engine (:mod:`nmsat.rtl.tb.train_run` prepares it).

The testbench is the DMA over a live DRAM image (the golden executor's tensors,
``nmsat.dataflow.execute.Executor``, plus each weight tensor's fp32 master copy and
velocity): every LOAD's words are laid out from DRAM as it is when the command issues,
every STORE's beats are written back into DRAM (converted to the tensor's type), a SORE
command streams its source weights' groups into ``sore_in`` one beat per cycle from the
next cycle and writes the kept groups from ``sore_out`` into the compressed view, and a
WEIGHT_UPDATE command streams (master, velocity, gradient) into ``wu_in`` and writes the
master, velocity and working copy from ``wu_out``. So the masks the FF and BP GEMMs read
are the RTL SORE's, and the weights the update writes are the RTL's from the RTL's
gradient. DMA timing is the memory model the system model uses: transfers through
:class:`nmsat.dataflow.memory.Dma`, the SORE's and update's streams
``MemoryModel.stream_cycles`` (``*_mem_done`` pulses at the issue cycle plus that).
Results: per-program cycles, per-COMPUTE busy cycles, per-SORE/WU (issue, last result,
memory due) cycles, errors, and the final DRAM (pickled) at ``NMSAT_TB_RESULT``.
"""

from __future__ import annotations

import os
import pickle
import time
from collections import deque

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.simtime import get_sim_time
from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge

from nmsat.dataflow import isa
from nmsat.dataflow.execute import Executor
from nmsat.dataflow.memory import Dma, memory_model

from ..engine import buffer_geometry, load_layouts, ring_halves
from .cocotb_controller import EngineStall, _expected, _region
from .cocotb_engine import run_inputs
from .controller_run import load_port_words
from .engine_model import store_beats, unpack_store
from .train_units import SoreJob, WuJob

__all__ = ["train"]


@cocotb.test()
async def train(dut):
    """Each host program in turn: written, started, served until ``done``."""
    cfg, shape, host = run_inputs("host")
    clk = dut.clk
    cocotb.start_soon(Clock(clk, 10, unit="ns").start())
    for s in ("start", "load_done", "store_done", "sore_mem_done", "wu_mem_done",
              "prog__valid", "act_load__valid", "wgt_load__valid", "sore_in__valid",
              "wu_in__valid"):
        getattr(dut, s).value = 0
    for s in ("load_cmd__ready", "store_cmd__ready", "store_data__ready", "sore_cmd__ready",
              "wu_cmd__ready", "sore_out__ready", "wu_out__ready", "in_valid", "out_ready"):
        getattr(dut, s).value = 1
    dut.lr.value = host["lr_bits"]
    dut.momentum.value = host["momentum_bits"]
    dut.rst.value = 1
    for _ in range(3):
        await RisingEdge(clk)
    dut.rst.value = 0
    await FallingEdge(clk)
    reps = []
    for one in host["programs"]:
        t0, c0 = time.perf_counter(), int(get_sim_time("ns")) // 10
        prog = isa.Program.from_bytes(one["program"])
        for a, ins in enumerate(prog.instructions):
            w = int.from_bytes(isa.encode(ins), "little")
            dut.prog__payload.value = (w << (len(dut.prog__payload) - 512)) | a
            dut.prog__valid.value = 1
            await FallingEdge(clk)
        dut.prog__valid.value = 0
        dut.length.value = len(prog.instructions)
        dut.start.value = 1
        await FallingEdge(clk)
        dut.start.value = 0
        c = cfg.replace(**one["dma"])
        rep = await _serve(dut, clk, c, shape, prog, one)
        await FallingEdge(clk)
        for s in ("load_done", "store_done", "sore_mem_done", "wu_mem_done"):
            getattr(dut, s).value = 0
        rep.update(seconds=time.perf_counter() - t0,
                   cycles=int(get_sim_time("ns")) // 10 - c0)
        reps.append(rep)
    with open(os.environ["NMSAT_TB_RESULT"], "wb") as f:  # noqa: ASYNC230
        pickle.dump(reps, f)


async def _serve(dut, clk, cfg, shape, prog: isa.Program, host: dict) -> dict:
    """The DMA over the live DRAM, cycle by cycle from the cycle after ``start`` until
    ``done`` (model time 0 is the cycle after ``start``)."""
    ex = Executor(prog, cfg, host["dram"])
    state = {k: np.array(v, np.float32) for k, v in host["state"].items()}
    dma, mem = Dma.from_config(cfg), memory_model(cfg)
    layouts = dict(zip((isa.Buffer.ACT, isa.Buffer.WGT), load_layouts(cfg, shape)))
    g = buffer_geometry(cfg, shape)
    ha, hw, _ = ring_halves(cfg)
    ring = {isa.Buffer.ACT: (ha, g["act"]), isa.Buffer.WGT: (hw, g["wgt"])}
    nloads = {isa.Buffer.ACT: 0, isa.Buffer.WGT: 0}
    loads, stores = deque(host["loads"]), deque(host["stores"])
    units = {"sore": deque(host["sores"]), "wu": deque(host["wus"])}
    jobs: dict[str, SoreJob | WuJob | None] = {"sore": None, "wu": None}
    writes: dict[int, deque] = {0: deque(), 1: deque()}
    ports = {0: (dut.act_load__valid, dut.act_load__payload),
             1: (dut.wgt_load__valid, dut.wgt_load__payload)}
    pending: dict[str, deque] = {"load": deque(), "store": deque()}
    beats: list[int] = []
    st_cur = None
    busy_run, compute_cycles, errors = 0, [], []
    stall = EngineStall()  # the system model's engine stall
    timeline: dict[str, list] = {"sore": [], "wu": []}
    cyc = quiet = 0
    while True:
        for q in ("load", "store"):
            head = pending[q][0] if pending[q] else None
            fire = head is not None and head["due"] <= cyc and head["left"] == 0
            getattr(dut, f"{q}_done").value = int(fire)
            if fire:
                pending[q].popleft()
        for b in (0, 1):
            valid, payload = ports[b]
            valid.value = int(bool(writes[b]))
            if writes[b]:
                payload.value = writes[b][0][1]
        for u, job in jobs.items():
            getattr(dut, f"{u}_mem_done").value = int(job is not None and job.due == cyc)
            beat = job.next_beat(cyc) if job is not None else None
            getattr(dut, f"{u}_in__valid").value = int(beat is not None)
            if beat is not None:
                getattr(dut, f"{u}_in__payload").value = beat
        await ReadOnly()
        for b, port in ((0, dut.act_load__ready), (1, dut.wgt_load__ready)):
            if writes[b] and int(port.value):
                writes[b].popleft()[0]["left"] -= 1
        for u, job in jobs.items():
            if job is None:
                continue
            sent = getattr(dut, f"{u}_in__valid"), getattr(dut, f"{u}_in__ready")
            if int(sent[0].value) and int(sent[1].value):
                job.took_beat()
            if int(getattr(dut, f"{u}_out__valid").value):
                job.result(int(getattr(dut, f"{u}_out__payload").value), cyc)
            if job.finished(cyc):
                job.write(ex, state)
                timeline[u].append(job.times())
                jobs[u] = None
        if int(dut.load_cmd__valid.value):
            got = _region(int(dut.load_cmd__payload.value))
            ld = _expected("LOAD", got, loads, cyc, errors)
            if ld is not None:
                ins = ld["instr"]
                halves, depth = ring[ins.buffer]
                half = nloads[ins.buffer] % halves
                nloads[ins.buffer] += 1
                tile = ex._load(ins, got["r0"], got["c0"])
                words = load_port_words(shape, ins, tile, layouts[ins.buffer], half, depth)
                due = dma.issue(0, cyc, ld["dma_bytes"], ins.buffer, ld["port_cycles"],
                                ld["tail"]).done
                entry = {"due": due, "left": len(words)}
                pending["load"].append(entry)
                writes[int(ins.buffer)].extend((entry, w) for w in words)
        if int(dut.store_cmd__valid.value):
            got = _region(int(dut.store_cmd__payload.value))
            st = _expected("STORE", got, stores, cyc, errors)
            if st is not None:
                st_cur = {"due": dma.issue(1, cyc, st["dma_bytes"], isa.Buffer.OUT,
                                           st["port_cycles"], st["tail"]).done,
                          "left": store_beats(shape, got["rows"], got["cols"]),
                          "st": st, "r0": got["r0"], "c0": got["c0"]}
                pending["store"].append(st_cur)
        if int(dut.store_data__valid.value) and st_cur is not None:
            beats.append(int(dut.store_data__payload.value))
            st_cur["left"] -= 1
            if st_cur["left"] == 0:
                ins = st_cur["st"]["instr"]
                words = unpack_store(shape, beats, ins.rows, ins.cols)
                ex.out[0] = words.astype(np.uint32).view(np.float32)
                ex._store(ins, st_cur["r0"], st_cur["c0"])
                beats, st_cur = [], None
        _unit_commands(dut, cyc, units, jobs, (prog, ex, state, cfg, shape), mem, errors)
        stall.sample(int(dut.engine_active.value))
        if int(dut.engine_busy.value):
            busy_run += 1
        elif busy_run:
            compute_cycles.append(busy_run)
            busy_run = 0
        finished = int(dut.done.value)
        active = (any(pending.values()) or writes[0] or writes[1] or busy_run
                  or any(j is not None for j in jobs.values())
                  or int(dut.load_cmd__valid.value) or int(dut.store_cmd__valid.value))
        quiet = 0 if active else quiet + 1
        if finished or quiet > 5000:
            break
        await FallingEdge(clk)
        cyc += 1
    for u, job in jobs.items():
        if job is not None:
            errors.append(f"a {u} command never finished")
    return {"compute_cycles": compute_cycles, "engine_stall": stall.cycles,
            "timeline": timeline,
            "tile_errors": errors + ([] if finished else ["done never came"]),
            "program_cycles": cyc, "error": int(dut.error.value),
            "dram": {k: np.asarray(v) for k, v in ex.dram.items()}, "state": state}


def _unit_commands(dut, cyc: int, units: dict, jobs: dict, ctx: tuple, mem, errors: list):
    """A SORE or WEIGHT_UPDATE command this cycle: checked against the program's next
    one of its unit and started as a job (its stream due ``stream_cycles`` later)."""
    for u in ("sore", "wu"):
        if not int(getattr(dut, f"{u}_cmd__valid").value):
            continue
        word = int(getattr(dut, f"{u}_cmd__payload").value)
        want = units[u].popleft() if units[u] else None
        if want is None or word != want["word"]:
            errors.append(f"cycle {cyc}: {u} command is not the program's next")
            continue
        ins = want["instr"]
        cls = SoreJob if u == "sore" else WuJob
        try:
            jobs[u] = cls(ins, *ctx, cyc, cyc + mem.stream_cycles(ins.read_bytes
                                                                  + ins.write_bytes))
        except AssertionError as e:
            errors.append(f"cycle {cyc}: {e}")
