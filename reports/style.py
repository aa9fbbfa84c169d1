"""The report's visual vocabulary, defined once: colours, sizes, labels and units.

Every figure takes its colours from here, so the same method, phase, energy component,
stall cause or unit has the same colour in every figure of every report. The palettes are
colour-blind safe (Okabe-Ito for methods; Tableau-10 tones elsewhere).

A name the tables below do not know (say a new stall cause the simulator adds later) gets
a colour from :data:`EXTRA` picked by a checksum of the name, so it is still the same in
every figure and every run; adding it to the right table gives it a chosen colour.
"""

from __future__ import annotations

import zlib

from matplotlib.colors import to_hex, to_rgb

from nmsat.types import NM

__all__ = ["BOUND_STYLES", "COMPONENT_COLORS", "COMPONENT_LABELS", "CYCLE_UNITS", "DPI",
           "ENERGY_UNITS", "EXTRA", "METHOD_COLORS", "METHOD_LABELS", "PHASE_COLORS",
           "PHASE_LABELS", "RC", "RUN_COLORS", "STALL_COLORS", "STALL_EXPLANATIONS", "STALL_LABELS",
           "TRACE_VIEW_STYLES", "component_color", "component_label", "cycle_unit", "energy_unit",
           "method_color", "method_label", "phase_color", "phase_label", "pick_unit", "run_color",
           "series_color", "stall_color", "stall_label"]

METHOD_COLORS: dict[str, str] = {
    "dense": "#6e6e6e",
    "srste": "#e69f00",
    "bdwp": "#0072b2",
}
"""Training method -> colour (bars, markers and curves of that method)."""

METHOD_LABELS: dict[str, str] = {"dense": "dense", "srste": "SR-STE", "bdwp": "BDWP"}

PHASE_COLORS: dict[str, str] = {
    "ff": "#4e79a7",
    "bp": "#f28e2b",
    "wg": "#59a14f",
    "wu": "#b07aa1",
    "sore": "#e15759",
    "vector": "#9c755f",
}
"""Phase -> colour (phase breakdown stacks and timeline bars). ``vector`` is the time the
tensor engine waited for the vector engine (normalisation, pooling, softmax)."""

PHASE_LABELS: dict[str, str] = {"ff": "FF (forward)", "bp": "BP (data gradient)",
                                "wg": "WG (weight gradient)", "wu": "WU (weight update)",
                                "sore": "SORE (mask generation)",
                                "vector": "vector (norm, pool, softmax)"}

COMPONENT_COLORS: dict[str, str] = {
    "engine": "#4e79a7",
    "act_buffer": "#f28e2b",
    "weight_buffer": "#ffbe7d",
    "output_buffer": "#edc948",
    "sore": "#76b7b2",
    "vector": "#59a14f",
    "dram": "#e15759",
    "static": "#bab0ac",
}
"""Energy unit (``nmsat.simulator.energy.UNITS``) -> colour."""

COMPONENT_LABELS: dict[str, str] = {"engine": "PE array", "act_buffer": "activation buffer",
                                    "weight_buffer": "weight buffer",
                                    "output_buffer": "output buffer", "sore": "SORE",
                                    "vector": "vector / weight update", "dram": "DRAM",
                                    "static": "static"}

STALL_COLORS: dict[str, str] = {
    "memory": "#d37295",
    "sore": "#e15759",
    "vector": "#9c755f",
    "dependency": "#499894",
}
"""Stall cause -> colour (per-layer stall stacks and stalled intervals in the timeline)."""

STALL_LABELS: dict[str, str] = {"memory": "memory (operand load/store)",
                                "sore": "SORE (mask not ready)",
                                "vector": "vector engine (norm, pool, softmax)",
                                "dependency": "dependency (other unit, barrier)"}

STALL_EXPLANATIONS: dict[str, str] = {
    "memory": "The engine had an instruction ready but an operand tile was still being "
              "loaded from DRAM, or the output half it writes was still being stored: DRAM "
              "or DMA bandwidth sets the pace (more channels, larger tiles or double "
              "buffering help).",
    "sore": "The engine waited for the SORE to finish the N:M mask (and compressed "
            "weights) of the layer it is about to run; pre-generation hides it.",
    "vector": "The engine waited for the vector engine: normalisation, pooling, softmax, "
              "activation or a residual add that produces the next layer's input. These "
              "cost the same in dense and sparse runs, so they cap the N:M speedup (more "
              "vector lanes help). Charged to the layer that waited (whose input the op "
              "makes) and shown as the 'vector' phase.",
    "dependency": "The engine waited for another unit's result that is neither a load, a "
                  "mask nor vector work: a weight update it must not overtake, or a "
                  "barrier between phases.",
}
"""Stall cause -> what it means and what helps; printed on the report page."""

TRACE_VIEW_STYLES: dict[str, str] = {"ff": "-", "bp": "--"}
"""Mask view -> line style in the flip-rate figure (colour is the method's)."""

EXTRA: tuple[str, ...] = ("#8cd17d", "#b6992d", "#f1ce63", "#86bcb6", "#ff9d9a", "#79706e",
                          "#d4a6c8", "#a0cbe8", "#ffbe7d", "#fabfd2")

RUN_COLORS: tuple[str, ...] = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2",
                               "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac")
"""Tableau 10: one colour per run where runs of different designs are compared."""


def run_color(index: int) -> str:
    """Colour of the ``index``-th run of a comparison (Tableau 10, then repeating)."""
    return RUN_COLORS[index % len(RUN_COLORS)]


BOUND_STYLES: dict[str, dict[str, object]] = {
    "bdwp": {"color": "#000000", "linestyle": "-", "linewidth": 2.0},
    "srste": {"color": "#000000", "linestyle": ":", "linewidth": 2.0},
}
"""Method -> line style of its speedup bound in the speedup figure."""

# Pattern -> how far (0..1) the method colour is mixed with white, so several N:M patterns
# of one method are told apart while keeping the method's hue. Sparser patterns are darker.
_NM_TINT: dict[str, float] = {"1:8": 0.0, "1:4": 0.15, "2:8": 0.0, "2:4": 0.35, "4:8": 0.25,
                              "1:16": 0.0, "2:16": 0.1, "4:16": 0.2, "1:2": 0.6}

RC: dict[str, object] = {
    "font.size": 10,
    "axes.titlesize": 12,
    "axes.labelsize": 10,
    "legend.fontsize": 9,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.axisbelow": True,
    "axes.formatter.useoffset": False,  # never an axis offset like "1e6": units instead
    "axes.formatter.limits": (-4, 6),  # plain numbers up to a million before 1e notation
    "svg.hashsalt": "nmsat",  # reproducible ids in the SVG output
    "svg.fonttype": "path",  # glyphs as paths: the SVG needs no installed fonts
    "font.family": "DejaVu Sans",  # ships with matplotlib, so output is the same everywhere
}
"""Matplotlib settings every figure is drawn under (with ``matplotlib.rc_context``)."""

DPI = 110
"""PNG resolution."""


def _lookup(table: dict[str, str], name: str) -> str:
    if name in table:
        return table[name]
    return EXTRA[zlib.crc32(name.encode("utf-8")) % len(EXTRA)]


def method_color(method: str) -> str:
    return _lookup(METHOD_COLORS, method)


def series_color(method: str, nm: str) -> str:
    """Colour of a run of ``method`` at pattern ``nm``: the method's hue, tinted by pattern."""
    base = method_color(method)
    if method == "dense":
        return base
    key = str(NM.parse(nm))
    tint = _NM_TINT.get(key, 0.5 * NM.parse(nm).density)
    r, g, b = to_rgb(base)
    return to_hex((r + (1 - r) * tint, g + (1 - g) * tint, b + (1 - b) * tint))


def phase_color(phase: str) -> str:
    return _lookup(PHASE_COLORS, phase)


def component_color(component: str) -> str:
    return _lookup(COMPONENT_COLORS, component)


def stall_color(cause: str) -> str:
    return _lookup(STALL_COLORS, cause)


def method_label(method: str) -> str:
    return METHOD_LABELS.get(method, method)


def phase_label(phase: str) -> str:
    return PHASE_LABELS.get(phase, phase)


def component_label(component: str) -> str:
    return COMPONENT_LABELS.get(component, component.replace("_", " "))


def stall_label(cause: str) -> str:
    return STALL_LABELS.get(cause, cause)


ENERGY_UNITS: tuple[tuple[str, float], ...] = (("pJ", 1.0), ("nJ", 1e3), ("µJ", 1e6),
                                               ("mJ", 1e9), ("J", 1e12))


def pick_unit(value: float, units: tuple[tuple[str, float], ...]) -> tuple[str, float]:
    """The largest (name, scale) of ``units`` (ascending scales) with ``value >= scale``,
    else the smallest."""
    chosen = units[0]
    for name, scale in units:
        if value >= scale:
            chosen = (name, scale)
    return chosen


def energy_unit(max_pj: float) -> tuple[str, float]:
    """The unit (name, pJ per unit) that shows ``max_pj`` as a number from 1 to 1,000."""
    return pick_unit(max_pj, ENERGY_UNITS)


CYCLE_UNITS: tuple[tuple[str, float], ...] = (("cycles", 1.0), ("thousand cycles", 1e3),
                                              ("million cycles", 1e6),
                                              ("billion cycles", 1e9))


def cycle_unit(max_cycles: float) -> tuple[str, float]:
    """The unit (name, cycles per unit) that shows ``max_cycles`` as a number below 1,000."""
    chosen = CYCLE_UNITS[0]
    for name, scale in CYCLE_UNITS:
        if max_cycles >= scale:
            chosen = (name, scale)
    return chosen
