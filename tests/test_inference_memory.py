"""Inference on the memory side: memory-bound speedups against the weight-byte ratio,
KV-cache and compressed-weight traffic, and the roofline transition as batch grows."""

from __future__ import annotations

import dataclasses

import pytest
from nmsat.simulator.inference import InferenceOptions, InferenceWorkload, load, simulate_inference
from nmsat.workloads import llm, zoo
from nmsat.workloads.layers import Linear, Workload

from nmsat.config import SMALL, VCU1525
from nmsat.reference import compressed_bytes, dense_bytes
from nmsat.types import NM


def byte_ratio(k: int, n: int, nm: str) -> float:
    """Dense over compressed bytes of one [k, n] fp16 weight grouped along k (independent
    of the simulator: the reference model's byte counts)."""
    return dense_bytes((k, n), "fp16") / compressed_bytes((k, n), nm, 0, "fp16")


def _gemvs(name: str) -> set[tuple[int, int]]:
    """(in, out) of the model's GEMV layers at batch 1: linear layers with one row (FC
    heads, the pooler, every projection of an LLM decode step)."""
    kw = {"phase": "decode", "kv_len": 16} if llm.is_llm(name) else {}
    w = load(name, InferenceOptions(batch=1, **kw)).workload
    return {(l.in_features, l.out_features) for l in w.layers
            if isinstance(l, Linear) and l.tokens * w.batch == 1}


def test_every_zoo_model_has_gemvs_at_batch_1():
    for name in zoo.names():
        assert _gemvs(name), name


_CACHE: dict = {}


def _isolated(k: int, n: int, nm: str, cfg):
    key = (k, n, nm, cfg.name)
    if key not in _CACHE:
        w = Workload("gemv", (Linear("fc", in_features=k, out_features=n),), batch=1)
        _CACHE[key] = simulate_inference(InferenceWorkload(w), cfg,
                                         InferenceOptions(nm=nm, batch=1))
    return _CACHE[key]


LARGE = 1 << 20
"""Dense weight bytes from which a GEMV's weight stream dominates its fixed costs (DRAM
latency, array fill and drain), so its speedup must have come close to the ratio."""


@pytest.mark.parametrize("nm", ["2:4", "2:8"])
@pytest.mark.parametrize("name", zoo.names())
def test_memory_bound_gemv_speedup_tends_to_and_never_exceeds_byte_ratio(name, nm):
    # On the `small` preset a batch-1 GEMV streams its weights faster than DRAM delivers
    # them (16 multipliers at one chunk per cycle vs 16 B/cycle), so it is memory-bound.
    for k, n in sorted(_gemvs(name)):
        dense = _isolated(k, n, "1:1", SMALL)
        r = _isolated(k, n, nm, SMALL)
        ratio = byte_ratio(k, n, nm)
        assert r.weight_byte_ratio == pytest.approx(ratio)
        assert dense.layers[0].bound == "memory", (name, k, n)
        # Never above what the traffic allows; and never above the weight-byte ratio
        # when the dense schedule moves only compulsory bytes (weights once, input and
        # output once). With 8 KiB buffer halves a dense schedule may re-read the input
        # vector per column block, which the compressed weights' tiling avoids.
        compulsory = dense_bytes((k, n), "fp16") + 2 * (k + n)
        sparse_min = compressed_bytes((k, n), nm, 0, "fp16") + 2 * (k + n)
        bw = SMALL.dram.total_bytes_per_cycle
        # DRAM cannot deliver the compressed weights faster than its bandwidth:
        assert r.total_cycles >= sparse_min / bw
        assert r.speedup_vs_dense <= dense.total_cycles * bw / sparse_min
        if dense.dram_bytes == compulsory:
            assert r.speedup_vs_dense <= ratio, (name, k, n, r.speedup_vs_dense, ratio)
        if r.layers[0].bound == "memory" and dense_bytes((k, n), "fp16") >= LARGE:
            assert r.speedup_vs_dense >= 0.9 * ratio, (name, k, n, r.speedup_vs_dense)


@pytest.mark.parametrize("name", ["gpt2_small", "llama_7b"])
def test_llm_decode_batch_1_speedup_tends_to_byte_ratio(name):
    # The whole decode step with a short KV cache: weights dominate the traffic.
    r = simulate_inference(name, SMALL, InferenceOptions(nm="2:4", phase="decode",
                                                         kv_len=16, batch=1))
    assert 0.9 * r.weight_byte_ratio <= r.speedup_vs_dense <= r.weight_byte_ratio
    assert r.weight_byte_ratio == pytest.approx(1 / 0.5625, rel=2e-3)


def test_kv_cache_reads_lower_the_decode_speedup():
    # KV-cache reads are not compressed: a longer cache moves the speedup further from
    # the weight-byte ratio, never past it.
    s = [simulate_inference("gpt2_small", SMALL, InferenceOptions(
        nm="2:4", phase="decode", kv_len=kv)) for kv in (16, 1024)]
    assert s[1].kv_cache_bytes > s[0].kv_cache_bytes
    assert s[1].speedup_vs_dense < s[0].speedup_vs_dense <= s[0].weight_byte_ratio


def test_vcu1525_decode_gemvs_are_limited_by_the_array_not_dram():
    # The honest negative: on vcu1525 a batch-1 GEMV uses one PE row at one chunk per
    # accumulator latency (16 MACs/cycle), far below DRAM's 128 fp16 weights/cycle, so
    # the textbook roofline says memory-bound while the hardware is engine-bound, and the
    # N:M speedup follows the engine ratio (2x at 2:4), above the byte ratio.
    r = simulate_inference("gpt2_small", VCU1525, InferenceOptions(
        nm="2:4", phase="decode", kv_len=16, batch=1))
    proj = [x for x in r.layers if x.name.endswith(("attn.q", "mlp.c_fc"))]
    assert proj and all(x.ideal_bound == "memory" and x.bound == "compute" for x in proj)
    assert r.weight_byte_ratio < r.speedup_vs_dense <= VCU1525.array.sparse_speedup(NM(2, 4))


@pytest.mark.parametrize("spec", [llm.GPT2_SMALL, dataclasses.replace(
    llm.LLAMA_7B, name="gqa", layers=2, kv_heads=8)], ids=["gpt2", "gqa"])
def test_kv_cache_and_weight_bytes_are_exact(spec):
    kv_len, batch = 300, 2
    w = llm.workload(spec, "decode", batch, kv_len=kv_len)
    iw = InferenceWorkload(w, spec, llm.LlmPhase.DECODE, None, kv_len)
    r = simulate_inference(iw, VCU1525, InferenceOptions(nm="2:8", batch=batch,
                                                         phase="decode", kv_len=kv_len))
    # K and V of every layer, kv_heads x head_dim wide, read once per step (GQA: per KV
    # head, not per query head).
    assert r.kv_cache_bytes == 2 * spec.layers * batch * kv_len * spec.kv_dim * 2
    # Every weight is read exactly once per decode step, compressed at exact bit widths.
    want = sum(compressed_bytes((l.in_features, l.out_features), "2:8", 0, "fp16")
               for l in w.layers if isinstance(l, Linear))
    assert r.weight_bytes == want
    assert sum(r.bytes_per_layer.values()) == r.dram_bytes


def _intensity(k: int, n: int, batch: int, nm: str) -> float:
    """Dense-equivalent MACs over compulsory DRAM bytes: compressed weights read once,
    fp16 input and output."""
    w = compressed_bytes((k, n), nm, 0, "fp16") if nm != "1:1" else dense_bytes((k, n), "fp16")
    return batch * k * n / (w + 2 * batch * (k + n))


BATCHES = (1, 2, 4, 6, 8, 9, 10, 12, 16, 24, 32, 64, 128)


@pytest.mark.parametrize("nm", ["1:1", "2:4", "2:8"])
def test_roofline_transition_matches_independent_intensity(nm):
    k = n = 1024
    peak = VCU1525.array.peak_macs_per_cycle * VCU1525.array.sparse_speedup(NM.parse(nm)) \
        if nm != "1:1" else VCU1525.array.peak_macs_per_cycle
    ridge = peak / (VCU1525.dram.channels * VCU1525.dram.bytes_per_cycle)
    got, want = [], []
    for b in BATCHES:
        w = Workload("fc", (Linear("fc", in_features=k, out_features=n),), batch=b)
        r = simulate_inference(InferenceWorkload(w), VCU1525, InferenceOptions(nm=nm, batch=b))
        layer = r.layers[0]
        i = _intensity(k, n, b, nm)
        assert layer.intensity == pytest.approx(i, rel=1e-12)
        assert r.roofline["ridge"] == ridge
        got.append(layer.ideal_bound)
        want.append("memory" if i < ridge else "compute")
    assert got == want
    assert "memory" in want and "compute" in want  # the grid spans the transition


def test_simulated_transition_on_small_matches_the_roofline():
    # On `small` (4x4 PEs, one-cycle accumulator, 16 B/cycle DRAM) a dense GEMV batch
    # fills the array like the roofline assumes, so the simulated classification flips
    # where the independent intensity crosses the ridge (4 MAC/B).
    k = n = 1024
    ridge = SMALL.array.peak_macs_per_cycle / SMALL.dram.total_bytes_per_cycle
    sim, ideal = [], []
    for b in range(1, 17):
        w = Workload("fc", (Linear("fc", in_features=k, out_features=n),), batch=b)
        r = simulate_inference(InferenceWorkload(w), SMALL, InferenceOptions(nm="1:1", batch=b))
        sim.append(r.layers[0].bound)
        ideal.append("memory" if _intensity(k, n, b, "1:1") < ridge else "compute")
    assert sim == ideal, (sim, ideal)
