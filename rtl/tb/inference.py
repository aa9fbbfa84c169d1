"""``nmsat rtl run --mode inference``: one layer's inference tile program on the RTL.

The program is compiled the way ``nmsat simulate --mode inference`` compiles it
(:func:`nmsat.simulator.inference.load` resolves the workload, LLM phase, sequence and
KV-cache lengths and batch; :class:`~nmsat.dataflow.compiler.CompileOptions` as
:func:`nmsat.dataflow.inference.compile_inference` builds them: ``Mode.INFERENCE``, the
BDWP FF lowering with weights pre-compressed N:M in DRAM, no SORE, interleave and offline
scheduling on), restricted to the layer by :func:`~nmsat.dataflow.compiler.compile_layer`.
:func:`layer_stream` and :func:`same_program` check that this is exactly the layer's part
of the whole program the simulator times: the same COMPUTE words and the same LOAD/STORE
tiles, in the same order.

DRAM image: seeded random operands of the configured type, the N:M weight views pruned
along K (:func:`nmsat.reference.nm_mask`: pre-compressed weights are N:M tensors); for a
training trace (``.nmt``) the layer's recorded tensors (:func:`~.program.trace_dram`).
The golden executor and the RTL replay are those of training layers
(:func:`~.program.run_program`).
"""

from __future__ import annotations

import numpy as np

from nmsat.config import AcceleratorConfig
from nmsat.dataflow import isa
from nmsat.dataflow.compiler import CompileOptions, compile_layer
from nmsat.dataflow.inference import compile_inference
from nmsat.reference import nm_mask
from nmsat.types import DEFAULT_NM, NM, Mode, Phase

from .program import random_dram, run_program, trace_dram


def load_workload(workload: str, nm: NM | str = DEFAULT_NM, batch: int = 1,
                  phase: str | None = None, seq_len: int | None = None,
                  kv_len: int | None = None):
    """The :class:`~nmsat.simulator.inference.InferenceWorkload` ``nmsat simulate --mode
    inference`` serves for these options (same validation and messages)."""
    from nmsat.dataflow.inference_workload import InferenceOptions, load

    return load(workload, InferenceOptions(nm=NM.parse(nm), batch=batch, phase=phase,
                                           seq_len=seq_len, kv_len=kv_len))


def compile_options(nm: NM | str, dataflow: str = "auto") -> CompileOptions:
    """The options :func:`compile_inference` compiles with (its defaults: interleave and
    offline scheduling on; ``dataflow`` as ``--dataflow``)."""
    return CompileOptions(nm=NM.parse(nm), mode=Mode.INFERENCE, batch=None,
                          dataflow=dataflow)


def inference_layer_program(iw, layer: str, cfg: AcceleratorConfig,
                            nm: NM | str, dataflow: str = "auto") -> isa.Program:
    """The FF tile program of ``layer`` alone in the inference compilation of ``iw``."""
    return compile_layer(iw.workload, layer, Phase.FF, cfg, compile_options(nm, dataflow))


def whole_program(iw, cfg: AcceleratorConfig, nm: NM | str,
                  dataflow: str = "auto") -> isa.Program:
    """The whole inference program the simulator times (the engine's, after the
    activation-skip rewrite, which is the identity without ``act_zero = skip``)."""
    return compile_inference(iw.workload, cfg, NM.parse(nm), None, dataflow=dataflow)[1]


def _region(prog: isa.Program, keep) -> tuple[int, int] | None:
    """The smallest span of ``prog.instructions`` holding every instruction ``keep``
    accepts, grown to whole loops (headers and bodies) so it can be unrolled alone."""
    ins = prog.instructions
    idx = [i for i, x in enumerate(ins) if keep(x)]
    if not idx:
        return None
    lo, hi = idx[0], idx[-1] + 1
    loops = [(i, i + 1 + x.body) for i, x in enumerate(ins) if isinstance(x, isa.Loop)]
    grown = True
    while grown:
        grown = False
        for start, end in loops:
            overlaps = start < hi and end > lo
            if overlaps and not (lo <= start and end <= hi):
                lo, hi, grown = min(lo, start), max(hi, end), True
    return lo, hi


def layer_stream(prog: isa.Program, layer: str) -> list[tuple]:
    """What ``layer`` executes in ``prog``, in order per stream: its COMPUTE words, then
    its LOAD tiles into the ACT ring, into the WGT ring, then its STORE tiles (tensor
    name, resolved origin, size, bytes, transform, buffer). Tensor ids are replaced by
    names, so a layer program and the whole program compare directly. Each unit and ring
    sees its stream in this order; the interleaving of the streams is not compared: the
    whole program issues a layer's first weight LOAD ahead of its barrier
    (``nmsat.dataflow.hoist``), the layer program after its first ACT LOAD."""
    if layer not in prog.layers:
        raise ValueError(f"the program has no layer {layer!r}")
    li = prog.layers.index(layer)
    names = [t.name for t in prog.tensors]
    mine = {i for i, n in enumerate(names) if n.startswith(layer + ".")}

    def keep(x: isa.Instr) -> bool:
        if isinstance(x, isa.Compute):
            return x.layer == li
        return isinstance(x, (isa.Load, isa.Store)) and x.tensor in mine

    span = _region(prog, keep)
    if span is None:
        return []
    lo, hi = span
    sub = isa.Program(prog.instructions[lo:hi], prog.tensors, prog.layers)
    out: list[tuple] = []
    for x, r0, c0 in sub.unrolled():
        if not keep(x):
            continue
        if isinstance(x, isa.Compute):
            out.append(("COMPUTE", isa.encode(x)))
        else:
            out.append((x.OPCODE.name, names[x.tensor], r0, c0, x.rows, x.cols, x.bytes,
                        int(x.transform), int(getattr(x, "buffer", -1))))
    order = {"COMPUTE": 0, "LOAD": 1, "STORE": 2}
    # a stable sort: each stream keeps its order
    return sorted(out, key=lambda e: (order[e[0]], e[-1] if e[0] == "LOAD" else 0))


def same_program(layer_prog: isa.Program, whole: isa.Program, layer: str) -> bool:
    """Whether ``layer_prog`` executes exactly ``layer``'s part of ``whole``."""
    return layer_stream(layer_prog, layer) == layer_stream(whole, layer)


def inference_dram(prog: isa.Program, cfg: AcceleratorConfig, workload: str, layer: str,
                   seed: int) -> dict[str, np.ndarray]:
    """DRAM image of a layer program (module docstring)."""
    if _is_trace(workload):
        dram = trace_dram(prog, workload, layer)
    else:
        dram = random_dram(prog, cfg.numerics.operand, seed)
    for t in prog.tensors:
        if not t.nm.dense and t.name in dram:  # [K, N] FF weight view: groups along K
            w = dram[t.name]
            dram[t.name] = np.where(nm_mask(w, t.nm, axis=0), w, 0).astype(w.dtype)
    return dram


def run_inference_layer(workload: str, layer: str, cfg: AcceleratorConfig,
                        nm: NM | str = DEFAULT_NM, batch: int = 1, phase: str | None = None,
                        seq_len: int | None = None, kv_len: int | None = None,
                        sim: str | None = None, seed: int = 0,
                        dataflow: str = "auto") -> dict:
    """Run ``layer``'s inference program on the golden executor and the RTL; the report of
    :func:`~.program.run_program` plus the serving options and ``same_program``."""
    iw = load_workload(workload, nm, batch, phase, seq_len, kv_len)
    names = [x.name for x in iw.workload.layers]
    if layer not in names:
        raise ValueError(f"{iw.workload.name} has no layer {layer!r}")
    prog = inference_layer_program(iw, layer, cfg, nm, dataflow)
    same = same_program(prog, whole_program(iw, cfg, nm, dataflow), layer)
    dram = inference_dram(prog, cfg, workload, layer, seed)
    rep = run_program(prog, cfg, dram, sim=sim)
    return {"workload": workload, "layer": layer, "mode": "inference",
            "phase": str(iw.phase) if iw.phase else None, "nm": str(NM.parse(nm)),
            "batch": iw.workload.batch, "seq_len": iw.seq_len, "kv_len": iw.kv_len,
            "same_program": same, **rep}


def _is_trace(workload: str) -> bool:
    return workload.lower().endswith(".nmt")
