"""The report's training-trace figures: accuracy against sparsity, training loss, mask flip
rates, and the mask statistics of the traces table.

Each takes the traces of a report (``nmsat train --trace``, :mod:`nmsat.workloads.trace`
objects) and returns a :class:`~nmsat.reports.plots.Plot`, or ``None`` when it has nothing
to show; :data:`nmsat.reports.figures.TRACE_FIGURES` lists them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from nmsat.types import NM

from . import style
from .plots import Plot, Table, new_figure

__all__ = ["accuracy_figure", "flip_rate_figure", "loss_figure", "mask_stats", "mean_flip_rate",
           "trace_series"]


def trace_series(trace: Any) -> str:
    m = str(trace.method)
    return style.method_label(m) if m == "dense" else f"{style.method_label(m)} {trace.nm}"


def accuracy_figure(traces: Sequence[Any]) -> Plot | None:
    """Final test accuracy against sparsity per method (left) and over epochs (right)."""
    if not traces:
        return None
    fig = new_figure(12.0, 4.8)
    ax_s, ax_e = fig.subplots(1, 2)
    models = list(dict.fromkeys(t.model for t in traces))
    markers = "os^Dvp*hX"
    # points: (model, method, sparsity, accuracy, source)
    points: list[tuple[str, str, float, float, str]] = []
    seen_baselines: set[tuple] = set()
    for t in traces:
        points.append((t.model, str(t.method), 1.0 - NM.parse(str(t.nm)).density
                       if str(t.method) != "dense" else 0.0, t.final_accuracy,
                       f"{t.model} {trace_series(t)} (seed {t.seed})"))
        b = t.baseline
        if b is not None:
            key = (t.model, t.dataset, t.seed, b.final_accuracy)
            if key not in seen_baselines:
                seen_baselines.add(key)
                source = f"dense baseline of {t.model} {trace_series(t)} (seed {t.seed})"
                points.append((t.model, "dense", 0.0, b.final_accuracy, source))
    markers_drawn: dict[tuple[str, str], Line2D] = {}
    for model in models:
        for method in dict.fromkeys(p[1] for p in points if p[0] == model):
            pts = sorted((p[2], p[3]) for p in points if p[0] == model and p[1] == method)
            (line,) = ax_s.plot([100 * s for s, _ in pts], [100 * a for _, a in pts],
                                marker=markers[models.index(model) % len(markers)],
                                color=style.method_color(method), linestyle="-",
                                markersize=7)
            markers_drawn[(model, method)] = line
    ax_s.set_xlabel("weight sparsity 1 - N/M (%)")
    ax_s.set_ylabel("final test accuracy (%)")
    ax_s.set_title("Test accuracy against sparsity")
    handles: list[Any] = [Line2D([], [], color=style.method_color(m), linewidth=3,
                                 label=style.method_label(m))
                          for m in dict.fromkeys(p[1] for p in points)]
    handles += [Line2D([], [], color="black", linestyle="", label=model,
                       marker=markers[i % len(markers)]) for i, model in enumerate(models)]
    ax_s.legend(handles=handles, loc="lower left")
    curves: dict[int, Line2D] = {}
    for i, t in enumerate(traces):
        color = style.series_color(str(t.method), str(t.nm))
        (line,) = ax_e.plot([e.epoch for e in t.accuracy],
                            [100 * e.test_accuracy for e in t.accuracy], marker=".",
                            color=color, label=f"{t.model} {trace_series(t)}")
        curves[i] = line
    ax_e.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax_e.set_xlabel("epoch")
    ax_e.set_ylabel("test accuracy (%)")
    ax_e.set_title("Test accuracy over training")
    ax_e.legend(loc="lower right")
    fig.suptitle("Sparse training accuracy (from training traces)")
    rows = tuple((model, style.method_label(method), 100 * s, 100 * a, src)
                 for model, method, s, a, src in points)
    table = Table(("model", "method", "sparsity (%)", "final test accuracy (%)", "run"), rows)
    return Plot("accuracy", "Accuracy against sparsity and method",
                "Left: final test accuracy of each traced run against its weight sparsity "
                "(1 - N/M), one colour per method; dense runs (including the dense baseline "
                "recorded in a sparse trace) sit at 0%. Right: test accuracy after each epoch.",
                fig, table, {"points": markers_drawn, "curves": curves})


def mean_flip_rate(trace: Any, view: str) -> np.ndarray | None:
    """Fraction of a trace's mask bits (FF or BP view) that changed, per iteration.

    Over the weight layers whose ``view`` phase the run makes N:M (an SR-STE run has no
    BP mask), each layer's flip rate weighted by its number of weights; NaN where there
    is no previous iteration to compare against. ``None`` if no layer uses the view.
    """
    use = np.array([getattr(t, f"sparse_{view}") for t in trace.weight_layers], dtype=bool)
    if not use.any():
        return None
    rates = np.asarray(trace.stats[f"{view}_flip"], dtype=np.float64)[:, use]
    weights = np.array([t.layer.weights for t in trace.weight_layers],
                       dtype=np.float64)[use]
    return rates @ weights / weights.sum()


def flip_rate_figure(traces: Sequence[Any]) -> Plot | None:
    """FF and BP mask flip rates over training, one curve per sparse trace and view."""
    sparse = [t for t in traces if str(t.method) != "dense"]
    if not sparse:
        return None
    fig = new_figure(11.0, 4.8)
    ax = fig.add_subplot()
    lines: dict[tuple[int, str], Line2D] = {}
    rows = []
    for i, t in enumerate(traces):
        if str(t.method) == "dense":
            continue
        color = style.series_color(str(t.method), str(t.nm))
        for view in ("ff", "bp"):
            rate = mean_flip_rate(t, view)
            if rate is None or np.all(np.isnan(rate)):
                continue
            its = np.arange(len(rate))
            (line,) = ax.plot(its, 100 * rate, color=color, linewidth=1.0,
                              linestyle=style.TRACE_VIEW_STYLES[view],
                              label=f"{t.model} {trace_series(t)}, {view.upper()} mask")
            lines[(i, view)] = line
            finite = rate[~np.isnan(rate)]
            rows.append((t.model, trace_series(t), view.upper(), 100 * float(finite[0]),
                         100 * float(finite.mean()), 100 * float(finite[-1])))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("training iteration")
    ax.set_ylabel("mask bits flipped since previous iteration (%)")
    fig.suptitle("N:M mask flip rate over training")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
    table = Table(("model", "run", "mask", "first (%)", "mean (%)", "last (%)"), tuple(rows))
    return Plot("flip-rates", "Mask flip rates",
                "Share of the N:M mask bits (all weight layers, weighted by their number of "
                "weights) that changed since the previous iteration, for the FF mask (solid) "
                "and the BP mask of W^T (dashed). Falling curves mean the masks settle.",
                fig, table, {"lines": lines})


def loss_figure(traces: Sequence[Any]) -> Plot | None:
    """Training loss of every iteration, one curve per trace."""
    if not traces:
        return None
    fig = new_figure(11.0, 4.8)
    ax = fig.add_subplot()
    lines: dict[int, Line2D] = {}
    rows = []
    for i, t in enumerate(traces):
        loss = np.asarray(t.loss, dtype=np.float64)
        (lines[i],) = ax.plot(np.arange(len(loss)), loss, linewidth=1.0,
                              color=style.series_color(str(t.method), str(t.nm)),
                              label=f"{t.model} {trace_series(t)} (seed {t.seed})")
        last = t.accuracy[-1] if t.accuracy else None
        base = t.baseline.accuracy[-1] if t.baseline is not None and t.baseline.accuracy \
            else None
        rows.append((t.model, trace_series(t), t.seed, float(loss[0]), float(loss.min()),
                     float(loss[-1]), None if last is None else last.train_loss,
                     None if base is None else base.train_loss))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("training iteration")
    ax.set_ylabel("training loss (cross-entropy of the batch)")
    fig.suptitle("Training loss")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
    table = Table(("model", "run", "seed", "first", "lowest", "last",
                   "last epoch's train loss", "dense baseline's last train loss"),
                  tuple(rows))
    return Plot("loss", "Training loss",
                "Loss of each training iteration's batch as the trace recorded it; the table "
                "adds each run's last-epoch training loss and its dense baseline's (the "
                "dense run recorded with the trace: same model, data and seed).",
                fig, table, {"lines": lines})


def mask_stats(trace: Any) -> dict[str, float | None]:
    """A trace's mask statistics over its weight layers (weighted by their weights):
    FF and BP mask density at the last iteration and mean flip rate over training (%);
    ``None`` where the run has no such mask."""
    out: dict[str, float | None] = {}
    weights = np.array([t.layer.weights for t in trace.weight_layers], dtype=np.float64)
    for view in ("ff", "bp"):
        use = np.array([getattr(t, f"sparse_{view}") for t in trace.weight_layers], dtype=bool)
        if not use.any():
            out[f"{view}_density"] = out[f"{view}_flip"] = None
            continue
        dens = np.asarray(trace.stats[f"{view}_density"], dtype=np.float64)[-1, use]
        out[f"{view}_density"] = 100.0 * float(dens @ weights[use] / weights[use].sum())
        rate = mean_flip_rate(trace, view)
        finite = rate[~np.isnan(rate)] if rate is not None else np.array([])
        out[f"{view}_flip"] = 100.0 * float(finite.mean()) if finite.size else None
    return out
