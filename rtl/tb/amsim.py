"""Small Amaranth-simulator harnesses shared by the fast unit tests.

``run_comb`` applies vectors to a combinational component and reads its outputs;
``run_clocked`` runs an async testbench with a 1-cycle clock. Waveforms: set the
``NMSAT_VCD`` environment variable to a directory and each run writes ``<name>.vcd`` there.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from amaranth.sim import Simulator


def _simulate(sim: Simulator, name: str) -> None:
    vcd_dir = os.environ.get("NMSAT_VCD")
    if vcd_dir:
        Path(vcd_dir).mkdir(parents=True, exist_ok=True)
        with sim.write_vcd(str(Path(vcd_dir) / f"{name}.vcd")):
            sim.run()
    else:
        sim.run()


def run_comb(dut: Any, vectors: Iterable[dict[str, int]], outputs: list[str],
             name: str = "comb") -> list[tuple[int, ...]]:
    """Apply each input dict to ``dut`` and return the tuple of ``outputs`` for each."""
    vectors = list(vectors)
    result: list[tuple[int, ...]] = []

    async def bench(ctx):
        for vec in vectors:
            for port, value in vec.items():
                ctx.set(getattr(dut, port), value)
            result.append(tuple(ctx.get(getattr(dut, o)) for o in outputs))

    sim = Simulator(dut)
    sim.add_testbench(bench)
    _simulate(sim, name)
    return result


def run_clocked(dut: Any, bench: Callable, name: str = "clocked",
                extra: Iterable[Callable] = (), background: bool = False) -> None:
    """Run ``bench(ctx)`` against ``dut`` on a 1 us clock until it returns; ``extra``
    testbenches run beside it (as background processes when ``background``)."""
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    for b in extra:
        sim.add_testbench(b, background=background)
    _simulate(sim, name)
