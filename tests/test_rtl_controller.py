"""Tile controller (Amaranth simulator): random programs of LOOP / LOAD / COMPUTE / STORE /
RELEASE / BARRIER / SORE / WEIGHT_UPDATE / VECTOR run on :class:`TileController` with
random unit latencies and backpressure; every unit receives exactly the reference
interpreter's commands (resolved tiles) in its order, no command is issued before the
ring and barrier waits of ``docs/isa.md`` allow it, and ``done`` follows the last
completion (:mod:`nmsat.rtl.tb.controller_model`)."""

import random

import pytest
from amaranth.sim import Simulator
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nmsat.config import SMALL
from nmsat.dataflow import isa
from nmsat.rtl.controller import TileController, check_controlled
from nmsat.rtl.tb.controller_model import UNIT_NAMES, check_trace, reference
from nmsat.rtl.tb.engine_model import word
from nmsat.types import NM, Dataflow, Phase
from nmsat.workloads.layers import OpKind

D = isa.MAX_LOOP_DEPTH
TENSORS = (isa.Tensor("a", 4096, 4096), isa.Tensor("b", 4096, 4096),
           isa.Tensor("c", 4096, 4096, isa.ElemType.FP32))


def _steps(rng, depth):
    return tuple(rng.randrange(0, 40) if d < depth else 0 for d in range(D))


def _load(rng, depth, buf):
    return isa.Load(tensor=int(buf), row0=rng.randrange(64), col0=rng.randrange(64),
                    rows=rng.randrange(1, 99), cols=rng.randrange(1, 99),
                    bytes=rng.randrange(1, 5000), buffer=buf,
                    transform=rng.choice([isa.Transform.NONE, isa.Transform.TRANSPOSE]),
                    row_steps=_steps(rng, depth), col_steps=_steps(rng, depth))


def _store(rng, depth):
    return isa.Store(tensor=2, row0=rng.randrange(64), col0=rng.randrange(64),
                     rows=rng.randrange(1, 99), cols=rng.randrange(1, 99),
                     bytes=rng.randrange(1, 5000), row_steps=_steps(rng, depth),
                     col_steps=_steps(rng, depth))


def _compute(rng, pop_b=True):
    return isa.Compute(rng.choice([Dataflow.OS, Dataflow.WS]), rng.choice([NM(1, 1), NM(2, 8)]),
                       rng.randrange(1, 50), rng.randrange(1, 50), rng.randrange(1, 50),
                       pop_b=pop_b)


def _body(rng, depth, budget):
    """A list of items (an instruction, or ("loop", count, items)) whose ring use is
    balanced: every COMPUTE's halves are loaded before it, every LOAD's half freed."""
    out = []
    for _ in range(rng.randrange(3, 9) if depth == 0 else rng.randrange(1, 4)):
        kind = rng.choice(["tile", "tile", "ksplit", "resident", "loop", "loop", "barrier", "side"])
        if kind == "loop" and depth < D and budget[0] > 0:
            budget[0] -= 1
            out.append(("loop", rng.randrange(1, 4), _body(rng, depth + 1, budget)))
        elif kind == "resident" and depth < D:
            inner = [_load(rng, depth + 1, isa.Buffer.ACT), _compute(rng, pop_b=False)]
            inner += [_store(rng, depth + 1)] * rng.randrange(2)
            out += [_load(rng, depth, isa.Buffer.WGT), ("loop", rng.randrange(1, 4), inner),
                    isa.Release(isa.Buffer.WGT)]
        elif kind == "barrier":
            out.append(isa.Barrier(isa.Unit(rng.randrange(1, 32))))
        elif kind == "side":
            out.append(rng.choice([
                isa.Sore(0, 1, isa.SoreView.FF, NM(2, 4), 64, 16, 128, 96),
                isa.WeightUpdate(1, 64, 768, 384),
                isa.Vector(OpKind.NORM, 100, 200, 200)]))
        else:
            for _ in range(2 if kind == "ksplit" else 1):
                loads = [_load(rng, depth, isa.Buffer.ACT), _load(rng, depth, isa.Buffer.WGT)]
                rng.shuffle(loads)
                out += loads + [_compute(rng)]
            if rng.random() < 0.7:
                out.append(_store(rng, depth))
    return out


def _flatten(items):
    out = []
    for it in items:
        if isinstance(it, tuple):
            body = _flatten(it[2])
            out += [isa.Loop(it[1], len(body))] + body
        else:
            out.append(it)
    return out


def random_program(seed: int) -> isa.Program:
    rng = random.Random(seed)
    return isa.Program(_flatten(_body(rng, 0, [4])), TENSORS, ("l0",))


def _same(iss, payload):
    ins = iss.instr
    if isinstance(ins, (isa.Load, isa.Store)):
        buf = int(ins.buffer) if isinstance(ins, isa.Load) else 0
        return (payload["buffer"], payload["tensor"], payload["transform"], payload["r0"],
                payload["c0"], payload["rows"], payload["cols"], payload["bytes"],
                payload["half"]) == (
            buf, ins.tensor, int(ins.transform), iss.r0 % 2**32, iss.c0 % 2**32, ins.rows,
            ins.cols, ins.bytes, iss.halves.get("load", iss.halves.get("out")))
    if isinstance(ins, (isa.Compute, isa.Release)):
        # the engine's halves (act, wgt, out) travel beside the word
        return payload == (word(ins), iss.halves["act"], iss.halves["wgt"], iss.halves["out"])
    return payload == word(ins)


def run_controller(dut, programs, seed, ready_p=0.6, max_latency=12, max_cycles=3000,
                   latency=None):
    """Write and run each program (instruction words) in turn on ``dut``; per program the
    trace (issued, done, finish cycle, error) of :func:`check_trace`. ``latency``: fixed
    cycles from handshake to completion per unit (default random below ``max_latency``)."""
    rng = random.Random(seed)
    ports = [dut.load, dut.engine, dut.store, dut.sore, dut.wu]
    pulses = [dut.load_done, dut.engine_done, dut.store_done, dut.sore_done, dut.wu_done]
    traces = []

    async def bench(ctx):
        for words in programs:
            for a, w in enumerate(words):
                ctx.set(dut.prog.payload, {"addr": a, "data": w})
                ctx.set(dut.prog.valid, 1)
                await ctx.tick().until(dut.prog.ready)
            ctx.set(dut.prog.valid, 0)
            ctx.set(dut.length, len(words))
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            issued = {u: [] for u in UNIT_NAMES}
            done = {u: [] for u in UNIT_NAMES}
            due = {u: [] for u in UNIT_NAMES}  # completion cycles scheduled, in order
            finish, cyc = None, 0
            while finish is None and cyc < max_cycles:
                for u, port, pulse in zip(UNIT_NAMES, ports, pulses):
                    fire = bool(due[u]) and due[u][0] == cyc
                    ctx.set(pulse, fire)
                    if fire:
                        due[u].pop(0)
                        done[u].append(cyc)
                    ctx.set(port.ready, rng.random() < ready_p)
                for u, port in zip(UNIT_NAMES, ports):
                    if ctx.get(port.valid) and ctx.get(port.ready):
                        p = ctx.get(port.payload)
                        if u in ("load", "store"):
                            p = {f: int(getattr(p, f)) for f in
                                 ("buffer", "tensor", "transform", "r0", "c0", "rows",
                                  "cols", "bytes", "half")}
                        elif u == "engine":
                            p = (p, ctx.get(dut.act_half), ctx.get(dut.wgt_half),
                                 ctx.get(dut.out_half))
                        issued[u].append((cyc, p))
                        last = due[u][-1] if due[u] else (done[u][-1] if done[u] else cyc)
                        lat = latency[u] if latency else rng.randrange(1, max_latency)
                        due[u].append(max(last + 1, cyc + lat))
                if ctx.get(dut.done):
                    finish = cyc
                await ctx.tick()
                cyc += 1
            for p in pulses:
                ctx.set(p, 0)
            traces.append((issued, done, finish, ctx.get(dut.error)))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return traces


HALVES = [(1, 1, 1), (2, 2, 2), (1, 2, 1), (2, 1, 2)]


def _cfg(halves):
    return SMALL.replace(**{f"buffers.{b}.double_buffered": h == 2 for b, h in
                            zip(("activation", "weight", "output"), halves)})


def _check(halves, programs, seed, **kw):
    dut = TileController(_cfg(halves), depth=128)
    words = [[word(i) for i in p.instructions] for p in programs]
    for prog, (issued, done, finish, error) in zip(programs, run_controller(dut, words, seed,
                                                                            **kw)):
        assert not error
        errs = check_trace(reference(prog, halves), issued, done, finish, _same)
        assert not errs, "\n".join(errs[:10]) + "\n" + prog.listing()


@pytest.mark.slow(seconds=65)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(HALVES), st.lists(st.integers(0, 2**32 - 1), min_size=3, max_size=3),
       st.integers(0, 2**16))
def test_random_programs_follow_the_execution_model(halves, seeds, seed):
    programs = [random_program(s) for s in seeds]
    programs = [p for p in programs if len(p.instructions) <= 128]
    _check(halves, programs, seed)


def test_compiled_layer_program_under_full_backpressure():
    """A compiler program (the example of docs/isa.md: two K blocks, one STORE) with
    every unit always ready and done the next cycle, and with rare readiness."""
    from nmsat.dataflow.compiler import CompileOptions, compile_layer
    from nmsat.workloads.zoo import load

    wl = load("mlp")
    prog = compile_layer(wl.workload, "fc2", Phase.FF,
                         SMALL, CompileOptions(nm="2:8"))
    for halves in ((1, 1, 1), (2, 2, 2)):
        _check(halves, [prog], 1, ready_p=1.0, max_latency=2)
        _check(halves, [prog], 2, ready_p=0.2, max_latency=30)


def test_deep_loops_and_error():
    """Loops nested MAX_LOOP_DEPTH deep ending on the same instruction; an opcode that is
    not an instruction sets ``error``."""
    inner = [isa.Load(0, 1, 2, 3, 4, 5, buffer=isa.Buffer.ACT, row_steps=(1, 10, 100, 1000),
                      col_steps=(3, 0, 7, 1)), isa.Release(isa.Buffer.ACT)]
    body = inner
    for d in range(D):
        body = [isa.Loop(2 + d % 2, len(body))] + body
    prog = isa.Program(body, TENSORS, ("l0",))
    _check((1, 1, 1), [prog], 3)
    dut = TileController(_cfg((1, 1, 1)), depth=8)
    ok = [word(isa.Barrier(isa.Unit.LOAD))]
    traces = run_controller(dut, [ok, ok + [15] + ok, ok], 0)
    assert [(t[2] is not None, t[3]) for t in traces] == [(True, 0), (True, 1), (True, 0)]


def test_controlled_engine_refuses_what_the_engine_lacks():
    for halves in HALVES:  # every ring size runs
        check_controlled(_cfg(halves))
    single = _cfg((1, 1, 1))
    with pytest.raises(ValueError, match=r"array\.act_zero = skip is not supported"):
        check_controlled(single.replace(**{"array.act_zero": "skip"}))


def test_dma_commands_carry_every_isa_field_at_full_width():
    """The load and store command streams carry a LOAD's and a STORE's fields at the ISA's
    widths (the controller's tile layout is built from ``isa.ENCODING``): the largest value
    of every field arrives unchanged (a 16-bit tensor or 32-bit byte field would cut them)."""
    enc = dict(isa.ENCODING[isa.Opcode.LOAD])
    top = {f: (1 << enc[f]) - 1 for f in ("tensor", "row0", "col0", "rows", "cols", "bytes")}
    ld = isa.Load(**top, buffer=isa.Buffer.WGT, transform=isa.Transform.TRANSPOSE)
    st = isa.Store(**top, transform=isa.Transform.TRANSPOSE)
    words = [word(ld), word(isa.Release(isa.Buffer.WGT)), word(st)]
    (issued, _, finish, error), = run_controller(TileController(_cfg((1, 1, 1)), depth=4),
                                                 [words], 0, ready_p=1.0, max_latency=2)
    assert finish is not None and not error
    want = {"tensor": top["tensor"], "transform": int(isa.Transform.TRANSPOSE),
            "r0": top["row0"], "c0": top["col0"], "rows": top["rows"], "cols": top["cols"],
            "bytes": top["bytes"], "half": 0}  # the first LOAD/STORE of a ring: half 0
    assert [p for _, p in issued["load"]] == [dict(want, buffer=int(isa.Buffer.WGT))]
    assert [p for _, p in issued["store"]] == [dict(want, buffer=0)]


def test_a_met_wait_issues_in_the_same_cycle():
    """Always-ready units with fixed latencies: a command whose last wait is a completion
    pulse at cycle t issues at t (the pulse counts in its own cycle), as the system model
    starts a dependent at its producer's completion time; ``done`` pulses with the last
    completion."""
    rng = random.Random(7)
    blocks = []
    for _ in range(3):
        blocks += [_load(rng, 0, isa.Buffer.ACT), _load(rng, 0, isa.Buffer.WGT),
                   _compute(rng), _store(rng, 0)]
    prog = isa.Program(blocks, TENSORS, ("l0",))
    lat = {"load": 20, "engine": 30, "store": 15, "sore": 1, "wu": 1}
    dut = TileController(_cfg((1, 1, 1)), depth=16)
    (issued, done, finish, _), = run_controller(dut, [[word(i) for i in blocks]], 0,
                                                ready_p=1.0, latency=lat)
    assert not check_trace(reference(prog, (1, 1, 1)), issued, done, finish, _same)
    ld, eng, st = done["load"], done["engine"], done["store"]
    for k in range(3):
        waits = [ld[2 * k], ld[2 * k + 1]] + ([st[k - 1]] if k else [])
        assert issued["engine"][k][0] == max(waits)
        assert issued["store"][k][0] == eng[k]
        if k:  # the next block's loads wait for the previous COMPUTE's frees
            assert issued["load"][2 * k][0] == eng[k - 1]
    assert finish == st[-1]


@pytest.mark.parametrize("channels,ports", [
    (1, {}), (2, {}), (3, {}),
    # buffer ports slower than DRAM: one port per bank, every other cycle per beat
    (2, {"buffers.activation.ports": 1, "buffers.output.ports": 1,
         "buffers.weight.ports": 1}),
    # the row-buffer DRAM, one bank and short rows: every row's miss shows
    (2, {"dram.model": "row_buffer", "dram.banks": 1, "dram.row_bytes": 256})])
def test_testbench_dma_timing_is_the_system_models(channels, ports):
    """The cocotb DMA (rtl/tb/cocotb_controller.py) times transfers with the memory model
    the system model runs on (one definition, nmsat.dataflow.memory) and the port law
    (``machine.port_cycles``), and completes them when the system model's DMA does: loads
    released one after the other (one descriptor per cycle, a RELEASE taking its accept
    cycle), a store beside them, through DRAM channels and the buffers' DMA ports."""
    from nmsat.dataflow import machine
    from nmsat.dataflow.memory import Dma
    from nmsat.rtl.tb import cocotb_controller
    from nmsat.simulator import system

    assert cocotb_controller.Dma is Dma
    cfg = _cfg((1, 1, 1)).replace(**{"dram.channels": channels, **ports})
    sizes = [1000, 64, 4097, 300]
    loads = [isa.Load(i % 2, 0, 0, 64, 64, b, buffer=isa.Buffer(i % 2), nm=NM(2, 8))
             for i, b in enumerate(sizes)]
    store = isa.Store(2, 0, 0, 64, 64, 700)
    prog = isa.Program([store] + [x for ld in loads for x in (ld, isa.Release(ld.buffer))],
                       TENSORS, ("l0",))
    d = cfg.dram
    dma = Dma.from_config(cfg)
    pc = [machine.port_cycles(x, cfg) for x in loads]
    # straight-line code: instruction i is dispatched in cycle i and its unit may issue it
    # from f[i] (dispatch_floors); one descriptor per queue per cycle; each RELEASE
    # completes a cycle after it is accepted; load 2 (ACT) waits for release 0, load 3
    # (WGT) for release 1
    act, wgt, out = isa.Buffer.ACT, isa.Buffer.WGT, isa.Buffer.OUT
    f = machine.dispatch_floors(prog)
    s = dma.issue(1, f[0], 700, out, machine.port_cycles(store, cfg)).done
    l0 = dma.issue(0, f[1], sizes[0], act, pc[0]).done
    r0 = max(l0, f[2]) + 1
    i1 = f[3]
    l1 = dma.issue(0, i1, sizes[1], wgt, pc[1]).done
    r1 = max(r0, l1, f[4]) + 1
    i2 = max(r0, f[5], i1 + 1)
    l2 = dma.issue(0, i2, sizes[2], act, pc[2]).done
    l3 = dma.issue(0, max(r1, f[7], i2 + 1), sizes[3], wgt, pc[3]).done
    assert system.run(prog, cfg, extrapolate=False).unit_end["dma"] == max(l2, l3, s)
    if "buffers.output.ports" in ports:  # the port bounds the store: 16 x 16 beats, 2 each
        assert s == f[0] + d.latency_cycles + 2 * 256


def test_hoisted_inference_pass_follows_the_execution_model():
    """A whole inference pass whose later layers' first weight LOADs are issued ahead of
    their BARRIERs (``nmsat.dataflow.hoist``): the controller's counter-based ring waits
    (the n-th LOAD waits for the (n - halves)-th free) run it as the execution model
    says, fast and slow units alike, in every buffering."""
    from nmsat.dataflow.hoist import hoisted_loads
    from nmsat.dataflow.inference import ActDensity, compile_inference
    from nmsat.workloads.zoo import load

    wl = load("mlp", batch=2)
    for halves in HALVES:
        cfg = _cfg(halves)
        _, prog = compile_inference(wl.workload, cfg, "2:4", 2, ActDensity.dense())
        assert len(hoisted_loads(prog)) == 2  # fc2's and fc3's first weight blocks
        _check(halves, [prog], sum(halves), ready_p=0.5, max_latency=12, max_cycles=20000)
