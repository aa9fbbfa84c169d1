"""cocotb test module for the tensor engine (run through :mod:`nmsat.rtl.tb.runner`).

Parameters come from the JSON file named by ``NMSAT_TB_PARAMS``: the engine config
(preset name and overrides), dtype, the number of random tiles, seed, input-gap and
output-ready probabilities (or a list of fixed ``blocks``, each (dataflow, pattern, m,
n, k, interleave), instead of random tiles). The totals (tiles, mismatches, cycle
mismatches, simulated cycles, per block the RTL and model cycles) go to
``NMSAT_TB_RESULT``. Each tile: load ACT/WGT through the load streams
(random gaps), COMPUTE with random ``in_valid``/``out_ready`` stalls (cycles must equal
``timing.block_cycles`` under the same masks), STORE under random backpressure
(values must equal ``reference.engine_gemm`` bit for bit). On an ``act_zero = skip``
engine every WS tile gets all-zero row slices (none, 40 % or 80 % of the rows per K-tile,
every third tile one K-tile zero in every row), its row lists go through the
``rowlist_load`` stream, and its expected values and cycles are the skip ones
(``engine_gemm(..., skip_rows=R)``, ``block_cycles(..., stream=)``); the report adds the
rows dropped and the cycles they saved.
"""

from __future__ import annotations

import json
import os
import pickle
import time

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.simtime import get_sim_time
from cocotb.triggers import FallingEdge, RisingEdge

from nmsat.config import from_dict, preset
from nmsat.dataflow.timing import block_cycles
from nmsat.types import NM, ActZero, Dataflow

from ..layouts import EngineShape
from .cocotb_parts import Checker, StreamDriver, StreamMonitor
from .engine_model import (
    compute,
    load_words,
    pack_fields,
    store,
    store_beats,
    unpack_store,
    word,
    ws_stream,
)
from .tiles import random_skip_tile, random_tile

PATTERNS = ["1:1", "1:4", "2:4", "2:8", "1:8", "4:8"]


def _params() -> dict:
    with open(os.environ["NMSAT_TB_PARAMS"], encoding="utf-8") as f:
        return json.load(f)


def config_of(p: dict):
    return from_dict(p.get("overrides", {}), base=preset(p["preset"]))


def run_inputs(key: str):
    """(config, engine shape, the pickled object at ``params[key]``) of a run whose
    ``NMSAT_TB_PARAMS`` JSON names the config and a pickle file (the host's part)."""
    with open(os.environ["NMSAT_TB_PARAMS"], encoding="utf-8") as f:
        p = json.load(f)
    cfg = config_of(p)
    with open(p[key], "rb") as f:
        return cfg, EngineShape.from_config(cfg, p["dtype"]), pickle.load(f)


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


async def send_loads(drivers, layouts, lw) -> None:
    """Send a block's load beats through the ACT, WGT (and row-list) load drivers, all
    three streams at once."""
    tasks = [cocotb.start_soon(drivers[i].send([b.pack(layouts[i]) for b in beats]))
             for i, beats in enumerate((lw.act, lw.wgt))]
    if lw.rows:
        tasks.append(cocotb.start_soon(drivers[2].send(
            [pack_fields(layouts[2], **f) for f in lw.rows])))
    for t in tasks:
        await t


async def start_engine(dut, cfg, shape: EngineShape, rng, gap: float, ready: float):
    """Clock, reset, the load drivers (ACT, WGT, and the row lists of a skip engine, else
    None), the store monitor, and the load payload layouts."""
    from ..engine import buffer_geometry, load_layouts
    from ..rowlist import rowlist_load_layout

    layouts = load_layouts(cfg, shape) + (
        rowlist_load_layout(buffer_geometry(cfg, shape)["act"]),)
    clk = dut.clk
    cocotb.start_soon(Clock(clk, 10, unit="ns").start())
    dut.rst.value = 1
    dut.in_valid.value, dut.out_ready.value = 1, 1
    # every command input starts idle and every ring half at 0: a four-state simulator
    # (Icarus) would otherwise read X into the readies that depend on them
    for name in ("cmd__valid", "cmd__payload", "store_cmd__valid", "store_cmd__payload",
                 "act_half", "wgt_half", "out_half", "store_half"):
        if hasattr(dut, name):
            getattr(dut, name).value = 0
    await RisingEdge(clk)
    await FallingEdge(clk)
    dut.rst.value = 0
    act = StreamDriver(dut, "act_load", clk, rng, gap)
    wgt = StreamDriver(dut, "wgt_load", clk, rng, gap)
    rows = (StreamDriver(dut, "rowlist_load", clk, rng, gap)
            if ActZero.parse(cfg.array.act_zero) is ActZero.SKIP else None)
    mon = StreamMonitor(dut, "store", clk, rng, ready)
    cocotb.start_soon(mon.run())
    return (act, wgt, rows), mon, layouts


@cocotb.test()
async def random_tiles(dut):
    p = _params()
    cfg = config_of(p)
    shape = EngineShape.from_config(cfg, p["dtype"])
    rng = np.random.default_rng(p["seed"])
    clk = dut.clk
    drivers, mon, layouts = await start_engine(dut, cfg, shape, rng, p["gap"], p["ready"])
    skip = drivers[2] is not None
    patterns = p.get("patterns", PATTERNS)
    chk = Checker(shape.dtype.is_float)
    cycles_total, dropped, saved, t0 = 0, 0, 0, time.perf_counter()
    per_block: list[dict] = []
    blocks = p.get("blocks")  # fixed (dataflow, pattern, m, n, k, interleave) blocks
    for i in range(len(blocks) if blocks else p["tiles"]):
        nm = patterns[i % len(patterns)]
        df = ["os", "ws"][(i // len(patterns)) % 2]
        il = bool(rng.integers(2))
        m, n = (int(x) for x in rng.integers(1, p["max_mn"] + 1, 2))
        k = int(rng.integers(1, p["max_k"] + 1))
        if blocks:
            df, nm, m, n, k, il = blocks[i]
        if skip and df == "ws":
            tile = random_skip_tile(rng, shape, m, k, n, nm, (0.0, 0.4, 0.8)[i % 3],
                                    0 if i % 3 == 2 else None)
        else:
            tile = random_tile(rng, shape, m, k, n, nm)
        await send_loads(drivers, layouts, load_words(shape, tile))
        cyc, iv, orr = await run_compute(dut, clk, word(compute(df, nm, m, n, k, il)), rng,
                                         p["stall"] if i % 2 else 0.0)
        stream = ws_stream(shape, tile)
        want = block_cycles(Dataflow.parse(df), m, n, k, NM.parse(nm), il, cfg, iv, orr, stream)
        if stream is not None:
            dropped += sum(m - x for x in stream.lengths)
            saved += block_cycles(Dataflow.WS, m, n, k, NM.parse(nm), il, cfg) - \
                block_cycles(Dataflow.WS, m, n, k, NM.parse(nm), il, cfg, stream=stream)
        name = f"tile {i} {df} {'il' if il else 'no-il'} {nm} {m}x{k}x{n}"
        chk.cycles(name, cyc, want)
        per_block.append({"rtl_cycles": cyc, "model_cycles": want})
        cycles_total += cyc
        await StreamDriver(dut, "store_cmd", clk, rng).send([word(store(m, n))])
        beats_needed = store_beats(shape, m, n)
        while len(mon.beats) < beats_needed:
            await FallingEdge(clk)
        beats = [mon.beats.popleft() for _ in range(beats_needed)]
        chk.values(name, unpack_store(shape, beats, m, n), tile.expected)
    rep = chk.report
    rep.update(compute_cycles=cycles_total, seconds=time.perf_counter() - t0,
               cycles=int(get_sim_time("ns")) // 10, dropped_rows=dropped, saved_cycles=saved,
               blocks=per_block)
    with open(os.environ["NMSAT_TB_RESULT"], "w", encoding="utf-8") as f:  # noqa: ASYNC230
        json.dump(rep, f)
    assert rep["mismatches"] == 0 and rep["cycle_mismatches"] == 0, rep["notes"]
