"""Small-m tiles at full rate (issue 17, item 6): the measurements in one command.

    python benchmarks/decode_bench.py [--config PRESET|FILE] [--kv GPT2_KV LLAMA_KV]
                                      [--per-gemm-kv KV ...]

Prints

1. per GEMM of a batch-1 decode step of gpt2_small and llama_7b (dense, 2:4 and 2:8) on
   the config (default vcu1525): its share of the DRAM roof, DRAM cycles / simulated cycles
   (1.0 = the layer takes exactly as long as its bytes at the full DRAM bandwidth), the
   lowest, median, highest and mean over the weight projections, the lowest over the
   attention products (KV-cache reads), the N:M speedup of the step against its
   weight-byte ratio, and the largest per-projection speedup divided by that layer's own
   byte ratio (dense bytes / N:M bytes; at most 1 when the speedup stays under the byte
   ratio);
2. per GEMM kind (every weight projection and both attention products, the decoder
   layer's index stripped: ``h.*.attn.context``) of the same models at each
   ``--per-gemm-kv`` length (default 16 and 1,024) and pattern: the lowest, median and
   highest DRAM-roof share over the layers of that kind, the bound the simulator names
   for the lowest, and the step's N:M speedup against its weight-byte ratio;
3. the cycles per 8 x 8 weight block of a dense 1 x 512 x 1,000 GEMV on an 8 x 8 WS array
   (P = 1, La = 4) with and without shadow weights (closed-form tile model), and the
   per-cycle model's cycles on a smaller GEMV (1 x 64 x 80) next to the closed form's.
"""

from __future__ import annotations

import argparse
import re
import sys

import numpy as np

from nmsat.arith import ceil_div
from nmsat.config import VCU1525, resolve
from nmsat.dataflow import timing
from nmsat.simulator.inference import InferenceOptions, simulate_inference
from nmsat.simulator.percycle import simulate
from nmsat.types import NM, Dataflow


def decode(cfg, kvs: dict[str, int]) -> None:
    print(f"1. Batch-1 decode on {cfg.name} (shadow_weights = {cfg.array.shadow_weights}, "
          f"weight_load_ports = {cfg.array.weight_load_ports}): DRAM cycles / cycles per GEMM")
    print(f"   {'model':<12}{'KV':>6}{'N:M':>5}{'proj min':>10}{'median':>8}{'max':>7}"
          f"{'mean':>7}{'attn min':>10}{'speedup':>9}{'bytes':>8}{'max proj/ratio':>16}")
    for name, kv in kvs.items():
        for nm in ("1:1", "2:4", "2:8"):
            r = simulate_inference(name, cfg, InferenceOptions(nm=nm, phase="decode",
                                                               kv_len=kv, batch=1))
            proj = [x for x in r.layers if x.weight_bytes > 0 and x.total_cycles]
            attn = [x for x in r.layers if x.kv_cache_bytes > 0 and x.total_cycles]
            share = [x.dram_cycles / x.total_cycles for x in proj]
            worst = min(proj, key=lambda x: x.dram_cycles / x.total_cycles)
            att = min((x.dram_cycles / x.total_cycles for x in attn), default=float("nan"))
            # the largest per-projection speedup over that layer's own byte ratio
            top = max(x.speedup_vs_dense * x.dram_bytes / x.dense_dram_bytes for x in proj)
            print(f"   {name:<12}{kv:>6}{nm:>5}{min(share):>10.3f}{np.median(share):>8.3f}"
                  f"{max(share):>7.3f}{np.mean(share):>7.3f}{att:>10.3f}"
                  f"{r.speedup_vs_dense:>8.3f}x{r.weight_byte_ratio:>7.3f}x"
                  f"{top:>16.3f}   (lowest: {worst.name})")


def gemm_kind(name: str) -> str:
    """A layer's GEMM kind: its name with the decoder-layer index replaced by ``*``."""
    return re.sub(r"\.\d+\.", ".*.", name)


def per_gemm(r) -> dict[str, list]:
    """Every GEMM layer of an inference result (weight projections and KV-cache products)
    grouped by :func:`gemm_kind`, in program order."""
    out: dict[str, list] = {}
    for x in r.layers:
        if (x.weight_bytes > 0 or x.kv_cache_bytes > 0) and x.total_cycles:
            out.setdefault(gemm_kind(x.name), []).append(x)
    return out


def every_gemm(cfg, models: tuple[str, ...], kvs: tuple[int, ...]) -> None:
    print(f"\n2. Every GEMM of a batch-1 decode step on {cfg.name}: DRAM cycles / cycles, "
          "lowest, median, highest over the layers of each kind")
    for name in models:
        for kv in kvs:
            for nm in ("1:1", "2:4", "2:8"):
                r = simulate_inference(name, cfg, InferenceOptions(nm=nm, phase="decode",
                                                                   kv_len=kv, batch=1))
                print(f"   {name} KV {kv} {nm}: step speedup {r.speedup_vs_dense:.3f}x, "
                      f"weight-byte ratio {r.weight_byte_ratio:.3f}x")
                for kind, xs in per_gemm(r).items():
                    share = [x.dram_cycles / x.total_cycles for x in xs]
                    lo = min(xs, key=lambda x: x.dram_cycles / x.total_cycles)
                    print(f"     {kind:<44}{len(xs):>4}{min(share):>8.3f}"
                          f"{np.median(share):>8.3f}{max(share):>8.3f}  {lo.bound:<7}"
                          f"{lo.total_cycles:>10,} cycles {lo.dram_bytes:>12,} B")


def gemv_8x8() -> None:
    print("\n3. Dense 1 x 512 x 1,000 GEMV on an 8 x 8 WS array (P = 1, La = 4): cycles per "
          "8 x 8 weight block")
    base = VCU1525.replace(**{"array.rows": 8, "array.cols": 8, "array.macs_per_pe": 1,
                              "array.act_window": 1, "array.nm_patterns": [],
                              "array.weight_load_ports": 1})
    blocks = ceil_div(512, 8) * ceil_div(1000, 8)
    for shadow in (True, False):
        cfg = base.replace(**{"array.shadow_weights": shadow})
        cyc = timing.block_cycles(Dataflow.WS, 1, 1000, 512, NM(1, 1), True, cfg)
        print(f"   shadow_weights = {shadow!s:<6} {cyc:>8,} cycles / {blocks:,} blocks = "
              f"{cyc / blocks:.2f}")
    cfg = base.replace(**{"array.shadow_weights": True})
    rng = np.random.default_rng(0)
    a, b = rng.integers(-3, 4, (1, 64)), rng.integers(-3, 4, (64, 80))
    res = simulate(a, b, cfg=cfg, dataflow="ws", interleave=True, dtype="int8")
    fast = timing.block_cycles(Dataflow.WS, 1, 80, 64, NM(1, 1), True, cfg)
    ok = bool((res.out == a @ b).all())
    print(f"   per-cycle model, 1 x 64 x 80 (80 blocks): {res.cycles} cycles, closed form "
          f"{fast}, values exact: {ok}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="vcu1525")
    ap.add_argument("--kv", nargs=2, type=int, default=(16, 2048),
                    metavar=("GPT2_KV", "LLAMA_KV"))
    ap.add_argument("--per-gemm-kv", nargs="+", type=int, default=(16, 1024), metavar="KV")
    args = ap.parse_args(argv)
    cfg = resolve(args.config)
    decode(cfg, {"gpt2_small": args.kv[0], "llama_7b": args.kv[1]})
    every_gemm(cfg, ("gpt2_small", "llama_7b"), tuple(args.per_gemm_kv))
    gemv_8x8()
    return 0


if __name__ == "__main__":
    sys.exit(main())
