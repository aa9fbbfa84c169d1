"""``nmsat workloads``: list the model zoo and show a workload's layers and GEMMs."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from typing import Any

from nmsat.commands import examples, summary

_PHASES = ("ff", "bp", "wg")  # the phases that lower to GEMMs (WU and SORE do not)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("workloads", help=summary("workloads"),
                       epilog=examples("nmsat workloads list", "nmsat workloads show resnet18"))
    wsub = p.add_subparsers(dest="workloads_command", metavar="ACTION", required=True)

    lst = wsub.add_parser("list", help="list the zoo models with MACs and parameters",
                          epilog=examples("nmsat workloads list", "nmsat workloads list --json"))
    lst.add_argument("--json", action="store_true", help="print the list as JSON")
    lst.set_defaults(func=_list)

    show = wsub.add_parser("show", help="layers, shapes and per-phase GEMM dims of a workload",
                           epilog=examples("nmsat workloads show resnet18 --batch 32",
                                           "nmsat workloads show topology.csv --json"))
    show.add_argument("workload", metavar="NAME", help="zoo model name (see `nmsat workloads "
                      "list`), SCALE-Sim topology .csv or training trace .nmt file")
    show.add_argument("--batch", type=int, default=None, metavar="B",
                      help="samples per batch (default 1, or the file's own batch)")
    show.add_argument("--seq-len", type=int, default=None, metavar="L",
                      help="sequence length of bert_base (default 128) or gpt2_small (1024)")
    show.add_argument("--json", action="store_true", help="print the workload as JSON")
    show.set_defaults(func=_show)


def _gemm_text(gemms: list) -> str:
    parts = [f"{g.m}x{g.n}x{g.k}" + (f" *{g.count}" if g.count > 1 else "") for g in gemms]
    return " + ".join(parts) if parts else "-"


def _shape_text(shape: tuple[int, ...]) -> str:
    return "x".join(map(str, shape)) if shape else "-"


def _list(args: argparse.Namespace) -> int:
    from nmsat.workloads import zoo

    rows = []
    for name in zoo.names():
        m = zoo.model(name)
        w = m.workload()
        rows.append({"name": name, "description": m.description, "macs": w.macs_per_sample,
                     "params": m.params, "layers": len(m.layers),
                     "input_shape": list(m.input_shape), "seq_len": m.seq_len})
    if args.json:
        json.dump(rows, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    width = max(len(r["name"]) for r in rows)
    print(f"{'name':<{width}}  {'MACs/sample':>12}  {'params':>9}  {'layers':>6}  description")
    for r in rows:
        print(f"{r['name']:<{width}}  {r['macs'] / 1e9:>11.4f}G  {r['params'] / 1e6:>8.2f}M  "
              f"{r['layers']:>6}  {r['description']}")
    return 0


def _layer_json(layer: Any, batch: int, nm: Any) -> dict:
    from nmsat.types import Phase

    config = {f.name: getattr(layer, f.name) for f in dataclasses.fields(layer)
              if f.name != "name"}
    for key, value in config.items():  # enums and tuples as plain JSON
        config[key] = list(value) if isinstance(value, tuple) else (
            str(value) if hasattr(value, "value") else value)
    return {
        "name": layer.name,
        "type": type(layer).__name__.lower(),
        "in_shape": list(layer.in_shape),
        "out_shape": list(layer.out_shape),
        "weight_shape": list(layer.weight_shape) if layer.weight_shape else None,
        "macs": layer.macs(1),
        "nm": str(nm) if nm is not None else None,
        "config": config,
        "gemms": {p: [dataclasses.asdict(g) for g in layer.gemms(Phase(p), batch)]
                  for p in _PHASES},
    }


def _show(args: argparse.Namespace) -> int:
    from nmsat.types import Phase
    from nmsat.workloads import zoo

    loaded = zoo.load(args.workload, batch=args.batch, seq_len=args.seq_len)
    w = loaded.workload
    model = zoo.model(args.workload, args.seq_len) if loaded.source == "zoo" else None
    if args.json:
        doc = {
            "workload": w.name,
            "source": loaded.source,
            "batch": w.batch,
            "seq_len": model.seq_len if model else None,
            "macs": w.macs_per_sample,
            "batch_macs": {p: w.macs(Phase(p)) for p in _PHASES},
            "weights": w.weights,
            "params": model.params if model else None,
            "layers": [_layer_json(layer, w.batch, loaded.layer_nm.get(layer.name))
                       for layer in w.layers],
        }
        json.dump(doc, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    print(f"# {w.name} ({loaded.source}), batch {w.batch}: {w.macs_per_sample:,} MACs/sample "
          f"forward, {w.macs(Phase.FF):,} per batch; {w.weights:,} GEMM weights"
          + (f", {model.params:,} parameters" if model else ""))
    rows = [("layer", "type", "in", "out", "FF m x n x k", "BP m x n x k", "WG m x n x k")]
    if loaded.layer_nm:
        rows[0] += ("N:M",)
    for layer in w.layers:
        kind = getattr(layer, "kind", None)
        row = (layer.name, str(kind) if kind is not None else type(layer).__name__.lower(),
               _shape_text(layer.in_shape), _shape_text(layer.out_shape),
               *(_gemm_text(layer.gemms(Phase(p), w.batch)) for p in _PHASES))
        if loaded.layer_nm:
            nm = loaded.layer_nm.get(layer.name)
            row += (str(nm) if nm is not None else "-",)
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(wd) for c, wd in zip(r, widths)).rstrip())
    return 0
