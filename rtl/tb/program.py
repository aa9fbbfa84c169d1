"""``nmsat rtl run``: one layer's tile program on the RTL, against the golden executor.

The dataflow compiler's program (``compile_layer``) is run by the functional executor
(``nmsat.dataflow.execute``), which records every COMPUTE's A and B blocks and every
STORE's OUT contents. The DMA side of the RTL run (LOAD) is this host model: it writes
each COMPUTE's blocks into the engine's ACT/WGT buffers; the engine then executes the
COMPUTE and STORE instruction words itself. Values must equal the executor's bit for bit;
each COMPUTE's cycles must equal ``timing.compute_cycles``.

With ``array.act_zero = skip`` the DMA model also writes each WS COMPUTE's row lists
(its zero-detector sees the activations it loads), the golden values are
``engine_gemm(..., skip_rows=R)`` and the expected cycles ``block_cycles`` with the
block's ``ws_skip_stream``; the report counts the row slices dropped.
"""

from __future__ import annotations

import pickle
import tempfile
from pathlib import Path

import numpy as np

from nmsat.config import AcceleratorConfig
from nmsat.dataflow import execute as ex
from nmsat.dataflow import isa
from nmsat.dataflow.compiler import CompileOptions, compile_layer
from nmsat.dataflow.timing import block_cycles, compute_cycles
from nmsat.reference import engine_gemm
from nmsat.types import DEFAULT_NM, NM, ActZero, Dataflow, DType, Phase

from ..layouts import EngineShape
from .engine_model import load_words, word, ws_stream
from .tiles import encode, random_operands


class _Recorder(ex.Executor):
    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.ops: list[dict] = []

    def _store(self, ins, r0, c0):
        val = self.out[0]
        self.ops.append({"kind": "store", "rows": ins.rows, "cols": ins.cols,
                         "expected": np.asarray(val).copy()})
        super()._store(ins, r0, c0)


def layer_ops(program: isa.Program, cfg: AcceleratorConfig, dram: dict) -> list[dict]:
    """Engine operations of a program: computes (with load words) and stores (with the
    executor's OUT contents), in program order."""
    shape = EngineShape.from_config(cfg)
    computes = iter([ins for ins, _, _ in program.unrolled() if isinstance(ins, isa.Compute)])
    skip = ActZero.parse(cfg.array.act_zero) is ActZero.SKIP

    def recording(a, b, dtype, lanes, window, nm, acc=None):
        ins = next(computes)
        ws_skip = skip and ins.dataflow is Dataflow.WS
        t = encode(shape, np.asarray(a), np.asarray(b), nm, skip=ws_skip)
        stream = ws_stream(shape, t)
        full = compute_cycles(ins, cfg)
        cyc = full if stream is None else block_cycles(
            ins.dataflow, ins.m, ins.n, ins.k, ins.nm, ins.interleave, cfg, stream=stream)
        rec.ops.append({"kind": "compute", "word": word(ins), "instr": _describe(ins),
                        "model_cycles": cyc, "full_cycles": full,
                        "row_slices": 0 if stream is None else ins.m * len(stream.lengths),
                        "dropped_rows": 0 if stream is None else
                        sum(ins.m - x for x in stream.lengths),
                        "loads": load_words(shape, t)})
        return engine_gemm(a, b, dtype, lanes, window, nm, acc=acc,
                           skip_rows=shape.rows if ws_skip else None)

    rec = _Recorder(program, cfg, dram, gemm=recording)
    rec.run()
    return rec.ops


def _describe(ins: isa.Compute) -> str:
    return (f"{ins.dataflow} {ins.nm} {ins.m}x{ins.k}x{ins.n}"
            f"{' il' if ins.interleave else ''}")


def random_dram(program: isa.Program, dtype: DType, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    dram = {t.name: random_operands(rng, dtype, (t.rows, t.cols)).astype(np.float64)
            if dtype.is_float else random_operands(rng, dtype, (t.rows, t.cols))
            for t in program.tensors}
    return with_update_state(program, dram, rng)


def with_update_state(program: isa.Program, dram: dict,
                      rng: np.random.Generator) -> dict[str, np.ndarray]:
    """``dram`` with, for each WEIGHT_UPDATE's working copy ``L.w`` ``[in, out]`` that has
    none, seeded fp32 state ``[out, in]``: master weights ``L.w.master``, velocity
    ``L.w.velocity`` and gradient ``L.dw``, and the working copy the master rounded to
    fp16 (as a training step leaves it)."""
    from nmsat import reference as ref

    for ins in program.instructions:
        if not isinstance(ins, isa.WeightUpdate):
            continue
        t = program.tensors[ins.tensor]
        shape = (t.cols, t.rows)
        if t.name + ".master" in dram:
            continue
        master = (rng.standard_normal(shape) * 0.25).astype(np.float32)
        dram[t.name + ".master"] = master
        dram[t.name + ".velocity"] = (rng.standard_normal(shape) * 0.01).astype(np.float32)
        dram[t.name[:-len(".w")] + ".dw"] = (rng.standard_normal(shape)
                                              * 0.1).astype(np.float32)
        dram[t.name] = ref.quantize(master, DType.FP16).T.astype(np.float64)
    return dram


def trace_dram(program: isa.Program, path: str, layer: str) -> dict[str, np.ndarray]:
    """A training trace's tensors of ``layer`` (last sample) as the program's DRAM image:
    fp16 ``x``/``dy`` (feature maps NHWC ``[batch*h*w, c]``), the GEMM views of the FF/BP
    weights (``w.ff`` / ``w`` as ``[K, N]``, ``w.bp`` as ``[out, K]``); outputs start at 0."""
    from nmsat import reference as ref
    from nmsat.workloads.trace import load_trace

    trace = load_trace(path)
    tensors = trace.samples[-1].layers
    if layer not in tensors:
        raise ValueError(f"trace {path} has no tensors for layer {layer!r}")
    lt = tensors[layer]

    def fmap(x):
        x = np.asarray(x)
        return x.transpose(0, 2, 3, 1).reshape(-1, x.shape[1]) if x.ndim == 4 else x

    def wmat(w):
        w = np.asarray(w)
        return ref.conv_weight_matrix(w) if w.ndim == 4 else w  # [out, K]

    views = {".x": fmap(lt.x_fp16), ".dy": fmap(lt.dy_fp16), ".w.ff": wmat(lt.w_ff).T,
             ".w.bp": wmat(lt.w_bp), ".w": wmat(lt.w_fp16).T}
    dram = {}
    for t in program.tensors:
        suffix = t.name[len(layer):] if t.name.startswith(layer + ".") else None
        if suffix in views:
            v = np.asarray(views[suffix], np.float64)
            if v.shape != (t.rows, t.cols):
                raise ValueError(f"trace tensor {t.name} has shape {v.shape}, the program "
                                 f"expects {(t.rows, t.cols)}")
            dram[t.name] = v
    return dram


def layer_dram(prog: isa.Program, cfg: AcceleratorConfig, loaded, workload: str, layer: str,
               seed: int) -> dict[str, np.ndarray]:
    """A layer program's DRAM image: a training trace's recorded tensors when ``loaded``
    (the :class:`~nmsat.workloads.zoo.LoadedWorkload` of ``workload``) is a trace, else
    seeded random operands (zoo models, SCALE-Sim files, PyTorch specs: they carry no
    tensors). Before, every source but the zoo was read as a trace, so a SCALE-Sim CSV
    failed as a corrupted zip container."""
    if loaded.source.startswith("trace"):
        return with_update_state(prog, trace_dram(prog, workload, layer),
                                 np.random.default_rng(seed))
    return random_dram(prog, cfg.numerics.operand, seed)


def run_layer(workload: str, layer: str, phase: str, cfg: AcceleratorConfig,
              nm: str | NM = DEFAULT_NM, method: str = "bdwp", batch: int | None = None,
              sim: str | None = None, seed: int = 0, dataflow: str = "auto") -> dict:
    from nmsat.workloads.zoo import load

    wl = load(workload, batch=batch)
    opts = CompileOptions(method=wl.method or method, nm=nm, batch=batch,
                          layer_nm=tuple(wl.layer_nm.items()), dataflow=dataflow)
    prog = compile_layer(wl.workload, layer, Phase.parse(phase), cfg, opts)
    dram = layer_dram(prog, cfg, wl, workload, layer, seed)
    return {"workload": workload, "layer": layer, "phase": phase,
            **run_program(prog, cfg, dram, sim=sim)}


def run_program(prog: isa.Program, cfg: AcceleratorConfig, dram: dict,
                sim: str | None = None, fault: str | None = None) -> dict:
    """Run a layer program on the golden executor and the RTL (:func:`layer_ops`, then the
    cocotb replay); per-COMPUTE RTL and tile-model cycles, stored words and mismatches.
    An operation that does not finish within its watchdog bound raises
    :class:`~.controller_run.RtlHangError`; ``fault="store_never_ready"`` holds the store
    port's ready low (what the watchdog's test runs)."""
    from .controller_run import RtlHangError
    from .runner import run_cocotb, simulator

    if fault not in (None, "store_never_ready"):
        raise ValueError(f"fault must be None or 'store_never_ready', not {fault!r}")
    ops = layer_ops(prog, cfg, dram)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ops.pkl"
        path.write_bytes(pickle.dumps(ops))
        res = run_cocotb(cfg, cfg.numerics.dtype, "nmsat.rtl.tb.cocotb_program",
                         {"ops": str(path), "fault": fault}, sim=sim)
    if res["hung"]:
        raise RtlHangError(f"the RTL hung: the {cfg.name} engine's layer replay stopped: "
                           f"{res['hung']} (the watchdog: 4 x the expected cycles + 1000)")
    comps = [o for o in ops if o["kind"] == "compute"]
    rows = [{"instr": c["instr"], "rtl_cycles": r, "model_cycles": c["model_cycles"]}
            for c, r in zip(comps, res["compute_cycles"])]
    return {"sim": sim or simulator(), "computes": rows,
            "rtl_cycles": sum(res["compute_cycles"]),
            "model_cycles": sum(c["model_cycles"] for c in comps),
            "words": res["words"], "mismatches": res["mismatches"],
            "sim_cycles": res["cycles"], "seconds": res["seconds"],
            "act_zero": str(ActZero.parse(cfg.array.act_zero)),
            # act_zero = skip: WS row slices (rows x tiles) streamed without skipping, those
            # the row lists dropped, and the engine cycles that saved
            "ws_row_slices": sum(c["row_slices"] for c in comps),
            "dropped_rows": sum(c["dropped_rows"] for c in comps),
            "skip_saved_cycles": sum(c["full_cycles"] - c["model_cycles"] for c in comps)}
