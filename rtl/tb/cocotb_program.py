"""cocotb test module: replay a layer's engine operations (:mod:`nmsat.rtl.tb.program`).

``NMSAT_TB_PARAMS`` names a JSON file with the config and the pickled operations' path;
results (per-COMPUTE RTL cycles, stored words, mismatches) go to ``NMSAT_TB_RESULT``.

A watchdog bounds each operation (:func:`nmsat.rtl.tb.controller_run.watchdog_cycles` of
its expected cycles: a COMPUTE's load beats plus its tile-model cycles, a STORE's beats):
one that has not finished by then stops the replay and the result says ``hung``
(``params["fault"] = "store_never_ready"`` holds the store port's ready low: the test of
the watchdog).
"""

from __future__ import annotations

import json
import os
import time

import cocotb
import numpy as np
from cocotb.simtime import get_sim_time
from cocotb.triggers import FallingEdge, SimTimeoutError, with_timeout

from ..fp import same_bits
from .cocotb_engine import run_compute, run_inputs, send_loads, start_engine
from .cocotb_parts import StreamDriver
from .controller_run import watchdog_cycles
from .engine_model import store, store_beats, unpack_store, word

__all__ = ["replay"]


@cocotb.test()
async def replay(dut):
    cfg, shape, ops = run_inputs("ops")
    rng = np.random.default_rng(0)
    with open(os.environ["NMSAT_TB_PARAMS"], encoding="utf-8") as f:  # noqa: ASYNC230
        stuck = json.load(f).get("fault") == "store_never_ready"
    drivers, mon, layouts = await start_engine(dut, cfg, shape, rng, gap=0.0,
                                               ready=0.0 if stuck else 1.0)
    cycles, words, bad, t0 = [], 0, 0, time.perf_counter()
    hung = None
    for i, op in enumerate(ops):
        if op["kind"] == "compute":
            lw = op["loads"]
            beats = len(lw.act) + len(lw.wgt) + len(lw.rows or ())
            bound = watchdog_cycles(beats + op["model_cycles"])
            work = _compute(dut, drivers, layouts, op, rng)
        else:
            bound = watchdog_cycles(store_beats(shape, op["rows"], op["cols"]))
            work = _store(dut, shape, mon, rng, op)
        try:
            got = await with_timeout(work, bound * 10, "ns")
        except SimTimeoutError:
            hung = (f"operation {i + 1} of {len(ops)} ({op['kind']}) did not finish within "
                    f"{bound} cycles")
            break
        if op["kind"] == "compute":
            cycles.append(got)
        else:
            words += got[0]
            bad += got[1]
    rep = {"compute_cycles": cycles, "words": words, "mismatches": bad, "hung": hung,
           "cycles": int(get_sim_time("ns")) // 10, "seconds": time.perf_counter() - t0}
    with open(os.environ["NMSAT_TB_RESULT"], "w", encoding="utf-8") as f:  # noqa: ASYNC230
        json.dump(rep, f)


async def _compute(dut, drivers, layouts, op, rng) -> int:
    await send_loads(drivers, layouts, op["loads"])
    cyc, _, _ = await run_compute(dut, dut.clk, op["word"], rng, 0.0)
    return cyc


async def _store(dut, shape, mon, rng, op) -> tuple[int, int]:
    m, n = op["rows"], op["cols"]
    await StreamDriver(dut, "store_cmd", dut.clk, rng).send([word(store(m, n))])
    need = store_beats(shape, m, n)
    while len(mon.beats) < need:
        await FallingEdge(dut.clk)
    got = unpack_store(shape, [mon.beats.popleft() for _ in range(need)], m, n)
    want = shape.numeric.acc_to_bits(op["expected"])
    ok = same_bits(got, want, shape.dtype.is_float)
    return ok.size, int((~ok).sum())
