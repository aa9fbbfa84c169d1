"""Figures (matplotlib) and the HTML report.

:func:`build_report` is the one entry point: simulation results (``SimResult`` objects,
their JSON dicts, or paths of files written by ``nmsat simulate --json``) and optional
training traces in, a folder with every figure as PNG and SVG plus ``index.html`` out.
``nmsat report`` and ``nmsat simulate --report DIR`` both call it.

This module imports nothing heavy, so the CLI's parsers stay fast; matplotlib is loaded
when a report is built.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nmsat.errors import NmsatError

__all__ = ["ReportError", "build_report", "check_report_folder", "inference_result_from_dict",
           "load_result", "load_results", "load_traces", "make_report_folder", "result_from_dict"]


class ReportError(NmsatError, ValueError):
    """An input of the report is missing or malformed; the message names the file."""


def check_report_folder(path: Path) -> None:
    """``--report PATH`` must be a folder or not exist yet (one line otherwise)."""
    if path.exists() and not path.is_dir():
        raise ReportError(f"--report: {path} exists and is not a folder")


def make_report_folder(path: Path) -> None:
    """Create the report folder before anything is written, so a folder that cannot be
    made leaves no output behind."""
    from nmsat.errors import OutputError

    check_report_folder(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create report folder {path}: {e.strerror or e}") from None


def _check_number(where: str, value: Any, *, integer: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ReportError(f"{where} must be a number, not {value!r}")
    if integer and not isinstance(value, int):
        raise ReportError(f"{where} must be an integer, not {value!r}")
    if not math.isfinite(value) or value < 0:
        raise ReportError(f"{where} must be a finite number >= 0, not {value!r}")


def _check_numbers(where: str, mapping: Any, *, integer: bool = False) -> None:
    if not isinstance(mapping, dict):
        raise ReportError(f"{where} must be an object, not {mapping!r}")
    for k, v in mapping.items():
        _check_number(f"{where}.{k}", v, integer=integer)


def _check(result: Any) -> None:
    """Check the fields the figures read: numbers are finite and non-negative."""
    for name in ("total_cycles", "dense_total_cycles", "dram_bytes", "batch"):
        _check_number(name, getattr(result, name), integer=True)
    for name in ("seconds", "utilization", "speedup_vs_dense"):
        _check_number(name, getattr(result, name))
    if result.total_cycles == 0:
        raise ReportError("total_cycles must be positive, not 0")
    _check_numbers("phase_cycles", result.phase_cycles, integer=True)
    _check_numbers("stall_cycles", result.stall_cycles, integer=True)
    _check_numbers("energy_pj", result.energy_pj)
    if not isinstance(result.config, dict) or not isinstance(result.options, dict):
        raise ReportError("config and options must be objects")
    for field in ("workload", "method", "nm", "mode"):
        if not isinstance(getattr(result, field), str):
            raise ReportError(f"{field} must be a string, not {getattr(result, field)!r}")
    for i, layer in enumerate(result.layers):
        where = f"layers[{i}]"
        if not isinstance(layer.name, str):
            raise ReportError(f"{where}.name must be a string, not {layer.name!r}")
        for name in ("total_cycles", "dram_bytes"):
            _check_number(f"{where}.{name}", getattr(layer, name), integer=True)
        for name in ("utilization", "speedup_vs_dense"):
            _check_number(f"{where}.{name}", getattr(layer, name))
        _check_numbers(f"{where}.stall_cycles", layer.stall_cycles, integer=True)
    for i, ev in enumerate(result.events):
        for name in ("start", "end"):
            _check_number(f"events[{i}].{name}", getattr(ev, name), integer=True)
        for name in ("unit", "phase", "kind", "layer"):
            if not isinstance(getattr(ev, name), str):
                raise ReportError(f"events[{i}].{name} must be a string, "
                                  f"not {getattr(ev, name)!r}")


def result_from_dict(data: Any, where: str = "result") -> Any:
    """A validated ``SimResult`` from the dict form of ``nmsat simulate --json``."""
    from nmsat.simulator.results import from_dict

    if not isinstance(data, dict):
        raise ReportError(f"{where}: not an nmsat result (expected a JSON object)")
    if "schema" not in data and data.get("mode") == "inference":
        return inference_result_from_dict(data, where)
    try:
        result = from_dict(data)
    except KeyError as e:
        raise ReportError(f"{where}: not an nmsat result: missing field {e.args[0]!r}") from None
    except (TypeError, ValueError, AttributeError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ReportError(f"{where}: malformed result: {first}") from None
    try:
        _check(result)
    except ReportError as e:
        raise ReportError(f"{where}: malformed result: {e}") from None
    return result


def inference_result_from_dict(data: Any, where: str = "result") -> Any:
    """A validated ``InferenceResult`` from the dict form of ``nmsat simulate --mode
    inference --json``."""
    from nmsat.simulator.inference_result import result_from_dict as from_dict

    try:
        return from_dict(data)
    except KeyError as e:
        raise ReportError(f"{where}: not an nmsat inference result: missing field "
                          f"{e.args[0]!r}") from None
    except (TypeError, ValueError, AttributeError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ReportError(f"{where}: malformed inference result: {first}") from None


def load_result(path: str | Path) -> Any:
    """Read and validate one result file written by ``nmsat simulate --json``."""
    from nmsat.fileio import LIMITS, InputError, check_shape, read_text

    p = Path(path)
    _refuse_trace(p)
    try:
        text = read_text(p, "result file", LIMITS["result"])
    except InputError as e:
        raise ReportError(str(e)) from None
    try:
        data = json.loads(text)
        check_shape(data)
    except json.JSONDecodeError as e:
        raise ReportError(f"{p}: not a result JSON file ({e.msg} at line {e.lineno} "
                          f"column {e.colno})") from None
    except (InputError, RecursionError) as e:
        raise ReportError(f"{p}: not a result JSON file ({e or 'nested too deeply'})") from None
    return result_from_dict(data, str(p))


def _refuse_trace(p: Path) -> None:
    """A training trace (a zip archive, ``.nmt``) given where a result JSON goes: say how
    to give it instead of failing on its bytes. Only a regular file is peeked at (opening
    a FIFO would wait for a writer); read_text refuses the rest."""
    import os
    import stat

    try:  # non-blocking, so a FIFO swapped in after the check cannot hold the open
        fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return  # read_text names the problem
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return
        head = os.read(fd, 4)
    except OSError:
        return
    finally:
        os.close(fd)
    if head != b"PK\x03\x04" and p.suffix.lower() != ".nmt":
        return
    raise ReportError(f"{p} is a training trace, not a result JSON: give it as "
                      f"--trace {p} (nmsat report --trace {p}), or report its simulation: "
                      f"nmsat simulate {p} --report DIR")


def load_results(paths: Sequence[str | Path]) -> list[Any]:
    """Read and validate every result file; the first bad one raises."""
    return [load_result(p) for p in paths]


def load_traces(paths: Sequence[str | Path]) -> list[Any]:
    """Read and validate every training trace; the first bad one raises."""
    from nmsat.workloads.trace import load_trace

    traces = []
    for p in paths:
        if not Path(p).is_file():
            raise ReportError(f"{p}: trace not found")
        try:
            traces.append(load_trace(p))
        except NmsatError as e:
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise ReportError(msg if str(p) in msg else f"{p}: {msg}") from None
    return traces


def _as_result(item: Any, index: int) -> tuple[Any, str]:
    """(validated SimResult, source name) from a SimResult, its dict or a path."""
    from nmsat.simulator.inference_result import InferenceResult
    from nmsat.simulator.results import SimResult

    if isinstance(item, InferenceResult):
        return item, "simulate"
    if isinstance(item, SimResult):
        try:
            _check(item)
        except ReportError as e:
            raise ReportError(f"result {index + 1}: {e}") from None
        return item, "simulate"
    if isinstance(item, dict):
        return result_from_dict(item, f"result {index + 1}"), "simulate"
    if isinstance(item, (str, Path)):
        return load_result(item), str(item)
    raise TypeError(f"a report input must be a SimResult, an InferenceResult, a dict or a "
                    f"path, not {type(item).__name__}")


def build_report(results: Sequence[Any], out_dir: str | Path,
                 traces: Sequence[Any] = (), *,
                 inference_sweeps: Sequence[dict[str, Any]] | None = None) -> Path:
    """Write every figure (PNG and SVG) and ``index.html`` for ``results`` into ``out_dir``.

    Parameters
    ----------
    results
        ``SimResult`` or ``InferenceResult`` objects, their dict form or paths of result
        JSON files. Training and inference results may be mixed: each kind gets its own
        runs table and figures on the one page (a training result is compared with dense
        training, an inference result with dense inference; no figure mixes the two).
    out_dir
        Folder to write into (created if missing).
    traces
        ``Trace`` objects or paths of training traces (``.nmt``), for the accuracy and
        mask-flip figures.
    inference_sweeps
        Speedup-vs-batch / sequence-length data of the inference runs
        (:func:`nmsat.simulator.inference_sweeps.simulate_sweeps`); by default the sweeps
        the given inference results themselves form
        (:func:`~nmsat.reports.inference_figures.sweeps_from_results`).

    Returns
    -------
    Path
        The written ``index.html``.

    Every input is read and every figure drawn before the first file is written, so a bad
    input raises :class:`ReportError` and leaves ``out_dir`` as it was.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ReportError(f"{out} exists and is not a folder")
    if not results and not traces:
        raise ReportError("nothing to report: give at least one result or trace")
    loaded = [_as_result(item, i) for i, item in enumerate(results)]
    trace_objs = [load_traces([t])[0] if isinstance(t, (str, Path)) else t for t in traces]

    from nmsat.log import status
    from nmsat.simulator.inference_result import InferenceResult

    from . import figures, html

    train = [(r, s) for r, s in loaded if not isinstance(r, InferenceResult)]
    infer = [(r, s) for r, s in loaded if isinstance(r, InferenceResult)]
    status("report: drawing the figures of %d result(s) and %d trace(s)", len(loaded),
           len(trace_objs))
    import matplotlib

    from . import compare, style

    runs = figures.make_runs([r for r, _ in train], [s for _, s in train])
    with matplotlib.rc_context(style.RC):
        plots = compare.compare_plots(runs)
    plots += figures.build_plots(runs, trace_objs) if train or trace_objs else []
    inference_runs = []
    if infer:
        from . import inference_figures

        inference_runs = inference_figures.make_runs([r for r, _ in infer],
                                                     [s for _, s in infer])
        with matplotlib.rc_context(style.RC):
            for p in compare.compare_plots(inference_runs):
                p.name = f"inference-{p.name}"
                p.title = f"Inference: {p.title}"
                plots.append(p)
            plots += inference_figures.report_plots(inference_runs, inference_sweeps)
        names = [p.name for p in plots]
        if len(set(names)) != len(names):
            raise ReportError(f"two figures share a file name: {names}")
    page = html.render_page(runs, trace_objs, plots, inference_runs=inference_runs)
    files = {}
    for i, p in enumerate(plots, 1):  # rendering is most of a report's time
        status("report: rendering figure %d of %d (%s)", i, len(plots), p.name)
        files |= {f"{p.name}.{fmt}": figures.render(p, fmt) for fmt in figures.FORMATS}
    files |= {f"{p.name}.csv": html.table_csv(p.table) for p in plots}
    files |= {name: html.table_csv(t) for name, t in
              html.page_tables(runs, trace_objs, inference_runs).items()}
    return html.write_report(out, files, page)
