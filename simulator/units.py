"""The compute units' processes and the per-instruction tables every process reads.

The engine (``COMPUTE`` busy for its accept cycle and
:func:`nmsat.dataflow.timing.compute_cycles`, ``RELEASE`` for its accept cycle:
:data:`nmsat.dataflow.machine.ENGINE_ISSUE_CYCLES`), the SORE and the weight-update / vector
engine each run one in-order queue (:func:`unit_process`). The SORE and vector engine stream
their operands from DRAM themselves: an instruction takes ``max(lane cycles, the memory
model's stream time of its bytes)`` (:func:`instruction_cycles`). Their traffic is not
arbitrated against the DMA's tile traffic (for the zoo models it is well under 1% of the
DMA's bytes; ``docs/simulator.md``).

Synchronisation is the ISA's (:func:`wait_recipes`): the ACT, WGT and OUT buffers are
rings of halves (two when ``double_buffered``, else one). The n-th ``LOAD`` into a buffer
waits for the (n-2)-th half to be freed (``COMPUTE`` with ``pop`` or ``RELEASE``); a
``COMPUTE`` reads the oldest filled halves; a ``COMPUTE`` writing output group s waits for
``STORE`` number s-2; a ``STORE`` waits for the engine instruction before it; a
``BARRIER`` holds every later instruction until the named units' earlier instructions
completed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from nmsat.arith import ceil_div
from nmsat.dataflow import machine, sore_stream, timing, wu_stream
from nmsat.dataflow.isa import (
    Buffer,
    Compute,
    Load,
    Release,
    Sore,
    Store,
    Vector,
    WeightUpdate,
)
from nmsat.workloads.layers import OpKind

from .program_walk import (
    C_ENG,
    C_LACT,
    C_LWGT,
    C_PACT,
    C_PWGT,
    C_ST,
    PROC_KINDS,
    S_ENG,
    S_FACT,
    S_FWGT,
    S_LACT,
    S_LOAD,
    S_LWGT,
    S_SO,
    S_ST,
    S_WU,
    UNIT_STREAM,
    Cursor,
)
from .stalls import DEPENDENCY, OWN_CAUSE, VECTOR

if TYPE_CHECKING:
    from nmsat.config import AcceleratorConfig
    from nmsat.dataflow.memory import MemoryModel

    from .system import _Sim

VECTOR_PASSES = {OpKind.NORM: 2, OpKind.SOFTMAX: 2, OpKind.ACT: 1, OpKind.POOL: 1,
                 OpKind.ADD: 1}
"""Passes over the data a vector op makes on the lanes: normalisation and softmax need
statistics (mean/variance, max/sum) before they can transform, the others one pass."""


def instruction_cycles(instrs, cfg: AcceleratorConfig, memory: MemoryModel,
                       tensors=()) -> list[int]:
    """Per instruction, the cycles its unit is busy with it (0 for transfers: the DMA's
    time is the memory model's, per issue). ``tensors``: the program's (a SORE's source
    shape under ``dram.dma = word_slots``)."""
    out = [0] * len(instrs)
    for i, ins in enumerate(instrs):
        if isinstance(ins, Compute):  # the accept cycle, then the block
            out[i] = machine.ENGINE_ISSUE_CYCLES + timing.compute_cycles(ins, cfg)
        elif isinstance(ins, Release):
            out[i] = machine.ENGINE_ISSUE_CYCLES
        elif isinstance(ins, UNIT_KINDS):
            out[i] = _unit_cycles(ins, cfg, memory, tensors)
    return out


UNIT_KINDS = (Sore, WeightUpdate, Vector)
"""The instructions of the SORE and the vector engine (weight updates, vector ops)."""


def _unit_cycles(ins, cfg: AcceleratorConfig, memory: MemoryModel, tensors=()) -> int:
    top = cfg.dram.dma == "word_slots"  # the accelerator top's memory path
    if isinstance(ins, Sore):
        if top and sore_stream.has_stream(cfg):  # the top's SORE stream
            src = tensors[ins.src]
            return sore_stream.stream_cycles(ins, src.rows, src.cols, cfg)
        return max(timing.sore_cycles(ins, cfg),
                   memory.stream_cycles(ins.read_bytes + ins.write_bytes))
    if isinstance(ins, WeightUpdate):
        if top and wu_stream.has_stream(cfg):  # the top's weight-update stream
            w = tensors[ins.tensor]
            return wu_stream.stream_cycles(ins, w.rows, w.cols, cfg)
        return max(timing.weight_update_cycles(ins, cfg),
                   memory.stream_cycles(ins.read_bytes + ins.write_bytes))
    lane = (ceil_div(ins.elements, cfg.weight_update.lanes) * VECTOR_PASSES[ins.kind]
            + cfg.weight_update.pipeline_latency)
    return max(lane, memory.stream_cycles(ins.read_bytes + ins.write_bytes))


def unit_cycles(instrs, cfg: AcceleratorConfig, memory: MemoryModel,
                tensors=()) -> tuple[int, ...]:
    """The busy cycles of every SORE, WEIGHT_UPDATE and VECTOR instruction, in program
    order (their entries of :func:`instruction_cycles`)."""
    return tuple(_unit_cycles(ins, cfg, memory, tensors) for ins in instrs
                 if isinstance(ins, UNIT_KINDS))


def wait_recipes(instrs, halves: dict[int, int]) -> list[tuple[tuple[int, int, int], ...]]:
    """Per instruction: (stream, counter, back) triples; the instruction waits for
    completion ``counters[counter] - back`` of the stream when that is >= 0.
    ``halves``: the ring size of the free streams (``S_FACT``, ``S_FWGT``) and of the
    stores (``S_ST``)."""
    h = halves
    out: list[tuple[tuple[int, int, int], ...]] = []
    for ins in instrs:
        r: tuple[tuple[int, int, int], ...]
        if isinstance(ins, Load):
            r = ((S_FACT, C_LACT, h[S_FACT]),) if ins.buffer is Buffer.ACT else (
                (S_FWGT, C_LWGT, h[S_FWGT]),)
        elif isinstance(ins, Compute):
            r = ((S_LACT, C_PACT, 0), (S_LWGT, C_PWGT, 0), (S_ST, C_ST, h[S_ST]))
        elif isinstance(ins, Release):
            r = ((S_LACT, C_PACT, 0),) if ins.buffer is Buffer.ACT else (
                (S_LWGT, C_PWGT, 0),)
        elif isinstance(ins, Store):
            r = ((S_ENG, C_ENG, 1),)
        else:
            r = ()
        out.append(r)
    return out


def completion_streams(instrs) -> list[tuple[int, ...]]:
    """Per instruction: the streams its completion is recorded in."""
    out = []
    for ins in instrs:
        if isinstance(ins, Compute):
            r = (S_ENG,) + ((S_FACT,) if ins.pop_a else ()) + ((S_FWGT,) if ins.pop_b else ())
        elif isinstance(ins, Release):
            r = (S_ENG, S_FACT if ins.buffer is Buffer.ACT else S_FWGT)
        elif isinstance(ins, Load):
            r = (S_LOAD, S_LACT if ins.buffer is Buffer.ACT else S_LWGT)
        elif isinstance(ins, Store):
            r = (S_ST,)
        elif isinstance(ins, Sore):
            r = (S_SO,)
        elif isinstance(ins, (WeightUpdate, Vector)):
            r = (S_WU,)
        else:
            r = ()
        out.append(r)
    return out


def vector_causes(instrs) -> list[str | None]:
    """Per instruction: the cause its completion always carries (``vector`` for a
    vector-engine op, :data:`nmsat.simulator.stalls.OWN_CAUSE`), else ``None``."""
    return [VECTOR if isinstance(ins, Vector) else None for ins in instrs]


def deps(recipe, cur: Cursor) -> list[tuple[int, int]]:
    """(stream, sequence number) pairs the instruction at the cursor waits for (its
    ``recipe`` from :func:`wait_recipes`, and the barriers the cursor passed)."""
    c = cur.counters
    out = [(st, c[cn] - back) for st, cn, back in recipe if c[cn] >= back]
    bd = cur.barrier_deps
    if bd is None:  # a barrier changed: list its waits again
        bd = cur.barrier_deps = [(st, b[0] - 1) for st, b in zip(_BARRIER_STREAMS, cur.barrier)
                                 if b is not None and b[0] > 0]
    if bd:
        out.extend(bd)
    return out


_BARRIER_STREAMS = tuple(st for _, st, _ in UNIT_STREAM)
"""The stream a barrier naming each unit (index into ``UNIT_STREAM``) waits on."""


def unit_process(sim: _Sim, unit: str):
    """SimPy process of the engine, SORE or vector engine: one in-order queue, each
    instruction busy for its cycles once its dependencies completed."""
    env, streams, ledger, steady = sim.env, sim.streams, sim.ledger, sim.steady
    cur = sim.cursors[PROC_KINDS[unit][0]]
    pending = steady.pending_jump[unit]
    rec, seg_end = streams.rec, streams.seg_end  # streams.peek's common case, inline
    while True:
        if pending:
            shift = steady.maybe_jump(unit)
            if shift:
                yield env.timeout(shift)
        idx = cur.next()
        if idx is None:
            break
        sim.executed += 1
        key = sim.attr[idx]
        dl = deps(sim.recipes[idx], cur)
        ready, binding, unknown = 0, None, False
        for s_, n_ in dl:  # fast path: every dependency already scheduled
            t_ = rec[s_].get(n_) if n_ > seg_end[s_] else streams.peek(s_, n_)
            if t_ is None:
                unknown = True
                break
            if t_ > ready:
                ready, binding = t_, (s_, n_)
        if unknown:
            ready, cause = yield from streams.ready(dl)
        else:
            cause = streams.cause(*binding) if binding else DEPENDENCY
        started = sim.floor[idx] > ready  # held only by the controller's dispatch
        if started:  # (machine.dispatch_floors)
            ready, cause = sim.floor[idx], DEPENDENCY
        now = int(env.now)
        prev = sim.clock[unit]
        start = max(prev, ready)
        if start > prev:
            ledger.stalled(unit, cur, key, prev, start, cause)
        cyc = sim.cycles[idx]
        done = start + cyc
        sim.clock[unit] = done
        if cyc and ledger.record:
            ledger.log(unit, start, done, key, type(sim.instrs[idx]).__name__.lower())
        # a vector op's completion is vector work whatever it waited for (stalls.OWN_CAUSE)
        own = sim.vector_own[idx] or (cause if start > prev and not started
                                      else OWN_CAUSE[unit])
        for st in sim.puts[idx]:
            streams.put(st, done, own)
        cur.commit(idx)
        cur.mark()
        sim.last_key[unit] = key
        if done > now:
            yield env.timeout(done - now)
    sim.clock[unit] = max(sim.clock[unit], int(env.now))


__all__ = ["UNIT_KINDS", "VECTOR_PASSES", "completion_streams", "deps", "instruction_cycles",
           "unit_cycles", "unit_process", "vector_causes", "wait_recipes"]
