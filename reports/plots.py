"""The report's figure machinery: what a figure is and how it is written.

:class:`Plot` is one drawn figure (the matplotlib figure on the Agg canvas, the
:class:`Table` of numbers it shows and the artists that carry each plotted value);
:class:`Run` is a simulation result with the names a report gives it (:func:`make_runs`).
:func:`new_figure` makes a figure in the report's sizes; :func:`render` and
:func:`write_plot` turn a plot into PNG and SVG bytes and files. The figures themselves are
in :mod:`nmsat.reports.figures`, :mod:`~nmsat.reports.trace_figures`,
:mod:`~nmsat.reports.inference_figures` and :mod:`~nmsat.reports.sweep_figures`.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib
from matplotlib.figure import Figure

from nmsat.fileio import atomic_write_bytes

from . import style

__all__ = ["FORMATS", "Plot", "Run", "Table", "config_key", "config_labels", "make_runs",
           "new_figure", "render", "run_color", "with_colors", "write_plot"]

FORMATS: tuple[str, ...] = ("png", "svg")


# --------------------------------------------------------------------------- data types


@dataclass(frozen=True)
class Table:
    """The numbers behind a figure: column headings and rows of plain values."""

    columns: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]

    def __post_init__(self) -> None:
        for row in self.rows:
            if len(row) != len(self.columns):
                raise ValueError(f"table row {row!r} has {len(row)} values for "
                                 f"{len(self.columns)} columns")


@dataclass
class Plot:
    """One drawn figure.

    Attributes
    ----------
    name
        File stem: the figure is written as ``name.png`` and ``name.svg``.
    title
        Heading in the HTML report (the figure carries its own title too).
    caption
        What the figure shows and how to read it.
    figure
        The matplotlib figure.
    table
        The numbers behind the figure.
    artists
        Plotted artists by what they show, for reading the plotted values back.
    run
        For a per-run figure, the run it shows (the page groups those figures by run).
    """

    name: str
    title: str
    caption: str
    figure: Figure
    table: Table
    artists: dict[str, Any] = field(default_factory=dict)
    run: Run | None = None


@dataclass(frozen=True)
class Run:
    """A simulation result with the names the report gives it.

    ``series`` names the run within its workload ("BDWP 2:8", plus whatever sets it apart
    from the other runs of the report: batch, mode, configuration, options);
    ``label`` is workload and series; ``slug`` is a unique file-name-safe id.
    """

    result: Any  # nmsat.simulator.results.SimResult
    label: str
    series: str
    slug: str
    source: str
    color: str = ""  # set when the report compares designs: one colour per series


def run_color(run: Run) -> str:
    """The colour of a run's bars: its own when the report compares designs, else its
    method's hue tinted by pattern (an inference run: BDWP's hue, grey when dense)."""
    if run.color:
        return run.color
    r = run.result
    method = getattr(r, "method", None) or ("dense" if r.nm == "1:1" else "bdwp")
    return style.series_color(method, r.nm)


def config_key(config: Any) -> str:
    """A configuration's identity by content (two configurations may share a name)."""
    import json

    return json.dumps(config, sort_keys=True)


def config_labels(results: Sequence[Any]) -> dict[str, str]:
    """A distinct name per configuration (by content): its ``name``, plus ``#2``... for a
    second configuration of the same name."""
    out: dict[str, str] = {}
    used: dict[str, int] = {}
    for r in results:
        k = config_key(r.config)
        if k in out:
            continue
        base = str(r.config.get("name", "?")) if isinstance(r.config, dict) else "?"
        used[base] = used.get(base, 0) + 1
        out[k] = base if used[base] == 1 else f"{base} #{used[base]}"
    return out


# --------------------------------------------------------------------------- run naming


def _option_words(options: dict[str, Any], keys: Sequence[str]) -> list[str]:
    words = []
    for k in keys:
        v = options.get(k)
        name = k.replace("_", "-")
        if v is True:
            words.append(name)
        elif v is False:
            words.append(f"no-{name}")
        else:
            words.append(f"{name}={v}")
    return words


def make_runs(results: Sequence[Any], sources: Sequence[str]) -> list[Run]:
    """Name each result so that every run of the report has a distinct label.

    The series is the method and pattern, plus each attribute that differs between runs
    (batch, mode, configuration name, simulator options); a run that is still not unique
    gets ``#2``, ``#3``...
    """
    if len(results) != len(sources):
        raise ValueError("one source per result")

    labels = config_labels(results)

    def cfg_name(r: Any) -> str:
        return labels[config_key(r.config)]

    varies = {
        "batch": len({r.batch for r in results}) > 1,
        "mode": len({r.mode for r in results}) > 1,
        "config": len(labels) > 1,
    }
    # method, pattern and mode are in the series already; the rest are simulator switches
    option_keys = sorted({k for r in results for k in r.options} - {"method", "nm", "mode"})
    varying_options = [k for k in option_keys
                       if len({repr(r.options.get(k)) for r in results}) > 1]
    series: list[str] = []
    for r in results:
        words = [style.method_label(r.method) if r.method == "dense"
                 else f"{style.method_label(r.method)} {r.nm}"]
        if varies["mode"]:
            words.append(str(r.mode))
        if varies["batch"]:
            words.append(f"batch {r.batch}")
        if varies["config"]:
            words.append(cfg_name(r))
        words += _option_words(r.options, varying_options)
        series.append(" ".join(words))
    seen: dict[tuple[str, str], int] = {}
    runs = []
    for i, (r, s, src) in enumerate(zip(results, series, sources)):
        key = (r.workload, s)
        seen[key] = seen.get(key, 0) + 1
        if seen[key] > 1:
            s = f"{s} #{seen[key]}"
        slug = re.sub(r"[^a-z0-9]+", "-", f"{r.workload} {s}".lower()).strip("-")
        runs.append(Run(result=r, label=f"{r.workload} · {s}", series=s,
                        slug=f"{i + 1:02d}-{slug}", source=src))
    return with_colors(runs)


def with_colors(runs: list[Run]) -> list[Run]:
    """In a report over several configurations, one colour per series (Tableau 10), so
    two designs running the same method and pattern are told apart."""
    import dataclasses

    if len(config_labels([r.result for r in runs])) < 2:
        return runs
    order = list(dict.fromkeys(r.series for r in runs))
    return [dataclasses.replace(r, color=style.run_color(order.index(r.series)))
            for r in runs]



def new_figure(width: float, height: float) -> Figure:
    """A figure ``width`` x ``height`` inches (width clamped to 9..28), constrained layout."""
    return Figure(figsize=(min(max(width, 9.0), 28.0), height), layout="constrained",
                  dpi=style.DPI)



def render(plot: Plot, fmt: str) -> bytes:
    """The figure as PNG or SVG bytes; the same plot gives the same bytes every time."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown figure format {fmt!r} (choose from {', '.join(FORMATS)})")
    buf = io.BytesIO()
    metadata = {"Date": None} if fmt == "svg" else {"Software": None}
    with matplotlib.rc_context(style.RC):
        plot.figure.savefig(buf, format=fmt, dpi=style.DPI, metadata=metadata)
    return buf.getvalue()


def write_plot(plot: Plot, out_dir: str | Path) -> dict[str, Path]:
    """Write ``plot`` as ``name.png`` and ``name.svg`` into ``out_dir``, each atomically."""
    out = Path(out_dir)
    paths = {}
    for fmt in FORMATS:
        path = out / f"{plot.name}.{fmt}"
        atomic_write_bytes(path, render(plot, fmt))
        paths[fmt] = path
    return paths
