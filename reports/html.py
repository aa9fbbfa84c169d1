"""The self-contained HTML page: every figure with the numbers behind it in tables.

The page has inline CSS, no scripts and no network references; images are the SVG files
next to it (relative links), each also linked as PNG. :func:`write_report` writes the
images first and ``index.html`` last, each file atomically, so a reader never sees a page
that refers to a missing or half-written image.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nmsat import __version__
from nmsat.errors import OutputError
from nmsat.fileio import atomic_write_many

from .compare import config_diff_table
from .figures import speedup_bound
from .plots import Plot, Run, Table
from .trace_figures import mask_stats

__all__ = ["CSS", "LONG_TABLE", "PHASE_EXPLANATIONS", "SORT_SCRIPT", "legend_html", "page_tables",
           "render_page", "render_sweep_page", "table_csv", "table_html", "write_report"]

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0;
       color: #1d1d1f; background: #fafafa; line-height: 1.45; }
header { background: #0b3954; color: white; padding: 1.2em 2em; }
header h1 { margin: 0 0 .2em 0; font-size: 1.6em; }
header p { margin: 0; opacity: .85; }
nav { padding: .6em 2em; background: #e8eef2; font-size: .95em; }
nav a { margin-right: 1.2em; color: #0b3954; }
main { padding: 1em 2em 3em 2em; max-width: 1500px; }
section { background: white; border: 1px solid #dde3e8; border-radius: 6px;
          padding: 1em 1.4em; margin: 1.2em 0; }
h2 { margin-top: .2em; font-size: 1.25em; color: #0b3954; }
h2.run { margin: 1.6em 0 0 0; font-size: 1.4em; border-bottom: 2px solid #0b3954; }
figure { margin: .5em 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption, .caption { color: #444; font-size: .92em; margin: .4em 0; max-width: 75em; }
.files { font-size: .85em; }
table { border-collapse: collapse; font-size: .85em; margin: .3em 0 .6em 0; max-width: 100%; }
th, td { border: 1px solid #d4dbe0; padding: .25em .5em; overflow-wrap: anywhere; }
th { background: #f0f4f7; text-align: left; position: sticky; top: 0; cursor: pointer; }
th[aria-sort="ascending"]::after { content: " ▲"; }
th[aria-sort="descending"]::after { content: " ▼"; }
.tablefiles { font-size: .8em; margin: .6em 0 0 0; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tbody tr:nth-child(even) { background: #f8fafb; }
details summary { cursor: pointer; color: #0b3954; margin: .4em 0; }
.scroll { max-height: 34em; overflow: auto; }
footer { color: #777; font-size: .85em; padding: 0 2em 2em 2em; }
.legend { display: flex; flex-wrap: wrap; gap: 0 3em; }
.legend > div { flex: 1 1 30em; }
.legend h3 { font-size: 1em; margin: .4em 0; }
dl { margin: 0; } dt { font-weight: 600; margin-top: .4em; }
dd { margin: 0 0 0 1.2em; color: #333; font-size: .92em; }
"""

SORT_SCRIPT = """
document.querySelectorAll("table.sortable").forEach(function (table) {
  table.querySelectorAll("th").forEach(function (th, col) {
    th.title = "sort by this column";
    th.addEventListener("click", function () {
      var asc = th.getAttribute("aria-sort") !== "ascending";
      table.querySelectorAll("th").forEach(function (h) { h.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", asc ? "ascending" : "descending");
      var body = table.tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      function key(r) {
        var c = r.cells[col];
        var v = c.getAttribute("data-v");
        return v === null ? c.textContent : parseFloat(v);
      }
      rows.sort(function (a, b) {
        var x = key(a), y = key(b);
        var d = (typeof x === "number" && typeof y === "number") ? x - y
          : String(x).localeCompare(String(y));
        return asc ? d : -d;
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
});
"""
"""Click a column heading to sort a table by it (numbers by value): the page's only
script, inline, no network."""

LONG_TABLE = 25
"""Tables with more rows than this are folded (still in the page) under a summary line."""


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if value == 0:
            return "0"
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        if abs(value) >= 1:
            return f"{value:.3f}".rstrip("0").rstrip(".") if abs(value) < 100 else f"{value:.1f}"
        return f"{value:.3g}"
    return str(value)


def table_csv(table: Table) -> bytes:
    """``table`` as CSV (full precision, empty cells for missing values)."""
    import csv
    import io

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(table.columns)
    for row in table.rows:
        w.writerow(["" if v is None else repr(v) if isinstance(v, float) else v
                    for v in row])
    return buf.getvalue().encode("utf-8")


def table_html(table: Table, csv: str | None = None) -> str:
    """``table`` as a sortable HTML table; numbers are right-aligned with thousands
    separators and sort by value. ``csv``: the file name of its CSV download."""
    head = "".join(f"<th>{html.escape(c)}</th>" for c in table.columns)
    body = []
    for row in table.rows:
        cells = []
        for v in row:
            if isinstance(v, (int, float)) and not isinstance(v, bool) and \
                    math.isfinite(v):
                cells.append(f'<td class="num" data-v="{v!r}">{html.escape(_fmt(v))}</td>')
            else:
                cells.append(f"<td>{html.escape(_fmt(v))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    inner = (f'<table class="sortable"><thead><tr>{head}</tr></thead><tbody>\n'
             + "\n".join(body) + "\n</tbody></table>")
    link = (f'<p class="tablefiles">Table: <a href="{html.escape(csv)}" download>'
            f"{html.escape(csv)}</a> (CSV)</p>" if csv else "")
    if len(table.rows) > LONG_TABLE:
        return (f"{link}<details><summary>Numbers ({len(table.rows)} rows)</summary>"
                f'<div class="scroll">{inner}</div></details>')
    return link + inner


def _runs_table(runs: Sequence[Run]) -> Table:
    rows = []
    for run in runs:
        r = run.result
        bound = speedup_bound(r.method, r.nm) if r.mode == "train" else None
        rows.append((run.label, str(r.config.get("name", "?")), r.mode, r.method,
                     r.nm if r.method != "dense" else "–", r.batch, r.total_cycles,
                     r.seconds * 1e3, r.speedup_vs_dense, bound, 100.0 * r.utilization,
                     r.dram_bytes / 2**20, float(r.energy_pj.get("total", 0.0)) / 1e9,
                     run.source))
    return Table(("run", "config", "mode", "method", "N:M", "batch", "cycles", "time (ms)",
                  "speedup vs dense (×)", "bound (×)", "utilisation (%)", "DRAM (MiB)",
                  "energy (mJ)", "from"), tuple(rows))


def _traces_table(traces: Sequence[Any]) -> Table:
    rows = []
    for t in traces:
        base = t.baseline.final_accuracy if t.baseline is not None else None
        m = mask_stats(t)
        rows.append((t.model, t.dataset, str(t.method), str(t.nm) if str(t.method) != "dense"
                     else "–", t.epochs, t.seed, 100.0 * t.final_accuracy,
                     None if base is None else 100.0 * base,
                     None if base is None else 100.0 * (base - t.final_accuracy),
                     t.accuracy[-1].train_loss if t.accuracy else None,
                     m["ff_density"], m["bp_density"], m["ff_flip"], m["bp_flip"]))
    return Table(("model", "dataset", "method", "N:M", "epochs", "seed",
                  "test accuracy (%)", "dense baseline (%)", "accuracy loss (points)",
                  "final train loss", "FF mask density (%)", "BP mask density (%)",
                  "mean FF mask flips (%)", "mean BP mask flips (%)"),
                 tuple(rows))


PHASE_EXPLANATIONS: dict[str, str] = {
    "ff": "Forward pass: the layer's output from its (N:M) weights.",
    "bp": "Backward pass: the data gradient, through the transposed weights (N:M in BDWP).",
    "wg": "Weight gradient: dense in every method (the full gradient is needed).",
    "wu": "Weight update on the fp32 master weights (weight-update engine).",
    "sore": "Mask generation: cycles the engine waited for the SORE to sort the weights "
            "into N:M masks.",
    "vector": "Vector work: cycles the engine waited for the vector engine (normalisation, "
              "pooling, softmax, activation, residual add) that makes a layer's input, "
              "charged to that layer.",
}
"""Phase -> one line for the page's legend of categories."""


def legend_html() -> str:
    """What each phase and each stall cause means: every category the figures use."""
    from . import style

    phases = "".join(f"<dt>{html.escape(style.phase_label(p))}</dt>"
                     f"<dd>{html.escape(t)}</dd>" for p, t in PHASE_EXPLANATIONS.items())
    stalls = "".join(f"<dt>{html.escape(style.stall_label(c))}</dt><dd>{html.escape(t)}</dd>"
                     for c, t in style.STALL_EXPLANATIONS.items())
    return ('<p class="caption">Every cycle of a run is charged to exactly one phase. A stall '
            "is a cycle in which a unit had an instruction pending but could not start it; "
            "it is charged to the cause of the dependency that was satisfied last.</p>\n"
            f'<div class="legend"><div><h3>Phases</h3><dl>{phases}</dl></div>'
            f"<div><h3>Stall causes</h3><dl>{stalls}</dl></div></div>")


def _section(anchor: str, title: str, body: str) -> str:
    return (f'<section id="{html.escape(anchor)}">\n<h2>{html.escape(title)}</h2>\n'
            f"{body}\n</section>")


def _plot_section(plot: Plot) -> str:
    alt = html.escape(plot.title)
    name = html.escape(plot.name)
    body = (f'<figure><img src="{name}.svg" alt="{alt}">'
            f"<figcaption>{html.escape(plot.caption)}</figcaption></figure>\n"
            f'<p class="files">Files: <a href="{name}.svg">{name}.svg</a> · '
            f'<a href="{name}.png">{name}.png</a></p>\n'
            f"{table_html(plot.table, f'{plot.name}.csv')}")
    return _section(plot.name, plot.title, body)


_BOUNDS = ("compute", "array", "memory", "dependency")
"""Layer bounds (``nmsat.simulator.roofline.Bound``) counted in the inference runs table."""


def _inference_runs_table(runs: Sequence[Run]) -> Table:
    rows = []
    for run in runs:
        r = run.result
        rows.append((run.label, str(r.config.get("name", "?")), r.phase or "–",
                     r.nm, r.batch, r.seq_len, r.kv_len, r.total_cycles, r.seconds * 1e3,
                     r.tokens_per_second, r.speedup_vs_dense, r.weight_byte_ratio,
                     r.roofline["peak_macs_per_cycle"] / r.roofline["dense_peak_macs_per_cycle"],
                     *(sum(x.bound == b for x in r.layers if x.dense_macs)
                       for b in _BOUNDS),
                     sum(1 for x in r.layers if x.dense_macs), r.dram_bytes / 2**20,
                     float(r.energy_pj.get("total", 0.0)) / 1e9, run.source))
    return Table(("run", "config", "phase", "N:M", "batch", "seq len", "KV len", "cycles",
                  "time (ms)", "tokens/s", "speedup vs dense (×)", "weight-byte ratio (×)",
                  "engine peak ratio (×)",
                  *(f"{b}-bound GEMM layers" for b in _BOUNDS), "GEMM layers",
                  "DRAM (MiB)", "energy (mJ)", "from"), tuple(rows))


def page_tables(runs: Sequence[Run], traces: Sequence[Any],
                inference_runs: Sequence[Run] = ()) -> dict[str, Table]:
    """The page's own tables (not a figure's) by their CSV file name."""
    out: dict[str, Table] = {}
    if runs:
        out["runs.csv"] = _runs_table(runs)
    if traces:
        out["traces.csv"] = _traces_table(traces)
    diff = config_diff_table([*runs, *inference_runs])
    if diff is not None:
        out["configs.csv"] = diff
    if inference_runs:
        out["inference-runs.csv"] = _inference_runs_table(inference_runs)
    return out


def render_page(runs: Sequence[Run], traces: Sequence[Any], plots: Sequence[Plot],
                inference_runs: Sequence[Run] = ()) -> str:
    """The report page for ``runs`` and ``traces`` showing ``plots`` (files next to it);
    ``inference_runs`` (inference results) get their own runs table."""
    parts = []
    nav = []
    if runs:
        nav.append('<a href="#runs">Runs</a>')
        parts.append(_section("runs", "Runs", '<p class="caption">One row per simulation '
                              "result in this report. Speedups are over dense training of the "
                              "same model on the same hardware; the bound is the method's "
                              "ideal speedup (BDWP 3/(2N/M+1), SR-STE 3/(N/M+2)).</p>\n"
                              + table_html(_runs_table(runs), "runs.csv")))
    diff = config_diff_table([*runs, *inference_runs])
    if diff is not None:
        nav.append('<a href="#configs">Configurations compared</a>')
        parts.append(_section("configs", "Configurations compared", '<p class="caption">The '
                              "runs of this report were simulated on different accelerator "
                              "configurations; these are the configuration fields whose "
                              "values differ (every other field is the same; docs/config.md "
                              "explains each). Compare their absolute time and energy in "
                              "'Designs side by side'.</p>\n"
                              + table_html(diff, "configs.csv")))
    if runs or inference_runs:
        nav.append('<a href="#categories">Phases and stalls</a>')
        parts.append(_section("categories", "Phases and stall causes", legend_html()))
    if traces:
        nav.append('<a href="#traces">Traces</a>')
        parts.append(_section("traces", "Training traces", '<p class="caption">One row per '
                              "training trace; the dense baseline is the dense run "
                              "recorded with the trace (same model, data and seed). Mask "
                              "density: the share of weights the N:M mask keeps at the last "
                              "iteration (N/M when every group is full); flips: the mean "
                              "share of mask bits changed per iteration (both over the "
                              "weight layers the run makes N:M, weighted by their "
                              "weights).</p>\n"
                              + table_html(_traces_table(traces), "traces.csv")))
    if inference_runs:
        nav.append('<a href="#inference-runs">Inference runs</a>')
        mixed = (" This report also has training runs: those are compared with dense "
                 "training, these with dense inference, and no figure mixes the two."
                 if runs else "")
        parts.append(_section(
            "inference-runs", "Inference runs", '<p class="caption">One row per inference '
            "result (nmsat simulate --mode inference). Speedups are over dense inference "
            "(dense weights, no activation sparsity) of the same workload on the same "
            "hardware; a memory-bound pass tends to the weight-byte ratio (dense over "
            "compressed weight bytes), an array-bound one to the engine's peak ratio."
            f"{mixed}</p>\n" + table_html(_inference_runs_table(inference_runs),
                                           "inference-runs.csv")))
    current: Run | None = None
    for p in plots:
        if p.run is None:
            nav.append(f'<a href="#{html.escape(p.name)}">{html.escape(p.title)}</a>')
        elif p.run is not current:
            current = p.run
            anchor = f"run-{current.slug}"
            nav.append(f'<a href="#{html.escape(anchor)}">{html.escape(current.label)}</a>')
            parts.append(f'<h2 class="run" id="{html.escape(anchor)}">'
                         f"{html.escape(current.label)}</h2>")
        parts.append(_plot_section(p))
    workloads = list(dict.fromkeys(r.result.workload for r in [*runs, *inference_runs]))
    models = list(dict.fromkeys(t.model for t in traces))
    subject = ", ".join(workloads + [m for m in models if m not in workloads])
    title = f"nmsat report: {subject}"
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>{html.escape(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
            f"<header><h1>{html.escape(title)}</h1><p>{len(runs) + len(inference_runs)} "
            f"simulation result(s), "
            f"{len(traces)} training trace(s)</p></header>\n"
            f"<nav>{' '.join(nav)}</nav>\n<main>\n" + "\n".join(parts) + "\n</main>\n"
            f"<footer>Made by nmsat {html.escape(__version__)} (<code>nmsat report</code>)."
            "</footer>\n<script>" + SORT_SCRIPT + "</script>\n</body>\n</html>\n")


def write_report(out_dir: Path, files: dict[str, bytes], page: str) -> Path:
    """Write ``files`` (name -> bytes) and then ``index.html`` into ``out_dir``, atomically."""
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create report folder {out}: {e.strerror or e}") from None
    index = out / "index.html"  # all or nothing: every target is checked before any write
    atomic_write_many([(out / name, data) for name, data in files.items()]
                      + [(index, page.encode("utf-8"))])
    return index


def render_sweep_page(store_name: str, summary: Table, failed: Table,
                      plots: Sequence[Plot], codesign: str | None = None) -> str:
    """The report page of a design-space sweep (``nmsat sweep report``): a summary per
    workload, the failed points (listed, not plotted) and every figure with its table,
    grouped by workload (the figures' names end in ``_<workload>``)."""
    nav = ['<a href="#summary">Summary</a>']
    parts = [_section("summary", "Sweep", '<p class="caption">Points of the store per '
                      "workload. Times and energies are per training iteration (or inference "
                      "pass); the Pareto front is over time, energy and area (LUTs, or the "
                      "multiplier count where there is no resource estimate).</p>\n"
                      + table_html(summary, "summary.csv"))]
    if failed.rows:
        nav.append('<a href="#failed">Failed points</a>')
        parts.append(_section("failed", f"Failed points ({len(failed.rows)})",
                              '<p class="caption">Points whose simulation failed, with their '
                              "error. They are counted here and not plotted; "
                              "<code>nmsat sweep ... --resume</code> does not retry them "
                              "(delete their rows to retry).</p>\n"
                              + table_html(failed, "failed.csv")))
    if codesign is not None:  # reports/codesign.py: best designs over all workloads
        nav.append('<a href="#codesign">Best designs</a>')
        parts.append(_section("codesign", "Best designs over all workloads", codesign))
    for p in plots:
        nav.append(f'<a href="#{html.escape(p.name)}">{html.escape(p.title)}</a>')
        parts.append(_plot_section(p))
    title = f"nmsat sweep report: {store_name}"
    ok = sum(int(r[2]) for r in summary.rows)
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>{html.escape(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
            f"<header><h1>{html.escape(title)}</h1><p>{ok} successful point(s), "
            f"{len(failed.rows)} failed, {len(summary.rows)} workload(s)</p></header>\n"
            f"<nav>{' '.join(nav)}</nav>\n<main>\n" + "\n".join(parts) + "\n</main>\n"
            f"<footer>Made by nmsat {html.escape(__version__)} "
            "(<code>nmsat sweep report</code>).</footer>\n<script>" + SORT_SCRIPT
            + "</script>\n</body>\n</html>\n")
