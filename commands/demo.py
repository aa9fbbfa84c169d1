"""``nmsat demo``: the reference model's own demonstration on a small layer.

It runs one BDWP training step of a linear layer through the engine arithmetic and
prints what each piece of the reference model gives, checked against float64 math.
"""

from __future__ import annotations

import argparse

from nmsat.commands import examples, nm_pattern, non_negative_int, summary
from nmsat.types import DEFAULT_NM


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help=summary("demo"),
                       epilog=examples("nmsat demo", "nmsat demo --nm 2:4 --seed 3"))
    p.add_argument("--nm", type=nm_pattern, default=str(DEFAULT_NM),
                   help=f"N:M pattern (default {DEFAULT_NM})")
    p.add_argument("--seed", type=non_negative_int, default=0,
                   help="seed of the random layer (default 0)")
    p.add_argument("--config", default="vcu1525", metavar="PRESET|FILE")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from nmsat import config, reference
    from nmsat.types import NM

    nm = NM.parse(args.nm)
    cfg = config.resolve(args.config)
    arr = cfg.array
    arr.k_per_cycle(nm)  # raises if the array does not support the pattern
    dtype = cfg.numerics.operand
    if not dtype.is_float:
        raise ValueError(f"the demo runs a training step, which needs a float numerics.dtype "
                         f"(fp16 or bf16), not {dtype}")
    rng = np.random.default_rng(args.seed)
    out_f, in_f, batch = 64, 128, 16
    w = rng.standard_normal((out_f, in_f)).astype(np.float32) * 0.1
    x = rng.standard_normal((batch, in_f)).astype(np.float32)
    dy = rng.standard_normal((batch, out_f)).astype(np.float32)
    step = reference.train_step(w, x, dy, method="bdwp", nm=nm, dtype=dtype,
                                lanes=arr.macs_per_pe, act_window=arr.act_window,
                                momentum=cfg.weight_update.momentum)
    m_ff, m_bp = reference.bdwp_masks(reference.quantize(w, dtype).astype(np.float32), nm)
    dense_b = reference.dense_bytes(w.shape, dtype)
    comp_b = reference.compressed_bytes(w.shape, nm, 1, dtype)
    x16 = reference.quantize(x, dtype).astype(np.float64)
    dy16 = reference.quantize(dy, dtype).astype(np.float64)
    y64 = x16 @ step.w_ff.astype(np.float64).T
    dx64 = dy16 @ step.w_bp.astype(np.float64)
    dw64 = dy16.T @ x16
    print(f"nmsat reference model: one BDWP {nm} training step of a {in_f}->{out_f} linear "
          f"layer, batch {batch}, {dtype} x {dtype} -> fp32 on {cfg.name} lanes "
          f"(P={arr.macs_per_pe}, A={arr.act_window})")
    rows = [
        ("FF mask density (groups along in)", f"{m_ff.mean():.4f}", f"{nm.density:.4f} expected"),
        ("BP mask density (groups along out)", f"{m_bp.mean():.4f}", f"{nm.density:.4f} expected"),
        ("FF and BP masks agree on", f"{(m_ff == m_bp).mean():.1%}", "of weights"),
        (f"compressed weight bytes ({dtype})", f"{comp_b}",
         f"{comp_b / dense_b:.2%} of dense {dense_b}"),
        ("engine K per cycle, dense -> N:M", f"{arr.macs_per_pe} -> {arr.k_per_cycle(nm)}",
         f"peak speedup {arr.sparse_speedup(nm):g}x"),
        ("FF  max |engine - float64|", f"{np.abs(step.y - y64).max():.2e}", "fp32 rounding"),
        ("BP  max |engine - float64|", f"{np.abs(step.dx - dx64).max():.2e}", "fp32 rounding"),
        ("WG  max |engine - float64|", f"{np.abs(step.dw - dw64).max():.2e}", "fp32 rounding"),
        ("weights changed by the update", f"{(step.w_master != w).mean():.1%}", "SGD, momentum"),
    ]
    width = max(len(r[0]) for r in rows)
    for name, value, note in rows:
        print(f"  {name:<{width}}  {value:>14}  {note}")
    return 0
