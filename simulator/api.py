"""``simulate(workload, cfg, options) -> SimResult``: the simulator's Python API.

One call compiles the workload to a tile program (:mod:`nmsat.dataflow.compiler`), runs
it on the SimPy system model (:mod:`nmsat.simulator.system`), counts activity for the
energy model (:mod:`nmsat.simulator.energy`), and does the same for dense training (or
dense inference) of the same workload on the same hardware with the same dataflow
options, for ``speedup_vs_dense``.
"""

from __future__ import annotations

import time
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

from nmsat import config as config_mod
from nmsat.arith import ceil_div
from nmsat.config import AcceleratorConfig
from nmsat.dataflow import machine
from nmsat.errors import ConfigError
from nmsat.simulator import run_cache, system
from nmsat.simulator.energy import ActivityCounts, report
from nmsat.simulator.results import PHASES, STALL_CAUSES, Event, LayerResult, SimResult
from nmsat.simulator.roofline import attribution, layer_dataflows
from nmsat.simulator.run_cache import RunCache
from nmsat.simulator.units import VECTOR_PASSES
from nmsat.types import DATAFLOW_CHOICES, DEFAULT_NM, NM, Method, Mode

__all__ = ["MAX_EVENTS", "SimOptions", "activity", "check_supported", "load_workload",
           "peak_bound", "simulate"]

MAX_EVENTS = 200_000
"""Timeline intervals kept in a result (the rest are dropped and ``events_truncated``
is set); the figures only need the shape of one iteration."""


@dataclass(frozen=True)
class SimOptions:
    """What to simulate: method, pattern, mode and the SAT dataflow optimisations."""

    method: Method = Method.BDWP
    nm: NM = DEFAULT_NM
    mode: Mode = Mode.TRAIN
    interleave: bool = True
    pregen: bool = True
    offline_schedule: bool = True
    events: bool = True
    layer_nm: tuple[tuple[str, NM], ...] = ()  # per-layer patterns fixed by the workload source
    dataflow: str = "auto"  # os, ws: every GEMM block; auto: the schedule picks per task

    def __post_init__(self) -> None:
        for name, typ in (("method", Method), ("mode", Mode)):
            v = getattr(self, name)
            if not isinstance(v, typ):
                raise ValueError(f"SimOptions.{name} must be a {typ.__name__}, not {v!r}")
        if not isinstance(self.nm, NM):
            raise ValueError(f"SimOptions.nm must be an NM, not {self.nm!r}")
        object.__setattr__(self, "layer_nm", tuple(
            (str(k), NM.parse(v)) for k, v in dict(self.layer_nm).items()))
        if self.dataflow not in DATAFLOW_CHOICES:
            raise ValueError(f"SimOptions.dataflow must be auto, os or ws, not "
                             f"{self.dataflow!r}")
        for name in ("interleave", "pregen", "offline_schedule", "events"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"SimOptions.{name} must be a bool, not "
                                 f"{getattr(self, name)!r}")

    @classmethod
    def create(cls, method: str | Method = "bdwp", nm: str | NM = DEFAULT_NM,
               mode: str | Mode = "train", **flags: Any) -> SimOptions:
        """Parse names (``"bdwp"``, ``"2:8"``, ``"train"``) into options."""
        return cls(method=Method.parse(method), nm=NM.parse(nm), mode=Mode.parse(mode),
                   **flags)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"method": self.method.value, "nm": str(self.nm),
                             "mode": self.mode.value,
             "interleave": self.interleave, "pregen": self.pregen,
             "offline_schedule": self.offline_schedule}
        if self.layer_nm:
            d["layer_nm"] = {name: str(p) for name, p in self.layer_nm}
        if self.dataflow != "auto":
            d["dataflow"] = self.dataflow
        return d


def load_workload(spec: str, batch: int = 32, seq_len: int | None = None):
    """A zoo name, a SCALE-Sim topology CSV or a training trace -> a loaded workload
    (:class:`nmsat.workloads.LoadedWorkload`)."""
    from nmsat.workloads import load

    return load(spec, batch=batch, seq_len=seq_len)


def check_supported(cfg: AcceleratorConfig, options: SimOptions) -> None:
    """Raise :class:`ConfigError` if the array cannot run the requested pattern."""
    if not (options.mode is Mode.INFERENCE or options.method is not Method.DENSE):
        return
    for nm in {options.nm, *(p for _, p in options.layer_nm)}:
        if not nm.dense and str(nm) not in cfg.array.nm_patterns:
            raise ConfigError(f"N:M pattern {nm} is not supported by config "
                              f"{cfg.name!r} (array.nm_patterns = "
                              f"{', '.join(cfg.array.nm_patterns)})")


# --------------------------------------------------------------------------- one run


@dataclass(frozen=True)
class _Run:
    program: Any
    timing: system.SystemRun
    wall: dict[tuple[str, str], int]
    counts: dict[tuple[str, str], ActivityCounts]
    macs: dict[tuple[str, str], int]
    dense_macs: dict[tuple[str, str], int]
    dram_operand: dict[str, dict[str, int]]


def _burst(nbytes: int, burst: int) -> int:
    return ceil_div(nbytes, burst) * burst


def activity(prog, cfg: AcceleratorConfig, attr: list[tuple[str, str]]):
    """Static activity of a program per (layer, phase): energy counts, MACs, dense MACs,
    and DRAM bytes per operand per layer (for the SCALE-Sim bandwidth report).

    Counting rules (``docs/simulator.md``): a COMPUTE's multiplier lanes fire ``macs``
    times; PE registers move two operands per MAC and an fp32 accumulator read and write
    per output per chunk; the buffers supply A once per column tile of the array and B
    once per row pass (OS) or once (WS), and take an fp32 read and write per output (per
    K-tile for WS); a LOAD writes its bytes into its buffer, a STORE reads the fp32 half.
    DRAM bytes are burst-rounded. The SORE compares each weight of a view with the N
    kept so far; a weight update is 4 fp32 operations per weight (two multiplies, an add
    and a subtract); a vector op is ``passes`` operations per element.
    """
    from nmsat.dataflow.isa import (
        Buffer,
        Compute,
        ElemType,
        Load,
        Sore,
        Store,
        Vector,
        WeightUpdate,
        region_bytes,
    )
    from nmsat.dataflow.timing import Geometry, chunks

    g = Geometry.of(cfg)
    opb = cfg.numerics.operand.bytes
    elem = ElemType.INT8 if opb == 1 else ElemType.FP16
    burst = cfg.dram.burst_bytes
    R, C = cfg.array.rows, cfg.array.cols
    counts: dict[tuple[str, str], dict[str, int]] = {}
    macs: dict[tuple[str, str], int] = {}
    dense: dict[tuple[str, str], int] = {}
    dram_op: dict[str, dict[str, int]] = {}

    def add(key, **kw):
        d = counts.setdefault(key, {})
        for k, v in kw.items():
            d[k] = d.get(k, 0) + v

    for idx, ins, times in prog.executions():
        key = attr[idx]
        if isinstance(ins, Compute):
            kc = chunks(ins.k, ins.nm, g)
            col_tiles = ceil_div(ins.n, C)
            a_bytes = ins.m * ins.k * opb * col_tiles
            b_once = region_bytes(ins.k, ins.n, elem, ins.nm)
            if ins.dataflow.value == "os":
                b_bytes = b_once * g.os_passes(ins.m, ins.interleave)
                out_bytes = ins.m * ins.n * 8
            else:
                b_bytes = b_once
                out_bytes = ins.m * ins.n * 8 * ceil_div(kc, R)
            add(key, macs=ins.macs * times,
                register_bytes=(ins.macs * 2 * opb + ins.m * ins.n * kc * 8) * times,
                act_buffer_bytes=a_bytes * times, weight_buffer_bytes=b_bytes * times,
                output_buffer_bytes=out_bytes * times,
                output_buffer_write_bytes=out_bytes // 2 * times)
            macs[key] = macs.get(key, 0) + ins.macs * times
            dense[key] = dense.get(key, 0) + ins.dense_macs * times
        elif isinstance(ins, Load):
            which = "act" if ins.buffer is Buffer.ACT else "weight"
            moved = _burst(machine.dma_bytes(ins, cfg), burst)  # dram.dma's layout
            add(key, dram_bytes=moved * times,
                **{f"{which}_buffer_bytes": ins.bytes * times,
                   f"{which}_buffer_write_bytes": ins.bytes * times})
            d = dram_op.setdefault(key[0], {"activation": 0, "weight": 0, "output": 0})
            d["activation" if which == "act" else "weight"] += moved * times
        elif isinstance(ins, Store):
            moved = _burst(machine.dma_bytes(ins, cfg), burst)
            add(key, dram_bytes=moved * times,
                output_buffer_bytes=ins.rows * ins.cols * 4 * times)
            d = dram_op.setdefault(key[0], {"activation": 0, "weight": 0, "output": 0})
            d["output"] += moved * times
        elif isinstance(ins, Sore):
            add(key, compares=ins.weights * ins.nm.n * times,
                sore_lane_cycles=ins.weights * cfg.sore.cycles_per_weight * times,
                dram_bytes=(_burst(ins.read_bytes, burst) + _burst(ins.write_bytes, burst))
                * times)
        elif isinstance(ins, WeightUpdate):
            add(key, wu_ops=4 * ins.weights * times, vector_lane_cycles=ins.weights * times,
                dram_bytes=(_burst(ins.read_bytes, burst) + _burst(ins.write_bytes, burst))
                * times)
        elif isinstance(ins, Vector):
            add(key, wu_ops=ins.elements * VECTOR_PASSES[ins.kind] * times,
                vector_lane_cycles=ins.elements * VECTOR_PASSES[ins.kind] * times,
                dram_bytes=(_burst(ins.read_bytes, burst) + _burst(ins.write_bytes, burst))
                * times)
    return ({k: ActivityCounts(**v) for k, v in counts.items()}, macs, dense, dram_op)


def _run(workload, cfg: AcceleratorConfig, options: SimOptions, record: bool,
         cache: RunCache | None = None, workload_key: Hashable = None) -> _Run:
    """Compile and run one program; with a ``cache`` (and the workload's key) reuse a
    program and a run already made for the same key (:mod:`nmsat.simulator.run_cache`)."""
    from nmsat.dataflow.compiler import CompileOptions, compile_workload

    copts = CompileOptions(method=options.method, nm=options.nm, mode=options.mode,
                           interleave=options.interleave, pregen=options.pregen,
                           offline_schedule=options.offline_schedule,
                           layer_nm=options.layer_nm, dataflow=options.dataflow)
    if cache is None:
        return _timed(compile_workload(workload, cfg, copts), cfg, record)
    pkey = run_cache.program_key(workload_key, cfg, copts)
    # the run's key depends on which units the program uses: look the program up first
    # (runs outlive programs in the cache only when they were made from them)
    prog = cache.get("program", pkey)
    if prog is None:
        prog = compile_workload(workload, cfg, copts, cache.tilings(pkey))
        cache.put("program", pkey, prog)
    rkey = run_cache.run_key(pkey, cfg, record, prog)
    hit = cache.get("run", rkey)
    if hit is not None:
        return hit
    out = _timed(prog, cfg, record)
    cache.put("run", rkey, out)
    return out


def _timed(prog, cfg: AcceleratorConfig, record: bool) -> _Run:
    """Run a compiled program on the system model and count its activity."""
    timing = system.run(prog, cfg, record=record)
    wall = system.attribute_wall_time(timing)
    counts, macs, dense, dram_op = activity(prog, cfg, attribution(prog))
    return _Run(prog, timing, wall, counts, macs, dense, dram_op)


# --------------------------------------------------------------------------- assembly


def _sum_counts(items) -> ActivityCounts:
    total = ActivityCounts()
    for c in items:
        total = total + c
    return total


def _layer_order(workload, run: _Run) -> list[str]:
    names = [layer.name for layer in workload.layers]
    seen = set(names)
    extra = sorted({k[0] for k in list(run.wall) + list(run.counts)} - seen)
    return names + extra


def simulate(workload, cfg: AcceleratorConfig | str | None = None,
             options: SimOptions | None = None, *, cache: RunCache | None = None,
             workload_key: Hashable = None) -> SimResult:
    """Simulate one training iteration (or inference pass) of ``workload``.

    Parameters
    ----------
    workload
        A :class:`nmsat.workloads.layers.Workload` (its batch is used) or a
        :class:`nmsat.workloads.LoadedWorkload`.
    cfg
        Accelerator config, preset name or config file (default ``vcu1525``).
    options
        Method, pattern, mode and optimisation switches (default BDWP 2:8 training).
    cache, workload_key
        Optional: a :class:`~nmsat.simulator.run_cache.RunCache` shared between calls and
        a hashable key naming the workload's content (e.g. zoo name, batch, sequence
        length). Programs and runs already in the cache under the same key and the
        config fields they depend on are reused; the result is byte-identical to an
        uncached call. Without a ``workload_key`` nothing is cached.

    Raises
    ------
    ConfigError
        The array does not support the pattern, or the compiler cannot fit the workload.
    """
    t0 = time.perf_counter()
    cfg = config_mod.resolve(cfg)
    options = options or SimOptions()
    check_supported(cfg, options)
    loaded = workload
    if hasattr(workload, "workload"):  # a LoadedWorkload
        workload = loaded.workload
    if workload_key is None:
        cache = None
    main = _run(workload, cfg, options, options.events, cache, workload_key)
    dense_opts = SimOptions(method=Method.DENSE, nm=NM(1, 1), mode=options.mode,
                            interleave=options.interleave, pregen=options.pregen,
                            offline_schedule=options.offline_schedule, events=False,
                            dataflow=options.dataflow)
    if options.method is Method.DENSE and (options.nm.dense or options.mode is Mode.TRAIN):
        dense = main
    else:
        dense = _run(workload, cfg, dense_opts, False, cache, workload_key)
    result = _assemble(workload, cfg, options, main, dense)
    object.__setattr__(result, "simulate_seconds", time.perf_counter() - t0)
    return result


def _phase_util(cycles: int, macs: int, peak: int) -> float | None:
    return macs / (cycles * peak) if cycles else None


def _assemble(workload, cfg: AcceleratorConfig, options: SimOptions, main: _Run,
              dense: _Run) -> SimResult:
    peak = cfg.array.peak_macs_per_cycle
    t = main.timing
    total = t.total_cycles
    sec = total * cfg.cycle_seconds
    names = _layer_order(workload, main)

    def grouped(d: dict) -> dict[str, list]:
        # each table's entries per layer, in the table's order (sums as a filter gives)
        out: dict[str, list] = {}
        for key, v in d.items():
            out.setdefault(key[0], []).append((key, v))
        return out

    def by_layer(g: dict[str, list], name: str) -> dict[str, int]:
        out = {p: 0 for p in PHASES}
        for (_layer, phase), v in g.get(name, ()):
            out[phase] = out.get(phase, 0) + v
        return out

    dense_wall = dense.wall
    er = report({key: (main.counts.get(key, ActivityCounts()), main.wall.get(key, 0))
                 for key in sorted(set(main.wall) | set(main.counts))}, cfg)
    layers = []
    flows = layer_dataflows(main.program)
    stall_engine = t.stall.get(system.ENGINE, {})
    g_wall, g_dense_wall = grouped(main.wall), grouped(dense_wall)
    g_counts, g_macs = grouped(main.counts), grouped(main.macs)
    g_dense_macs, g_stall = grouped(main.dense_macs), grouped(stall_engine)
    g_busy = grouped(t.busy[system.ENGINE])
    for name in names:
        pc = by_layer(g_wall, name)
        cyc = sum(pc.values())
        lc = _sum_counts(c for _, c in g_counts.get(name, ()))
        lmacs = sum(v for _, v in g_macs.get(name, ()))
        ldense = sum(v for _, v in g_dense_macs.get(name, ()))
        if cyc == 0 and lc == ActivityCounts():
            continue
        st = {c: 0 for c in STALL_CAUSES}
        for (_ly, _ph, cause), v in g_stall.get(name, ()):
            st[cause] += v
        dcyc = sum(by_layer(g_dense_wall, name).values())
        layers.append(LayerResult(
            name=name, total_cycles=cyc, seconds=cyc * cfg.cycle_seconds, phase_cycles=pc,
            stall_cycles=st, macs=lmacs, dense_macs=ldense,
            utilization=lmacs / (cyc * peak) if cyc else 0.0,
            dram_bytes=lc.dram_bytes, energy_pj=er.by_unit(name),
            energy_by_phase_pj=er.by_phase(name), dense_total_cycles=dcyc,
            speedup_vs_dense=dcyc / cyc if cyc else 0.0,
            dram_bytes_by_operand=main.dram_operand.get(name,
                                                        {"activation": 0, "weight": 0,
                                                         "output": 0}),
            buffer_bytes={"activation": lc.act_buffer_bytes, "weight": lc.weight_buffer_bytes,
                          "output": lc.output_buffer_bytes},
            engine_busy_cycles=sum(v for _, v in g_busy.get(name, ())),
            dataflow=flows.get(name, {})))
    phase_cycles = {p: 0 for p in PHASES}
    for (_, phase), v in main.wall.items():
        phase_cycles[phase] += v
    phase_macs = {p: 0 for p in PHASES}
    for (_, phase), v in main.macs.items():
        phase_macs[phase] += v
    stall = {c: 0 for c in STALL_CAUSES}
    for (_, _, cause), v in stall_engine.items():
        stall[cause] += v
    unit_stall = {}
    for u, d in t.stall.items():
        us = {c: 0 for c in STALL_CAUSES}
        for (_, _, cause), v in d.items():
            us[cause] += v
        unit_stall[u] = us
    unit_busy = {u: sum(d.values()) for u, d in t.busy.items()}
    counts = _sum_counts(main.counts.values())
    macs = sum(main.macs.values())
    dmacs = sum(main.dense_macs.values())
    events: list[Event] = []
    truncated = False
    if options.events:
        ivs = sorted(t.intervals, key=lambda iv: (iv.start, iv.end, iv.unit))
        if len(ivs) > MAX_EVENTS:
            ivs, truncated = ivs[:MAX_EVENTS], True
        events = [Event(iv.unit, iv.start, iv.end, iv.layer, iv.phase, iv.kind) for iv in ivs]
    dense_total = dense.timing.total_cycles
    return SimResult(
        workload=workload.name, config=config_mod.to_dict(cfg), method=options.method.value,
        nm=str(options.nm), batch=workload.batch, mode=options.mode.value,
        options=options.to_dict(), total_cycles=total, seconds=sec,
        phase_cycles=phase_cycles, stall_cycles=stall, unit_stall_cycles=unit_stall,
        unit_busy_cycles=unit_busy,
        phase_utilization={p: _phase_util(phase_cycles[p], phase_macs[p], peak)
                           for p in PHASES},
        utilization=macs / (total * peak) if total else 0.0,
        effective_utilization=dmacs / (total * peak) if total else 0.0,
        macs=macs, dense_macs=dmacs, dram_bytes=counts.dram_bytes,
        energy_pj=er.by_unit(), energy_mode=er.mode, energy_by_phase_pj=er.by_phase(),
        energy_by_kind_pj=er.by_kind(), counts=counts.to_dict(),
        dense_total_cycles=dense_total,
        speedup_vs_dense=dense_total / total if total else 0.0,
        layers=tuple(layers), events=tuple(events), events_truncated=truncated,
        simulated_instructions=t.simulated_instructions,
        executed_instructions=main.program.totals()["executed"])


def peak_bound(method: Method, nm: NM) -> float:
    """The physics bound on the training speedup over dense with equal FF, BP and WG MACs
    (``SAT-NOTES.md``): BDWP 3/(2N/M + 1), SR-STE 3/(N/M + 2), dense 1."""
    r = nm.n / nm.m
    if method is Method.BDWP:
        return 3 / (2 * r + 1)
    if method is Method.SRSTE:
        return 3 / (r + 2)
    return 1.0

