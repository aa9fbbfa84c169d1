"""Enums and small value types shared by every part of nmsat.

Choices are enums, never free strings: an unknown name raises instead of falling
back to a default (SCALE-Sim silently runs OS on a misspelt dataflow).
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import Self

__all__ = ["DATAFLOW_CHOICES", "DEFAULT_BATCH", "DEFAULT_METHOD", "DEFAULT_NM", "DENSE", "NM",
           "ActZero", "Choice", "DType", "Dataflow", "Method", "Mode", "Phase"]


class _Choice(str, enum.Enum):
    """A string-valued enum whose ``parse`` names the valid choices on failure."""

    @classmethod
    def parse(cls, value: str | Self) -> Self:
        if isinstance(value, cls):
            return value
        try:
            return cls(str(value).lower())
        except ValueError:
            choices = ", ".join(m.value for m in cls)
            raise ValueError(f"unknown {cls.__name__} {value!r} (choose from {choices})") from None

    def __str__(self) -> str:  # so f-strings and argparse show the plain name
        return self.value


Choice = _Choice  # the public name: any enum of choices (``isinstance``, annotations)


class Phase(_Choice):
    """A training or inference phase of one layer."""

    FF = "ff"  # forward: Y = X W^T
    BP = "bp"  # backward data gradient: dX = dY W
    WG = "wg"  # weight gradient: dW = dY^T X
    WU = "wu"  # weight update on fp32 master weights
    SORE = "sore"  # online N:M mask generation


class Method(_Choice):
    """How a layer's weights are sparsified during training."""

    DENSE = "dense"
    SRSTE = "srste"  # sparse FF only, dense straight-through weight gradient with decay
    BDWP = "bdwp"  # sparse FF (input-dim mask) and sparse BP (output-dim mask)


class Dataflow(_Choice):
    OS = "os"  # output stationary
    WS = "ws"  # weight stationary


class Mode(_Choice):
    TRAIN = "train"
    INFERENCE = "inference"


class ActZero(_Choice):
    """What the PE does with zero activations (dynamic activation sparsity, e.g. after ReLU;
    ``docs/architecture.md`` section 3.3)."""

    NONE = "none"  # multiply them like any other value
    GATE = "gate"  # zero-detect gates the multiplier: saves MAC energy, no cycles
    SKIP = "skip"  # gate, and the WS feeder skips activation rows whose K-tile is all zero


class DType(_Choice):
    """Operand type of the tensor engine; the accumulator type follows from it."""

    INT8 = "int8"
    INT16 = "int16"
    FP16 = "fp16"
    BF16 = "bf16"

    @property
    def bytes(self) -> int:
        return 1 if self is DType.INT8 else 2

    @property
    def is_float(self) -> bool:
        return self in (DType.FP16, DType.BF16)

    @property
    def accumulator(self) -> str:
        """``"fp32"`` for float operands, ``"int32"`` for integer operands."""
        return "fp32" if self.is_float else "int32"


@dataclass(frozen=True, order=True)
class NM:
    """An N:M pattern: at most ``n`` nonzeros in every group of ``m`` consecutive elements.

    ``NM(1, 1)`` is dense. ``NM.parse("2:8")`` reads the usual notation.
    """

    n: int
    m: int

    def __post_init__(self) -> None:
        for name, v in (("N", self.n), ("M", self.m)):
            if not isinstance(v, int) or isinstance(v, bool):
                raise ValueError(f"{name} must be an integer, not {v!r}")
        if self.m < 1:
            raise ValueError(f"M must be at least 1, not {self.m}")
        if not 1 <= self.n <= self.m:
            raise ValueError(f"N must be between 1 and M, not {self.n} (M={self.m})")

    @classmethod
    def parse(cls, text: str | NM) -> NM:
        if isinstance(text, NM):
            return text
        s = str(text).strip()
        if s.lower() == "dense":
            return cls(1, 1)
        parts = s.split(":")
        if len(parts) != 2:
            raise ValueError(f"N:M pattern must look like 2:8, not {text!r}")
        try:
            n, m = int(parts[0]), int(parts[1])
        except ValueError:
            raise ValueError(f"N:M pattern must look like 2:8, not {text!r}") from None
        return cls(n, m)

    @property
    def dense(self) -> bool:
        return self.n == self.m

    @property
    def density(self) -> float:
        return self.n / self.m

    @property
    def index_bits(self) -> int:
        """Bits of one index in the compressed format: ceil(log2 M) (0 for M = 1)."""
        return math.ceil(math.log2(self.m)) if self.m > 1 else 0

    def groups_per_chunk(self, lanes: int, window: int) -> int:
        """N:M groups one PE consumes per cycle (one *chunk* of the reduction) with ``lanes``
        multipliers (P) and an activation window of ``window`` elements (A):
        ``min(P // N, A // M)``, the law of ``docs/architecture.md`` section 3. 0 when the
        pattern does not fit the PE (N > P or M > A). Dense work is not grouped: see
        :meth:`k_per_chunk`."""
        return min(lanes // self.n, window // self.m)

    def k_per_chunk(self, lanes: int, window: int) -> int:
        """Reduction-axis (K) elements one PE consumes per cycle: P when dense, else
        :meth:`groups_per_chunk` x M."""
        return lanes if self.dense else self.groups_per_chunk(lanes, window) * self.m

    def __str__(self) -> str:
        return f"{self.n}:{self.m}"


DENSE = NM(1, 1)

DEFAULT_NM = NM(2, 8)
"""The one default N:M pattern of every option set and command (``--nm``): the SAT paper's
headline pattern (2 of every 8 weights kept, the engine's 4x peak on the vcu1525)."""

DEFAULT_METHOD = Method.BDWP
"""The default training method: SAT's bidirectional weight pruning (sparse FF and BP)."""

DATAFLOW_CHOICES: tuple[str, ...] = ("auto", "os", "ws")
"""Values of ``--dataflow`` and of every option set's ``dataflow``: ``os`` or ``ws`` runs
every GEMM block in that dataflow; ``auto`` lets the offline schedule pick per task."""

DEFAULT_BATCH = 32
"""The default training batch of ``nmsat simulate`` and sweeps for a zoo model (a trace or
SCALE-Sim file brings its own)."""
