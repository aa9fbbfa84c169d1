"""The memory-model seam (nmsat.dataflow.memory): the DRAM models' timing by hand, their
properties over random transfer sequences, and the system model run on each.

The row-buffer model must equal the simple one when a row miss costs nothing, never be
faster than it, and never be slower than the row-miss bound (every row of a transfer
precharged and activated after the previous row's data, nothing overlapped).
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nmsat import config
from nmsat.arith import ceil_div
from nmsat.dataflow import isa, machine
from nmsat.dataflow.memory import (
    BufferPorts,
    Dma,
    MemoryModel,
    RowBufferDram,
    SimpleDram,
    memory_model,
)
from nmsat.errors import ConfigError
from nmsat.simulator.system import run

ROW = {"dram.model": "row_buffer"}


def _row_miss_bound(channels, bpc, latency, burst, row_bytes, miss, transfers):
    """Reference: per channel, every row of a transfer waits a whole miss after the
    previous row's data (and the first after the latency or the channel's last data)."""
    ready = [0] * channels
    ends = []
    for t, nbytes in transfers:
        base, extra = divmod(ceil_div(nbytes, burst), channels)
        end = t
        for ch in range(channels):
            share = (base + (ch < extra)) * burst
            if not share:
                continue
            e = max(ready[ch], t + latency)
            for lo in range(0, share, row_bytes):
                hi = min(lo + row_bytes, share)
                e += miss + ceil_div(hi, bpc) - ceil_div(lo, bpc)
            ready[ch] = e
            end = max(end, e)
        ends.append(end)
    return ends


def _ends(model, transfers):
    return [max([t] + [s.end for s in model.transfer(t, n)]) for t, n in transfers]


def test_both_models_are_memory_models():
    for m in (memory_model(config.VCU1525), memory_model(config.VCU1525.replace(**ROW))):
        assert isinstance(m, MemoryModel)
    assert type(memory_model(config.VCU1525)) is SimpleDram
    assert type(memory_model(config.VCU1525.replace(**ROW))) is RowBufferDram


def test_hand_checked_row_buffer_transfer():
    """One channel of 64 B/cycle, latency 10, 1 KB rows, a miss of 3 + 3 cycles; 4 KB is
    four rows of 16 data cycles each."""
    simple = SimpleDram(1, 64, 10, 64)
    assert _ends(simple, [(0, 4096)]) == [10 + 64]
    # 16 banks: the first row opens after the latency and the miss (16); each next row's
    # bank was activated while the previous row streamed (16 cycles > the 6-cycle miss)
    banked = RowBufferDram(1, 64, 10, 64, banks=16, row_bytes=1024, miss_cycles=6)
    assert banked.transfer(0, 4096) == ((0, 16, 80, False),)
    # one bank: every row waits for its own precharge and activate: 74 + 4 x 6
    single = RowBufferDram(1, 64, 10, 64, banks=1, row_bytes=1024, miss_cycles=6)
    assert _ends(single, [(0, 4096)]) == [98]
    # a second transfer right after: its first row waits for the bank (one bank: the
    # previous data end 98 + the miss, then 16 cycles) or only for the bus (16 banks)
    assert single.transfer(0, 1024) == ((0, 104, 120, True),)
    assert banked.transfer(0, 1024) == ((0, 80, 96, True),)
    # rows that stream faster than a miss: 256 B rows (4 cycles), miss 6, two banks:
    # rows start 16, 22, 28, 34 (one miss apart), each 4 cycles
    short = RowBufferDram(1, 64, 10, 64, banks=2, row_bytes=256, miss_cycles=6)
    assert _ends(short, [(0, 1024)]) == [38]


def test_hand_checked_striping_and_stream_cycles():
    """Bursts striped from channel 0: 5 bursts on 2 channels are 3 + 2."""
    m = SimpleDram(2, 64, 10, 64)
    assert m.data_cycles(5 * 64 - 1) == (3, 2)
    assert m.stream_cycles(5 * 64) == 10 + 3
    r = RowBufferDram(2, 64, 10, 64, banks=16, row_bytes=128, miss_cycles=4)
    # channel 0: 192 B in two rows (128 + 64): 14..16, then max(16, 14 + 4) = 18..19
    assert r.stream_cycles(5 * 64) == 19
    assert r.data_cycles(5 * 64) == m.data_cycles(5 * 64)


transfers = st.lists(st.tuples(st.integers(0, 400), st.integers(1, 20_000)),
                     min_size=1, max_size=12).map(
    lambda xs: [(sum(d for d, _ in xs[:i + 1]), n) for i, (_, n) in enumerate(xs)])
geometry = st.tuples(st.integers(1, 4), st.sampled_from((8, 16, 64)), st.integers(0, 50),
                     st.sampled_from((32, 64)), st.integers(1, 16),
                     st.sampled_from((64, 200, 1024, 8192)))


@settings(max_examples=300, deadline=None)
@given(geometry, st.integers(0, 60), transfers)
def test_row_buffer_between_simple_and_the_row_miss_bound(g, miss, xs):
    channels, bpc, lat, burst, banks, row = g
    simple = _ends(SimpleDram(channels, bpc, lat, burst), xs)
    rowbuf = _ends(RowBufferDram(channels, bpc, lat, burst, banks, row, miss), xs)
    bound = _row_miss_bound(channels, bpc, lat, burst, row, miss, xs)
    assert all(s <= r <= b for s, r, b in zip(simple, rowbuf, bound))
    if banks == 1:  # nothing overlaps a miss: the bound is exact
        assert rowbuf == bound


@settings(max_examples=200, deadline=None)
@given(geometry, transfers)
def test_row_buffer_with_free_misses_is_the_simple_model(g, xs):
    channels, bpc, lat, burst, banks, row = g
    a, b = SimpleDram(channels, bpc, lat, burst), RowBufferDram(channels, bpc, lat, burst,
                                                                banks, row, 0)
    for t, n in xs:
        assert a.transfer(t, n) == b.transfer(t, n)
        assert a.state(t) == b.state(t)
    assert a.stream_cycles(xs[0][1]) == b.stream_cycles(xs[0][1])


@settings(max_examples=100, deadline=None)
@given(geometry, st.integers(0, 60), transfers, st.integers(1, 500))
def test_state_shift_is_a_time_shift(g, miss, xs, d):
    """The extrapolation's contract: after shift(now, d) the model answers every later
    transfer as the unshifted one would, d cycles later."""
    channels, bpc, lat, burst, banks, row = g
    a = RowBufferDram(channels, bpc, lat, burst, banks, row, miss)
    b = RowBufferDram(channels, bpc, lat, burst, banks, row, miss)
    half = len(xs) // 2
    for t, n in xs[:half]:
        a.transfer(t, n)
        b.transfer(t, n)
    now = xs[half][0] if half < len(xs) else xs[-1][0]
    b.shift(now, d)
    ta, _ = a.state(now)
    tb, _ = b.state(now + d)
    assert [x + d for x in ta] == tb
    for t, n in xs[half:]:
        assert [s._replace(start=s.start + d, end=s.end + d) for s in a.transfer(t, n)] \
            == list(b.transfer(t + d, n))


def _cfg(**changes):
    """One 64 B/cycle channel, latency 10, 1 KB rows, misses of 3 + 3; buffer ports fast
    enough never to bind."""
    base = {"dram.channels": 1, "dram.bytes_per_cycle": 64, "dram.latency_cycles": 10,
            "dram.burst_bytes": 64, "dram.row_bytes": 1024, "dram.t_rp_cycles": 3,
            "dram.t_rcd_cycles": 3, "buffers.activation.bank_bytes_per_cycle": 64,
            "buffers.weight.bank_bytes_per_cycle": 64}
    return config.preset("small").replace(**{**base, **changes})


T0 = machine.QUEUE_LATENCY  # the controller's start before the first LOAD
REL = machine.ENGINE_ISSUE_CYCLES  # a RELEASE's accept cycle after the last load


def _loads(*sizes):
    ins = []
    for i, n in enumerate(sizes):
        b = isa.Buffer(i % 2)
        ins += [isa.Load(0, 0, 0, 8, 8, n, buffer=b), isa.Release(b)]
    return isa.Program(ins, (isa.Tensor("t", 1 << 16, 64),), ("l0",))


@pytest.mark.parametrize("changes, cycles", [
    ({}, 74),  # the simple model: 10 + 4096 / 64
    (ROW, 80),  # rows opened one ahead: only the first miss shows
    ({**ROW, "dram.banks": 1}, 98),  # every row's miss after the previous row
    ({**ROW, "dram.t_rp_cycles": 0, "dram.t_rcd_cycles": 0}, 74),
])
def test_system_model_runs_on_the_selected_dram(changes, cycles):
    """A program of one 4 KB load: the DMA takes the DRAM model's time after the
    controller's start; the RELEASE after it its accept cycle."""
    r = run(_loads(4096), _cfg(**changes), extrapolate=False)
    assert r.unit_end["dma"] == T0 + cycles
    assert r.total_cycles == T0 + cycles + REL
    assert r.channel_busy == [64]  # data cycles: the same in both models


def test_system_model_two_loads_hand_checked():
    """4 KB into ACT then 1 KB into WGT, issued a cycle apart (one channel): the second
    queues behind the first. Simple: 74, then 74 + 16 = 90. Row buffer, one bank: 98,
    then its row after a miss: 98 + 6 + 16 = 120 (after the start, before the RELEASE)."""
    assert run(_loads(4096, 1024), _cfg(), extrapolate=False).total_cycles == T0 + 90 + REL
    assert run(_loads(4096, 1024), _cfg(**ROW, **{"dram.banks": 1}),
               extrapolate=False).total_cycles == T0 + 120 + REL


@pytest.mark.parametrize("preset", ["small", "vcu1525"])
@pytest.mark.parametrize("workload, layer", [("mlp", "fc2"), ("cnn", "conv2")])
def test_free_row_misses_give_the_simple_models_run(preset, workload, layer):
    """Whole compiled programs: with misses of 0 cycles the row-buffer model's run is the
    simple model's in every output; with the datasheet's misses it is never faster."""
    from nmsat.dataflow.compiler import CompileOptions, compile_layer
    from nmsat.types import Phase
    from nmsat.workloads.zoo import load

    cfg = config.preset(preset)
    wl = load(workload, batch=4)
    prog = compile_layer(wl.workload, layer, Phase.FF, cfg,
                         CompileOptions(method="bdwp", nm="2:8", batch=4))
    simple = run(prog, cfg, record=True)
    free = run(prog, cfg.replace(**ROW, **{"dram.t_rp_cycles": 0, "dram.t_rcd_cycles": 0}),
               record=True)
    assert (simple.total_cycles, simple.stall, simple.busy, simple.intervals, simple.jumps) \
        == (free.total_cycles, free.stall, free.busy, free.intervals, free.jumps)
    slow = run(prog, cfg.replace(**ROW, **{"dram.banks": 1}), record=False)
    assert slow.total_cycles > simple.total_cycles


def test_a_custom_memory_model_plugs_in_without_the_config():
    """run(memory=...) takes any MemoryModel: a DRAM twice as slow to the first byte."""
    cfg = _cfg()
    r = run(_loads(4096), cfg, extrapolate=False, memory=SimpleDram(1, 64, 20, 64))
    assert r.total_cycles == T0 + 84 + REL


def test_dma_completions_in_queue_order_and_port_bound():
    """Dma: a short load issued after a long one completes after it (queue order, a
    cycle apart); a store whose 350 port cycles (its beats) outlast DRAM completes then."""
    dma = Dma(SimpleDram(1, 64, 10, 64), BufferPorts())
    a = dma.issue(0, 0, 4096, isa.Buffer.ACT, 64)
    b = dma.issue(0, 1, 64, isa.Buffer.ACT, 1)
    assert (a.done, b.done, b.after) == (74, 75, 75)
    c = dma.issue(0, 2, 64, isa.Buffer.WGT, 1)  # DRAM and port done before b: a cycle after
    assert (c.done, c.after) == (76, 76)
    s = dma.issue(1, 0, 700, isa.Buffer.OUT, 350)
    assert s.done == s.port_end == 10 + 350


def test_unknown_dram_model_is_rejected():
    with pytest.raises(ConfigError, match=r"^dram.model must be one of simple, row_buffer, "
                                          r"not 'hbm'$"):
        config.VCU1525.replace(**{"dram.model": "hbm"})


@pytest.mark.parametrize("workload, batch", [("mlp", 16), ("cnn", 4)])
def test_row_buffer_runs_extrapolate_exactly(workload, batch):
    """A whole training step on the row-buffer DRAM with one bank and 1 KB rows (every
    row's miss shows): the extrapolated run equals simulating every iteration, and it
    did skip work."""
    from nmsat.dataflow.compiler import CompileOptions, compile_workload
    from nmsat.workloads import zoo

    cfg = config.preset("small").replace(**ROW, **{"dram.banks": 1, "dram.row_bytes": 1024})
    prog = compile_workload(zoo.get(workload, batch=batch), cfg, CompileOptions(method="bdwp"))
    fast = run(prog, cfg, record=False)
    full = run(prog, cfg, extrapolate=False, record=False)
    assert fast.jumps and fast.simulated_instructions < full.simulated_instructions
    assert (fast.total_cycles, fast.stall, fast.busy, fast.engine_time, fast.channel_busy) \
        == (full.total_cycles, full.stall, full.busy, full.engine_time, full.channel_busy)
