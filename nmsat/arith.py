"""Exact integer arithmetic shared by every floor of nmsat."""

from __future__ import annotations

__all__ = ["ceil_div"]


def ceil_div(a: int, b: int) -> int:
    """``ceil(a / b)`` in exact integer arithmetic, as ``-(-a // b)``: the one ceiling
    division of nmsat (tile, group, burst, pass and lane counts). Works on Python and NumPy
    integers alike, and never goes through floating point."""
    return -(-a // b)
