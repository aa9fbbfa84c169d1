"""The accelerator top's host side and geometry (no HDL simulator): the DMA's address law
read from the DRAM image gives, for every LOAD of random compiled layer programs, exactly
the buffer words the engine expects for the golden executor's tile; what the top cannot
carry is refused naming the field; the register map in ``docs/rtl.md`` is ``REGISTERS``."""

import dataclasses
import random
import re
from pathlib import Path

import pytest

from nmsat.config import PRESETS
from nmsat.dataflow import isa
from nmsat.dataflow.compiler import CompileOptions, compile_layer
from nmsat.rtl.axi import axi_params, outstanding_reads
from nmsat.rtl.engine import buffer_geometry, ring_halves
from nmsat.rtl.layouts import EngineShape
from nmsat.rtl.tb import top_run
from nmsat.rtl.tb.controller_run import _LoadTiles
from nmsat.rtl.tb.dram_image import dma_runs_at, dram_image, golden_load_beats, model_load_beats
from nmsat.rtl.tb.program import random_dram
from nmsat.rtl.tb.random_programs import random_case
from nmsat.rtl.tb.top_run import top_host
from nmsat.rtl.top import REGISTERS, chunk_sizes, descriptor_line, word_slot
from nmsat.types import NM, Phase
from nmsat.workloads.layers import Matmul, OpKind, Workload
from nmsat.workloads.zoo import load


def _one_channel(cfg):
    return cfg.replace(**{"dram.channels": 1, "dram.bytes_per_cycle": 16,
                          "dram.burst_bytes": 64, "dram.dma": "word_slots"})


@pytest.mark.parametrize("seed", range(12))
def test_dma_address_law_gives_the_engine_words(seed):
    rng = random.Random(seed)
    prog, cfg, dram, desc = random_case(rng, PRESETS["small"], seed)
    cfg = _one_channel(cfg)
    sh, p = EngineShape.from_config(cfg), axi_params(cfg)
    img = dram_image(prog, cfg, dram, p, sh)
    g = buffer_geometry(cfg, sh)
    halves = dict(zip((isa.Buffer.ACT, isa.Buffer.WGT), ring_halves(cfg)[:2]))
    depth = {isa.Buffer.ACT: g["act"], isa.Buffer.WGT: g["wgt"]}
    rec = _LoadTiles(prog, cfg, dram)
    rec.run()
    tiles = iter(rec.tiles)
    n = {isa.Buffer.ACT: 0, isa.Buffer.WGT: 0}
    loads = 0
    for ins, r0, c0 in prog.unrolled():
        if isinstance(ins, isa.Load):
            half = n[ins.buffer] % halves[ins.buffer]
            n[ins.buffer] += 1
            want = golden_load_beats(sh, ins, next(tiles), half, depth[ins.buffer])
            assert model_load_beats(img, sh, p, ins, r0, c0, half, depth[ins.buffer]) == want, \
                (desc, ins)
            # the DMA divides by the engine's chunk sizes only (any other kpc: an error)
            slot = int(ins.buffer is isa.Buffer.WGT)
            assert img.desc[ins.tensor, slot][2] in chunk_sizes(sh), (desc, ins)
            loads += 1
    assert loads > 0


def test_a_misplaced_load_is_caught_by_the_law():
    """The check is not vacuous: a descriptor one slot off gives other words."""
    rng = random.Random(3)
    prog, cfg, dram, _ = random_case(rng, PRESETS["small"], 3)
    cfg = _one_channel(cfg)
    sh, p = EngineShape.from_config(cfg), axi_params(cfg)
    img = dram_image(prog, cfg, dram, p, sh)
    ins, r0, c0 = next((i, r, c) for i, r, c in prog.unrolled() if isinstance(i, isa.Load))
    rec = _LoadTiles(prog, cfg, dram)
    rec.run()
    want = golden_load_beats(sh, ins, rec.tiles[0], 0, 0)
    key = (ins.tensor, int(ins.buffer is isa.Buffer.WGT))
    base, stride, kpc = img.desc[key]
    ws = word_slot((sh.slots_layout if ins.buffer is isa.Buffer.WGT else sh.window_layout).size, p)
    img.desc[key] = (base + ws, stride, kpc)
    assert model_load_beats(img, sh, p, ins, r0, c0, 0, 0) != want


def test_axi_geometry_from_the_config():
    small = PRESETS["small"]
    p = axi_params(small)
    assert (p.data_bytes, p.burst_beats) == (16, 4)
    assert p.outstanding == outstanding_reads(small) == 10 // 4 + 1 + 2
    assert axi_params(PRESETS["vcu1525"]).burst_beats == 1
    with pytest.raises(ValueError, match="dram.bytes_per_cycle"):
        axi_params(small.replace(**{"dram.bytes_per_cycle": 24}))
    with pytest.raises(ValueError, match="dram.burst_bytes"):
        axi_params(small.replace(**{"dram.burst_bytes": 8192}))
    assert descriptor_line(0x1234, 64, 8)[:9] == (0x1234).to_bytes(4, "little") + \
        (64).to_bytes(4, "little") + bytes([8])
    line = descriptor_line(1, 2, 4, wgt=(0x5000, 96, 16), dims=(7, 9), wu=(10, 11, 12, 13))
    assert [int.from_bytes(line[o:o + 4], "little") for o in range(0, 64, 4)] == \
        [1, 2, 4, 0x5000, 96, 16, 7, 9, 10, 11, 12, 13, 0, 0, 0, 0]


def test_the_host_refuses_what_the_top_cannot_carry():
    rng = random.Random(0)
    prog, cfg, dram, _ = random_case(rng, PRESETS["small"], 0)
    with pytest.raises(ValueError, match="dram.channels"):
        top_host(prog, cfg.replace(**{"dram.channels": 2}), dram)
    with pytest.raises(ValueError, match="dram.model"):
        top_host(prog, _one_channel(cfg).replace(**{"dram.model": "row_buffer"}), dram)
    # the system model must charge what this DMA moves
    with pytest.raises(ValueError, match="dram.dma = packed"):
        top_host(prog, _one_channel(cfg).replace(**{"dram.dma": "packed"}), dram)
    # no vector lanes; a weight update needs its state, and a square array
    vec = isa.Vector(kind=OpKind.NORM, elements=4, read_bytes=8, write_bytes=8)
    with pytest.raises(ValueError, match="no vector lanes"):
        top_host(dataclasses.replace(prog, instructions=prog.instructions + (vec,)),
                 _one_channel(cfg), dram)
    wu = isa.WeightUpdate(tensor=0, weights=4, read_bytes=16, write_bytes=16)
    with_wu = dataclasses.replace(prog, instructions=prog.instructions + (wu,))
    with pytest.raises(ValueError, match="has no .*dw"):
        top_host(with_wu, _one_channel(cfg), dram)
    with pytest.raises(ValueError, match="array.rows = 4 and array.cols = 8"):
        top_host(with_wu, _one_channel(cfg).replace(**{"array.cols": 8}), dram)
    # one tensor loaded as two views into one buffer (its ACT or WGT descriptor holds one)
    ld = next(i for i in prog.instructions if isinstance(i, isa.Load))
    other = dataclasses.replace(ld, transform=isa.Transform.TRANSPOSE
                                if ld.transform is isa.Transform.NONE else isa.Transform.NONE)
    two = dataclasses.replace(prog, instructions=prog.instructions + (other,))
    with pytest.raises(ValueError, match=f"tensor {ld.tensor} is used as .* one ACT or STORE "
                                         f"view and one WGT view per tensor"):
        top_host(two, _one_channel(cfg), dram)


def test_a_tensor_stored_and_loaded_by_one_program_is_refused():
    """Views live in regions of their own: a WGT LOAD of a tensor the program STOREs
    would read the host's image, not the STORE's words."""
    rng = random.Random(0)
    prog, cfg, dram, _ = random_case(rng, PRESETS["small"], 0)
    st = next(i for i in prog.instructions if isinstance(i, isa.Store))
    t = prog.tensors[st.tensor]
    ld = isa.Load(tensor=st.tensor, row0=0, col0=0, rows=t.rows, cols=t.cols,
                  bytes=st.bytes, buffer=isa.Buffer.WGT, nm=NM.parse("1:1"))
    both = dataclasses.replace(prog, instructions=prog.instructions + (ld,))
    with pytest.raises(ValueError, match=f"tensor {st.tensor} is both stored and loaded"):
        top_host(both, _one_channel(cfg), dram)


def test_a_tensor_read_as_both_operands_has_two_descriptors():
    """A product's BP reads its output gradient into ACT (dA = dC B^T) and into WGT
    (dB = A^T dC): the tensor's line holds both views' descriptors, and every LOAD's
    beats are the engine's words."""
    cfg = _one_channel(PRESETS["small"]).replace(**{"array.rows": 2, "array.cols": 2,
                                                    "dram.bytes_per_cycle": 4,
                                                    "dram.burst_bytes": 16})
    wl = Workload("attn", (Matmul("p", m=4, n=6, k=8, count=2),), 1)
    prog = compile_layer(wl, "p", Phase.BP, cfg, CompileOptions(method="dense", nm="1:1",
                                                                batch=1))
    bufs = {}
    for i, _, _ in prog.unrolled():
        if isinstance(i, isa.Load):
            bufs.setdefault(i.tensor, set()).add(i.buffer)
    both = [t for t, b in bufs.items() if len(b) == 2]
    assert both, bufs
    dram = random_dram(prog, cfg.numerics.operand, 2)
    host = top_host(prog, cfg, dram)  # checks every LOAD's beats against the engine's
    sh, p = EngineShape.from_config(cfg), axi_params(cfg)
    img = dram_image(prog, cfg, dram, p, sh)
    for t in both:
        act, wgt = img.desc[t, 0], img.desc[t, 1]
        assert act[0] != wgt[0]
        line = img.read(img.desc_addr + t * 64, 64)
        assert [int.from_bytes(line[o:o + 4], "little") for o in range(0, 24, 4)] == \
            [*act, *wgt]
    assert host["PROG_LEN"] == len(prog.instructions)


def test_a_run_that_starts_inside_a_burst_is_carried_unless_it_crosses_a_page(monkeypatch):
    """On a 2 x 2 engine a STORE block is 16 bytes: the digits MLP's fc2 at 2:4 stores
    from column tile 1, 16 bytes into a 64-byte burst. The DMA cuts such a run into whole
    bursts from its start, as word_slots charges it, so the host takes the program; a
    run that starts inside a burst and crosses a 4 KiB page, where AXI cuts one burst
    more, is refused naming it."""
    cfg = _one_channel(PRESETS["small"]).replace(**{"array.rows": 2, "array.cols": 2})
    wl = load("mlp", batch=2)
    prog = compile_layer(wl.workload, "fc2", Phase.FF, cfg, CompileOptions(
        method="bdwp", nm="2:4", batch=2, layer_nm=tuple(wl.layer_nm.items())))
    dram = random_dram(prog, cfg.numerics.operand, 1)
    p, shape = axi_params(cfg), EngineShape.from_config(cfg)
    img = dram_image(prog, cfg, dram, p, shape)
    starts = {a % 64 for ins, r0, c0 in prog.unrolled() if isinstance(ins, isa.Store)
              for a, _ in dma_runs_at(img, shape, p, ins, r0, c0)}
    assert starts == {0, 16, 32, 48}  # column tiles 0 to 3 of 16-byte blocks
    assert top_host(prog, cfg, dram)["PROG_LEN"] == len(prog.instructions)

    def across_a_page(img, shape, p, ins, r0, c0):
        runs = dma_runs_at(img, shape, p, ins, r0, c0)
        if isinstance(ins, isa.Store) and c0:
            return [(4096 * 3 - 16, 8)]  # one beat before a page, 8 beats: 3 bursts, not 2
        return runs

    monkeypatch.setattr(top_run, "dma_runs_at", across_a_page)
    with pytest.raises(ValueError, match=r"STORE \d+ \(tensor \d+ at \[0, 2\]\): its DMA "
                                         r"run at 0x2ff0 starts 48 bytes into a 64-byte "
                                         r"burst .* and crosses a 4 KiB page"):
        top_host(prog, cfg, dram)


def test_a_store_from_inside_a_row_block_must_end_in_it():
    """Three-row products on a 2-row engine: the second product's STORE starts at row 3,
    inside a row block, and its rows would reach into the next block, which the top's
    DMA does not split (one line naming it); two-row products there are carried."""
    cfg = _one_channel(PRESETS["small"]).replace(**{"array.rows": 2, "array.cols": 2,
                                                    "dram.bytes_per_cycle": 4,
                                                    "dram.burst_bytes": 16})

    def prog_of(m):
        wl = Workload("attn", (Matmul("p", m=m, n=4, k=8, count=2),), 1)
        return compile_layer(wl, "p", Phase.FF, cfg, CompileOptions(method="dense",
                                                                   nm="1:1", batch=1))

    three = prog_of(3)
    assert {(r0, i.rows) for i, r0, _ in three.unrolled() if isinstance(i, isa.Store)} \
        == {(0, 3), (3, 3)}
    with pytest.raises(ValueError, match=r"STORE \d+ at \(3, 0\) of 3 rows starts inside "
                                         r"an R-row block \(2\) and does not end in it"):
        top_host(three, cfg, random_dram(three, cfg.numerics.operand, 1))
    one = prog_of(1)
    assert {r0 for i, r0, _ in one.unrolled() if isinstance(i, isa.Store)} == {0, 1}
    assert top_host(one, cfg, random_dram(one, cfg.numerics.operand, 1))["PROG_LEN"] == \
        len(one.instructions)


def test_docs_register_map_is_the_rtl_one():
    text = (Path(__file__).parents[1] / "docs" / "rtl.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| `(\w+)` \| `(0x[0-9A-F]{2})` \| ([\w/]+) \|", text, re.M)
    assert rows == [(n, f"0x{o:02X}", a) for n, o, a, _ in REGISTERS]
    offs = [o for _, o, _, _ in REGISTERS]
    assert len(set(offs)) == len(offs) and all(o % 4 == 0 for o in offs)


def test_the_units_regions_change_what_the_host_wrote():
    """The host's expected words for a SORE's compressed view and a weight update's
    master, velocity and working copy differ from what it writes there before the run
    (so a unit that wrote nothing fails the comparison), and the descriptor line of the
    updated working copy names the update's regions."""
    from nmsat.dataflow.compiler import CompileOptions, compile_layer
    from nmsat.rtl.tb.program import random_dram
    from nmsat.rtl.tb.top_run import top_host
    from nmsat.types import Mode, Phase
    from nmsat.workloads.zoo import load

    cfg = PRESETS["small"].replace(**{"dram.dma": "word_slots"})
    opts = CompileOptions(method="bdwp", nm="2:8", mode=Mode.TRAIN)
    for phase in (Phase.SORE, Phase.WU):
        prog = compile_layer(load("mlp").workload, "fc3", phase, cfg, opts)
        host = top_host(prog, cfg, random_dram(prog, cfg.numerics.operand, 1))
        assert host["checks"]
        for name, g in host["checks"].items():
            before = next(b for a, b in host["segments"] if a == g["addr"])[:g["bytes"]]
            w = g["word"]
            changed = sum(before[i:i + w] != g["expected"][i:i + w]
                          for i in range(0, g["bytes"], w))
            assert changed > 0.3 * g["bytes"] // w, name
