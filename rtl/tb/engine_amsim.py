"""Run blocks on :class:`~nmsat.rtl.engine.TensorEngine` in Amaranth's simulator."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..engine import TensorEngine
from .amsim import run_clocked
from .engine_model import compute, load_words, pack_fields, store, store_beats, unpack_store, word
from .tiles import Tile


@dataclass(eq=False)
class BlockRun:
    tile: Tile
    dataflow: str
    interleave: bool
    in_valid: np.ndarray | None = None  # stall masks per step cycle (True = available)
    out_ready: np.ndarray | None = None
    cycles: int = -1
    out: np.ndarray | None = None
    store: bool = True  # False: leave OUT for the next block to accumulate into
    load: bool = True  # False: compute on the buffers the previous block loaded


def run_blocks(eng: TensorEngine, runs: list[BlockRun], seed: int | None = None,
               name: str = "engine") -> list[BlockRun]:
    """Load, COMPUTE, STORE each block in turn; ``seed`` adds random load-stream gaps and
    store backpressure. Fills ``cycles`` (busy cycles of the COMPUTE) and ``out``.
    A STORE, and a COMPUTE that follows a COMPUTE without STORE or loads, are offered in
    the first cycle the engine is idle again (back to back)."""
    sh = eng.shape
    rng = np.random.default_rng(seed)

    def gap():
        return seed is not None and rng.random() < 0.25

    async def bench(ctx):
        for _idx, r in enumerate(runs):
            t = r.tile
            lw = load_words(sh, t)
            loads = [(p, [b.pack(p.payload.shape()) for b in beats])
                     for p, beats in ((eng.act_load, lw.act), (eng.wgt_load, lw.wgt))]
            if lw.rows:
                lay = eng.rowlist_load.payload.shape()
                loads.append((eng.rowlist_load, [pack_fields(lay, **f) for f in lw.rows]))
            for port, words in loads * r.load:
                for w in words:
                    while gap():
                        ctx.set(port.valid, 0)
                        await ctx.tick()
                    ctx.set(port.payload.as_value(), w)
                    ctx.set(port.valid, 1)
                    await ctx.tick().until(port.ready)
                ctx.set(port.valid, 0)
            m_rows, n_cols = t.expected.shape
            k = t.a.shape[1]
            ctx.set(eng.cmd.payload, word(compute(r.dataflow, t.nm, m_rows, n_cols, k,
                                                  r.interleave)))
            ctx.set(eng.cmd.valid, 1)
            await ctx.tick().until(eng.cmd.ready)
            ctx.set(eng.cmd.valid, 0)
            cyc = 0
            while ctx.get(eng.busy):
                iv = r.in_valid is None or cyc >= len(r.in_valid) or r.in_valid[cyc]
                orr = r.out_ready is None or cyc >= len(r.out_ready) or r.out_ready[cyc]
                ctx.set(eng.in_valid, bool(iv))
                ctx.set(eng.out_ready, bool(orr))
                cyc += 1
                await ctx.tick()
            ctx.set(eng.in_valid, 1)
            ctx.set(eng.out_ready, 1)
            r.cycles = cyc
            if not r.store:
                continue
            ctx.set(eng.store_cmd.payload, word(store(m_rows, n_cols)))
            ctx.set(eng.store_cmd.valid, 1)
            await ctx.tick().until(eng.store_cmd.ready)
            ctx.set(eng.store_cmd.valid, 0)
            while r.out is None:
                ctx.set(eng.store.ready, not gap())
                await ctx.tick()
            ctx.set(eng.store.ready, 0)

    # The store beats are collected by a monitor process that samples at each edge.
    collected: list[list[int]] = [[] for _ in runs]
    state = {"i": 0}

    async def monitor(ctx):
        async for _, _, valid, ready, payload in ctx.tick().sample(
                eng.store.valid, eng.store.ready, eng.store.payload.as_value()):
            while not runs[state["i"]].store:
                state["i"] += 1
            if valid and ready:
                collected[state["i"]].append(payload)
                r = runs[state["i"]]
                m_rows, n_cols = r.tile.expected.shape
                if len(collected[state["i"]]) == store_beats(sh, m_rows, n_cols):
                    r.out = unpack_store(sh, collected[state["i"]], m_rows, n_cols)
                    state["i"] += 1
                    if state["i"] == len(runs):
                        return

    run_clocked(eng, bench, name, extra=[monitor], background=True)
    return runs
