"""Inference figures: a roofline with every layer placed on it, and the N:M speedup over
dense inference against batch size and against sequence length.

Each figure has a data function returning exactly what is plotted (plain dicts of lists,
so tests compare the drawn artists with it) and a ``*_figure`` function drawing it as a
:class:`nmsat.reports.plots.Plot` (written with :func:`nmsat.reports.plots.write_plot`;
colours from :mod:`nmsat.reports.style`: dense grey, N:M patterns in the BDWP hue tinted
by pattern, since inference weights are the ones BDWP trains).

* :func:`roofline_data` / :func:`roofline_figure`: log-log MACs per cycle (dense-
  equivalent) against arithmetic intensity (MAC per DRAM byte): the DRAM slope and the
  peak for dense and for the run's pattern, and one point per GEMM layer of an
  :class:`~nmsat.simulator.inference.InferenceResult` at (intensity, dense MACs / layer
  cycles), marked by its ``bound`` on the hardware.
* :func:`speedup_batch_figure`: speedup over dense per N:M pattern at each batch size
  (data: :func:`nmsat.simulator.inference_sweeps.speedup_vs_batch`, or
  :func:`sweeps_from_results` from given results), with the weight-byte ratio (memory-bound
  limit) and the engine's peak ratio (compute-bound limit) drawn for each pattern.
* :func:`speedup_seq_figure`: the same against prefill sequence length (or decode KV
  length) of an LLM (data: :func:`nmsat.simulator.inference_sweeps.speedup_vs_seq_len`).

The figures take results and sweep data; they never run a simulation.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib
from matplotlib.figure import Figure

from nmsat.simulator.inference_sweeps import majority_bound
from nmsat.types import NM

from . import style
from .figures import layer_energy_figure
from .plots import Plot, Run, Table, config_key, config_labels, with_colors, write_plot

__all__ = ["BOUND_MARKERS", "layers_figure", "make_runs", "report_plots", "ridge_crossing",
           "roofline_data", "roofline_figure", "speedup_batch_figure", "speedup_seq_figure",
           "sweeps_from_results", "write_figures"]


def _color(nm: str) -> str:
    return style.series_color("dense" if NM.parse(nm).dense else "bdwp", nm)


def _figure(w: float = 7.5, h: float = 5.0) -> Figure:
    with matplotlib.rc_context(style.RC):
        return Figure(figsize=(w, h), layout="constrained", dpi=style.DPI)


# --------------------------------------------------------------------------- roofline


def roofline_data(result) -> dict[str, Any]:
    """The roofline of ``result``'s hardware and pattern, and its GEMM layers on it.

    Returns ``peak_dense``, ``peak`` (dense-equivalent MACs/cycle at the pattern),
    ``bandwidth`` (B/cycle), ``ridge`` (MAC/B), and ``layers``: parallel lists ``name``,
    ``intensity``, ``performance`` (dense MACs / layer cycles) and ``bound``.
    """
    rf = result.roofline
    names, xs, ys, bounds = [], [], [], []
    for row in result.layers:
        if not row.dense_macs or not row.dram_bytes or not row.total_cycles:
            continue
        names.append(row.name)
        xs.append(row.intensity)
        ys.append(row.dense_macs / row.total_cycles)
        bounds.append(row.bound)
    return {"peak_dense": rf["dense_peak_macs_per_cycle"], "peak": rf["peak_macs_per_cycle"],
            "bandwidth": rf["dram_bytes_per_cycle"], "ridge": rf["ridge"],
            "nm": result.nm, "workload": result.workload,
            "layers": {"name": names, "intensity": xs, "performance": ys, "bound": bounds}}


BOUND_MARKERS = (("memory", "o"), ("compute", "^"), ("array", "v"), ("dependency", "s"))
"""Marker of each ``bound`` a layer can have (``nmsat.simulator.roofline.Bound``)."""


def roofline_figure(result) -> Plot:
    d = roofline_data(result)
    fig = _figure()
    with matplotlib.rc_context(style.RC):
        ax = fig.add_subplot()
        lay = d["layers"]
        lo = min([d["ridge"] / 64] + lay["intensity"]) / 2
        hi = max([d["ridge"] * 64] + lay["intensity"]) * 2
        roofs = {}
        for key, peak, nm in (("dense", d["peak_dense"], "1:1"), ("nm", d["peak"], d["nm"])):
            if key == "nm" and NM.parse(d["nm"]).dense:
                continue
            x = [lo, peak / d["bandwidth"], hi]
            y = [lo * d["bandwidth"], peak, peak]
            label = "dense roof" if key == "dense" else f"{d['nm']} roof"
            (roofs[key],) = ax.plot(x, y, color=_color(nm), linewidth=2, label=label)
        points = {}
        for bound, marker in BOUND_MARKERS:
            sel = [i for i, b in enumerate(lay["bound"]) if b == bound]
            points[bound] = ax.scatter([lay["intensity"][i] for i in sel],
                                       [lay["performance"][i] for i in sel], marker=marker,
                                       s=22, color=_color(d["nm"]), edgecolor="black",
                                       linewidth=0.4, label=f"layers, {bound}-bound here")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("arithmetic intensity (dense-equivalent MAC / DRAM byte)")
        ax.set_ylabel("performance (dense-equivalent MAC / cycle)")
        ax.set_title(f"Roofline: {d['workload']} inference, {d['nm']}")
        ax.legend(loc="lower right")
    rows = tuple(zip(lay["name"], lay["intensity"], lay["performance"], lay["bound"]))
    return Plot("inference-roofline", f"Roofline of {d['workload']}",
                "Each GEMM layer at its arithmetic intensity and achieved dense-equivalent "
                "MACs per cycle; the lines are the DRAM and peak ceilings (dense, and at the "
                "run's N:M pattern). Upward triangles are bound by the array at its peak "
                "(compute), downward ones by an array their shape fills under half of "
                "(array: a GEMV's one row, decode attention), circles by DRAM, squares "
                "mostly wait for another unit (dependency).", fig,
                Table(("layer", "MAC/B", "MAC/cycle", "bound"), rows),
                {"roofs": roofs, "points": points})


# --------------------------------------------------------------------------- sweeps


def ridge_crossing(d: dict[str, Any], nm: str) -> Any:
    """The first sweep value from which the textbook roofline says compute-bound (the
    run's intensity has crossed the ridge), or None if it never does or always is."""
    ideal = d.get("ideal_bound", {}).get(nm)
    if not ideal or ideal[0] != "memory":
        return None
    for v, b in zip(d["values"], ideal):
        if b == "compute":
            return v
    return None


_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">")
"""Line markers of the patterns of a sweep figure, in order (patterns of one colour differ)."""


def _sweep_figure(d: dict[str, Any], name: str, xlabel: str, what: str) -> Plot:
    fig = _figure()
    lines, limits, memory, crossing = {}, {}, {}, {}
    with matplotlib.rc_context(style.RC):
        ax = fig.add_subplot()
        ax.axhline(1.0, color=style.method_color("dense"), linewidth=1.5, label="dense")
        for i, (nm, ys) in enumerate(d["speedup"].items()):
            c = _color(nm)
            (lines[nm],) = ax.plot(d["values"], ys, marker=_MARKERS[i % len(_MARKERS)],
                                   color=c, label=f"{nm}")
            mem = [i for i, b in enumerate(d["bound"][nm]) if b == "memory"]
            memory[nm] = ax.scatter([d["values"][i] for i in mem], [ys[i] for i in mem],
                                    marker="o", s=70, facecolor="white", edgecolor=c,
                                    zorder=3)
            b = ax.axhline(d["byte_ratio"][nm], color=c, linestyle="--", linewidth=1)
            p = ax.axhline(d["peak_ratio"][nm], color=c, linestyle=":", linewidth=1)
            limits[nm] = (b, p)
            x = ridge_crossing(d, nm)
            crossing[nm] = None if x is None else ax.axvline(x, color=c, linestyle="-.",
                                                             linewidth=1)
        ax.set_xscale("log", base=2)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("speedup over dense inference (x)")
        ax.set_title(f"N:M inference speedup vs {what}: {d['workload']}")
        ax.legend(title="dashed: weight-byte ratio; dotted: engine peak;\nopen: "
                        "memory-bound; dash-dot: textbook ridge crossed", loc="best")
    ideal = d.get("ideal_bound", {})
    rows = tuple((nm, v, s, b, i) for nm in d["speedup"]
                 for v, s, b, i in zip(d["values"], d["speedup"][nm], d["bound"][nm],
                                       ideal.get(nm, [None] * len(d["values"]))))
    return Plot(name, f"Speedup vs {what}", f"Speedup of N:M over dense inference on the "
                f"same hardware against {what}. Memory-bound points tend to the weight-byte "
                f"ratio (dashed), compute-bound ones to the engine's peak ratio (dotted); "
                f"open markers: most GEMM cycles memory-bound on this hardware; dash-dot "
                f"vertical line: where the textbook roofline (intensity against the ridge) "
                f"turns compute-bound. The array can turn compute-bound earlier (small "
                f"row counts do not fill it) but never later.",
                fig, Table(("N:M", d["axis"], "speedup", "bound", "textbook bound"), rows),
                {"lines": lines, "limits": limits, "memory_points": memory,
                 "ridge_crossing": crossing})


def speedup_batch_figure(d: dict[str, Any]) -> Plot:
    return _sweep_figure(d, "inference-speedup-batch", "batch size (sequences)", "batch size")


def speedup_seq_figure(d: dict[str, Any]) -> Plot:
    label = "prefill sequence length (tokens)" if d["axis"] == "seq_len" else \
        "KV-cache length (positions)"
    return _sweep_figure(d, "inference-speedup-seq", label, d["axis"].replace("_", " "))


def write_figures(plots: Sequence[Plot], out_dir: str | Path) -> list[Path]:
    """Write each plot as PNG and SVG into ``out_dir``."""
    paths: list[Path] = []
    for p in plots:
        paths.extend(write_plot(p, out_dir).values())
    return paths


# --------------------------------------------------------------------------- the report


def layers_figure(result) -> Plot:
    """DRAM bytes of every layer with traffic, dense baseline against the run's weights,
    coloured by what bounds the layer; the table has every per-layer number of the run."""
    rows = [x for x in result.layers if x.dram_bytes or x.dense_dram_bytes]
    fig = _figure(max(7.5, min(28.0, 0.12 * len(rows) + 3)), 4.8)
    bars = {}
    with matplotlib.rc_context(style.RC):
        ax = fig.add_subplot()
        xs = list(range(len(rows)))
        bars["dense"] = ax.bar([x - 0.2 for x in xs], [r.dense_dram_bytes for r in rows],
                               width=0.4, color=_color("1:1"), label="dense")
        colors = BOUND_COLORS | {"compute": _color(result.nm)}
        bars["nm"] = ax.bar([x + 0.2 for x in xs], [r.dram_bytes for r in rows], width=0.4,
                            color=[colors.get(r.bound, "#777777") for r in rows])
        from matplotlib.patches import Patch

        handles = [Patch(color=_color("1:1"), label="dense baseline")] + [
            Patch(color=colors[b], label=f"{result.nm}, {b}-bound")
            for b in ("compute", "array", "memory", "dependency")]
        ax.set_yscale("log")
        ax.set_ylabel("DRAM bytes per pass")
        if len(rows) <= 40:
            ax.set_xticks(xs, [r.name for r in rows], rotation=90, fontsize=7)
        else:
            ax.set_xlabel(f"layer index (0 to {len(rows) - 1} in program order; names in "
                          f"the table)")
        ax.set_title(f"DRAM bytes per layer: {result.workload} inference, {result.nm}")
        ax.legend(handles=handles, loc="best")
    table = Table(("layer", "N:M", "dataflow", "bound", "limiter at (% of its peak)",
                   "speedup",
                   "cycles", "dense cycles", "MAC/cycle", "peak MAC/cycle",
                   "array fill (%)", "DRAM B/cycle", "peak DRAM B/cycle", "DRAM bytes",
                   "dense DRAM bytes", "byte ratio", "weight bytes", "KV-cache bytes",
                   "MAC/B", "dense bound", "textbook bound"),
                  tuple((x.name, x.nm, x.dataflow or None, x.bound,
                         100.0 * x.limiter_ratio, x.speedup_vs_dense,
                         x.total_cycles, x.dense_total_cycles, x.achieved_macs_per_cycle,
                         x.peak_macs_per_cycle, 100.0 * x.array_fill,
                         x.achieved_bytes_per_cycle, result.roofline["dram_bytes_per_cycle"],
                         x.dram_bytes, x.dense_dram_bytes,
                         x.byte_ratio, x.weight_bytes, x.kv_cache_bytes,
                         None if math.isinf(x.intensity) else x.intensity,
                         x.dense_bound or None, x.ideal_bound) for x in result.layers))
    return Plot("inference-layers", f"Bytes and bound per layer of {result.workload}",
                "DRAM bytes each layer moves per pass (loads, stores, vector streams; N:M "
                "weights compressed with their indices), dense baseline grey, the run's "
                "pattern coloured by the layer's bound on this hardware: compute (the "
                "array at its peak sets its time), array (the array does, but the layer's "
                "shape fills under half of it: a GEMV's single row, decode attention), "
                "memory (DRAM does) or dependency (it mostly waits for another unit). The "
                "table lists every layer with its bound, how close it comes to that "
                "limiter's peak (MACs per cycle against the peak for compute and array, "
                "DRAM bytes per cycle against the bandwidth for memory), achieved against "
                "peak MACs and bytes per cycle, and its N:M speedup; sort it by any "
                "column.", fig, table,
                {"bars": bars, "rows": [x.name for x in rows]})


BOUND_COLORS: dict[str, str] = {"memory": style.STALL_COLORS["memory"],
                                "array": "#b07aa1",
                                "dependency": style.STALL_COLORS["dependency"]}
"""Bar colour of each layer bound but ``compute`` (which takes the run's pattern colour)."""


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def make_runs(results: Sequence[Any], sources: Sequence[str]) -> list[Run]:
    """Name each inference result (workload, pattern, plus the settings that differ
    between the report's inference runs); slugs start with ``i`` so they never clash with
    training runs' (``01-...``)."""
    labels = config_labels(results)

    def cfg_name(r: Any) -> str:
        return labels[config_key(r.config)]

    keys = {"phase": lambda r: r.phase, "batch": lambda r: r.batch,
            "seq_len": lambda r: r.seq_len, "kv_len": lambda r: r.kv_len,
            "config": cfg_name, "act_zero": lambda r: r.act_zero,
            "act_density": lambda r: r.act_density,
            "options": lambda r: json.dumps(r.options, sort_keys=True)}
    varies = [k for k, f in keys.items() if len({f(r) for r in results}) > 1]
    runs: list[Run] = []
    seen: dict[tuple[str, str], int] = {}
    for i, (r, src) in enumerate(zip(results, sources)):
        words = [f"inference {r.nm}" if not NM.parse(r.nm).dense else "inference dense"]
        for k in varies:
            v = keys[k](r)
            if k == "options":
                words += [f"{o}={r.options[o]}" for o in sorted(r.options)
                          if len({json.dumps(x.options.get(o)) for x in results}) > 1]
            elif v is not None:
                words.append(f"{k.replace('_', ' ')} {v}" if k != "config" else str(v))
        series = " ".join(words)
        key = (r.workload, series)
        seen[key] = seen.get(key, 0) + 1
        if seen[key] > 1:
            series = f"{series} #{seen[key]}"
        runs.append(Run(result=r, label=f"{r.workload} · {series}", series=series,
                        slug=f"i{i + 1:02d}-{_slug(r.workload + ' ' + series)}", source=src))
    return with_colors(runs)


def sweeps_from_results(results: Sequence[Any]) -> list[dict[str, Any]]:
    """Sweep data (as :func:`nmsat.simulator.inference_sweeps.speedup_vs_batch` returns) built
    from the given results only: runs of one workload and configuration that differ only in
    batch (or only in prefill ``seq_len`` / decode ``kv_len``) form a sweep over that axis,
    one series per pattern, when the group has at least two values. Nothing is simulated."""
    out = []
    for axis in ("batch", "seq_len", "kv_len"):
        fixed = [a for a in ("batch", "seq_len", "kv_len") if a != axis]
        groups: dict[tuple, list] = {}
        for r in results:
            if getattr(r, axis) is None or NM.parse(r.nm).dense:
                continue
            key = (r.workload, json.dumps(r.config, sort_keys=True), r.phase, r.act_zero,
                   r.act_density, json.dumps(r.options, sort_keys=True),
                   *(getattr(r, a) for a in fixed))
            groups.setdefault(key, []).append(r)
        for rs in groups.values():
            values = sorted({getattr(r, axis) for r in rs})
            if len(values) < 2:
                continue
            d: dict[str, Any] = {"workload": rs[0].workload, "axis": axis, "values": values,
                                 "speedup": {}, "byte_ratio": {}, "peak_ratio": {},
                                 "bound": {}, "ideal_bound": {},
                                 "config": rs[0].config.get("name", "?")}
            for nm in sorted({r.nm for r in rs}, key=lambda p: NM.parse(p).n / NM.parse(p).m):
                by = {getattr(r, axis): r for r in rs if r.nm == nm}
                if len(by) != len(values):
                    continue  # a pattern must cover every value of the sweep
                d["speedup"][nm] = [by[v].speedup_vs_dense for v in values]
                d["byte_ratio"][nm] = by[values[0]].weight_byte_ratio
                rf = by[values[0]].roofline
                d["peak_ratio"][nm] = rf["peak_macs_per_cycle"] / rf["dense_peak_macs_per_cycle"]
                d["bound"][nm] = [majority_bound(by[v]) for v in values]
                d["ideal_bound"][nm] = [majority_bound(by[v], "ideal_bound") for v in values]
            if d["speedup"]:
                out.append(d)
    return out


def report_plots(runs: Sequence[Run], sweeps: Sequence[dict[str, Any]] | None = None
                 ) -> list[Plot]:
    """Every inference figure of a report: the sweeps (``sweeps``, else those the runs
    themselves form, :func:`sweeps_from_results`), then per run its roofline and its
    per-layer bytes and bounds."""
    plots: list[Plot] = []
    data = list(sweeps) if sweeps is not None else sweeps_from_results(
        [r.result for r in runs])
    counts: dict[str, int] = {}
    for d in data:
        counts[d["axis"]] = counts.get(d["axis"], 0) + 1
    seen: dict[str, int] = {}
    for d in data:
        p = speedup_batch_figure(d) if d["axis"] == "batch" else speedup_seq_figure(d)
        if counts[d["axis"]] > 1:  # several sweeps over one axis: number them
            seen[d["axis"]] = seen.get(d["axis"], 0) + 1
            p.name = (f"{p.name}-{seen[d['axis']]}-"
                      f"{_slug(d['workload'] + ' ' + str(d.get('config', '')))}")
            p.title = f"{p.title}: {d['workload']} ({d.get('config', '')})"
        plots.append(p)
    for run in runs:
        for f in (roofline_figure, layers_figure):
            p = f(run.result)
            p.name = f"{p.name}-{run.slug}"
            p.run = run
            plots.append(p)
        e = layer_energy_figure(run)
        if e is not None:
            e.run = run
            plots.append(e)
    names = [p.name for p in plots]
    if len(set(names)) != len(names):
        raise ValueError(f"two inference figures share a file name: {names}")
    return plots
