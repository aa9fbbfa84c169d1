"""``dram.dma = word_slots``: the system model's account of the RTL accelerator top's DMA
(``dataflow.machine.dma_bytes`` / ``dma_tail_cycles`` / ``DMA_REQUEST_CYCLES``). The
word sizes are the RTL's layouts; the bytes are the top's runs (checked against the
DRAM image's address law, which the RTL's beats are tested against), each in whole
bursts; one hand-worked LOAD pins the timing; ``packed`` is what it was."""

import random

import pytest

from nmsat.arith import ceil_div
from nmsat.config import PRESETS
from nmsat.dataflow import isa, machine
from nmsat.dataflow.memory import Dma
from nmsat.rtl.axi import axi_params
from nmsat.rtl.layouts import EngineShape
from nmsat.rtl.tb.dram_image import dram_image, model_load_beats
from nmsat.rtl.tb.random_programs import random_case
from nmsat.rtl.top import beat_bytes, word_slot
from nmsat.simulator import system

WORD_SLOTS = {"dram.dma": "word_slots", "dram.channels": 1, "dram.bytes_per_cycle": 16,
              "dram.burst_bytes": 64}


@pytest.mark.parametrize("over", [{}, {"numerics.dtype": "int8"},
                                  {"array.macs_per_pe": 2, "array.act_window": 4,
                                   "array.nm_patterns": ("1:2", "2:4")},
                                  {"dram.bytes_per_cycle": 4, "dram.burst_bytes": 16},
                                  {"numerics.dtype": "bf16", "array.act_window": 16}])
def test_word_sizes_and_slots_are_the_rtl_layouts(over):
    for name in ("small", "vcu1525"):
        cfg = PRESETS[name].replace(**{**WORD_SLOTS, **over})
        sh, p = EngineShape.from_config(cfg), axi_params(cfg)
        act, wgt = machine._word_bits(cfg)
        assert (act, wgt) == (sh.window_layout.size, sh.slots_layout.size)
        assert machine.word_slot_bytes(act, cfg) == word_slot(act, p)
        assert machine.word_slot_bytes(wgt, cfg) == word_slot(wgt, p)


@pytest.mark.parametrize("seed", range(8))
def test_load_bytes_are_the_address_laws_runs_in_whole_bursts(seed):
    """Every LOAD of a random program: the runs the DRAM image's address law reads
    (``model_load_beats``: port beats of banks x slot bytes, a run per tile row or column
    tile) are ``dma_runs``, and ``dma_bytes`` is each run rounded up to bursts; the tail
    is the last run's last burst's missing beats."""
    rng = random.Random(seed)
    prog, cfg, dram, desc = random_case(rng, PRESETS["small"], seed)
    cfg = cfg.replace(**WORD_SLOTS)
    sh, p = EngineShape.from_config(cfg), axi_params(cfg)
    img = dram_image(prog, cfg, dram, p, sh)
    bb = beat_bytes(sh, p)
    for ins, r0, c0 in prog.unrolled():
        if not isinstance(ins, isa.Load):
            continue
        beats = len(model_load_beats(img, sh, p, ins, r0, c0, 0, 0))
        wgt = ins.buffer is isa.Buffer.WGT
        runs = ceil_div(ins.cols, sh.cols) if wgt else ins.rows
        per = beats // runs * bb["wgt" if wgt else "act"]
        assert beats % runs == 0 and machine.dma_runs(ins, cfg) == (runs, per), desc
        assert machine.dma_bytes(ins, cfg) == runs * ceil_div(per, 64) * 64
        assert machine.dma_tail_cycles(ins, cfg) == (-per % 64) // 16


def test_a_load_by_hand():
    """2 runs of 80 bytes on one 16 B/cycle channel, 64-byte bursts, latency 10, issued
    at cycle 0: requested at 4 (DMA_REQUEST_CYCLES), data from 14; each run takes two
    bursts, 256 bytes of the channel (16 cycles, to 30); the last burst carries one beat
    of its four, so the data ends 3 cycles earlier, at 27."""
    cfg = PRESETS["small"].replace(**WORD_SLOTS)
    assert machine.DMA_REQUEST_CYCLES["word_slots"] == (4, 3)
    dma = Dma.from_config(cfg)
    t = dma.issue(0, 0, 2 * 128, isa.Buffer.ACT, 5, tail=(128 - 80) // 16)
    assert [(s.start, s.end) for s in t.spans] == [(14, 30)]
    assert t.done == 27
    # a STORE issued then waits for the channel, requested at 3
    s = dma.issue(1, 1, 64, isa.Buffer.OUT, 1)
    assert [(x.start, x.end) for x in s.spans] == [(30, 34)] and s.done == 34


def test_packed_charges_the_tile_bytes_from_the_issue_cycle():
    cfg = PRESETS["small"]
    assert cfg.dram.dma == "packed" and machine.DMA_REQUEST_CYCLES["packed"] == (0, 0)
    ld = isa.Load(tensor=0, row0=0, col0=0, rows=3, cols=10, bytes=60)
    assert machine.dma_bytes(ld, cfg) == 60 and machine.dma_tail_cycles(ld, cfg) == 0
    t = Dma.from_config(cfg).issue(0, 0, 60, isa.Buffer.ACT, 3)
    assert [(s.start, s.end) for s in t.spans] == [(10, 14)] and t.done == 14


def test_word_slots_moves_more_and_takes_longer_than_packed():
    """The same program: word_slots charges the layout's padding (dense ACT windows half
    full on small), so the DRAM bytes and the cycles grow."""
    rng = random.Random(5)
    prog, cfg, _, _ = random_case(rng, PRESETS["small"], 5)
    packed = cfg.replace(**{**WORD_SLOTS, "dram.dma": "packed"})
    slots = cfg.replace(**WORD_SLOTS)
    xfers = [i for i, _, _ in prog.unrolled() if isinstance(i, (isa.Load, isa.Store))]
    assert sum(machine.dma_bytes(i, slots) for i in xfers) > sum(i.bytes for i in xfers)
    assert (system.run(prog, slots, extrapolate=False).total_cycles
            > system.run(prog, packed, extrapolate=False).total_cycles)
