"""``python benchmarks/cli_startup.py [-n N]``: how fast ``nmsat`` answers as a whole process.

Prints, for ``nmsat --version``, ``nmsat --help``, ``nmsat config list`` and
``nmsat simulate --help``, the best of N runs (default 7) of the child process's CPU time
(user + system; on a shared machine wall-clock time mostly measures the other processes)
and its wall time, next to the bare interpreter (``python -c pass``) with the same
``site`` setup, so the difference is what nmsat itself costs. The issue's target: under
0.1 s for ``--version`` and ``--help``.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import time

CASES = (
    ("python -c pass", ["-c", "pass"]),
    ("nmsat --version", ["-m", "nmsat", "--version"]),
    ("nmsat --help", ["-m", "nmsat", "--help"]),
    ("nmsat config list", ["-m", "nmsat", "config", "list"]),
    ("nmsat simulate --help", ["-m", "nmsat", "simulate", "--help"]),
)


def measure(args: list[str], n: int) -> tuple[float, float]:
    """Best CPU seconds and best wall seconds of ``n`` runs of ``python args``."""
    cpu, wall = float("inf"), float("inf")
    for _ in range(n):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        subprocess.run([sys.executable, *args], check=True, stdout=subprocess.DEVNULL)
        wall = min(wall, time.perf_counter() - t0)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = min(cpu, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime))
    return cpu, wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=7, help="runs per case (best is kept)")
    n = ap.parse_args().n
    print(f"{'command':<24}{'CPU s':>8}{'wall s':>8}   (best of {n})")
    for name, args in CASES:
        cpu, wall = measure(args, n)
        print(f"{name:<24}{cpu:>8.3f}{wall:>8.3f}")


if __name__ == "__main__":
    main()
