"""``nmsat sweep``: run a design-space sweep on Dask, export its result store, or report it.

``nmsat sweep SPEC [-o STORE] [--workers N | --scheduler ADDRESS] [--resume]`` runs the
points of SPEC (see ``docs/sweeps.md``); ``nmsat sweep export STORE --csv|--json`` prints
the store; ``nmsat sweep report STORE [-o DIR]`` writes its Pareto and sensitivity figures
and ``DIR/index.html``. Before the store is created or changed the spec is fully validated (every
point's config built) and Dask is reached, so a bad spec, an unknown axis or an unreachable
scheduler ends with one line and exit status 2 and leaves no store behind.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nmsat.commands import examples, summary

USAGE = ("nmsat sweep SPEC [-o STORE] [--workers N | --scheduler ADDRESS] [--resume]\n"
         "       nmsat sweep export STORE (--csv | --json) [--out FILE]\n"
         "       nmsat sweep export STORE --parquet --out FILE\n"
         "       nmsat sweep report STORE [-o DIR]")

REPORT_SUFFIX = "-report"
"""``nmsat sweep report STORE`` without ``-o`` writes into STORE's name without its suffix
plus this, beside it (``my-sweep.sqlite`` -> ``my-sweep-report/``)."""


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, not {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, not {text!r}")
    return v


def _positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive number, not {text!r}") from None
    if not v > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, not {text!r}")
    return v


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("target", nargs="+", metavar="SPEC | export STORE | report STORE",
                   help="a sweep spec (.toml/.yaml) to run, `export STORE` or `report STORE`")
    run = p.add_argument_group("running a sweep")
    run.add_argument("-o", "--store", type=Path, default=None, metavar="STORE | DIR",
                     help="SQLite result store to create (default: SPEC with suffix "
                          ".sqlite); with `report`, the report folder (default: STORE "
                          f"without its suffix plus {REPORT_SUFFIX})")
    where = run.add_mutually_exclusive_group()
    where.add_argument("--workers", type=_positive_int, default=None, metavar="N",
                       help="worker processes of the local Dask cluster (default: one per "
                            "CPU)")
    where.add_argument("--scheduler", default=None, metavar="ADDRESS",
                       help="submit to an existing Dask cluster, e.g. tcp://host:8786")
    run.add_argument("--resume", action="store_true",
                     help="continue an existing store: skip the points already in it")
    run.add_argument("--connect-timeout", type=_positive_float, default=10.0, metavar="S",
                     help="seconds to wait for --scheduler (default: 10)")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    exp = p.add_argument_group("exporting a store")
    fmt = exp.add_mutually_exclusive_group()
    fmt.add_argument("--csv", action="store_true", help="one CSV row per point")
    fmt.add_argument("--json", action="store_true", help="a JSON list with full results")
    fmt.add_argument("--parquet", action="store_true",
                     help="an Apache Parquet file (needs --out; pip install 'nmsat[parquet]')")
    exp.add_argument("--out", type=Path, default=None, metavar="FILE",
                     help="write the export to FILE (atomically) instead of stdout")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sweep", help=summary("sweep"),
                       usage=USAGE,
                       epilog=examples(
                           "nmsat sweep examples/sweep-small.toml -o small.sqlite --workers 1",
                           "nmsat sweep export small.sqlite --csv",
                           "nmsat sweep report small.sqlite -o small-report/"),
                       description="Run every point of a sweep spec (axes over config fields "
                                   "and simulate options, workloads, constraints) on a local "
                                   "or existing Dask cluster into a crash-safe SQLite store, "
                                   "export a store as CSV or JSON, or report it: Pareto "
                                   "front and per-axis sensitivity figures in an HTML page.")
    add_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Handle ``nmsat sweep``; returns the exit status."""
    from nmsat.commands import UsageError

    if args.target[0] == "export":
        if len(args.target) != 2:
            raise UsageError("sweep export: give exactly one STORE")
        if not (args.csv or args.json or args.parquet):
            raise UsageError("sweep export: choose --csv, --json or --parquet")
        if args.parquet and args.out is None:
            raise UsageError("sweep export: --parquet writes a binary file: give --out FILE")
        if args.resume or args.workers or args.scheduler or args.store:
            raise UsageError("sweep export: -o/--workers/--scheduler/--resume are for running "
                             "a sweep (use --out FILE)")
        fmt = "csv" if args.csv else "json" if args.json else "parquet"
        return _export(Path(args.target[1]), fmt, args.out)
    if args.target[0] == "report":
        if len(args.target) != 2:
            raise UsageError("sweep report: give exactly one STORE")
        if args.resume or args.workers or args.scheduler:
            raise UsageError("sweep report: --workers/--scheduler/--resume are for running "
                             "a sweep")
        if args.csv or args.json or args.parquet or args.out:
            raise UsageError("sweep report: --csv/--json/--parquet/--out are for "
                             "`nmsat sweep export`; give the report folder with -o DIR")
        store = Path(args.target[1])
        out = args.store if args.store is not None else store.with_name(
            store.stem + REPORT_SUFFIX)
        return _report(store, out)
    if len(args.target) != 1:
        raise UsageError(f"sweep: give one SPEC, not {' '.join(args.target)}")
    if args.csv or args.json or args.parquet or args.out:
        raise UsageError("sweep: --csv/--json/--parquet/--out are for `nmsat sweep export STORE`")
    return _run(args)


def _export(store: Path, fmt: str, out: Path | None) -> int:
    from nmsat.fileio import atomic_write_bytes, atomic_write_text, check_output_file
    from nmsat.simulator import sweep

    if out is not None:
        check_output_file(out, "--out")
    if fmt == "parquet":
        from nmsat.simulator.sweep_parquet import export_parquet

        assert out is not None
        atomic_write_bytes(out, export_parquet(store))
        print(f"wrote {out}", file=sys.stderr)
        return 0
    text = sweep.export_csv(store) if fmt == "csv" else sweep.export_json(store)
    if out is None:
        sys.stdout.write(text)
    else:
        atomic_write_text(out, text)
        print(f"wrote {out}", file=sys.stderr)
    return 0


def _report(store: Path, out: Path) -> int:
    from nmsat.fileio import check_output_dir
    from nmsat.reports.sweep_figures import build_sweep_report

    check_output_dir(out, "-o")
    index = build_sweep_report(store, out)
    print(f"wrote {index}")
    return 0


def _run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from nmsat.fileio import check_output_file
    from nmsat.log import showing_status, status
    from nmsat.simulator import sweep, sweep_spec

    spec_path = Path(args.target[0])
    store = args.store if args.store is not None else spec_path.with_suffix(".sqlite")
    spec = sweep_spec.load(spec_path)  # the input first: a missing spec is named as such
    check_output_file(store, "-o")
    plan = sweep.plan(spec, store, args.resume)  # validates every point; writes nothing
    cluster = sweep.DaskCluster(args.workers, args.scheduler, args.connect_timeout)
    with sweep.StoreLock(store), cluster:  # one sweep per store; connect before touching it
        plan = sweep.plan(spec, store, args.resume, plan.points)  # what others stored since
        where = args.scheduler or f"local cluster, {cluster.requested} workers"
        status(f"sweep {spec.name}: {len(plan.points)} points, {plan.skipped} already "
               f"stored, {len(plan.todo)} to run on {where}")
        counts = {"ok": 0, "failed": 0}
        with tqdm(total=len(plan.todo), unit="pt", desc=spec.name, file=sys.stderr,
                  disable=args.no_progress or not showing_status(),
                  dynamic_ncols=True) as bar:
            bar.set_postfix(done=0, failed=0, left=len(plan.todo))

            def on_record(record: dict) -> None:
                counts[record["status"]] += 1
                done = counts["ok"] + counts["failed"]
                bar.set_postfix(done=counts["ok"], failed=counts["failed"],
                                left=len(plan.todo) - done, refresh=False)
                bar.update(1)

            summary = sweep.run(plan, store, cluster, on_record)
    print(f"{summary.ok} ok, {summary.failed} failed, {summary.skipped} skipped in "
          f"{summary.seconds:.1f} s ({summary.points_per_second:.2f} points/s on "
          f"{summary.workers} workers); store {summary.store}", file=sys.stderr)
    return 1 if summary.failed else 0
