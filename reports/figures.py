"""The report's figures, drawn with matplotlib's object API on the Agg canvas.

Each figure function returns a :class:`Plot`: the matplotlib figure, the table of numbers
it shows (the HTML report prints it under the image) and the artists that carry each
plotted value, keyed by what they show, so a test can read a bar's height back from the
figure itself and compare it with the result file.

Figures come in two kinds, each listed in a registry that :func:`build_plots` walks:

* :data:`RUN_SET_FIGURES`, drawn once over all runs of a report (speedup, phase and
  energy breakdowns), and :data:`TRACE_FIGURES`, drawn once over all traces;
* :data:`PER_RUN_FIGURES`, drawn once for each run (per-layer utilisation and stalls,
  timeline).

A figure function returns ``None`` when it has nothing to show for its inputs (no sparse
run for a speedup figure, say). A new figure is a function with the same signature
appended to the right registry; the HTML page picks it up without further changes.

Colours, sizes and units come from :mod:`nmsat.reports.style`.

The figure machinery (:class:`Plot`, :class:`Table`, :class:`Run`, :func:`make_runs`,
:func:`render`, :func:`write_plot`) is in :mod:`nmsat.reports.plots` and the trace figures
in :mod:`nmsat.reports.trace_figures`; this module re-exports both.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import matplotlib
import numpy as np
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from nmsat.errors import NmsatError
from nmsat.simulator.roofline import dataflow_text
from nmsat.types import NM

from . import style
from .plots import FORMATS, Plot, Run, Table, make_runs, new_figure, render, run_color, write_plot
from .trace_figures import (
    accuracy_figure,
    flip_rate_figure,
    loss_figure,
    mask_stats,
    mean_flip_rate,
    trace_series,
)

__all__ = [
    "FORMATS", "PER_RUN_FIGURES", "PHASES", "RUN_SET_FIGURES", "TRACE_FIGURES", "UNIT_LABELS",
    "Plot", "Run", "Table", "accuracy_figure", "build_plots", "energy_figure",
    "flip_rate_figure", "layer_energy_figure", "layer_figure", "loss_figure", "make_runs",
    "mask_stats", "mean_flip_rate", "merge_intervals",
    "new_figure", "phase_figure", "render", "speedup_bound", "speedup_figure",
    "timeline_figure", "trace_series", "write_plot",
]

PHASES: tuple[str, ...] = ("ff", "bp", "wg", "wu", "sore", "vector")
"""Phase keys of a result's ``phase_cycles``, in the order the stacks are drawn
(:data:`nmsat.simulator.results.PHASES`)."""


def speedup_bound(method: str, nm: str) -> float | None:
    """The simulator's physics bound on a training speedup over dense, ``None`` for dense.

    BDWP 3/(2N/M + 1), SR-STE 3/(N/M + 2) (:func:`nmsat.simulator.api.peak_bound`, see
    ``../shared/SAT-NOTES.md``).
    """
    from nmsat.simulator.api import peak_bound
    from nmsat.types import Method

    m = Method.parse(method)
    if m is Method.DENSE:
        return None
    return peak_bound(m, NM.parse(nm))


# --------------------------------------------------------------------------- helpers


def _per_what(runs: Sequence[Run]) -> str:
    """What one run's numbers are per: a training iteration, an inference pass, or either."""
    modes = {r.result.mode for r in runs}
    if modes == {"train"}:
        return "training iteration"
    if modes == {"inference"}:
        return "inference pass"
    return "iteration or pass"


def _groups(runs: Sequence[Run]) -> dict[str, list[Run]]:
    """Runs by workload, in first-seen order."""
    out: dict[str, list[Run]] = {}
    for run in runs:
        out.setdefault(run.result.workload, []).append(run)
    return out


def _dense_order(runs: Sequence[Run]) -> list[Run]:
    return sorted(runs, key=lambda r: r.result.method != "dense")  # stable: dense first


# --------------------------------------------------------------------------- run-set figures


def speedup_figure(runs: Sequence[Run]) -> Plot | None:
    """Training speedup over dense per model and N:M pattern, with the method's bound."""
    sparse = [r for r in runs if r.result.method != "dense"]
    if not sparse:
        return None
    groups = _groups(sparse)
    series = list(dict.fromkeys(r.series for r in sparse))
    width = min(0.8 / len(series), 0.35)
    fig = new_figure(1.6 + 1.2 * len(groups) * max(1, len(series) * 0.6), 4.8)
    ax = fig.add_subplot()
    bars: dict[tuple[str, str], Any] = {}
    bounds: dict[tuple[str, str], Line2D] = {}
    rows = []
    top = 1.0
    for gi, (workload, members) in enumerate(groups.items()):
        for run in members:
            r = run.result
            x = gi + (series.index(run.series) - (len(series) - 1) / 2) * width
            rect = ax.bar(x, r.speedup_vs_dense, width * 0.9, color=run_color(run),
                          edgecolor="black", linewidth=0.5)[0]
            bars[(workload, run.series)] = rect
            ax.annotate(f"{r.speedup_vs_dense:.2f}×", (x, r.speedup_vs_dense),
                        xytext=(0, 2), textcoords="offset points", ha="center", va="bottom",
                        fontsize=8)
            bound = speedup_bound(r.method, r.nm) if r.mode == "train" else None
            if bound is not None:
                (line,) = ax.plot([x - width * 0.5, x + width * 0.5], [bound, bound],
                                  **style.BOUND_STYLES[r.method])
                bounds[(workload, run.series)] = line
            top = max(top, r.speedup_vs_dense, bound or 0.0)
            rows.append((workload, run.series, r.method, r.nm, r.batch, r.total_cycles,
                         r.dense_total_cycles, r.speedup_vs_dense, bound,
                         None if bound is None else r.speedup_vs_dense / bound))
    ax.axhline(1.0, color=style.method_color("dense"), linewidth=1.0, linestyle="--")
    ax.set_xticks(range(len(groups)), list(groups))
    ax.set_xlim(-0.6, len(groups) - 0.4)
    ax.set_ylim(0, top * 1.18)
    ax.set_xlabel("model")
    ax.set_ylabel("speedup over dense on the same hardware (×)")
    what = "Training speedup" if _per_what(sparse) == "training iteration" else "Speedup"
    fig.suptitle(f"{what} over dense, per model and N:M pattern")
    handles: list[Any] = []
    for s in series:
        run = next(r for r in sparse if r.series == s)
        handles.append(Patch(facecolor=run_color(run),
                             edgecolor="black", linewidth=0.5, label=s))
    handles.append(Line2D([], [], color=style.method_color("dense"), linestyle="--",
                          label="dense (1×)"))
    methods_bounded = {r.result.method for r in sparse if (r.result.workload, r.series) in bounds}
    if "bdwp" in methods_bounded:
        handles.append(Line2D([], [], **style.BOUND_STYLES["bdwp"],
                              label="BDWP bound 3/(2N/M+1)"))
    if "srste" in methods_bounded:
        handles.append(Line2D([], [], **style.BOUND_STYLES["srste"],
                              label="SR-STE bound 3/(N/M+2)"))
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    table = Table(("model", "run", "method", "N:M", "batch", "cycles", "dense cycles",
                   "speedup (×)", "bound (×)", "share of bound"), tuple(rows))
    return Plot("speedup", "Speedup over dense",
                "Bars: simulated training-iteration speedup of each sparse run over dense "
                "training of the same model on the same hardware (dense_total_cycles / "
                "total_cycles). Black line over a bar: the ideal speedup of its method and "
                "pattern when FF, BP and WG cost the same, 3/(2N/M+1) for BDWP and "
                "3/(N/M+2) for SR-STE; a bar above its line would be a modelling error.",
                fig, table, {"bars": bars, "bounds": bounds})


def _dense_reference(run: Run, runs: Sequence[Run]) -> Run | None:
    """A dense run of the same workload, batch, mode and configuration, if the report has one."""
    r = run.result
    for other in runs:
        o = other.result
        if (o.method == "dense" and o.workload == r.workload and o.batch == r.batch
                and o.mode == r.mode and o.config == r.config):
            return other
    return None


def phase_figure(runs: Sequence[Run]) -> Plot | None:
    """Cycles per phase (FF, BP, WG, WU, SORE), stacked, per model: dense next to sparse.

    A sparse run whose dense counterpart is not among the report's runs gets a hatched
    bar of its ``dense_total_cycles`` (the simulator's dense total, without a phase split).
    """
    if not runs:
        return None
    # (x label, run or None for a dense total, the run it belongs to), grouped by workload
    bars: list[tuple[str, Run | None, Run]] = []
    xs: list[float] = []
    centres: list[tuple[float, str]] = []
    for gi, (workload, members) in enumerate(_groups(runs).items()):
        ordered = _dense_order(members)
        group = [(m.series, m, m) for m in ordered if m.result.method == "dense"]
        totals_seen: set[int] = set()
        for m in ordered:
            if (m.result.method != "dense" and _dense_reference(m, runs) is None
                    and m.result.dense_total_cycles not in totals_seen):
                totals_seen.add(m.result.dense_total_cycles)
                group.append(("dense (total)", None, m))
        group += [(m.series, m, m) for m in ordered if m.result.method != "dense"]
        group_xs = [len(bars) + i + gi * 0.6 for i in range(len(group))]
        bars += group
        xs += group_xs
        centres.append((sum(group_xs) / len(group_xs), workload))
    peak = max(max(r.result.total_cycles, r.result.dense_total_cycles) for r in runs)
    unit, scale = style.cycle_unit(peak)
    fig = new_figure(2.5 + 0.75 * len(bars), 5.2)
    ax = fig.add_subplot()
    segments: dict[tuple[str, str], Any] = {}
    totals: dict[str, Any] = {}
    rows = []
    for x, (_name, run, src) in zip(xs, bars):
        if run is None:
            rect = ax.bar(x, src.result.dense_total_cycles / scale, 0.7, facecolor="white",
                          edgecolor=style.method_color("dense"), hatch="//", linewidth=1.0)[0]
            totals[src.label] = rect
            rows.append((src.result.workload, "dense (total only)", *([None] * len(PHASES)),
                         src.result.dense_total_cycles, None))
            continue
        r = run.result
        bottom = 0.0
        for p in PHASES:
            c = r.phase_cycles.get(p, 0)
            rect = ax.bar(x, c / scale, 0.7, bottom=bottom / scale, color=style.phase_color(p),
                          edgecolor="white", linewidth=0.4)[0]
            segments[(run.label, p)] = rect
            bottom += c
        rows.append((r.workload, run.series, *(r.phase_cycles.get(p, 0) for p in PHASES),
                     r.total_cycles, r.speedup_vs_dense))
    tallest = max(max(r.result.total_cycles for r in runs),
                  max((src.result.dense_total_cycles for _, run, src in bars if run is None),
                      default=0))
    ax.set_ylim(0, 1.08 * tallest / scale)
    ax.set_xticks(xs, [name for name, _, _ in bars], rotation=30, ha="right")
    sec = ax.secondary_xaxis("top")
    sec.set_xticks([c for c, _ in centres], [w for _, w in centres])
    sec.tick_params(length=0)
    ax.set_ylabel(f"cycles per {_per_what(runs)} ({unit})")
    ax.set_xlabel("run")
    fig.suptitle("Where the cycles go: phase breakdown, dense vs sparse")
    handles = [Patch(color=style.phase_color(p), label=style.phase_label(p)) for p in PHASES]
    if totals:
        handles.append(Patch(facecolor="white", edgecolor=style.method_color("dense"),
                             hatch="//", label="dense total (no phase split)"))
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    table = Table(("model", "run", *(p.upper() for p in PHASES), "total cycles",
                   "speedup (×)"), tuple(rows))
    caption = (f"Wall-clock cycles of one {_per_what(runs)} charged to each phase (the "
               "simulator charges every cycle to exactly one phase, so a stack's height is "
               "the total).")
    if totals:
        caption += (" Hatched: the dense total the simulator computed for a sparse run whose "
                    "dense run is not part of the report (simulate with --method dense and "
                    "add it to split it by phase).")
    return Plot("phases", "Phase breakdown", caption,
                fig, table, {"segments": segments, "dense_totals": totals, "cycle_scale": scale})


def _components(runs: Sequence[Run]) -> list[str]:
    known = list(style.COMPONENT_COLORS)
    present = {k for r in runs for k in r.result.energy_pj if k != "total"}
    return [c for c in known if c in present] + sorted(present - set(known))


def energy_figure(runs: Sequence[Run]) -> Plot | None:
    """Energy per training iteration by component, stacked, one bar per run."""
    if not runs:
        return None
    comps = _components(runs)
    peak = max(sum(r.result.energy_pj.get(c, 0.0) for c in comps) for r in runs)
    unit, scale = style.energy_unit(peak)
    fig = new_figure(2.5 + 0.75 * len(runs), 5.2)
    ax = fig.add_subplot()
    segments: dict[tuple[str, str], Any] = {}
    rows = []
    for x, run in enumerate(runs):
        e = run.result.energy_pj
        bottom = 0.0
        for c in comps:
            v = float(e.get(c, 0.0))
            rect = ax.bar(x, v / scale, 0.7, bottom=bottom / scale, color=style.component_color(c),
                          edgecolor="white", linewidth=0.4)[0]
            segments[(run.label, c)] = rect
            bottom += v
        total = float(e.get("total", bottom))
        ax.annotate(f"{total / scale:.3g}", (x, bottom / scale), xytext=(0, 2),
                    textcoords="offset points", ha="center", va="bottom", fontsize=8)
        rows.append((run.label, *(float(e.get(c, 0.0)) / scale for c in comps), total / scale,
                     total / run.result.total_cycles))
    ax.set_ylim(0, 1.12 * peak / scale)
    ax.set_xticks(range(len(runs)), [r.label for r in runs], rotation=30, ha="right")
    ax.set_ylabel(f"energy per {_per_what(runs)} ({unit})")
    ax.set_xlabel("run")
    fig.suptitle("Energy breakdown by unit")
    ax.legend(handles=[Patch(color=style.component_color(c), label=style.component_label(c))
                       for c in comps], loc="upper left", bbox_to_anchor=(1.01, 1.0))
    table = Table(("run", *(f"{style.component_label(c)} ({unit})" for c in comps),
                   f"total ({unit})", "pJ per cycle"), tuple(rows))
    return Plot("energy", "Energy breakdown",
                "Energy of one iteration by hardware unit, from the configuration's energy "
                "model (energy.mode fpga: the units' FPGA resources times their activity, "
                "plus device static power; asic: per-action energies of a technology node; "
                "docs/energy.md).",
                fig, table, {"segments": segments, "energy_scale": scale, "unit": unit})


# --------------------------------------------------------------------------- per-run figures


def _stall_causes(results: Sequence[Any]) -> list[str]:
    known = list(style.STALL_COLORS)
    present = {k for r in results for k in r.stall_cycles}
    present |= {k for r in results for layer in r.layers for k in layer.stall_cycles}
    return [c for c in known if c in present] + sorted(present - set(known))


def layer_figure(run: Run) -> Plot | None:
    """Per layer: tensor-engine utilisation (top) and engine stall cycles by cause (bottom)."""
    r = run.result
    layers = list(r.layers)
    if not layers:
        return None
    causes = _stall_causes([r])
    n = len(layers)
    fig = new_figure(3.0 + 0.14 * n, 7.0)
    ax_u, ax_s = fig.subplots(2, 1, sharex=True, height_ratios=(1, 1.3))
    xs = np.arange(n)
    util = ax_u.bar(xs, [100.0 * layer.utilization for layer in layers], 0.8,
                    color=style.method_color(r.method), label="utilisation")
    ax_u.axhline(100.0 * r.utilization, color="black", linestyle="--", linewidth=1.0,
                 label=f"whole iteration ({100 * r.utilization:.1f}%)")
    ax_u.set_ylim(0, 105)
    ax_u.set_ylabel("engine utilisation (%)")
    fig.suptitle(f"{run.label}: utilisation and stalls per layer")
    ax_u.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
    peak = max([sum(layer.stall_cycles.get(c, 0) for c in causes) for layer in layers] + [1])
    unit, scale = style.cycle_unit(peak)
    bottom = np.zeros(n)
    stalls: dict[str, Any] = {}
    for c in causes:
        vals = np.array([layer.stall_cycles.get(c, 0) for layer in layers], dtype=float)
        stalls[c] = ax_s.bar(xs, vals / scale, 0.8, bottom=bottom / scale,
                             color=style.stall_color(c), label=style.stall_label(c))
        bottom += vals
    ax_s.set_ylabel(f"engine stall cycles ({unit})")
    ax_s.set_xlabel("layer (execution order)")
    ax_s.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fontsize = 8 if n <= 40 else 6 if n <= 120 else 5
    ax_s.set_xticks(xs, [layer.name for layer in layers], rotation=90, fontsize=fontsize)
    ax_s.set_xlim(-0.7, n - 0.3)
    rows = tuple((layer.name, dataflow_text(layer.dataflow), layer.total_cycles,
                  100.0 * layer.utilization,
                  *(layer.stall_cycles.get(c, 0) for c in causes), layer.dram_bytes,
                  layer.speedup_vs_dense) for layer in layers)
    table = Table(("layer", "dataflow", "cycles", "utilisation (%)",
                   *(f"stall: {c} (cycles)" for c in causes), "DRAM bytes",
                   "speedup vs dense (×)"), rows)
    return Plot(f"layers-{run.slug}", f"Per-layer utilisation and stalls: {run.label}",
                "Top: multiplier-lane operations issued over (cycles x peak MACs per cycle) "
                "of each layer's cycles, so 100% is the array's peak. Bottom: cycles the "
                "tensor engine waited with work pending, by cause (memory: an operand load "
                "or a store; SORE: a mask not yet generated; dependency: another unit's "
                "result or a barrier).",
                fig, table, {"utilization": util, "stalls": stalls, "stall_scale": scale})


def layer_energy_figure(run: Run) -> Plot | None:
    """Energy of each layer by unit, stacked (the same units as the run's energy
    breakdown), from the result's per-layer ``energy_pj``; the table adds each layer's
    energy by phase for a training run."""
    r = run.result
    layers = [x for x in r.layers if x.energy_pj.get("total", 0.0) > 0.0]
    if not layers:
        return None
    present = {k for x in layers for k in x.energy_pj if k != "total"}
    comps = [c for c in style.COMPONENT_COLORS if c in present] + sorted(
        present - set(style.COMPONENT_COLORS))
    peak = max(x.energy_pj["total"] for x in layers)
    unit, scale = style.energy_unit(peak)
    n = len(layers)
    fig = new_figure(3.0 + 0.14 * n, 5.2)
    ax = fig.add_subplot()
    xs = np.arange(n)
    bottom = np.zeros(n)
    segments: dict[str, Any] = {}
    for c in comps:
        vals = np.array([float(x.energy_pj.get(c, 0.0)) for x in layers])
        segments[c] = ax.bar(xs, vals / scale, 0.8, bottom=bottom / scale,
                             color=style.component_color(c), label=style.component_label(c))
        bottom += vals
    fontsize = 8 if n <= 40 else 6 if n <= 120 else 5
    ax.set_xticks(xs, [x.name for x in layers], rotation=90, fontsize=fontsize)
    ax.set_xlim(-0.7, n - 0.3)
    ax.set_ylim(0, 1.08 * peak / scale)
    per = _per_what([run]) if hasattr(r, "mode") else "inference pass"  # InferenceResult
    ax.set_ylabel(f"energy per {per} ({unit})")
    ax.set_xlabel("layer (execution order)")
    fig.suptitle(f"{run.label}: energy per layer by unit")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
    phases = [p for p in PHASES if any(getattr(x, "energy_by_phase_pj", {}).get(p, 0.0)
                                       for x in layers)]
    rows = tuple((x.name, *(float(x.energy_pj.get(c, 0.0)) / scale for c in comps),
                  *(float(x.energy_by_phase_pj.get(p, 0.0)) / scale for p in phases),
                  float(x.energy_pj["total"]) / scale,
                  100.0 * float(x.energy_pj["total"]) / float(r.energy_pj["total"]),
                  float(x.energy_pj["total"]) / x.total_cycles if x.total_cycles else None)
                 for x in layers)
    table = Table(("layer", *(f"{style.component_label(c)} ({unit})" for c in comps),
                   *(f"phase {style.phase_label(p)} ({unit})" for p in phases),
                   f"total ({unit})", "share of run (%)", "pJ per cycle"), rows)
    return Plot(f"layer-energy-{run.slug}", f"Energy per layer: {run.label}",
                "Energy of each layer by hardware unit, stacked (the units of the energy "
                "breakdown; static energy is charged to layers by their cycles), from the "
                "result's per-layer energy_pj; the table adds the energy by phase for "
                "training runs, each layer's share of the run and its energy per cycle. "
                "Layers without energy are left out.",
                fig, table, {"segments": segments, "energy_scale": scale, "unit": unit,
                             "layers": [x.name for x in layers]})


_UNIT_ORDER = ("engine", "sore", "wu")


def _unit_key(unit: str) -> tuple[int, str]:
    if unit in _UNIT_ORDER:
        return (_UNIT_ORDER.index(unit) * 2, unit)
    if unit.startswith("dma"):
        return (3, unit)  # DMA channels between the SORE and the weight-update engine
    return (10, unit)


def merge_intervals(intervals: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """Union of half-open ``[start, end)`` intervals, as sorted disjoint intervals."""
    out: list[list[int]] = []
    for s, e in sorted(intervals):
        if e <= s:
            continue
        if out and s <= out[-1][1]:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([s, e])
    return [(s, e) for s, e in out]


def _event_key(kind: str, phase: str) -> tuple[str, str]:
    """(``busy``|``stall``, phase or cause) of an event; vector-engine work is its own
    category (``vector``), whatever phase it belongs to."""
    if kind.startswith("stall"):
        return ("stall", kind.partition(":")[2] or "unknown")
    if kind == "vector":
        return ("busy", "vector")
    return ("busy", phase)


UNIT_LABELS = {"engine": "tensor engine", "sore": "SORE", "wu": "weight update / vector",
               "dma": "DMA (queues)"}
"""Timeline row names of the system model's units (DRAM channels are ``dma0``...)."""


def timeline_figure(run: Run) -> Plot | None:
    """Gantt chart of one iteration: what each unit (engine, SORE, DMA, WU) did and when."""
    r = run.result
    if not r.events:
        return None
    by_unit: dict[str, dict[tuple[str, str], list[tuple[int, int]]]] = {}
    for ev in r.events:
        by_unit.setdefault(ev.unit, {}).setdefault(_event_key(ev.kind, ev.phase), []).append(
            (ev.start, ev.end))
    units = sorted(by_unit, key=_unit_key)
    end = max(ev.end for ev in r.events)
    unit_name, scale = style.cycle_unit(end)
    fig = new_figure(13.0, 1.6 + 0.55 * len(units))
    ax = fig.add_subplot()
    collections: dict[tuple[str, str, str], Any] = {}
    rows = []
    phases_seen: set[str] = set()
    causes_seen: set[str] = set()
    for i, unit in enumerate(units):
        y = len(units) - 1 - i
        busy_total = 0
        stall_by_cause: dict[str, int] = {}
        for (what, key), spans in sorted(by_unit[unit].items()):
            merged = merge_intervals(spans)
            length = sum(e - s for s, e in merged)
            # Busy work is a full-height bar; waiting is a thin bar in the cause's colour
            # (hatching would be clearer but costs seconds on tens of thousands of bars).
            if what == "busy":
                color, half = style.phase_color(key), 0.35
                phases_seen.add(key)
                busy_total += length
            else:
                color, half = style.stall_color(key), 0.12
                causes_seen.add(key)
                stall_by_cause[key] = stall_by_cause.get(key, 0) + length
            coll = ax.broken_barh([(s / scale, (e - s) / scale) for s, e in merged],
                                  (y - half, 2 * half), facecolors=color, edgecolor="none",
                                  linewidth=0.0)
            collections[(unit, what, key)] = coll
        rows.append((unit, busy_total, 100.0 * busy_total / r.total_cycles,
                     sum(stall_by_cause.values()),
                     ", ".join(f"{c} {v}" for c, v in sorted(stall_by_cause.items())) or "-"))
    ax.set_yticks(range(len(units)), [UNIT_LABELS.get(u, u) for u in reversed(units)])
    ax.set_ylim(-0.6, len(units) - 0.4)
    ax.set_xlim(0, max(end, r.total_cycles) / scale)
    ax.set_xlabel(f"time ({unit_name})")
    ax.set_ylabel("unit")
    ax.grid(axis="y", visible=False)
    seconds_per_cycle = r.seconds / r.total_cycles if r.total_cycles else 0.0
    if seconds_per_cycle > 0:
        ms_per_unit = seconds_per_cycle * scale * 1e3
        top = ax.secondary_xaxis("top", functions=(lambda v: v * ms_per_unit,
                                                   lambda v: v / ms_per_unit))
        top.set_xlabel("time (ms)")
    title = f"{run.label}: timeline of one iteration"
    if r.events_truncated:
        title += " (event log truncated by the simulator)"
    fig.suptitle(title)
    handles: list[Any] = [Patch(color=style.phase_color(p), label=f"busy: {style.phase_label(p)}")
                          for p in PHASES if p in phases_seen]
    handles += [Patch(color=style.phase_color(p), label=f"busy: {p}")
                for p in sorted(phases_seen - set(PHASES))]
    handles += [Line2D([], [], color=style.stall_color(c), linewidth=4,
                       label=f"waiting: {style.stall_label(c)}") for c in sorted(causes_seen)]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    table = Table(("unit", "busy cycles", "busy (% of iteration)", "stalled cycles",
                   "stalls by cause (cycles)"), tuple(rows))
    caption = ("Each row is a unit; wide bars show when it worked (coloured by the phase of "
               "the work), thin bars when it waited with an instruction pending (coloured by "
               "cause), from the SimPy system model's event log of one iteration.")
    if r.events_truncated:
        caption += " The simulator truncated the event log, so the chart ends early."
    return Plot(f"timeline-{run.slug}", f"Timeline: {run.label}", caption, fig, table,
                {"intervals": collections, "time_scale": scale})


# --------------------------------------------------------------------------- registry

RUN_SET_FIGURES: list[Callable[[Sequence[Run]], Plot | None]] = [
    speedup_figure, phase_figure, energy_figure]
"""Figures drawn once over all runs of a report, in page order."""

PER_RUN_FIGURES: list[Callable[[Run], Plot | None]] = [layer_figure, layer_energy_figure,
                                                        timeline_figure]
"""Figures drawn once for each run, in page order."""

TRACE_FIGURES: list[Callable[[Sequence[Any]], Plot | None]] = [accuracy_figure,
                                                               loss_figure,
                                                               flip_rate_figure]
"""Figures drawn once over all traces of a report."""


def build_plots(runs: Sequence[Run], traces: Sequence[Any] = ()) -> list[Plot]:
    """Draw every applicable figure for ``runs`` and ``traces``, in page order."""
    plots: list[Plot] = []
    with matplotlib.rc_context(style.RC):
        for f in RUN_SET_FIGURES:
            p = f(runs)
            if p is not None:
                plots.append(p)
        for f in TRACE_FIGURES:
            p = f(traces)
            if p is not None:
                plots.append(p)
        for run in runs:
            for g in PER_RUN_FIGURES:
                p = g(run)
                if p is not None:
                    p.run = run
                    plots.append(p)
    names = [p.name for p in plots]
    if len(set(names)) != len(names):
        raise NmsatError(f"two figures share a file name: {names}")
    return plots
