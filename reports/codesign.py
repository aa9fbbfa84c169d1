"""Co-design ranking of a sweep store: which hardware design is best over several workloads.

A *design* is one combination of axis values, simulated on every workload of the sweep
(``examples/codesign-vcu1525.toml``: five models). Designs with a failed or missing
workload are left out. Each design is ranked by the **mean** time and the **mean** energy
of one iteration over the workloads; the Pareto front is over mean time, mean energy and
area (estimated LUTs). The *baseline* is the design whose config equals the preset it is
named after (e.g. ``vcu1525`` itself, when the grid contains it).

Why a design wins is read from the system model's accounting of the tensor engine, summed
over the workloads in seconds: the time it computes (busy), the time it waits for another
unit by cause (``dependency``: the vector engine's normalisation, pooling and weight
updates and the barriers before them; ``memory``: DRAM transfers; ``sore``: mask
generation), and the tail after its last instruction (units still finishing). The
component that shrinks most against the baseline is the one the winner's changes relieve.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["PARTS", "Design", "Verdict", "baseline", "designs", "front", "section_html", "verdict",
           "winners"]

PARTS: tuple[tuple[str, str], ...] = (
    ("compute", "engine computing"),
    ("dependency", "engine waiting for the vector engine / barriers"),
    ("memory", "engine waiting for DRAM"),
    ("sore", "engine waiting for the SORE"),
    ("tail", "after the engine's last instruction"),
)
"""Components of an iteration's time, as (name, description)."""


@dataclass(frozen=True)
class Design:
    """One design over all workloads of the sweep."""

    params: tuple[tuple[str, Any], ...]
    config: Mapping[str, Any]
    seconds: Mapping[str, float]  # per workload
    energy_j: Mapping[str, float]
    parts: Mapping[str, float] | None  # seconds per PARTS name, summed over workloads
    # (None: a result without the engine's accounting, e.g. a store of another evaluator)
    lut: int | None
    first_idx: int

    @property
    def mean_seconds(self) -> float:
        return sum(self.seconds.values()) / len(self.seconds)

    @property
    def mean_energy_j(self) -> float:
        return sum(self.energy_j.values()) / len(self.energy_j)


def _parts(result: Mapping[str, Any], cycle_s: float) -> dict[str, float] | None:
    if not {"total_cycles", "unit_busy_cycles", "unit_stall_cycles"} <= set(result):
        return None
    total = result["total_cycles"]
    busy = result["unit_busy_cycles"].get("engine", 0)
    stall = result["unit_stall_cycles"].get("engine", {})
    out = {"compute": busy * cycle_s}
    for cause in ("dependency", "memory", "sore"):
        out[cause] = stall.get(cause, 0) * cycle_s
    out["tail"] = (total - busy - sum(stall.get(c, 0) for c in ("dependency", "memory",
                                                                   "sore"))) * cycle_s
    return out


def designs(rows: Sequence[Mapping[str, Any]]) -> tuple[list[Design], tuple[str, ...]]:
    """The complete designs of a store's rows (:func:`nmsat.simulator.sweep.export_rows`)
    in spec order, and the workloads they cover."""
    workloads = tuple(dict.fromkeys(r["workload"] for r in rows))
    by: dict[tuple, list[Mapping[str, Any]]] = {}
    for r in rows:
        key = tuple((k, _hashable(v)) for k, v in r["params"].items())
        by.setdefault(key, []).append(r)
    out = []
    for key, rs in by.items():
        ok = {r["workload"]: r for r in rs if r["status"] == "ok"}
        if set(ok) != set(workloads):
            continue
        cycle_s = 1e-6 / rs[0]["config"]["clock_mhz"]
        parts: dict[str, float] | None = {name: 0.0 for name, _ in PARTS}
        for r in ok.values():
            got = _parts(r["result"] or {}, cycle_s)
            if got is None or parts is None:
                parts = None
                continue
            for name, v in got.items():
                parts[name] += v
        out.append(Design(key, rs[0]["config"], {w: ok[w]["seconds"] for w in workloads},
                          {w: ok[w]["energy_pj"] * 1e-12 for w in workloads}, parts,
                          rs[0]["lut"], min(r["idx"] for r in rs)))
    out.sort(key=lambda d: d.first_idx)
    return out, workloads


def _hashable(v: Any) -> Any:
    return tuple(v) if isinstance(v, list) else v


def baseline(ds: Sequence[Design]) -> Design | None:
    """The design whose config equals the preset it is named after, if any."""
    from nmsat import config as nmconfig
    from nmsat.errors import NmsatError

    for d in ds:
        try:
            preset = nmconfig.to_dict(nmconfig.preset(d.config["name"]))
        except NmsatError:
            continue
        if preset == d.config:
            return d
    return None


def front(ds: Sequence[Design]) -> list[Design]:
    """Designs no other design matches or beats in mean time, mean energy and LUTs (the
    multiplier count where a design has no LUT estimate), fastest first."""
    from .sweep_figures import pareto_front

    def size(d: Design) -> float:
        if all(x.lut is not None for x in ds):
            return float(d.lut)  # type: ignore[arg-type]
        a = d.config["array"]
        return float(a["rows"] * a["cols"] * a["macs_per_pe"])

    idx = pareto_front([(d.mean_seconds, d.mean_energy_j, size(d)) for d in ds])
    return sorted((ds[i] for i in idx), key=lambda d: (d.mean_seconds, d.first_idx))


@dataclass(frozen=True)
class Verdict:
    """What a design changes against the baseline and why it is faster or cheaper."""

    design: Design
    changes: tuple[tuple[str, Any, Any], ...]  # (axis, baseline value, design value)
    speedup: float  # baseline mean time / design mean time
    energy_ratio: float  # design mean energy / baseline mean energy
    per_workload: Mapping[str, float]  # speedup per workload
    deltas: Mapping[str, float] | None  # seconds saved per PARTS name (positive: shrank)
    main_part: str | None  # the part that shrank most

    def why(self) -> str:
        desc = dict(PARTS)
        if self.deltas is None or self.main_part is None:
            return "the stored results have no engine accounting to tell"
        saved = self.deltas[self.main_part]
        total = sum(self.design.seconds.values())
        base_total = total * self.speedup
        if saved <= 0:
            return "no component of the iteration shrinks against the baseline"
        return (f"{desc[self.main_part]} shrinks by {saved:.3g} s over the workloads "
                f"({saved / base_total:.0%} of the baseline's summed time)")


def verdict(d: Design, base: Design) -> Verdict:
    bp = dict(base.params)
    changes = tuple((k, bp.get(k), v) for k, v in d.params if bp.get(k) != v)
    deltas = main = None
    if base.parts is not None and d.parts is not None:
        deltas = {name: base.parts[name] - d.parts[name] for name, _ in PARTS}
        main = max(deltas, key=lambda k: deltas[k])
    return Verdict(d, changes, base.mean_seconds / d.mean_seconds,
                   d.mean_energy_j / base.mean_energy_j,
                   {w: base.seconds[w] / d.seconds[w] for w in d.seconds}, deltas, main)


def winners(ds: Sequence[Design]) -> list[tuple[str, Design]]:
    """The best design per objective: least mean time and least mean energy (ties: the
    other objective, then the earlier design in spec order)."""
    fastest = min(ds, key=lambda d: (d.mean_seconds, d.mean_energy_j, d.first_idx))
    frugal = min(ds, key=lambda d: (d.mean_energy_j, d.mean_seconds, d.first_idx))
    return [("fastest (mean time per iteration)", fastest),
            ("least energy (mean energy per iteration)", frugal)]


def section_html(rows: Sequence[Mapping[str, Any]]) -> str | None:
    """The report page's co-design section, or ``None`` when the store has fewer than two
    workloads or two complete designs."""
    import html

    ds, workloads = designs(rows)
    if len(workloads) < 2 or len(ds) < 2:
        return None
    base = baseline(ds)
    esc = html.escape

    def params(d: Design) -> str:
        return ", ".join(f"{k}={_text(v)}" for k, v in d.params)

    out = [f'<p class="caption">{len(ds)} designs simulated on all of {", ".join(workloads)}; '
           "ranked by the mean time and mean energy of one iteration over these workloads. "
           + ("The baseline is the preset <code>" + esc(base.config["name"]) + "</code> "
              f"({esc(params(base))})." if base else "No design equals a preset, so there is "
              "no baseline to compare with.") + "</p>"]
    head = ["design", "mean time (s)", "mean energy (J)", "LUT"]
    if base:
        head += ["speedup vs baseline (×)", "energy vs baseline (×)"]
    body = []
    listed = [(label, d) for label, d in winners(ds)]
    if base:
        listed.append(("baseline", base))
    listed += [("Pareto front", d) for d in front(ds)]
    for label, d in listed:
        cells = [f"{esc(label)}: {esc(params(d))}", f"{d.mean_seconds:.4g}",
                 f"{d.mean_energy_j:.4g}", "–" if d.lut is None else f"{d.lut:,}"]
        if base:
            cells += [f"{base.mean_seconds / d.mean_seconds:.3f}",
                      f"{d.mean_energy_j / base.mean_energy_j:.3f}"]
        body.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    out.append("<table><thead><tr>" + "".join(f"<th>{esc(h)}</th>" for h in head)
               + "</tr></thead><tbody>" + "".join(body) + "</tbody></table>")
    if base:
        items = []
        for label, d in winners(ds):
            v = verdict(d, base)
            changes = "; ".join(f"{esc(k)} {_text(a)} → {_text(b)}" for k, a, b in v.changes)
            per = ", ".join(f"{esc(w)} {s:.2f}×" for w, s in v.per_workload.items())
            items.append(f"<li><b>{esc(label)}</b>: {changes or 'the baseline itself'}. "
                         f"{v.speedup:.3f}× faster on the mean ({per}), "
                         f"{v.energy_ratio:.3f}× the energy. Why: {esc(v.why())}.</li>")
        out.append("<ul>" + "".join(items) + "</ul>")
    return "\n".join(out)


def _text(v: Any) -> str:
    if isinstance(v, list | tuple):
        return "[" + ", ".join(map(str, v)) + "]"
    return str(v)
