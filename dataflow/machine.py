"""Machine facts the system model (``simulator/system.py``) and the RTL testbench
(``rtl/tb``) both charge, stated once (``docs/architecture.md`` sections 4.1 and 7).

* **Buffer DMA ports move beats of the buffer's words.** A LOAD writes, and a STORE
  reads, one word into (out of) every bank of its buffer at one address per beat; a beat
  takes one cycle on the DMA's port (two when the banks have one port, shared with the
  engine). The words are the engine's: ACT windows (``buffers.act_layout = windows``: R
  banks, window (row, chunk) at address ``row * ceil(kc / R) + chunk // R``), WGT slot
  vectors (C banks, (column, chunk) at ``(column // C) * kc + chunk``), OUT fp32/int32
  words (R x C banks, one per PE, (row block, column tile) per address). ``kc`` is the
  chunks of the K range under the LOAD's pattern (``Load.nm``), so a 2:8 slot vector
  that fills half its slots, an expanded im2col window or a 32-bit OUT word each take
  a whole beat whatever DRAM bytes they carry. An ``fmap`` ACT buffer (input rows, no
  engine words) moves ``banks x bank_bytes_per_cycle`` bytes per beat.
* **Every engine instruction takes one command cycle.** The engine accepts a COMPUTE
  or a RELEASE in one cycle; a COMPUTE's block (``timing.compute_cycles``) starts
  the cycle after, because its buffers have synchronous read ports and step 0's
  operands are read in the accept cycle. Back-to-back COMPUTEs therefore take
  ``compute_cycles + 1`` each.
* **A DMA queue takes one descriptor and reports one completion per cycle** (LOADs on
  one queue, STOREs on the other; completions in issue order).
* **The controller starts dispatching** (:func:`dispatch_floors`): after ``start`` it
  reads one instruction per cycle from its synchronous instruction memory, so up to the
  first loop's back edge instruction i (a BARRIER, settled at the start, and a LOOP take
  their cycle too) is dispatched in cycle i, and a unit's queue hands an entry on
  :data:`QUEUE_LATENCY` cycles after it was written: no unit issues it before
  ``i + QUEUE_LATENCY``. From then on dispatch runs ahead of the units (one instruction
  per cycle, four-entry queues), so a unit does not wait for it in a layer program.
* **What a LOAD or STORE moves in DRAM** is the DMA's (``dram.dma``, :func:`dma_bytes`):
  ``packed`` moves the tile's bytes (``Load.bytes``, its elements in their element type,
  index bits packed; the memory model rounds the transfer up to whole bursts).
  ``word_slots`` is the RTL accelerator top's DMA (``rtl/top.py``, ``docs/rtl.md``,
  "Accelerator top (AXI)"): the engine's buffer words, each in a slot of a power of two
  bytes and at least one bus beat (``dram.bytes_per_cycle``, the AXI data width), one
  run per ACT tile row (``ceil(kc / R)`` beats of R slots), WGT column tile (``kc``
  beats of C slots) or STORE row block (``ceil(cols / C)`` blocks of R x C 32-bit
  words); a run is cut into AXI bursts of ``dram.burst_bytes`` from its start (the last
  one shorter; a run that starts inside a burst is not realigned), each taking a whole
  burst of the channel (:func:`dma_runs`). Its address pipeline puts the
  first request :data:`DMA_REQUEST_CYCLES` after the descriptor issues, and the transfer
  completes with its last data beat (:func:`dma_tail_cycles`: a last burst that is
  shorter than a whole one ends before the channel is free).
"""

from __future__ import annotations

from nmsat.arith import ceil_div
from nmsat.config import AcceleratorConfig
from nmsat.reference import gemm_chunks
from nmsat.types import DType

from .isa import Buffer, Load, Loop, Program, Store

__all__ = ["DMA_ISSUE_INTERVAL", "DMA_REQUEST_CYCLES", "ENGINE_ISSUE_CYCLES", "QUEUE_LATENCY",
           "dispatch_floors", "dma_bytes", "dma_runs", "dma_tail_cycles", "outstanding_reads",
           "port_beats", "port_cycles", "word_slot_bytes"]

ENGINE_ISSUE_CYCLES = 1
"""Cycles the engine spends accepting a COMPUTE or RELEASE (the synchronous buffers'
read of a block's first step; see the module docstring)."""

DMA_ISSUE_INTERVAL = 1
"""Cycles between two descriptors issued from one DMA queue, and between two of its
completions."""

QUEUE_LATENCY = 2
"""Cycles from dispatching an instruction into its unit's queue to the unit seeing it
(``rtl/controller.py``: ``amaranth.lib.fifo.SyncFIFOBuffered``, a registered output)."""


def dispatch_floors(prog: Program) -> list[int]:
    """Per instruction, the first cycle (from the cycle after ``start``) its unit may
    issue it: ``i + QUEUE_LATENCY`` up to the end of the first loop body to end (the
    first back edge), 0 after it (dispatch is ahead there)."""
    ins = prog.instructions
    first_end = len(ins)
    for i, x in enumerate(ins):
        if isinstance(x, Loop):
            first_end = min(first_end, i + 1 + x.body)
        if i >= first_end:
            break
    return [i + QUEUE_LATENCY if i < first_end else 0 for i in range(len(ins))]


def port_beats(ins: Load | Store, cfg: AcceleratorConfig) -> int:
    """Beats a LOAD or STORE moves through its buffer's DMA port (module docstring)."""
    a = cfg.array
    R, C = a.rows, a.cols
    if isinstance(ins, Store):
        return ceil_div(ins.rows, R) * ceil_div(ins.cols, C)
    if ins.buffer is Buffer.ACT:
        if cfg.buffers.act_layout != "windows":
            b = cfg.buffers.activation
            return ceil_div(ins.bytes, b.banks * b.bank_bytes_per_cycle)
        kc = gemm_chunks(ins.cols, a.macs_per_pe, a.act_window, ins.nm)
        return ins.rows * ceil_div(kc, R)
    kc = gemm_chunks(ins.rows, a.macs_per_pe, a.act_window, ins.nm)
    if a.shadow_weights:
        # R x ports banks, one per shadow load chain (bank (i, s): chunks c = i mod R of
        # the columns of chain s); a beat writes one chunk into each bank (chunk-lane
        # write enables), so a (K-tile, column tile) takes ceil(C / ports) beats
        # (docs/architecture.md 7).
        return ceil_div(ins.cols, C) * ceil_div(kc, R) * ceil_div(C, min(a.weight_load_ports, C))
    return ceil_div(ins.cols, C) * kc


def port_cycles(ins: Load | Store, cfg: AcceleratorConfig) -> int:
    """Cycles a LOAD or STORE occupies its buffer's DMA port: its beats, each one cycle
    with two ports per bank, two with one."""
    b = cfg.buffers
    buf = (b.output if isinstance(ins, Store) else
           b.activation if ins.buffer is Buffer.ACT else b.weight)
    return port_beats(ins, cfg) * (1 if buf.ports > 1 else 2)


DMA_REQUEST_CYCLES: dict[str, tuple[int, int]] = {"packed": (0, 0), "word_slots": (4, 3)}
"""Per ``dram.dma``, cycles from a LOAD's and a STORE's issue to its first DRAM request
when the DRAM side is idle. ``packed``: none (an idealised DMA). ``word_slots``:
``rtl/top.py``'s address pipeline, a LOAD's AR 4 cycles after its command (the command
registered against its descriptor, the LOAD queue, the run register, the burst
register), a STORE's AW 3 (the STORE queue, the run register, the burst register);
checked on the RTL's AXI timeline by ``tests/rtl/test_rtl_top_cocotb.py``. The top issues
one transfer's bursts at a time, in command order; a transfer that waits for an earlier
one's bursts requests no later than that one's data ends, so it queues on the channel as
the model's does (``docs/rtl.md``, "Accelerator top (AXI)")."""


def outstanding_reads(cfg: AcceleratorConfig) -> int:
    """Read bursts the master keeps in flight: enough to cover the DRAM's request latency
    at one beat per cycle (Little's law: ``ceil(dram.latency_cycles / burst beats)``
    bursts whose latency overlaps, plus the one being delivered, plus one because a slot
    freed by a burst's last beat is reused from the next cycle), so a long read streams
    at the bus's full rate (measured: the small preset's reads are gapless with 5, show a
    2-cycle gap every few bursts with 4). The Xilinx MIG's AXI slave queues deeply enough
    for this (PG150, "AXI4 Slave Interface"); at most 256."""
    d = cfg.dram
    beats = max(1, d.burst_bytes // d.bytes_per_cycle)
    return min(256, ceil_div(d.latency_cycles, beats) + 2)


def word_slot_bytes(bits: int, cfg: AcceleratorConfig) -> int:
    """Bytes one buffer word of ``bits`` occupies in DRAM under ``word_slots``: the next
    power of two, at least one bus beat (``dram.bytes_per_cycle``), so every run starts
    on a beat (``rtl.top.word_slot``)."""
    b = max(1, ceil_div(bits, 8))
    return max(1 << (b - 1).bit_length(), cfg.dram.bytes_per_cycle)


def _word_bits(cfg: AcceleratorConfig) -> tuple[int, int]:
    """(ACT window, WGT slot vector) bits: ``rtl.layouts.EngineShape``'s ``window_layout``
    and ``slots_layout`` (a test checks they agree)."""
    a = cfg.array
    width = DType.parse(cfg.numerics.dtype).bytes * 8
    index = max([1] + [p.index_bits for p in a.patterns])
    return a.act_window * width, a.macs_per_pe * (width + index)


def dma_runs(ins: Load | Store, cfg: AcceleratorConfig) -> tuple[int, int]:
    """``word_slots``: (runs, bytes per run) of a LOAD or STORE (module docstring)."""
    a = cfg.array
    R, C = a.rows, a.cols
    if isinstance(ins, Store):
        return ceil_div(ins.rows, R), ceil_div(ins.cols, C) * R * C * 4
    act, wgt = _word_bits(cfg)
    if ins.buffer is Buffer.ACT:
        kc = gemm_chunks(ins.cols, a.macs_per_pe, a.act_window, ins.nm)
        return ins.rows, ceil_div(kc, R) * R * word_slot_bytes(act, cfg)
    kc = gemm_chunks(ins.rows, a.macs_per_pe, a.act_window, ins.nm)
    return ceil_div(ins.cols, C), kc * C * word_slot_bytes(wgt, cfg)


def dma_bytes(ins: Load | Store, cfg: AcceleratorConfig) -> int:
    """Bytes a LOAD or STORE occupies the DRAM channels with (``dram.dma``): ``packed``
    its ``bytes``; ``word_slots`` its runs' whole bursts."""
    if cfg.dram.dma == "packed":
        return ins.bytes
    runs, per = dma_runs(ins, cfg)
    burst = cfg.dram.burst_bytes
    return runs * ceil_div(per, burst) * burst


def dma_tail_cycles(ins: Load | Store, cfg: AcceleratorConfig) -> int:
    """Cycles between a transfer's last data beat and the end of its last burst on the
    channel (``word_slots`` on one channel: its last run's last burst is short by this
    many beats; 0 otherwise)."""
    d = cfg.dram
    if d.dma == "packed" or d.channels != 1:
        return 0
    _, per = dma_runs(ins, cfg)
    return (ceil_div(per, d.burst_bytes) * d.burst_bytes - per) // d.bytes_per_cycle
