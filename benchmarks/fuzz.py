"""Fuzz nmsat's command line with hostile inputs and print the outcomes by kind.

    python benchmarks/fuzz.py [--count 100000] [--seed 0] [--kinds config,trace,...]
                              [--jobs 2]

Generates ``--count`` inputs, split evenly over the kinds (accelerator configs, training
traces, SCALE-Sim CSVs, sweep specs, whole command lines; strategies in
``tests/fuzz_inputs.py``), runs each in-process through ``nmsat.commands.main`` under a
10 s timer and a 1 GiB address-space limit, and prints the counts of every outcome:
``ok``, ``refused`` (exit 2, one line naming a file, field or flag) and the defects
(traceback, over 10 s, over 1 GiB, partial output, non-regular file replaced, another
exit code, a multi-line message, a refusal naming nothing), with the first examples of
each defect. Exit status 1 if any defect occurred.
"""

from __future__ import annotations

import argparse
import collections
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import fuzz_inputs as F  # noqa: E402
from hypothesis import HealthCheck, Phase, given, seed, settings  # noqa: E402


_FOLD = re.compile(r"'[^']*'|\"[^\"]*\"|-?\d[\d,.e+-]*")


def _fold(msg: str) -> str:
    return _FOLD.sub("#", msg)[:160]


def run_kind(kind: str, count: int, rng_seed: int, sandbox: F.Sandbox,
             counts: collections.Counter, examples: dict[str, list[str]],
             messages: collections.Counter) -> None:
    @seed(rng_seed)
    @settings(max_examples=count, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(F.cases(kind))
    def one(case):
        files, argv = case
        sandbox.write_inputs(files)
        out = sandbox.run(argv)
        counts[(kind, out.kind)] += 1
        if out.kind == "refused":  # distinct messages, numbers and quoted values folded
            messages[(kind, _fold(out.detail.split(" <- ")[0]))] += 1
        if out.kind in F.DEFECTS and len(examples[out.kind]) < 5:
            examples[out.kind].append(f"[{kind}] {out.detail}")

    one()


def _one_kind(job: tuple[str, int, int]) -> tuple[str, collections.Counter, dict, float]:
    """Run ``count`` inputs of ``kind`` in a sandbox of their own (a worker process)."""
    kind, count, rng_seed = job
    counts: collections.Counter = collections.Counter()
    messages: collections.Counter = collections.Counter()
    examples: dict[str, list[str]] = collections.defaultdict(list)
    sandbox = F.Sandbox()
    F.valid_trace()  # train the base trace before timing anything
    k0 = time.perf_counter()
    try:
        run_kind(kind, count, rng_seed, sandbox, counts, examples, messages)
    finally:
        sandbox.close()
    return kind, counts, dict(examples), time.perf_counter() - k0, messages


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--kinds", default=",".join(F.KINDS))
    ap.add_argument("--messages", metavar="FILE", help="write every distinct refusal "
                    "message (numbers and quoted values folded to #) with its count")
    ap.add_argument("--jobs", type=int, default=1, help="kinds run in this many processes "
                    "at once (each kind keeps its own seed: the counts do not depend on it)")
    args = ap.parse_args(argv)
    kinds = args.kinds.split(",")
    jobs = [(kind, args.count // len(kinds) + (1 if i < args.count % len(kinds) else 0),
             args.seed + i) for i, kind in enumerate(kinds)]
    counts: collections.Counter = collections.Counter()
    examples: dict[str, list[str]] = collections.defaultdict(list)
    t0 = time.perf_counter()
    if args.jobs > 1:
        import multiprocessing

        with multiprocessing.get_context("spawn").Pool(min(args.jobs, len(jobs))) as pool:
            results = pool.imap_unordered(_one_kind, jobs)
            done = list(_report_each(results))
    else:
        done = list(_report_each(map(_one_kind, jobs)))
    messages: collections.Counter = collections.Counter()
    for _kind, c, ex, _s, msgs in done:
        counts.update(c)
        messages.update(msgs)
        for o, e in ex.items():
            examples[o] += e[: 5 - len(examples[o])]
    total = sum(counts.values())
    outcomes = ["ok", "refused", *F.DEFECTS]
    print(f"\n{total:,} inputs in {time.perf_counter() - t0:.0f} s (seed {args.seed}, "
          f"{args.jobs} job{'s' if args.jobs > 1 else ''})\n")
    print(f"{'outcome':<30}" + "".join(f"{k:>9}" for k in kinds) + f"{'total':>10}")
    for o in outcomes:
        row = [counts[(k, o)] for k in kinds]
        print(f"{o:<30}" + "".join(f"{v:>9,}" for v in row) + f"{sum(row):>10,}")
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
    return 1 if defects else 0


def _report_each(results):
    for kind, c, ex, secs, msgs in results:
        print(f"{kind:<7} {sum(c.values()):>7,} inputs in {secs:7.1f} s", file=sys.stderr,
              flush=True)
        yield kind, c, ex, secs, msgs


if __name__ == "__main__":
    sys.exit(main())
