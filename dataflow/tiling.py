"""Compiler stages 2 and 3: block sizes, loop order and dataflow of every GEMM task.

:class:`TaskCtx` holds what a tiling decision needs about one task (operand bytes per
block, the buffer limits); :func:`offline_schedule` searches dataflow x loop order x
block sizes for the least :func:`estimate_cost` (or, without offline scheduling, takes
:func:`default_tiling`); :func:`interleave_mapping` sets every block's interleave flag.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

from nmsat.arith import ceil_div
from nmsat.config import AcceleratorConfig, ConfigError
from nmsat.dataflow.timing import Geometry, block_cycles
from nmsat.errors import NmsatError
from nmsat.types import NM, Dataflow

from . import isa
from .isa import ElemType, Tensor, Transform
from .tasks import CompileOptions, GemmTask, LoopOrder, Lowered, Tiling, View

__all__ = ["TaskCtx", "default_tiling", "estimate_cost", "estimate_cycles", "interleave_mapping",
           "offline_schedule", "tiling_key"]

# --------------------------------------------------------------------------- sizes


def _out_bytes(t: Tensor, v: View, mb: int, nb: int, acc_bytes: int) -> int:
    """OUT-half bytes of an mb x nb result block: fp32/int32 partial sums; a COL2IM block
    accumulates its input-region footprint."""
    if v.transform is Transform.COL2IM:
        cv = t.conv
        assert cv is not None, f"{t.name} is read through COL2IM but has no conv view"
        spanned = min(ceil_div(mb, cv.out_w) + 1, cv.batch * cv.out_h)
        in_rows = min((spanned - 1) * cv.stride + cv.kh, cv.batch * cv.h)
        return min(mb * nb, in_rows * cv.w * cv.c) * acc_bytes
    return mb * nb * acc_bytes


class TaskCtx:
    """Everything tiling decisions need about one GEMM task."""

    def __init__(self, task: GemmTask, low: Lowered, cfg: AcceleratorConfig,
                 engine_words: bool = False):
        self.task, self.cfg = task, cfg
        self.words = cfg.bank_words() if engine_words else None
        self.ta = low.tensors[task.a.tensor]
        self.tb = low.tensors[task.b.tensor]
        self.tc = low.tensors[task.c.tensor]
        d = task.dims
        self.m, self.n, self.k, self.count = d.m, d.n, d.k, d.count
        self.ku = cfg.array.k_per_cycle(task.nm)  # K per chunk: K-block granularity
        self.acc_bytes = ElemType.of(cfg.numerics.operand.accumulator).bytes  # fp32 / int32
        self.geom = Geometry.of(cfg)
        self._memo: dict[tuple, Any] = {}
        self.dram_bw = cfg.dram.total_bytes_per_cycle
        self._cycles: dict[tuple, int] = {}
        bufs = cfg.buffers  # one half of each buffer: what a block may occupy
        self._limits = (bufs.activation.usable_bytes, bufs.weight.usable_bytes,
                        bufs.output.usable_bytes)

    def block_cycles(self, df: Dataflow, m: int, n: int, k: int, inter: bool) -> int:
        """:func:`~nmsat.dataflow.timing.block_cycles` of an m x n x k block of this task
        (its pattern, this config's geometry), memoised per task as well as globally."""
        key = (df, m, n, k, inter)
        got = self._cycles.get(key)
        if got is None:
            got = self._cycles[key] = _block_cycles(df, m, n, k, self.task.nm, inter,
                                                    self.geom)
        return got

    def a_bytes(self, mb: int, kb: int) -> int:
        key = ("a", mb, kb)
        got = self._memo.get(key)
        if got is None:
            got = self._memo[key] = self._a_bytes(mb, kb)
        return got

    def b_bytes(self, kb: int, nb: int) -> int:
        key = ("b", kb, nb)
        got = self._memo.get(key)
        if got is None:
            got = self._memo[key] = self._b_bytes(kb, nb)
        return got

    def _a_bytes(self, mb: int, kb: int) -> int:
        v, t = self.task.a, self.ta
        if v.transform is Transform.IM2COL:
            return _im2col_bytes(t, mb, kb, kb == self.k)
        return isa.region_bytes(mb, kb, t.elem)

    def _b_bytes(self, kb: int, nb: int) -> int:
        v, t = self.task.b, self.tb
        if v.transform is Transform.IM2COL:  # WG of a conv: rows = pixels (K), cols = kk
            return _im2col_bytes(t, kb, nb, nb == self.n)
        return isa.region_bytes(kb, nb, t.elem, self.task.nm)

    def out_bytes(self, mb: int, nb: int) -> int:
        return _out_bytes(self.tc, self.task.c, mb, nb, self.acc_bytes)

    def store_bytes(self, mb: int, nb: int) -> int:
        v, t = self.task.c, self.tc
        if v.transform is Transform.COL2IM:
            return _im2col_bytes(t, mb, nb, nb == self.n)
        return isa.region_bytes(mb, nb, t.elem)

    def fits(self, mb: int, nb: int, kb: int) -> str | None:
        """None if the block fits, else the name of the first buffer it overflows."""
        act, wgt, out = self._limits
        if self.a_bytes(mb, kb) > act:
            return "buffers.activation"
        if self.b_bytes(kb, nb) > wgt:
            return "buffers.weight"
        if self.out_bytes(mb, nb) > out:
            return "buffers.output"
        if self.words is not None:
            a = self.cfg.array
            kc, nt = ceil_div(kb, self.ku), ceil_div(nb, a.cols)
            # with shadow weights a WGT word holds one chunk of a PE row's K-tile slice
            # (rtl/layouts.wgt_shadow_location): a block takes whole K-tiles of R chunks
            kw = ceil_div(kc, a.rows) * a.rows if a.shadow_weights else kc
            need = {"buffers.weight": nt * kw, "buffers.output": ceil_div(mb, a.rows) * nt}
            if self.cfg.buffers.act_layout == "windows":
                # one A-element window per (im2col row, chunk), R diagonal banks
                # (rtl/layouts.act_location); with "fmap" ACT is limited by bytes only
                need["buffers.activation"] = mb * ceil_div(kc, a.rows)
            for name, words in need.items():
                if words > self.words[name]:
                    return name
        return None


def _im2col_bytes(t: Tensor, pixels: int, kcols: int, full_k: bool) -> int:
    """DRAM bytes of ``pixels`` consecutive im2col rows x ``kcols`` columns.

    With the whole K range the feeder builds im2col on chip from the input rows the pixels
    cover (``ceil(pixels / Wo) + 1`` output rows for any alignment, ``(rows - 1) * stride
    + kh`` input rows), capped by the im2col size; a partial K range is read as im2col."""
    cv = t.conv
    assert cv is not None
    flat = pixels * kcols * t.elem.bytes
    if not full_k:
        return flat
    spanned = min(ceil_div(pixels, cv.out_w) + 1, cv.batch * cv.out_h)
    in_rows = min((spanned - 1) * cv.stride + cv.kh, cv.batch * cv.h)
    return min(flat, in_rows * cv.w * cv.c * t.elem.bytes)


# --------------------------------------------------------------------------- pass: schedule


def _splits(total: int, b: int) -> list[tuple[int, int]]:
    """(count, size) classes of splitting ``total`` into blocks of ``b``."""
    out = []
    if total // b:
        out.append((total // b, b))
    if total % b:
        out.append((1, total % b))
    return out


def estimate_cost(ctx: TaskCtx, t: Tiling) -> tuple[int, int]:
    """(estimated cycles, DRAM bytes) of a task under a tiling. Cycles: max(engine cycles
    from the tile model, DRAM bytes / total DRAM bandwidth), as the double-buffered
    pipeline hides the shorter of the two; bytes break ties (energy, contention). With
    shadow weights (``array.shadow_weights``) the pipeline's fill and its DRAM latency
    per pair of blocks are priced too (below)."""
    m, n, k = ctx.m, ctx.n, ctx.k
    ms, ns, ks = _splits(m, t.mb), _splits(n, t.nb), _splits(k, t.kb)
    ekey = ("engine", t.dataflow, t.mb, t.nb, t.kb, t.interleave)
    engine = ctx._memo.get(ekey)
    if engine is None:
        engine = sum(cm * cn * ck * ctx.block_cycles(t.dataflow, sm, sn, sk, t.interleave)
                     for cm, sm in ms for cn, sn in ns for ck, sk in ks)
        ctx._memo[ekey] = engine
    bkey = ("bytes", t.mb, t.nb, t.kb)
    sums = ctx._memo.get(bkey)
    if sums is None:
        sums = (sum(cm * ck * ctx.a_bytes(sm, sk) for cm, sm in ms for ck, sk in ks),
                sum(cn * ck * ctx.b_bytes(sk, sn) for cn, sn in ns for ck, sk in ks),
                sum(cm * cn * ctx.store_bytes(sm, sn) for cm, sm in ms for cn, sn in ns),
                sum(c for c, _ in ms), sum(c for c, _ in ns))
        ctx._memo[bkey] = sums
    a_all, b_all, c_all, nmb, nnb = sums
    resident = t.kb == k
    if t.order is LoopOrder.NM:  # A reloaded per column block; B once if resident
        dram = a_all * nnb + b_all * (1 if resident else nmb)
    else:
        dram = b_all * nmb + a_all * (1 if resident else nnb)
    dram += c_all
    mem = ceil_div(dram, ctx.dram_bw)
    if not ctx.geom.shadow:
        return ctx.count * max(engine, mem), ctx.count * dram
    # With shadow weights a small-m block streams weights about as fast as DRAM delivers
    # them, so the double-buffered pipeline's shape matters (docs/architecture.md 4.2):
    # a block's load can only be issued when the compute two blocks back has freed its
    # buffer half, so two blocks take at least latency + one load + one compute; and the
    # first block's load and the last block's compute overlap nothing (once for the task's
    # ``count`` repetitions, which follow each other back to back).
    blocks = nmb * nnb * sum(c for c, _ in ks)
    lat = ctx.cfg.dram.latency_cycles
    steady = max(engine, mem, _pair_bound(ctx, t, ms, ns, ks, dram, lat))
    fill = ceil_div(min(engine, mem), blocks) + lat
    return ctx.count * steady + fill, ctx.count * dram


def _pair_bound(ctx: TaskCtx, t: Tiling, ms, ns, ks, dram: int, lat: int) -> int:
    """The double-buffer bound summed block by block: a block's load is issued only when
    the compute two blocks back has freed its buffer half, so each block costs at least
    ``(its compute + its load + the DRAM latency) / 2``, and at least either alone. Summing
    per block class, not over the totals, sees an uneven split: 512 + 256 columns of a
    768-wide 2:4 projection (kb 128 on vcu1525) compute 208 / 144 cycles against 288 / 144
    of DRAM, so the 256-wide blocks have no slack for the latency, where two 384-wide
    blocks (176 against 216) hide it. A block's DRAM cycles are its operand bytes' share
    of the task's ``dram`` (which counts the loop order's reuse)."""
    key = ("pairs", t.dataflow, t.mb, t.nb, t.kb, t.interleave, dram)
    got = ctx._memo.get(key)
    if got is not None:
        return got
    bw = ctx.dram_bw
    cls = [(cm * cn * ck, ctx.block_cycles(t.dataflow, sm, sn, sk, t.interleave),
            ctx.a_bytes(sm, sk) + ctx.b_bytes(sk, sn))
           for cm, sm in ms for cn, sn in ns for ck, sk in ks]
    own = sum(c * b for c, _, b in cls)
    total = 0
    for c, eng, byt in cls:
        mem = dram * byt / (own * bw)
        total += c * max(eng, mem, (eng + mem + lat) / 2)
    got = ceil_div(int(total * 2 + 1), 2)
    ctx._memo[key] = got
    return got


def estimate_cycles(ctx: TaskCtx, t: Tiling) -> int:
    """Estimated cycles of a task under a tiling (see :func:`estimate_cost`)."""
    return estimate_cost(ctx, t)[0]


@functools.lru_cache(maxsize=1 << 16)
def _block_cycles(df: Dataflow, m: int, n: int, k: int, nm: NM, inter: bool,
                  g: Geometry) -> int:
    return block_cycles(df, m, n, k, nm, inter, g)


def _min_block(ctx: TaskCtx) -> tuple[int, int, int]:
    """The smallest block the engine runs: one array tile (R rows x C columns, one chunk
    of K), or the whole dimension when smaller."""
    a = ctx.cfg.array
    return min(ctx.m, a.rows), min(ctx.n, a.cols), min(ctx.k, ctx.ku)


def _check_min(ctx: TaskCtx, layer: str) -> None:
    mb, nb, kb = _min_block(ctx)
    bad = ctx.fits(mb, nb, kb)
    if bad:
        need = {"buffers.activation": ctx.a_bytes(mb, kb), "buffers.weight":
                ctx.b_bytes(kb, nb), "buffers.output": ctx.out_bytes(mb, nb)}[bad]
        half = {"buffers.activation": ctx.cfg.buffers.activation,
                "buffers.weight": ctx.cfg.buffers.weight,
                "buffers.output": ctx.cfg.buffers.output}[bad].usable_bytes
        raise NmsatError(f"{bad} is too small for layer {layer!r} ({ctx.task.phase}): one "
                         f"minimum tile {mb}x{nb}x{kb} needs {need} bytes, a buffer half "
                         f"holds {half}")


def _largest(lo: int, hi: int, unit: int, ok) -> int | None:
    """Largest multiple of ``unit`` in [lo, hi] (or ``hi`` itself) with ok(x); binary
    search (``ok`` is monotone: smaller blocks need fewer bytes)."""
    if ok(hi):
        return hi
    cands_hi = hi // unit
    lo_u = ceil_div(lo, unit)
    if cands_hi < lo_u or not ok(lo_u * unit):
        return lo if ok(lo) and lo <= hi else None
    a, b = lo_u, cands_hi
    while a < b:
        mid = (a + b + 1) // 2
        if ok(mid * unit):
            a = mid
        else:
            b = mid - 1
    return a * unit


def default_tiling(ctx: TaskCtx, dataflow: Dataflow) -> Tiling:
    """The fixed tiling used without offline scheduling: greedy largest blocks, in the
    order K, N, M: the whole K when it fits (else the most chunks), then the most columns
    (multiples of C), then the most rows (multiples of R x La), B-stationary loop order."""
    a = ctx.cfg.array
    mb0, nb0, kb0 = _min_block(ctx)
    kb = _largest(kb0, ctx.k, ctx.ku, lambda x: ctx.fits(mb0, nb0, x) is None)
    assert kb is not None
    nb = _largest(nb0, ctx.n, a.cols, lambda x: ctx.fits(mb0, x, kb) is None)
    assert nb is not None
    mb = _largest(mb0, ctx.m, a.rows * a.acc_latency, lambda x: ctx.fits(x, nb, kb) is None)
    assert mb is not None
    return Tiling(dataflow, LoopOrder.NM, mb, nb, kb)


def _candidates(ctx: TaskCtx, dataflows: tuple[Dataflow, ...], interleave: bool):
    a = ctx.cfg.array
    mb0, nb0, kb0 = _min_block(ctx)
    nbs, x = {ctx.n}, nb0
    while x < ctx.n:
        nbs.add(x)
        if ctx.geom.shadow:
            # the same number of column blocks, balanced (768 = 2 x 384, not 512 + 256):
            # only the shadow-weight estimate prices a block's own pipeline (_pair_bound),
            # which tells the two apart
            nbs.add(min(ctx.n, ceil_div(ceil_div(ctx.n, ceil_div(ctx.n, x)), a.cols) * a.cols))
        x *= 2
    kbs, x = {ctx.k}, max(kb0, ctx.ku * a.rows)
    while x < ctx.k:
        kbs.add(x)
        x *= 4
    kbs.add(kb0)
    for nb in sorted(nbs):
        for kb in sorted(kbs):
            if ctx.fits(mb0, nb, kb) is not None:
                continue
            mb = _largest(mb0, ctx.m, a.rows * a.acc_latency,
                          lambda v, nb=nb, kb=kb: ctx.fits(v, nb, kb) is None)
            if mb is None:
                continue
            for df in dataflows:
                for order in LoopOrder:
                    yield Tiling(df, order, mb, nb, kb, interleave)


def tiling_key(task: GemmTask, low: Lowered, opts: CompileOptions) -> tuple:
    """Everything of a GEMM task and the compile options that its tiling depends on, for a
    fixed config: the GEMM's dimensions and group count, its pattern, its operands'
    transforms, convolution geometry and element types, and the options the search reads.
    Two tasks with equal keys get the same tiling (``tests/test_tiling_memo.py``)."""
    ta, tb, tc = (low.tensors[v.tensor] for v in (task.a, task.b, task.c))
    return (task.dims, task.nm, task.a.transform, task.b.transform, task.c.transform,
            ta.conv, tb.conv, tc.conv, ta.elem, tb.elem, tc.elem,
            opts.offline_schedule, opts.interleave, opts.engine_words, opts.fixed_dataflow,
            opts.dataflow)


def offline_schedule(low: Lowered, cfg: AcceleratorConfig, opts: CompileOptions,
                     memo: dict[tuple, Tiling] | None = None) -> None:
    """Pass: choose each GEMM task's tiling (in place). On: search dataflow x loop order x
    block sizes for the least :func:`estimate_cycles`. Off: ``opts.fixed_dataflow`` and
    :func:`default_tiling`.

    Tasks with equal :func:`tiling_key` share one search. ``memo`` carries those results
    between compilations: the caller passes one dict only to compilations whose configs
    agree in every field the compiler reads (``nmsat.simulator.run_cache.PROGRAM_FIELDS``;
    a sweep keeps one per such projection), so the same layer shape is searched once across
    the methods, patterns and dense baseline of a hardware point."""
    dataflows = tuple(Dataflow.parse(d) for d in cfg.array.dataflows)
    fixed = opts.fixed_dataflow if opts.fixed_dataflow in dataflows else dataflows[0]
    if opts.dataflow != "auto":
        forced = Dataflow.parse(opts.dataflow)
        if forced not in dataflows:
            raise ConfigError(f"--dataflow {forced}: {cfg.name} supports only "
                              f"{', '.join(str(d) for d in dataflows)} (array.dataflows)")
        dataflows, fixed = (forced,), forced
    cache: dict[tuple, Tiling] = {} if memo is None else memo
    for i, task in enumerate(low.tasks):
        if not isinstance(task, GemmTask):
            continue
        ctx = TaskCtx(task, low, cfg, opts.engine_words)
        _check_min(ctx, low.layers[task.layer])
        key = tiling_key(task, low, opts)
        if key not in cache:
            if opts.offline_schedule:
                best = None
                # The fixed default tilings are candidates too, so the search is never
                # worse than the schedule it replaces.
                cands = list(_candidates(ctx, dataflows, opts.interleave))
                cands += [dataclasses.replace(default_tiling(ctx, df), interleave=opts.interleave)
                          for df in dataflows]
                for t in cands:
                    cost = estimate_cost(ctx, t)
                    if best is None or cost < best[0]:
                        best = (cost, t)
                assert best is not None
                cache[key] = best[1]
            else:
                cache[key] = default_tiling(ctx, fixed)
        low.tilings[i] = cache[key]


# --------------------------------------------------------------------------- pass: interleave


def interleave_mapping(low: Lowered, on: bool) -> None:
    """Pass: interleave mapping on every compute block (in place)."""
    for i, t in low.tilings.items():
        low.tilings[i] = dataclasses.replace(t, interleave=on)

