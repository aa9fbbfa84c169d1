"""The SORE's own memory port under ``dram.dma = word_slots``: what the accelerator top's
SORE stream (``rtl/sore_stream.py``) reads and writes, and its cycle law.

With ``word_slots`` the tensors live in DRAM in the engine's word layouts (``rtl/top.py``,
``docs/rtl.md``), so the SORE reads the dense working copy ``src`` (the weights as the
FF GEMM's ``[in, out]`` WGT view, dense: a slot word of P values per K chunk of P, a
column tile of C columns every ``stride`` bytes) and writes the compressed view ``dst``
in the WGT layout a LOAD of that pattern reads (a slot word of P (value, index) slots
per chunk of ``g M`` K elements, ``g`` = :meth:`~nmsat.types.NM.groups_per_chunk`).

**Chunk-rows.** The unit works on one *chunk-row* at a time: the C columns of one column
tile of the view and one chunk of it, ``C g`` groups, which give the C slot words of one
run of ``dst``. The FF view (``[in, out]``, groups along ``in``) reads ``g M / P`` dense
chunks of the tile's C columns, one run; the BP view (``[out, in]``, groups along
``out``) reads, from each of the ``g M / C`` column tiles of ``src`` its out-range spans,
the dense chunks that hold the view's C in-columns (``max(1, C / P)`` chunks; with C < P
one chunk, of which C values are used), one run per tile. Chunk-rows go column tile
outer, chunk inner; the view's last column tile and last chunk are padded (the host
writes zeros there; they are processed as the rest, so the lanes spend
``ceil(C g / lanes) M`` cycles on every chunk-row).

**The pipeline** is :mod:`.unit_stream`'s with chunk-rows as its items: their read runs
while fewer than :func:`slots` are in flight, ``ceil(C g / lanes) M`` lane beats each,
``sore.pipeline_latency``, one write run each; the SORE completes with the last write's
B response.
"""

from __future__ import annotations

from dataclasses import dataclass

from nmsat.arith import ceil_div
from nmsat.config import AcceleratorConfig

from .isa import Sore, SoreView
from .machine import _word_bits, word_slot_bytes
from .unit_stream import accepts, stream_law

__all__ = ["SoreStream", "check_sore_stream", "has_stream", "slots", "sore_stream",
           "stream_cycles"]


def _wgt_slot_bytes(cfg: AcceleratorConfig) -> int:
    """Bytes of one WGT slot word in DRAM (``machine.word_slot_bytes`` of a slot vector)."""
    return word_slot_bytes(_word_bits(cfg)[1], cfg)


def check_sore_stream(cfg: AcceleratorConfig) -> None:
    """Raise ``ValueError`` naming the field unless the top's SORE stream can run this
    config's patterns: a pattern's chunk (``g M`` K elements) at least C columns wide (a
    BP chunk-row then reads whole column tiles of ``src``)."""
    a = cfg.array
    for nm in a.patterns:
        gm = nm.k_per_chunk(a.macs_per_pe, a.act_window)
        if gm < a.cols:
            raise ValueError(f"array.cols = {a.cols} is wider than a {nm} chunk ({gm} K "
                             f"elements with array.macs_per_pe = {a.macs_per_pe} and "
                             f"array.act_window = {a.act_window}): the top's SORE stream "
                             f"reads whole column tiles per chunk-row")


def has_stream(cfg: AcceleratorConfig) -> bool:
    """Whether the top of ``cfg`` has the SORE stream (:func:`check_sore_stream`)."""
    return accepts(check_sore_stream, cfg)


def slots(cfg: AcceleratorConfig) -> int:
    """Chunk-rows the SORE stream holds between their first read and their write's last B
    response (input and output slots): enough that reads one DRAM latency ahead keep the
    lanes busy (``ceil((dram.latency_cycles + the longest chunk-row read in beats) / the
    shortest chunk-row's lane cycles) + 2``, one for the chunk-row in the lanes and one
    for the one being written), at most 16. Decided."""
    a, d = cfg.array, cfg.dram
    ws = _wgt_slot_bytes(cfg)
    longest, shortest = 1, None
    for nm in a.patterns:
        g = nm.groups_per_chunk(a.macs_per_pe, a.act_window)
        gm = g * nm.m
        read = max(gm // a.macs_per_pe, 1) * a.cols * ws  # FF; BP reads the same or less
        longest = max(longest, ceil_div(read, d.bytes_per_cycle))
        lanes = ceil_div(a.cols * g, cfg.sore.lanes) * nm.m
        shortest = lanes if shortest is None else min(shortest, lanes)
    return min(16, ceil_div(d.latency_cycles + longest, shortest or 1) + 2)


@dataclass(frozen=True)
class SoreStream:
    """The chunk-rows of one SORE instruction on the top (module docstring)."""

    view: SoreView
    n: int
    m: int
    g: int  # groups per chunk
    cols: int  # C
    lanes_p: int  # P
    ws: int  # slot word bytes
    nt: int  # column tiles of the view
    kcr: int  # chunk-rows (chunks) per column tile
    blocks: int  # lane blocks per chunk-row

    @property
    def gm(self) -> int:
        return self.g * self.m

    @property
    def chunk_rows(self) -> int:
        return self.nt * self.kcr

    @property
    def lane_cycles(self) -> int:
        """Lane beats of one chunk-row."""
        return self.blocks * self.m

    def reads(self, u: int, c: int, src_stride: int) -> list[tuple[int, int]]:
        """Read runs (byte offset in ``src``, bytes) of chunk-row (column tile u, chunk c)."""
        C, P, ws = self.cols, self.lanes_p, self.ws
        if self.view is SoreView.FF:
            return [(u * src_stride + c * (self.gm // P) * C * ws, (self.gm // P) * C * ws)]
        e = max(1, C // P)
        return [(t * src_stride + ((u * C) // P) * C * ws, e * C * ws)
                for t in range(c * self.gm // C, (c + 1) * self.gm // C)]

    def write(self, u: int, c: int, dst_stride: int) -> tuple[int, int]:
        """The write run (byte offset in ``dst``, bytes) of chunk-row (u, c)."""
        return u * dst_stride + c * self.cols * self.ws, self.cols * self.ws


def sore_stream(ins: Sore, src_rows: int, src_cols: int, cfg: AcceleratorConfig) -> SoreStream:
    """The chunk-rows of ``ins`` on a ``src`` of ``[src_rows, src_cols]`` = ``[in, out]``."""
    a = cfg.array
    nm = ins.nm
    g = nm.groups_per_chunk(a.macs_per_pe, a.act_window)
    if g < 1:
        raise ValueError(f"SORE pattern {nm} does not fit the PE (array.macs_per_pe = "
                         f"{a.macs_per_pe}, array.act_window = {a.act_window})")
    k, n = (src_rows, src_cols) if ins.view is SoreView.FF else (src_cols, src_rows)
    return SoreStream(ins.view, nm.n, nm.m, g, a.cols, a.macs_per_pe, _wgt_slot_bytes(cfg),
                      ceil_div(n, a.cols), ceil_div(k, g * nm.m),
                      ceil_div(a.cols * g, cfg.sore.lanes))


def stream_cycles(ins: Sore, src_rows: int, src_cols: int, cfg: AcceleratorConfig) -> int:
    """Cycles from the cycle the top's SORE stream takes ``ins`` to the cycle it completes
    (the last write burst's B response): the module docstring's pipeline
    (:func:`~nmsat.dataflow.unit_stream.stream_law`)."""
    s = sore_stream(ins, src_rows, src_cols, cfg)
    return stream_law(s.chunk_rows, [nb for _, nb in s.reads(0, 0, 0)], [s.cols * s.ws],
                      s.lane_cycles, cfg.sore.pipeline_latency, slots(cfg), cfg)
