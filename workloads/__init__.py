"""Workloads: model zoo with exact layer shapes, importers (SCALE-Sim CSV, PyTorch), sparse training runs and traces."""
