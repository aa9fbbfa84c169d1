"""``nmsat rtl run WORKLOAD --all-layers``: every layer of a network on the RTL tile
controller, beside the system model.

Each (layer, phase) is the program ``nmsat rtl run --layer NAME --controller`` runs (its
tile program alone, :func:`~nmsat.dataflow.compiler.compile_layer`, with the same operands),
and all of them run one after the other in one cocotb session on one controlled engine
(:func:`~.controller_run.run_controller_programs`: one build). Per program the report has
the RTL's start-to-done cycles (``rtl_program_cycles``), the system model's total for the
same program (``model_program_cycles``) and the value mismatches against the golden
executor; per layer and in total their sums.

Training runs the phases in :data:`TRAIN_PHASES`: what a layer's step needs that the
controller executes today, each phase a program builder. Mask generation (SORE) and the
fp32 weight update (WU) are the phases of :data:`PENDING_TRAIN_PHASES`: they run behind
the controller in a whole training-step program (:mod:`.train_run`, its own testbench
over a live DRAM), not in this loop yet; each joins it with a builder here (a program
of that phase for a layer), and the report's ``phases_run`` / ``phases_not_run`` say
which ran. The accelerator top (``top=True``) runs every phase, SORE and WU too
(:data:`TOP_TRAIN_PHASES`). Inference runs each layer's FF program as ``nmsat simulate
--mode inference`` compiles it (:mod:`.inference`; an LLM's ``prefill`` or ``decode``
step), checked to be that layer's part of the simulator's whole program.

Layers without a GEMM in the mode (activations, pooling, norms, softmax: vector work) are
listed in ``skipped`` with the reason.

With ``top=True`` (``nmsat rtl run --top``) the same programs run on the whole
accelerator top instead (:func:`~.top_run.run_top_programs`: the host over AXI4-Lite,
DRAM behind the top's AXI4 master, the hardware DMA; one build, one session), and the
model is the system model with ``dram.dma = word_slots``, the DMA the top is. A program
the top's DMA cannot carry (:func:`~.top_run.top_host` refuses it: a convolution's
COL2IM BP, a run that starts inside a burst and crosses a 4 KiB page) is listed in
``not_carried`` with the reason, and the others run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from nmsat.config import AcceleratorConfig
from nmsat.dataflow import isa
from nmsat.dataflow.compiler import CompileOptions, compile_layer
from nmsat.errors import NmsatError
from nmsat.types import DEFAULT_NM, NM, Phase

from .controller_run import SystemModel, run_controller_programs
from .inference import inference_dram, inference_layer_program, load_workload, same_program
from .inference import whole_program as inference_whole_program
from .program import layer_dram
from .top_run import check_top_config, run_top_programs, top_host

__all__ = ["PENDING_TRAIN_PHASES", "TOP_COUNTERS", "TOP_TRAIN_PHASES", "TRAIN_PHASES", "Step",
           "carried_by_top",
           "inference_steps", "row_ok", "run_network", "run_steps", "train_steps"]


@dataclass(frozen=True)
class Step:
    """One (layer, phase) program and its DRAM image."""

    layer: str
    phase: str
    program: isa.Program
    dram: dict
    same_program: bool | None = None  # inference: the layer's part of the whole program


def _gemm_program(workload, layer: str, phase: Phase, cfg: AcceleratorConfig,
                  opts: CompileOptions) -> isa.Program:
    return compile_layer(workload, layer, phase, cfg, opts)


TRAIN_PHASES: dict[Phase, Callable[..., isa.Program]] = {
    Phase.FF: _gemm_program, Phase.BP: _gemm_program, Phase.WG: _gemm_program}
"""The training phases the tile controller runs, in step order, each with its program
builder ``(workload, layer, phase, cfg, options) -> Program``."""

TOP_TRAIN_PHASES: dict[Phase, Callable[..., isa.Program]] = {
    Phase.SORE: _gemm_program, **TRAIN_PHASES, Phase.WU: _gemm_program}
"""The training phases the accelerator top runs: every one (its SORE and weight-update
engine stream their operands over AXI4 masters of their own, ``rtl/sore_stream.py``,
``rtl/wu_stream.py``; the SORE phase's program is the layer's SORE instructions, FF view
then BP view, the WU phase's its WEIGHT_UPDATE)."""

PENDING_TRAIN_PHASES: dict[Phase, str] = {
    Phase.SORE: "mask generation: the RTL SORE runs it behind the controller in a whole "
                "training-step program (nmsat.rtl.tb.train_run), not yet in this per-phase loop",
    Phase.WU: "fp32 weight update: the RTL weight-update engine runs it behind the controller "
              "in a whole training-step program (nmsat.rtl.tb.train_run), not yet in this "
              "per-phase loop"}
"""Phases of a training step that do not run on the controller yet, with the reason
(reported as ``phases_not_run``). A phase moves to :data:`TRAIN_PHASES` with a builder."""


def _phases(asked: str | None, top: bool = False) -> list[Phase]:
    runs = TOP_TRAIN_PHASES if top else TRAIN_PHASES
    if asked is None:
        return list(runs)
    p = Phase.parse(asked)
    if p not in runs:
        who = "the accelerator top runs" if top else "the tile controller runs"
        raise ValueError(f"--phase {asked}: {who} {', '.join(str(x) for x in runs)} "
                         f"({_pending(top)[p]})"
                         if p in PENDING_TRAIN_PHASES else f"--phase {asked}: not a training phase")
    return [p]


def _pending(top: bool) -> dict[Phase, str]:
    """The training phases not run, with the reason (the top runs the SORE phase)."""
    return {} if top else dict(PENDING_TRAIN_PHASES)


def _only(workload: str, layers, only: str | None) -> list:
    """``layers``, or the one named ``only`` (``ValueError`` naming the layers if none is)."""
    if only is None:
        return list(layers)
    mine = [x for x in layers if x.name == only]
    if not mine:
        names = ", ".join(x.name for x in layers)
        raise ValueError(f"--layer {only}: {workload} has no layer of that name ({names})")
    return mine


def train_steps(workload: str, cfg: AcceleratorConfig, nm: str | NM = DEFAULT_NM,
                method: str = "bdwp", batch: int | None = None, seed: int = 0,
                dataflow: str = "auto", phase: str | None = None, layer: str | None = None,
                top: bool = False) -> tuple[list[Step], list[dict], dict]:
    """(steps, skipped layers, meta) of a training step of ``workload``: per layer in
    order (or only ``layer``), each phase of :data:`TRAIN_PHASES` (with ``top``:
    :data:`TOP_TRAIN_PHASES`) or only ``phase``, that has a program."""
    from nmsat.workloads.zoo import load

    phases = _phases(phase, top)
    builders = TOP_TRAIN_PHASES if top else TRAIN_PHASES
    wl = load(workload, batch=batch)
    opts = CompileOptions(method=wl.method or method, nm=nm, batch=batch,
                          layer_nm=tuple(wl.layer_nm.items()), dataflow=dataflow)
    chosen = _only(workload, wl.workload.layers, layer)
    steps, skipped = [], []
    for layer in chosen:
        mine = []
        for p in phases:
            try:
                prog = builders[p](wl.workload, layer.name, p, cfg, opts)
            except NmsatError:  # no GEMM of this phase in the layer (compile_layer)
                continue
            dram = layer_dram(prog, cfg, wl, workload, layer.name, seed)
            mine.append(Step(layer.name, str(p), prog, dram))
        if mine:
            steps.extend(mine)
        else:
            skipped.append({"layer": layer.name, "reason": "no GEMM in a training phase the "
                            "controller runs (vector work)"})
    meta = {"workload": workload, "mode": "train", "method": str(opts.method),
            "nm": str(NM.parse(nm)), "batch": wl.workload.batch,
            "phases_run": [str(p) for p in phases],
            "phases_not_run": {str(p): why for p, why in _pending(top).items()}}
    return steps, skipped, meta


def inference_steps(workload: str, cfg: AcceleratorConfig, nm: str | NM = DEFAULT_NM,
                    batch: int = 1, phase: str | None = None, seq_len: int | None = None,
                    kv_len: int | None = None, seed: int = 0, dataflow: str = "auto",
                    layer: str | None = None) -> tuple[list[Step], list[dict], dict]:
    """(steps, skipped layers, meta) of an inference pass (an LLM's prefill or decode
    step) of ``workload``: every layer's FF program (or only ``layer``'s), as
    :mod:`.inference` compiles it."""
    iw = load_workload(workload, nm, batch, phase, seq_len, kv_len)
    chosen = _only(workload, iw.workload.layers, layer)
    whole = inference_whole_program(iw, cfg, nm, dataflow)
    steps, skipped = [], []
    for layer in chosen:
        try:
            prog = inference_layer_program(iw, layer.name, cfg, nm, dataflow)
        except NmsatError:
            skipped.append({"layer": layer.name, "reason": "no GEMM in inference "
                            "(vector work)"})
            continue
        steps.append(Step(layer.name, "ff", prog,
                          inference_dram(prog, cfg, workload, layer.name, seed),
                          same_program(prog, whole, layer.name)))
    meta = {"workload": workload, "mode": "inference",
            "phase": str(iw.phase) if iw.phase else None, "nm": str(NM.parse(nm)),
            "batch": iw.workload.batch, "seq_len": iw.seq_len, "kv_len": iw.kv_len,
            "phases_run": ["ff"], "phases_not_run": {}}
    return steps, skipped, meta


def run_steps(steps: list[Step], cfg: AcceleratorConfig, sim: str | None = None, *,
              system_model: SystemModel, top: bool = False) -> list[dict]:
    """Run ``steps`` on one controlled engine, or with ``top`` on the accelerator top
    (one session); one row each: layer, phase, ``rtl_program_cycles``,
    ``model_program_cycles``, ``mismatches``, ``words``, COMPUTE cycles equal (``None``
    on the top, which reports program cycles only), tile errors (the top's
    ``STATUS.error``), ``same_program`` (inference), the top's counters, and whether the
    engine's idle cycles before its instructions (the top's ``ENGINE_STALL``, the
    controller testbench's count) are the model's engine stall."""
    if not steps:
        return []
    runs = [(s.program, cfg, s.dram) for s in steps]
    if top:
        reps = run_top_programs(runs, sim, system_model=system_model)
    else:
        reps = run_controller_programs(runs, sim, system_model=system_model)
    rows = []
    for s, r in zip(steps, reps):
        row = {"layer": s.layer, "phase": s.phase, "words_expected": _stored_words(s.program),
               "same_program": s.same_program, "rtl_seconds": round(r["seconds"], 3)}
        if top:  # and the SORE's and update's words (the host's regions: what they must write)
            row["words_expected"] += r["unit_words"]
        if top:
            regs = r["registers"]
            row |= {"rtl_program_cycles": r["rtl_program_cycles"],
                    "model_program_cycles": r["model_program_cycles"],
                    "mismatches": r["mismatches"], "words": r["words"],
                    "computes_equal": None,
                    "tile_errors": (["STATUS.error"] if r["error"] else [])
                    + ([] if r["irq"] else ["no irq within the testbench's cycle limit"]),
                    "counters": {k: regs[k] for k in TOP_COUNTERS},
                    "model_engine_stall": r["model_engine_stall"],
                    "engine_stall_equal": (regs["ENGINE_STALL"]
                                           == sum(r["model_engine_stall"].values()))}
        else:
            row |= {"rtl_program_cycles": r["program_cycles"],
                    "model_program_cycles": r["system_cycles"],
                    "mismatches": r["mismatches"], "words": r["words"],
                    "computes_equal": all(c["rtl_cycles"] == c["model_cycles"]
                                          for c in r["computes"]),
                    "tile_errors": r["tile_errors"],
                    "engine_stall_equal": r["engine_stall"] == r["system_engine_stall"]}
        rows.append(row)
    return rows


TOP_COUNTERS = ("FETCH_CYCLES", "ENGINE_BUSY", "ENGINE_STALL", "ENGINE_WAIT", "LOAD_BUSY",
                "STORE_BUSY", "READ_BEATS", "WRITE_BEATS")
"""The accelerator top's counter registers a row reports (``docs/rtl.md``)."""


def carried_by_top(steps: list[Step], cfg: AcceleratorConfig) -> tuple[list[Step], list[dict]]:
    """(steps the top's DMA carries, the others with the host's reason): what
    :func:`~.top_run.top_host` refuses for one program, before any build. A config the
    top cannot take at all (:func:`~.top_run.check_top_config`) raises."""
    check_top_config(cfg)
    ok, refused = [], []
    for s in steps:
        try:
            top_host(s.program, cfg, s.dram)
        except ValueError as e:
            refused.append({"layer": s.layer, "phase": s.phase, "reason": str(e)})
        else:
            ok.append(s)
    return ok, refused


def _stored_words(prog: isa.Program) -> int:
    """Words of every tensor the program STOREs (the phase's output: ``y``, ``dx``, ``dw``)."""
    ids = {ins.tensor for ins, _, _ in prog.unrolled() if isinstance(ins, isa.Store)}
    return sum(prog.tensors[i].rows * prog.tensors[i].cols for i in ids)


def row_ok(row: dict) -> bool:
    """A program ran right: cycles equal, no mismatch, every output word stored."""
    return (row["rtl_program_cycles"] == row["model_program_cycles"]
            and row["mismatches"] == 0 and row["computes_equal"] is not False
            and row["engine_stall_equal"] is not False
            and not row["tile_errors"]
            and row["words"] == row["words_expected"] and row["same_program"] is not False)


def run_network(steps: list[Step], skipped: list[dict], meta: dict, cfg: AcceleratorConfig,
                sim: str | None = None, *, system_model: SystemModel, top: bool = False,
                not_carried: list[dict] | None = None) -> dict:
    """The whole report: ``meta``, per program ``programs``, per layer ``layers`` (sums
    over its phases), ``total`` and ``ok`` (every program right); ``rtl`` names what ran
    them (``controller`` or ``top``), ``not_carried`` the programs the top refused."""
    rows = run_steps(steps, cfg, sim, system_model=system_model, top=top)
    keys = ("rtl_program_cycles", "model_program_cycles", "mismatches")
    layers: dict[str, dict] = {}
    for r in rows:
        acc = layers.setdefault(r["layer"], {"layer": r["layer"], "phases": [],
                                             **dict.fromkeys(keys, 0)})
        acc["phases"].append(r["phase"])
        for k in keys:
            acc[k] += r[k]
    total = {k: sum(r[k] for r in rows) for k in keys}
    total["programs"] = len(rows)
    total["cycle_difference"] = total["rtl_program_cycles"] - total["model_program_cycles"]
    return {**meta, "config": cfg.name, "sim": sim or "icarus",
            "rtl": "top" if top else "controller", "not_carried": not_carried or [],
            "programs": rows,
            "layers": list(layers.values()), "skipped": skipped, "total": total,
            "ok": all(row_ok(r) for r in rows)}
