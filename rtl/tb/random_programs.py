"""Random whole layer programs for the tile controller: a random layer (linear or
convolution), N:M pattern, dataflow choice, interleave, batch, and a random DMA (DRAM
channels, bytes per cycle, latency, burst, each buffer's ports), compiled for one engine
config, with random operands. ``tests/rtl/test_rtl_controller_random.py`` runs them on
the RTL against the system model and the golden executor.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from nmsat.config import AcceleratorConfig
from nmsat.dataflow import isa
from nmsat.dataflow.compiler import CompileOptions, compile_layer
from nmsat.errors import NmsatError
from nmsat.types import Dataflow, Phase
from nmsat.workloads.layers import Conv2d, Linear, Matmul, Workload

from .program import random_dram

PATTERNS = ("1:1", "2:4", "1:4", "2:8", "1:8", "4:8")


def random_dma(rng: random.Random, cfg: AcceleratorConfig) -> AcceleratorConfig:
    """``cfg`` with a random DRAM and random buffer ports: what the DMA, not the RTL
    build, depends on. Latency at least 2 (the testbench's store path streams from the
    second cycle after the STORE is accepted)."""
    return cfg.replace(**{
        "dram.channels": rng.choice((1, 1, 2, 3)),
        "dram.bytes_per_cycle": rng.choice((1, 2, 4, 8, 16, 32)),
        "dram.latency_cycles": rng.randint(2, 64),
        "dram.burst_bytes": rng.choice((8, 16, 32, 64)),
        **{f"buffers.{b}.ports": rng.choice((1, 2))
           for b in ("activation", "weight", "output")}})


def random_layer(rng: random.Random, matmul: float = 0.0):
    """A random linear or convolution layer; with probability ``matmul`` instead a batch
    of ``count`` small activation products (attention's, e.g. a decode step's per-head
    scores: tiles of a few rows, so STOREs start inside an engine row block)."""
    if rng.random() < matmul:
        # K per product a multiple of 8, as a head's dimension is (the DMA's layouts
        # start each product's K on a chunk of every pattern)
        return Matmul("L", m=rng.randint(1, 5), n=rng.randint(1, 24), k=8 * rng.randint(1, 4),
                      count=rng.randint(1, 4))
    if rng.random() < 0.5:
        return Linear("L", in_features=rng.randint(4, 160), out_features=rng.randint(1, 40),
                      tokens=rng.randint(1, 4))
    return Conv2d("L", in_ch=rng.choice((2, 4, 8, 8, 16)), out_ch=rng.randint(1, 8),
                  in_h=rng.randint(3, 8), in_w=rng.randint(3, 8), kh=rng.randint(1, 3),
                  kw=rng.randint(1, 3), stride=rng.randint(1, 2), padding=rng.randint(0, 1))


def random_case(rng: random.Random, cfg: AcceleratorConfig, seed: int,
                reject: Callable[[isa.Program, AcceleratorConfig], bool] | None = None,
                dma: Callable[[random.Random, AcceleratorConfig], AcceleratorConfig]
                = random_dma, phases: tuple[Phase, ...] = (Phase.FF,), matmul: float = 0.0,
                masks: float = 0.0) -> tuple[isa.Program, AcceleratorConfig, dict, str]:
    """(program, config with a random DMA, DRAM image, description) of one random layer
    program on ``cfg``'s engine, of a phase drawn from ``phases`` (FF by default; with one
    phase no draw is made, so a seed gives the programs it gave before); layers the
    compiler cannot tile, or for which
    ``reject(program, config)`` is true (e.g. a system-model run longer than a bound, passed
    in by the caller: the RTL floor does not import the simulator), are drawn again.
    ``dma`` draws the config's DMA (:func:`random_dma`; the accelerator top's tests keep
    the DRAM of one build and pass ``lambda rng, cfg: cfg``); ``matmul`` the probability
    of an activation product (:func:`random_layer`; 0 draws what it drew before);
    ``masks`` the probability that an FF or BP program generates its N:M weight view on
    the SORE first (``compile_layer(..., masks=True)``; 0 draws what it drew before).
    ``phases`` may hold ``Phase.SORE`` (a layer's mask generation alone)."""
    while True:
        layer = random_layer(rng, matmul)
        nm = rng.choice(PATTERNS)
        opts = CompileOptions(method="dense" if nm == "1:1" else "bdwp", nm=nm,
                              batch=rng.randint(1, 2), interleave=rng.random() < 0.7,
                              offline_schedule=rng.random() < 0.5,
                              fixed_dataflow=rng.choice(list(Dataflow)))
        run_cfg = dma(rng, cfg)
        phase = rng.choice(phases) if len(phases) > 1 else phases[0]
        gen = masks > 0 and rng.random() < masks
        try:
            prog = compile_layer(Workload("rand", (layer,), opts.batch), "L", phase,
                                 run_cfg, opts, masks=gen)
        except NmsatError:
            continue
        if reject is not None and reject(prog, run_cfg):
            continue
        d = run_cfg.dram
        ports = [getattr(run_cfg.buffers, b).ports for b in ("activation", "weight", "output")]
        desc = (f"{layer!r} {phase.value}{' + masks' if gen else ''} {nm} batch {opts.batch} "
                f"il={opts.interleave} "
                f"sched={opts.offline_schedule} df={opts.fixed_dataflow} | DRAM "
                f"{d.channels}ch x {d.bytes_per_cycle} B/c lat {d.latency_cycles} burst "
                f"{d.burst_bytes} ports {ports}")
        return prog, run_cfg, random_dram(prog, cfg.numerics.operand, seed), desc
