"""Dataflow compiler: a workload -> a tile program (``docs/isa.md``).

Stages, each a plain function over an intermediate list of *tasks*:

1. :func:`lower` - every layer and phase (FF, BP, WG, WU, SORE; inference: FF only) to
   tasks: GEMM tasks (dims from :meth:`Layer.gemms`, operand views per
   ``docs/architecture.md`` section 3.2, N:M on B along K where :meth:`Layer.nm_applies`),
   SORE tasks (one per mask view), weight-update and vector tasks, in program order.
2. :func:`offline_schedule` (pass) - per GEMM task pick the dataflow, loop order and block
   sizes minimising estimated cycles under the buffer limits; when disabled, one fixed
   dataflow and a fixed default tiling.
3. :func:`interleave_mapping` (pass) - sets every compute block's ``interleave`` flag.
4. :func:`pregeneration` (pass) - moves each layer's SORE work one layer ahead so it
   overlaps engine work; without it the SORE runs right before the layer's FF and the
   engine waits at a barrier.
5. :func:`codegen` - loop nests of LOAD / COMPUTE / STORE with barriers.

Entry point: :func:`compile_workload`.

Modelling choices (also in ``docs/isa.md``): every layer's BP runs, the first layer's too
(as :meth:`Workload.macs` counts it); ReLU-type activations are fused into the output path
(no instruction); each layer has its own DRAM tensors (no aliasing between a layer's output
and the next layer's input); grouped convolutions keep their feature maps group-major.

The stages live in their own modules: :mod:`~nmsat.dataflow.tasks` (options and the
intermediate form), :mod:`~nmsat.dataflow.lowering` (stage 1),
:mod:`~nmsat.dataflow.tiling` (stages 2 and 3) and :mod:`~nmsat.dataflow.codegen` (stages 4
and 5); this module chains them and re-exports their public names.
"""

from __future__ import annotations

import dataclasses

from nmsat.config import AcceleratorConfig
from nmsat.errors import NmsatError
from nmsat.types import Phase
from nmsat.workloads.layers import Workload

from .codegen import SORE_BARRIER, codegen, pregeneration
from .isa import Program, SoreView
from .lowering import lower
from .tasks import (
    CompileOptions,
    GemmTask,
    LoopOrder,
    Lowered,
    SoreTask,
    Task,
    Tiling,
    VecTask,
    View,
    WuTask,
)
from .tiling import (
    TaskCtx,
    default_tiling,
    estimate_cost,
    estimate_cycles,
    interleave_mapping,
    offline_schedule,
    tiling_key,
)

__all__ = [
    "SORE_BARRIER", "CompileOptions", "GemmTask", "LoopOrder", "Lowered", "SoreTask", "Task",
    "TaskCtx", "Tiling", "VecTask", "View", "WuTask", "codegen", "compile_layer",
    "compile_workload", "default_tiling", "estimate_cost", "estimate_cycles",
    "interleave_mapping", "lower", "offline_schedule", "pregeneration", "tiling_key",
]


def compile_workload(workload: Workload, cfg: AcceleratorConfig,
                     options: CompileOptions | None = None,
                     tilings: dict[tuple, Tiling] | None = None) -> Program:
    """Compile one training iteration (or one inference pass) of ``workload``.

    ``tilings``: a memo of tiling searches shared with other compilations on a config equal
    in every field the compiler reads (see :func:`offline_schedule`); the program is the
    same with or without it."""
    opts = options or CompileOptions()
    low = lower(workload, cfg, opts)
    offline_schedule(low, cfg, opts, tilings)
    interleave_mapping(low, opts.interleave)
    ordered = pregeneration(low, opts.pregen)
    meta = {"workload": workload.name, "mode": str(opts.mode), "method": str(opts.method),
            "nm": str(opts.sparse_nm), "batch": str(opts.batch or workload.batch),
            "interleave": str(opts.interleave), "pregen": str(opts.pregen),
            "offline_schedule": str(opts.offline_schedule), "config": cfg.name}
    return codegen(low, ordered, cfg, meta, opts.hoist_weights)


def compile_layer(workload: Workload, layer: str, phase: Phase, cfg: AcceleratorConfig,
                  options: CompileOptions | None = None, masks: bool = False) -> Program:
    """The tile program of one layer's GEMM(s) in one phase (FF, BP or WG) alone: no SORE,
    weight update or vector work; N:M weight views are expected in DRAM. For running a
    layer on the RTL or the functional executor. ``phase`` SORE: the layer's mask
    generation alone (its SORE instructions, FF view then BP view); WU: its weight
    update alone. ``masks`` (FF, BP):
    the phase's N:M weight view generated first, by the layer's SORE instruction of that
    view and a barrier before the GEMM (as the whole training program has it without
    pre-generation)."""
    opts = options or CompileOptions()
    phase = Phase.parse(phase)
    names = [x.name for x in workload.layers]
    if layer not in names:
        raise NmsatError(f"{workload.name} has no layer {layer!r}")
    li = names.index(layer)
    low = lower(workload, cfg, opts)
    sores = {t.view: t for t in low.tasks if isinstance(t, SoreTask) and t.layer == li}
    order: list[int | str]
    if phase is Phase.WU:
        wus = [t for t in low.tasks if isinstance(t, WuTask) and t.layer == li]
        if not wus:
            raise NmsatError(f"layer {layer!r} has no weight update in this compilation "
                             f"(mode {opts.mode})")
        low.tasks, order = list(wus), list(range(len(wus)))
        used = {t.tensor for t in wus}
    elif phase is Phase.SORE:
        keep: list = [sores[v] for v in (SoreView.FF, SoreView.BP) if v in sores]
        if not keep:
            raise NmsatError(f"layer {layer!r} has no mask generation in this compilation "
                             f"(mode {opts.mode}, method {opts.method})")
        low.tasks, order = keep, list(range(len(keep)))
        used = {x for t in keep for x in (t.src, t.dst)}
    else:
        gemms = [t for t in low.tasks if isinstance(t, GemmTask) and t.layer == li
                 and t.phase is phase]
        if not gemms:
            raise NmsatError(f"layer {layer!r} has no {phase} GEMM in this compilation "
                             f"(mode {opts.mode})")
        view = {Phase.FF: SoreView.FF, Phase.BP: SoreView.BP}.get(phase)
        if masks and any(t.needs_sore for t in gemms) and view in sores:
            low.tasks = [sores[view], *gemms]
            order = [0, SORE_BARRIER, *range(1, len(low.tasks))]
        else:
            low.tasks = [dataclasses.replace(t, needs_sore=False) for t in gemms]
            order = list(range(len(low.tasks)))
        used = {v.tensor for t in gemms for v in (t.a, t.b, t.c)}
        if low.tasks and isinstance(low.tasks[0], SoreTask):
            used |= {low.tasks[0].src, low.tasks[0].dst}
    low.tensors = {k: v for k, v in low.tensors.items() if k in used}
    offline_schedule(low, cfg, opts)
    interleave_mapping(low, opts.interleave)
    meta = {"workload": workload.name, "layer": layer, "phase": str(phase),
            "mode": str(opts.mode), "method": str(opts.method), "nm": str(opts.sparse_nm),
            "batch": str(opts.batch or workload.batch), "interleave": str(opts.interleave),
            "offline_schedule": str(opts.offline_schedule), "config": cfg.name}
    return codegen(low, order, cfg, meta, opts.hoist_weights)
