"""A stream monitor that also stamps each accepted beat with its clock cycle."""

from __future__ import annotations

from cocotb.triggers import FallingEdge, ReadOnly

from ..tb.cocotb_parts import StreamMonitor


class CycleCounter:
    """Counts rising edges seen so far (read with :attr:`now`)."""

    def __init__(self, clk):
        self.clk, self.now = clk, 0

    async def run(self) -> None:
        from cocotb.triggers import RisingEdge

        while True:
            await RisingEdge(self.clk)
            self.now += 1


class TimedMonitor(StreamMonitor):
    """:class:`~nmsat.rtl.tb.cocotb_parts.StreamMonitor` plus ``cycles[i]``: the cycle
    (of ``counter``) in which beat i was accepted."""

    def __init__(self, dut, name, clk, rng, counter: CycleCounter, ready_p: float = 1.0):
        super().__init__(dut, name, clk, rng, ready_p)
        self.counter = counter
        self.cycles: list[int] = []

    async def run(self) -> None:
        while True:
            await FallingEdge(self.clk)
            self.ready.value = int(self.ready_p >= 1 or self.rng.random() < self.ready_p)
            await ReadOnly()
            if int(self.valid.value) and int(self.ready.value):
                self.beats.append(int(self.payload.value))
                self.cycles.append(self.counter.now)


class TimedDriver:
    """Records the cycle of each accepted input beat of a stream the test drives."""

    def __init__(self, dut, name, clk, counter: CycleCounter):
        self.valid = getattr(dut, f"{name}__valid")
        self.ready = getattr(dut, f"{name}__ready")
        self.clk, self.counter = clk, counter
        self.cycles: list[int] = []

    async def run(self) -> None:
        while True:
            await FallingEdge(self.clk)
            await ReadOnly()
            if int(self.valid.value) and int(self.ready.value):
                self.cycles.append(self.counter.now)


async def start_timed_bench(dut, rng, gap: float, ready_p: float):
    """Start the clock and a cycle counter, pulse reset, and attach the timed stream parts
    to the unit's ``inp`` and ``out`` ports: returns (driver, input stamps, output monitor).

    The setup shared by the SORE and weight-update testbenches."""
    import cocotb
    from cocotb.clock import Clock

    from ..tb.cocotb_parts import StreamDriver

    clk = dut.clk
    cocotb.start_soon(Clock(clk, 10, unit="ns").start())
    counter = CycleCounter(clk)
    cocotb.start_soon(counter.run())
    dut.rst.value = 1
    await FallingEdge(clk)
    dut.rst.value = 0
    driver = StreamDriver(dut, "inp", clk, rng, gap)
    taken = TimedDriver(dut, "inp", clk, counter)
    monitor = TimedMonitor(dut, "out", clk, rng, counter, ready_p)
    cocotb.start_soon(taken.run())
    cocotb.start_soon(monitor.run())
    return driver, taken, monitor
