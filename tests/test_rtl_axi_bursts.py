"""The burst law of the top's AXI master in Amaranth's simulator (hypothesis): for any
runs (start on any bus beat, near 4 KiB pages included) the AR bursts of ``BurstReader``
and the AW bursts of ``BurstWriter`` are ``axi.burst_lengths``: whole bursts from a run's
start, none over ``burst_beats``, none across a 4 KiB page, together exactly the run's
beats, and as many as ``dram.dma = word_slots`` charges unless a page cuts one."""

from __future__ import annotations

from amaranth.sim import Simulator
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nmsat.arith import ceil_div
from nmsat.rtl.axi import PAGE_BYTES, AxiParams, BurstReader, BurstWriter, burst_lengths

GEOMETRIES = [AxiParams(4, 4, 64), AxiParams(16, 4, 64), AxiParams(8, 1, 64),
              AxiParams(16, 16, 64)]


@st.composite
def runs(draw):
    p = draw(st.sampled_from(GEOMETRIES))
    page_beats = PAGE_BYTES // p.data_bytes
    out = []
    for _ in range(draw(st.integers(1, 4))):
        # a start anywhere, or a few beats before a page's end
        beat = draw(st.one_of(st.integers(0, 3 * page_beats),
                              st.integers(1, 2 * p.burst_beats + 1).map(
                                  lambda d: page_beats * 2 - d)))
        out.append((beat * p.data_bytes, draw(st.integers(1, 3 * p.burst_beats + 2))))
    return p, out


def _issued(p: AxiParams, rs: list[tuple[int, int]], write: bool) -> list[tuple[int, int]]:
    """(address, beats) of every AR (AW) burst the unit issues for the runs."""
    dut = BurstWriter(p) if write else BurstReader(p)
    pre = "aw" if write else "ar"
    want = sum(len(burst_lengths(a, n, p)) for a, n in rs)
    got: list[tuple[int, int]] = []

    async def bench(ctx):
        ctx.set(getattr(dut, f"{pre}ready"), 1)
        if write:
            ctx.set(dut.wready, 1)
        i, cycles = 0, 0
        while len(got) < want and cycles < 50 * want + 50:
            ctx.set(dut.runs.valid, i < len(rs))
            if i < len(rs):
                ctx.set(dut.runs.payload, {"addr": rs[i][0], "beats": rs[i][1]})
            if write:
                ctx.set(dut.data.valid, 1)
            took = i < len(rs) and ctx.get(dut.runs.ready)
            if ctx.get(getattr(dut, f"{pre}valid")):
                got.append((ctx.get(getattr(dut, f"{pre}addr")),
                            ctx.get(getattr(dut, f"{pre}len")) + 1))
            await ctx.tick()
            i += took
            cycles += 1

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return got


def _law(p: AxiParams, rs: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out = []
    for a, n in rs:
        for k in burst_lengths(a, n, p):
            out.append((a, k))
            a += k * p.data_bytes
    return out


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(runs(), st.booleans())
def test_bursts_are_the_law(case, write):
    p, rs = case
    assert _issued(p, rs, write) == _law(p, rs)


@settings(max_examples=300, deadline=None)
@given(runs())
def test_the_law_cuts_runs_into_whole_bursts_within_pages(case):
    p, rs = case
    for a, n in rs:
        lengths = burst_lengths(a, n, p)
        assert sum(lengths) == n and all(0 < k <= p.burst_beats for k in lengths)
        at = a
        for k in lengths:  # no burst crosses a page
            assert at // PAGE_BYTES == (at + k * p.data_bytes - 1) // PAGE_BYTES
            at += k * p.data_bytes
        crosses = a // PAGE_BYTES != (a + n * p.data_bytes - 1) // PAGE_BYTES
        aligned = a % (p.burst_beats * p.data_bytes) == 0
        # the model's whole bursts from the run's start, unless a page cuts one
        if aligned or not crosses:
            assert len(lengths) == ceil_div(n, p.burst_beats)
            assert lengths[:-1] == [p.burst_beats] * (len(lengths) - 1)
        else:
            assert len(lengths) == ceil_div(n, p.burst_beats) + (
                (a // p.data_bytes) % p.burst_beats + (n - 1) % p.burst_beats + 1
                > p.burst_beats)
