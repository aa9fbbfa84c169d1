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

**The pipeline** (the RTL's registers, ``docs/rtl.md``): the command is taken in cycle 0
and its geometry latched; from cycle 1 the read runs of each chunk-row are offered to a
burst reader (:class:`~nmsat.rtl.axi.BurstReader`: a run taken as the last burst of the
one before issues, its bursts' ARs one a cycle from the next cycle, at most
``outstanding`` bursts in flight) while fewer than :func:`slots` chunk-rows are between
their first read and the lanes' last beat; the lanes take a chunk-row from the cycle after
its last data beat, one beat a cycle, ``ceil(C g / lanes) M`` beats, once the lanes are
free and the chunk-row ``slots`` before it has been acknowledged by DRAM (its output
slot free); a lane block's result leaves ``sore.pipeline_latency`` cycles after its last
beat; a chunk-row's write run is offered from the cycle after its last result to a burst
writer (:class:`~nmsat.rtl.axi.BurstWriter`, AWs as the reader's ARs). Every burst is a
transfer of the unit's own DRAM channel (a fresh :func:`~nmsat.dataflow.memory.
memory_model`: the unit's port is not arbitrated against the DMA's, as the system model
has never arbitrated the SORE's streams, ``docs/simulator.md``), in handshake order (an
AR before an AW of the same cycle): a read burst's beats from its span's start, a write
burst's B response at its span's start plus its beats. The SORE completes in the cycle
of the last write burst's B response.
"""

from __future__ import annotations

from dataclasses import dataclass

from nmsat.arith import ceil_div
from nmsat.config import AcceleratorConfig

from .isa import Sore, SoreView
from .machine import _word_bits, outstanding_reads, word_slot_bytes
from .memory import memory_model

__all__ = ["SoreStream", "check_sore_stream", "slots", "sore_stream", "stream_cycles"]


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


def _bursts(nbytes: int, burst: int, data_bytes: int) -> list[int]:
    """Beats of each burst of a run of ``nbytes`` that starts on a burst or inside one with
    the run inside it (the chunk-row runs are powers of two on their own multiples)."""
    full, rest = divmod(nbytes, burst)
    return [burst // data_bytes] * full + ([rest // data_bytes] if rest else [])


def stream_cycles(ins: Sore, src_rows: int, src_cols: int, cfg: AcceleratorConfig) -> int:
    """Cycles from the cycle the top's SORE stream takes ``ins`` to the cycle it completes
    (the last write burst's B response): the module docstring's pipeline, its AR and AW
    handshakes served on the unit's channel in cycle order (an AR first in a tie)."""
    s = sore_stream(ins, src_rows, src_cols, cfg)
    return _Law(s, cfg, slots(cfg), outstanding_reads(cfg)).run()


class _Law:
    """The event law of :func:`stream_cycles`. A handshake's cycle is known once what it
    waits for is known; the earliest known one is served next (one that waits for an
    unknown quantity waits, through it, for a handshake of an earlier cycle)."""

    def __init__(self, s: SoreStream, cfg: AcceleratorConfig, nslots: int, limit: int):
        d = cfg.dram
        self.s, self.S, self.o, self.lat = s, nslots, limit, cfg.sore.pipeline_latency
        self.db = d.bytes_per_cycle
        self.mem = memory_model(cfg)
        rd = [_bursts(nb, d.burst_bytes, d.bytes_per_cycle) for _, nb in s.reads(0, 0, 0)]
        # read bursts of one chunk-row: (first of its run, beats)
        self.rb = [(i == 0, b) for run in rd for i, b in enumerate(run)]
        self.wb = _bursts(s.cols * s.ws, d.burst_bytes, d.bytes_per_cycle)
        R = s.chunk_rows
        self.last_beat: list[int | None] = [None] * R
        self.b_last: list[int | None] = [None] * R
        self.data_end: list[int | None] = [None] * R
        self.ar: list[int] = []  # AR cycle of each read burst served
        self.rlast: list[int] = []  # its last data beat
        self.run_taken = -(1 << 40)  # cycle the reader took the last run
        self.w_taken = -(1 << 40)
        self.aw: list[int] = []  # AW cycle of each write burst served
        self._taken = self._wtaken = 0  # the run taken with the handshake just computed

    def _ar_cycle(self) -> int | None:
        k, per = len(self.ar), len(self.rb)
        if k == self.s.chunk_rows * per:
            return None
        r, (first, _) = k // per, self.rb[k % per]
        t = self.ar[-1] + 1 if self.ar else 1
        if first:  # the run: offered once its chunk-row's slot is free, in order
            lb = self.last_beat[r - self.S] if r >= self.S else 0
            if lb is None:
                return None
            free = 1 if r < self.S else lb + 1
            self._taken = max(free, self.run_taken + 1, self.ar[-1] if self.ar else 0)
            t = max(t, self._taken + 1)
        if k >= self.o:  # at most o bursts in flight
            t = max(t, self.rlast[k - self.o] + 1)
        return t

    def _aw_cycle(self) -> int | None:
        k, per = len(self.aw), len(self.wb)
        if k == self.s.chunk_rows * per:
            return None
        r = k // per
        if k % per:
            return self.aw[-1] + 1
        lb = self._lanes(r)
        if lb is None:
            return None
        self._wtaken = max(lb + self.lat + 1, self.w_taken + 1, self.aw[-1] if self.aw else 0)
        return self._wtaken + 1

    def _lanes(self, r: int) -> int | None:
        """The last lane beat of chunk-row r, once its data, the lanes and its output slot
        are known."""
        if self.last_beat[r] is not None:
            return self.last_beat[r]
        prev = self.last_beat[r - 1] if r else 0
        credit = 0 if r < self.S else self.b_last[r - self.S]
        data = self.data_end[r]
        if data is None or prev is None or credit is None:
            return None
        last = max(data + 1, prev + 1, credit + 1) + self.s.lane_cycles - 1
        self.last_beat[r] = last
        return last

    def run(self) -> int:
        per_r, per_w = len(self.rb), len(self.wb)
        while True:
            ta, tw = self._ar_cycle(), self._aw_cycle()
            if ta is None and tw is None:
                break
            if ta is not None and (tw is None or ta <= tw):
                k = len(self.ar)
                if self.rb[k % per_r][0]:
                    self.run_taken = self._taken
                beats = self.rb[k % per_r][1]
                start = self.mem.transfer(ta, beats * self.db)[0].start
                self.ar.append(ta)
                self.rlast.append(start + beats - 1)
                if (k + 1) % per_r == 0:
                    self.data_end[k // per_r] = self.rlast[-1]
            else:
                assert tw is not None
                k = len(self.aw)
                if k % per_w == 0:
                    self.w_taken = self._wtaken
                beats = self.wb[k % per_w]
                start = self.mem.transfer(tw, beats * self.db)[0].start
                self.aw.append(tw)
                if (k + 1) % per_w == 0:
                    self.b_last[k // per_w] = start + beats
        done = self.b_last[-1]
        if done is None:  # pragma: no cover - a dependency cycle in the law
            raise AssertionError("SORE stream law: a chunk-row was never written")
        return done
