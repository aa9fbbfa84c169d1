"""Inference on the memory side: memory-bound speedups against the weight-byte ratio,
KV-cache and compressed-weight traffic, and the roofline transition as batch grows."""

from __future__ import annotations

import dataclasses

import pytest
from hoist_slack import hoist_cycles, ratio_slack

from nmsat.config import SMALL, VCU1525
from nmsat.dataflow.timing import Geometry
from nmsat.reference import compressed_bytes, dense_bytes
from nmsat.simulator.inference import InferenceOptions, InferenceWorkload, load, simulate_inference
from nmsat.types import NM
from nmsat.workloads import llm, zoo
from nmsat.workloads.layers import Linear, Workload


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


_RUNS: dict = {}


def _decode_batch_1(name: str, nm: str, cfg):
    """The whole model at batch 1 (an LLM's decode step with a 16-position cache)."""
    key = (name, nm, cfg.name)
    if key not in _RUNS:
        kw = {"phase": "decode", "kv_len": 16} if llm.is_llm(name) else {}
        _RUNS[key] = simulate_inference(name, cfg, InferenceOptions(nm=nm, batch=1, **kw))
    return _RUNS[key]


LARGE = 1 << 20
"""Dense weight bytes from which a layer's weight stream dominates its fixed costs (DRAM
latency of 10 cycles, array fill and drain of 8-12 cycles on `small`: under 0.1% of the
65,536 cycles 1 MiB takes at 16 B/cycle), so its speedup must have come close to the
ratio of the bytes it moves."""


def _slack(cfg) -> int:
    """Cycles a layer's attributed time may move at its boundaries: the DRAM latency of
    the first load of the next layer, once at each end."""
    return 2 * cfg.dram.latency_cycles


@pytest.mark.parametrize("nm", ["2:4", "2:8"])
@pytest.mark.parametrize("name", zoo.names())
def test_memory_bound_layer_speedup_tends_to_and_never_exceeds_byte_ratio(name, nm):
    # On `small` (16 multipliers, 16 B/cycle DRAM) a batch-1 GEMV streams its weights
    # faster than DRAM delivers them, so decode layers are memory-bound. For every layer
    # that is memory-bound both in the N:M run and in its dense baseline, both times are
    # set by the bytes moved, so the speedup cannot beat the ratio of the bytes the two
    # runs really moved for that layer (compressed weights with their indices, plus the
    # same activations), up to the DRAM latency at the layer's two boundaries.
    r = _decode_batch_1(name, nm, SMALL)
    checked = close = 0  # layers the upper and the lower bound apply to
    for x in r.layers:
        if not x.dense_macs or not x.total_cycles:
            continue
        assert x.bound in ("compute", "array", "memory", "dependency")
        if x.bound != "memory":
            continue
        bw = SMALL.dram.total_bytes_per_cycle
        # DRAM floor, but for its first weight block, which may stream in the previous
        # layer's time (hoisted ahead of the barrier)
        assert x.total_cycles >= x.dram_bytes / bw - _slack(SMALL) - \
            hoist_cycles(name, nm, SMALL), x.name
        if x.dense_bound != "memory":
            continue  # dense time set by the array: the byte ratio does not bound it
        checked += 1
        assert x.dense_total_cycles <= x.byte_ratio * x.total_cycles + _slack(SMALL) + \
            ratio_slack(name, nm, SMALL, x.byte_ratio), (x.name, x.speedup_vs_dense,
                                                        x.byte_ratio)
        # Lower bound where the weight stream is the layer's time: large weights, most of
        # its bytes, and no wait for another unit (a classifier after a pooling op on
        # the vector lanes waits the same fixed time in both runs, diluting the ratio).
        if x.nm != "1:1" and x.dense_dram_bytes >= LARGE and \
                x.weight_bytes * x.byte_ratio >= 0.9 * x.dense_dram_bytes and \
                x.total_cycles <= 1.1 * x.dram_cycles:
            close += 1
            assert x.speedup_vs_dense >= 0.9 * x.byte_ratio, \
                (x.name, x.speedup_vs_dense, x.byte_ratio)
    if llm.is_llm(name):  # every projection of a decode step is memory-bound here ...
        assert checked, name
        # ... and a large-weight one in all but stories260k (64 wide, a few KiB each)
        assert close or name == "stories260k", name


@pytest.mark.parametrize("name", zoo.names())
def test_vcu1525_layers_stay_under_their_limiters_ratio(name):
    # On vcu1525 a batch-1 GEMV streams its weights at DRAM speed (shadow weights,
    # docs/architecture.md 4.2), so decode layers are memory-bound: such a layer (dense
    # baseline memory-bound too) may not exceed the byte ratio of what it moves; an
    # array-bound layer may not exceed the engine ratio. Besides the DRAM latency at each
    # end, a layer's time ends with its last block's compute, which no transfer overlaps
    # and which scales with the engine ratio, not the byte ratio: its fill and drain
    # (Cs + R La + C - 1) are allowed once more.
    g = Geometry.of(VCU1525)
    tail = g.segment + g.rows * g.acc_latency + g.cols - 1
    for nm in ("2:4", "2:8"):
        r = _decode_batch_1(name, nm, VCU1525)
        for x in r.layers:
            if not x.dense_macs or not x.total_cycles:
                continue
            slack = _slack(VCU1525) + tail
            if x.bound in ("compute", "array"):
                peak = VCU1525.array.sparse_speedup(NM.parse(x.nm)) if x.nm != "1:1" else 1.0
                assert x.dense_total_cycles <= peak * x.total_cycles + slack, \
                    (x.name, x.speedup_vs_dense, peak)
            elif x.bound == "memory" and x.dense_bound == "memory":
                slack += ratio_slack(name, nm, VCU1525, x.byte_ratio)
                assert x.dense_total_cycles <= x.byte_ratio * x.total_cycles + slack, \
                    (x.name, x.speedup_vs_dense, x.byte_ratio)


@pytest.mark.parametrize("cfg", [SMALL, VCU1525], ids=lambda c: c.name)
@pytest.mark.parametrize("name", zoo.names())
def test_bound_names_what_the_simulated_time_follows(name, cfg):
    # roofline.bound compares closed-form engine cycles with DRAM cycles; check it against
    # the simulated cycles: the time of a compute- or memory-bound layer is closer to the
    # limiter it names than to the other one, and never below it; a dependency-bound layer
    # spent more than twice its own lower bound (waiting for another unit).
    r = _decode_batch_1(name, "2:4", cfg)
    for x in r.layers:
        if not x.dense_macs or not x.total_cycles:
            continue
        eng, dram = x.engine_cycles, x.dram_cycles
        if x.bound == "dependency":
            assert x.total_cycles > 2 * max(eng, dram), x.name
            continue
        named, other = (eng, dram) if x.bound in ("compute", "array") else (dram, eng)
        assert named >= other, x.name
        hoist = hoist_cycles(name, "2:4", cfg) if x.bound == "memory" else 0
        assert x.total_cycles >= named - _slack(cfg) - hoist, x.name
        assert abs(x.total_cycles - named) <= abs(x.total_cycles - other), x.name


@pytest.mark.parametrize("name", ["gpt2_small", "llama_7b"])
def test_llm_decode_batch_1_speedup_tends_to_byte_ratio(name):
    # The whole decode step with a short KV cache: weights dominate the traffic.
    r = simulate_inference(name, SMALL, InferenceOptions(nm="2:4", phase="decode",
                                                         kv_len=16, batch=1))
    # Each GEMV's last weight block computes with no transfer left to hide it, and that
    # compute shrinks by the engine ratio (2x at 2:4), not the byte ratio (1.78x): the step
    # may pass the byte ratio by that exposed share (small, per-half banks: 1.7792 against
    # 1.7778), never by 1%.
    assert 0.9 * r.weight_byte_ratio <= r.speedup_vs_dense <= 1.01 * r.weight_byte_ratio
    assert r.weight_byte_ratio == pytest.approx(1 / 0.5625, rel=2e-3)


def test_kv_cache_reads_lower_the_decode_speedup():
    # KV-cache reads are not compressed: a longer cache moves the speedup further from
    # the weight-byte ratio (past which only the exposed last-block compute can take it,
    # see above).
    s = [simulate_inference("gpt2_small", SMALL, InferenceOptions(
        nm="2:4", phase="decode", kv_len=kv)) for kv in (16, 1024)]
    assert s[1].kv_cache_bytes > s[0].kv_cache_bytes
    assert s[1].speedup_vs_dense < s[0].speedup_vs_dense <= 1.01 * s[0].weight_byte_ratio
    assert s[1].speedup_vs_dense < s[1].weight_byte_ratio


def test_vcu1525_decode_gemvs_are_dram_bound_with_shadow_weights():
    # Without shadow weights (docs/architecture.md 4.2) a batch-1 GEMV on vcu1525 is fed
    # one chunk per accumulator latency (OS, one slot) or waits 91 cycles per WS tile, so
    # the textbook roofline says memory-bound while the hardware is engine-bound, and the
    # N:M speedup follows the engine ratio (2x at 2:4), above the byte ratio. With them
    # (the preset) the projections are memory-bound and the speedup stays under it.
    opts = InferenceOptions(nm="2:4", phase="decode", kv_len=16, batch=1)
    off = simulate_inference("gpt2_small", VCU1525.replace(**{"array.shadow_weights": False}),
                             opts)
    proj = [x for x in off.layers if x.name.endswith(("attn.c_attn", "mlp.c_fc"))]
    assert proj and all(x.ideal_bound == "memory" and x.bound == "array" for x in proj)
    # one output row fills one of the 16 PE rows: at most 1/16 of the array's peak
    assert all(x.array_fill <= 1 / 16 and x.limiter_ratio <= 1 / 16 for x in proj)
    assert off.weight_byte_ratio < off.speedup_vs_dense <= \
        VCU1525.array.sparse_speedup(NM(2, 4))
    on = simulate_inference("gpt2_small", VCU1525, opts)
    proj = [x for x in on.layers if x.weight_bytes]
    assert proj and all(x.bound == x.dense_bound == "memory" for x in proj)
    assert on.speedup_vs_dense < on.weight_byte_ratio
    assert on.total_cycles < off.total_cycles / 5


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
        # Compulsory bytes, plus, with shadow weights (docs/architecture.md 4.2), the
        # activation rows (2 b k bytes) re-read once per further column block when the
        # planner splits a small-batch GEMV so its loads overlap compute: at most once
        # per further column tile of C columns. Never fewer than the compulsory bytes.
        most = b * k * n / (b * k * n / i + (n // VCU1525.array.cols - 1) * 2 * b * k)
        assert most <= layer.intensity <= i * (1 + 1e-12)
        if b >= 16:  # past a few rows the blocks keep the whole activation: exact
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


def test_transition_figure_matches_independent_intensity(tmp_path):
    # The speedup-vs-batch figure of one 1024 x 1024 GEMM: its textbook transition (the
    # dash-dot line) is where the independently computed intensity crosses the ridge;
    # the simulated memory-bound points (open markers) never lie beyond it, because past
    # the ridge DRAM delivers the bytes faster than even the array's peak could use them.
    from nmsat.reports import inference_figures as F
    from nmsat.simulator import inference_sweeps as S

    csv = tmp_path / "fc.csv"
    csv.write_text("Layer, M, N, K, Batch Size,\nfc, 1, 1024, 1024, 1,\n")
    k = n = 1024
    for cfg, batches in ((VCU1525, BATCHES), (SMALL, tuple(range(1, 21)))):
        d = S.speedup_vs_batch(str(csv), cfg, ["2:4", "2:8"], batches)
        p = F.speedup_batch_figure(d)
        for nm in ("2:4", "2:8"):
            ridge = cfg.array.peak_macs_per_cycle * cfg.array.sparse_speedup(NM.parse(nm)) \
                / cfg.dram.total_bytes_per_cycle
            want = ["memory" if _intensity(k, n, b, nm) < ridge else "compute"
                    for b in batches]
            ideal = d["ideal_bound"][nm]
            if cfg is VCU1525:  # the schedule moves only compulsory bytes: exact
                assert ideal == want, (cfg.name, nm)
            else:  # 16 KiB buffers re-read some operands: the intensity can only be lower
                assert all(i == "memory" for i, w in zip(ideal, want) if w == "memory")
            first = next(b for b, i in zip(batches, ideal) if i == "compute")
            line = p.artists["ridge_crossing"][nm]
            assert list(line.get_xdata()) == [first, first]
            sim = d["bound"][nm]
            assert sim[0] == "memory" or cfg is VCU1525, (cfg.name, nm, sim)
            # past the ridge the engine side limits: the array at its peak (compute) or an
            # array the batch fills under half of (array: vcu1525's 2:4 at batch 16, a
            # quarter of the rows x accumulator slots)
            assert all(s in ("compute", "array") for s, i in zip(sim, ideal)
                       if i == "compute"), \
                (cfg.name, nm, sim)
            pts = p.artists["memory_points"][nm].get_offsets()
            assert [float(x) for x, _ in pts] == [b for b, s in zip(batches, sim)
                                                  if s == "memory"]
            assert [row[4] for row in p.table.rows if row[0] == nm] == ideal
        # memory-bound batch-1 GEMV on small: the speedup is the byte ratio's, not the
        # engine's (2x on small for both patterns)
        if cfg is SMALL:
            assert d["speedup"]["2:8"][0] == pytest.approx(byte_ratio(k, n, "2:8"), rel=0.03)
