"""Roofline: per-layer DRAM traffic of a tile program, arithmetic intensity, and whether a
layer is compute- or memory-bound on the configured hardware.

Two classifications are given per layer, because on a systolic array they differ:

``ideal_bound`` (the textbook roofline)
    Arithmetic intensity I = dense-equivalent MACs / DRAM bytes (MAC/B) against the ridge
    point ``peak / bandwidth``, where peak is the array's dense MACs per cycle times the
    engine's peak sparse ratio for the layer's pattern (``ArrayConfig.sparse_speedup``),
    and bandwidth is ``dram.channels x dram.bytes_per_cycle``.
``bound`` (on the configured hardware, for the compiled schedule)
    The layer's engine busy cycles (the closed-form tile timing of its COMPUTE blocks, i.e.
    its compute roof for the shapes the array really runs) against its DRAM transfer cycles
    (bytes / bandwidth): ``memory`` when the transfers take longer. A GEMV (decode, batch
    1) has I < 1 MAC/B, far below the ridge, yet on a 16 x 16 OS/WS array it uses one PE
    row and is limited by the array, not by DRAM: ``ideal_bound`` says memory, ``bound``
    says compute. Vector-engine layers compare their lane cycles with their streaming.
    :func:`simulated_bound` adds what only the simulation knows: a layer whose simulated
    cycles are more than twice both of its own lower bounds spends most of its time
    waiting for other units (typically a pooling or normalisation op on the vector lanes
    that produces its input), so neither its array work nor its DRAM traffic sets its
    time: ``dependency``.
    ``tests/test_inference_memory.py`` checks the rule against the simulated cycles of
    every zoo model's layers on both presets: the named limiter is the one the simulated
    time follows.

Traffic attribution follows the system model: a LOAD belongs to the next COMPUTE's layer,
a STORE to the previous one's, a VECTOR op to its own layer. Bytes are the instructions'
exact ``bytes`` (compressed weights with their index bits), before burst rounding.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from nmsat.dataflow import timing
from nmsat.dataflow.isa import Buffer, Compute, Load, Program, Store, Vector

from nmsat.arith import ceil_div
from nmsat.config import AcceleratorConfig
from nmsat.types import DENSE, NM, _Choice

__all__ = ["DEPENDENCY_FACTOR", "Bound", "LayerTraffic", "Roof", "attribution", "layer_traffic",
           "simulated_bound"]


class Bound(_Choice):
    COMPUTE = "compute"  # the array (or, for a non-GEMM layer, the vector lanes)
    MEMORY = "memory"  # DRAM
    DEPENDENCY = "dependency"  # neither: its time is mostly spent waiting for other units


@dataclass(frozen=True)
class Roof:
    """The two ceilings: dense-equivalent MACs per cycle and DRAM bytes per cycle."""

    peak_macs_per_cycle: float
    dram_bytes_per_cycle: float

    @classmethod
    def of(cls, cfg: AcceleratorConfig, nm: NM = DENSE) -> Roof:
        a = cfg.array
        ratio = 1.0 if nm.dense else a.sparse_speedup(nm)
        return cls(a.peak_macs_per_cycle * ratio, float(cfg.dram.total_bytes_per_cycle))

    @property
    def ridge(self) -> float:
        """Intensity (MAC/B) where the two ceilings meet."""
        return self.peak_macs_per_cycle / self.dram_bytes_per_cycle

    def classify(self, intensity: float) -> Bound:
        return Bound.MEMORY if intensity < self.ridge else Bound.COMPUTE


@dataclass
class LayerTraffic:
    """What one layer's instructions move and compute over a whole program run."""

    name: str
    load_bytes: int = 0
    store_bytes: int = 0
    vector_bytes: int = 0
    weight_bytes: int = 0  # loads of the layer's (compressed) weight tensor
    kv_bytes: int = 0  # loads of the KV cache (decode attention B operands)
    macs: int = 0
    dense_macs: int = 0
    engine_cycles: int = 0  # closed-form busy cycles of its COMPUTE blocks
    vector_cycles: int = 0  # lane cycles of its VECTOR ops (one pass per element)
    nm: str = "1:1"

    @property
    def dram_bytes(self) -> int:
        return self.load_bytes + self.store_bytes + self.vector_bytes

    def intensity(self) -> float:
        """Dense-equivalent MACs per DRAM byte (0 for a layer without MACs)."""
        return self.dense_macs / self.dram_bytes if self.dram_bytes else float("inf")

    def dram_cycles(self, roof: Roof) -> float:
        return self.dram_bytes / roof.dram_bytes_per_cycle

    def bound(self, roof: Roof) -> Bound:
        """Memory-bound when the layer's DRAM transfers take longer than its compute
        (engine blocks, or vector lanes for a non-GEMM layer)."""
        busy = self.engine_cycles if self.dense_macs else self.vector_cycles
        return Bound.MEMORY if self.dram_cycles(roof) > busy else Bound.COMPUTE


DEPENDENCY_FACTOR = 2
"""A layer whose simulated cycles exceed this many times its own lower bound
(``max(engine or vector cycles, DRAM cycles)``) is ``dependency``-bound: more than half of
its time is explained neither by its array nor by its DRAM traffic."""


def simulated_bound(traffic: LayerTraffic, roof: Roof, cycles: int) -> Bound:
    """What set a layer's simulated time (``cycles``, its attributed wall time):
    ``dependency`` when ``cycles > DEPENDENCY_FACTOR x`` its own lower bound, else the
    larger of its two own lower bounds (:meth:`LayerTraffic.bound`). A layer without
    attributed cycles (a vector op hidden behind the engine) keeps its own bound."""
    own = max(traffic.engine_cycles if traffic.dense_macs else traffic.vector_cycles,
              traffic.dram_cycles(roof))
    if cycles > DEPENDENCY_FACTOR * own:
        return Bound.DEPENDENCY
    return traffic.bound(roof)


def layer_traffic(prog: Program, cfg: AcceleratorConfig,
                  kv_layers: Iterable[str] = ()) -> list[LayerTraffic]:
    """Per-layer traffic and work of ``prog``, in program layer order (layers without any
    instruction are left out)."""
    names = prog.layers
    kv = set(kv_layers)
    rows: dict[int, LayerTraffic] = {}
    tensors = prog.tensors
    execs = list(prog.executions())
    # Loads belong to the next COMPUTE, stores to the previous one.
    nxt: list[int | None] = [None] * len(execs)
    after = None
    for j in range(len(execs) - 1, -1, -1):
        ins = execs[j][1]
        if isinstance(ins, Compute):
            after = ins.layer
        nxt[j] = after
    prev = None
    lanes = cfg.weight_update.lanes
    for j, (_, ins, times) in enumerate(execs):
        if isinstance(ins, Compute):
            prev = ins.layer
            r = _row(rows, ins.layer, names)
            r.macs += ins.macs * times
            r.dense_macs += ins.dense_macs * times
            r.engine_cycles += timing.compute_cycles(ins, cfg) * times
            if not ins.nm.dense:
                r.nm = str(ins.nm)
        elif isinstance(ins, Load):
            li = nxt[j] if nxt[j] is not None else prev
            if li is None:
                continue
            r = _row(rows, li, names)
            r.load_bytes += ins.bytes * times
            tname = tensors[ins.tensor].name
            if ins.buffer is Buffer.WGT and tname.startswith(r.name + ".w"):
                r.weight_bytes += ins.bytes * times
            if r.name in kv and tname == f"{r.name}.b":
                r.kv_bytes += ins.bytes * times
        elif isinstance(ins, Store):
            li = prev if prev is not None else nxt[j]
            if li is None:
                continue
            _row(rows, li, names).store_bytes += ins.bytes * times
        elif isinstance(ins, Vector):
            r = _row(rows, ins.layer, names)
            r.vector_bytes += (ins.read_bytes + ins.write_bytes) * times
            r.vector_cycles += ceil_div(ins.elements, lanes) * times
    return [rows[i] for i in sorted(rows)]


def attribution(prog: Program) -> list[tuple[str, str]]:
    """(layer, phase) of each instruction, by the system model's rule: a COMPUTE, SORE,
    WEIGHT_UPDATE or VECTOR its own; a LOAD the next COMPUTE's; a STORE or RELEASE the
    previous COMPUTE's (loop and barrier instructions get ``("", "")``)."""
    from nmsat.dataflow.isa import Release, Sore, WeightUpdate

    layers = prog.layers
    name = (lambda i: layers[i] if i < len(layers) else str(i))
    out: list[tuple[str, str]] = [("", "")] * len(prog.instructions)
    prev = ("", "ff")
    for i, ins in enumerate(prog.instructions):
        if isinstance(ins, Compute):
            prev = out[i] = (name(ins.layer), ins.phase.value)
        elif isinstance(ins, Sore):
            out[i] = (name(ins.layer), "sore")
        elif isinstance(ins, WeightUpdate):
            out[i] = (name(ins.layer), "wu")
        elif isinstance(ins, Vector):
            out[i] = (name(ins.layer), ins.phase.value)
        elif isinstance(ins, (Store, Release)):
            out[i] = prev
    nxt = None
    for i in range(len(prog.instructions) - 1, -1, -1):
        ins = prog.instructions[i]
        if isinstance(ins, Compute):
            nxt = out[i]
        elif isinstance(ins, Load):
            out[i] = nxt if nxt is not None else prev
    return out


def _row(rows: dict[int, LayerTraffic], li: int, names) -> LayerTraffic:
    r = rows.get(li)
    if r is None:
        r = rows[li] = LayerTraffic(names[li] if li < len(names) else str(li))
    return r
