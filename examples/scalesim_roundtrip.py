"""SCALE-Sim in, SCALE-Sim out: read SCALE-Sim's own config and a topology, simulate them,
and read nmsat's SCALE-Sim-format reports back by column, as you would diff them against
SCALE-Sim's (docs/scalesim.md).

    python examples/scalesim_roundtrip.py [OUT_DIR]

The same from the command line:

    nmsat config show examples/scalesim/scale.cfg --toml
    nmsat simulate examples/scalesim/tiny.csv --config examples/scalesim/scale.cfg \
        --mode inference --nm 1:1 --scalesim-reports scalesim-out/
"""

from __future__ import annotations

import csv
import sys
import tempfile
from pathlib import Path

from nmsat.commands import main

here = Path(__file__).resolve().parent / "scalesim"
out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp()) / "scalesim-out"

# 1. SCALE-Sim's .cfg becomes an nmsat config (one note per field that does not map) ...
status = main(["simulate", str(here / "tiny.csv"), "--config", str(here / "scale.cfg"),
               "--mode", "inference", "--nm", "1:1", "--scalesim-reports", str(out)])
if status:
    sys.exit(status)


# 2. ... and the reports carry SCALE-Sim 3.0.0's headers, so columns line up by name.
def rows(name: str) -> list[dict[str, str]]:
    with open(out / name, newline="") as f:
        table = [[c.strip() for c in row] for row in csv.reader(f)]
    header = table[0]
    return [dict(zip(header, row)) for row in table[1:]]


compute, detail = rows("COMPUTE_REPORT.csv"), rows("DETAILED_ACCESS_REPORT.csv")
print(f"\n{'layer':>5} {'Total Cycles':>13} {'Overall Util %':>15} {'DRAM Filter Reads':>18}")
for c, d in zip(compute, detail):
    print(f"{c['LayerID']:>5} {int(c['Total Cycles']):>13,} "
          f"{float(c['Overall Util %']):>15.2f} {int(d['DRAM Filter Reads']):>18,}")
