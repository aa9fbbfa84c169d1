"""Figures of a design-space sweep, read from its result store (``nmsat sweep``).

:func:`sweep_figures` writes, per workload, as PNG and SVG:

* ``sweep_pareto_<workload>``: speed (training iterations or inference passes per second)
  against area (LUTs, from the resource estimate) and against energy per iteration; the
  points on the Pareto front (no other point is at least as fast, as small and as frugal,
  and better in one) are ringed (:func:`pareto_front`). Without a resource estimate the
  multiplier count (rows x cols x macs_per_pe) stands in for area, labelled as such.
* ``sweep_sensitivity_<workload>``: one panel per swept axis: time and energy per iteration
  against the axis value, the median over all other axes with their min-max range.

Only successful points are plotted; failed ones are counted in the titles.
"""

from __future__ import annotations

import io
import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FORMATS: tuple[str, ...] = ("png", "svg")


@dataclass(frozen=True)
class SweepPoint:
    """What the figures need of one stored point."""

    key: str
    workload: str
    params: dict[str, Any]
    seconds: float
    energy_j: float
    lut: int | None
    multipliers: int

    @property
    def speed(self) -> float:
        """Iterations per second."""
        return 1.0 / self.seconds


def load_points(store_path: str | Path) -> tuple[list[SweepPoint], int]:
    """(successful points, number of failed points) of the store, in spec order."""
    from nmsat.simulator.sweep import export_rows

    ok, failed = [], 0
    for r in export_rows(store_path):
        if r["status"] != "ok":
            failed += 1
            continue
        a = r["config"]["array"]
        ok.append(SweepPoint(r["key"], r["workload"], r["params"], r["seconds"],
                             r["energy_pj"] * 1e-12, r["lut"],
                             a["rows"] * a["cols"] * a["macs_per_pe"]))
    return ok, failed


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


def _objectives(points: Sequence[SweepPoint], with_area: bool) -> list[tuple[float, ...]]:
    # minimise time (= maximise speed), energy and hardware: LUTs when estimated, else the
    # multiplier count as a plain structural measure of size
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


def sweep_figures(store_path: str | Path, out_dir: str | Path) -> list[Path]:
    """Draw the Pareto and sensitivity figures of the store into ``out_dir`` (created if
    missing) and return the written files. Raises ``ValueError`` if the store holds no
    successful point."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from nmsat.util import atomic_write_bytes

    points, failed = load_points(store_path)
    if not points:
        raise ValueError(f"{store_path}: no successful sweep point to plot "
                         f"({failed} failed)")
    out = Path(out_dir)
    figures: list[tuple[str, Any]] = []
    workloads = list(dict.fromkeys(p.workload for p in points))
    for wl in workloads:
        pts = [p for p in points if p.workload == wl]
        figures.append((f"sweep_pareto_{_slug(wl)}", _pareto_figure(plt, wl, pts, failed)))
        axes = [a for a in _axis_names(pts)
                if len({_hashable(p.params.get(a)) for p in pts}) > 1]
        if axes:
            figures.append((f"sweep_sensitivity_{_slug(wl)}",
                            _sensitivity_figure(plt, wl, pts, axes)))
    written = []
    for name, fig in figures:
        for fmt in FORMATS:
            buf = io.BytesIO()
            fig.savefig(buf, format=fmt, dpi=120, bbox_inches="tight",
                        metadata={"Date": None} if fmt == "svg" else None)
            path = out / f"{name}.{fmt}"
            atomic_write_bytes(path, buf.getvalue())
            written.append(path)
        plt.close(fig)
    return written


def _pareto_figure(plt: Any, workload: str, pts: list[SweepPoint], failed: int) -> Any:
    with_area = all(p.lut is not None for p in pts)
    front = set(pareto_front(_objectives(pts, with_area)))
    speed = [p.speed for p in pts]
    energy_mj = [p.energy_j * 1e3 for p in pts]
    size = [p.lut if with_area else p.multipliers for p in pts]
    fig, (ax_a, ax_e) = plt.subplots(1, 2, figsize=(12.8, 4.8))
    sc = ax_a.scatter(size, speed, c=energy_mj, cmap="viridis", s=18, zorder=2)
    ax_a.scatter([size[i] for i in sorted(front)], [speed[i] for i in sorted(front)], s=70,
                 facecolors="none", edgecolors="black", linewidths=1.2, zorder=3,
                 label="Pareto front")
    ax_a.set_xlabel("area (LUTs, estimated)" if with_area
                    else "multipliers (rows x cols x macs_per_pe; no area estimate)")
    ax_a.set_ylabel("speed (iterations / s)")
    ax_a.set_title(f"speed vs {'area' if with_area else 'array size'} (colour: energy)")
    fig.colorbar(sc, ax=ax_a, label="energy per iteration (mJ)")
    ax_e.scatter(energy_mj, speed, s=18, color="#4e79a7", zorder=2, label="points")
    ax_e.scatter([energy_mj[i] for i in sorted(front)], [speed[i] for i in sorted(front)],
                 s=70, facecolors="none", edgecolors="black", linewidths=1.2, zorder=3,
                 label="Pareto front")
    ax_e.set_xlabel("energy per iteration (mJ)")
    ax_e.set_ylabel("speed (iterations / s)")
    ax_e.set_title("speed vs energy")
    for ax in (ax_a, ax_e):
        ax.legend(loc="best")
        ax.grid(True, alpha=0.3)
    extra = f", {failed} failed" if failed else ""
    fig.suptitle(f"{workload}: {len(pts)} design points{extra}, {len(front)} on the Pareto "
                 f"front (speed, energy, {'area' if with_area else 'multipliers'})")
    fig.tight_layout()
    return fig


def _sensitivity_figure(plt: Any, workload: str, pts: list[SweepPoint], axes: list[str]) -> Any:
    n = len(axes)
    fig, axs = plt.subplots(2, n, figsize=(max(4.0 * n, 6.0), 6.4), squeeze=False)
    for j, axis in enumerate(axes):
        data = sensitivity(pts, axis)
        values = [v for v, _ in data]
        numeric = all(_sort_key(v)[0] == 0 for v in values)
        xs = values if numeric else list(range(len(values)))
        for i, (metric, scale, label, color) in enumerate(
                (("seconds", 1e3, "time per iteration (ms)", "#4e79a7"),
                 ("energy_j", 1e3, "energy per iteration (mJ)", "#e15759"))):
            ax = axs[i][j]
            lo = [s[metric][0] * scale for _, s in data]
            med = [s[metric][1] * scale for _, s in data]
            hi = [s[metric][2] * scale for _, s in data]
            ax.fill_between(xs, lo, hi, color=color, alpha=0.2, label="min-max over other axes")
            ax.plot(xs, med, marker="o", color=color, label="median")
            if not numeric:
                ax.set_xticks(xs, [str(v) for v in values])
            if numeric and min(values) > 0 and max(values) / min(values) >= 16:
                ax.set_xscale("log", base=2)
            ax.set_xlabel(axis)
            if j == 0:
                ax.set_ylabel(label)
            ax.grid(True, alpha=0.3)
            if i == 0 and j == 0:
                ax.legend(loc="best", fontsize="small")
    fig.suptitle(f"{workload}: sensitivity of time and energy to each swept axis")
    fig.tight_layout()
    return fig
