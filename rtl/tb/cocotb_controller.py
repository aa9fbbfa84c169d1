"""cocotb test module: a whole tile program on the controlled engine
(:mod:`nmsat.rtl.tb.controller_run` prepares it).

The testbench writes the program into the instruction memory, pulses ``start`` and is
then only the DMA and DRAM: LOAD commands (checked against the program's resolved tiles)
write their tile's buffer words, one load beat per cycle; STORE commands collect the
engine's store stream and compare it with the golden executor; completions follow the
memory model the system model uses (:class:`nmsat.dataflow.memory.Dma`, the one
definition of the DRAM timing, from each program's config; the port cycles of each
transfer are ``dataflow.machine.port_cycles``), and none comes before the transfer's
last beat crossed the engine's port. Results (per-COMPUTE busy cycles, start-to-done
cycles, words, mismatches, tile errors) go to ``NMSAT_TB_RESULT``, one per program.

A watchdog bounds each program: without ``done`` by the program's ``watchdog`` cycle
(:func:`nmsat.rtl.tb.controller_run.watchdog_cycles` of the system model's total) the run
stops, its report says ``hung`` (what was still in flight), and the programs after it are
not run (the controller is stuck); the host side raises one error naming it.
"""

from __future__ import annotations

import json
import os
import time
from collections import deque

import cocotb
from cocotb.clock import Clock
from cocotb.simtime import get_sim_time
from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge

from nmsat.dataflow import isa
from nmsat.dataflow.memory import Dma

from ..controller import region_layout
from ..fp import same_bits
from ..layouts import EngineShape
from .cocotb_engine import run_inputs
from .engine_model import store_beats, unpack_store

__all__ = ["EngineStall", "program"]


@cocotb.test()
async def program(dut):
    """Each host program in turn on one controller: written, started, served until
    ``done``; one report per program (``host["programs"]``)."""
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
    dut.rst.value = 1
    for _ in range(3):
        await RisingEdge(clk)
    dut.rst.value = 0
    await FallingEdge(clk)
    reps = []
    for one in host["programs"]:
        t0, c0 = time.perf_counter(), int(get_sim_time("ns")) // 10
        for a, w in enumerate(one["words"]):
            dut.prog__payload.value = (w << (len(dut.prog__payload) - 512)) | a
            dut.prog__valid.value = 1
            await FallingEdge(clk)
        dut.prog__valid.value = 0
        dut.length.value = len(one["words"])
        dut.start.value = 1
        await FallingEdge(clk)
        dut.start.value = 0
        rep = await _serve(dut, clk, shape, one, Dma.from_config(cfg.replace(**one["dma"])))
        await FallingEdge(clk)  # done pulsed: the controller is idle from the next cycle
        dut.load_done.value = dut.store_done.value = 0  # the last cycle's pulses end
        rep.update(seconds=time.perf_counter() - t0,
                   cycles=int(get_sim_time("ns")) // 10 - c0)
        reps.append(rep)
        if rep["hung"]:
            break
    with open(os.environ["NMSAT_TB_RESULT"], "w", encoding="utf-8") as f:  # noqa: ASYNC230
        json.dump(reps, f)


async def _serve(dut, clk, shape: EngineShape, host: dict, dma: Dma) -> dict:
    """The DMA, cycle by cycle from the cycle after ``start`` until ``done``; ``dma``
    times the transfers (model time 0 is the cycle after ``start``)."""
    loads, stores = deque(host["loads"]), deque(host["stores"])
    writes = {0: deque(), 1: deque()}  # ACT / WGT port beats still to write
    ports = {0: (dut.act_load__valid, dut.act_load__payload),
             1: (dut.wgt_load__valid, dut.wgt_load__payload)}
    pending = {"load": deque(), "store": deque()}  # [due cycle, port beats left]
    # STOREs whose beats are still to come, in issue order: the engine's store path
    # streams them one after the other, and with OUT double-buffered a STORE can issue
    # while the one before it still streams
    collecting: deque[dict] = deque()
    beats: list[int] = []
    busy_run, compute_cycles, words, bad, errors = 0, [], 0, 0, []
    stall = EngineStall()
    timeline = {"load": [], "store": [], "compute": []}  # (issue, model due, done) / start
    cyc = 0  # cycles since start (model time 0)
    bound, stall_loads = host["watchdog"], host.get("fault") == "no_load_done"
    while True:
        for q in ("load", "store"):  # completion pulses, one per cycle per queue, in order
            head = pending[q][0] if pending[q] else None
            fire = (head is not None and head["due"] <= cyc and head["left"] == 0
                    and not (q == "load" and stall_loads))
            getattr(dut, f"{q}_done").value = int(fire)
            if fire:
                e = pending[q].popleft()
                timeline[q].append((e["issue"], e["due"], cyc))
        for b in (0, 1):
            valid, payload = ports[b]
            valid.value = int(bool(writes[b]))
            if writes[b]:
                payload.value = writes[b][0][1]
        await ReadOnly()
        for b, port in ((0, dut.act_load__ready), (1, dut.wgt_load__ready)):
            if writes[b] and int(port.value):
                writes[b].popleft()[0]["left"] -= 1
        if int(dut.load_cmd__valid.value):
            got = _region(int(dut.load_cmd__payload.value))
            ld = _expected("LOAD", got, loads, cyc, errors)
            if ld is not None:
                due = dma.issue(0, cyc, ld["dma_bytes"], isa.Buffer(got["buffer"]),
                                ld["port_cycles"], ld["tail"]).done
                entry = {"issue": cyc, "due": due,
                         "left": len(ld["words"])}
                pending["load"].append(entry)
                writes[ld["port"]].extend((entry, w) for w in ld["words"])
        if int(dut.store_cmd__valid.value):
            got = _region(int(dut.store_cmd__payload.value))
            st = _expected("STORE", got, stores, cyc, errors)
            if st is not None:
                need = store_beats(shape, st["rows"], st["cols"])
                entry = {"issue": cyc, "due": dma.issue(1, cyc, st["dma_bytes"], isa.Buffer.OUT,
                                                        st["port_cycles"], st["tail"]).done,
                         "left": need, "st": st}
                pending["store"].append(entry)
                collecting.append(entry)
        if int(dut.store_data__valid.value):
            if not collecting:
                errors.append(f"cycle {cyc}: a store beat with no STORE issued for it")
            else:
                cur = collecting[0]
                beats.append(int(dut.store_data__payload.value))
                cur["left"] -= 1
                if cur["left"] == 0:
                    s = collecting.popleft()["st"]
                    got = unpack_store(shape, beats, s["rows"], s["cols"])
                    ok = same_bits(got, s["expected"], shape.dtype.is_float)
                    words += ok.size
                    bad += int((~ok).sum())
                    beats = []
        if int(dut.engine_busy.value):
            if not busy_run:
                timeline["compute"].append(cyc)
            busy_run += 1
        elif busy_run:
            compute_cycles.append(busy_run)
            busy_run = 0
        stall.sample(int(dut.engine_active.value))
        if int(dut.sore_cmd__valid.value) or int(dut.wu_cmd__valid.value):
            errors.append(f"cycle {cyc}: a SORE or vector command in a layer program")
        finished = int(dut.done.value)
        if finished or cyc >= bound:
            break
        await FallingEdge(clk)
        cyc += 1
    hung = None if finished else (
        f"no done after {cyc} cycles; in flight: {len(pending['load'])} LOADs, "
        f"{len(pending['store'])} STOREs, {len(loads)} LOADs and {len(stores)} STOREs of "
        f"the program never issued, engine {'busy' if busy_run else 'idle'}")
    return {"compute_cycles": compute_cycles, "engine_stall": stall.cycles, "words": words,
            "mismatches": bad,
            "tile_errors": errors, "hung": hung,
            # the cycle ``done`` pulsed, counted from the cycle after ``start`` (the system
            # model's time 0): the last completion's cycle
            "program_cycles": cyc, "error": int(dut.error.value), "timeline": timeline}


class EngineStall:
    """The engine's idle cycles before each of its instructions, sampled once a cycle
    from the system model's time 0 (``engine_active``: a COMPUTE or RELEASE from its
    accept to its completion, the model's ``[start, done)``): the model's engine stall,
    every cause. Idle cycles after the last instruction's start are not a stall."""

    def __init__(self) -> None:
        self.cycles, self._idle, self._was = 0, 0, False

    def sample(self, active: bool) -> None:
        if active and not self._was:
            self.cycles, self._idle = self.cycles + self._idle, 0
        elif not active:
            self._idle += 1
        self._was = bool(active)


def _region(v: int) -> dict:
    return {name: (v >> region_layout[name].offset) & ((1 << region_layout[name].width) - 1)
            for name in ("buffer", "tensor", "transform", "r0", "c0", "rows", "cols", "bytes",
                         "half")}


def _expected(kind: str, got: dict, queue: deque, cyc: int, errors: list) -> dict | None:
    """The program's next transfer of this queue if the command's tile is it; else the
    mismatch is recorded and None returned."""
    want = queue.popleft() if queue else None
    if want is None or got != want["tile"]:
        errors.append(f"cycle {cyc}: {kind} {got}, the program's next is "
                      f"{want and want['tile']}")
        return None
    return want
