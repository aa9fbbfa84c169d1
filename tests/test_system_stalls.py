"""The system model on hand-built tile programs whose timing and stalls are known."""

from __future__ import annotations

import pytest

from nmsat import config
from nmsat.arith import ceil_div
from nmsat.dataflow import machine, timing
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
)
from nmsat.simulator.system import DMA, ENGINE, attribute_wall_time, run
from nmsat.types import NM, Dataflow, Phase
from nmsat.workloads.layers import OpKind

# The column-chain weight load and its C-bank weight port, whose laws these tests derive
# by hand (shadow weights: tests/test_decode_shadow.py, test_tile_model_equivalence.py).
CFG = config.VCU1525.replace(**{"array.shadow_weights": False})
T0 = machine.QUEUE_LATENCY  # a program that starts with a unit instruction (dispatch_floors)
T2 = T0 + 2  # instruction 2 of a program (dispatch_floors), e.g. a load after a LOOP
T = (Tensor("t", 1 << 20, 64),)


def ld(nbytes, buf=Buffer.ACT):
    return Load(tensor=0, row0=0, col0=0, rows=1, cols=1, bytes=nbytes, buffer=buf)


def st(nbytes):
    return Store(tensor=0, row0=0, col0=0, rows=1, cols=1, bytes=nbytes)


def mm(m=16, n=16, k=4, pop_b=True, phase=Phase.FF):
    return Compute(Dataflow.OS, NM(1, 1), m, n, k, pop_b=pop_b, phase=phase)


def ecyc(ins, cfg):
    """Engine cycles of a COMPUTE: its accept cycle, then the block."""
    return machine.ENGINE_ISSUE_CYCLES + timing.compute_cycles(ins, cfg)


def prog(*instrs, layers=("l0",)):
    return Program(tuple(instrs), T, layers)


def xfer(nbytes, cfg=CFG):
    """Data-bus cycles of a transfer striped over every channel (it divides evenly)."""
    d = cfg.dram
    return nbytes // (d.channels * d.bytes_per_cycle)


@pytest.mark.parametrize("n", [1, 3, 20, 200])
def test_memory_bound_loop_is_bytes_over_bandwidth_plus_latency(n):
    """Streaming n activation blocks past a resident weight block: the channels never
    idle, so the run takes latency + all bytes / bandwidth + the last compute."""
    c = ecyc(mm(), CFG)
    block = 32768
    assert xfer(block) > CFG.dram.latency_cycles + c  # the bus, not the engine, limits
    p = prog(ld(256, Buffer.WGT), Loop(n, 2), ld(block), mm(pop_b=False),
             Release(Buffer.WGT))
    r = run(p, CFG)
    rel = machine.ENGINE_ISSUE_CYCLES  # the RELEASE after the loop
    # the first block load is dispatched after the LOOP, at T2 (the weight load at T0 is
    # one burst per channel, done by then)
    expected = T2 + CFG.dram.latency_cycles + xfer(n * block) + c + rel
    assert r.total_cycles == expected
    # The engine computed n blocks and waited for memory the rest of the time.
    assert r.busy[ENGINE] == {("l0", "ff"): n * c + rel}
    assert r.stall[ENGINE] == {("l0", "ff", "memory"): expected - n * c - rel}
    assert sum(r.channel_busy) == (256 + n * block) // CFG.dram.bytes_per_cycle


@pytest.mark.parametrize("n", [3, 5, 40])
def test_streamed_weights_wait_for_bandwidth_not_for_the_engine(n):
    """Decode-like: every block loads its own weights, the first one held behind a vector
    op (a dependency). The later loads queue on channels busy with the earlier ones, so
    every later wait of the engine is a wait for bandwidth, not an inherited dependency."""
    vec = Vector(kind=OpKind.NORM, elements=1600, read_bytes=64, write_bytes=64, layer=0,
                 phase=Phase.FF)
    c = ecyc(mm(), CFG)
    block = 32768
    assert xfer(block) > CFG.dram.latency_cycles + c
    p = prog(vec, Barrier(Unit.WU), ld(256), Loop(n, 2), ld(block, Buffer.WGT),
             Compute(Dataflow.OS, NM(1, 1), 16, 16, 4, pop_a=False, phase=Phase.FF),
             Release(Buffer.ACT))
    r = run(p, CFG, record=True)
    comp = sorted(i.start for i in r.intervals if i.unit == ENGINE and i.kind == "compute")
    assert r.busy[ENGINE] == {("l0", "ff"): n * c + machine.ENGINE_ISSUE_CYCLES}
    # The first two loads leave the barrier together (both weight halves are free): the
    # waits for them are the vector op's. Every later load was issued while the channels
    # still carried the one before it.
    held = comp[1] - c
    assert r.stall[ENGINE] == {("l0", "ff", "vector"): held,
                               ("l0", "ff", "memory"): comp[-1] - (n - 1) * c - held}


def test_compute_bound_loop_hides_memory():
    """Big computes on small blocks: after the first load the engine never waits."""
    c = ecyc(mm(m=512, n=64, k=512), CFG)
    n = 50
    p = prog(ld(4096, Buffer.WGT), Loop(n, 2), ld(4096), mm(m=512, n=64, k=512, pop_b=False),
             Release(Buffer.WGT))
    r = run(p, CFG)
    first = T0 + CFG.dram.latency_cycles + xfer(4096 * 2)  # both first blocks share the bus
    assert r.total_cycles == first + n * c + machine.ENGINE_ISSUE_CYCLES  # + the RELEASE
    assert r.stall[ENGINE] == {("l0", "ff", "memory"): first}


def test_single_load_latency_and_burst_rounding():
    """One 1-byte load is one burst on one channel: latency + one burst's cycles."""
    r = run(prog(ld(1)), CFG)
    burst_cycles = ceil_div(CFG.dram.burst_bytes, CFG.dram.bytes_per_cycle)
    assert r.total_cycles == T0 + CFG.dram.latency_cycles + burst_cycles
    assert r.channel_busy == [burst_cycles, 0, 0, 0]


def test_sore_wait_is_a_sore_stall():
    """Without pre-generation the engine waits at a SORE barrier: the wait (including the
    loads held behind the barrier) is charged to the SORE."""
    sore = Sore(src=0, dst=0, view=SoreView.FF, nm=NM(2, 8), weights=1 << 16,
                groups=1 << 13, read_bytes=64, write_bytes=64, layer=0)
    s_cyc = timing.sore_cycles(sore, CFG)
    c = ecyc(mm(), CFG)
    r = run(prog(sore, Barrier(Unit.SORE), ld(256), ld(256, Buffer.WGT), mm()), CFG)
    load_done = T0 + s_cyc + CFG.dram.latency_cycles + xfer(512)
    assert r.total_cycles == load_done + c
    assert r.stall[ENGINE] == {("l0", "ff", "sore"): load_done}
    wall = attribute_wall_time(r)
    assert wall == {("l0", "sore"): load_done, ("l0", "ff"): c}


def _norm(layer=0, elements=1600):
    vec = Vector(kind=OpKind.NORM, elements=elements, read_bytes=64, write_bytes=64,
                 layer=layer, phase=Phase.FF)
    wu = CFG.weight_update
    return vec, ceil_div(elements, wu.lanes) * 2 + wu.pipeline_latency


def test_vector_wait_is_a_vector_stall_of_the_waiting_layer():
    """The engine waiting for a normalisation is a ``vector`` stall, and the ``vector``
    phase of the waiting layer (whose input the normalisation makes)."""
    vec, v_cyc = _norm(layer=1)
    c = ecyc(mm(), CFG)
    r = run(prog(ld(256), ld(256, Buffer.WGT), vec, Barrier(Unit.WU), mm(),
                 layers=("conv", "bn")), CFG)
    assert v_cyc > CFG.dram.latency_cycles + xfer(512)
    assert r.total_cycles == T2 + v_cyc + c  # the vector op is instruction 2
    assert r.stall[ENGINE] == {("conv", "ff", "vector"): T2 + v_cyc}
    assert attribute_wall_time(r) == {("conv", "vector"): T2 + v_cyc, ("conv", "ff"): c}


def test_vector_op_that_waited_for_the_engine_is_still_vector_work():
    """GEMM -> norm -> GEMM: the norm waits for the first GEMM, which waited for its
    operands (so its completion carries ``memory``); the second GEMM waits for the norm's
    run and then its operands, whose loads the barrier after the norm held: all of that
    wait follows the norm, so it is ``vector``, not the first GEMM's ``memory``."""
    vec, v_cyc = _norm(layer=1)
    c = ecyc(mm(), CFG)
    r = run(prog(ld(256), ld(256, Buffer.WGT), mm(), Barrier(Unit.ENGINE), vec,
                 Barrier(Unit.WU), ld(256), ld(256, Buffer.WGT), mm(),
                 layers=("conv", "bn")), CFG)
    load = CFG.dram.latency_cycles + xfer(512)
    assert r.total_cycles == T0 + load + c + v_cyc + load + c
    assert r.stall[ENGINE] == {("conv", "ff", "memory"): T0 + load,
                               ("conv", "ff", "vector"): v_cyc + load}
    wall = attribute_wall_time(r)
    assert wall == {("conv", "ff"): T0 + load + 2 * c, ("conv", "vector"): v_cyc + load}
    assert sum(wall.values()) == r.total_cycles


def test_output_halves_make_compute_wait_for_stores():
    """Three output blocks with a slow store: the third compute waits for the first
    store to free its output half (a memory stall), the others overlap."""
    big = 1 << 20
    r = run(prog(Loop(3, 4), ld(256), ld(256, Buffer.WGT), mm(), st(big)), CFG)
    stores = [i for i in r.intervals if i.unit == "dma0" and i.kind == "store"]
    assert len(stores) == 3
    computes = [i for i in r.intervals if i.unit == ENGINE and i.kind == "compute"]
    # waited for store 0 to finish, and for its weight load: issued a cycle after its
    # activation load (one descriptor per cycle), after store 0, so queued behind it
    assert computes[2].start == stores[0].end + 1
    assert r.stall[ENGINE][("l0", "ff", "memory")] >= stores[0].end - computes[1].end
    assert r.total_cycles == stores[2].end
    assert r.unit_end[DMA] == r.total_cycles


def test_single_buffered_config_serialises_loads_and_compute():
    """With single-buffered activations a load waits for the previous block's compute."""
    cfg = CFG.replace(**{"buffers.activation.double_buffered": False})
    c = ecyc(mm(m=256, n=64, k=256), cfg)
    n = 10
    block = 32768
    p = prog(ld(256, Buffer.WGT), Loop(n, 2), ld(block), mm(m=256, n=64, k=256, pop_b=False),
             Release(Buffer.WGT))
    r = run(p, cfg)
    per = CFG.dram.latency_cycles + xfer(block)
    assert r.total_cycles == (T2 + CFG.dram.latency_cycles + xfer(block) + c
                              + (n - 1) * (per + c)
                              + machine.ENGINE_ISSUE_CYCLES)  # the RELEASE


def test_deadlock_is_reported():
    """A compute with no loaded operand can never start."""
    with pytest.raises(RuntimeError, match="deadlock"):
        run(prog(mm()), CFG)


def test_busy_cycles_are_instruction_cycles_times_executions():
    c = ecyc(mm(m=64, n=32, k=100), CFG)
    p = prog(Loop(7, 3), ld(128), ld(128, Buffer.WGT), mm(m=64, n=32, k=100))
    r = run(p, CFG)
    assert r.busy[ENGINE] == {("l0", "ff"): 7 * c}
    assert sum(attribute_wall_time(r).values()) == r.total_cycles



# ------------------------------------------------------------------ buffer ports

SLOW_ACT = CFG.replace(**{"buffers.activation.banks": 2,
                          "buffers.activation.bank_bytes_per_cycle": 8})  # 16 B/cycle


@pytest.mark.parametrize("n", [1, 4, 60])
def test_a_narrow_buffer_port_bounds_its_loads(n):
    """ACT's DMA port (2 banks x 8 B = 16 B/cycle) is 16x slower than the four channels:
    activation loads take bytes / 16 after the first byte, back to back through the one
    port, while the weight load beside them still moves at DRAM speed."""
    block = 4096
    p = prog(ld(256, Buffer.WGT), Loop(n, 2), ld(block), mm(pop_b=False),
             Release(Buffer.WGT))
    r = run(p, SLOW_ACT)
    c = ecyc(mm(), CFG)
    lat = CFG.dram.latency_cycles
    # the first ACT load is issued a cycle after the WGT load (one descriptor per cycle);
    # the RELEASE takes its accept cycle
    # the first ACT load is dispatched after the LOOP (T2); the RELEASE takes its accept cycle
    assert r.total_cycles == T2 + lat + n * (block // 16) + c + 1
    assert run(p, CFG).total_cycles < r.total_cycles  # the preset: DRAM-speed ports
    assert r.stall[ENGINE] == {("l0", "ff", "memory"): r.total_cycles - n * c - 1}
    # extrapolated loops and the fully simulated ones agree
    assert run(p, SLOW_ACT, extrapolate=False).total_cycles == r.total_cycles


@pytest.mark.parametrize(("nm", "beats"), [(NM(1, 1), 1024), (NM(2, 8), 256), (NM(2, 4), 512)])
def test_weight_port_moves_slot_vectors(nm, beats):
    """A WGT load of K x 16 moves one beat of C = 16 slot vectors per chunk: K / (K per
    cycle of its pattern) beats, whatever its DRAM bytes (here 4 KiB, 16 DRAM cycles);
    with a single port per bank the engine and the DMA share it: the DMA gets half."""
    w = Load(tensor=0, row0=0, col0=0, rows=4096, cols=16, bytes=4096, buffer=Buffer.WGT,
             nm=nm)
    assert machine.port_beats(w, CFG) == beats
    one = CFG.replace(**{"buffers.weight.ports": 1})
    lat = CFG.dram.latency_cycles
    assert run(prog(w), CFG).total_cycles == T0 + lat + beats
    assert run(prog(w), one).total_cycles == T0 + lat + 2 * beats


def test_windows_act_port_moves_windows():
    """With ``act_layout = windows`` an ACT load of m x K moves m x ceil(kc / R) beats of R
    windows (an im2col load's windows are expanded: far more beats than DRAM bytes)."""
    cfg = CFG.replace(**{"buffers.act_layout": "windows"})
    a = Load(tensor=0, row0=0, col0=0, rows=100, cols=1000, bytes=512, buffer=Buffer.ACT,
             nm=NM(2, 8))
    kc = ceil_div(1000, 16)  # vcu1525: 2:8 runs 16 K per cycle
    assert machine.port_beats(a, cfg) == 100 * ceil_div(kc, 16)
    assert run(prog(a), cfg).total_cycles == T0 + CFG.dram.latency_cycles + 100 * 4


def test_stores_use_the_output_buffers_port():
    """A STORE moves one beat of R x C OUT words per (row block, column tile)."""
    s = Store(tensor=0, row0=0, col0=0, rows=1000, cols=40, bytes=1024)
    assert machine.port_beats(s, CFG) == 63 * 3
    one = CFG.replace(**{"buffers.output.ports": 1})
    lat = CFG.dram.latency_cycles
    assert run(prog(s), CFG).total_cycles == T0 + lat + 189
    assert run(prog(s), one).total_cycles == T0 + lat + 2 * 189
    assert run(prog(ld(1000)), one).total_cycles == run(prog(ld(1000)), CFG).total_cycles
