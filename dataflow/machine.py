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
"""

from __future__ import annotations

from nmsat.arith import ceil_div
from nmsat.config import AcceleratorConfig
from nmsat.reference import gemm_chunks

from .isa import Buffer, Load, Loop, Program, Store

__all__ = ["DMA_ISSUE_INTERVAL", "ENGINE_ISSUE_CYCLES", "QUEUE_LATENCY", "dispatch_floors",
           "port_beats", "port_cycles"]

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
