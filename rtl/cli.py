"""``nmsat rtl``: generate Verilog, synthesise with Yosys, run a layer's tile program on the RTL."""

from __future__ import annotations

import argparse
import json
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("rtl", help="generate, synthesise and simulate the Amaranth RTL")
    rsub = p.add_subparsers(dest="rtl_command", metavar="ACTION", required=True)

    g = rsub.add_parser("generate", help="write Verilog (top level and units) and a manifest")
    g.add_argument("--config", default="vcu1525", metavar="PRESET|FILE")
    g.add_argument("--dtype", help="operand type (default: the config's numerics.dtype)")
    g.add_argument("-o", "--out", required=True, metavar="DIR", help="output directory")
    g.set_defaults(func=_generate)

    s = rsub.add_parser("synth", help="Yosys synth_xilinx (UltraScale+): LUT/FF/DSP/BRAM, "
                        "fit on the XCVU9P")
    s.add_argument("--config", default="small", metavar="PRESET|FILE")
    s.add_argument("--dtype")
    s.add_argument("--per-unit", action="store_true",
                   help="synthesise the units and scale by instance counts (large presets)")
    s.add_argument("--unit", action="append", metavar="NAME",
                   help="per-unit synthesis of just this unit (repeatable): pe_cell, "
                   "sore_lane, wu_lane, act_bank, wgt_bank, out_bank")
    s.add_argument("--calibrate", metavar="FILE", help="synthesise the calibration "
                   "configurations per unit and write the table (JSON) for the area model")
    s.add_argument("--json", action="store_true", help="print the figures as JSON")
    s.set_defaults(func=_synth)

    r = rsub.add_parser("run", help="run one layer's tile program on the RTL simulator and "
                        "compare values and cycles with the reference and the tile model")
    r.add_argument("workload", metavar="WORKLOAD|TRACE")
    r.add_argument("--layer", required=True)
    r.add_argument("--phase", default="ff", choices=["ff", "bp", "wg"])
    r.add_argument("--config", default="small", metavar="PRESET|FILE")
    r.add_argument("--nm", default="2:8", help="N:M pattern of the sparse phases (default 2:8)")
    r.add_argument("--method", default="bdwp", choices=["dense", "srste", "bdwp"])
    r.add_argument("--batch", type=int, default=None)
    r.add_argument("--sim", choices=["icarus", "verilator"], default=None)
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--json", action="store_true")
    r.set_defaults(func=_run)


def _generate(args: argparse.Namespace) -> int:
    from nmsat.config import resolve

    from .generate import generate

    cfg = resolve(args.config)
    man = generate(cfg, args.out, args.dtype)
    for name, u in man["units"].items():
        print(f"{args.out}/{u['file']:<28} {name} x{u['instances']}  {len(u['ports'])} ports")
    print(f"{args.out}/manifest.json")
    return 0


def _synth(args: argparse.Namespace) -> int:
    from nmsat.config import resolve

    from .synth import synth_units, synth_whole

    progress = None if args.json else (lambda msg: print(msg, file=sys.stderr))
    if args.calibrate:
        from .synth import calibrate

        calibrate(progress=progress, out=args.calibrate)
        print(args.calibrate)
        return 0
    cfg = resolve(args.config)
    if args.unit:
        rep = synth_units(cfg, args.unit, dtype=args.dtype, progress=progress)
    else:
        rep = (synth_units if args.per_unit else synth_whole)(cfg, dtype=args.dtype,
                                                              progress=progress)
    d = rep.as_dict()
    if args.json:
        json.dump(d, sys.stdout, indent=2)
        print()
        return 0
    print(f"{cfg.name} {d['dtype']} on the {d['device'].upper()}: {d['label']}")
    for u in d["units"]:
        print(f"  {u['name']:<22} x{u['instances']:<5} {u['seconds']:>7.1f} s  "
              + "  ".join(f"{k} {v:,.1f}" for k, v in u["total"].items()))
    for k, cap in d["capacity"].items():
        print(f"  {k.upper():<7} {d['total'][k]:>12,.1f} / {cap:>9,}  "
              f"{100 * d['utilisation'][k]:6.2f} %")
    print(f"  fits: {'yes' if d['fits'] else 'no'}")
    return 0


def _run(args: argparse.Namespace) -> int:
    from nmsat.config import resolve

    from .tb.program import run_layer

    cfg = resolve(args.config)
    rep = run_layer(args.workload, args.layer, args.phase, cfg, nm=args.nm, method=args.method,
                    batch=args.batch, sim=args.sim, seed=args.seed)
    if args.json:
        json.dump(rep, sys.stdout, indent=2)
        print()
        return 0
    print(f"{rep['workload']} {rep['layer']} {rep['phase']} on {cfg.name} ({rep['sim']}):")
    print(f"  {'COMPUTE':<40} {'RTL cycles':>11} {'model':>9}")
    for c in rep["computes"]:
        print(f"  {c['instr']:<40} {c['rtl_cycles']:>11} {c['model_cycles']:>9}")
    print(f"  total engine cycles: RTL {rep['rtl_cycles']}, simulator {rep['model_cycles']}")
    print(f"  values: {rep['words']} words stored, {rep['mismatches']} mismatches")
    return 0 if rep["mismatches"] == 0 and rep["rtl_cycles"] == rep["model_cycles"] else 1
