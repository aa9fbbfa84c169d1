"""nmsat's engine cycles next to SCALE-Sim's compute cycles, layer by layer, on SCALE-Sim's
own topologies and configs (tests/data/scalesim, from scale-sim-v3).

    python -m benchmarks.scalesim_compare [TOPOLOGY.csv CONFIG.cfg ...]

SCALE-Sim's count is its v2 code's per-fold formula (docs/scalesim.md: OS R + C + T - 2,
WS 2R + C + T - 2 per fold; folds = ceil(Sr/R) ceil(Sc/C)), not a run of SCALE-Sim.
nmsat runs the same layer as SCALE-Sim configures it (`--config FILE.cfg`: one MAC per PE,
no adder latency, 1-byte words), dense, batch 1, interleave mapping off (SCALE-Sim does not
overlap folds). Printed per layer: both counts, the difference, and the difference the
fill/drain conventions predict (OS: R per fold, nmsat's output drain; WS: 1 per fold, the
bottom PE's accumulate), and nmsat's tile count.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

DATA = Path(__file__).resolve().parents[1] / "tests" / "data" / "scalesim"
DEFAULT = [
    (DATA / "topologies" / "conv_nets" / "alexnet.csv", DATA / "configs" / "ref_32x32_os_user.cfg"),
    (DATA / "topologies" / "conv_nets" / "alexnet.csv", DATA / "configs" / "ref_32x32_ws_user.cfg"),
]


def scalesim_cycles(layer, rows: int, cols: int, dataflow: str) -> tuple[int, int]:
    """(compute cycles, folds) of SCALE-Sim v2's code for one conv layer (batch 1)."""
    from nmsat.types import Phase

    g = layer.gemms(Phase.FF, 1)[0]
    pixels, window, filters = g.m, g.k, g.n
    if dataflow == "os":
        folds = math.ceil(pixels / rows) * math.ceil(filters / cols)
        return folds * (rows + cols + window - 2), folds
    folds = math.ceil(window / rows) * math.ceil(filters / cols)
    return folds * (2 * rows + cols + pixels - 2), folds


def compare(topology: Path, cfgfile: Path) -> list[tuple]:
    from nmsat.dataflow.inference_workload import InferenceOptions
    from nmsat.scalesim_config import read
    from nmsat.simulator.inference import simulate_inference
    from nmsat.workloads import load

    cfg, _ = read(cfgfile)
    df = cfg.array.dataflows[0]
    r, c = cfg.array.rows, cfg.array.cols
    res = simulate_inference(str(topology), cfg, InferenceOptions(nm="1:1", batch=1,
                                                                  interleave=False))
    layers = {x.name: x for x in load(topology, batch=1).workload.layers}
    out = []
    for row in res.layers:
        if not row.dense_macs:
            continue
        ss, folds = scalesim_cycles(layers[row.name], r, c, df)
        predicted = folds * (r if df == "os" else 1)
        out.append((row.name.strip(), df, ss, row.engine_cycles, row.engine_cycles - ss,
                    predicted, folds))
    return out


def main(argv: list[str]) -> int:
    pairs = ([(Path(a), Path(b)) for a, b in zip(argv[::2], argv[1::2])] if argv else DEFAULT)
    print(f"{'layer':<8}{'df':>4}{'SCALE-Sim':>13}{'nmsat':>13}{'difference':>12}"
          f"{'predicted':>11}{'folds':>8}")
    for topo, cfgfile in pairs:
        print(f"# {topo.name} on {cfgfile.name}")
        for name, df, ss, nm, diff, pred, folds in compare(topo, cfgfile):
            print(f"{name:<8}{df:>4}{ss:>13,}{nm:>13,}{diff:>12,}{pred:>11,}{folds:>8,}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
