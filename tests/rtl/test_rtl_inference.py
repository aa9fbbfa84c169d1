"""Inference tile programs on the RTL (issue #7, item 5): ``nmsat rtl run --mode inference``.

Each layer's FF program, compiled as ``nmsat simulate --mode inference`` compiles it
(pre-compressed N:M weights, no SORE), runs through the golden executor and the generated
engine: 0 value mismatches and, for every COMPUTE, RTL cycles equal to the tile model's
(the simulator's engine time). Layers: the digits MLP and CNN at 2:4, 2:8 and dense; the
``stories260k`` Llama's decode step (batch 1, GEMV-shaped projections in OS, the score and
context products against the KV cache) and prefill. All on the ``small`` preset's 2 x 2
fp16 variant (``conftest.small_2x2``), where each run simulates a few hundred to a few
thousand cycles. The tests without ``rtl`` check the program is the simulator's.
"""

import dataclasses
import json
import shutil

import numpy as np
import pytest

from nmsat.commands import main
from nmsat.dataflow import isa
from nmsat.dataflow.timing import compute_cycles
from nmsat.reference import nm_mask
from nmsat.rtl.tb import inference as inf

ATTN = "model.layers.0.self_attn"
MLP = "model.layers.1.mlp"


def _sim_ok():
    from nmsat.rtl.tb.runner import simulator

    return simulator() == "verilator" or shutil.which("iverilog")


def _run(capsys, cfg_path, workload, layer, *extra):
    rc = main(["rtl", "run", workload, "--layer", layer, "--mode", "inference", "--config",
               str(cfg_path), "--json", *extra])
    rep = json.loads(capsys.readouterr().out)
    return rc, rep


def _check(rc, rep, words):
    assert rep["mode"] == "inference" and rep["same_program"] is True
    assert rep["computes"], "the layer ran no COMPUTE"
    for c in rep["computes"]:
        assert c["rtl_cycles"] == c["model_cycles"] > 0, c
    assert rep["rtl_cycles"] == rep["model_cycles"]
    assert rep["mismatches"] == 0 and rep["words"] == words
    assert rc == 0


CASES = [
    # (workload, layer, options, words stored = output elements)
    ("mlp", "fc2", ("--nm", "2:4", "--batch", "2"), 2 * 256),
    ("mlp", "fc2", ("--nm", "2:8", "--batch", "2"), 2 * 256),
    ("mlp", "fc3", ("--nm", "1:1", "--batch", "4"), 4 * 10),
    # a 3 x 3 conv: ACT holds expanded im2col windows (buffers.act_layout = windows)
    ("cnn", "conv2", ("--nm", "2:8", "--batch", "1"), 8 * 8 * 32),
    ("cnn", "conv2", ("--nm", "1:1", "--batch", "1"), 8 * 8 * 32),
    # stories260k decode, batch 1 against an 8-position KV cache: GEMVs (m = 1, OS)
    ("stories260k", f"{ATTN}.q_proj", ("--phase", "decode", "--kv-len", "8", "--nm", "2:4"),
     64),
    ("stories260k", f"{ATTN}.k_proj", ("--phase", "decode", "--kv-len", "8", "--nm", "2:8"),
     32),
    ("stories260k", f"{MLP}.down_proj", ("--phase", "decode", "--kv-len", "8", "--nm", "2:8"),
     64),
    # the KV cache is the B operand: 4 KV heads x (2 query heads x 8 positions / x 8 dims)
    ("stories260k", f"{ATTN}.scores", ("--phase", "decode", "--kv-len", "8"), 4 * 2 * 8),
    ("stories260k", f"{ATTN}.context", ("--phase", "decode", "--kv-len", "8"), 4 * 2 * 8),
    # prefill of 4 tokens, batch 2: projections are 8-row GEMMs; scores are 4 x 4 per head
    ("stories260k", f"{MLP}.gate_proj", ("--phase", "prefill", "--seq-len", "4", "--batch",
                                         "2", "--nm", "2:4"), 8 * 172),
    ("stories260k", f"{ATTN}.scores", ("--phase", "prefill", "--seq-len", "4", "--batch",
                                       "2"), 2 * 4 * 8 * 4),
]


@pytest.mark.rtl
@pytest.mark.slow
@pytest.mark.skipif(not _sim_ok(), reason="needs an HDL simulator")
@pytest.mark.parametrize("workload,layer,extra,words", CASES,
                         ids=[f"{w}-{layer.rsplit('.', 2)[-1]}-{'-'.join(e)}"
                              for w, layer, e, _ in (getattr(c, "values", c) for c in CASES)])
def test_inference_layer_bit_exact_and_cycle_exact(capsys, small_2x2, workload, layer, extra,
                                                   words):
    rc, rep = _run(capsys, small_2x2[0], workload, layer, *extra)
    _check(rc, rep, words)


@pytest.mark.rtl
@pytest.mark.slow(seconds=30)
@pytest.mark.skipif(not _sim_ok(), reason="needs an HDL simulator")
def test_decode_projection_is_a_gemv_in_os(capsys, small_2x2):
    """The decode step's projections are batch-row GEMVs on the output-stationary array."""
    rc, rep = _run(capsys, small_2x2[0], "stories260k", f"{ATTN}.o_proj", "--phase",
                   "decode", "--kv-len", "8", "--nm", "2:4")
    _check(rc, rep, 64)
    assert {c["instr"].split()[0] for c in rep["computes"]} == {"os"}
    assert all(c["instr"].split()[2].startswith("1x") for c in rep["computes"])


# ------------------------------------------------------------------- the simulator's program


PROGRAMS = [
    ("mlp", "fc2", {"nm": "2:4", "batch": 2}),
    ("mlp", "fc3", {"nm": "1:1", "batch": 4}),
    ("cnn", "conv2", {"nm": "2:8", "batch": 1}),
    ("stories260k", f"{ATTN}.q_proj", {"nm": "2:4", "phase": "decode", "kv_len": 8}),
    ("stories260k", f"{ATTN}.context", {"nm": "2:4", "phase": "decode", "kv_len": 8}),
    ("stories260k", f"{MLP}.down_proj",
     {"nm": "2:8", "phase": "decode", "kv_len": 8, "batch": 3}),
    ("stories260k", "model.layers.4.self_attn.scores",
     {"nm": "2:8", "phase": "prefill", "seq_len": 4, "batch": 2}),
    ("stories260k", "model.layers.3.mlp.up_proj",
     {"nm": "2:4", "phase": "prefill", "seq_len": 4}),
]


@pytest.mark.parametrize("workload,layer,opts", PROGRAMS,
                         ids=[f"{w}-{x.rsplit('.', 2)[-1]}-{o.get('phase', 'ff')}"
                              for w, x, o in PROGRAMS])
def test_rtl_runs_the_program_the_simulator_times(small_2x2, workload, layer, opts):
    """The layer program run on the RTL executes exactly the layer's part of the whole
    inference program the simulator times: the same COMPUTE instruction words and LOAD/STORE
    tiles in the same order, hence the same engine cycles."""
    cfg = small_2x2[1]
    opts = dict(opts)
    nm = opts.pop("nm")
    iw = inf.load_workload(workload, nm, **opts)
    prog = inf.inference_layer_program(iw, layer, cfg, nm)
    whole = inf.whole_program(iw, cfg, nm)
    mine, theirs = inf.layer_stream(prog, layer), inf.layer_stream(whole, layer)
    assert any(x[0] == "COMPUTE" for x in mine) and any(x[0] == "LOAD" for x in mine)
    assert mine == theirs
    assert inf.same_program(prog, whole, layer)
    li = whole.layers.index(layer)
    words = [isa.encode(i) for i, _, _ in prog.unrolled() if isinstance(i, isa.Compute)]
    assert words == [x[1] for x in theirs if x[0] == "COMPUTE"]
    cyc = sum(compute_cycles(i, cfg) * n for _, i, n in whole.executions()
              if isinstance(i, isa.Compute) and i.layer == li)
    assert cyc == sum(compute_cycles(i, cfg) for i, _, _ in prog.unrolled()
                      if isinstance(i, isa.Compute)) > 0


def test_same_program_sees_a_different_program(small_2x2):
    cfg = small_2x2[1]
    layer = f"{ATTN}.q_proj"
    iw = inf.load_workload("stories260k", "2:4", phase="decode", kv_len=8)
    prog = inf.inference_layer_program(iw, layer, cfg, "2:4")
    # another pattern: other COMPUTE words and weight tiles
    assert not inf.same_program(prog, inf.whole_program(iw, cfg, "2:8"), layer)
    # another batch: other activation tiles and COMPUTE m
    iw2 = inf.load_workload("stories260k", "2:4", batch=2, phase="decode", kv_len=8)
    assert not inf.same_program(prog, inf.whole_program(iw2, cfg, "2:4"), layer)
    # one COMPUTE changed (no interleave)
    ins = list(prog.instructions)
    i = next(j for j, x in enumerate(ins) if isinstance(x, isa.Compute))
    ins[i] = dataclasses.replace(ins[i], interleave=not ins[i].interleave)
    changed = dataclasses.replace(prog, instructions=tuple(ins))
    assert not inf.same_program(changed, inf.whole_program(iw, cfg, "2:4"), layer)


@pytest.mark.parametrize("nm", ["2:4", "2:8"])
def test_dram_weights_are_pre_compressed_nm(small_2x2, nm):
    """The N:M weight view in DRAM keeps at most N of every M along K (pruned offline),
    the activations stay dense."""
    cfg = small_2x2[1]
    iw = inf.load_workload("mlp", nm, batch=2)
    prog = inf.inference_layer_program(iw, "fc2", cfg, nm)
    dram = inf.inference_dram(prog, cfg, "mlp", "fc2", seed=3)
    n, m = map(int, nm.split(":"))
    w = dram["fc2.w.ff"]
    assert w.shape == (256, 256)
    assert (np.count_nonzero(w.reshape(256 // m, m, 256), axis=1) <= n).all()
    assert np.array_equal(w != 0, nm_mask(w, nm, axis=0) & (w != 0))
    assert np.count_nonzero(dram["fc2.x"]) > 0.9 * dram["fc2.x"].size
    assert [t.name for t in prog.tensors if not t.nm.dense] == ["fc2.w.ff"]
