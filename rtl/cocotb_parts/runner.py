"""Build one generated unit and run a cocotb test module on it (``cocotb_tools.runner``).

Icarus by default (``NMSAT_SIM=verilator`` to change). Parameters go to the test module as
a JSON file named by ``NMSAT_TB_PARAMS``; it writes its totals to ``NMSAT_TB_RESULT``.
Everything is built in a temporary directory; ``NMSAT_WAVES=1`` keeps waveforms there
(pass ``build_dir`` to keep them).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

from amaranth.lib import wiring


def run_unit(component: wiring.Component, top: str, module: str, params: dict,
             sim: str | None = None, build_dir: str | Path | None = None) -> dict:
    """Run cocotb ``module`` on ``component`` (Verilog module ``top``); return its result."""
    if build_dir is None:
        with tempfile.TemporaryDirectory(prefix="nmsat-cocotb-") as tmp:
            return run_unit(component, top, module, params, sim, tmp)
    from cocotb_tools.runner import get_runner

    from ..generate import to_verilog

    sim = sim or os.environ.get("NMSAT_SIM", "icarus")
    bdir = Path(build_dir)
    bdir.mkdir(parents=True, exist_ok=True)
    src = bdir / f"{top}.v"
    src.write_text(to_verilog(component, top), encoding="utf-8")
    pfile, result = bdir / "params.json", bdir / "result.json"
    pfile.write_text(json.dumps(params), encoding="utf-8")
    waves = os.environ.get("NMSAT_WAVES", "") not in ("", "0")
    runner = get_runner(sim)
    build_args = []
    if sim == "verilator":
        from ..tb.runner import VERILATOR_ARGS, verilator_env

        verilator_env()
        build_args = list(VERILATOR_ARGS)
    runner.build(sources=[src], hdl_toplevel=top, build_dir=bdir / "sim_build",
                 build_args=build_args, timescale=("1ns", "1ps"), waves=waves)
    runner.test(hdl_toplevel=top, test_module=module, build_dir=bdir / "sim_build",
                test_dir=bdir, waves=waves, results_xml=str(bdir / "results.xml"),
                extra_env={"NMSAT_TB_PARAMS": str(pfile), "NMSAT_TB_RESULT": str(result),
                           "PYTHONPATH": os.pathsep.join(sys.path)})
    if not result.exists():
        raise RuntimeError(f"cocotb run of {module} on {sim} produced no result")
    return json.loads(result.read_text(encoding="utf-8"))
