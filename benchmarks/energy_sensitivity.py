"""Energy sensitivity: does the ranking of the zoo's sparse-over-dense energy savings change
when each energy coefficient sits at either end of its range?

For every training model of the zoo, one BDWP 2:8 and one dense training iteration on
the ``vcu1525`` preset are simulated once; energy is linear in the activity counts, so
each coefficient setting re-prices the same counts (:func:`nmsat.simulator.energy.energy`
of the run's counts over its cycles) without simulating again. Saving = dense energy /
BDWP energy. For each mode, and each coefficient of that mode (plus ``dram_byte``) at its
``low`` and ``high``, the script prints the models' savings, whether the ranking differs
from the default coefficients' ranking, and which adjacent pairs swap.

    python benchmarks/energy_sensitivity.py [--batch 32] [--models a,b] [--json out.json]

The answer is in ``docs/energy.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from nmsat import config
from nmsat.energy_config import entries
from nmsat.simulator.api import SimOptions, simulate
from nmsat.simulator.energy import ActivityCounts, energy
from nmsat.workloads import zoo

MODELS = ("resnet18", "resnet50", "vgg16", "mobilenet_v2", "vit_b_16", "bert_base",
          "resnet18_cifar", "resnet50_cifar", "vgg16_cifar", "mobilenet_v2_cifar", "mlp", "cnn")


def activity(models, batch: int, cfg) -> dict[str, dict[str, tuple[ActivityCounts, int]]]:
    """Per model, the (counts, cycles) of its BDWP 2:8 and its dense training iteration."""
    out = {}
    for m in models:
        wl = zoo.get(m, batch=batch)
        runs = {}
        for name, opts in (("bdwp", SimOptions.create("bdwp", "2:8", events=False)),
                           ("dense", SimOptions.create("dense", "1:1", events=False))):
            r = simulate(wl, cfg, opts)
            runs[name] = (ActivityCounts(**r.counts), r.total_cycles)
        out[m] = runs
    return out


def savings(act, cfg) -> dict[str, float]:
    def total(run: tuple[ActivityCounts, int]) -> float:
        return energy(run[0], cfg, run[1])["total"]

    return {m: total(r["dense"]) / total(r["bdwp"]) for m, r in act.items()}


def ranking(s: dict[str, float]) -> list[str]:
    return sorted(s, key=lambda m: (-s[m], m))


def analyse(act, base_cfg, mode: str) -> dict:
    cfg0 = base_cfg.replace(**{"energy.mode": mode})
    base = savings(act, cfg0)
    order = ranking(base)
    rows = []
    for name, e in entries(cfg0.energy):
        if not (name == "dram_byte" or name.startswith(mode + ".")):
            continue
        for end in ("low", "high"):
            v = getattr(e, end)
            cfg = cfg0.replace(**{f"energy.{name}.value": v})
            s = savings(act, cfg)
            o = ranking(s)
            swaps = [f"{a}<->{b}" for a, b in zip(order, o) if a != b]
            rows.append({"coefficient": name, "end": end, "value": v, "savings": s,
                         "ranking_changed": o != order, "ranking": o,
                         "moved": swaps})
    return {"mode": mode, "savings": base, "ranking": order, "settings": rows}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    act = activity(args.models.split(","), args.batch, config.VCU1525)
    sim = time.perf_counter() - t0
    results = [analyse(act, config.VCU1525, mode) for mode in ("fpga", "asic")]
    print("static share of a BDWP 2:8 iteration (fpga, default coefficients):")
    for m, r in act.items():
        e = energy(r["bdwp"][0], config.VCU1525, r["bdwp"][1])
        print(f"  {m:<20}{e['static'] / e['total']:6.1%}  ({e['total'] / 1e9:,.1f} mJ)")
    for res in results:
        print(f"\n== energy.mode = {res['mode']}: saving (dense / BDWP 2:8 energy), "
              f"batch {args.batch}")
        print("default ranking: " + ", ".join(f"{m} {res['savings'][m]:.3f}"
                                            for m in res["ranking"]))
        changed = [r for r in res["settings"] if r["ranking_changed"]]
        for r in res["settings"]:
            lo, hi = min(r["savings"].values()), max(r["savings"].values())
            flag = "CHANGED " + " ".join(r["moved"]) if r["ranking_changed"] else "same"
            print(f"  {r['coefficient']:<28}{r['end']:<5}{r['value']:>10g}  savings "
                  f"{lo:.3f}..{hi:.3f}  ranking {flag}")
        print(f"ranking changes in {len(changed)} of {len(res['settings'])} settings")
    print(f"\nsimulated {2 * len(act)} iterations in {sim:.1f} s")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
