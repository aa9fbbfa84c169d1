"""Fuzz nmsat's command line with hostile inputs and print the outcomes by kind.

    python benchmarks/fuzz.py [--count 100000] [--seed 0] [--kinds config,trace,...]
                              [--jobs 2] [--messages FILE]

Generates ``--count`` inputs, split evenly over the kinds (accelerator configs, training
traces, SCALE-Sim CSVs, sweep specs, whole command lines; strategies in
``tests/fuzz_inputs.py``), runs each in-process through ``nmsat.commands.main`` under a
limit of 10 s of CPU time (60 s of wall time for a blocked run) and 1 GiB of address
space, and prints the counts of every outcome:
``ok``, ``refused`` (exit 2, one line naming a file, field or flag) and the defects
(traceback, over 10 s, over 1 GiB, partial output, non-regular file replaced, another
exit code, a multi-line message, a refusal naming nothing, a library error passed
through), with the first examples of
each defect. Exit status 1 if any defect occurred or the run was cut short (SIGTERM,
Ctrl-C: the finished chunks are still counted and printed).
"""

from __future__ import annotations

import argparse
import collections
import re
import signal
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import fuzz_inputs as F  # noqa: E402
from hypothesis import HealthCheck, Phase, given, seed, settings  # noqa: E402

_FOLD = re.compile(r"'[^']*'|\"[^\"]*\"|-?\d[\d,.e+-]*")


def _fold(msg: str) -> str:
    return _FOLD.sub("#", msg)[:160]


def run_kind(kind: str, count: int, rng_seed: Any, sandbox: F.Sandbox,
             counts: collections.Counter, examples: dict[str, list[str]],
             messages: collections.Counter, slowest: collections.Counter) -> None:
    @seed(rng_seed)
    @settings(max_examples=count, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(F.cases(kind))
    def one(case):
        files, argv = case
        sandbox.write_inputs(files)
        out = sandbox.run(argv)
        counts[(kind, out.kind)] += 1
        slowest[kind] = max(slowest[kind], sandbox.last_cpu)
        slowest[kind + " wall"] = max(slowest[kind + " wall"], sandbox.last_wall)
        if out.kind == "refused":  # distinct messages, numbers and quoted values folded
            messages[(kind, _fold(out.detail.split(" <- ")[0]))] += 1
        if out.kind in F.DEFECTS and len(examples[out.kind]) < 5:
            examples[out.kind].append(f"[{kind}] {out.detail}")

    one()


CHUNK = 1000
"""Inputs per hypothesis run: a kind's inputs run in chunks, each from its own seed
(``"SEED:KIND:CHUNK"``), so the outcome does not depend on ``--jobs``, and a run cut
short still reports every finished chunk."""


def _one_chunk(job: tuple[str, int, str]) -> tuple[str, collections.Counter, dict, float,
                                                     collections.Counter]:
    """Run ``count`` inputs of ``kind`` in a sandbox of their own."""
    kind, count, rng_seed = job
    counts: collections.Counter = collections.Counter()
    messages: collections.Counter = collections.Counter()
    slowest: collections.Counter = collections.Counter()
    examples: dict[str, list[str]] = collections.defaultdict(list)
    sandbox = F.Sandbox()
    F.valid_trace()  # train the base trace before timing anything
    k0 = time.perf_counter()
    try:
        run_kind(kind, count, rng_seed, sandbox, counts, examples, messages, slowest)
    finally:
        sandbox.close()
    return kind, counts, dict(examples), time.perf_counter() - k0, messages, slowest


class _Stop(Exception):
    pass


def _stop(signum, frame):  # noqa: ARG001
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # once: a second TERM must not cut the report
    raise _Stop


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--kinds", default=",".join(F.KINDS))
    ap.add_argument("--messages", metavar="FILE", help="write every distinct refusal "
                    "message (numbers and quoted values folded to #) with its count")
    ap.add_argument("--jobs", type=int, default=1, help="processes running chunks of "
                    f"{CHUNK:,} inputs at once (the outcome does not depend on it)")
    args = ap.parse_args(argv)
    kinds = args.kinds.split(",")
    jobs = []
    for i, kind in enumerate(kinds):
        n = args.count // len(kinds) + (1 if i < args.count % len(kinds) else 0)
        jobs += [(kind, min(CHUNK, n - j * CHUNK), f"{args.seed}:{kind}:{j}")
                 for j in range((n + CHUNK - 1) // CHUNK)]
    jobs.sort(key=lambda job: (int(job[2].rsplit(":", 1)[1]), kinds.index(job[0])))
    counts: collections.Counter = collections.Counter()
    messages: collections.Counter = collections.Counter()
    examples: dict[str, list[str]] = collections.defaultdict(list)
    secs: collections.Counter = collections.Counter()
    slowest: collections.Counter = collections.Counter()
    t0 = time.perf_counter()
    signal.signal(signal.SIGTERM, _stop)  # `timeout` ends the run: report what finished
    finished = True
    pool = None
    try:
        if args.jobs > 1:
            import multiprocessing

            pool = multiprocessing.get_context("spawn").Pool(args.jobs)
            results = pool.imap_unordered(_one_chunk, jobs)
        else:
            results = map(_one_chunk, jobs)
        for kind, c, ex, took, msgs, slow in results:
            counts.update(c)
            for k, v in slow.items():
                slowest[k] = max(slowest[k], v)
            messages.update(msgs)
            secs[kind] += took
            for o, e in ex.items():
                examples[o] += e[: 5 - len(examples[o])]
            done = sum(v for (k, _), v in counts.items() if k == kind)
            print(f"{kind:<7} {done:>7,} inputs, {sum(counts.values()):>7,} in all, "
                  f"{time.perf_counter() - t0:7.0f} s", file=sys.stderr, flush=True)
    except (_Stop, KeyboardInterrupt):
        finished = False
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()
    total = sum(counts.values())
    outcomes = ["ok", "refused", *F.DEFECTS]
    print(f"\n{total:,} inputs in {time.perf_counter() - t0:.0f} s (seed {args.seed}, "
          f"{args.jobs} job{'s' if args.jobs > 1 else ''})"
          + ("" if finished else f": INTERRUPTED, {args.count:,} asked") + "\n")
    print(f"{'outcome':<30}" + "".join(f"{k:>9}" for k in kinds) + f"{'total':>10}")
    for o in outcomes:
        row = [counts[(k, o)] for k in kinds]
        print(f"{o:<30}" + "".join(f"{v:>9,}" for v in row) + f"{sum(row):>10,}")
    print(f"{'seconds (summed over chunks)':<30}" + "".join(f"{secs[k]:>9.0f}" for k in kinds))
    print(f"{'slowest input, CPU s':<30}" + "".join(f"{slowest[k]:>9.2f}" for k in kinds))
    print(f"{'slowest input, wall s':<30}" + "".join(f"{slowest[k + ' wall']:>9.2f}"
                                                       for k in kinds))
    defects = sum(counts[(k, o)] for k in kinds for o in F.DEFECTS)
    if args.messages:
        with open(args.messages, "w") as f:
            for (k, m), n in sorted(messages.items(), key=lambda kv: -kv[1]):
                f.write(f"{n:>7} {k:<7} {m}\n")
        print(f"\n{len(messages):,} distinct refusal messages in {args.messages}")
    for o, ex in examples.items():
        print(f"\n{o}:")
        for e in ex:
            print(f"  {e[:300]}")
    return 1 if defects or not finished else 0


if __name__ == "__main__":
    sys.exit(main())
