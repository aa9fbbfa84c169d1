"""Inference on compute-bound GEMMs: N:M speedup against the engine's peak sparse ratio
(docs/architecture.md 3.1), and dense mode against a dense-only array."""

from __future__ import annotations

import pytest

from nmsat.config import SMALL, VCU1525
from nmsat.simulator.inference import InferenceOptions, InferenceWorkload, simulate_inference
from nmsat.types import NM
from nmsat.workloads import llm, zoo
from nmsat.workloads.layers import Linear, Workload

# Peak sparse-over-dense throughput per pattern, as tabulated in architecture.md 3.1
# (written out here, not read from the config, so a change to either is caught).
PEAK = {"vcu1525": {"1:4": 4.0, "2:4": 2.0, "4:8": 2.0, "2:8": 4.0, "1:8": 4.0},
        "small": {"1:4": 2.0, "2:4": 2.0, "4:8": 2.0, "2:8": 2.0, "1:8": 2.0}}
# Large GEMMs per preset (the small preset's 16 KiB buffers get a smaller one).
GEMM = {"vcu1525": (4096, 4096, 4096), "small": (1024, 1024, 512)}


def _gemm(cfg, nm: str):
    k, n, m = GEMM[cfg.name]
    w = Workload("gemm", (Linear("fc", in_features=k, out_features=n),), batch=m)
    return simulate_inference(InferenceWorkload(w), cfg, InferenceOptions(nm=nm, batch=m))


@pytest.mark.parametrize("cfg", [VCU1525, SMALL], ids=lambda c: c.name)
@pytest.mark.parametrize("nm", ["1:4", "2:4", "4:8", "2:8", "1:8"])
def test_compute_bound_speedup_reaches_90_percent_of_peak(cfg, nm):
    peak = PEAK[cfg.name][nm]
    assert cfg.array.sparse_speedup(NM.parse(nm)) == peak
    r = _gemm(cfg, nm)
    layer = r.layers[0]
    assert layer.bound == "compute" and layer.ideal_bound == "compute"
    assert 0.9 * peak <= r.speedup_vs_dense <= peak, r.speedup_vs_dense
    if nm == "2:4":
        assert r.speedup_vs_dense >= 1.9
    # cycles never below the dense-equivalent work over the sparse peak
    assert r.total_cycles >= r.dense_macs / (cfg.array.peak_macs_per_cycle * peak)


DENSE_ONLY = VCU1525.replace(**{"name": "dense_only", "array.nm_patterns": [],
                                "array.act_window": VCU1525.array.macs_per_pe})


@pytest.mark.parametrize("spec,kw", [
    ("resnet18", {"batch": 2}),
    ("mobilenet_v2", {"batch": 1}),
    ("bert_base", {"batch": 1, "seq_len": 64}),
    ("gpt2_small", {"batch": 4, "phase": "decode", "kv_len": 256}),
    ("mlp", {"batch": 8}),
])
def test_dense_mode_loses_nothing_against_a_dense_only_array(spec, kw):
    # The N:M hardware (wide activation window, index muxes) costs dense mode no cycle.
    opts = InferenceOptions(nm="1:1", **kw)
    nm_hw = simulate_inference(spec, VCU1525, opts)
    dense_hw = simulate_inference(spec, DENSE_ONLY, opts)
    assert nm_hw.total_cycles == dense_hw.total_cycles
    assert nm_hw.dram_bytes == dense_hw.dram_bytes
    assert nm_hw.speedup_vs_dense == 1.0


def test_dense_only_array_rejects_sparse_patterns():
    with pytest.raises(Exception, match="not supported"):
        simulate_inference("mlp", DENSE_ONLY, InferenceOptions(nm="2:4"))


@pytest.mark.parametrize("name", zoo.names())
def test_every_zoo_model_lowers_to_ff_only_with_compressed_weights(name):
    from nmsat.dataflow.inference import compile_inference
    from nmsat.dataflow.isa import Compute, Sore, WeightUpdate
    from nmsat.simulator.inference import load
    from nmsat.types import Method, Phase

    kw = {"phase": "decode", "kv_len": 64} if llm.is_llm(name) else {}
    opts = InferenceOptions(nm="2:8", batch=1, **kw)
    wl = load(name, opts).workload
    prog, _ = compile_inference(wl, VCU1525, "2:8")
    ins = prog.instructions
    assert not any(isinstance(i, (Sore, WeightUpdate)) for i in ins)  # no online masks
    assert {i.phase for i in ins if isinstance(i, Compute)} == {Phase.FF}
    tensors = {t.name: t for t in prog.tensors}
    for layer in wl.layers:
        if layer.has_weights and layer.nm_applies(Phase.FF, Method.BDWP, NM(2, 8)):
            assert tensors[f"{layer.name}.w.ff"].nm == NM(2, 8), layer.name
    r = simulate_inference(name, VCU1525, opts)
    assert sum(r.bytes_per_layer.values()) == r.dram_bytes
    assert 1.0 <= r.speedup_vs_dense <= VCU1525.array.sparse_speedup(NM(2, 8))
    assert r.dense_macs == wl.macs()


def test_inference_batch_norm_is_fused_layer_norm_is_not():
    # architecture.md section 6: the inference-time affine parts are fused into the output
    # write path; layer norm still needs its statistics on the vector lanes.
    from nmsat.dataflow.inference import compile_inference
    from nmsat.dataflow.isa import Vector
    from nmsat.workloads.layers import OpKind

    def norms(name, **kw):
        prog, _ = compile_inference(zoo.get(name, **kw), VCU1525)
        return sum(isinstance(i, Vector) and i.kind is OpKind.NORM for i in prog.instructions)

    assert norms("resnet18") == 0
    assert norms("bert_base", seq_len=16) == 25  # embeddings + 2 per encoder layer
