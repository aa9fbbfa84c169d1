"""The host side of :class:`~nmsat.rtl.top.AcceleratorTop`: the DRAM image a host writes
before ``start`` (program lines, DMA descriptors, tensors in the engine's word layouts)
and a model of the hardware DMA's address law that checks, before any simulation, that
every LOAD of the program writes exactly the buffer words the engine expects
(:func:`nmsat.rtl.tb.controller_run.load_port_words`, from the golden executor's tiles).

Word layouts in DRAM (``docs/rtl.md``, "Top level"), per tensor view a LOAD reads (its
transform applied by the host: NONE, TRANSPOSE or IM2COL):

* ACT view ``[M, K]`` for pattern nm: row m's chunk c is the ACT window of K elements
  ``c kpc ..`` (``kpc`` = ``nm.k_per_chunk(P, A)``), in slot ``c`` of row m, each slot
  ``WS`` bytes (:func:`nmsat.rtl.top.word_slot`), a row every ``stride`` bytes (its
  ``KC`` slots, ``KC`` the chunks of the whole K, rounded up to whole DRAM bursts).
* WGT view ``[K, N]`` compressed N:M along K: column n's chunk c is its slot vector of P
  (value, index), in slot ``c C + n mod C`` of column tile ``n / C``, a column tile every
  ``stride`` bytes (``KC C`` slots rounded up to whole bursts).
* STORE tensor ``[rows, cols]``: R x C blocks of 32-bit accumulator words (the engine's
  store beat, by row), block (rb, t) at ``rb stride + t R C 4`` bytes (``stride``: the
  ``NT`` blocks of a row block rounded up to whole bursts).

Every run of the DMA (a row, column tile or row block from the tile's first chunk or
block) is cut into bursts of ``dram.burst_bytes`` from its start, wherever in a burst it
starts (:func:`nmsat.rtl.axi.burst_lengths`), as the system model's ``dram.dma =
word_slots`` charges it (:func:`nmsat.dataflow.machine.dma_runs`); the rows, column tiles
and row blocks start on bursts. Only where such a burst would cross a 4 KiB page does
AXI cut it once more, which the model does not charge: :func:`nmsat.rtl.tb.top_run.
top_host` refuses a program with such a run, naming it.

A tensor has at most two views per program, one ACT or STORE and one WGT view (a
descriptor each: a product's output gradient is both operands of its BP); another is
refused, naming it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from nmsat.arith import ceil_div
from nmsat.config import AcceleratorConfig
from nmsat.dataflow import execute as ex
from nmsat.dataflow import isa
from nmsat.types import NM

from ..axi import AxiParams
from ..layouts import EngineShape
from ..top import DESC_BYTES, LINE_BYTES, MAX_TENSORS, descriptor_line, word_slot
from .engine_model import LoadBeat, load_words
from .tiles import encode

__all__ = ["DramImage", "dma_runs_at", "dram_image", "model_load_beats", "unpack_store_region"]

ALIGN = 4096  # regions start on 4 KiB


@dataclass
class DramImage:
    """What the host writes (``segments``: (address, bytes)) and where."""

    prog_addr: int
    prog_len: int
    desc_addr: int
    desc_count: int
    segments: list[tuple[int, bytes]] = field(default_factory=list)
    # (tensor, slot) -> base, stride, kpc; slot 0: the ACT or STORE view, 1: the WGT view
    desc: dict[tuple[int, int], tuple[int, int, int]] = field(default_factory=dict)
    views: dict[tuple[int, int], tuple] = field(default_factory=dict)  # -> (kind, transform, nm)
    stores: dict[int, dict] = field(default_factory=dict)  # tensor -> region geometry
    # what a unit writes, checked after the run: name -> addr, bytes, the bytes it must
    # hold after ("expected"), the bytes of one compared word ("word")
    checks: dict[str, dict] = field(default_factory=dict)
    size: int = 0

    def read(self, addr: int, n: int) -> bytes:
        for a, b in self.segments:
            if a <= addr and addr + n <= a + len(b):
                return b[addr - a:addr - a + n]
        raise ValueError(f"no segment holds [{addr:#x}, {addr + n:#x})")


def sore_tensors(prog: isa.Program) -> tuple[dict[int, isa.Instr], dict[int, isa.Sore]]:
    """(working copy -> a SORE reading it or the WEIGHT_UPDATE writing it, output tensor
    -> the SORE writing it)."""
    srcs: dict[int, isa.Instr] = {}
    dsts: dict[int, isa.Sore] = {}
    for ins in prog.instructions:
        if isinstance(ins, isa.Sore):
            srcs.setdefault(ins.src, ins)
            if dsts.setdefault(ins.dst, ins) is not ins:
                raise ValueError(f"tensor {ins.dst} is written by two SOREs")
        elif isinstance(ins, isa.WeightUpdate):
            if isinstance(srcs.get(ins.tensor), isa.WeightUpdate):
                raise ValueError(f"tensor {ins.tensor} is updated twice")
            srcs[ins.tensor] = ins
    return srcs, dsts


def _views(prog: isa.Program) -> dict[tuple[int, int], tuple]:
    views: dict[tuple[int, int], tuple] = {}
    srcs, dsts = sore_tensors(prog)
    for t in srcs:  # the SORE reads, the update writes the dense WGT view of [in, out]
        views[t, 1] = ("wgt", isa.Transform.NONE, NM.parse("1:1"))
    for t, ins in dsts.items():  # and writes the WGT view its GEMM's LOAD reads
        views[t, 1] = ("wgt", isa.Transform.NONE, ins.nm)
    for ins in prog.instructions:
        if isinstance(ins, isa.Load):
            v = ("wgt" if ins.buffer is isa.Buffer.WGT else "act", ins.transform, ins.nm)
        elif isinstance(ins, isa.Store):
            if ins.transform is isa.Transform.COL2IM:
                raise ValueError(f"STORE to tensor {ins.tensor}: the hardware DMA has no "
                                 f"COL2IM scatter-add")
            v = ("store", ins.transform, None)
        else:
            continue
        if ins.tensor >= MAX_TENSORS:
            raise ValueError(f"tensor id {ins.tensor} is beyond the DMA's {MAX_TENSORS} "
                             f"descriptors")
        key = (ins.tensor, int(v[0] == "wgt"))
        if views.setdefault(key, v) != v:
            raise ValueError(f"tensor {ins.tensor} is used as {views[key]} and as {v}: the "
                             f"DMA holds one ACT or STORE view and one WGT view per tensor")
        other = views.get((ins.tensor, 1 - key[1]))
        if other is not None and "store" in (v[0], other[0]):
            # each view is a region of its own, written by the host before start: a LOAD
            # would not see what a STORE of the same tensor wrote
            raise ValueError(f"tensor {ins.tensor} is both stored and loaded by the "
                             f"program: the DMA reads each view from its own DRAM region")
    return views


def dram_image(prog: isa.Program, cfg: AcceleratorConfig, dram: dict, p: AxiParams,
               shape: EngineShape, lr: float = 0.01) -> DramImage:
    """The DRAM image of ``prog`` over the golden executor's tensors ``dram`` (with a
    WEIGHT_UPDATE: its gradient, master weights and velocity under their names
    ``L.dw``, ``L.w.master``, ``L.w.velocity``, ``[out, in]``, and ``lr``)."""
    R, C = shape.rows, shape.cols
    burst = p.burst_beats * p.data_bytes  # every run starts on a burst (its row's stride)
    ws = {"act": word_slot(shape.window_layout.size, p),
          "wgt": word_slot(shape.slots_layout.size, p)}
    views = _views(prog)
    srcs, dsts = sore_tensors(prog)
    exe = ex.Executor(prog, cfg, dram)
    words = [int.from_bytes(isa.encode(i), "little") for i in prog.instructions]
    img = DramImage(ALIGN, len(words), 0, max((t for t, _ in views), default=-1) + 1,
                    views=views)
    at = ALIGN + ceil_div(len(words) * LINE_BYTES, ALIGN) * ALIGN
    img.segments.append((ALIGN, b"".join(w.to_bytes(LINE_BYTES, "little") for w in words)))
    img.desc_addr = at
    at += ceil_div(img.desc_count * DESC_BYTES, ALIGN) * ALIGN or ALIGN
    P, A = shape.lanes, shape.window
    for (t, slot), (kind, tr, nm) in sorted(views.items()):
        tensor = prog.tensors[t]
        if kind == "store":
            rows, cols = (tensor.cols, tensor.rows) if tr is isa.Transform.TRANSPOSE \
                else (tensor.rows, tensor.cols)
            nt, sb = ceil_div(cols, C), R * C * 4
            stride = ceil_div(nt * sb, burst) * burst
            nbytes = ceil_div(rows, R) * stride
            img.stores[t] = {"addr": at, "stride": stride, "rows": rows, "cols": cols}
            img.desc[t, slot] = (at, stride, 1)
            img.segments.append((at, bytes(nbytes)))
        else:
            view = exe._view(tensor, tr)
            kpc = nm.k_per_chunk(P, A)
            if kind == "act":
                enc = encode(shape, view, np.zeros((view.shape[1], 1)), nm)
                slots = [[shape.pack_window(enc.act[mi, c]) for c in range(enc.chunks)]
                         for mi in range(view.shape[0])]
                kc_all, w = enc.chunks, ws["act"]
                stride = ceil_div(kc_all * w, burst) * burst  # a run's unit: a row
                blob = b"".join(b"".join(x.to_bytes(w, "little") for x in unit)
                                .ljust(stride, b"\0") for unit in slots) + bytes(R * w)
            else:
                if t in srcs:  # padded to whole chunk-rows of every pattern, both views
                    view = _sore_padded(view, shape)
                blob, stride = _wgt_blob(shape, view, nm, ws["wgt"], burst)
                if t in dsts:  # the SORE writes it: zeros before, its slot words after
                    ins = dsts[t]
                    wsrc = exe.dram[prog.tensors[ins.src].name]
                    src = np.asarray(wsrc if ins.view is isa.SoreView.FF else wsrc.T)
                    kp = ceil_div(src.shape[0], nm.k_per_chunk(P, A)) * nm.k_per_chunk(P, A)
                    padded = np.zeros((kp, ceil_div(src.shape[1], C) * C), np.float32)
                    padded[:src.shape[0], :src.shape[1]] = src
                    want, _ = _wgt_blob(shape, padded, nm, ws["wgt"], burst)
                    img.checks[f"{tensor.name} (SORE)"] = {"addr": at, "bytes": len(want),
                                                          "expected": want, "word": ws["wgt"]}
                    blob = bytes(len(blob))
            img.desc[t, slot] = (at, stride, kpc)
            img.segments.append((at, blob))
            nbytes = len(blob)
        at += ceil_div(nbytes, ALIGN) * ALIGN or ALIGN
    wu: dict[int, tuple[int, int, int, int]] = {}
    for t, ins in srcs.items():
        if isinstance(ins, isa.WeightUpdate):
            wu[t], at = _wu_regions(img, t, prog.tensors[t], dram, shape, cfg, lr, at,
                                    ws["wgt"], burst)
    table = b"".join(descriptor_line(*img.desc.get((t, 0), (0, 0, 1)),
                                     wgt=img.desc.get((t, 1), (0, 0, 1)),
                                     dims=(prog.tensors[t].rows, prog.tensors[t].cols),
                                     wu=wu.get(t, (0, 0, 0, 0)))
                     for t in range(img.desc_count))
    img.segments.append((img.desc_addr, table))
    img.size = at
    return img


def _wu_regions(img: DramImage, t: int, tensor: isa.Tensor, dram: dict, shape: EngineShape,
                cfg: AcceleratorConfig, lr: float, at: int, ws: int,
                burst: int) -> tuple[tuple[int, int, int, int], int]:
    """A WEIGHT_UPDATE of working copy ``tensor`` (``[in, out]``, its WGT view at
    ``img.desc[t, 1]``): its gradient, master weights and velocity (``[out, in]`` fp32,
    R x C blocks of the WG STORE's layout, the stride whole super-blocks and bursts,
    :mod:`nmsat.dataflow.wu_stream`) from ``at``, and what it must leave (the reference
    update of them, the working copy rounded to fp16). Returns ((gradient base, stride,
    master base, velocity base), the next free address)."""
    from nmsat import reference as ref

    R, C, P = shape.rows, shape.cols, shape.lanes
    lq = max(C, P)
    name = tensor.name
    n_in, n_out = tensor.rows, tensor.cols
    keys = (name[:-len(".w")] + ".dw", name + ".master", name + ".velocity")
    missing = [k for k in keys if k not in dram]
    if missing:
        raise ValueError(f"WEIGHT_UPDATE of {name}: the DRAM image has no {missing[0]} "
                         f"(the update's gradient, master weights and velocity)")
    g, w, v = (np.asarray(dram[k], np.float32) for k in keys)
    if not g.shape == w.shape == v.shape == (n_out, n_in):
        raise ValueError(f"WEIGHT_UPDATE of {name}: gradient {g.shape}, master {w.shape}, "
                         f"velocity {v.shape}, not [{n_out}, {n_in}]")
    stride = ceil_div(ceil_div(n_in, lq) * lq * R * 4, burst) * burst
    nrb = ceil_div(n_out, R)
    w2, v2 = ref.weight_update(w, g, v, lr, cfg.weight_update.momentum)
    out: list[int] = []
    for label, arr, after in (("gradient", g, None), ("master", w, w2), ("velocity", v, v2)):
        out.append(at)
        img.segments.append((at, _block_blob(arr, R, C, stride, nrb)))
        if after is not None:
            want = _block_blob(after, R, C, stride, nrb)
            img.checks[f"{name} {label}"] = {"addr": at, "bytes": len(want), "expected": want,
                                             "word": 4}
        at += ceil_div(nrb * stride, ALIGN) * ALIGN
    base, wstride, _ = img.desc[t, 1]
    copy = w2.astype(np.float16).astype(np.float32).T  # [in, out]
    want, _ = _wgt_blob(shape, _sore_padded(copy, shape), NM.parse("1:1"), ws, burst)
    img.checks[f"{name} working copy"] = {"addr": base, "bytes": len(want), "expected": want,
                                          "word": ws}
    return (out[0], stride, out[1], out[2]), at


def _block_blob(arr: np.ndarray, R: int, C: int, stride: int, nrb: int) -> bytes:
    """``arr`` (fp32 ``[rows, cols]``) as R x C blocks of 32-bit words by row, a row block
    every ``stride`` bytes (zeros around)."""
    rows, cols = arr.shape
    nt = stride // (R * C * 4)
    pad = np.zeros((nrb * R, nt * C), np.float32)
    pad[:rows, :cols] = arr
    blocks = pad.reshape(nrb, R, nt, C).transpose(0, 2, 1, 3)
    return blocks.astype("<f4").tobytes()


def _wgt_blob(shape: EngineShape, view: np.ndarray, nm: NM, w: int,
              burst: int) -> tuple[bytes, int]:
    """A WGT view ``[K, N]`` in the DMA's layout (column tiles of ``kc C`` slot words,
    each tile rounded up to whole bursts, C slots of padding after): (bytes, stride)."""
    C = shape.cols
    enc = encode(shape, np.zeros((1, view.shape[0])), view, nm)
    n, kc_all = enc.w_value.shape[0], enc.chunks
    nt = ceil_div(n, C)
    flat = [0] * (nt * kc_all * C)
    for ni in range(n):
        for c in range(kc_all):
            flat[((ni // C) * kc_all + c) * C + ni % C] = shape.pack_slots(
                enc.w_value[ni, c], enc.w_index[ni, c])
    stride = ceil_div(kc_all * C * w, burst) * burst
    units = [flat[u * kc_all * C:(u + 1) * kc_all * C] for u in range(nt)]
    blob = b"".join(b"".join(x.to_bytes(w, "little") for x in unit).ljust(stride, b"\0")
                    for unit in units) + bytes(C * w)
    return blob, stride


def _sore_padded(view: np.ndarray, shape: EngineShape) -> np.ndarray:
    """A SORE's source ``[in, out]`` with zero rows and columns up to what the SORE
    stream reads of it (:mod:`nmsat.dataflow.sore_stream`): ``in`` to whole chunks of
    every pattern, C columns and P values, ``out`` to whole chunks and column tiles."""
    P, A, C = shape.lanes, shape.window, shape.cols
    gm = max(nm.k_per_chunk(P, A) for nm in shape.patterns)
    k, n = view.shape
    out = np.zeros((ceil_div(k, max(gm, C, P)) * max(gm, C, P),
                    ceil_div(n, max(gm, C)) * max(gm, C)), np.float32)
    out[:k, :n] = view
    return out


def dma_runs_at(img: DramImage, shape: EngineShape, p: AxiParams, ins: isa.Load | isa.Store,
                r0: int, c0: int) -> list[tuple[int, int]]:
    """The runs (byte address, bus beats) the top's DMA issues for a LOAD or STORE at tile
    offset (r0, c0) (the address law of :mod:`nmsat.rtl.top`)."""
    R, C = shape.rows, shape.cols
    if isinstance(ins, isa.Store):
        base, stride, _ = img.desc[ins.tensor, 0]
        sb = R * C * 4
        addr = base + (r0 // R) * stride + (c0 // C) * sb
        runs, nbytes = ceil_div(ins.rows, R), ceil_div(ins.cols, C) * sb
    else:
        wgt = ins.buffer is isa.Buffer.WGT
        base, stride, kpc = img.desc[ins.tensor, int(wgt)]
        ws = word_slot((shape.slots_layout if wgt else shape.window_layout).size, p)
        kc = ceil_div(ins.rows if wgt else ins.cols, kpc)
        if wgt:
            runs, nbytes = ceil_div(ins.cols, C), kc * C * ws
            addr = base + (c0 // C) * stride + (r0 // kpc) * C * ws
        else:
            runs, nbytes = ins.rows, ceil_div(kc, R) * R * ws
            addr = base + r0 * stride + (c0 // kpc) * ws
    return [(addr + u * stride, nbytes // p.data_bytes) for u in range(runs)]


def model_load_beats(img: DramImage, shape: EngineShape, p: AxiParams, ins: isa.Load,
                     r0: int, c0: int, half: int, depth: int) -> list[LoadBeat]:
    """The load-port beats the top's DMA writes for a LOAD (the address law of
    :mod:`nmsat.rtl.top`, read from the image), disabled banks as None."""
    R, C = shape.rows, shape.cols
    wgt = ins.buffer is isa.Buffer.WGT
    kpc = img.desc[ins.tensor, int(wgt)][2]
    ws = word_slot((shape.slots_layout if wgt else shape.window_layout).size, p)
    mask = (1 << (shape.slots_layout if wgt else shape.window_layout).size) - 1
    banks = C if wgt else R
    kc = ceil_div(ins.rows if wgt else ins.cols, kpc)
    beats = kc if wgt else ceil_div(kc, R)  # port beats per run, banks x ws bytes each
    out, pa = [], half * depth
    for u, (addr, _) in enumerate(dma_runs_at(img, shape, p, ins, r0, c0)):
        for j in range(beats):
            raw = img.read(addr + j * banks * ws, banks * ws)
            slot = [int.from_bytes(raw[i * ws:(i + 1) * ws], "little") & mask
                    for i in range(banks)]
            bank: list[int | None] = [None] * banks
            for i in range(banks):
                on = (u * C + i < ins.cols) if wgt else (j * R + i < kc)
                if on:
                    bank[i if wgt else (u + i) % R] = slot[i]
            out.append(LoadBeat(pa, tuple(bank)))
            pa += 1
    return out


def golden_load_beats(shape: EngineShape, ins: isa.Load, tile: np.ndarray, half: int,
                      depth: int) -> list[LoadBeat]:
    """The engine's words for the tile (what ``load_port_words`` packs)."""
    if ins.buffer is isa.Buffer.ACT:
        beats = load_words(shape, encode(shape, tile, np.zeros((tile.shape[1], 1)), ins.nm)).act
    else:
        beats = load_words(shape, encode(shape, np.zeros((1, tile.shape[0])), tile, ins.nm)).wgt
    return [LoadBeat(b.addr + half * depth, b.words) for b in beats]


def unpack_store_region(shape: EngineShape, raw: bytes, geom: dict) -> np.ndarray:
    """A STORE tensor's region as its [rows, cols] 32-bit words."""
    R, C = shape.rows, shape.cols
    nt, nrb = ceil_div(geom["cols"], C), ceil_div(geom["rows"], R)
    rows = np.frombuffer(raw, "<u4").reshape(nrb, geom["stride"] // 4)[:, :nt * R * C]
    blocks = rows.reshape(nrb, nt, R, C)
    return blocks.transpose(0, 2, 1, 3).reshape(nrb * R, nt * C)[:geom["rows"], :geom["cols"]]
