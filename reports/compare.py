"""Comparing designs: runs of one workload on different accelerator configurations.

A speedup over each run's own dense baseline hides which design is faster: a design 23%
faster in absolute time can show a smaller speedup over its own (also faster) dense run.
When a report's runs come from more than one configuration, these figures put the
absolute numbers side by side:

* :func:`compare_figure`: time (ms) and energy (mJ) of every run, grouped by workload,
  one colour per run, with each run's ratio to the first run of its workload;
* :func:`layer_delta_figure`: per layer, the time and energy of a run minus those of the
  first run of its workload (the baseline), one figure per compared run;
* :func:`config_diff_table`: the configuration fields whose values differ between the
  runs (dotted names as in ``docs/config.md``), one column per configuration.

They work on training (``SimResult``) and inference (``InferenceResult``) runs alike: both
have ``seconds``, ``energy_pj`` and per-layer ``seconds`` and ``energy_pj``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from . import style
from .plots import Plot, Run, Table, config_key, config_labels, run_color

__all__ = ["baselines", "compare_figure", "compare_plots", "config_diff_table",
           "configs_differ", "flatten", "layer_delta_figure"]


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested config dict as ``{"dram.channels": 2, ...}`` (lists kept as values)."""
    out: dict[str, Any] = {}
    for k, v in config.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def configs_differ(runs: Sequence[Run]) -> bool:
    """Whether the runs were simulated on more than one configuration."""
    return len({config_key(r.result.config) for r in runs}) > 1


def config_diff_table(runs: Sequence[Run]) -> Table | None:
    """The configuration fields that differ between the runs' configurations (``None``
    when they all ran on one)."""
    if not configs_differ(runs):
        return None
    names = config_labels([r.result for r in runs])
    cfgs: dict[str, dict[str, Any]] = {}
    for r in runs:
        cfgs.setdefault(config_key(r.result.config), flatten(r.result.config))
    fields = sorted({f for c in cfgs.values() for f in c})
    rows = []
    for f in fields:
        vals = [c.get(f) for c in cfgs.values()]
        if len({json.dumps(v, sort_keys=True) for v in vals}) > 1:
            rows.append((f, *(v if not isinstance(v, (list, dict)) else json.dumps(v)
                              for v in vals)))
    return Table(("field", *(names[k] for k in cfgs)), tuple(rows))


def baselines(runs: Sequence[Run]) -> dict[str, Run]:
    """The first run of each workload: what the others of that workload are compared with."""
    out: dict[str, Run] = {}
    for r in runs:
        out.setdefault(r.result.workload, r)
    return out


def _energy(r: Any) -> float:
    return float(r.energy_pj.get("total", 0.0))


def compare_figure(runs: Sequence[Run]) -> Plot | None:
    """Absolute time and energy of every run side by side (reports over several
    configurations only)."""
    if len(runs) < 2 or not configs_differ(runs):
        return None
    names = config_labels([r.result for r in runs])
    base = baselines(runs)
    fig = Figure(figsize=(min(28.0, max(11.0, 3.0 + 1.2 * len(runs))), 5.2),
                 layout="constrained", dpi=style.DPI)
    ax_t, ax_e = fig.subplots(1, 2)
    bars: dict[str, dict[str, Any]] = {"time": {}, "energy": {}}
    rows = []
    xs = np.arange(len(runs))
    for i, run in enumerate(runs):
        r, b = run.result, base[run.result.workload].result
        color = run_color(run)
        t_ms, e_mj = r.seconds * 1e3, _energy(r) / 1e9
        bars["time"][run.label] = ax_t.bar(i, t_ms, 0.7, color=color, edgecolor="black",
                                           linewidth=0.5)[0]
        bars["energy"][run.label] = ax_e.bar(i, e_mj, 0.7, color=color, edgecolor="black",
                                             linewidth=0.5)[0]
        t_ratio = r.seconds / b.seconds if b.seconds else None
        e_ratio = _energy(r) / _energy(b) if _energy(b) else None
        for ax, v, ratio in ((ax_t, t_ms, t_ratio), (ax_e, e_mj, e_ratio)):
            text = f"{v:.3g}" + ("" if ratio is None or run is base[r.workload]
                                 else f"\n{ratio:.2f}×")
            ax.annotate(text, (i, v), xytext=(0, 2), textcoords="offset points",
                        ha="center", va="bottom", fontsize=8)
        nm = "–" if getattr(r, "method", "") == "dense" else r.nm
        rows.append((run.label, names[config_key(r.config)], r.workload, nm, r.total_cycles,
                     float(r.config.get("clock_mhz", 0.0)), t_ms, e_mj, t_ratio, e_ratio,
                     r.speedup_vs_dense, base[r.workload].label))
    labels = [run.label for run in runs]
    for ax, what in ((ax_t, "time (ms)"), (ax_e, "energy (mJ)")):
        ax.set_xticks(xs, labels, rotation=30, ha="right", fontsize=8)
        ax.set_ylabel(what)
        top = max(p.get_height() for p in ax.patches)
        ax.set_ylim(0, 1.25 * top)
    modes = {getattr(r.result, "mode", "inference") for r in runs}
    per = ("training iteration" if modes == {"train"} else "inference pass"
           if modes == {"inference"} else "iteration or pass")
    ax_t.set_title(f"time per {per}")
    ax_e.set_title(f"energy per {per}")
    fig.suptitle("Designs side by side: absolute time and energy")
    fig.legend(handles=[Patch(facecolor=run_color(run), edgecolor="black", linewidth=0.5,
                              label=run.label) for run in runs],
               loc="outside right upper", fontsize=8)
    table = Table(("run", "config", "model", "N:M", "cycles", "clock (MHz)", "time (ms)",
                   "energy (mJ)", "time vs baseline (×)", "energy vs baseline (×)",
                   "speedup over its own dense (×)", "baseline"), tuple(rows))
    return Plot("compare", "Designs side by side",
                "Absolute time and energy of one iteration (training) or pass (inference) "
                "of every run, one colour per run; under each value its ratio to the first "
                "run of the same model (the baseline; below 1 is faster or cheaper). Compare "
                "designs here: a run's speedup over its own dense run says how much N:M "
                "helps on that design, not which design is faster. The configuration "
                "fields that differ are listed in 'Configurations compared'.",
                fig, table, bars)


def layer_delta_figure(run: Run, baseline: Run) -> Plot | None:
    """Per layer: time and energy of ``run`` minus ``baseline``'s (layers of both, in the
    run's order)."""
    r, b = run.result, baseline.result
    by = {x.name: x for x in b.layers}
    layers = [x for x in r.layers if x.name in by]
    if not layers:
        return None
    n = len(layers)
    dt = np.array([(x.seconds - by[x.name].seconds) * 1e6 for x in layers])  # us
    de = np.array([(float(x.energy_pj.get("total", 0.0))
                    - float(by[x.name].energy_pj.get("total", 0.0))) / 1e6 for x in layers])
    fig = Figure(figsize=(min(28.0, max(9.0, 3.0 + 0.14 * n)), 6.4), layout="constrained",
                 dpi=style.DPI)
    ax_t, ax_e = fig.subplots(2, 1, sharex=True)
    xs = np.arange(n)
    color = run_color(run)
    bt = ax_t.bar(xs, dt, 0.8, color=color)
    be = ax_e.bar(xs, de, 0.8, color=color)
    for ax in (ax_t, ax_e):
        ax.axhline(0.0, color="black", linewidth=0.8)
    ax_t.set_ylabel("Δ time (µs)")
    ax_e.set_ylabel("Δ energy (µJ)")
    fontsize = 8 if n <= 40 else 6 if n <= 120 else 5
    ax_e.set_xticks(xs, [x.name for x in layers], rotation=90, fontsize=fontsize)
    ax_e.set_xlim(-0.7, n - 0.3)
    ax_e.set_xlabel("layer (execution order)")
    fig.suptitle(f"{run.label} minus {baseline.label}, per layer (below 0: faster or cheaper)")
    rows = tuple((x.name, by[x.name].seconds * 1e6, x.seconds * 1e6, float(d_t),
                  x.seconds / by[x.name].seconds if by[x.name].seconds else None,
                  float(by[x.name].energy_pj.get("total", 0.0)) / 1e6,
                  float(x.energy_pj.get("total", 0.0)) / 1e6, float(d_e))
                 for x, d_t, d_e in zip(layers, dt, de))
    table = Table(("layer", "baseline time (µs)", "time (µs)", "Δ time (µs)", "time ratio (×)",
                   "baseline energy (µJ)", "energy (µJ)", "Δ energy (µJ)"), rows)
    return Plot(f"layer-deltas-{run.slug}", f"Per-layer deltas: {run.label}",
                f"Time and energy of each layer of {run.label} minus those of the same layer "
                f"of {baseline.label} (the first run of the model in this report); layers "
                "present in both runs. Sort the table by Δ to find where the designs "
                "differ most.", fig, table, {"time": bt, "energy": be,
                                             "layers": [x.name for x in layers]})


def compare_plots(runs: Sequence[Run]) -> list[Plot]:
    """Every comparison figure of ``runs`` (none unless they span several
    configurations): the side-by-side figure, then per-layer deltas of each run against
    the first run of its workload."""
    plots: list[Plot] = []
    p = compare_figure(runs)
    if p is None:
        return plots
    plots.append(p)
    base = baselines(runs)
    for run in runs:
        b = base[run.result.workload]
        if run is b:
            continue
        d = layer_delta_figure(run, b)
        if d is not None:
            plots.append(d)
    return plots
