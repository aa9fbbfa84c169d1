"""The weight update's own memory port under ``dram.dma = word_slots``: what the
accelerator top's weight-update stream (``rtl/wu_stream.py``) reads and writes, and its
cycles (:func:`~nmsat.dataflow.unit_stream.stream_law`).

With ``word_slots`` the layer's gradient ``dW`` (``[out, in]`` fp32) is in DRAM as the WG
GEMM's STORE left it: R x C blocks of 32-bit words by row, block (rb, t) at ``rb stride +
t R C 4``. The fp32 master weights and the velocity are laid out the same way (same
stride), and the working copy in the dense WGT view of ``[in, out]`` that the SORE and a
dense GEMM read (a slot word of P values per chunk of P inputs, column tile u holding
outputs ``u C ..``, every ``wstride`` bytes).

**Super-blocks.** The unit works on one *super-block* at a time: the R outputs of one
row block of ``dW`` and ``Lq = max(C, P)`` inputs (``Lq / C`` consecutive blocks), whose
working copy is ``Lq / P`` chunks of column tile ``rb`` (R = C: the top's engine is
square), one run of ``(Lq / P) C`` slot words. It reads three runs (gradient, master,
velocity: ``R Lq 4`` bytes each), the lanes take ``ceil(R Lq / lanes)`` beats of
``weight_update.lanes`` weights in the gradient's order, and it writes three runs
(master, velocity, working copy). Super-blocks go row block outer; the last row block and
the last super-block of a row are padded (the host writes zeros there, whose update is
zero).
"""

from __future__ import annotations

from dataclasses import dataclass

from nmsat.arith import ceil_div
from nmsat.config import AcceleratorConfig

from .isa import WeightUpdate
from .machine import _word_bits, word_slot_bytes
from .unit_stream import accepts, stream_law

__all__ = ["WuStream", "check_wu_stream", "has_stream", "slots", "stream_cycles", "wu_stream"]


def check_wu_stream(cfg: AcceleratorConfig) -> None:
    """Raise ``ValueError`` naming the field unless the top's weight-update stream can run
    on this config: a square array (a row block of the gradient is a column tile of the
    working copy) and an fp16 working copy (the engine's ``f32_to_f16``)."""
    a = cfg.array
    if a.rows != a.cols:
        raise ValueError(f"array.rows = {a.rows} and array.cols = {a.cols}: the top's "
                         f"weight-update stream needs a square array (a row block of the "
                         f"gradient is a column tile of the working copy)")
    if cfg.numerics.dtype != "fp16":
        raise ValueError(f"numerics.dtype = {cfg.numerics.dtype}: the weight-update "
                         f"engine writes an fp16 working copy")


def has_stream(cfg: AcceleratorConfig) -> bool:
    """Whether the top of ``cfg`` streams the weight update (:func:`check_wu_stream`)."""
    return accepts(check_wu_stream, cfg)


@dataclass(frozen=True)
class WuStream:
    """The super-blocks of one WEIGHT_UPDATE on the top (module docstring)."""

    rows: int  # R = C
    lanes_p: int  # P
    lq: int  # inputs per super-block
    ws: int  # slot word bytes
    nrb: int  # row blocks (outputs / R)
    ns: int  # super-blocks per row block
    beats: int  # lane beats per super-block

    @property
    def items(self) -> int:
        return self.nrb * self.ns

    @property
    def state_bytes(self) -> int:
        """Bytes of one super-block's gradient, master or velocity run."""
        return self.rows * self.lq * 4

    @property
    def copy_bytes(self) -> int:
        """Bytes of one super-block's working-copy run."""
        return self.lq // self.lanes_p * self.rows * self.ws

    @property
    def blocks(self) -> int:
        """Gradient blocks (R x C) per super-block."""
        return self.lq // self.rows


def wu_stream(ins: WeightUpdate, w_rows: int, w_cols: int,
              cfg: AcceleratorConfig) -> WuStream:
    """The super-blocks of ``ins`` on a working copy of ``[w_rows, w_cols]`` = ``[in, out]``."""
    a = cfg.array
    lq = max(a.cols, a.macs_per_pe)
    return WuStream(a.rows, a.macs_per_pe, lq, word_slot_bytes(_word_bits(cfg)[1], cfg),
                    ceil_div(w_cols, a.rows), ceil_div(w_rows, lq),
                    ceil_div(a.rows * lq, cfg.weight_update.lanes))


def slots(cfg: AcceleratorConfig) -> int:
    """Super-blocks the stream holds between their first read and their writes' last B
    response: enough that the reads of later super-blocks keep the channel busy through
    a write's response (``ceil((dram.latency_cycles + t) / t) + 1``, t = a super-block's
    channel cycles or lane beats, whichever is longer), at most 8. Decided: the update is
    memory-bound where a weight moves 22 bytes (``small``: 24 channel cycles against 4
    lane beats per super-block, 3 slots)."""
    a, d = cfg.array, cfg.dram
    lq = max(a.cols, a.macs_per_pe)
    state = ceil_div(a.rows * lq * 4, d.burst_bytes) * d.burst_bytes // d.bytes_per_cycle
    copy = ceil_div(lq // a.macs_per_pe * a.rows * word_slot_bytes(_word_bits(cfg)[1], cfg),
                    d.burst_bytes) * d.burst_bytes // d.bytes_per_cycle
    t = max(5 * state + copy, ceil_div(a.rows * lq, cfg.weight_update.lanes))
    return min(8, ceil_div(d.latency_cycles + t, t) + 1)


def stream_cycles(ins: WeightUpdate, w_rows: int, w_cols: int, cfg: AcceleratorConfig) -> int:
    """Cycles from the cycle the top's weight-update stream takes ``ins`` to the cycle it
    completes (the last write burst's B response)."""
    s = wu_stream(ins, w_rows, w_cols, cfg)
    return stream_law(s.items, [s.state_bytes] * 3,
                      [s.state_bytes, s.state_bytes, s.copy_bytes], s.beats,
                      max(1, cfg.weight_update.pipeline_latency), slots(cfg), cfg)
