"""Inference figures: a roofline with every layer placed on it, and the N:M speedup over
dense inference against batch size and against sequence length.

Each figure has a data function returning exactly what is plotted (plain dicts of lists,
so tests compare the drawn artists with it) and a ``*_figure`` function drawing it as a
:class:`nmsat.reports.figures.Plot` (written with :func:`nmsat.reports.figures.write_plot`;
colours from :mod:`nmsat.reports.style`: dense grey, N:M patterns in the BDWP hue tinted
by pattern, since inference weights are the ones BDWP trains).

* :func:`roofline_data` / :func:`roofline_figure`: log-log MACs per cycle (dense-
  equivalent) against arithmetic intensity (MAC per DRAM byte): the DRAM slope and the
  peak for dense and for the run's pattern, and one point per GEMM layer of an
  :class:`~nmsat.simulator.inference.InferenceResult` at (intensity, dense MACs / layer
  cycles), marked by its ``bound`` on the hardware.
* :func:`speedup_vs_batch` / :func:`speedup_batch_figure`: speedup over dense per N:M
  pattern at each batch size, with the weight-byte ratio (memory-bound limit) and the
  engine's peak ratio (compute-bound limit) drawn for each pattern.
* :func:`speedup_vs_seq_len` / :func:`speedup_seq_figure`: the same against prefill
  sequence length (or decode KV length) of an LLM.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib
from matplotlib.figure import Figure

from nmsat.config import AcceleratorConfig
from nmsat.types import NM

from . import style
from .figures import Plot, Table, write_plot


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


BOUND_MARKERS = (("memory", "o"), ("compute", "^"), ("dependency", "s"))
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
                "run's N:M pattern). Triangles are bound by the array on this hardware, circles "
                "by DRAM, squares mostly wait for another unit (dependency).", fig,
                Table(("layer", "MAC/B", "MAC/cycle", "bound"), rows),
                {"roofs": roofs, "points": points})


# --------------------------------------------------------------------------- sweeps


def _sweep(spec: str, cfg: AcceleratorConfig, patterns: Sequence[str], axis: str,
           values: Sequence[int], fixed: dict[str, Any]) -> dict[str, Any]:
    from nmsat.simulator.inference import InferenceOptions, simulate_inference

    out: dict[str, Any] = {"workload": spec, "axis": axis, "values": list(values),
                           "speedup": {}, "byte_ratio": {}, "peak_ratio": {},
                           "bound": {}}
    for nm in patterns:
        sp, br, bd = [], [], []
        for v in values:
            r = simulate_inference(spec, cfg, InferenceOptions(nm=nm, **{axis: v}, **fixed))
            sp.append(r.speedup_vs_dense)
            br.append(r.weight_byte_ratio)
            gemm = [x for x in r.layers if x.dense_macs]
            mem = sum(x.total_cycles for x in gemm if x.bound == "memory")
            bd.append("memory" if 2 * mem > sum(x.total_cycles for x in gemm) else "compute")
        out["speedup"][nm] = sp
        out["byte_ratio"][nm] = br[0]
        out["peak_ratio"][nm] = cfg.array.sparse_speedup(NM.parse(nm))
        out["bound"][nm] = bd
    return out


def speedup_vs_batch(spec: str, cfg: AcceleratorConfig, patterns: Sequence[str],
                     batches: Sequence[int], **fixed: Any) -> dict[str, Any]:
    """Speedup over dense inference per pattern at each batch size (``fixed``: further
    :class:`~nmsat.simulator.inference.InferenceOptions`, such as phase and kv_len).
    ``bound[nm][i]`` says whether most GEMM cycles were memory- or compute-bound."""
    return _sweep(spec, cfg, patterns, "batch", batches, fixed)


def speedup_vs_seq_len(spec: str, cfg: AcceleratorConfig, patterns: Sequence[str],
                       lengths: Sequence[int], axis: str = "seq_len",
                       **fixed: Any) -> dict[str, Any]:
    """Speedup per pattern against prefill ``seq_len`` (or decode ``kv_len``)."""
    if axis not in ("seq_len", "kv_len"):
        raise ValueError(f"axis must be seq_len or kv_len, not {axis!r}")
    return _sweep(spec, cfg, patterns, axis, lengths, fixed)


def _sweep_figure(d: dict[str, Any], name: str, xlabel: str, what: str) -> Plot:
    fig = _figure()
    lines, limits, memory = {}, {}, {}
    with matplotlib.rc_context(style.RC):
        ax = fig.add_subplot()
        ax.axhline(1.0, color=style.method_color("dense"), linewidth=1.5, label="dense")
        for nm, ys in d["speedup"].items():
            c = _color(nm)
            (lines[nm],) = ax.plot(d["values"], ys, marker="o", color=c, label=f"{nm}")
            mem = [i for i, b in enumerate(d["bound"][nm]) if b == "memory"]
            memory[nm] = ax.scatter([d["values"][i] for i in mem], [ys[i] for i in mem],
                                    marker="o", s=70, facecolor="white", edgecolor=c,
                                    zorder=3)
            b = ax.axhline(d["byte_ratio"][nm], color=c, linestyle="--", linewidth=1)
            p = ax.axhline(d["peak_ratio"][nm], color=c, linestyle=":", linewidth=1)
            limits[nm] = (b, p)
        ax.set_xscale("log", base=2)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("speedup over dense inference (x)")
        ax.set_title(f"N:M inference speedup vs {what}: {d['workload']}")
        ax.legend(title="dashed: weight-byte ratio; dotted: engine peak;\nopen: "
                        "memory-bound", loc="best")
    rows = tuple((nm, v, s, b) for nm in d["speedup"]
                 for v, s, b in zip(d["values"], d["speedup"][nm], d["bound"][nm]))
    return Plot(name, f"Speedup vs {what}", f"Speedup of N:M over dense inference on the "
                f"same hardware against {what}. Memory-bound points tend to the weight-byte "
                f"ratio (dashed), compute-bound ones to the engine's peak ratio (dotted); "
                f"open markers: most GEMM cycles memory-bound on this hardware.",
                fig, Table(("N:M", d["axis"], "speedup", "bound"), rows),
                {"lines": lines, "limits": limits, "memory_points": memory})


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
