"""Inference figures and simulation speed: the issue-7 measurements in one command.

    python benchmarks/inference_bench.py [--figures DIR] [--repeat N]

Prints

1. compute-bound N:M speedups on a large GEMM (4096 x 4096 weights, batch 4096 on
   vcu1525; 1024 x 1024, batch 512 on small) per pattern, against the engine's peak
   sparse ratio (``docs/architecture.md`` section 3.1);
2. batch-1 decode speedups of gpt2_small and llama_7b (KV 16 and 2,048) on both presets,
   against the weight-byte ratio, with the share of GEMM cycles that is memory-bound;
3. the wall time of simulating one 7B decode step (batch 1, KV 2,048, 2:4) on vcu1525:
   the N:M pass alone, and the whole ``simulate_inference`` call that also simulates
   the dense baseline (wall and CPU seconds, best of ``--repeat``).

``--figures DIR`` also writes the roofline (llama_7b decode) and the speedup-vs-batch and
speedup-vs-sequence-length figures (gpt2_small) as PNG and SVG.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time

from nmsat.config import SMALL, VCU1525
from nmsat.simulator import inference as inf
from nmsat.simulator.inference import InferenceOptions, InferenceWorkload, simulate_inference
from nmsat.types import NM
from nmsat.workloads.layers import Linear, Workload

PATTERNS = ("1:4", "2:4", "4:8", "2:8", "1:8")
GEMM = {"vcu1525": (4096, 4096, 4096), "small": (1024, 1024, 512)}


def compute_bound() -> None:
    print("1. Compute-bound GEMM: N:M speedup over dense vs the engine's peak ratio")
    print(f"   {'preset':<9}{'GEMM k x n, batch':<22}{'N:M':<6}{'speedup':>9}{'peak':>7}"
          f"{'of peak':>9}")
    for cfg in (VCU1525, SMALL):
        k, n, m = GEMM[cfg.name]
        w = Workload("gemm", (Linear("fc", in_features=k, out_features=n),), batch=m)
        for nm in PATTERNS:
            r = simulate_inference(InferenceWorkload(w), cfg, InferenceOptions(nm=nm, batch=m))
            peak = cfg.array.sparse_speedup(NM.parse(nm))
            print(f"   {cfg.name:<9}{f'{k} x {n}, {m}':<22}{nm:<6}{r.speedup_vs_dense:>8.3f}x"
                  f"{peak:>6.1f}x{r.speedup_vs_dense / peak:>9.1%}")


def decode() -> None:
    print("\n2. Decode, batch 1: N:M speedup vs the weight-byte ratio (dense / compressed)")
    print(f"   {'preset':<9}{'model':<12}{'KV':>6}{'N:M':>5}{'speedup':>9}{'bytes':>8}"
          f"{'mem-bound GEMM cycles':>23}{'tokens/s':>10}")
    for cfg in (VCU1525, SMALL):
        for name in ("gpt2_small", "llama_7b"):
            for kv in (16, 2048 if name == "llama_7b" else 1024):
                for nm in ("2:4", "2:8"):
                    r = simulate_inference(name, cfg, InferenceOptions(
                        nm=nm, phase="decode", kv_len=kv, batch=1))
                    gemm = [x for x in r.layers if x.dense_macs]
                    mem = sum(x.total_cycles for x in gemm if x.bound == "memory")
                    share = mem / sum(x.total_cycles for x in gemm)
                    print(f"   {cfg.name:<9}{name:<12}{kv:>6}{nm:>5}{r.speedup_vs_dense:>8.3f}x"
                          f"{r.weight_byte_ratio:>7.3f}x{share:>23.1%}"
                          f"{r.tokens_per_second:>10.3f}")


def speed(repeat: int) -> None:
    print("\n3. Simulating one llama_7b decode step (batch 1, KV 2,048, 2:4) on vcu1525")
    opts = InferenceOptions(nm="2:4", phase="decode", kv_len=2048, batch=1)
    iw = inf.load("llama_7b", opts)
    one, both = [], []  # (wall, CPU) seconds: the machine may be shared
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        inf._simulate_pass(iw, VCU1525, opts.nm, opts.density, opts)
        one.append((time.perf_counter() - t0, time.process_time() - c0))
        t0, c0 = time.perf_counter(), time.process_time()
        r = simulate_inference(iw, VCU1525, opts)
        both.append((time.perf_counter() - t0, time.process_time() - c0))
    full = simulate_inference(iw, VCU1525, dataclasses.replace(opts, exact=True))
    print(f"   N:M step alone           {min(one)[0]:.3f} s wall, {min(c for _, c in one):.3f} "
          f"s CPU (best of {repeat})")
    print(f"   with the dense baseline  {min(both)[0]:.3f} s wall, "
          f"{min(c for _, c in both):.3f} s CPU")
    same = dataclasses.replace(r, extended_layers=False).to_dict() == full.to_dict()
    print(f"   identical-layer extension used: {r.extended_layers}; equals full "
          f"simulation: {same}")
    print(f"   {r.total_cycles:,} cycles = {r.seconds * 1e3:.1f} ms per token "
          f"({r.tokens_per_second:.3f} tokens/s; dense {r.dense_tokens_per_second:.3f})")


def figures(out: str) -> None:
    from nmsat.reports import inference_figures as F
    from nmsat.simulator import inference_sweeps as S

    r = simulate_inference("llama_7b", VCU1525, InferenceOptions(
        nm="2:4", phase="decode", kv_len=2048, batch=1))
    plots = [F.roofline_figure(r)]
    for cfg in (VCU1525, SMALL):
        b = F.speedup_batch_figure(S.speedup_vs_batch(
            "gpt2_small", cfg, ["2:4", "2:8"], [1, 2, 4, 8, 16, 32, 64, 128],
            phase="decode", kv_len=128))
        s = F.speedup_seq_figure(S.speedup_vs_seq_len(
            "gpt2_small", cfg, ["2:4", "2:8"], [16, 64, 256, 1024], phase="prefill"))
        for p in (b, s):
            plots.append(dataclasses.replace(p, name=f"{p.name}-{cfg.name}"))
    for p in F.write_figures(plots, out):
        print(f"wrote {p}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--figures", metavar="DIR", default=None)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args(argv)
    compute_bound()
    decode()
    speed(a.repeat)
    if a.figures:
        figures(a.figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
