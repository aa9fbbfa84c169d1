"""SimPy system model: the accelerator's units executing a tile program concurrently.

The program is the dataflow compiler's :class:`~nmsat.dataflow.isa.Program`, run with the
execution model of ``docs/isa.md``. This module wires the model together and returns a
:class:`SystemRun`; each concern is a module of its own:

:mod:`.program_walk`
    The program as the processes walk it: counters, completion streams, the loop tree,
    one cursor per instruction kind.
:mod:`.units`
    The engine, SORE and vector engine processes (``COMPUTE``, ``RELEASE``, ``SORE``,
    ``WEIGHT_UPDATE``, ``VECTOR``), the instructions' cycles and what each one waits for.
:mod:`.dma`
    The memory service: the DMA's SimPy process with its LOAD and STORE queues, over the
    memory model :mod:`nmsat.dataflow.memory` (DRAM channels and the buffers' DMA ports:
    the one definition of the DRAM timing, shared with the RTL testbench;
    ``dram.model`` selects it).
:mod:`.streams`
    Completion times of every synchronisation stream, and who waits for them.
:mod:`.steady_state`
    Loops without simulating every iteration: exact extrapolation of proven periods.
:mod:`.stalls`
    Stall attribution: which cause every waiting cycle is charged to, and the
    partition of the run's cycles over (layer, phase).

Busy cycles do not depend on timing, so they are counted statically (instruction cycles,
and the memory model's data cycles per channel for transfers, times executions); stalls
and the timeline come from the simulation.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import simpy

from nmsat.config import AcceleratorConfig
from nmsat.dataflow import machine
from nmsat.dataflow.isa import Barrier, Load, Program, Store
from nmsat.dataflow.memory import BufferPorts, Dma, MemoryModel, memory_model
from nmsat.simulator.roofline import attribution

from .dma import DmaService
from .program_walk import (
    BARRIER,
    DMA,
    ENGINE,
    K_ENGINE,
    K_LOAD,
    K_SORE,
    K_STORE,
    K_WU,
    PROC_KINDS,
    S_FACT,
    S_FWGT,
    S_ST,
    SORE,
    UNITS,
    WU,
    Cursor,
    build_tree,
    delta_of,
    kind_of,
)
from .stalls import Interval, Ledger, attribute_wall_time
from .steady_state import SteadyState
from .streams import Streams
from .units import (
    completion_streams,
    instruction_cycles,
    unit_process,
    vector_causes,
    wait_recipes,
)

__all__ = ["DMA", "ENGINE", "SORE", "UNITS", "WU", "Interval", "SystemRun",
           "attribute_wall_time", "run"]



# --------------------------------------------------------------------------- results


@dataclass
class SystemRun:
    """Timing of one program run.

    ``busy[unit][(layer, phase)]`` and ``stall[unit][(layer, phase, cause)]`` are cycles
    (DMA busy = channel-cycles). ``engine_time[(layer, phase)]`` partitions the engine's
    timeline from 0 to its last completion: busy cycles, and stalls charged to ``sore``
    when the SORE caused them, else to the waiting instruction's phase.
    """

    total_cycles: int = 0
    engine_end: int = 0
    unit_end: dict[str, int] = field(default_factory=dict)
    busy: dict[str, dict[tuple[str, str], int]] = field(default_factory=dict)
    stall: dict[str, dict[tuple[str, str, str], int]] = field(default_factory=dict)
    engine_time: dict[tuple[str, str], int] = field(default_factory=dict)
    channel_busy: list[int] = field(default_factory=list)
    intervals: list[Interval] = field(default_factory=list)
    jumps: list[tuple[int, int, int, int]] = field(default_factory=list)
    simulated_instructions: int = 0
    tail_key: tuple[str, str] = ("", "")


# --------------------------------------------------------------------------- simulation


class _Sim:
    """One run: the shared tables and state the processes read, and the processes.

    Read-only tables, per instruction index: ``instrs``, ``kinds`` (cursor kind or
    ``BARRIER``), ``deltas`` (counter increments), ``barrier_units``, ``attr`` (layer,
    phase), ``recipes`` (what it waits for), ``puts`` (the streams its completion goes
    to), ``cycles`` (busy cycles); ``halves`` (ring sizes) and ``memory`` (the DRAM model).

    Shared state, and who changes it:

    * ``clock[unit]``: the end of each unit's last instruction (the unit's process;
      :class:`~.steady_state.SteadyState` adds skipped periods).
    * ``cursors[kind]``: each kind's position in the program (the processes commit;
      the steady-state detector skips periods).
    * ``streams``: completion times (the processes put; skips add segments).
    * ``ledger``: stall cycles, engine timeline, intervals (processes and skips).
    * ``dma``: the memory service and its memory model (its process; skips shift it).
    * ``steady``: the steady-state detector (cursors report loop entries and finished
      iterations; every process asks it for a pending skip before each instruction).
    * ``executed``, ``last_key``: simulated instructions, each unit's last (layer, phase).
    """

    def __init__(self, prog: Program, cfg: AcceleratorConfig, extrapolate: bool,
                 record: bool, memory: MemoryModel | None = None) -> None:
        self.prog = prog
        self.cfg = cfg
        self.extrapolate = extrapolate
        self.instrs = prog.instructions
        self.deltas = [delta_of(ins) for ins in self.instrs]
        # the same, as (counter, increment) pairs of the non-zero increments
        self.delta_steps = [tuple((c, v) for c, v in enumerate(d) if v)
                            for d in self.deltas]
        self.kinds = [(BARRIER if isinstance(ins, Barrier) else kind_of(ins))
                      for ins in self.instrs]
        self.barrier_units = [int(ins.units) if isinstance(ins, Barrier) else 0
                              for ins in self.instrs]
        self.root = build_tree(prog, self.deltas)
        self.env = simpy.Environment()
        mem = memory if memory is not None else memory_model(cfg)
        self.memory = mem
        b = cfg.buffers
        self.halves = {S_FACT: b.activation.halves, S_FWGT: b.weight.halves,
                       S_ST: b.output.halves}
        self.streams = Streams(self.env)
        self.attr = attribution(prog)
        self.recipes = wait_recipes(self.instrs, self.halves)
        self.puts = completion_streams(self.instrs)
        self.cycles = instruction_cycles(self.instrs, cfg, mem, prog.tensors)
        self.vector_own = vector_causes(self.instrs)
        self.ledger = Ledger(record)
        self.steady = SteadyState(self)
        self.cursors = {k: Cursor(self, k, self.root) for k in range(5)}
        self.proc_of_kind = {k: p for p, ks in PROC_KINDS.items() for k in ks}
        self.clock = {u: 0 for u in UNITS}  # completion time of the last op, per process
        # port cycles of every LOAD / STORE: beats of its buffer's words (dataflow.machine)
        self.port_cycles = [machine.port_cycles(ins, cfg) if isinstance(ins, (Load, Store))
                            else 0 for ins in self.instrs]
        # what each LOAD / STORE occupies the channels with, and how early its data ends
        # (dram.dma: machine.dma_bytes, machine.dma_tail_cycles)
        self.dma_bytes = [machine.dma_bytes(ins, cfg) if isinstance(ins, (Load, Store))
                          else 0 for ins in self.instrs]
        self.dma_tail = [machine.dma_tail_cycles(ins, cfg) if isinstance(ins, (Load, Store))
                         else 0 for ins in self.instrs]
        # the controller's dispatch at the start (machine.dispatch_floors): no unit issues
        # an instruction before its floor
        self.floor = machine.dispatch_floors(prog)
        self.dma = DmaService(self, Dma(mem, BufferPorts(),
                                              machine.DMA_REQUEST_CYCLES[cfg.dram.dma]))
        self.executed = 0
        self.last_key: dict[str, tuple[str, str]] = {}

    def _static_busy(self) -> tuple[dict[str, dict[tuple[str, str], int]], list[int]]:
        """Busy cycles do not depend on timing: each instruction's cycles (per channel for
        transfers) times the number of times it executes."""
        busy: dict[str, dict[tuple[str, str], int]] = {u: {} for u in UNITS}
        chan = [0] * self.memory.channels
        unit_of = {K_ENGINE: ENGINE, K_LOAD: DMA, K_STORE: DMA, K_SORE: SORE, K_WU: WU}
        for idx, ins, times in self.prog.executions():
            kind = self.kinds[idx]
            if kind is None or kind == BARRIER:
                continue
            u = unit_of[kind]
            key = self.attr[idx]
            if u == DMA:
                assert isinstance(ins, (Load, Store)), ins  # K_LOAD, K_STORE
                per = self.memory.data_cycles(self.dma_bytes[idx])
                for ch, c in enumerate(per):
                    chan[ch] += c * times
                cyc = sum(per)
            else:
                cyc = self.cycles[idx]
            if cyc:
                busy[u][key] = busy[u].get(key, 0) + cyc * times
        return busy, chan

    def run(self) -> SystemRun:
        procs = {}
        kinds_present = set(self.root.own)
        for u in UNITS:
            if any(k in kinds_present for k in PROC_KINDS[u]):
                procs[u] = self.env.process(self.dma.process() if u == DMA
                                            else unit_process(self, u))
        self.env.run()
        for u, p in procs.items():
            if p.is_alive or not all(self.cursors[k].done for k in PROC_KINDS[u]
                                     if k in kinds_present):
                raise RuntimeError(f"deadlock: the {u} unit never finished the program "
                                   f"(a wait that nothing satisfies)")
        out = SystemRun()
        out.unit_end = {u: self.clock[u] for u in procs}
        out.total_cycles = max(out.unit_end.values(), default=0)
        out.engine_end = out.unit_end.get(ENGINE, 0)
        busy, chan = self._static_busy()
        out.busy = busy
        out.stall = {u: dict(v) for u, v in self.ledger.stall.items()}
        etime = dict(self.ledger.etime)
        for key, cyc in busy[ENGINE].items():
            etime[key] = etime.get(key, 0) + cyc
        out.engine_time = etime
        out.channel_busy = chan
        out.intervals = self.ledger.intervals
        out.jumps = self.steady.jumps
        out.simulated_instructions = self.executed
        if out.unit_end:
            last = max(procs, key=lambda u: (out.unit_end[u], -UNITS.index(u)))
            out.tail_key = self.last_key.get(last, ("", ""))
        return out


def run(prog: Program, cfg: AcceleratorConfig, *, extrapolate: bool = True,
        record: bool = True, memory: MemoryModel | None = None) -> SystemRun:
    """Run tile program ``prog`` on ``cfg``'s units and return its timing.

    Parameters
    ----------
    prog
        A tile program (:mod:`nmsat.dataflow.isa`).
    cfg
        The accelerator.
    extrapolate
        Skip whole periods of loops once their steady state is proven (exact, see
        :mod:`nmsat.simulator.steady_state`). ``False`` simulates every iteration.
    record
        Log every unit's busy and stall intervals for the timeline (skipped periods are
        not logged interval by interval).
    memory
        A DRAM model (:class:`nmsat.dataflow.memory.MemoryModel`, fresh: it keeps the
        channels' state) instead of the one ``cfg.dram.model`` selects.
    """
    return _Sim(prog, cfg, extrapolate, record, memory).run()
