"""``nmsat trace inspect FILE [--json]``: summarise a training trace."""

from __future__ import annotations

import argparse
import json
import sys

from nmsat.commands import examples, summary


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("trace", help=summary("trace"),
                       epilog=examples("nmsat trace inspect t.nmt"))
    tsub = p.add_subparsers(dest="trace_command", metavar="ACTION", required=True)
    ins = tsub.add_parser("inspect", help="validate a trace and summarise it",
                          epilog=examples("nmsat trace inspect t.nmt",
                                          "nmsat trace inspect t.nmt --json"),
                          description="Validate a trace file (checksums, version, shapes) "
                                      "and print its run, accuracy and per-layer statistics.")
    ins.add_argument("file", metavar="FILE", help="trace file written by nmsat train --trace")
    ins.add_argument("--json", action="store_true", help="print the summary as JSON")
    ins.set_defaults(func=_inspect)


def _f(x: float | None, pct: bool = False) -> str:
    if x is None:
        return "-"
    return f"{100 * x:.2f}%" if pct else f"{x:.4f}"


def _inspect(args: argparse.Namespace) -> int:
    from nmsat.workloads.trace import load_trace, summarize

    s = summarize(load_trace(args.file))
    if args.json:
        json.dump(s, sys.stdout, indent=1)
        sys.stdout.write("\n")
        return 0
    print(f"{args.file}: {s['format']} v{s['version']} (nmsat {s['tool_version']})")
    print(f"  run       {s['model']} on {s['dataset']}, {s['method']} {s['nm']}, seed "
          f"{s['seed']}, {s['epochs']} epochs x {s['iterations'] // s['epochs']} iterations, "
          f"batch {s['batch']}, lr {s['lr']:g}, {s['wall_seconds']:.1f} s")
    acc = f"  accuracy  test {_f(s['final_test_accuracy'], True)}"
    if s["baseline_test_accuracy"] is not None:
        diff = 100 * (s["baseline_test_accuracy"] - s["final_test_accuracy"])
        acc += f", dense baseline {_f(s['baseline_test_accuracy'], True)} ({diff:+.2f} pp loss)"
    print(acc + f"; final train loss {s['final_train_loss']:.4f}")
    head = ("layer", "type", "weights", "N:M FF", "N:M BP", "FF dens", "BP dens", "FF flip",
            "BP flip", "act 0", "grad 0")
    rows = []
    for r in s["layers"]:
        if "weight_shape" not in r:
            continue
        rows.append((r["name"], r["type"], "x".join(map(str, r["weight_shape"])),
                     "yes" if r["sparse_ff"] else "no", "yes" if r["sparse_bp"] else "no",
                     _f(r["ff_density"]), _f(r["bp_density"]), _f(r["ff_flip_mean"]),
                     _f(r["bp_flip_mean"]), _f(r["act_zero_mean"]), _f(r["grad_zero_mean"])))
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    print("  per weight layer (densities: last iteration; flips and zero fractions: mean "
          "over the run)")
    for row in (head, *rows):
        print("    " + "  ".join(str(x).ljust(w) for x, w in zip(row, widths)).rstrip())
    for smp in s["samples"]:
        print(f"  tensors   iteration {smp['iteration']} (epoch {smp['epoch']}, lr "
              f"{smp['lr']:.3g}): {', '.join(smp['tensors'])} for {', '.join(smp['layers'])}")
    return 0
