"""cocotb test module for the tensor engine (run through :mod:`nmsat.rtl.tb.runner`).

Parameters come from the JSON file named by ``NMSAT_TB_PARAMS``: the engine config
(preset name and overrides), dtype, the number of random tiles, seed, input-gap and
output-ready probabilities. The totals (tiles, mismatches, cycle mismatches, simulated
cycles) go to ``NMSAT_TB_RESULT``. Each tile: load ACT/WGT through the load streams
(random gaps), COMPUTE with random ``in_valid``/``out_ready`` stalls (cycles must equal
``tile_model.block_cycles`` under the same masks), STORE under random backpressure
(values must equal ``reference.engine_gemm`` bit for bit).
"""

from __future__ import annotations

import json
import os
import time

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.simtime import get_sim_time
from cocotb.triggers import FallingEdge, RisingEdge
from nmsat.simulator.tile_model import block_cycles

from nmsat.config import from_dict, preset
from nmsat.types import NM, Dataflow

from ..layouts import EngineShape
from .cocotb_parts import Checker, StreamDriver, StreamMonitor
from .engine_model import compute, load_words, pack_fields, store, unpack_store, word
from .tiles import random_tile

PATTERNS = ["1:1", "1:4", "2:4", "2:8", "1:8", "4:8"]


def _params() -> dict:
    with open(os.environ["NMSAT_TB_PARAMS"], encoding="utf-8") as f:
        return json.load(f)


def config_of(p: dict):
    return from_dict(p.get("overrides", {}), base=preset(p["preset"]))


async def run_compute(dut, clk, instr: int, rng, stall: float):
    """Issue a COMPUTE; drive random stalls while busy. Returns (cycles, in_valid, out_ready)."""
    cmd = StreamDriver(dut, "cmd", clk, rng)
    await cmd.send([instr])
    iv, orr = [], []
    while int(dut.busy.value):  # at a falling edge: drive this cycle's stall inputs
        a = bool(stall == 0 or rng.random() >= stall)
        b = bool(stall == 0 or rng.random() >= stall)
        dut.in_valid.value, dut.out_ready.value = int(a), int(b)
        iv.append(a)
        orr.append(b)
        await FallingEdge(clk)
    dut.in_valid.value, dut.out_ready.value = 1, 1
    return len(iv), np.array(iv), np.array(orr)


async def start_engine(dut, cfg, shape: EngineShape, rng, gap: float, ready: float):
    """Clock, reset, the two load drivers, the store monitor, and the load payload layouts."""
    from ..engine import load_layouts

    layouts = load_layouts(cfg, shape)
    clk = dut.clk
    cocotb.start_soon(Clock(clk, 10, unit="ns").start())
    dut.rst.value = 1
    dut.in_valid.value, dut.out_ready.value = 1, 1
    await RisingEdge(clk)
    await FallingEdge(clk)
    dut.rst.value = 0
    act = StreamDriver(dut, "act_load", clk, rng, gap)
    wgt = StreamDriver(dut, "wgt_load", clk, rng, gap)
    mon = StreamMonitor(dut, "store", clk, rng, ready)
    cocotb.start_soon(mon.run())
    return act, wgt, mon, layouts


@cocotb.test()
async def random_tiles(dut):
    p = _params()
    cfg = config_of(p)
    shape = EngineShape.from_config(cfg, p["dtype"])
    rng = np.random.default_rng(p["seed"])
    clk = dut.clk
    act, wgt, mon, layouts = await start_engine(dut, cfg, shape, rng, p["gap"], p["ready"])
    chk = Checker(shape.dtype.is_float)
    cycles_total, t0 = 0, time.perf_counter()
    for i in range(p["tiles"]):
        nm = PATTERNS[i % len(PATTERNS)]
        df = ["os", "ws"][(i // len(PATTERNS)) % 2]
        il = bool(rng.integers(2))
        m, n = (int(x) for x in rng.integers(1, p["max_mn"] + 1, 2))
        k = int(rng.integers(1, p["max_k"] + 1))
        tile = random_tile(rng, shape, m, k, n, nm)
        lw = load_words(shape, tile)
        ta = cocotb.start_soon(act.send(
            [pack_fields(layouts[0], bank=b, addr=a, data=w) for b, a, w in lw.act]))
        tw = cocotb.start_soon(wgt.send(
            [pack_fields(layouts[1], bank=b, addr=a, data=w) for b, a, w in lw.wgt]))
        await ta
        await tw
        cyc, iv, orr = await run_compute(dut, clk, word(compute(df, nm, m, n, k, il)), rng,
                                         p["stall"] if i % 2 else 0.0)
        want = block_cycles(Dataflow.parse(df), m, n, k, NM.parse(nm), il, cfg, iv, orr)
        name = f"tile {i} {df} {'il' if il else 'no-il'} {nm} {m}x{k}x{n}"
        chk.cycles(name, cyc, want)
        cycles_total += cyc
        await StreamDriver(dut, "cmd", clk, rng).send([word(store(m, n))])
        beats_needed = m * -(-n // shape.cols)
        while len(mon.beats) < beats_needed:
            await FallingEdge(clk)
        beats = [mon.beats.popleft() for _ in range(beats_needed)]
        chk.values(name, unpack_store(shape, beats, m, n), tile.expected)
    rep = chk.report
    rep.update(compute_cycles=cycles_total, seconds=time.perf_counter() - t0,
               cycles=int(get_sim_time("ns")) // 10)
    with open(os.environ["NMSAT_TB_RESULT"], "w", encoding="utf-8") as f:  # noqa: ASYNC230
        json.dump(rep, f)
    assert rep["mismatches"] == 0 and rep["cycle_mismatches"] == 0, rep["notes"]
