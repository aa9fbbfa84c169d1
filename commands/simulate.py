"""``nmsat simulate``: run a workload on the configured accelerator and print where time goes.

The argument parser is built by :func:`add_arguments` so other subcommands (and the report
layer's ``--report DIR``) can extend it; :func:`run` does the work and returns the exit
status. Every output file is written atomically and only after the whole simulation
succeeded, so bad input leaves no partial output.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nmsat.commands import examples, nm_pattern, positive_int, simulate_inference, summary
from nmsat.types import DATAFLOW_CHOICES, DEFAULT_BATCH, DEFAULT_METHOD, DEFAULT_NM

DEFAULT_WORKLOAD = "resnet18"



def _input_shape(text: str) -> tuple[int, ...]:
    from nmsat.workloads.torch_spec import parse_shape

    try:
        return parse_shape(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e).removeprefix("--input-shape ")) from None


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Add the ``simulate`` options to ``p`` (kept separate so callers can extend them)."""
    p.add_argument("workload", nargs="?", default=DEFAULT_WORKLOAD, metavar="WORKLOAD",
                   help="zoo model name (see `nmsat workloads list`), a training trace, a "
                        "SCALE-Sim topology CSV, or a PyTorch model: torchvision:NAME or "
                        f"FILE.py:FACTORY (default: {DEFAULT_WORKLOAD})")
    p.add_argument("--config", default="vcu1525", metavar="PRESET|FILE",
                   help="accelerator preset (vcu1525, small) or .toml/.yaml file "
                        "(default: vcu1525)")
    p.add_argument("--method", default=None, choices=("dense", "srste", "bdwp"),
                   help="training method (default: a trace's own, else "
                        f"{DEFAULT_METHOD})")
    p.add_argument("--nm", type=nm_pattern, default=None, metavar="N:M",
                   help="N:M pattern of every layer's sparse weights (default: the per-layer "
                        f"patterns a trace or SCALE-Sim v3 file fixes, else {DEFAULT_NM})")
    p.add_argument("--batch", type=positive_int, default=None, metavar="B",
                   help="samples per batch (default: a trace's or SCALE-Sim file's own, "
                        f"else {DEFAULT_BATCH})")
    p.add_argument("--seq-len", type=positive_int, default=None, metavar="L",
                   help="sequence length of a language model (default: the model's)")
    p.add_argument("--input-shape", type=_input_shape, default=None, metavar="B,C,H,W",
                   help="input of a PyTorch WORKLOAD (torchvision:NAME or FILE.py:FACTORY, "
                        "imported through torch.fx), batch first; its batch is --batch's "
                        "default (default: 1,3,224,224 with --batch's default)")
    p.add_argument("--mode", default="train", choices=("train", "inference"),
                   help="a training iteration (FF, BP, WG, WU, SORE) or inference (FF only)")
    simulate_inference.add_arguments(p)  # --phase, --kv-len, --act-density, --act-zero
    p.add_argument("--no-interleave", action="store_true",
                   help="disable interleave mapping (ablation)")
    p.add_argument("--no-pregen", action="store_true",
                   help="disable SORE pre-generation: masks are made just before each layer "
                        "(ablation)")
    p.add_argument("--no-offline-schedule", action="store_true",
                   help="disable offline scheduling: one fixed dataflow and tiling (ablation)")
    p.add_argument("--dataflow", default="auto", choices=DATAFLOW_CHOICES,
                   help="dataflow of every GEMM block: os (output stationary), ws (weight "
                        "stationary), or auto: the offline schedule picks the cheaper per "
                        "layer and phase (default; with --no-offline-schedule: os)")
    p.add_argument("--json", metavar="OUT", type=Path, default=None,
                   help="write the full result (with the event timeline) as JSON")
    p.add_argument("--scalesim-reports", metavar="DIR", type=Path, default=None,
                   help="write SCALE-Sim 3.0.0's COMPUTE_REPORT.csv, BANDWIDTH_REPORT.csv "
                        "and DETAILED_ACCESS_REPORT.csv (its exact headers, to diff by "
                        "column) and ENERGY_REPORT.csv (energy per layer by unit and phase)")
    p.add_argument("--report", metavar="DIR", type=Path, default=None,
                   help="write figures and an HTML report (DIR/index.html) of this run and "
                        "its dense baseline (see docs/reports.md)")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("simulate", help=summary("simulate"),
                       epilog=examples(
                           "nmsat simulate resnet50 --method bdwp --nm 2:8 --batch 32 "
                           "--json r.json",
                           "nmsat simulate mlp --config small --report out/",
                           "nmsat simulate gpt2_small --mode inference --phase decode --kv-len 512",
                           "nmsat simulate topology.csv --config scale.cfg --scalesim-reports ss/",
                           "nmsat simulate torchvision:resnet18 --batch 8",
                           "nmsat simulate model.py:factory --input-shape 1,3,224,224"),
                       description="Simulate WORKLOAD on the accelerator: cycles per phase, "
                                   "stalls, utilisation, energy, and the speedup over dense "
                                   "training on the same hardware.")
    add_arguments(p)
    p.set_defaults(func=run)


def options_from_args(args: argparse.Namespace):
    """Build :class:`~nmsat.simulator.api.SimOptions` from parsed arguments (validates)."""
    from nmsat.simulator.api import SimOptions

    return SimOptions.create(method=args.method, nm=args.nm, mode=args.mode,
                             interleave=not args.no_interleave, pregen=not args.no_pregen,
                             offline_schedule=not args.no_offline_schedule,
                             layer_nm=getattr(args, "layer_nm", ()),
                             dataflow=getattr(args, "dataflow", "auto"))


def load_and_resolve(args: argparse.Namespace):
    """Load WORKLOAD and fill in ``--method``, ``--nm`` and ``--batch`` left unset.

    Flags given on the command line win. Otherwise a training trace fixes its method, its
    per-layer patterns and its batch, and a SCALE-Sim v3 file its per-layer patterns and
    batch; a zoo model takes the defaults (BDWP, 2:8, batch 32).
    """
    from nmsat.workloads import load

    shape = getattr(args, "input_shape", None)
    loaded = load(args.workload, batch=args.batch, seq_len=args.seq_len, input_shape=shape)
    if args.batch is None and (loaded.source == "zoo" or
                               (loaded.source == "torch" and shape is None)):
        loaded = load(args.workload, batch=DEFAULT_BATCH, seq_len=args.seq_len)
    args.batch = loaded.workload.batch
    if args.method is None:
        args.method = str(loaded.method if loaded.method is not None else DEFAULT_METHOD)
    args.layer_nm = ()
    if args.nm is None:
        patterns = {str(p) for p in loaded.layer_nm.values()}
        args.nm = patterns.pop() if len(patterns) == 1 else str(DEFAULT_NM)
        args.layer_nm = tuple(sorted(loaded.layer_nm.items()))
    return loaded


SCALESIM_REPORTS = ("COMPUTE_REPORT.csv", "BANDWIDTH_REPORT.csv", "DETAILED_ACCESS_REPORT.csv",
                    "ENERGY_REPORT.csv")
"""What ``--scalesim-reports DIR`` writes: SCALE-Sim 3.0.0's three reports (its exact
headers) and nmsat's energy per layer."""


def check_outputs(args: argparse.Namespace) -> None:
    """Refuse, before any simulation, a destination that cannot be written: a folder or
    device where a file goes, a file where a folder goes, an unwritable parent, or two
    outputs that name one path (symbolic links followed, dangling ones too)."""
    import os

    from nmsat.fileio import check_output_dir, check_output_file

    named: dict[str, str] = {}
    for flag, path in (("--json", args.json), ("--scalesim-reports", args.scalesim_reports),
                       ("--report", args.report)):
        if path is None:
            continue
        where = os.path.realpath(path)
        if where in named:
            raise ValueError(f"{named[where]} and {flag} name the same path {path}: give "
                             f"each output its own")
        named[where] = flag

    if args.json is not None:
        check_output_file(args.json, "--json")
    if args.scalesim_reports is not None:
        check_output_dir(args.scalesim_reports, "--scalesim-reports")
        for name in SCALESIM_REPORTS:
            check_output_file(args.scalesim_reports / name, "--scalesim-reports")
    if args.report is not None:
        check_output_dir(args.report, "--report")


def run(args: argparse.Namespace) -> int:
    """Handle ``nmsat simulate``; returns the exit status."""
    from nmsat import config
    from nmsat.fileio import atomic_write_many
    from nmsat.simulator import api
    from nmsat.simulator.results import (
        bandwidth_report_csv,
        compute_report_csv,
        detailed_access_report_csv,
        energy_report_csv,
    )

    check_outputs(args)
    shape = getattr(args, "input_shape", None)
    if shape is not None:  # batch first, as PyTorch takes it
        if args.batch is not None and args.batch != shape[0]:
            raise ValueError(f"--batch {args.batch} disagrees with --input-shape's batch "
                             f"{shape[0]}")
        args.batch = shape[0]
    if args.mode == "inference":
        args.method = args.method or str(DEFAULT_METHOD)  # --nm: a file's own, else the default
        args.batch = args.batch or DEFAULT_BATCH
        return simulate_inference.run(args)
    simulate_inference.check_train_args(args)
    cfg = config.resolve(args.config)
    loaded = load_and_resolve(args)
    options = options_from_args(args)
    result = api.simulate(loaded, cfg, options)

    # Render everything first: nothing is written unless all of it succeeded.
    outputs: list[tuple[Path, str]] = []
    if args.json is not None:
        outputs.append((args.json, result.to_json()))
    if args.scalesim_reports is not None:
        d = args.scalesim_reports
        outputs.append((d / SCALESIM_REPORTS[0], compute_report_csv(result, cfg)))
        outputs.append((d / SCALESIM_REPORTS[1], bandwidth_report_csv(result, cfg)))
        outputs.append((d / SCALESIM_REPORTS[2], detailed_access_report_csv(result, cfg)))
        outputs.append((d / SCALESIM_REPORTS[3], energy_report_csv(result.layers)))
    atomic_write_many([(path, text.encode("utf-8")) for path, text in outputs])
    # The result first: a report that fails afterwards does not lose it.
    sys.stdout.write(format_table(result))
    for path, _ in outputs:
        print(f"wrote {path}")
    sys.stdout.flush()

    if args.report is not None:  # the dense run too, for the dense-vs-sparse phase figure
        import dataclasses

        from nmsat.log import status
        from nmsat.reports import build_report, make_report_folder
        from nmsat.types import Method

        runs = [result]
        if options.method is not Method.DENSE:
            status("report: simulating the dense baseline")
            runs = [api.simulate(loaded, cfg, dataclasses.replace(options,
                                                                  method=Method.DENSE)), result]
        make_report_folder(args.report)
        print(f"wrote {build_report(runs, args.report, traces=trace_of(args))}")
    return 0


def trace_of(args: argparse.Namespace) -> list[Path]:
    """The workload as a training trace for the report (its accuracy, loss and mask
    statistics), if it is one."""
    w = Path(str(args.workload))
    return [w] if w.suffix.lower() == ".nmt" else []


def dataflow_summary(layers) -> str:
    """How many (layer, phase) GEMMs ran each dataflow: ``os 40, ws 12 layer-phases``."""
    n: dict[str, int] = {}
    for x in layers:
        for df in x.dataflow.values():
            n[df] = n.get(df, 0) + 1
    if not n:
        return "no GEMM layers"
    return ", ".join(f"{df} {c}" for df, c in sorted(n.items())) + " layer-phases"


def format_table(r) -> str:
    """The human-readable summary printed by ``nmsat simulate``."""
    lines = []
    lines.append(f"{r.workload}  {r.mode}  method={r.method}  nm={r.nm}  batch={r.batch}  "
                 f"on {r.config['name']} ({r.config['array']['rows']}x{r.config['array']['cols']}"
                 f"x{r.config['array']['macs_per_pe']} @ {r.config['clock_mhz']:g} MHz)")
    off = [k for k, v in r.options.items() if v is False]
    if off:
        lines.append("disabled: " + ", ".join(off))
    lines.append("")
    lines.append(f"{'phase':<8}{'cycles':>16}{'share':>9}{'util':>8}")
    total = r.total_cycles
    for ph, cyc in r.phase_cycles.items():
        share = cyc / total if total else 0.0
        util = r.phase_utilization.get(ph)
        util_s = f"{util:7.1%}" if util is not None else "      -"
        lines.append(f"{ph:<8}{cyc:>16,}{share:>9.1%}{util_s:>8}")
    lines.append(f"{'total':<8}{total:>16,}{1.0:>9.1%}{r.utilization:>8.1%}")
    lines.append("")
    lines.append(f"time            {r.seconds * 1e3:,.3f} ms at {r.config['clock_mhz']:g} MHz")
    stalls = ", ".join(f"{k} {v:,}" for k, v in r.stall_cycles.items())
    lines.append(f"engine stalls   {stalls} cycles")
    lines.append(f"DRAM traffic    {r.dram_bytes / 2**20:,.1f} MiB")
    lines.append(f"dataflow        {dataflow_summary(r.layers)} (--dataflow "
                 f"{r.options.get('dataflow', 'auto')})")
    e = r.energy_pj
    parts = ", ".join(f"{k} {e[k] / e['total']:.0%}" for k in e if k != "total" and e["total"])
    lines.append(f"energy          {e['total'] / 1e9:,.3f} mJ ({parts})")
    lines.append(f"dense           {r.dense_total_cycles:,} cycles on the same hardware")
    lines.append(f"speedup         {r.speedup_vs_dense:.3f}x over dense")
    return "\n".join(lines) + "\n"
