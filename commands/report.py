"""``nmsat report``: figures and an HTML page comparing simulation results and traces."""

from __future__ import annotations

import argparse
from pathlib import Path

from nmsat.commands import examples, summary

DEFAULT_OUT = Path("report")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report", help=summary("report"), epilog=examples(
            "nmsat report a.json b.json -o out/",
            "nmsat report r.json --trace t.nmt -o out/"),
        description="Combine results written by `nmsat simulate --json` (and training traces) "
                    "into one comparison: speedup over dense with the method bounds, phase and "
                    "energy breakdowns, per-layer utilisation and stalls, timelines, and, for "
                    "traces, accuracy and mask flip rates. Writes PNG and SVG figures and "
                    "index.html into the output folder.")
    p.add_argument("results", nargs="*", type=Path, metavar="RESULT.json",
                   help="result files from `nmsat simulate --json`")
    p.add_argument("--trace", action="append", type=Path, default=[], metavar="T.nmt",
                   help="training trace from `nmsat train --trace` (repeatable)")
    p.add_argument("-o", "--out", type=Path, default=DEFAULT_OUT, metavar="DIR",
                   help=f"output folder (default: {DEFAULT_OUT}/)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from nmsat.fileio import check_output_dir
    from nmsat.reports import ReportError, build_report

    if not args.results and not args.trace:
        raise ReportError("report: give at least one RESULT.json or --trace file")
    check_output_dir(args.out, "-o")
    index = build_report(args.results, args.out, traces=args.trace)
    print(f"wrote {index}")
    return 0
