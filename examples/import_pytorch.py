"""Import a PyTorch model through torch.fx and simulate it from Python.

    python examples/import_pytorch.py

The same from the command line:

    nmsat simulate examples/tiny_cnn.py:tiny_cnn --input-shape 4,3,32,32 --config small
"""

from __future__ import annotations

import runpy
from pathlib import Path

from nmsat.simulator import api
from nmsat.workloads.torch_import import from_torch

here = Path(__file__).resolve().parent
model = runpy.run_path(str(here / "tiny_cnn.py"))["tiny_cnn"]()

workload = from_torch(model, (3, 32, 32), name="tiny_cnn", batch=4)
for layer in workload.layers:
    print(f"{layer.name:<10} {type(layer).__name__}")
result = api.simulate(workload, "small", api.SimOptions.create("bdwp", "2:8"))
print(f"{result.total_cycles:,} cycles, {result.speedup_vs_dense:.3f}x over dense")
