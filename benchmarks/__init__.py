"""nmsat benchmarks: ``python -m benchmarks`` (see ``docs/simulator.md``)."""
