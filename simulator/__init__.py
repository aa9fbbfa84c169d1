"""Cycle-level simulator of the SAT accelerator: per-cycle PE-array model, fast tile model,
SimPy system model, energy model."""
