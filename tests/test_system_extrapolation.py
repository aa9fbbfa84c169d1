"""The steady-state extrapolation of loops equals simulating every iteration.

Random tile programs, built from the shapes the compiler emits (weight-resident row
loops, K-split loops with stores per output block, activation-resident column loops,
nested loops, SORE and vector work, barriers between layers) with random sizes and loop
counts, run twice: with and without extrapolation. Every timing output must be identical,
and the extrapolated runs must really have skipped work.
"""

from __future__ import annotations

import random

import pytest

from nmsat import config
from nmsat.dataflow.isa import (
    Barrier,
    Buffer,
    Compute,
    Load,
    Loop,
    Program,
    Release,
    Sore,
    SoreView,
    Store,
    Tensor,
    Unit,
    Vector,
    WeightUpdate,
)
from nmsat.simulator.system import attribute_wall_time, run
from nmsat.types import NM, Dataflow, Phase
from nmsat.workloads.layers import OpKind

NMS = (NM(1, 1), NM(2, 8), NM(2, 4))


def _load(rng, buf):
    return Load(tensor=0, row0=0, col0=0, rows=16, cols=16,
                bytes=rng.choice((64, 100, 2048, 8192, 32768, 131072)), buffer=buf)


def _store(rng):
    return Store(tensor=0, row0=0, col0=0, rows=16, cols=16,
                 bytes=rng.choice((64, 512, 4096, 32768)))


def _compute(rng, layer, phase, pop_a=True, pop_b=True):
    return Compute(dataflow=rng.choice((Dataflow.OS, Dataflow.WS)), nm=rng.choice(NMS),
                   m=rng.choice((1, 16, 64, 200, 512)), n=rng.choice((16, 64, 100)),
                   k=rng.choice((8, 64, 256, 1000)), interleave=rng.random() < 0.7,
                   pop_a=pop_a, pop_b=pop_b, layer=layer, phase=phase)


def _gemm(rng, layer, phase):
    """One GEMM in one of the compiler's loop shapes, with random counts."""
    c = lambda: rng.choice((1, 2, 3, 7, 20, 60))  # noqa: E731
    shape = rng.randrange(4)
    if shape == 0:  # weight block resident over a row loop
        body = [_load(rng, Buffer.ACT), _compute(rng, layer, phase, True, False), _store(rng)]
        return [_load(rng, Buffer.WGT), Loop(c(), len(body)), *body, Release(Buffer.WGT)]
    if shape == 1:  # output blocks, each accumulating over a K loop
        inner = [_load(rng, Buffer.ACT), _load(rng, Buffer.WGT), _compute(rng, layer, phase)]
        return [Loop(c(), len(inner) + 2), Loop(c(), len(inner)), *inner, _store(rng)]
    if shape == 2:  # activation block resident over a column loop
        inner = [_load(rng, Buffer.WGT), _compute(rng, layer, phase, False, True), _store(rng)]
        return [Loop(c(), len(inner) + 3), _load(rng, Buffer.ACT), Loop(c(), len(inner)),
                *inner, Release(Buffer.ACT)]
    body = [_load(rng, Buffer.WGT), _load(rng, Buffer.ACT), _compute(rng, layer, phase),
            _store(rng)]
    return [Loop(c(), len(body)), *body]


def random_program(rng: random.Random) -> Program:
    instrs = []
    nlayers = rng.randint(1, 4)
    for layer in range(nlayers):
        if rng.random() < 0.5:
            instrs.append(Sore(src=0, dst=0, view=SoreView.FF, nm=NM(2, 8), weights=4096,
                               groups=512, read_bytes=8192, write_bytes=2560, layer=layer))
            if rng.random() < 0.6:
                instrs.append(Barrier(Unit.SORE))
        for phase in rng.sample((Phase.FF, Phase.BP, Phase.WG), rng.randint(1, 2)):
            instrs += _gemm(rng, layer, phase)
            if rng.random() < 0.5:
                instrs.append(Barrier(rng.choice((Unit.STORE, Unit.STORE | Unit.ENGINE,
                                                  Unit.all()))))
            if rng.random() < 0.3:
                instrs.append(Vector(kind=rng.choice(list(OpKind)),
                                     elements=rng.choice((100, 5000)), read_bytes=2000,
                                     write_bytes=rng.choice((0, 2000)), layer=layer,
                                     phase=phase))
        if rng.random() < 0.4:
            instrs.append(WeightUpdate(tensor=0, weights=rng.choice((100, 70000)),
                                       read_bytes=1200, write_bytes=1000, layer=layer))
    return Program(tuple(instrs), tensors=(Tensor("t", 1 << 20, 64),),
                   layers=tuple(f"l{i}" for i in range(nlayers)))


def _summary(r):
    return (r.total_cycles, r.engine_end, dict(r.unit_end), r.busy, r.stall,
            r.engine_time, r.channel_busy, attribute_wall_time(r), r.tail_key)


@pytest.mark.parametrize("seed", range(100))
def test_extrapolation_equals_full_simulation(seed):
    rng = random.Random(seed)
    cfg = config.preset("small") if seed % 3 == 0 else config.VCU1525
    if seed % 4 == 1:  # buffer ports slower than DRAM: they bound transfers too
        cfg = cfg.replace(**{"buffers.activation.banks": 1, "buffers.output.ports": 1,
                             "buffers.weight.bank_bytes_per_cycle": 4})
    if seed % 5 == 2:  # the row-buffer DRAM: its state is part of the timing state too
        cfg = cfg.replace(**{"dram.model": "row_buffer", "dram.banks": rng.choice((1, 16)),
                             "dram.row_bytes": rng.choice((256, 1024, 8192)),
                             "dram.t_rp_cycles": rng.choice((3, 40))})
    prog = random_program(rng)
    fast = run(prog, cfg, extrapolate=True, record=False)
    full = run(prog, cfg, extrapolate=False, record=False)
    assert _summary(fast) == _summary(full)


def test_random_programs_do_extrapolate():
    """The test above is not vacuous: most random programs take a jump."""
    jumped = sum(bool(run(random_program(random.Random(s)), config.VCU1525,
                          record=False).jumps) for s in range(100))
    assert jumped >= 50


def _long_loop(n: int) -> Program:
    body = [Load(tensor=0, row0=0, col0=0, rows=16, cols=16, bytes=32768, buffer=Buffer.ACT),
            Compute(Dataflow.OS, NM(2, 8), 256, 64, 512, layer=0, phase=Phase.FF, pop_b=False),
            Store(tensor=0, row0=0, col0=0, rows=16, cols=16, bytes=8192)]
    return Program((Load(tensor=0, row0=0, col0=0, rows=16, cols=16, bytes=4096,
                         buffer=Buffer.WGT), Loop(n, 3), *body, Release(Buffer.WGT)),
                   tensors=(Tensor("t", 1 << 20, 64),), layers=("l0",))


def test_long_loop_is_simulated_in_a_few_iterations():
    """The simulated work does not grow with the repeat count."""
    fast = run(_long_loop(20_000), config.VCU1525, record=False)
    assert fast.jumps
    assert fast.simulated_instructions < 300
    full = run(_long_loop(20_000), config.VCU1525, extrapolate=False, record=False)
    assert _summary(fast) == _summary(full)
    huge = run(_long_loop(20_000_000), config.VCU1525, record=False)
    assert huge.simulated_instructions == fast.simulated_instructions
    assert huge.total_cycles > 999 * fast.total_cycles


@pytest.mark.parametrize("name, batch, method, flags", [
    ("resnet18", 16, "bdwp", {"pregen": False, "interleave": False}),
    ("bert_base", 2, "srste", {}),
    ("mobilenet_v2", 2, "bdwp", {"offline_schedule": False}),
])
def test_compiled_programs_extrapolate_exactly(name, batch, method, flags):
    """The compiler's real programs: the extrapolated run equals the full one."""
    from nmsat.dataflow.compiler import CompileOptions, compile_workload
    from nmsat.workloads import zoo

    cfg = config.VCU1525
    prog = compile_workload(zoo.get(name, batch=batch), cfg,
                            CompileOptions(method=method, **flags))
    fast = run(prog, cfg, record=False)
    full = run(prog, cfg, extrapolate=False, record=False)
    assert fast.jumps and fast.simulated_instructions < full.simulated_instructions
    assert _summary(fast) == _summary(full)


@pytest.mark.parametrize("changes", [
    {"buffers.activation.banks": 1,  # fmap ACT port 8 B/cycle: loads bound by it
     "buffers.activation.bank_bytes_per_cycle": 8},
    {"buffers.output.ports": 1},  # 2,048 store beats at one per two cycles
    {"buffers.weight.ports": 1},  # 2,048 weight beats (slot vectors) likewise
])
def test_long_loop_with_slow_buffer_ports(changes):
    """Buffer ports slower than DRAM are part of the timing state: the extrapolated run
    equals the full one, and the ports really bound it (a 2,145-cycle COMPUTE against
    4,096 port cycles of the store or the weight load)."""
    cfg = config.VCU1525.replace(**changes)
    body = [Load(tensor=0, row0=0, col0=0, rows=16, cols=16, bytes=32768, buffer=Buffer.ACT),
            Load(tensor=0, row0=0, col0=0, rows=8192, cols=16, bytes=3000, buffer=Buffer.WGT),
            Compute(Dataflow.OS, NM(2, 8), 256, 64, 512, layer=0, phase=Phase.FF),
            Store(tensor=0, row0=0, col0=0, rows=8192, cols=64, bytes=8192)]
    prog = Program((Loop(3000, 4), *body), tensors=(Tensor("t", 1 << 20, 64),),
                   layers=("l0",))
    fast = run(prog, cfg, record=False)
    assert fast.jumps
    assert _summary(fast) == _summary(run(prog, cfg, extrapolate=False, record=False))
    assert fast.total_cycles > run(prog, config.VCU1525, record=False).total_cycles
