"""cocotb test module: whole programs on :class:`~nmsat.rtl.top.AcceleratorTop` as a host
drives it (:mod:`nmsat.rtl.tb.top_run` prepares them).

DRAM is ``cocotbext-axi``'s ``AxiRam`` on the top's AXI4 master, its data bus one DRAM
channel's ``dram.bytes_per_cycle`` wide (a beat per cycle is the channel's bandwidth),
each burst timed by the system model's DRAM (:class:`ModelRam`); control is
``cocotbext-axi``'s ``AxiLiteMaster`` on the AXI4-Lite slave. Per program the host
writes the DRAM image (program, descriptors, tensors), the registers, and ``CONTROL``
(start, irq_enable); waits for ``irq``; reads the counters over AXI4-Lite and the STORE
regions from the ``AxiRam``. Results go to ``NMSAT_TB_RESULT``, one per program.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import time
from collections import deque

import cocotb
from cocotb.clock import Clock
from cocotb.queue import Queue
from cocotb.triggers import FallingEdge, RisingEdge
from cocotbext.axi import AxiBus, AxiLiteBus, AxiLiteMaster, AxiRam

from nmsat.config import from_dict
from nmsat.dataflow.memory import memory_model

from ..top import REGISTERS, register
from .top_run import TB_PIPELINE

__all__ = ["ModelRam", "program"]

DEBUG = bool(os.environ.get("NMSAT_TB_DEBUG"))


class ModelRam(AxiRam):
    """``AxiRam`` timed by the system model's DRAM (:func:`nmsat.dataflow.memory.
    memory_model`, the one definition): each AR or AW burst is a transfer of its bytes on
    the model's channel, issued in the cycle of its handshake, in handshake order (reads
    and writes share the channel, as in the model). A read burst's first beat is on the
    bus in the cycle the model's span starts; a write burst's B response comes in the
    cycle its data would end (span start + its beats; a short burst still holds the
    channel for a whole ``dram.burst_bytes``)."""

    PIPELINE = TB_PIPELINE
    """Cycles from a handshake seen by :meth:`_watch` to a beat this model sends reaching
    the bus (the R / B source drives from the edge after the send); the testbench's
    timeline checks that the first beat of a burst on an idle channel comes exactly
    ``dram.latency_cycles`` after its AR."""

    def __init__(self, bus, clock, reset, size: int, memory, data_bytes: int, mem=None):
        super().__init__(bus, clock, reset, size=size, mem=mem)
        if memory.first_byte(0) < self.PIPELINE:
            raise ValueError(f"dram.latency_cycles = {memory.first_byte(0)}: the "
                             f"testbench's DRAM needs at least {self.PIPELINE}")
        self.memory, self.data_bytes, self.cycle = memory, data_bytes, 0
        self.r_due, self.b_due = deque(), deque()
        self._first = True
        self.clock = clock
        # accept every AR / AW the master issues at once (AxiRam queues 2 by default, which
        # would hold a handshake and so start its transfer late)
        self.read_if.ar_channel.queue_occupancy_limit = 64
        self.write_if.aw_channel.queue_occupancy_limit = 64
        rsend, bsend = self.read_if.r_channel.send, self.write_if.b_channel.send

        async def r_send(r):
            if self._first:
                await self._until(self.r_due)
            self._first = bool(r.rlast)
            await rsend(r)

        # AxiRam's write handler takes a burst's W beats only after it has sent the B of
        # the burst before; waiting for that B's due cycle there would hold W (and, with
        # the master's burst queue full, AW) back, which a DRAM controller's write buffer
        # does not. So B responses are handed to a sender of their own, in order.
        bq: Queue = Queue()

        async def b_send(b):
            bq.put_nowait(b)

        async def b_sender():
            while True:
                b = await bq.get()
                await self._until(self.b_due)
                await bsend(b)

        self.read_if.r_channel.send = r_send
        self.write_if.b_channel.send = b_send
        cocotb.start_soon(self._watch(bus))
        cocotb.start_soon(b_sender())

    async def _until(self, due: deque):
        """Return mid-cycle ``due - PIPELINE``: the source drives what is sent now at
        the next edge, whether it is idle or still driving an earlier beat (sent right
        after an edge, a busy source could take it at that edge, a cycle early, or not,
        depending on which coroutine runs first)."""
        while not due:
            await RisingEdge(self.clock)
        t = due.popleft() - self.PIPELINE
        while self.cycle < t:
            await RisingEdge(self.clock)
        await FallingEdge(self.clock)

    async def _watch(self, bus):
        ar, aw = bus.read.ar, bus.write.aw
        while True:
            await RisingEdge(self.clock)
            self.cycle += 1
            c = self.cycle
            if int(ar.arvalid.value) and int(ar.arready.value):
                n = (int(ar.arlen.value) + 1) * self.data_bytes
                self.r_due.append(self.memory.transfer(c, n)[0].start)
            if int(aw.awvalid.value) and int(aw.awready.value):
                beats = int(aw.awlen.value) + 1
                self.b_due.append(self.memory.transfer(c, beats * self.data_bytes)[0].start
                                  + beats)


async def _timeline(dut, tl: dict, sore: str | None = None) -> None:
    """Per LOAD and STORE the cycle its command left the controller and the cycle its
    completion pulsed, counted from the first cycle the controller runs (the system
    model's time 0); sampled mid-cycle."""
    cyc, fetched = None, False
    while True:
        await FallingEdge(dut.clk)
        if cyc is None:  # the controller starts as the fetch ends
            fetching = int(dut.fetching.value)
            fetched |= bool(fetching)
            if fetching or not fetched:
                continue
            cyc = 0
        for q in ("load", "store"):
            if int(getattr(dut, f"{q}_cmd__valid").value) and \
                    int(getattr(dut, f"{q}_cmd__ready").value):
                tl[q].append(cyc)
            if int(getattr(dut, f"{q}_done").value):
                tl[f"{q}_done"].append(cyc)
        if DEBUG:
            if int(dut.core.engine_active.value):
                tl.setdefault("dbg", []).append(("engine", cyc, ""))
            for port in ("act_load", "wgt_load"):
                if int(getattr(dut, f"{port}__valid").value) and \
                        int(getattr(dut, f"{port}__ready").value):
                    tl.setdefault("dbg", []).append(
                        (port, cyc, hex(int(getattr(dut, f"{port}__payload").value))))
        for ch, v, r in (("ar", "arvalid", "arready"), ("r", "rvalid", "rready"),
                         ("aw", "awvalid", "awready"), ("w", "wvalid", "wready"),
                         ("b", "bvalid", "bready")):
            if int(getattr(dut, "m_axi_" + v).value) and int(getattr(dut, "m_axi_" + r).value):
                tl[ch].append(cyc)
            if sore and int(getattr(dut, f"{sore}_{v}").value) \
                    and int(getattr(dut, f"{sore}_{r}").value):
                tl.setdefault("sore_" + ch, []).append(cyc)
                if DEBUG and ch in ("w", "aw"):
                    tl.setdefault("dbg", []).append(
                        (ch, cyc, hex(int(dut.m_axi_wdata.value)) if ch == "w"
                         else hex(int(dut.m_axi_awaddr.value))))
        cyc += 1


@cocotb.test()
async def program(dut):
    """Each host program in turn: image written, registers set, started, ``irq`` awaited,
    counters and outputs read back."""
    params = json.loads(open(os.environ["NMSAT_TB_PARAMS"], encoding="utf-8").read())
    with open(params["host"], "rb") as f:  # noqa: ASYNC230
        host = pickle.load(f)
    clk = dut.clk
    cocotb.start_soon(Clock(clk, 10, unit="ns").start())
    dut.rst.value = 1
    for name in host["inputs"]:  # every input defined before the drivers take theirs
        getattr(dut, name).value = 0
    # cocotbext-axi logs every burst at INFO: thousands of lines per program, and a
    # large share of the simulation's time
    for bus in ("m_axi", "s_axil"):
        logging.getLogger(f"cocotb.{dut._name}.{bus}").setLevel(logging.WARNING)
    cfg = from_dict(host["config"])
    ram = ModelRam(AxiBus.from_prefix(dut, "m_axi"), clk, dut.rst, size=host["size"],
                   memory=memory_model(cfg), data_bytes=cfg.dram.bytes_per_cycle)
    units = host.get("unit_prefixes", [])
    for prefix in units:  # the SORE's and update's ports: a channel each, the same memory
        ModelRam(AxiBus.from_prefix(dut, prefix), clk, dut.rst, size=host["size"],
                 memory=memory_model(cfg), data_bytes=cfg.dram.bytes_per_cycle, mem=ram.mem)
        logging.getLogger(f"cocotb.{dut._name}.{prefix}").setLevel(logging.WARNING)
    sore = next((x for x in units if x.endswith("sore")), None)
    lite = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axil"), clk, dut.rst)
    for _ in range(3):
        await RisingEdge(clk)
    dut.rst.value = 0
    await RisingEdge(clk)
    reps = []
    for one in host["programs"]:
        t0 = time.perf_counter()
        for a, b in one["segments"]:
            ram.write(a, b)
        for name in ("PROG_ADDR", "PROG_LEN", "DESC_ADDR", "DESC_COUNT", "LR", "MOMENTUM"):
            await lite.write(register(name), int(one[name]).to_bytes(4, "little"))
        tl: dict = {"load": [], "load_done": [], "store": [], "store_done": [],
                    "ar": [], "r": [], "aw": [], "w": [], "b": []}
        mon = cocotb.start_soon(_timeline(dut, tl, sore))
        await lite.write(register("CONTROL"), (3).to_bytes(4, "little"))  # start, irq_enable
        waited = 0
        while not int(dut.irq.value) and waited < one["max_cycles"]:
            await RisingEdge(clk)
            waited += 1
        regs = {}
        for name, off, _, _ in REGISTERS:
            regs[name] = int.from_bytes((await lite.read(off, 4)).data, "little")
        await lite.write(register("STATUS"), (2).to_bytes(4, "little"))  # clear done
        outs = {str(t): ram.read(g["addr"], g["bytes"]).hex() for t, g in one["stores"].items()}
        unit_outs = {k: ram.read(g["addr"], g["bytes"]).hex() for k, g in one["checks"].items()}
        mon.cancel()
        reps.append({"registers": regs, "irq": waited < one["max_cycles"], "outputs": outs,
                     "unit_outputs": unit_outs,
                     "timeline": tl,
                     "seconds": time.perf_counter() - t0})
    with open(os.environ["NMSAT_TB_RESULT"], "w", encoding="utf-8") as f:  # noqa: ASYNC230
        json.dump(reps, f)
