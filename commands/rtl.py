"""``nmsat rtl``: generate Verilog, synthesise with Yosys, run a layer's tile program on the RTL."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from nmsat.commands import examples, nm_pattern, non_negative_int, positive_int, summary
from nmsat.types import DATAFLOW_CHOICES, DEFAULT_NM, ActZero

MAX_GENERATE_CELLS = 1024
"""Largest array (rows x cols PE cells) ``nmsat rtl generate`` and ``run`` build without
``--force``: Amaranth flattens the top level (it does not share modules between
instances), so generation time and Verilog size grow with the cell count; the 256-cell
``vcu1525`` takes several minutes, and time and size grow linearly with the cells (the
4 x 4 int8 ``small`` engine: 4.6 s, 1.1 MB here)."""


_LLM_PHASES = ("prefill", "decode")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("rtl", help=summary("rtl"), epilog=examples(
        "nmsat rtl generate --config small -o rtl_out/",
        "nmsat rtl synth --config small --json",
        "nmsat rtl run mlp --layer fc3 --phase ff --config small"))
    rsub = p.add_subparsers(dest="rtl_command", metavar="ACTION", required=True)

    g = rsub.add_parser("generate", help="write Verilog (top level and units) and a manifest",
                        epilog=examples("nmsat rtl generate --config small -o rtl_out/",
                                        "nmsat rtl generate --config my.toml --dtype int8 "
                                        "-o rtl_out/"))
    g.add_argument("--config", default="vcu1525", metavar="PRESET|FILE")
    g.add_argument("--dtype", help="operand type (default: the config's numerics.dtype)")
    g.add_argument("-o", "--out", required=True, metavar="DIR", help="output directory "
                   "(created; files of the same names in it are replaced)")
    g.add_argument("--force", action="store_true", help="generate an array larger than "
                   f"{MAX_GENERATE_CELLS:,} PE cells anyway (hours, gigabytes of Verilog)")
    g.set_defaults(func=_generate)

    s = rsub.add_parser("synth", epilog=examples(
                            "nmsat rtl synth --config small --json",
                            "nmsat rtl synth --config vcu1525 --per-unit",
                            "nmsat rtl synth --config vcu1525 --unit pe_cell"),
                        help="Yosys synth_xilinx (UltraScale+): LUT/FF/DSP/BRAM, "
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

    r = rsub.add_parser("run", epilog=examples(
                            "nmsat rtl run mlp --layer fc3 --phase ff --config small",
                            "nmsat rtl run mlp --layer fc2 --mode inference --nm 2:4 "
                            "--config small",
                            "nmsat -v rtl run cnn --layer conv1 --phase bp --config small",
                            "nmsat rtl run mlp --all-layers --config small",
                            "nmsat rtl run mlp --all-layers --top --nm 2:4 --config small",
                            "nmsat rtl run stories260k --all-layers --mode inference "
                            "--phase decode --config small"),
                        help="run one layer's tile program on the RTL simulator and "
                        "compare values and cycles with the reference and the tile model")
    r.add_argument("workload", metavar="WORKLOAD|TRACE")
    r.add_argument("--layer", default=None, help="the layer to run (or --all-layers)")
    r.add_argument("--all-layers", action="store_true",
                   help="run every layer through the RTL tile controller, one program per "
                   "layer and phase in one simulation: train runs the GEMM phases the "
                   "controller executes (ff, bp, wg; --phase picks one), inference the FF "
                   "pass (LLMs: --phase prefill|decode); prints per layer the RTL's and the "
                   "simulator's program cycles and the value mismatches")
    r.add_argument("--mode", default="train", choices=["train", "inference"],
                   help="train: one training phase's GEMM (--phase ff|bp|wg); inference: the "
                   "layer's FF program as `nmsat simulate --mode inference` compiles it "
                   "(pre-compressed N:M weights, no SORE; LLMs: --phase prefill|decode)")
    r.add_argument("--phase", default=None, choices=["sore", "ff", "bp", "wg", "wu", *_LLM_PHASES],
                   help="training phase (default ff; with --all-layers every phase; sore "
                   "and wu, mask generation and the weight update, on the accelerator top: "
                   "--top), or with --mode inference the LLM serving phase (default prefill)")
    r.add_argument("--seq-len", type=positive_int, default=None, metavar="L",
                   help="--mode inference: prompt tokens of an LLM prefill (or a zoo language "
                   "model's sequence length)")
    r.add_argument("--kv-len", type=positive_int, default=None, metavar="L",
                   help="--mode inference: KV-cache positions of an LLM decode step")
    r.add_argument("--config", default="small", metavar="PRESET|FILE")
    r.add_argument("--nm", type=nm_pattern, default=None,
                   help="N:M pattern of the sparse phases, or "
                   f"of the weights with --mode inference (dense: 1:1; default {DEFAULT_NM})")
    r.add_argument("--dataflow", default="auto", choices=DATAFLOW_CHOICES,
                   help="dataflow of the layer's COMPUTE blocks: os, ws, or auto (the "
                        "compiler's offline schedule picks per block; default)")
    r.add_argument("--method", default=None, choices=["dense", "srste", "bdwp"],
                   help="training method (default: a trace's own, else bdwp)")
    r.add_argument("--batch", type=positive_int, default=None, metavar="B",
                   help="samples (sequences) per batch (default: the workload's; "
                   "--mode inference: 1)")
    r.add_argument("--sim", choices=["icarus", "verilator"], default=None)
    r.add_argument("--seed", type=non_negative_int, default=0)
    r.add_argument("--json", action="store_true")
    r.add_argument("--controller", action="store_true", help="run the program through the RTL "
                   "tile controller (instruction memory, loops, rings; the testbench is only "
                   "the DMA; single- or double-buffered as configured, not act_zero = skip; "
                   "Icarus unless --sim verilator)")
    r.add_argument("--top", action="store_true", help="run the program(s) on the whole "
                   "accelerator top (rtl/top.py): the host over AXI4-Lite, DRAM behind its "
                   "AXI4 master, the hardware DMA; the simulator's prediction uses dram.dma "
                   "= word_slots, the DMA the top is (one DRAM channel, the simple DRAM "
                   "model); with --layer or --all-layers; programs the DMA cannot carry are "
                   "listed, not run")
    r.set_defaults(func=_run)


def check_config(cfg, force: bool = False, hint: str = "") -> None:
    """Refuse, in one line naming the field, a config the RTL does not implement or is too
    large to generate (see :data:`MAX_GENERATE_CELLS`)."""
    if cfg.sore.cycles_per_weight != 1:
        raise ValueError(f"sore.cycles_per_weight = {cfg.sore.cycles_per_weight}: the RTL "
                         "SORE reads one weight per lane per cycle (needs 1)")
    if cfg.sore.pipeline_latency < 1:
        raise ValueError(f"sore.pipeline_latency = {cfg.sore.pipeline_latency}: the RTL SORE "
                         "has at least one output stage (needs >= 1)")
    if cfg.weight_update.pipeline_latency < 1:
        raise ValueError(f"weight_update.pipeline_latency = "
                         f"{cfg.weight_update.pipeline_latency}: the RTL weight-update engine "
                         "has at least one pipeline stage (needs >= 1)")
    a = cfg.array
    if a.shadow_weights and a.weight_load_ports & (a.weight_load_ports - 1):
        raise ValueError(f"array.weight_load_ports = {a.weight_load_ports}: the RTL's shadow "
                         "weights need a power of two (or array.shadow_weights = false)")
    if a.shadow_weights and ActZero.parse(a.act_zero) is ActZero.SKIP:
        raise ValueError("array.shadow_weights = true with array.act_zero = skip: the RTL "
                         "does not build both (set one of them off)")
    cells = cfg.array.rows * cfg.array.cols
    if cells > MAX_GENERATE_CELLS and not force:
        raise ValueError(f"array.rows x array.cols = {cfg.array.rows} x {cfg.array.cols} = "
                         f"{cells:,} PE cells: over the {MAX_GENERATE_CELLS:,} the RTL "
                         "generator builds in reasonable time (the top level is flattened: "
                         f"about {cells // 256}x the vcu1525's minutes){hint}")


def _output_dir(out: Path) -> Path:
    """Check ``-o DIR`` before any work: a folder (or one that can be created) that can be
    written. Returns the nearest existing folder (where the staging folder goes)."""
    from nmsat.fileio import check_output_dir

    check_output_dir(out, "-o")
    base = out
    while not base.exists():
        if base.parent == base:
            break
        base = base.parent
    if not base.is_dir():
        raise ValueError(f"-o {out}: {base} is not a folder")
    if not os.access(base, os.W_OK | os.X_OK):
        raise ValueError(f"-o {out}: {base} is not writable")
    return base


def _generate(args: argparse.Namespace) -> int:
    from nmsat.config import resolve
    from nmsat.fileio import check_output_file
    from nmsat.rtl.generate import generate

    cfg = resolve(args.config)
    check_config(cfg, force=args.force, hint="; --force generates it anyway")
    out = Path(args.out)
    base = _output_dir(out)
    # Generate into a staging folder beside the output, then move the files in: an error
    # (or Ctrl-C) leaves no partial output, and other files in DIR are left alone.
    try:
        stage = Path(tempfile.mkdtemp(prefix=".nmsat-rtl-", dir=base))
    except OSError as e:
        raise ValueError(f"-o {out}: cannot write in {base} ({e.strerror or e})") from None
    try:
        man = generate(cfg, stage, args.dtype)
        try:
            out.mkdir(parents=True, exist_ok=True)
            for f in sorted(stage.iterdir()):
                check_output_file(out / f.name, "-o")  # never replace a device or a FIFO
            for f in sorted(stage.iterdir()):
                os.replace(f, out / f.name)
        except OSError as e:
            raise ValueError(f"-o {out}: cannot write the output ({e.strerror or e})") from None
    finally:
        for f in stage.iterdir():
            f.unlink()
        stage.rmdir()
    for name, u in man["units"].items():
        print(f"{args.out}/{u['file']:<28} {name} x{u['instances']}  {len(u['ports'])} ports")
    acc = man.get("accelerator", {})
    if "file" in acc:
        print(f"{args.out}/{acc['file']:<28} accelerator top (AXI4-Lite control, AXI4 master)  "
              f"{len(acc['ports'])} ports, {len(acc['registers'])} registers")
    elif "skipped" in acc:
        print(f"note: no accelerator top for this config: {acc['skipped']}")
    print(f"{args.out}/manifest.json")
    return 0


def _synth(args: argparse.Namespace) -> int:
    from nmsat.config import resolve
    from nmsat.log import status
    from nmsat.rtl.synth import synth_units, synth_whole

    progress = None if args.json else status  # status lines on stderr (not with --quiet)
    if args.calibrate:
        from nmsat.fileio import check_output_file
        from nmsat.rtl.synth import calibrate

        check_output_file(args.calibrate, "--calibrate")

        calibrate(progress=progress, out=args.calibrate)
        print(args.calibrate)
        return 0
    cfg = resolve(args.config)
    check_config(cfg, force=bool(args.unit or args.per_unit),
                 hint="; --per-unit synthesises it unit by unit")
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
    for note in d["notes"]:
        print(f"  note: {note}")
    te = d["timing_estimate"]
    print(f"  critical path per module (estimate; target {te['target_mhz']:.0f} MHz):")
    for u in d["units"]:
        for mod, c in u.get("critical_path", {}).items():
            print(f"    {mod:<28} {c['levels']:>3} LUT levels, {c['muxf']} MUXF, "
                  f"{c['carry8']} CARRY8, {c['dsp']} DSP  ~{c['estimate_ns']:.2f} ns  "
                  f"~{c['estimate_mhz']:.0f} MHz  {'ok' if c['meets_target'] else 'SLOW'}")
    return 0


def _run_options(args: argparse.Namespace) -> None:
    """Reject options of the other mode (one line each)."""
    if args.mode == "train":
        if args.phase in _LLM_PHASES:
            raise ValueError(f"--phase {args.phase} is an LLM serving phase: use it with "
                             "--mode inference")
        for flag in ("seq_len", "kv_len"):
            if getattr(args, flag) is not None:
                raise ValueError(f"--{flag.replace('_', '-')} is only for --mode inference")
        args.phase = args.phase or "ff"
        args.method = args.method or "bdwp"
        args.nm = args.nm or str(DEFAULT_NM)
        return
    if args.phase in ("sore", "ff", "bp", "wg", "wu"):
        raise ValueError(f"--phase {args.phase} is a training phase: --mode inference runs "
                         "the FF pass (LLM phases: prefill, decode)")
    from nmsat.commands.simulate_inference import dense_method

    dense_method(args)
    if args.method == "srste":
        raise ValueError("--method srste is for training; inference takes the weights' "
                         "pattern from --nm (dense: --nm 1:1 or --method dense)")
    args.nm = args.nm or str(DEFAULT_NM)
    args.batch = args.batch or 1


def _run(args: argparse.Namespace) -> int:
    from nmsat.config import resolve

    if args.all_layers and args.layer is not None:
        raise ValueError("--all-layers runs every layer: give it or --layer NAME, not both")
    if not args.all_layers and args.layer is None:
        raise ValueError("--layer NAME (or --all-layers) is required")
    all_phases = args.all_layers and args.phase is None
    _run_options(args)
    if args.phase in ("sore", "wu") and not args.top:
        what = "mask generation" if args.phase == "sore" else "the weight update"
        raise ValueError(f"--phase {args.phase}: {what} runs on the accelerator top (its "
                         f"unit streams its operands over its own AXI4 master): add --top")
    if all_phases and args.mode == "train":
        args.phase = None  # every phase the controller runs
    cfg = resolve(args.config)
    check_config(cfg)
    # notes on what the run changes in the config go out after every check, just before
    # the run (bad input gets its one line alone)
    args.notes = []
    if cfg.buffers.act_layout != "windows":
        # The RTL's ACT holds im2col windows: compile the program for what it implements.
        args.notes.append(f"note: {cfg.name} has buffers.act_layout = "
                          f"{cfg.buffers.act_layout}; the RTL's activation buffer holds "
                          "windows, so the program (and the simulator's prediction) is "
                          "compiled with buffers.act_layout = windows")
        cfg = cfg.replace(**{"buffers.act_layout": "windows"})
    if args.top:
        if args.controller:
            raise ValueError("--top runs the whole accelerator (its tile controller "
                             "included): give --top or --controller, not both")
        if cfg.dram.dma != "word_slots":
            args.notes.append(f"note: {cfg.name} has dram.dma = {cfg.dram.dma}; the "
                              "accelerator top's DMA moves the engine's word slots, so the "
                              "simulator's prediction is made with dram.dma = word_slots")
        return _run_all_layers(args, cfg.replace(**{"dram.dma": "word_slots"}))
    if args.all_layers:
        return _run_all_layers(args, cfg)
    if args.controller:
        from nmsat.rtl.tb.controller_run import run_layer_controller
        from nmsat.simulator import system

        if args.mode == "inference":
            raise ValueError("--controller runs training-phase layer programs (--mode train)")
        _notes(args)
        rep = run_layer_controller(args.workload, args.layer, args.phase, cfg, nm=args.nm,
                                   method=args.method, batch=args.batch, sim=args.sim,
                                   seed=args.seed, system_model=system.run,
                                   dataflow=args.dataflow)
    elif args.mode == "inference":
        from nmsat.rtl.tb.inference import run_inference_layer

        _notes(args)
        rep = run_inference_layer(args.workload, args.layer, cfg, nm=args.nm,
                                  batch=args.batch, phase=args.phase, seq_len=args.seq_len,
                                  kv_len=args.kv_len, sim=args.sim, seed=args.seed,
                                  dataflow=args.dataflow)
    else:
        from nmsat.rtl.tb.program import run_layer

        _notes(args)
        rep = run_layer(args.workload, args.layer, args.phase, cfg, nm=args.nm,
                        method=args.method, batch=args.batch, sim=args.sim, seed=args.seed,
                        dataflow=args.dataflow)
    ok = (rep["mismatches"] == 0 and rep["rtl_cycles"] == rep["model_cycles"]
          and all(c["rtl_cycles"] == c["model_cycles"] for c in rep["computes"])
          and rep.get("same_program", True))
    if args.json:
        json.dump(rep, sys.stdout, indent=2)
        print()
        return 0 if ok else 1
    if args.mode == "inference":
        lens = "".join(f" {k}={rep[k]}" for k in ("seq_len", "kv_len") if rep[k] is not None)
        what = f"inference{' ' + rep['phase'] if rep['phase'] else ''} nm={rep['nm']} " \
               f"batch={rep['batch']}{lens}"
    else:
        what = rep["phase"]
    print(f"{rep['workload']} {rep['layer']} {what} on {cfg.name} ({rep['sim']}):")
    print(f"  {'COMPUTE':<40} {'RTL cycles':>11} {'model':>9}")
    for c in rep["computes"]:
        flag = "" if c["rtl_cycles"] == c["model_cycles"] else "  DIFFERENT"
        print(f"  {c['instr']:<40} {c['rtl_cycles']:>11} {c['model_cycles']:>9}{flag}")
    print(f"  total engine cycles: RTL {rep['rtl_cycles']}, simulator {rep['model_cycles']}")
    print(f"  values: {rep['words']} words stored, {rep['mismatches']} mismatches")
    if rep["act_zero"] == "skip":
        print(f"  act_zero = skip: {rep['dropped_rows']} of {rep['ws_row_slices']} WS row "
              f"slices dropped (all-zero K-tile slices), {rep['skip_saved_cycles']} engine "
              "cycles saved")
    if "same_program" in rep:
        print(f"  program: {'the same' if rep['same_program'] else 'NOT the same'} COMPUTE "
              "words and LOAD/STORE tiles as this layer's part of the simulator's program")
    print(f"  RTL simulation: {rep['sim_cycles']} cycles in {rep['seconds']:.1f} s")
    return 0 if ok else 1


def _notes(args: argparse.Namespace) -> None:
    """Print the run's notes (``args.notes``) on stderr, once."""
    from nmsat.log import status

    for n in args.notes:
        status(n)
    args.notes = []


def _run_all_layers(args: argparse.Namespace, cfg) -> int:
    """``--all-layers`` (or ``--top``, one layer or all): every layer's programs through
    the tile controller, or with ``--top`` the accelerator top (one build, one
    simulation), a table per program and the totals (``nmsat.rtl.tb.network``)."""
    from nmsat.rtl.controller import check_controlled
    from nmsat.rtl.engine import check_shape
    from nmsat.rtl.tb.network import (
        carried_by_top,
        inference_steps,
        row_ok,
        run_network,
        train_steps,
    )
    from nmsat.rtl.tb.top_run import check_top_config
    from nmsat.simulator import system

    # what the RTL cannot build: one line naming the field, at once
    check_controlled(cfg)
    check_shape(cfg)
    if args.top:
        check_top_config(cfg)
    unit = "accelerator top" if args.top else "tile controller"
    if args.mode == "train":
        steps, skipped, meta = train_steps(args.workload, cfg, nm=args.nm, method=args.method,
                                           batch=args.batch, seed=args.seed,
                                           dataflow=args.dataflow, phase=args.phase,
                                           layer=args.layer, top=args.top)
    else:
        steps, skipped, meta = inference_steps(args.workload, cfg, nm=args.nm,
                                               batch=args.batch, phase=args.phase,
                                               seq_len=args.seq_len, kv_len=args.kv_len,
                                               seed=args.seed, dataflow=args.dataflow,
                                               layer=args.layer)
    if not steps:
        phases = ", ".join(meta["phases_run"])
        raise ValueError(f"--layer {args.layer}: no GEMM the {unit} runs in {phases}"
                         if args.layer else
                         f"{args.workload} has no layer with a GEMM the {unit} runs in {phases}")
    not_carried: list[dict] = []
    if args.top:
        steps, not_carried = carried_by_top(steps, cfg)
        if not steps:
            first = not_carried[0]
            raise ValueError(f"the accelerator top's DMA carries none of the programs: "
                             f"{first['layer']} {first['phase']}: {first['reason']}")
    _notes(args)
    rep = run_network(steps, skipped, meta, cfg, args.sim, system_model=system.run,
                      top=args.top, not_carried=not_carried)
    if args.json:
        json.dump(rep, sys.stdout, indent=2)
        print()
        return 0 if rep["ok"] else 1
    step = f" {rep['phase']}" if rep.get("phase") else ""
    print(f"{rep['workload']} {rep['mode']}{step} nm={rep['nm']} batch={rep['batch']} on "
          f"{rep['config']} ({rep['sim']}, {unit}): phases run "
          f"{', '.join(rep['phases_run'])}")
    for ph, why in rep["phases_not_run"].items():
        print(f"  not run: {ph} ({why})")
    for x in rep["not_carried"]:
        print(f"  not carried by the top's DMA: {x['layer']} {x['phase']} ({x['reason']})")
    w = max(len("layer"), *(len(r["layer"]) for r in rep["programs"]))
    print(f"  {'layer':<{w}} {'phase':<5} {'RTL cycles':>11} {'model':>9} {'diff':>6} "
          f"{'mismatches':>10}")
    for r in rep["programs"]:
        flag = "" if row_ok(r) else "  DIFFERENT"
        print(f"  {r['layer']:<{w}} {r['phase']:<5} {r['rtl_program_cycles']:>11} "
              f"{r['model_program_cycles']:>9} "
              f"{r['rtl_program_cycles'] - r['model_program_cycles']:>6} "
              f"{r['mismatches']:>10}{flag}")
    t = rep["total"]
    print(f"  {'total':<{w}} {'':<5} {t['rtl_program_cycles']:>11} "
          f"{t['model_program_cycles']:>9} {t['cycle_difference']:>6} {t['mismatches']:>10}")
    if skipped:
        print(f"  no GEMM (not run): {', '.join(x['layer'] for x in skipped)}")
    return 0 if rep["ok"] else 1
