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
    time: ``dependency``. An engine-limited layer whose shape fills less than half of
    the array (engine busy cycles over twice its dense-equivalent MACs at peak; a GEMV
    with one output row fills one PE row) is ``array``-bound rather than ``compute``-bound:
    the array is the limiter, but not its peak.
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

from nmsat.arith import ceil_div
from nmsat.config import AcceleratorConfig
from nmsat.dataflow import timing
from nmsat.dataflow.isa import Buffer, Compute, Load, Program, Store, Vector
from nmsat.types import DENSE, NM, _Choice

__all__ = ["ARRAY_FILL_FACTOR", "DEPENDENCY_FACTOR", "Bound", "LayerTraffic", "Roof",
           "attribution", "dataflow_text", "layer_dataflows", "layer_traffic", "limiter_ratio",
           "simulated_bound"]


class Bound(_Choice):
    COMPUTE = "compute"  # the array at its peak (or, for a non-GEMM layer, the vector lanes)
    ARRAY = "array"  # the array, but its shape fills less than 1/ARRAY_FILL_FACTOR of it
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
    dataflow: str = ""  # its COMPUTE blocks' dataflow: os, ws or os+ws ("" without any)

    @property
    def dram_bytes(self) -> int:
        return self.load_bytes + self.store_bytes + self.vector_bytes

    def intensity(self) -> float:
        """Dense-equivalent MACs per DRAM byte (0 for a layer without MACs)."""
        return self.dense_macs / self.dram_bytes if self.dram_bytes else float("inf")

    def dram_cycles(self, roof: Roof) -> float:
        return self.dram_bytes / roof.dram_bytes_per_cycle

    def peak_cycles(self, roof: Roof) -> float:
        """Cycles its dense-equivalent MACs take at the roof's peak (a full array)."""
        return self.dense_macs / roof.peak_macs_per_cycle

    def array_fill(self, roof: Roof) -> float:
        """Share of the array's peak its COMPUTE blocks reach while busy: peak cycles over
        engine busy cycles (1 for a layer without MACs). A GEMV (one output row) fills one
        PE row of the array, so 1/rows of it at most."""
        if not self.dense_macs or not self.engine_cycles:
            return 1.0
        return min(1.0, self.peak_cycles(roof) / self.engine_cycles)

    def bound(self, roof: Roof) -> Bound:
        """Memory-bound when the layer's DRAM transfers take longer than its compute
        (engine blocks, or vector lanes for a non-GEMM layer); otherwise array-bound when
        its shape fills less than ``1 / ARRAY_FILL_FACTOR`` of the array
        (:meth:`array_fill`), else compute-bound."""
        busy = self.engine_cycles if self.dense_macs else self.vector_cycles
        if self.dram_cycles(roof) > busy:
            return Bound.MEMORY
        if self.dense_macs and self.array_fill(roof) * ARRAY_FILL_FACTOR < 1.0:
            return Bound.ARRAY
        return Bound.COMPUTE


ARRAY_FILL_FACTOR = 2
"""An engine-limited GEMM layer whose busy cycles exceed this many times its cycles at the
array's peak (so its shape fills less than half the array: a GEMV's one output row, a
decode attention head's few rows and columns, a short K) is ``array``-bound, not
``compute``-bound: a bigger or differently shaped array would not make it faster, a
differently shaped workload (batching) would. The factor matches
:data:`DEPENDENCY_FACTOR`: more than half of the time is explained by something other
than the named roof."""

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


def limiter_ratio(traffic: LayerTraffic, roof: Roof, cycles: int, bound: Bound) -> float:
    """How close a layer came to the peak of what limits it: the cycles its limiter needs
    at peak over its simulated ``cycles`` (0 without cycles). ``compute`` and ``array``:
    dense-equivalent MACs at the array's peak (so achieved over peak MACs per cycle; a
    vector layer: its lane cycles); ``memory``: DRAM cycles at full bandwidth (achieved over
    peak bytes per cycle); ``dependency``: its own lower bound (below 1/DEPENDENCY_FACTOR)."""
    if not cycles:
        return 0.0
    if bound is Bound.MEMORY:
        need = traffic.dram_cycles(roof)
    elif bound is Bound.DEPENDENCY:
        need = max(traffic.engine_cycles if traffic.dense_macs else traffic.vector_cycles,
                   traffic.dram_cycles(roof))
    elif traffic.dense_macs:
        need = traffic.peak_cycles(roof)
    else:
        need = traffic.vector_cycles
    return need / cycles


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
            r.dataflow = "+".join(sorted({*filter(None, r.dataflow.split("+")),
                                          ins.dataflow.value}))
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


def layer_dataflows(prog: Program) -> dict[str, dict[str, str]]:
    """The dataflow each layer's COMPUTE blocks ran, per phase: ``{"conv1": {"ff": "os",
    "bp": "ws", "wg": "os"}}``; ``"os+ws"`` where a phase's blocks used both (layers
    without COMPUTE blocks are left out)."""
    layers = prog.layers
    seen: dict[str, dict[str, set[str]]] = {}
    for ins in prog.instructions:
        if isinstance(ins, Compute):
            name = layers[ins.layer] if ins.layer < len(layers) else str(ins.layer)
            seen.setdefault(name, {}).setdefault(ins.phase.value, set()).add(
                ins.dataflow.value)
    return {name: {ph: "+".join(sorted(dfs)) for ph, dfs in phases.items()}
            for name, phases in seen.items()}


def dataflow_text(phases: dict[str, str]) -> str:
    """One layer's dataflows in a table cell: ``os`` when every phase ran it, else
    ``ff os, bp ws, ...``; ``-`` for a layer without COMPUTE blocks."""
    if not phases:
        return "-"
    values = set(phases.values())
    if len(values) == 1:
        return values.pop()
    return ", ".join(f"{ph} {df}" for ph, df in phases.items())


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
