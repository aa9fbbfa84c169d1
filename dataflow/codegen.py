"""Compiler stages 4 and 5: SORE pre-generation and code generation (``docs/isa.md``).

:func:`pregeneration` orders the tasks (each layer's SORE work one layer ahead, or right
before its FF behind a barrier); :func:`codegen` emits each GEMM task's loop nest of LOAD /
COMPUTE / STORE with the barriers, SORE, weight-update and vector instructions between.
"""

from __future__ import annotations

import itertools

from nmsat.config import AcceleratorConfig
from nmsat.types import Phase

from . import isa
from .hoist import take_first_loads
from .isa import (
    Barrier,
    Buffer,
    Compute,
    ElemType,
    Instr,
    Load,
    Loop,
    Program,
    Release,
    Sore,
    Store,
    Unit,
    Vector,
    WeightUpdate,
)
from .tasks import (
    GemmTask,
    LoopOrder,
    Lowered,
    SoreTask,
    Tiling,
    VecTask,
    View,
    WuTask,
    engine_elem,
    out_of_reach,
)
from .tiling import TaskCtx

__all__ = ["SORE_BARRIER", "codegen", "pregeneration"]

# --------------------------------------------------------------------------- pass: pregen


SORE_BARRIER = "sore_barrier"
"""Marker in the ordered task list: the masks of the next GEMM must be in DRAM."""


def pregeneration(low: Lowered, on: bool) -> list[int | str]:
    """Pass: order SORE work. Returns task indices in issue order, with
    :data:`SORE_BARRIER` markers.

    Off: each layer's SORE tasks run right before its FF GEMM, followed by a barrier, so
    the engine waits. On: each layer's SORE tasks are issued one weighted layer earlier
    (the first layer's at the start), so they run while the engine computes the previous
    layer; the barrier before a layer's FF then waits only for its own masks."""
    tasks = low.tasks
    out: list[int | str] = []
    if not on:
        for i, t in enumerate(tasks):
            if isinstance(t, GemmTask) and t.needs_sore:
                out.append(SORE_BARRIER)
            out.append(i)
        return out
    sores_of: dict[int, list[int]] = {}
    for i, t in enumerate(tasks):
        if isinstance(t, SoreTask):
            sores_of.setdefault(t.layer, []).append(i)
    ff_layers = [t.layer for t in tasks if isinstance(t, GemmTask) and t.phase is Phase.FF
                 and t.layer in sores_of]
    # the FF GEMM of layer prev gets layer nxt's SORE work issued just before it
    hoist_before = dict(itertools.pairwise(ff_layers))
    if ff_layers:
        out.extend(sores_of[ff_layers[0]])
    for i, t in enumerate(tasks):
        if isinstance(t, SoreTask):
            continue
        if isinstance(t, GemmTask) and t.needs_sore:
            out.append(SORE_BARRIER)
        if isinstance(t, GemmTask) and t.phase is Phase.FF and t.layer in hoist_before:
            out.extend(sores_of[hoist_before[t.layer]])
        out.append(i)
    placed = sum(1 for x in out if x != SORE_BARRIER)
    assert placed == len(tasks), "pre-generation lost or duplicated a task"
    return out


# --------------------------------------------------------------------------- codegen


class _Emitter:
    def __init__(self, low: Lowered, cfg: AcceleratorConfig):
        self.low, self.cfg = low, cfg
        self.names = list(low.tensors)
        self.index = {n: i for i, n in enumerate(self.names)}
        self.out: list[Instr] = []

    def tid(self, name: str) -> int:
        return self.index[name]

    def emit(self, ins: Instr) -> None:
        self.out.append(ins)


def _nest(em: _Emitter, ctx: TaskCtx, t: Tiling) -> None:
    """Emit the loop nest of one GEMM task:
    group loop > outer block loop > inner block loop > K-block loop."""
    task = ctx.task
    outer, inner = ("n", "m") if t.order is LoopOrder.NM else ("m", "n")
    keep_a = t.kb == ctx.k and t.order is LoopOrder.MN
    keep_b = t.kb == ctx.k and t.order is LoopOrder.NM
    resident = t.kb == ctx.k  # the outer loop's operand stays in its buffer half
    totals = {"m": ctx.m, "n": ctx.n, "k": ctx.k}
    blocks = {"m": t.mb, "n": t.nb, "k": t.kb}

    def transfer(cls, view: View, rdim: str, cdim: str, size, off, steps, nbytes: int, **kw):
        # row/col coordinates: block offset + group offset; steps per loop depth.
        rs, cs = [0] * isa.MAX_LOOP_DEPTH, [0] * isa.MAX_LOOP_DEPTH
        r0, c0 = off[rdim], off[cdim]
        for d, (dim, st) in steps.items():
            if dim == rdim:
                rs[d] += st
            if dim == cdim:
                cs[d] += st
            if dim == "g":
                rs[d] += view.group_rows
                cs[d] += view.group_cols
        return cls(em.tid(view.tensor), r0, c0, size[rdim], size[cdim], nbytes,
                   transform=view.transform, row_steps=tuple(rs), col_steps=tuple(cs), **kw)

    def load_a(size, off, steps):
        return transfer(Load, task.a, "m", "k", size, off, steps,
                        ctx.a_bytes(size["m"], size["k"]), buffer=Buffer.ACT, nm=task.nm)

    def load_b(size, off, steps):
        return transfer(Load, task.b, "k", "n", size, off, steps,
                        ctx.b_bytes(size["k"], size["n"]), buffer=Buffer.WGT, nm=task.nm)

    def store_c(size, off, steps):
        return transfer(Store, task.c, "m", "n", size, off, steps,
                        ctx.store_bytes(size["m"], size["n"]))

    def level(dims: list[str], size: dict, off: dict, steps: dict, depth: int,
              body_fn) -> None:
        """Emit ``body_fn`` inside loops over ``dims`` (full blocks looped, remainder
        block after it)."""
        if not dims:
            body_fn(size, off, steps, depth)
            return
        dim, rest = dims[0], dims[1:]
        total, b = totals[dim], blocks[dim]
        full, rem = total // b, total % b
        for cnt, sz, base in ((full, b, 0), (1 if rem else 0, rem, full * b)):
            if cnt == 0:
                continue
            s2, o2 = dict(size, **{dim: sz}), dict(off, **{dim: base})
            if cnt > 1:
                at = len(em.out)
                em.emit(Loop(cnt, 1))  # body length patched below
                st2 = dict(steps)
                st2[depth] = (dim, b)
                level(rest, s2, o2, st2, depth + 1, body_fn)
                em.out[at] = Loop(cnt, len(em.out) - at - 1)
            else:
                level(rest, s2, o2, steps, depth, body_fn)

    def kloop(size, off, steps, depth):
        def body(s, o, st, d):
            if not keep_a:
                em.emit(load_a(s, o, st))
            if not keep_b:
                em.emit(load_b(s, o, st))
            em.emit(Compute(t.dataflow, task.nm, s["m"], s["n"], s["k"], t.interleave,
                            pop_a=not keep_a, pop_b=not keep_b,
                            layer=task.layer, phase=task.phase))
        level(["k"], size, off, steps, depth, body)
        em.emit(store_c(size, off, steps))

    def outer_body(size, off, steps, depth):
        if resident:
            full = dict(size, k=ctx.k)
            o = dict(off, k=0)
            em.emit(load_b(full, o, steps) if keep_b else load_a(full, o, steps))
        level([inner], size, off, steps, depth, kloop)
        if resident:
            em.emit(Release(Buffer.WGT if keep_b else Buffer.ACT))

    totals["g"], blocks["g"] = ctx.count, 1
    size0 = {"m": t.mb, "n": t.nb, "k": t.kb, "g": 1}
    off0 = {"m": 0, "n": 0, "k": 0, "g": 0}
    # The group offset enters through the loop steps (group_rows/cols); a single group
    # has offset 0.
    level(["g", outer], size0, off0, {}, 0, outer_body)


def codegen(low: Lowered, ordered: list[int | str], cfg: AcceleratorConfig,
            meta: dict[str, str], hoist_weights: bool = True) -> Program:
    """Instructions for the tasks in ``ordered`` (indices into ``low.tasks`` and
    :data:`SORE_BARRIER` markers), with their tilings. ``hoist_weights``: a GEMM whose B
    is read-only (:attr:`GemmTask.b_static`) has its first WGT LOADs (one per ring half)
    issued right after the previous GEMM nest, ahead of its barriers (:mod:`.hoist`)."""
    em = _Emitter(low, cfg)
    wgt_halves = max(1, cfg.buffers.weight.halves - 1)
    hoist_at: int | None = None  # the end of the last GEMM nest emitted (None: none yet)
    elem_b = engine_elem(cfg).bytes
    pending = Unit(0)  # units whose results the next engine work must wait for
    # Weight updates are issued right after the next GEMM's barrier (which waits for the
    # weight gradient's stores): issued earlier, the in-order vector unit would put them
    # ahead of the next layer's vector op, which that GEMM waits for.
    deferred: list[WuTask] = []

    master_b = ElemType.of(cfg.numerics.master_dtype).bytes
    wu_read_b = 3 * master_b  # per weight: master, velocity and gradient, all fp32
    wu_write_b = 2 * master_b + elem_b  # master, velocity and the engine-dtype working copy

    def flush() -> None:
        for wu in deferred:  # (architecture section 6)
            with out_of_reach(low.layers, wu.layer):
                em.emit(WeightUpdate(em.tid(wu.tensor), wu.weights, wu_read_b * wu.weights,
                                     wu_write_b * wu.weights, wu.layer))
        deferred.clear()

    for entry in ordered:
        if isinstance(entry, str):  # SORE_BARRIER, the only marker
            # The masks this GEMM reads must be in DRAM; SORE work issued after this
            # point (pre-generation of later layers) is not waited for.
            em.emit(Barrier(Unit.SORE | Unit.STORE | pending))
            pending = Unit(0)
            continue
        item = low.tasks[entry]
        with out_of_reach(low.layers, item.layer):
            if isinstance(item, GemmTask):
                if item.phase is Phase.WG:
                    # a WG GEMM never reads a vector op's output (see lower): only the stores
                    em.emit(Barrier(Unit.STORE))
                else:
                    em.emit(Barrier(pending | Unit.STORE))
                    pending = Unit(0)
                flush()
                start = len(em.out)
                _nest(em, TaskCtx(item, low, cfg), low.tilings[entry])
                # the first GEMM: hoisted to the program's start when other work (vector
                # ops) precedes it; a layer program (a barrier, then the nest) is unchanged
                at = hoist_at if hoist_at is not None else \
                    0 if any(not isinstance(x, Barrier) for x in em.out[:start]) else None
                if hoist_weights and item.b_static and at is not None:
                    # the ring is empty after the previous nest (every half it loaded
                    # was freed): the first `halves` WGT LOADs go there
                    taken, rest = take_first_loads(em.out[start:], Buffer.WGT, wgt_halves)
                    em.out[start:] = rest
                    em.out[at:at] = taken
                hoist_at = len(em.out)
            elif isinstance(item, SoreTask):
                src, dst = low.tensors[item.src], low.tensors[item.dst]
                em.emit(Sore(em.tid(item.src), em.tid(item.dst), item.view, item.nm,
                             item.weights, item.groups, src.bytes, dst.bytes, item.layer))
            elif isinstance(item, WuTask):
                deferred.append(item)
            elif isinstance(item, VecTask):
                em.emit(Barrier(Unit.STORE | pending))
                pending = Unit(0)
                em.emit(Vector(item.kind, item.elements, item.reads * item.elements * elem_b,
                               item.elements * elem_b, item.layer, item.phase))
                pending |= Unit.WU  # the next engine work reads the vector op's output
    if deferred:
        em.emit(Barrier(Unit.STORE))  # the last weight gradients are in DRAM
        flush()
    return Program(tuple(em.out), tuple(low.tensors.values()), tuple(low.layers),
                   tuple(sorted(meta.items())))

