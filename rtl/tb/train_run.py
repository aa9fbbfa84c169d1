"""A whole training step on the RTL: FF, mask generation (the RTL SORE), BP, WG and the
fp32 weight update (the RTL weight-update engine), one compiled program on
:class:`~nmsat.rtl.controller.ControlledEngine`, checked bit for bit against
:func:`nmsat.reference.train_step` per layer and cycle for cycle against the system
model (:mod:`nmsat.rtl.tb.cocotb_train` is the testbench).

:func:`run_train_step` runs one layer's step (a one-layer workload) or every layer of a
workload (``layer=None``: the compiler's whole training program); the report has
``rtl_program_cycles``, ``model_program_cycles`` and ``mismatches`` (total and per
layer: ``layers[name]``, the words of y, dx, dW, the FF/BP masked weights, the master
weights, velocity and working copy that differ from the reference), and ``phases``:
per (layer, phase) the RTL's and the model's cycles of its engine, SORE and
weight-update work.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import sys
import tempfile
from dataclasses import fields
from pathlib import Path

import numpy as np

from nmsat import reference as ref
from nmsat.config import AcceleratorConfig, to_dict
from nmsat.dataflow import isa, timing
from nmsat.types import DEFAULT_NM, NM, DType, Mode

from ..fp import same_bits
from .controller_run import TOP, SystemModel, _dma_timing, _engine_key, _tile, cached_controlled
from .runner import build_and_test
from .train_units import grad_of, master_of, velocity_of

__all__ = ["compile_train_step", "run_train_programs", "run_train_step", "run_train_steps",
           "train_dram"]


def compile_train_step(workload: str, cfg: AcceleratorConfig, layer: str | None = None,
                       nm: str | NM = DEFAULT_NM, method: str = "bdwp",
                       batch: int | None = None, dataflow: str = "auto") -> isa.Program:
    """The training program of ``workload`` (every layer), or of ``layer`` alone (a
    one-layer workload: its SOREs, FF, BP, WG and weight update)."""
    from nmsat.dataflow.compiler import CompileOptions, compile_workload
    from nmsat.errors import NmsatError
    from nmsat.workloads.zoo import load

    wl = load(workload, batch=batch)
    w = wl.workload
    if layer is not None:
        keep = [x for x in w.layers if x.name == layer]
        if not keep:
            raise NmsatError(f"{w.name} has no layer {layer!r}")
        w = dataclasses.replace(w, layers=tuple(keep))
    opts = CompileOptions(method=wl.method or method, nm=nm, batch=batch,
                          layer_nm=tuple(wl.layer_nm.items()), dataflow=dataflow,
                          mode=Mode.TRAIN)
    return compile_workload(w, cfg, opts)


def _check_linear(prog: isa.Program) -> None:
    """Raise ``ValueError`` naming what this check does not cover: convolution layers
    (their reference step takes NCHW tensors; not wired here) and VECTOR work (the RTL
    has no vector lanes)."""
    conv = [t.name for t in prog.tensors if t.conv is not None]
    if conv:
        raise ValueError(f"training steps on the RTL are checked for linear layers only, "
                         f"not the convolution tensor {conv[0]}")
    vec = [i for i in prog.instructions if isinstance(i, isa.Vector)]
    if vec:
        raise ValueError(f"the RTL has no vector lanes for VECTOR {vec[0].kind.value} "
                         f"(layer {prog.layers[vec[0].layer]})")


def _weighted(prog: isa.Program) -> list[str]:
    """Layers whose weights the program updates (the WEIGHT_UPDATE tensors ``L.w``)."""
    return [prog.tensors[i.tensor].name[:-len(".w")] for i in prog.instructions
            if isinstance(i, isa.WeightUpdate)]


def train_dram(prog: isa.Program, cfg: AcceleratorConfig, seed: int) -> tuple[dict, dict]:
    """(DRAM image, master/velocity state) of a training program: per weighted layer
    random fp32 master weights and velocity, fp16 inputs ``x`` and gradients ``dy``,
    the working copy ``w`` = the master rounded to the operand type; outputs zero."""
    rng = np.random.default_rng(seed)
    dtype = DType.parse(cfg.numerics.dtype)
    t = {x.name: x for x in prog.tensors}
    dram: dict[str, np.ndarray] = {}
    state: dict[str, np.ndarray] = {}
    for L in _weighted(prog):
        n_in, n_out = t[f"{L}.w"].rows, t[f"{L}.w"].cols
        master = (rng.standard_normal((n_out, n_in)) * 0.25).astype(np.float32)
        state[master_of(f"{L}.w")] = master
        state[velocity_of(f"{L}.w")] = (rng.standard_normal((n_out, n_in))
                                        * 0.01).astype(np.float32)
        dram[f"{L}.w"] = ref.quantize(master, dtype).T.astype(np.float32)
        for name in (f"{L}.x", f"{L}.dy"):
            shp = (t[name].rows, t[name].cols)
            dram[name] = ref.quantize(rng.standard_normal(shp).astype(np.float32), dtype)
    return dram, state


def _host(prog: isa.Program, cfg: AcceleratorConfig, dram: dict, state: dict) -> dict:
    from ..engine import ring_halves

    ha, hw, ho = ring_halves(cfg)
    halves = {isa.Buffer.ACT: ha, isa.Buffer.WGT: hw}
    n = {isa.Buffer.ACT: 0, isa.Buffer.WGT: 0}
    loads, stores, sores, wus = [], [], [], []
    for ins, r0, c0 in prog.unrolled():
        if isinstance(ins, isa.Load):
            half = n[ins.buffer] % halves[ins.buffer]
            n[ins.buffer] += 1
            loads.append({"tile": _tile(ins, r0, c0, int(ins.buffer), half), "instr": ins,
                          **_dma_timing(ins, cfg)})
        elif isinstance(ins, isa.Store):
            stores.append({"tile": _tile(ins, r0, c0, 0, len(stores) % ho), "instr": ins,
                           **_dma_timing(ins, cfg)})
        elif isinstance(ins, isa.Sore):
            sores.append({"word": int.from_bytes(isa.encode(ins), "little"), "instr": ins})
        elif isinstance(ins, (isa.WeightUpdate, isa.Vector)):
            wus.append({"word": int.from_bytes(isa.encode(ins), "little"), "instr": ins})
    return {"program": prog.to_bytes(), "dram": dram, "state": state, "loads": loads,
            "stores": stores, "sores": sores, "wus": wus,
            "dma": {f"dram.{f.name}": getattr(cfg.dram, f.name) for f in fields(cfg.dram)}}


def run_train_programs(runs: list[tuple[isa.Program, AcceleratorConfig, dict, dict]],
                       sim: str | None = None, lr: float = 0.01) -> list[dict]:
    """Run (program, config, DRAM image, master/velocity state) on one controlled
    engine in one cocotb session; per run the testbench's raw result (final DRAM and
    state, cycles, timeline)."""
    from cocotb_tools.runner import get_runner

    from ..controller import check_controlled

    cfg0 = runs[0][1]
    for _, cfg, _, _ in runs:
        check_controlled(cfg)
        if _engine_key(cfg) != _engine_key(cfg0) or cfg.sore != cfg0.sore \
                or cfg.weight_update != cfg0.weight_update:
            raise ValueError("programs run in one session must share the RTL's config")
    sim = sim or "icarus"
    if sim not in ("icarus", "verilator"):
        raise ValueError(f"the training testbench runs under icarus or verilator, not {sim}")
    hosts = [_host(p, c, d, s) for p, c, d, s in runs]
    longest = max(len(p.instructions) for p, _, _, _ in runs)
    depth = max(16, 1 << (longest - 1).bit_length())
    src = cached_controlled(cfg0, cfg0.numerics.dtype, depth)
    build_args: list[str] = []
    if sim == "verilator":
        from .runner import VERILATOR_ARGS, verilator_env

        build_dir = src.parent / f"{sim}{verilator_env()}"
        build_args = list(VERILATOR_ARGS)
    else:
        build_dir = src.parent / sim
    overrides = {k: v for k, v in to_dict(cfg0).items() if k != "name"}
    f32 = lambda x: int(np.array(x, np.float32).view(np.uint32))  # noqa: E731
    with tempfile.TemporaryDirectory() as tmp:  # build_and_test locks the build folder
        hp, pfile, result = Path(tmp) / "host.pkl", Path(tmp) / "p.json", Path(tmp) / "r.pkl"
        hp.write_bytes(pickle.dumps({"programs": hosts, "lr_bits": f32(lr),
                                     "momentum_bits": f32(cfg0.weight_update.momentum)}))
        pfile.write_text(json.dumps({"preset": "vcu1525", "overrides": overrides,
                                     "dtype": cfg0.numerics.dtype, "host": str(hp)}))
        build_and_test(
            get_runner(sim), sim, build_dir,
            dict(sources=[src], hdl_toplevel=TOP, build_args=build_args,
                 timescale=("1ns", "1ps")),
            dict(hdl_toplevel=TOP, test_module="nmsat.rtl.tb.cocotb_train", test_dir=tmp,
                 results_xml=str(Path(tmp) / "x.xml"),
                 extra_env={"NMSAT_TB_PARAMS": str(pfile), "NMSAT_TB_RESULT": str(result),
                            "PYTHONPATH": os.pathsep.join(sys.path)}),
            result, f"the {cfg0.name} controlled engine (training)")
        results = pickle.loads(result.read_bytes())
    if len(results) != len(runs):
        raise RuntimeError(f"the testbench ran {len(results)} of {len(runs)} programs")
    return results


def _expected(prog: isa.Program, cfg: AcceleratorConfig, dram: dict, state: dict,
              lr: float) -> dict[str, dict[str, np.ndarray]]:
    """Per weighted layer, every tensor the step writes as ``reference.train_step``
    gives it, in the program's layouts and the tensors' element types."""
    from nmsat.dataflow.execute import to_elem

    meta = dict(prog.meta)
    a = cfg.array
    t = {x.name: x for x in prog.tensors}
    out = {}
    for L in _weighted(prog):
        w = state[master_of(f"{L}.w")]
        r = ref.train_step(w, dram[f"{L}.x"], dram[f"{L}.dy"], method=meta["method"],
                           nm=meta["nm"], dtype=cfg.numerics.dtype, lanes=a.macs_per_pe,
                           act_window=a.act_window, lr=lr,
                           momentum=cfg.weight_update.momentum,
                           velocity=state[velocity_of(f"{L}.w")])
        e = {f"{L}.y": to_elem(r.y, t[f"{L}.y"].elem),
             f"{L}.dx": to_elem(r.dx, t[f"{L}.dx"].elem),
             grad_of(f"{L}.w"): r.dw.astype(np.float32),
             f"{L}.w": to_elem(ref.quantize(r.w_master, DType.parse(cfg.numerics.dtype)).T,
                               t[f"{L}.w"].elem),
             master_of(f"{L}.w"): r.w_master, velocity_of(f"{L}.w"): r.velocity}
        if f"{L}.w.ff" in t:
            e[f"{L}.w.ff"] = to_elem(r.w_ff.T, t[f"{L}.w.ff"].elem)
        if f"{L}.w.bp" in t:
            e[f"{L}.w.bp"] = to_elem(r.w_bp, t[f"{L}.w.bp"].elem)
        out[L] = e
    return out


def _bits(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype == np.float16:
        return x.view(np.uint16).astype(np.uint64)
    return np.asarray(x, np.float32).view(np.uint32).astype(np.uint64)


def _phases(prog: isa.Program, cfg: AcceleratorConfig, res: dict, model) -> dict:
    """Per (layer, phase): the engine's COMPUTE busy cycles (RTL, ``timing``), and the
    SORE and weight-update instructions' (issue, completion) cycles beside the model's
    (start, end)."""
    layers = prog.layers
    comps = [i for i, _, _ in prog.unrolled() if isinstance(i, isa.Compute)]
    rows: dict[str, dict] = {}

    def row(layer: int, phase: str) -> dict:
        return rows.setdefault(f"{layers[layer]}/{phase}", {
            "rtl_cycles": 0, "model_cycles": 0, "mismatched_instructions": 0})

    for ins, rtl in zip(comps, res["compute_cycles"]):
        r = row(ins.layer, str(ins.phase))
        want = timing.compute_cycles(ins, cfg)
        r["rtl_cycles"] += rtl
        r["model_cycles"] += want
        r["mismatched_instructions"] += int(rtl != want)
    for unit, cls, phase in (("sore", isa.Sore, "sore"), ("wu", isa.WeightUpdate, "wu")):
        ivs = [iv for iv in model.intervals if iv.unit == unit
               and iv.kind == cls.__name__.lower()]
        ins = [i for i, _, _ in prog.unrolled() if isinstance(i, cls)]
        for i, (issue, last, due), iv in zip(ins, res["timeline"][unit], ivs):
            r = row(i.layer, phase)
            done = max(last, due)
            r["rtl_cycles"] += done - issue
            r["model_cycles"] += iv.end - iv.start
            r["mismatched_instructions"] += int((issue, done) != (iv.start, iv.end))
    return rows


def _report(prog: isa.Program, cfg: AcceleratorConfig, dram: dict, state: dict, res: dict,
            lr: float, system_model: SystemModel) -> dict:
    want = _expected(prog, cfg, dram, state, lr)
    per_layer = {}
    for L, tensors in want.items():
        bad = {}
        for name, exp in tensors.items():
            got = res["state"][name] if name in res["state"] else res["dram"][name]
            ok = same_bits(_bits(got), _bits(exp), True)
            bad[name] = int((~ok).sum())
        per_layer[L] = {"mismatches": sum(bad.values()), "tensors": bad}
    model = system_model(prog, cfg, extrapolate=False)
    return {"nm": dict(prog.meta)["nm"], "instructions": len(prog.instructions),
            "rtl_program_cycles": res["program_cycles"],
            "model_program_cycles": model.total_cycles,
            # the engine's idle cycles before its instructions; the model's engine stall
            # (memory, SORE and dependency causes together)
            "engine_stall": res["engine_stall"],
            "model_engine_stall": sum(model.stall.get("engine", {}).values()),
            "mismatches": sum(v["mismatches"] for v in per_layer.values()),
            "layers": per_layer, "phases": _phases(prog, cfg, res, model),
            "tile_errors": res["tile_errors"], "error": res["error"],
            "sim_cycles": res["cycles"], "seconds": res["seconds"]}


def run_train_steps(programs: list[tuple[isa.Program, AcceleratorConfig]], *,
                    system_model: SystemModel, sim: str | None = None, seed: int = 0,
                    lr: float = 0.01) -> list[dict]:
    """Training programs (from :func:`compile_train_step` or ``compile_workload`` in
    training mode) on one controlled engine in one cocotb session, each with random
    operands (:func:`train_dram`, seed ``seed + i``); one report each (module
    docstring)."""
    for p, _ in programs:
        _check_linear(p)
    runs = [(p, c, *train_dram(p, c, seed + i)) for i, (p, c) in enumerate(programs)]
    results = run_train_programs(runs, sim, lr)
    return [_report(p, c, d, s, r, lr, system_model) for (p, c, d, s), r in zip(runs, results)]


def run_train_step(workload: str, cfg: AcceleratorConfig, layer: str | None = None, *,
                   system_model: SystemModel, nm: str | NM = DEFAULT_NM,
                   method: str = "bdwp", batch: int | None = None, sim: str | None = None,
                   seed: int = 0, lr: float = 0.01, dataflow: str = "auto") -> dict:
    """One training step of ``layer`` (or of every layer, ``layer=None``) on the RTL
    (module docstring); ``system_model``: :func:`nmsat.simulator.system.run`."""
    prog = compile_train_step(workload, cfg, layer, nm, method, batch, dataflow)
    rep = run_train_steps([(prog, cfg)], system_model=system_model, sim=sim, seed=seed,
                          lr=lr)[0]
    return {"workload": workload, "layer": layer, **rep}
