"""Figures and the HTML report of a design-space sweep, read from its result store
(``nmsat sweep``; ``nmsat sweep report STORE -o DIR``).

Per workload, each as PNG and SVG:

* ``sweep_pareto_<workload>``: speed (training iterations or inference passes per second)
  against area (LUTs, from the resource estimate) and against energy per iteration; the
  points on the Pareto front (no other point is at least as fast, as small and as frugal,
  and better in one) are ringed (:func:`pareto_front`). Without a resource estimate the
  multiplier count (rows x cols x macs_per_pe) stands in for area, labelled as such.
* ``sweep_sensitivity_<workload>``: one column per swept axis, by name (an axis with a
  single value in that workload's points is left out): time and energy per iteration
  against the axis value, the median over all points with that value (the other axes
  marginalised) and their min-max range.

Only successful points are plotted; failed ones are counted in the titles and listed on the
page. :func:`sweep_plots` returns the figures as :class:`~nmsat.reports.plots.Plot`
objects (with the artists that hold each plotted value); :func:`build_sweep_report` writes
them with ``index.html``; :func:`sweep_figures` writes only the figure files.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["FORMATS", "TIME_UNITS", "FailedPoint", "SweepPoint", "build_sweep_report",
           "fits_xcvu9p", "has_area", "load_points", "load_store", "objectives", "pareto_front",
           "pareto_plot", "sensitivity", "sensitivity_plot", "sweep_figures", "sweep_plots",
           "time_unit", "varying_axes"]

FORMATS: tuple[str, ...] = ("png", "svg")

TIME_UNITS: tuple[tuple[str, float], ...] = (("ns", 1e-9), ("µs", 1e-6), ("ms", 1e-3),
                                             ("s", 1.0))


@dataclass(frozen=True)
class SweepPoint:
    """What the figures and the page need of one successful stored point."""

    key: str
    workload: str
    params: dict[str, Any]
    seconds: float
    energy_j: float
    lut: int | None
    multipliers: int
    idx: int = 0
    total_cycles: int | None = None
    speedup: float | None = None
    ff: int | None = None
    dsp: int | None = None
    bram: float | None = None

    @property
    def speed(self) -> float:
        """Iterations per second."""
        return 1.0 / self.seconds


@dataclass(frozen=True)
class FailedPoint:
    """A stored point whose simulation failed: listed on the page, never plotted."""

    key: str
    idx: int
    workload: str
    params: dict[str, Any]
    error: str


def load_store(store_path: str | Path) -> tuple[list[SweepPoint], list[FailedPoint]]:
    """(successful points, failed points) of the store, in spec order. Raises
    :class:`~nmsat.simulator.sweep.SweepError` if ``store_path`` is not a sweep store."""
    from nmsat.simulator.sweep import export_rows

    ok: list[SweepPoint] = []
    failed: list[FailedPoint] = []
    for r in export_rows(store_path):
        if r["status"] != "ok":
            failed.append(FailedPoint(r["key"], r["idx"], r["workload"], r["params"],
                                      r["error"] or ""))
            continue
        a = r["config"]["array"]
        ok.append(SweepPoint(r["key"], r["workload"], r["params"], r["seconds"],
                             r["energy_pj"] * 1e-12, r["lut"],
                             a["rows"] * a["cols"] * a["macs_per_pe"], idx=r["idx"],
                             total_cycles=r["total_cycles"], speedup=r["speedup_vs_dense"],
                             ff=r["ff"], dsp=r["dsp"], bram=r["bram"]))
    return ok, failed


def load_points(store_path: str | Path) -> tuple[list[SweepPoint], int]:
    """(successful points, number of failed points) of the store, in spec order."""
    ok, failed = load_store(store_path)
    return ok, len(failed)


def pareto_front(objectives: Sequence[Sequence[float]]) -> list[int]:
    """Indices of the non-dominated rows, every objective to be minimised.

    Row a dominates row b if a is no worse in every objective and better in at least one.
    Identical rows do not dominate each other (both stay on the front).
    """
    front = []
    for i, a in enumerate(objectives):
        dominated = any(all(x <= y for x, y in zip(b, a)) and any(x < y for x, y in zip(b, a))
                        for j, b in enumerate(objectives) if j != i)
        if not dominated:
            front.append(i)
    return front


def fits_xcvu9p(p: SweepPoint) -> bool | None:
    """Whether the area model's LUT, FF, DSP and RAMB36 estimates of ``p`` are all within
    the XCVU9P's capacity (``nmsat.rtl.synth.XCVU9P``); ``None`` without an estimate."""
    from nmsat.rtl.synth import XCVU9P

    if p.lut is None or p.ff is None or p.dsp is None or p.bram is None:
        return None
    cap = XCVU9P.capacity
    return p.lut <= cap.lut and p.ff <= cap.ff and p.dsp <= cap.dsp and p.bram <= cap.bram36


def has_area(points: Sequence[SweepPoint]) -> bool:
    """Whether every point has a LUT estimate (else the multiplier count stands in)."""
    return all(p.lut is not None for p in points)


def objectives(points: Sequence[SweepPoint], with_area: bool) -> list[tuple[float, ...]]:
    """The minimised objectives of the Pareto front: time per iteration, energy per
    iteration and hardware size (LUTs when estimated, else the multiplier count as a plain
    structural measure of size)."""
    return [(p.seconds, p.energy_j, float(p.lut if with_area else p.multipliers))
            for p in points]


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def _axis_names(points: Sequence[SweepPoint]) -> list[str]:
    names: list[str] = []
    for p in points:
        for k in p.params:
            if k not in names:
                names.append(k)
    return names


def varying_axes(points: Sequence[SweepPoint]) -> list[str]:
    """The axes (by name, as the store keeps them) that take more than one value among
    ``points``."""
    return [a for a in _axis_names(points)
            if len({_hashable(p.params.get(a)) for p in points}) > 1]


def _sort_key(v: Any) -> tuple[int, Any]:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return (1, str(v))
    return (0, v)


def sensitivity(points: Sequence[SweepPoint], axis: str
                ) -> list[tuple[Any, dict[str, tuple[float, float, float]]]]:
    """Per value of ``axis`` (sorted): ``{"seconds"|"energy_j": (min, median, max)}`` over
    the points with that value."""
    groups: dict[Any, list[SweepPoint]] = {}
    for p in points:
        if axis in p.params:
            groups.setdefault(_hashable(p.params[axis]), []).append(p)
    out = []
    for v in sorted(groups, key=_sort_key):
        ps = groups[v]
        stats = {}
        for metric in ("seconds", "energy_j"):
            xs = [getattr(p, metric) for p in ps]
            stats[metric] = (min(xs), statistics.median(xs), max(xs))
        out.append((v, stats))
    return out


def _hashable(v: Any) -> Any:
    return tuple(v) if isinstance(v, list) else v


def _value_text(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (list, tuple)):
        return " ".join(map(str, v))
    return str(v)


def time_unit(max_seconds: float) -> tuple[str, float]:
    """The unit (name, seconds per unit) that shows ``max_seconds`` as a number >= 1."""
    from .style import pick_unit

    return pick_unit(max_seconds, TIME_UNITS)


def _figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure

    from . import style

    return Figure(figsize=(width, height), layout="constrained", dpi=style.DPI)


# --------------------------------------------------------------------------- figures


def pareto_plot(workload: str, pts: Sequence[SweepPoint], failed: int = 0) -> Any:
    """The speed-area-energy figure of one workload's points, the Pareto front ringed.

    Artists: ``"area"`` / ``"area_front"`` (scatter offsets = (size, speed)), ``"energy"`` /
    ``"energy_front"`` (offsets = (energy in the axis unit, speed)); ``artists["energy_scale"]``
    is the pJ per axis unit. The table lists the front's points.
    """
    from . import style
    from .plots import Plot, Table

    with_area = has_area(pts)
    front = pareto_front(objectives(pts, with_area))
    e_unit, e_scale = style.energy_unit(max(p.energy_j for p in pts) * 1e12)
    speed = [p.speed for p in pts]
    energy = [p.energy_j * 1e12 / e_scale for p in pts]
    size = [float(p.lut if with_area else p.multipliers) for p in pts]
    fig = _figure(12.8, 4.8)
    ax_a, ax_e = fig.subplots(1, 2)
    sc = ax_a.scatter(size, speed, c=energy, cmap="viridis", s=18, zorder=2, label="points")
    ring = {"s": 70, "facecolors": "none", "edgecolors": "black", "linewidths": 1.2,
            "zorder": 3, "label": "Pareto front"}
    fa = ax_a.scatter([size[i] for i in front], [speed[i] for i in front], **ring)
    ax_a.set_xlabel("area (LUTs, estimated)" if with_area
                    else "multipliers (rows x cols x macs_per_pe; no area estimate)")
    ax_a.set_ylabel("speed (iterations / s)")
    ax_a.set_title(f"speed vs {'area' if with_area else 'array size'} (colour: energy)")
    fig.colorbar(sc, ax=ax_a, label=f"energy per iteration ({e_unit})")
    se = ax_e.scatter(energy, speed, s=18, color="#4e79a7", zorder=2, label="points")
    fe = ax_e.scatter([energy[i] for i in front], [speed[i] for i in front], **ring)
    ax_e.set_xlabel(f"energy per iteration ({e_unit})")
    ax_e.set_ylabel("speed (iterations / s)")
    ax_e.set_title("speed vs energy")
    over = [i for i, p in enumerate(pts) if fits_xcvu9p(p) is False]
    misfit = {}
    if over:
        cross = {"marker": "x", "s": 60, "color": "#d62728", "linewidths": 1.6, "zorder": 4,
                 "label": f"does not fit the XCVU9P ({len(over)})"}
        misfit["area"] = ax_a.scatter([size[i] for i in over], [speed[i] for i in over],
                                      **cross)
        misfit["energy"] = ax_e.scatter([energy[i] for i in over], [speed[i] for i in over],
                                        **cross)
    for ax in (ax_a, ax_e):
        ax.legend(loc="best")
    extra = f", {failed} failed (not shown)" if failed else ""
    fig.suptitle(f"{workload}: {len(pts)} design points{extra}, {len(front)} on the Pareto "
                 f"front (time, energy, {'area' if with_area else 'multipliers'})")

    axes = _axis_names(pts)
    t_unit, t_scale = time_unit(max(p.seconds for p in pts))
    rows = []
    for i in sorted(front, key=lambda i: (pts[i].seconds, pts[i].energy_j, size[i], pts[i].idx)):
        p = pts[i]
        rows.append((p.idx, *(_value_text(p.params.get(a, "–")) for a in axes),
                     p.total_cycles, p.seconds / t_scale, p.energy_j * 1e12 / e_scale,
                     p.speedup, p.lut, p.ff, p.dsp, p.bram, p.multipliers, p.key[:12]))
    table = Table(("point", *axes, "cycles", f"time ({t_unit})", f"energy ({e_unit})",
                   "speedup vs dense (×)", "LUT", "FF", "DSP", "BRAM (RAMB36)",
                   "multipliers", "key"), tuple(rows))
    caption = (f"Each dot is one successful design point of {workload}. Left: speed "
               f"(1 / time per iteration) against "
               + ("estimated LUTs" if with_area else
                  "the multiplier count (rows × cols × macs_per_pe), standing in for area "
                  "because not every point has a resource estimate")
               + ", coloured by energy per iteration. Right: speed against energy. Ringed: "
               "the Pareto front over time, energy and "
               + ("LUTs" if with_area else "multipliers")
               + " together (no other point is as fast, as frugal and as small, and "
               "strictly better in one), so a ringed point may look dominated in one "
               "two-dimensional view. The table lists the front, fastest first."
               + (f" {failed} failed point(s) of the store are not plotted." if failed else "")
               + (f" Red crosses: {len(over)} point(s) whose estimated LUT, FF, DSP or RAMB36 "
                  "count exceeds the XCVU9P's capacity (they cannot be built on the "
                  "VCU1525)." if over else ""))
    return Plot(name=f"sweep_pareto_{_slug(workload)}", title=f"{workload}: Pareto front",
                caption=caption, figure=fig, table=table,
                artists={"area": sc, "area_front": fa, "energy": se, "energy_front": fe,
                         "energy_scale": e_scale, "front": [pts[i].key for i in front],
                         "misfit": misfit, "misfit_keys": [pts[i].key for i in over]})


def sensitivity_plot(workload: str, pts: Sequence[SweepPoint]) -> Any:
    """Time and energy per iteration against each axis that varies among ``pts`` (median
    over the points with each value, min-max band), or ``None`` when no axis varies.

    Artists: ``("median", axis, metric)`` a Line2D of (x, median in the axis unit),
    ``("range", axis, metric)`` the min-max band (a PolyCollection), ``("x", axis)`` the
    axis values in plotted order (a non-numeric axis is plotted at 0, 1, ...), and
    ``("scale", metric)`` the seconds or pJ per axis unit; ``metric`` is ``"seconds"`` or
    ``"energy_j"``.
    """
    from . import style
    from .plots import Plot, Table

    axes = varying_axes(pts)
    if not axes:
        return None
    t_unit, t_scale = time_unit(max(p.seconds for p in pts))
    e_unit, e_scale = style.energy_unit(max(p.energy_j for p in pts) * 1e12)
    metrics = (("seconds", 1.0 / t_scale, f"time per iteration ({t_unit})", "#4e79a7"),
               ("energy_j", 1e12 / e_scale, f"energy per iteration ({e_unit})", "#e15759"))
    n = len(axes)
    fig = _figure(max(4.0 * n, 6.4), 6.4)
    axs = fig.subplots(2, n, squeeze=False)
    artists: dict[Any, Any] = {("scale", "seconds"): t_scale, ("scale", "energy_j"): e_scale}
    rows = []
    for j, axis in enumerate(axes):
        data = sensitivity(pts, axis)
        values = [v for v, _ in data]
        numeric = all(_sort_key(v)[0] == 0 for v in values)
        xs = [float(v) for v in values] if numeric else [float(i) for i in range(len(values))]
        artists[("x", axis)] = values
        for i, (metric, factor, label, color) in enumerate(metrics):
            ax = axs[i][j]
            lo = [s[metric][0] * factor for _, s in data]
            med = [s[metric][1] * factor for _, s in data]
            hi = [s[metric][2] * factor for _, s in data]
            artists[("range", axis, metric)] = ax.fill_between(
                xs, lo, hi, color=color, alpha=0.2, label="min-max over the other axes")
            (artists[("median", axis, metric)],) = ax.plot(
                xs, med, marker="o", color=color, label="median over the other axes")
            if numeric and min(values) > 0 and max(values) / min(values) >= 16:
                ax.set_xscale("log", base=2)
            if not numeric or len(values) <= 12:  # a tick at each value, labelled with it
                ax.set_xticks(xs, [_value_text(v) for v in values])
                ax.set_xticks([], minor=True)
            ax.set_xlabel(axis)
            if j == 0:
                ax.set_ylabel(label)
            if j == 0:
                ax.legend(loc="best", fontsize="small")
        groups: dict[Any, int] = {}
        for p in pts:
            if axis in p.params:
                k = _hashable(p.params[axis])
                groups[k] = groups.get(k, 0) + 1
        for v, s in data:
            rows.append((axis, _value_text(v), groups[v],
                         *(x / t_scale for x in (s["seconds"][1], s["seconds"][0],
                                                 s["seconds"][2])),
                         *(x * 1e12 / e_scale for x in (s["energy_j"][1], s["energy_j"][0],
                                                        s["energy_j"][2]))))
    fig.suptitle(f"{workload}: time and energy against each swept axis "
                 f"(median and range over the other axes)")
    table = Table(("axis", "value", "points", f"median time ({t_unit})", f"min time ({t_unit})",
                   f"max time ({t_unit})", f"median energy ({e_unit})",
                   f"min energy ({e_unit})", f"max energy ({e_unit})"), tuple(rows))
    single = [a for a in _axis_names(pts) if a not in axes]
    caption = ("One column per swept axis: top, time per iteration; bottom, energy per "
               "iteration, against the axis value. The other axes are marginalised: the line "
               "is the median over every successful point with that value, the band their "
               "minimum to maximum. Non-numeric axes are shown in sorted order; an axis "
               "spanning 16× or more is on a log scale."
               + (f" Axes with a single value here are left out: {', '.join(single)}."
                  if single else ""))
    return Plot(name=f"sweep_sensitivity_{_slug(workload)}",
                title=f"{workload}: sensitivity to each axis", caption=caption, figure=fig,
                table=table, artists=artists)


def sweep_plots(points: Sequence[SweepPoint], failed: Sequence[FailedPoint] = ()
                ) -> list[Any]:
    """Every figure of the sweep, workloads in store order: Pareto, then sensitivity."""
    import matplotlib

    from . import style

    plots = []
    with matplotlib.rc_context(style.RC):
        for wl in dict.fromkeys(p.workload for p in points):
            pts = [p for p in points if p.workload == wl]
            n_failed = sum(1 for f in failed if f.workload == wl)
            plots.append(pareto_plot(wl, pts, n_failed))
            sens = sensitivity_plot(wl, pts)
            if sens is not None:
                plots.append(sens)
    return plots


def _rendered(plots: Sequence[Any]) -> list[tuple[str, bytes]]:
    from nmsat.log import status

    from .html import table_csv
    from .plots import render

    out = []
    for i, p in enumerate(plots, 1):
        status("sweep report: rendering figure %d of %d (%s)", i, len(plots), p.name)
        out += [(f"{p.name}.{fmt}", render(p, fmt)) for fmt in FORMATS]
    return out + [(f"{p.name}.csv", table_csv(p.table)) for p in plots]


def _loaded(store_path: str | Path) -> tuple[list[SweepPoint], list[FailedPoint]]:
    from . import ReportError

    points, failed = load_store(store_path)
    if not points:
        why = (f"all {len(failed)} points failed" if failed else "it holds no points")
        raise ReportError(f"{store_path}: no successful sweep point to report ({why})")
    return points, failed


def sweep_figures(store_path: str | Path, out_dir: str | Path) -> list[Path]:
    """Draw the Pareto and sensitivity figures of the store into ``out_dir`` (created if
    missing) and return the written files. Raises ``ValueError`` (a ``ReportError``) if the
    store holds no successful point."""
    points, failed = _loaded(store_path)
    files = _rendered(sweep_plots(points, failed))
    return _write_all(Path(out_dir), files)


def build_sweep_report(store_path: str | Path, out_dir: str | Path) -> Path:
    """Write the sweep's figures (PNG and SVG) and ``index.html`` into ``out_dir``.

    The store is read and checked and every figure drawn before the first file is written;
    then every file is staged beside its target and all are renamed into place together,
    ``index.html`` last. A bad store, a store without a successful point or an output
    that cannot be written raises (``ReportError``, ``SweepError``, ``OutputError``) and
    leaves ``out_dir`` as it was (a folder this call created is removed again).
    """
    from . import ReportError, html

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ReportError(f"{out} exists and is not a folder")
    points, failed = _loaded(store_path)
    plots = sweep_plots(points, failed)
    from nmsat.simulator.sweep import export_rows

    from .codesign import section_html

    summary, failed_table = _summary_table(points, failed), _failed_table(failed)
    page = html.render_sweep_page(Path(store_path).name, summary, failed_table, plots,
                                  section_html(export_rows(store_path)))
    tables = [("summary.csv", html.table_csv(summary))]
    if failed_table.rows:
        tables.append(("failed.csv", html.table_csv(failed_table)))
    files = _rendered(plots) + tables + [("index.html", page.encode("utf-8"))]
    return _write_all(out, files)[-1]


def _write_all(out: Path, files: list[tuple[str, bytes]]) -> list[Path]:
    """Write every file into ``out`` all or nothing (see :func:`nmsat.fileio.atomic_write_many`)."""
    from nmsat.errors import OutputError
    from nmsat.fileio import atomic_write_many

    if out.exists() and not out.is_dir():
        raise OutputError(f"{out} exists and is not a folder")
    missing = [d for d in (out, *out.parents) if not d.exists()]
    blocker = next((a for a in out.parents if a.exists() and not a.is_dir()), None)
    if blocker is not None:
        raise OutputError(f"cannot create report folder {out}: {blocker} is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create report folder {out}: {e.strerror or e}") from None
    targets = [out / name for name, _ in files]
    try:
        atomic_write_many([(t, data) for t, (_, data) in zip(targets, files)])
    except BaseException:
        for d in missing:  # innermost first; only folders this call made, only if empty
            try:
                d.rmdir()
            except OSError:
                break
        raise
    return targets


def _summary_table(points: Sequence[SweepPoint], failed: Sequence[FailedPoint]) -> Any:
    from . import style
    from .plots import Table

    t_unit, t_scale = time_unit(max(p.seconds for p in points))
    e_unit, e_scale = style.energy_unit(max(p.energy_j for p in points) * 1e12)
    rows = []
    for wl in dict.fromkeys([p.workload for p in points] + [f.workload for f in failed]):
        pts = [p for p in points if p.workload == wl]
        n_failed = sum(1 for f in failed if f.workload == wl)
        front = len(pareto_front(objectives(pts, has_area(pts)))) if pts else 0
        best = min(pts, key=lambda p: (p.seconds, p.energy_j, p.idx)) if pts else None
        rows.append((wl, len(pts) + n_failed, len(pts), n_failed, front,
                     ", ".join(varying_axes(pts)) or "–",
                     None if best is None else best.seconds / t_scale,
                     None if best is None else best.speedup,
                     None if not pts else min(p.energy_j for p in pts) * 1e12 / e_scale))
    return Table(("workload", "points", "ok", "failed", "on the Pareto front", "swept axes",
                  f"fastest ({t_unit})", "fastest's speedup vs dense (×)",
                  f"least energy ({e_unit})"), tuple(rows))


def _failed_table(failed: Sequence[FailedPoint]) -> Any:
    from .plots import Table

    return Table(("point", "workload", "axis values", "error", "key"),
                 tuple((f.idx, f.workload,
                        ", ".join(f"{k}={_value_text(v)}" for k, v in f.params.items()),
                        f.error, f.key[:12]) for f in failed))
