"""Reuse of compiled programs and simulations between simulations that share them.

A simulation (:func:`nmsat.simulator.api.simulate`) has three stages:

1. **compile** the workload to a tile program (:mod:`nmsat.dataflow.compiler`): the
   program depends on the workload, the compile options and the config fields in
   :data:`PROGRAM_FIELDS`;
2. **run** the program on the system model and count its activity
   (:mod:`nmsat.simulator.system`, :func:`nmsat.simulator.api.activity`): the run depends
   on the program and, beyond it, on :data:`TIMING_FIELDS`;
3. **assemble** the result: seconds, energy, per-layer tables. This reads every field,
   but is cheap and is never cached.

:class:`RunCache` keeps the programs and runs of stages 1 and 2 under keys made of
exactly those fields, so two simulations whose configs differ only in fields the stage
does not read share its output: a sweep over DRAM latency, SORE or weight-update lanes
compiles each program once; the dense baseline that every sparse point is compared with
is run once per hardware point, not once per method and pattern; a sweep over energy
figures or the clock simulates nothing twice.

Every leaf field of :class:`~nmsat.config.AcceleratorConfig` is classified into one of
:data:`PROGRAM_FIELDS`, :data:`TIMING_FIELDS` or :data:`RESULT_FIELDS` (read only by
stage 3); :func:`classify` raises for a field that is none of them, so a new config field
cannot be silently left out of the keys. ``tests/test_run_cache.py`` checks the
classification (every field of both presets is classified; perturbing a timing or result
field leaves the program identical, a result field leaves the run identical) and that
cached and uncached simulations give byte-identical results on random configs.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Hashable, Mapping
from typing import Any

from nmsat import config as config_mod
from nmsat.config import AcceleratorConfig

__all__ = ["CYCLE_FIELDS", "PROGRAM_FIELDS", "RESULT_FIELDS", "RESULT_PREFIXES", "TIMING_FIELDS",
           "UNIT_TIMING_FIELDS", "RunCache", "UnclassifiedField", "classify", "leaf_fields",
           "program_key", "run_key", "unread_timing_prefixes"]

PROGRAM_FIELDS: frozenset[str] = frozenset({
    "name",  # the program's metadata records it
    "array.rows", "array.cols", "array.macs_per_pe", "array.act_window",
    "array.nm_patterns", "array.dataflows", "array.acc_latency", "array.act_zero",
    "array.shadow_weights", "array.weight_load_ports",  # WS tile timing the search prices
    "numerics.dtype", "numerics.master_dtype",
    *(f"buffers.{b}.{f}" for b in ("activation", "weight", "output")
      for f in ("kib", "double_buffered")),  # block sizes: what a buffer half holds
    "buffers.act_layout",
    # the offline scheduler's cost model divides DRAM bytes by the total bandwidth
    "dram.channels", "dram.bytes_per_cycle", "dram.burst_bytes",
})
"""Config fields the compiler reads (through the tiling search, block sizes, byte counts
and element types). Over-inclusion only costs cache hits; a field missing here would
give wrong results, which the tests guard against."""

TIMING_FIELDS: frozenset[str] = frozenset({
    *(f"buffers.{b}.{f}" for b in ("activation", "weight", "output")
      for f in ("banks", "bank_bytes_per_cycle", "ports")),  # each buffer's DMA port
    "dram.latency_cycles",
    # the DRAM timing model (nmsat.dataflow.memory) and its row-buffer parameters
    "dram.model", "dram.banks", "dram.row_bytes", "dram.t_rp_cycles", "dram.t_rcd_cycles",
    "dram.dma",  # the DMA's layout and request path (machine.dma_bytes)
    "sore.lanes", "sore.cycles_per_weight", "sore.pipeline_latency",
    "weight_update.lanes", "weight_update.pipeline_latency",
})
"""Config fields the system model reads beyond the program (a program does not change
with them; its timing does)."""

RESULT_FIELDS: frozenset[str] = frozenset({
    "clock_mhz",  # cycles -> seconds
    "weight_update.momentum",  # the functional reference's update rule only
})
"""Config fields read only when the result is assembled (seconds, energy)."""

RESULT_PREFIXES: tuple[str, ...] = ("energy.",)
"""Whole subtrees read only when the result is assembled: the energy table (and mode)
applies per-action energies to the activity counts the run produced."""


def leaf_fields(cfg: AcceleratorConfig) -> dict[str, Any]:
    """Every leaf of the config's plain dict, by dotted name (an energy entry's ``pj`` and
    ``source`` are leaves of their own)."""
    out: dict[str, Any] = {}

    def walk(node: Mapping[str, Any], prefix: str) -> None:
        for k, v in node.items():
            if isinstance(v, Mapping):
                walk(v, f"{prefix}{k}.")
            else:
                out[f"{prefix}{k}"] = v

    walk(config_mod.to_dict(cfg), "")
    return out


class UnclassifiedField(KeyError):
    """A config field that no stage's key says whether it reads."""


def classify(field: str) -> str:
    """``"program"``, ``"timing"`` or ``"result"``: the first stage that reads ``field``.

    Raises :class:`UnclassifiedField` for a field not listed here (a new config field must
    be added to one of the sets, with the reason)."""
    if field in PROGRAM_FIELDS:
        return "program"
    if field in TIMING_FIELDS:
        return "timing"
    if field in RESULT_FIELDS or field.startswith(RESULT_PREFIXES):
        return "result"
    raise UnclassifiedField(f"config field {field!r} is not classified in "
                            f"nmsat.simulator.run_cache (program, timing or result)")


def _projection(cfg: AcceleratorConfig, stage: str) -> str:
    # Memoised on the config object: a config is immutable (frozen dataclasses of
    # immutable values, checked by tests/test_run_cache.py), so its projections never
    # change; a simulation asks for them up to four times (program and run keys of the
    # point and of its dense baseline).
    memo = cfg.__dict__.get(_MEMO_ATTR)
    if memo is None:
        memo = {}
        object.__setattr__(cfg, _MEMO_ATTR, memo)
    got = memo.get(stage)
    if got is None:
        fields = memo.get("")
        if fields is None:
            fields = memo[""] = leaf_fields(cfg)
        kept = {k: v for k, v in fields.items() if classify(k) == stage}
        got = memo[stage] = json.dumps(kept, sort_keys=True, separators=(",", ":"))
    return got


_MEMO_ATTR = "_run_cache_projections"
"""The attribute of a config that holds its projections (by stage; ``""``: its leaves)."""


def program_key(workload_key: Hashable, cfg: AcceleratorConfig, compile_options: Any) -> tuple:
    """The key of a compiled program: the workload's identity (e.g. its zoo name, batch and
    sequence length), every compile option and the :data:`PROGRAM_FIELDS` of ``cfg``."""
    return (workload_key, repr(compile_options), _projection(cfg, "program"))


UNIT_TIMING_FIELDS: Mapping[str, str] = {"Sore": "sore."}
"""Timing fields read only when the program holds an instruction of the named kind: the
SORE's lanes, cycles per weight and pipeline latency time ``SORE`` instructions alone
(:func:`nmsat.dataflow.timing.sore_cycles`; ``activity`` counts its lane-cycles per
``SORE``). A program without one (dense training, inference) runs the same for any
``sore.*``, so a dense baseline is shared by hardware points that differ only there."""


def unread_timing_prefixes(program: Any) -> tuple[str, ...]:
    """The :data:`UNIT_TIMING_FIELDS` prefixes ``program`` cannot read (it has no
    instruction of their kind)."""
    kinds = {type(ins).__name__ for ins in program.instructions}
    return tuple(sorted(p for kind, p in UNIT_TIMING_FIELDS.items() if kind not in kinds))


CYCLE_FIELDS: frozenset[str] = frozenset({
    "sore.lanes", "sore.pipeline_latency",
    "weight_update.lanes", "weight_update.pipeline_latency",
})
"""Timing fields the system model reads only through the busy cycles of the SORE,
WEIGHT_UPDATE and VECTOR instructions (:func:`nmsat.simulator.units.unit_cycles`: lane
cycles against the DRAM stream time of the operands). With the program at hand a run's
key holds those cycles instead of the fields, so two configs whose unit instructions take
the same cycles share the run: e.g. 64 and 128 vector lanes when the vector engine
streams at the DRAM's rate either way. (``sore.cycles_per_weight`` stays in the key: the
activity counts read it.)"""


def run_key(prog_key: tuple, cfg: AcceleratorConfig, record: bool,
            program: Any = None) -> tuple:
    """The key of a system-model run: its program's key, the :data:`TIMING_FIELDS` of
    ``cfg`` and whether the timeline is recorded. With the ``program``, timing fields of
    units it has no instruction for are left out (:data:`UNIT_TIMING_FIELDS`), and the
    :data:`CYCLE_FIELDS` are replaced by the busy cycles of its unit instructions."""
    timing = _projection(cfg, "timing")
    if program is None:
        return (prog_key, timing, record)
    from nmsat.dataflow.memory import memory_model
    from nmsat.simulator.units import unit_cycles

    drop = unread_timing_prefixes(program)
    kept = {k: v for k, v in json.loads(timing).items()
            if not k.startswith(drop) and k not in CYCLE_FIELDS}
    timing = json.dumps(kept, sort_keys=True, separators=(",", ":"))
    return (prog_key, timing, record,
            unit_cycles(program.instructions, cfg, memory_model(cfg), program.tensors))


class RunCache:
    """Least-recently-used stores of compiled programs and system-model runs.

    Pass one to :func:`nmsat.simulator.api.simulate` with a ``workload_key`` that names
    the workload's content (two different workloads must never share a key). The cached
    objects are shared, never mutated; ``hits`` and ``misses`` count lookups per stage.
    """

    def __init__(self, max_programs: int = 32, max_runs: int = 32,
                 max_tilings: int = 8) -> None:
        self.max = {"program": max_programs, "run": max_runs, "tilings": max_tilings}
        self._items: dict[str, OrderedDict[tuple, Any]] = {"program": OrderedDict(),
                                                           "run": OrderedDict(),
                                                           "tilings": OrderedDict()}
        self.hits = {"program": 0, "run": 0, "tilings": 0}
        self.misses = {"program": 0, "run": 0, "tilings": 0}

    def tilings(self, prog_key: tuple) -> dict:
        """The memo of tiling searches (:func:`nmsat.dataflow.compiler.offline_schedule`)
        shared by every compilation whose config has the :data:`PROGRAM_FIELDS` of
        ``prog_key`` (a :func:`program_key`): within it a layer shape's tiling is searched
        once for all workloads, methods, patterns and the dense baseline (the memo's own
        key, :func:`~nmsat.dataflow.compiler.tiling_key`, names the task and options)."""
        key = (prog_key[2],)
        memo = self.get("tilings", key)
        if memo is None:
            memo = {}
            self.put("tilings", key, memo)
        return memo

    def get(self, stage: str, key: tuple) -> Any | None:
        items = self._items[stage]
        if key in items:
            items.move_to_end(key)
            self.hits[stage] += 1
            return items[key]
        self.misses[stage] += 1
        return None

    def put(self, stage: str, key: tuple, value: Any) -> None:
        items = self._items[stage]
        items[key] = value
        items.move_to_end(key)
        while len(items) > self.max[stage]:
            items.popitem(last=False)

    def clear(self) -> None:
        for items in self._items.values():
            items.clear()
