"""``nmsat config``: show, check and write accelerator configurations."""

from __future__ import annotations

import argparse
import sys

from nmsat import config
from nmsat.commands import examples, summary


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("config", help=summary("config"),
                       epilog=examples("nmsat config show vcu1525",
                                       "nmsat config show small --toml",
                                       "nmsat config check my.toml", "nmsat config list"))
    csub = p.add_subparsers(dest="config_command", metavar="ACTION", required=True)

    show = csub.add_parser("show", help="print a preset or config file with each field's source",
                           epilog=examples("nmsat config show vcu1525",
                                           "nmsat config show small --toml",
                                           "nmsat config show scale.cfg --toml"))
    show.add_argument("config", metavar="PRESET|FILE", help="preset name (vcu1525, small) or "
                      ".toml/.yaml/.json file")
    fmt = show.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="print the full configuration as JSON")
    fmt.add_argument("--toml", action="store_true", help="print it as TOML (loadable)")
    show.set_defaults(func=_show)

    check = csub.add_parser("check", help="validate a config file",
                            epilog=examples("nmsat config check my.toml",
                                            "nmsat config check scale.cfg"))
    check.add_argument("config", metavar="PRESET|FILE")
    check.set_defaults(func=_check)

    lst = csub.add_parser("list", help="list the presets",
                          epilog=examples("nmsat config list"))
    lst.set_defaults(func=_list)


def _show(args: argparse.Namespace) -> int:
    cfg = config.resolve(args.config)
    if args.json:
        sys.stdout.write(config.dumps(cfg, "json"))
        return 0
    if args.toml:
        sys.stdout.write(config.dumps(cfg, "toml"))
        return 0
    rows = config.describe(cfg)
    width = max(len(r[0]) for r in rows)
    vwidth = min(24, max(len(str(r[1])) for r in rows))
    print(f"# {cfg.name}: {cfg.array.rows}x{cfg.array.cols} PEs x {cfg.array.macs_per_pe} "
          f"multipliers = {cfg.array.peak_macs_per_cycle} {cfg.numerics.dtype} MACs/cycle at "
          f"{cfg.clock_mhz:g} MHz")
    for name, value, doc in rows:
        print(f"{name:<{width}}  {str(value):<{vwidth}}  {doc}")
    return 0


def _check(args: argparse.Namespace) -> int:
    cfg = config.resolve(args.config)
    print(f"{args.config}: valid ({cfg.name})")
    return 0


def _list(args: argparse.Namespace) -> int:
    for name, cfg in config.PRESETS.items():
        print(f"{name:<10} {cfg.array.rows}x{cfg.array.cols}x{cfg.array.macs_per_pe} "
              f"{cfg.numerics.dtype} @ {cfg.clock_mhz:g} MHz")
    return 0
