"""``nmsat rtl run ... --top``: layer programs (one layer, or every layer with
``--all-layers``) on the whole accelerator top (``rtl/top.py``: AXI4-Lite host, DRAM behind
the AXI4 master, the hardware DMA) beside the system model with ``dram.dma = word_slots``
(``nmsat.rtl.tb.network``, ``top=True``)."""

import dataclasses
import json

import pytest

from nmsat.commands import main
from nmsat.config import PRESETS
from nmsat.config import load as load_config
from nmsat.dataflow import isa, machine
from nmsat.dataflow.compiler import CompileOptions, compile_layer
from nmsat.rtl.tb import top_run
from nmsat.rtl.tb.network import carried_by_top, inference_steps, train_steps
from nmsat.rtl.tb.program import random_dram
from nmsat.rtl.tb.top_run import run_top_programs
from nmsat.simulator import system
from nmsat.workloads.layers import Matmul, Workload
from nmsat.workloads.zoo import load

# a two-layer SCALE-Sim GEMM file (name, M, N, K): programs of tens to hundreds of cycles
TINY_CSV = "Layer, M, N, K,\na, 2, 5, 16,\nb, 2, 3, 5,\n"
# the 2 x 2 small engine on a narrow DRAM (4 B/cycle, 16-byte bursts: the engine waits on
# memory); the config's DMA is left
# packed: --top models the top's word_slots itself and says so
NARROW_TOML = ('preset = "small"\n\n[array]\nrows = 2\ncols = 2\n\n[dram]\n'
               'bytes_per_cycle = 4\nburst_bytes = 16\nlatency_cycles = 20\n')


@pytest.fixture
def tiny(tmp_path):
    path = tmp_path / "tiny.csv"
    path.write_text(TINY_CSV)
    cfg = tmp_path / "narrow.toml"
    cfg.write_text(NARROW_TOML)
    return str(path), str(cfg)


def _beats(prog: isa.Program, cfg) -> tuple[int, int]:
    """(read, write) AXI data beats of the program's LOADs and STOREs: the model's runs
    (``machine.dma_runs``) over the bus width."""
    rd = wr = 0
    for ins, _, _ in prog.unrolled():
        if isinstance(ins, (isa.Load, isa.Store)):
            runs, per = machine.dma_runs(ins, cfg)
            if isinstance(ins, isa.Load):
                rd += runs * per
            else:
                wr += runs * per
    b = cfg.dram.bytes_per_cycle
    return rd // b, wr // b


@pytest.mark.rtl
@pytest.mark.slow(seconds=60)
def test_all_layers_on_the_top_json(tiny, capsys):
    """Every phase of every layer on the top (mask generation, the GEMMs, the weight
    update): the RTL's program cycles (``CYCLES``)
    equal the system model's for the same program with ``dram.dma = word_slots``
    (computed here), 0 mismatches, every output word stored, the AXI beat counters are
    the model's DMA runs, ``ENGINE_STALL`` is the model's engine stall, and the note says
    the prediction uses word_slots."""
    csv, cfg_path = tiny
    rc = main(["rtl", "run", csv, "--all-layers", "--top", "--config", cfg_path, "--nm", "2:4",
               "--json"])
    out = capsys.readouterr()
    rep = json.loads(out.out)
    assert "dram.dma = word_slots" in out.err
    assert rc == 0 and rep["ok"] and rep["rtl"] == "top" and rep["not_carried"] == []
    assert [(r["layer"], r["phase"]) for r in rep["programs"]] == [
        (x, p) for x in ("a", "b") for p in ("sore", "ff", "bp", "wg", "wu")]
    wl = load(csv)
    cfg = load_config(cfg_path).replace(**{"dram.dma": "word_slots"})
    opts = CompileOptions(method="bdwp", nm="2:4", layer_nm=tuple(wl.layer_nm.items()))
    for r in rep["programs"]:
        prog = compile_layer(wl.workload, r["layer"], r["phase"], cfg, opts)
        res = system.run(prog, cfg, extrapolate=False, record=False)
        assert r["model_program_cycles"] == res.total_cycles == r["rtl_program_cycles"]
        assert r["mismatches"] == 0 and r["words"] == r["words_expected"] > 0
        assert r["computes_equal"] is None and r["tile_errors"] == []
        c = r["counters"]
        assert (c["READ_BEATS"], c["WRITE_BEATS"]) == _beats(prog, cfg)  # the DMA's port
        assert r["engine_stall_equal"]
        if r["phase"] in ("sore", "wu"):  # the unit's own port; no engine work
            assert c["ENGINE_BUSY"] == 0
            continue
        assert 0 < c["ENGINE_BUSY"] < r["rtl_program_cycles"]
        # the top's engine stall counter is the model's engine stall (every cause)
        assert c["ENGINE_STALL"] == sum(res.stall["engine"].values()) > 0
    t = rep["total"]
    assert t["programs"] == 10 and t["cycle_difference"] == 0 and t["mismatches"] == 0


@pytest.mark.rtl
@pytest.mark.slow(seconds=20)
def test_one_layer_on_the_top_text(tiny, capsys):
    csv, cfg_path = tiny
    rc = main(["rtl", "run", csv, "--layer", "b", "--phase", "wg", "--top", "--config",
               cfg_path, "--nm", "2:8"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "accelerator top" in out and "DIFFERENT" not in out
    rows = [ln.split() for ln in out.splitlines() if ln.strip().startswith("b ")]
    assert len(rows) == 1 and rows[0][1] == "wg" and rows[0][2] == rows[0][3]
    assert rows[0][4:6] == ["0", "0"]


# the 4 x 4 small engine on a 32-byte bus: an engine row (4 fp32 words) is half a bus beat
WIDE_TOML = 'preset = "small"\n\n[dram]\nbytes_per_cycle = 32\nburst_bytes = 64\n'


@pytest.mark.rtl
@pytest.mark.slow(seconds=90)
def test_decode_attention_stores_inside_row_blocks(tmp_path, capsys):
    """A decode step's attention products tile two query rows per KV head: on a 4-row
    engine half their STOREs start at row 2 of a row block. The top writes the whole
    block with the tile's rows rotated into place and the other rows' byte enables off,
    so the block's first rows (the previous STORE's) survive: 0 mismatches, every word
    stored, cycles and write beats the model's (one run per row block, as it charges)."""
    cfg_path = tmp_path / "wide.toml"
    cfg_path.write_text(WIDE_TOML)
    cfg = load_config(str(cfg_path)).replace(**{"dram.dma": "word_slots"})
    steps, _, _ = inference_steps("stories260k", cfg, phase="decode", kv_len=16)
    attn = [s for s in steps if s.layer.startswith("model.layers.0.self_attn.")
            and s.layer.endswith(("scores", "context"))]
    assert len(attn) == 2
    for s in attn:  # the class under test: STOREs from inside a row block
        assert any(r0 % 4 for i, r0, _ in s.program.unrolled() if isinstance(i, isa.Store))
    for name in ("scores", "context"):
        rc = main(["rtl", "run", "stories260k", "--layer", f"model.layers.0.self_attn.{name}",
                   "--top", "--mode", "inference", "--phase", "decode", "--kv-len", "16",
                   "--config", str(cfg_path), "--json"])
        rep = json.loads(capsys.readouterr().out)
        assert rc == 0 and rep["ok"] and rep["not_carried"] == [], rep
        (r,) = rep["programs"]
        prog = next(s.program for s in attn if s.layer.endswith(name))
        res = system.run(prog, cfg, extrapolate=False, record=False)
        assert r["rtl_program_cycles"] == r["model_program_cycles"] == res.total_cycles
        assert r["mismatches"] == 0 and r["words"] == r["words_expected"] > 0
        assert r["engine_stall_equal"] and r["tile_errors"] == []
        assert (r["counters"]["READ_BEATS"], r["counters"]["WRITE_BEATS"]) == _beats(prog, cfg)


@pytest.mark.rtl
@pytest.mark.slow(seconds=60)
def test_products_forward_and_backward_on_the_top(tiny):
    """Batched activation products on the 2 x 2 top: one-row products (a decode step's
    shape) STORE from row 1 of a 2-row block in FF, and BP reads the output gradient into
    ACT (dA = dC B^T) and into WGT (dB = A^T dC), a descriptor each. RTL cycles, write beats and
    engine stall are the model's, 0 mismatches."""
    cfg = load_config(tiny[1]).replace(**{"dram.dma": "word_slots"})
    opts = CompileOptions(method="dense", nm="1:1", batch=1)
    # BP with m = 4: with fewer rows a product's A^T columns start inside a column tile
    progs = [compile_layer(Workload("attn", (Matmul("p", m=m, n=6, k=16, count=3),), 1), "p",
                           ph, cfg, opts) for m, ph in ((1, "ff"), (4, "bp"))]
    assert any(r0 % 2 for i, r0, _ in progs[0].unrolled() if isinstance(i, isa.Store))
    bufs = {(i.tensor, i.buffer) for i in progs[1].instructions if isinstance(i, isa.Load)}
    assert len({t for t, _ in bufs}) < len(bufs)
    reps = run_top_programs([(p, cfg, random_dram(p, cfg.numerics.operand, 4)) for p in progs],
                            "icarus", system_model=system.run)
    for prog, r in zip(progs, reps):
        res = system.run(prog, cfg, extrapolate=False, record=False)
        assert r["rtl_program_cycles"] == res.total_cycles and r["mismatches"] == 0
        assert r["words"] == _stored(prog) and r["irq"] and not r["error"]
        assert r["registers"]["ENGINE_STALL"] == sum(res.stall["engine"].values())
        assert (r["registers"]["READ_BEATS"], r["registers"]["WRITE_BEATS"]) == \
            _beats(prog, cfg)


@pytest.mark.rtl
@pytest.mark.slow(seconds=30)
def test_a_store_leaving_its_row_block_sets_the_error_bit(tiny, monkeypatch):
    """The host refuses a STORE that starts inside a row block and leaves it; a host that
    did not would get ``STATUS.error`` from the top. One-row products STORE at rows 0, 1
    and 2 of the 2-row engine; the program the top fetches says 2 rows for each (the
    image is the valid program's, its STORE line rewritten after the host's checks)."""
    cfg = load_config(tiny[1]).replace(**{"dram.dma": "word_slots"})
    prog = compile_layer(Workload("attn", (Matmul("p", m=1, n=2, k=8, count=3),), 1), "p",
                         "ff", cfg, CompileOptions(method="dense", nm="1:1", batch=1))
    k, st = next((k, i) for k, i in enumerate(prog.instructions) if isinstance(i, isa.Store))
    assert st.rows == 1 and st.row_steps[0] == 1
    real, calls = top_run.top_host, []

    def lying_host(p, c, d):
        host = real(p, c, d)
        calls.append(p)
        if len(calls) == 1:  # the first run: the program as compiled
            return host
        (addr, lines), *rest = host["segments"]
        assert addr == host["PROG_ADDR"]
        word = isa.encode(dataclasses.replace(st, rows=2, bytes=2 * st.bytes))
        lines = lines[:64 * k] + word + lines[64 * (k + 1):]
        return host | {"segments": [(addr, lines), *rest]}

    monkeypatch.setattr(top_run, "top_host", lying_host)
    dram = random_dram(prog, cfg.numerics.operand, 5)
    ok, bad = run_top_programs([(prog, cfg, dram)] * 2, "icarus", system_model=system.run)
    assert not ok["error"] and ok["mismatches"] == 0 and ok["cycle_difference"] == 0
    assert bad["error"] and bad["irq"]


def _stored(prog: isa.Program) -> int:
    out = {i.tensor for i in prog.instructions if isinstance(i, isa.Store)}
    return sum(prog.tensors[t].rows * prog.tensors[t].cols for t in out)


def test_what_the_top_cannot_carry_is_listed_not_run():
    """A convolution's BP STOREs scatter-add (COL2IM), which the top's DMA does not do:
    ``carried_by_top`` keeps its mask generation, FF, WG and weight update and names BP
    with the host's reason."""
    cfg = PRESETS["small"].replace(**{"dram.dma": "word_slots"})
    steps, _, _ = train_steps("cnn", cfg, nm="2:4", batch=1, top=True)
    conv = [s for s in steps if s.layer == "conv2"]
    ok, refused = carried_by_top(conv, cfg)
    assert [s.phase for s in ok] == ["sore", "ff", "wg", "wu"]
    assert [(x["layer"], x["phase"]) for x in refused] == [("conv2", "bp")]
    assert "COL2IM" in refused[0]["reason"] or "scatter" in refused[0]["reason"]


@pytest.mark.parametrize("argv, message, dram", [
    (["--layer", "nope"], "has no layer of that name (a, b)", None),
    (["--layer", "a", "--controller"], "give --top or --controller, not both", None),
    # configs the top and its testbench cannot take
    (["--all-layers"], "dram.channels = 2", "channels = 2"),
    (["--layer", "a"], "dram.latency_cycles = 1: the testbench's DRAM answers an AXI "
                       "request 2 cycles after it at the earliest", "latency_cycles = 1"),
])
def test_bad_top_runs_are_one_line(tiny, capsys, argv, message, dram):
    """Refused before any build, one line, exit 2."""
    csv, cfg_path = tiny
    if dram is not None:
        other = cfg_path.replace("narrow", "other")
        with open(cfg_path) as f, open(other, "w") as g:
            g.write(f.read().replace("latency_cycles = 20\n", "")
                    .replace("[dram]\n", f"[dram]\n{dram}\n"))
        cfg_path = other
    assert main(["rtl", "run", csv, "--top", "--config", cfg_path, *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


def test_notes_wait_for_the_checks(tiny, capsys):
    """``vcu1525`` needs two notes (its ``fmap`` ACT layout, its ``packed`` DMA) and
    cannot run on the top (four DRAM channels): the error is the only line."""
    assert main(["rtl", "run", tiny[0], "--layer", "a", "--top", "--config", "vcu1525"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "dram.channels = 4" in err[0], err
