"""Workloads: model zoo with exact layer shapes, importers (SCALE-Sim CSV, PyTorch), sparse
training runs and traces."""

from nmsat.workloads.zoo import LoadedWorkload, get, load, names

__all__ = ["LoadedWorkload", "get", "load", "names"]
