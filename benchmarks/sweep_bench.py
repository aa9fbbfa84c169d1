"""Sweep throughput: a 1,000-point design-space sweep over ResNet-18 training, run with 1 and
with 2 local Dask workers; prints points per second of each and their ratio.

    python benchmarks/sweep_bench.py [--points N] [--workers 1 2]

The sweep: BDWP/SR-STE training of ResNet-18 (batch 32) on the vcu1525 preset, over array
rows and columns, weight-buffer size, DRAM channels, method and N:M pattern (1,024 grid
points), of which a seeded random sample of ``--points`` is run. Throughput is points stored
per second from the first submission to the last stored point, with the local cluster
already up; its start-up time is printed separately. Each run writes its own store in a
temporary folder; the stores are checked to hold identical results.

The points are split into ``--rounds`` slices of whole worker tasks (the groups of
:func:`nmsat.simulator.sweep.group_points` over all the points, dealt round-robin), so a
slice shares programs and dense baselines as the whole sweep does. Beside the wall-clock
rate, each round reads the CPU time the worker processes spent (``client.run``), so the
points per CPU-second of a worker are measured even when other jobs share the machine;
the rate of each round, their minimum and median, and the load average are printed.

``--in-process N`` runs no cluster: it evaluates the first N points of the first round's
slice in this process, as one worker does (task by task, one run cache), and prints the
points per CPU-second of this process and the SHA-256 of the N records without their host
columns (equal digests: identical results). Repeat it alternately on two trees of the code
to compare their speed on a busy machine.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

from nmsat.simulator import sweep, sweep_spec

SPEC = {
    "name": "resnet18-bench",
    "base": "vcu1525",
    "workloads": ["resnet18"],
    "options": {"batch": 32, "mode": "train"},
    "axes": {
        "array.rows": [8, 16, 32, 64],
        "array.cols": [8, 16, 32, 64],
        "buffers.weight.kib": [256, 512, 1024, 2048],
        "dram.channels": [1, 2, 3, 4],
        "method": ["srste", "bdwp"],
        "nm": ["2:4", "2:8"],
    },
}


RESULT_COLUMNS = [c for c in sweep.POINT_COLUMNS if c not in sweep.HOST_COLUMNS]


def result_columns(path: Path) -> list[tuple]:
    with sqlite3.connect(path) as conn:
        return conn.execute(f"SELECT {', '.join(RESULT_COLUMNS)} FROM points "
                            f"ORDER BY key").fetchall()


def _process_cpu() -> float:
    return time.process_time()


def worker_cpu(cluster: sweep.DaskCluster) -> float:
    """CPU seconds spent so far by all the cluster's worker processes together."""
    return sum(cluster.client.run(_process_cpu).values())


def in_process(spec: sweep_spec.SweepSpec, n: int, rounds: int) -> int:
    """Evaluate the first ``n`` points of the first round's slice here, as a worker does."""
    groups = sweep.group_points(spec.points())
    chunk = [p for g in groups[0::rounds] for p in g][:n]
    sweep._workload("resnet18", 32, None)  # built once per worker process, not timed
    c0 = time.process_time()
    records = [sweep.evaluate_point(sweep.PointTask.of(p))
               for g in sweep.group_points(chunk) for p in g]
    spent = time.process_time() - c0
    digest = hashlib.sha256()
    for r in sorted(records, key=lambda r: r["key"]):
        kept = {k: v for k, v in r.items() if k not in sweep.HOST_COLUMNS}
        digest.update(json.dumps(kept, sort_keys=True).encode())
    failed = sum(r["status"] != "ok" for r in records)
    print(f"in process: {len(records)} points ({failed} failed) in {spent:.2f} CPU-s -> "
          f"{len(records) / spent:.2f} points per CPU-second (load average "
          f"{os.getloadavg()[0]:.1f}); results sha256 {digest.hexdigest()[:16]}", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=1000, help="points to run (default 1000)")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2],
                    help="local worker counts to compare (default: 1 2)")
    ap.add_argument("--rounds", type=int, default=10,
                    help="interleave the worker counts over this many slices of the points "
                         "(default 10)")
    ap.add_argument("--in-process", type=int, metavar="N", default=0,
                    help="no cluster: evaluate the first N points of the first round in "
                         "this process; print points per CPU-second and the results' digest")
    args = ap.parse_args(argv)

    spec = sweep_spec.from_dict(dict(SPEC, sample={"count": args.points, "seed": 1}),
                                "sweep_bench")
    if args.in_process:
        return in_process(spec, args.in_process, args.rounds)
    print(f"{args.points} points of {spec.grid_size} (ResNet-18 training, batch 32); "
          f"{sweep.default_workers()} CPUs", flush=True)
    points = spec.points()
    groups = sweep.group_points(points)
    chunks = [tuple(p for g in groups[i::args.rounds] for p in g) for i in range(args.rounds)]
    busy = {n: 0.0 for n in args.workers}
    done = {n: 0 for n in args.workers}
    cpu = {n: 0.0 for n in args.workers}
    wall_rates: dict[int, list[float]] = {n: [] for n in args.workers}
    cpu_rates: dict[int, list[float]] = {n: [] for n in args.workers}
    stores: dict[int, Path] = {}
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        clusters = {}
        for n in args.workers:
            t0 = time.perf_counter()
            clusters[n] = stack.enter_context(sweep.DaskCluster(workers=n))
            print(f"local cluster with {n} workers up in {time.perf_counter() - t0:.1f} s",
                  flush=True)
            stores[n] = Path(tmp) / f"w{n}.sqlite"
        for r, chunk in enumerate(chunks):
            # alternate the order so a drift in the machine's other load hits both alike
            for n in (args.workers if r % 2 == 0 else args.workers[::-1]):
                part = sweep.SweepPlan(spec, chunk, chunk)
                load0 = os.getloadavg()[0]
                c0 = worker_cpu(clusters[n])
                summary = sweep.run(part, stores[n], clusters[n])
                spent = worker_cpu(clusters[n]) - c0
                pts = summary.ok + summary.failed
                busy[n] += summary.seconds
                done[n] += pts
                cpu[n] += spent
                wall_rates[n].append(summary.points_per_second)
                cpu_rates[n].append(pts / spent)
                print(f"round {r + 1}/{args.rounds} workers={n}: {summary.ok} ok, "
                      f"{summary.failed} failed, {summary.points_per_second:.2f} points/s, "
                      f"{pts / spent:.2f} points per worker CPU-second (load average "
                      f"{load0:.1f} -> {os.getloadavg()[0]:.1f})", flush=True)
        rates = {n: done[n] / busy[n] for n in args.workers}
        for n in args.workers:
            with sqlite3.connect(stores[n]) as conn:
                (per_point,) = conn.execute("SELECT avg(elapsed_s) FROM points").fetchone()
            # a worker's wall time per point grows only when the workers lack CPU
            print(f"workers={n}: {done[n]} points in {busy[n]:.1f} s -> {rates[n]:.2f} "
                  f"points/s (rounds: min {min(wall_rates[n]):.2f}, median "
                  f"{statistics.median(wall_rates[n]):.2f}); {per_point:.3f} s per point "
                  f"inside a worker", flush=True)
            print(f"workers={n}: {done[n] / cpu[n]:.2f} points per worker CPU-second "
                  f"(rounds: min {min(cpu_rates[n]):.2f}, median "
                  f"{statistics.median(cpu_rates[n]):.2f}, max {max(cpu_rates[n]):.2f})",
                  flush=True)
        ref = result_columns(stores[args.workers[0]])
        same = True
        for n in args.workers[1:]:
            other = result_columns(stores[n])
            diff = [(a, b) for a, b in zip(ref, other) if a != b]
            if diff or len(other) != len(ref):
                same = False
                a, b = diff[0] if diff else (None, None)
                cols = [c for c, x, y in zip(RESULT_COLUMNS, a or (), b or ()) if x != y]
                print(f"workers={n}: {len(diff)} of {len(ref)} points differ from "
                      f"workers={args.workers[0]} (first: {a and a[0][:12]}, columns "
                      f"{', '.join(cols)})")
        print(f"stores identical across worker counts: {same}")
    if 1 in rates and 2 in rates:
        print(f"speedup 2 workers / 1 worker: {rates[2] / rates[1]:.2f}x (target >= 1.8x)")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
