"""``nmsat simulate --mode inference``: the inference options of ``nmsat simulate``, the
run (simulate, print the table, write the JSON, the SCALE-Sim-style reports and the HTML
report) and the table it prints."""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from nmsat.commands import non_negative_int, positive_int
from nmsat.types import DEFAULT_NM, NM, ActZero
from nmsat.workloads import llm

if TYPE_CHECKING:
    from nmsat.dataflow.inference_workload import InferenceOptions
    from nmsat.simulator.inference_result import InferenceResult

INFERENCE_ONLY = ("phase", "kv_len", "act_density", "act_zero", "top")
"""``nmsat simulate`` options that only apply with ``--mode inference``."""

DEFAULT_TOP = 20
"""Per-layer lines ``nmsat simulate --mode inference`` prints without ``--top``."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The inference options of ``nmsat simulate`` (called by its parser)."""
    p.add_argument("--phase", default=None, choices=tuple(x.value for x in llm.LlmPhase),
                   help="LLM serving phase with --mode inference: prefill (the whole prompt "
                        "of --seq-len tokens) or decode (one token per sequence against a "
                        f"KV cache of --kv-len positions); LLM workloads: "
                        f"{', '.join(llm.PRESETS)} (default: prefill)")
    p.add_argument("--kv-len", type=positive_int, default=None, metavar="L",
                   help="KV-cache positions of a decode step (default: "
                        f"{llm.DEFAULT_CONTEXT}, or the model's positions if fewer: "
                        "the context a default prefill leaves)")
    p.add_argument("--top", type=non_negative_int, default=None, metavar="N",
                   help="with --mode inference, print the N layers with the most cycles "
                        f"(default {DEFAULT_TOP}; 0: every layer, in program order)")
    p.add_argument("--act-density", type=_fraction, default=None, metavar="D",
                   help="fraction of nonzero activations at every weighted layer's input "
                        "(default: measured per layer from a .nmt training trace, else 1)")
    p.add_argument("--act-zero", default=None, choices=tuple(x.value for x in ActZero),
                   help="override the config's array.act_zero: what the PE does with zero "
                        "activations (none, gate: energy only, skip: gate and skip all-zero "
                        "WS rows)")


def _fraction(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        v = float("nan")
    if not 0.0 <= v <= 1.0:
        raise argparse.ArgumentTypeError(f"must be a number between 0 and 1, not {text!r}")
    return v


def check_train_args(args: argparse.Namespace) -> None:
    """Reject inference-only options in a training run."""
    for name in INFERENCE_ONLY:
        if getattr(args, name, None) is not None:
            flag = "--" + name.replace("_", "-")
            raise ValueError(f"{flag} is only for --mode inference")


def dense_method(args: argparse.Namespace) -> None:
    """``--method dense`` with ``--mode inference`` means dense weights: ``--nm 1:1``
    (a sparse ``--nm`` with it is refused)."""
    if args.method != "dense":
        return
    if args.nm is not None and not NM.parse(args.nm).dense:
        raise ValueError(f"--method dense runs dense weights: it contradicts --nm {args.nm} "
                         "(give one of them)")
    args.nm = "1:1"


def options_from_args(args: argparse.Namespace) -> InferenceOptions:
    """Build :class:`~nmsat.simulator.inference.InferenceOptions` from parsed arguments."""
    from nmsat.dataflow.inference import ActDensity
    from nmsat.dataflow.inference_workload import InferenceOptions

    if args.act_density is not None:
        density = ActDensity.uniform(args.act_density)
    elif str(args.workload).lower().endswith(".nmt"):
        density = ActDensity.from_trace(args.workload)
    else:
        density = ActDensity.dense()
    nm, layer_nm = _patterns_from_args(args)
    return InferenceOptions(nm=nm, batch=args.batch, phase=args.phase,
                            seq_len=args.seq_len, kv_len=args.kv_len, density=density,
                            interleave=not args.no_interleave,
                            offline_schedule=not args.no_offline_schedule, layer_nm=layer_nm,
                            input_shape=(tuple(args.input_shape[1:])
                                         if getattr(args, "input_shape", None) else None),
                            dataflow=args.dataflow)


def _patterns_from_args(args: argparse.Namespace) -> tuple[NM, tuple[tuple[str, NM], ...]]:
    """``--nm`` wins for every layer; without it a workload file's per-layer patterns
    (a training trace: every weight layer's trained pattern, ``1:1`` for a dense run; a
    SCALE-Sim v3 ``Sparsity`` column) apply, as in training mode
    (:func:`nmsat.commands.simulate.load_and_resolve`), and other layers take the default."""
    from nmsat.workloads import zoo

    if args.nm is not None:
        return NM.parse(args.nm), ()
    spec = str(args.workload)
    if llm.is_llm(spec) or os.path.splitext(spec)[1].lower() not in zoo.FILE_LOADERS:
        return NM.parse(DEFAULT_NM), ()
    loaded = zoo.load(spec, batch=args.batch, seq_len=args.seq_len)
    patterns = {str(p) for p in loaded.layer_nm.values()}
    nm = patterns.pop() if len(patterns) == 1 else DEFAULT_NM
    return NM.parse(nm), tuple(sorted(loaded.layer_nm.items()))


def run(args: argparse.Namespace) -> int:
    """``nmsat simulate ... --mode inference``: simulate, write the JSON and the
    SCALE-Sim-style reports (all or nothing), print the table, then simulate the report's
    sweeps and write the HTML report (a report that fails does not lose the result)."""
    from nmsat import config
    from nmsat.fileio import atomic_write_many
    from nmsat.simulator.inference import simulate_inference
    from nmsat.simulator.inference_result import (
        bandwidth_report_csv,
        compute_report_csv,
        detailed_access_report_csv,
    )
    from nmsat.simulator.results import energy_report_csv

    dense_method(args)
    if args.method == "srste":
        raise ValueError("--method srste is for training; inference takes the weights' "
                         "pattern from --nm (dense: --nm 1:1 or --method dense)")
    if getattr(args, "no_pregen", False):  # inference makes no masks: nothing to pre-generate
        raise ValueError("--no-pregen is for training: inference has no SORE mask generation")
    cfg = config.resolve(args.config)
    if args.act_zero is not None:
        cfg = cfg.replace(**{"array.act_zero": args.act_zero})
    opts = options_from_args(args)
    result = simulate_inference(str(args.workload), cfg, opts)

    outputs: list[tuple[Path, str]] = []
    if args.json is not None:
        outputs.append((args.json, result.to_json()))
    if args.scalesim_reports is not None:
        d = args.scalesim_reports
        outputs.append((d / "COMPUTE_REPORT.csv", compute_report_csv(result)))
        outputs.append((d / "BANDWIDTH_REPORT.csv", bandwidth_report_csv(result)))
        outputs.append((d / "DETAILED_ACCESS_REPORT.csv", detailed_access_report_csv(result)))
        outputs.append((d / "ENERGY_REPORT.csv", energy_report_csv(result.layers)))
    if args.report is not None:
        from nmsat.reports import check_report_folder

        check_report_folder(args.report)
    atomic_write_many([(path, text.encode("utf-8")) for path, text in outputs])
    # The result first: a report that fails afterwards does not lose it.
    top = DEFAULT_TOP if args.top is None else args.top
    sys.stdout.write(format_table(result, top=top))
    for path, _ in outputs:
        print(f"wrote {path}")
    sys.stdout.flush()
    if args.report is not None:
        from nmsat.log import status
        from nmsat.reports import build_report, make_report_folder
        from nmsat.simulator.inference_sweeps import simulate_sweeps

        status("report: simulating speedup against batch and sequence length")
        sweeps = simulate_sweeps(str(args.workload), cfg, result, opts)
        make_report_folder(args.report)
        from nmsat.commands.simulate import trace_of

        index = build_report([result], args.report, traces=trace_of(args),
                             inference_sweeps=sweeps)
        print(f"wrote {index}")
    return 0


def bound_counts(r: InferenceResult) -> dict[str, int]:
    """Layers per ``bound`` (every :class:`~nmsat.simulator.roofline.Bound`, zeros
    included, in declaration order)."""
    from nmsat.simulator.roofline import Bound

    counts = {str(b): 0 for b in Bound}
    for x in r.layers:
        counts[x.bound] += 1
    return counts


def format_table(r: InferenceResult, top: int = DEFAULT_TOP) -> str:
    """The summary ``nmsat simulate --mode inference`` prints: the totals first, then the
    ``top`` layers with the most cycles (``0``: every layer in program order)."""
    c = r.config
    what = f"  phase={r.phase}" if r.phase else ""
    lens = "".join(f"  {k}={v}" for k, v in (("seq_len", r.seq_len), ("kv_len", r.kv_len))
                   if v is not None)
    lines = [f"{r.workload}  inference{what}  nm={r.nm}  batch={r.batch}{lens}  on "
             f"{c['name']} ({c['array']['rows']}x{c['array']['cols']}x"
             f"{c['array']['macs_per_pe']} @ {c['clock_mhz']:g} MHz)",
             f"activations: act_zero={r.act_zero}, density from {r.act_density}", ""]
    rf = r.roofline
    lines.append(f"total           {r.total_cycles:,} cycles, {r.seconds * 1e3:,.3f} ms")
    if r.tokens_per_second is not None:
        lines.append(f"tokens/s        {r.tokens_per_second:,.2f} (dense "
                     f"{r.dense_tokens_per_second:,.2f})")
    lines.append(f"DRAM traffic    {r.dram_bytes / 2**20:,.1f} MiB (weights "
                 f"{r.weight_bytes / 2**20:,.1f}, KV cache {r.kv_cache_bytes / 2**20:,.1f})")
    lines.append(f"roofline        peak {rf['peak_macs_per_cycle']:,.0f} MAC/cycle, DRAM "
                 f"{rf['dram_bytes_per_cycle']:,.0f} B/cycle, ridge {rf['ridge']:.2f} MAC/B")
    counts = bound_counts(r)
    ideal_mem = sum(x.ideal_bound == "memory" for x in r.layers)
    lines.append("bounds          " + ", ".join(f"{n} {b}" for b, n in counts.items())
                 + f" of {len(r.layers)} layers (textbook roofline: {ideal_mem} "
                 f"memory-bound)")
    e = r.energy_pj
    lines.append(f"energy          {e['total'] / 1e9:,.3f} mJ")
    lines.append(f"dense           {r.dense_total_cycles:,} cycles on the same hardware")
    lines.append(f"speedup         {r.speedup_vs_dense:.3f}x over dense (weight bytes "
                 f"{r.weight_byte_ratio:.3f}x smaller)")
    lines.append("")
    shown = list(r.layers)
    if top and top < len(shown):
        shown = sorted(shown, key=lambda x: -x.total_cycles)[:top]
        lines.append(f"the {top} of {len(r.layers)} layers with the most cycles (--top N; "
                     "--top 0: every layer):")
    elif top:
        shown = sorted(shown, key=lambda x: -x.total_cycles)
        lines.append(f"all {len(r.layers)} layers, most cycles first:")
    else:
        lines.append(f"all {len(r.layers)} layers in program order:")
    # One space between columns, so a value wider than its column (a long intensity, a
    # "dependency" bound) shifts the row instead of running into its neighbour.
    widths = (-43, 13, 8, 7, 5, 10, 8, 10, 8)
    lines.append(_row(("layer", "cycles", "MiB", "MAC/B", "flow", "bound", "of peak", "ideal",
                       "speedup"), widths))
    for x in shown:
        inten = "-" if math.isinf(x.intensity) else f"{x.intensity:.1f}"
        lines.append(_row((x.name[:43], f"{x.total_cycles:,}", f"{x.dram_bytes / 2**20:.2f}",
                           inten, x.dataflow or "-", x.bound, f"{x.limiter_ratio:.1%}",
                           x.ideal_bound, f"{x.speedup_vs_dense:.2f}x"), widths))
    lines += [
        "bound: what limits the layer here (compute: the array at its peak; array: the array, "
        "its shape filling",
        "under half of it; memory: DRAM; dependency: waiting for other units); of peak: the "
        "share of that limiter's",
        "peak rate the layer reaches; ideal: the textbook roofline's bound (intensity against "
        "the ridge); flow: the",
        "dataflow of its GEMM blocks (os, ws; --dataflow)",
    ]
    return "\n".join(lines) + "\n"


def _row(cells, widths):
    """Cells joined by one space; a negative width left-aligns."""
    return " ".join(f"{c:<{-w}}" if w < 0 else f"{c:>{w}}" for c, w in zip(cells, widths)).rstrip()
