"""cocotb test module: replay a layer's engine operations (:mod:`nmsat.rtl.tb.program`).

``NMSAT_TB_PARAMS`` names a JSON file with the config and the pickled operations' path;
results (per-COMPUTE RTL cycles, stored words, mismatches) go to ``NMSAT_TB_RESULT``.
"""

from __future__ import annotations

import json
import os
import time

import cocotb
import numpy as np
from cocotb.simtime import get_sim_time
from cocotb.triggers import FallingEdge

from ..fp import same_bits
from .cocotb_engine import run_compute, run_inputs, send_loads, start_engine
from .cocotb_parts import StreamDriver
from .engine_model import store, store_beats, unpack_store, word

__all__ = ["replay"]


@cocotb.test()
async def replay(dut):
    cfg, shape, ops = run_inputs("ops")
    rng = np.random.default_rng(0)
    drivers, mon, layouts = await start_engine(dut, cfg, shape, rng, gap=0.0, ready=1.0)
    cycles, words, bad, t0 = [], 0, 0, time.perf_counter()
    for op in ops:
        if op["kind"] == "compute":
            await send_loads(drivers, layouts, op["loads"])
            cyc, _, _ = await run_compute(dut, dut.clk, op["word"], rng, 0.0)
            cycles.append(cyc)
        else:
            m, n = op["rows"], op["cols"]
            await StreamDriver(dut, "store_cmd", dut.clk, rng).send([word(store(m, n))])
            need = store_beats(shape, m, n)
            while len(mon.beats) < need:
                await FallingEdge(dut.clk)
            got = unpack_store(shape, [mon.beats.popleft() for _ in range(need)], m, n)
            want = shape.numeric.acc_to_bits(op["expected"])
            ok = same_bits(got, want, shape.dtype.is_float)
            words += ok.size
            bad += int((~ok).sum())
    rep = {"compute_cycles": cycles, "words": words, "mismatches": bad,
           "cycles": int(get_sim_time("ns")) // 10, "seconds": time.perf_counter() - t0}
    with open(os.environ["NMSAT_TB_RESULT"], "w", encoding="utf-8") as f:  # noqa: ASYNC230
        json.dump(rep, f)

