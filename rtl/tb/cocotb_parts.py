"""Reusable cocotb parts: stream driver, stream monitor, stall driver, in-order checker.

They talk to Amaranth-generated Verilog, whose stream ports are flattened to
``<name>__valid``, ``<name>__ready`` and ``<name>__payload``. Randomness comes from a
seeded ``numpy`` generator passed in, so every run is reproducible.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np
from cocotb.triggers import FallingEdge, ReadOnly

from ..fp import same_bits


class StreamDriver:
    """Drives ``<name>__payload/valid`` and honours ``ready``; ``gap`` is the probability
    of an idle cycle before each beat (random input gaps)."""

    def __init__(self, dut, name: str, clk, rng: np.random.Generator, gap: float = 0.0):
        self.valid = getattr(dut, f"{name}__valid")
        self.ready = getattr(dut, f"{name}__ready")
        self.payload = getattr(dut, f"{name}__payload")
        self.clk, self.rng, self.gap = clk, rng, gap
        self.valid.value = 0

    async def send(self, words) -> None:
        """Send every word. Drives on falling edges, reads ``ready`` once the inputs have
        settled (ReadOnly) before the rising edge that transfers. Returns at the falling
        edge after the last transfer, with ``valid`` low."""
        await FallingEdge(self.clk)
        for w in words:
            while self.gap and self.rng.random() < self.gap:
                self.valid.value = 0
                await FallingEdge(self.clk)
            self.payload.value = int(w)
            self.valid.value = 1
            while True:
                await ReadOnly()
                taken = int(self.ready.value)
                await FallingEdge(self.clk)
                if taken:
                    break
        self.valid.value = 0


class StreamMonitor:
    """Drives ``ready`` (probability ``ready_p`` per cycle: output backpressure) and
    collects every accepted ``payload``."""

    def __init__(self, dut, name: str, clk, rng: np.random.Generator, ready_p: float = 1.0):
        self.valid = getattr(dut, f"{name}__valid")
        self.ready = getattr(dut, f"{name}__ready")
        self.payload = getattr(dut, f"{name}__payload")
        self.clk, self.rng, self.ready_p = clk, rng, ready_p
        self.beats: deque[int] = deque()
        self.ready.value = 0

    async def run(self) -> None:
        while True:
            await FallingEdge(self.clk)
            self.ready.value = int(self.ready_p >= 1 or self.rng.random() < self.ready_p)
            await ReadOnly()
            if int(self.valid.value) and int(self.ready.value):
                self.beats.append(int(self.payload.value))


@dataclass
class Checker:
    """In-order comparison of 32-bit result words, NaN-aware for floats; also compares
    cycle counts. ``report`` holds the totals a test asserts on."""

    is_float: bool
    tiles: int = 0
    mismatches: int = 0
    cycle_mismatches: int = 0
    words: int = 0
    notes: list[str] = field(default_factory=list)

    def values(self, name: str, got: np.ndarray, want: np.ndarray) -> None:
        ok = same_bits(got, want, self.is_float)
        self.tiles += 1
        self.words += ok.size
        bad = int((~ok).sum())
        self.mismatches += bad
        if bad and len(self.notes) < 10:
            self.notes.append(f"{name}: {bad} words differ")

    def cycles(self, name: str, got: int, want: int) -> None:
        if got != want:
            self.cycle_mismatches += 1
            if len(self.notes) < 10:
                self.notes.append(f"{name}: RTL {got} cycles, model {want}")

    @property
    def report(self) -> dict:
        return {"tiles": self.tiles, "words": self.words, "mismatches": self.mismatches,
                "cycle_mismatches": self.cycle_mismatches, "notes": self.notes}
