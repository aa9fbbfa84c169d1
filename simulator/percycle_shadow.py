"""Per-cycle model of WS blocks with shadow weights (``array.shadow_weights``,
``docs/architecture.md`` 4.2): the row-wave weight preload and the K-tile-outer tile order,
on the stage methods of :class:`nmsat.simulator.percycle._WS` (which :func:`nmsat.simulator.
percycle.simulate` picks this class over for interleaved WS blocks). Like the rest of the
per-cycle model it checks every hazard: a load chain overwriting a shadow register before
its swap, a swap finding a chain not fully loaded or misaligned, a partial sum read before
it was written."""

from __future__ import annotations

import numpy as np

from nmsat.arith import ceil_div

from .percycle import _WS, ScheduleHazard, _Operands

__all__ = ["WSShadow"]


class WSShadow(_WS):
    """Weight stationary with shadow weights (``array.shadow_weights``, docs/architecture.md
    4.2): tiles run K-tile outer, column tile inner, and each PE row's shadow registers
    are ``ports`` load chains of ``cs = ceil(C / ports)`` columns. Tile u's weights enter
    row i's chain starting at column s0 at step ``B_u + i La + s0`` (B_u = A_{u-1}, the
    previous tile's stream start; 0 for the first), farthest column first, one column per
    step; a PE's register takes part in the shift only from the step the chain's first
    chunk reaches it (the load wave follows the previous tile's swap wave)."""

    LOADED = 2  # 1 = a chain is shifting through the register

    def __init__(self, ops: _Operands, out: np.ndarray, R: int, C: int, La: int,
                 lists: list[np.ndarray] | None, ports: int):
        super().__init__(ops, out, R, C, La, True, lists)
        m, n = out.shape
        kt_n = ceil_div(ops.kc, R)
        self.nt = ceil_div(n, C)
        self.tiles = [(t, k) for k in range(kt_n) for t in range(self.nt)]
        if lists is None:
            lists = [np.arange(m)] * kt_n
        self.rows = [[int(r) for r in lists[k]] for _, k in self.tiles]
        self.cs = ceil_div(C, min(ports, C))
        self.segments = [(s0, min(C, s0 + self.cs)) for s0 in range(0, C, self.cs)]

    def _reset(self) -> None:
        super()._reset()
        self.ws_dest = np.full((self.R, self.C, 2), -1, np.int64)  # (tile, column) held

    def _column_before(self, t: int) -> list[int]:
        return list(range(self.tiles[t][0], t, self.nt))

    def _control(self, step: int) -> None:
        """Tile u's stream starts once its loads are done (Cs after B_u), the previous
        tile's rows have entered, and the previous K-tile's partial sums of this column
        tile are in the output buffer (lag with skipped rows); the next tile's loads
        follow this tile's swap wave from the step it starts."""
        R, La, nt, rows, L = self.R, self.La, self.nt, self.rows, self.L
        starts, loads, T = self.starts, self.loads, len(self.tiles)
        u = len(starts)
        if u < T and u < len(loads):
            ok = step >= loads[u] + self.cs - self.slack
            if u > 0:
                ok = ok and step >= starts[-1] + L[u - 1]
            if u >= nt:
                dep = R * La + 1
                if self.lag_rule:
                    prev = {r: j for j, r in enumerate(rows[u - nt])}
                    dep += max([0] + [prev[r] - j for j, r in enumerate(rows[u])
                                      if r in prev])
                ok = ok and step >= starts[u - nt] + dep - self.slack
            if ok:
                starts.append(step)
        if len(loads) < T and len(loads) == len(starts):
            loads.append(step)

    def _needs(self, step: int) -> tuple[bool, bool]:
        """Input: an activation stream, or a load chain of some row (row i loads tile u
        during [B_u + i La, B_u + i La + C)); output as without shadow weights."""
        _, need_out = super()._needs(step)
        R, C, La, L = self.R, self.C, self.La, self.L
        need_in = any(b <= step - i * La < b + C for b in self.loads for i in range(R)) or \
            any(st <= step < st + L[t] + (R - 1) * La for t, st in enumerate(self.starts))
        return need_in, need_out

    def _load_shadow(self, step: int) -> None:
        """(e) shadow loads (after this step's swaps read the shadows): in each active
        chain the PEs the load wave has reached shift one column right, and the chain's
        first PE takes the next chunk, farthest column first."""
        for t, b in enumerate(self.loads):
            for i in range(self.R):
                for s0, s1 in self.segments:
                    x = step - (b + i * self.La + s0)
                    if 0 <= x < s1 - s0:
                        self._chain_step(step, t, i, s0, s1, x)

    def _chain_step(self, step: int, t: int, i: int, s0: int, s1: int, x: int) -> None:
        """Step x of tile t's load of row i's chain [s0, s1)."""
        ops, C = self.ops, self.C
        ws_val, ws_idx, ws_dest, ws_state = self.ws_val, self.ws_idx, self.ws_dest, \
            self.ws_state
        j = s0 + x  # the PE the wave reaches now
        if ws_state[i, j] != 0:
            raise ScheduleHazard(f"step {step}: PE({i},{j})'s shadow (tile "
                                 f"{self.ws_tag[i, j]}) overwritten by tile {t}'s load "
                                 f"before its swap")
        ws_state[i, j] = 1
        for arr in (ws_val, ws_idx, ws_dest):
            arr[i, s0 + 1:j + 1] = arr[i, s0:j].copy()
        ct, kt = self.tiles[t]
        c, dest = kt * self.R + i, s1 - 1 - x
        col = ct * C + dest
        if c < ops.kc and col < self.out.shape[1]:
            ws_val[i, s0], ws_idx[i, s0] = ops.w_val[col, c], ops.w_idx[col, c]
        else:
            ws_val[i, s0], ws_idx[i, s0] = 0, -2  # -2: no chunk here
        ws_dest[i, s0] = (t, dest)
        if x == s1 - s0 - 1:  # the chain is loaded: every PE holds its own chunk
            want = np.stack([np.full(s1 - s0, t), np.arange(s0, s1)], 1)
            if (ws_dest[i, s0:s1] != want).any():
                raise ScheduleHazard(f"step {step}: row {i}'s chain at column {s0} "
                                     f"ended misaligned")
            ws_state[i, s0:s1] = self.LOADED
            self.ws_tag[i, s0:s1] = t
