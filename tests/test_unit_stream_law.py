"""The laws of the accelerator top's SORE and weight-update streams
(``dataflow/sore_stream.py``, ``dataflow/wu_stream.py``): what they read and write,
bounds on their cycles from independent counts, and that the system model charges them
under ``dram.dma = word_slots`` only. The RTL runs them cycle for cycle in
``tests/rtl/test_rtl_top_units.py`` and the random top programs."""

from hypothesis import given, settings
from hypothesis import strategies as st

from nmsat.arith import ceil_div
from nmsat.config import PRESETS
from nmsat.dataflow import isa, machine, timing
from nmsat.dataflow import sore_stream as ss
from nmsat.dataflow import wu_stream as wu
from nmsat.dataflow.memory import memory_model
from nmsat.simulator.units import unit_cycles
from nmsat.types import NM


def _cfg(draw):
    c = draw(st.sampled_from((2, 4, 8)))
    p = draw(st.sampled_from((2, 4)))
    bpc = draw(st.sampled_from((4, 8, 16)))
    return PRESETS["small"].replace(**{
        "array.cols": c, "array.macs_per_pe": p, "array.act_window": 4 * p,
        "array.nm_patterns": ("2:4", "2:8", "1:4"),
        "sore.lanes": draw(st.sampled_from((1, 2, 4, 8))),
        "sore.pipeline_latency": draw(st.integers(1, 6)),
        "dram.dma": "word_slots", "dram.bytes_per_cycle": bpc,
        "dram.burst_bytes": bpc * draw(st.sampled_from((1, 2, 4))),
        "dram.latency_cycles": draw(st.integers(2, 64))})


@st.composite
def cases(draw):
    cfg = _cfg(draw)
    nm = NM.parse(draw(st.sampled_from(("2:4", "2:8", "1:4"))))
    view = draw(st.sampled_from(list(isa.SoreView)))
    rows, cols = draw(st.integers(1, 96)), draw(st.integers(1, 96))
    k, n = (rows, cols) if view is isa.SoreView.FF else (cols, rows)
    groups = n * ceil_div(k, nm.m)
    ins = isa.Sore(src=0, dst=1, view=view, nm=nm, weights=rows * cols, groups=groups,
                   read_bytes=2 * rows * cols, write_bytes=groups * nm.n * 3)
    return cfg, ins, rows, cols


def _channel_cycles(cfg, nbytes: int) -> int:
    d = cfg.dram
    return ceil_div(nbytes, d.burst_bytes) * d.burst_bytes // d.bytes_per_cycle


@settings(max_examples=300, deadline=None)
@given(cases())
def test_the_law_lies_between_independent_bounds(case):
    """At least the lanes' work after the first read's latency, and at least every burst's
    time on the unit's channel after one latency; at most every chunk-row done alone
    (its reads, the lanes, the pipeline, its write, each with a latency)."""
    cfg, ins, rows, cols = case
    a, d = cfg.array, cfg.dram
    if ins.nm.k_per_chunk(a.macs_per_pe, a.act_window) < a.cols:
        return  # the top has no SORE stream for this pattern (check_sore_stream)
    s = ss.sore_stream(ins, rows, cols, cfg)
    got = ss.stream_cycles(ins, rows, cols, cfg)
    reads = [nb for _, nb in s.reads(0, 0, 0)]
    wb = s.cols * s.ws
    lanes = s.chunk_rows * s.lane_cycles
    lat = cfg.sore.pipeline_latency
    assert got >= 2 + d.latency_cycles + lanes + lat
    chan = s.chunk_rows * (sum(_channel_cycles(cfg, nb) for nb in reads)
                           + _channel_cycles(cfg, wb))
    assert got >= d.latency_cycles + chan
    alone = (sum(_channel_cycles(cfg, nb) for nb in reads) + 2 * d.latency_cycles + 8
             + s.lane_cycles + lat + _channel_cycles(cfg, wb) + len(reads) * 2)
    assert got <= 2 + s.chunk_rows * alone


@settings(max_examples=200, deadline=None)
@given(cases())
def test_the_chunk_rows_cover_the_view(case):
    """Every group of the view is in one chunk-row (its C g groups, padding included), and
    the reads of a chunk-row hold every weight its groups take: ``g M`` values along the
    view's K for each of its C columns."""
    cfg, ins, rows, cols = case
    a = cfg.array
    if ins.nm.k_per_chunk(a.macs_per_pe, a.act_window) < a.cols:
        return
    s = ss.sore_stream(ins, rows, cols, cfg)
    k, n = (rows, cols) if ins.view is isa.SoreView.FF else (cols, rows)
    assert s.nt * s.cols >= n > (s.nt - 1) * s.cols
    assert s.kcr * s.gm >= k > (s.kcr - 1) * s.gm
    assert s.chunk_rows * s.cols * s.g >= ins.groups
    values = sum(nb for _, nb in s.reads(0, 0, 1 << 20)) // s.ws * s.lanes_p
    need = s.cols * s.gm
    assert values >= need
    if ins.view is isa.SoreView.FF or s.cols >= s.lanes_p:
        assert values == need  # nothing read twice
    else:  # BP with C < P: a dense chunk of P in-values, C of them used
        assert values == need * s.lanes_p // s.cols
    w_off, w_bytes = s.write(1, 2, 1 << 20)
    assert (w_off, w_bytes) == ((1 << 20) + 2 * s.cols * s.ws, s.cols * s.ws)


def test_the_system_model_charges_the_law_under_word_slots_only():
    cfg = PRESETS["small"]
    ins = isa.Sore(src=0, dst=1, view=isa.SoreView.FF, nm=NM(2, 8), weights=2560,
                   groups=320, read_bytes=5120, write_bytes=1520)
    tensors = (isa.Tensor("fc3.w", 256, 10), isa.Tensor("fc3.w.ff", 256, 10, nm=NM(2, 8)))
    packed = unit_cycles([ins], cfg, memory_model(cfg), tensors)
    assert packed == (max(timing.sore_cycles(ins, cfg),
                          memory_model(cfg).stream_cycles(5120 + 1520)),)
    ws = cfg.replace(**{"dram.dma": "word_slots"})
    assert unit_cycles([ins], ws, memory_model(ws), tensors) == (
        ss.stream_cycles(ins, 256, 10, ws),)
    # 3 column tiles (10 outputs on 4 columns) of 32 chunk-rows, each reading 8 slot words
    # (128 B) and writing 4 (64 B) on the 16 B/cycle channel: memory-bound, 12 cycles each
    assert ss.sore_stream(ins, 256, 10, ws).chunk_rows == 96
    assert ss.stream_cycles(ins, 256, 10, ws) >= 96 * 12
    assert machine.outstanding_reads(ws) == 5


@st.composite
def wu_cases(draw):
    r = draw(st.sampled_from((2, 4, 8)))
    p = draw(st.sampled_from((2, 4, 8)))
    bpc = draw(st.sampled_from((4, 8, 16)))
    cfg = PRESETS["small"].replace(**{
        "array.rows": r, "array.cols": r, "array.macs_per_pe": p, "array.act_window": 4 * p,
        "array.nm_patterns": ("2:4", "2:8"),
        "weight_update.lanes": draw(st.sampled_from((1, 2, 4, 8, 16))),
        "weight_update.pipeline_latency": draw(st.integers(1, 8)),
        "dram.dma": "word_slots", "dram.bytes_per_cycle": bpc,
        "dram.burst_bytes": bpc * draw(st.sampled_from((1, 2, 4))),
        "dram.latency_cycles": draw(st.integers(2, 64))})
    n_in, n_out = draw(st.integers(1, 80)), draw(st.integers(1, 80))
    ins = isa.WeightUpdate(tensor=0, weights=n_in * n_out, read_bytes=12 * n_in * n_out,
                           write_bytes=10 * n_in * n_out)
    return cfg, ins, n_in, n_out


@settings(max_examples=300, deadline=None)
@given(wu_cases())
def test_the_update_law_lies_between_independent_bounds(case):
    """The weight update's stream: every weight (padding included) in super-blocks of
    R x max(C, P); at least the lanes' beats after a latency and every burst's channel
    time after a latency, at most every super-block done alone."""
    cfg, ins, n_in, n_out = case
    a, d = cfg.array, cfg.dram
    s = wu.wu_stream(ins, n_in, n_out, cfg)
    assert s.items * a.rows * s.lq >= n_in * n_out
    assert s.nrb * a.rows >= n_out > (s.nrb - 1) * a.rows
    assert s.ns * s.lq >= n_in > (s.ns - 1) * s.lq
    assert s.copy_bytes * a.macs_per_pe == s.lq * a.rows * s.ws  # Lq/P words per output
    got = wu.stream_cycles(ins, n_in, n_out, cfg)
    lat = max(1, cfg.weight_update.pipeline_latency)
    assert got >= 2 + d.latency_cycles + s.items * s.beats + lat
    chan = s.items * (3 * _channel_cycles(cfg, s.state_bytes)
                      + 2 * _channel_cycles(cfg, s.state_bytes)
                      + _channel_cycles(cfg, s.copy_bytes))
    assert got >= d.latency_cycles + chan
    alone = (5 * _channel_cycles(cfg, s.state_bytes) + _channel_cycles(cfg, s.copy_bytes)
             + 2 * d.latency_cycles + 12 + s.beats + lat)
    assert got <= 2 + s.items * alone


def test_the_system_model_charges_the_update_law_under_word_slots_only():
    cfg = PRESETS["small"]
    ins = isa.WeightUpdate(tensor=0, weights=2560, read_bytes=30720, write_bytes=25600)
    tensors = (isa.Tensor("fc3.w", 256, 10),)
    assert unit_cycles([ins], cfg, memory_model(cfg), tensors) == (
        max(timing.weight_update_cycles(ins, cfg),
            memory_model(cfg).stream_cycles(30720 + 25600)),)
    ws = cfg.replace(**{"dram.dma": "word_slots"})
    assert unit_cycles([ins], ws, memory_model(ws), tensors) == (
        wu.stream_cycles(ins, 256, 10, ws),)
    # 3 row blocks of 64 super-blocks (4 x 4 weights), each reading 3 x 64 bytes and
    # writing 3 x 64 on the 16 B/cycle channel: 24 channel cycles each
    assert wu.wu_stream(ins, 256, 10, ws).items == 192
    assert wu.stream_cycles(ins, 256, 10, ws) >= 192 * 24
    # a non-square array has no weight-update stream on the top: the packed law
    odd = ws.replace(**{"array.cols": 8})
    assert not wu.has_stream(odd)
    assert unit_cycles([ins], odd, memory_model(odd), tensors) == (
        max(timing.weight_update_cycles(ins, odd),
            memory_model(odd).stream_cycles(30720 + 25600)),)
