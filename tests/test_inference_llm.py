"""LLM serving workloads (workloads/llm.py) and the inference CLI."""

from __future__ import annotations

import dataclasses
import json

import pytest

from nmsat.commands import main
from nmsat.config import SMALL, VCU1525
from nmsat.simulator.inference import InferenceOptions, simulate_inference
from nmsat.workloads import llm, zoo
from nmsat.workloads.layers import Matmul


def test_presets_match_published_parameter_counts():
    assert llm.build(llm.LLAMA_7B, "prefill", 16).params == 6_738_415_616  # Llama-2-7B
    assert llm.build(llm.GPT2_SMALL, "prefill", 16).params == zoo.model("gpt2_small").params
    # GPT-2 prefill is the zoo's full-sequence model, MAC for MAC.
    assert llm.workload("gpt2_small", "prefill", seq_len=1024).macs_per_sample == \
        zoo.get("gpt2_small").macs_per_sample
    assert zoo.model("llama_7b", seq_len=64).params == 6_738_415_616


def test_decode_shapes_with_grouped_query_attention():
    s = dataclasses.replace(llm.LLAMA_7B, kv_heads=8)
    w = llm.workload(s, "decode", batch=3, kv_len=500)
    q = w.layer("model.layers.0.self_attn.q_proj")
    k = w.layer("model.layers.0.self_attn.k_proj")
    sc = w.layer("model.layers.0.self_attn.scores")
    ctx = w.layer("model.layers.0.self_attn.context")
    assert (q.tokens, q.in_features, q.out_features) == (1, 4096, 4096)
    assert k.out_features == 8 * 128
    # 4 query heads share each KV head's cache: [4, 128] x [128, 500] per KV head.
    assert (sc.m, sc.n, sc.k, sc.count) == (4, 500, 128, 8)
    assert (ctx.m, ctx.n, ctx.k, ctx.count) == (4, 128, 500, 8)
    assert {l.name for l in w.layers if isinstance(l, Matmul)} == set(llm.kv_cache_layers(w))
    # FFN: SwiGLU gate, up and down projections
    assert w.layer("model.layers.0.mlp.gate_proj").out_features == 11008
    assert w.layer("model.layers.0.mlp.down_proj").in_features == 11008
    # Decode MACs: 2 d^2 (1 + kv/heads) + 3 d ffn per layer, attention 2 kv_len d, the head.
    d, L = 4096, 32
    per_layer = 2 * d * d + 2 * d * 1024 + 3 * d * 11008 + 2 * 500 * d
    assert w.macs() == 3 * (L * per_layer + d * 32000)


@pytest.mark.parametrize("phase,kw", [("prefill", {"seq_len": 32}),
                                      ("decode", {"kv_len": 100})])
def test_gpt2_has_hugging_faces_fused_qkv_projection(phase, kw):
    """GPT2Attention computes q, k and v in one Conv1D ``c_attn`` (768 -> 2304, with bias)
    and splits its output; its layers carry Hugging Face's names."""
    m = llm.build(llm.GPT2_SMALL, phase, **kw)
    names = [l.name for l in m.layers if l.name.startswith("h.0.")]
    assert names == ["h.0.ln_1", "h.0.attn.c_attn", "h.0.attn.scores", "h.0.attn.softmax",
                     "h.0.attn.context", "h.0.attn.c_proj", "h.0.add_1", "h.0.ln_2",
                     "h.0.mlp.c_fc", "h.0.mlp.act", "h.0.mlp.c_proj", "h.0.add_2"]
    qkv = m.layers[[l.name for l in m.layers].index("h.0.attn.c_attn")]
    tokens = kw.get("seq_len", 1)
    assert (qkv.tokens, qkv.in_features, qkv.out_features) == (tokens, 768, 2304)
    assert m.params == 124_439_808  # with its 2304 biases, as three 768-wide projections
    sc, ctx = (m.layers[[l.name for l in m.layers].index(f"h.0.attn.{n}")]
               for n in ("scores", "context"))
    # both products read slices of c_attn's output: q and k, then the probabilities and v
    assert m.inputs[sc.name] == ("h.0.attn.c_attn", "h.0.attn.c_attn")
    assert m.inputs[ctx.name] == ("h.0.attn.softmax", "h.0.attn.c_attn")
    assert {sc.name, ctx.name} <= m.gathers
    keys = kw.get("kv_len", tokens)
    assert (sc.m, sc.n, sc.k, sc.count) == (tokens, keys, 64, 12)
    # q, k and v are c_attn's three 768-wide slices (the decode cache adds earlier keys)
    assert sc.count * sc.m * sc.k + 2 * 768 * tokens == tokens * qkv.out_features
    assert llm.kv_cache_layers(m.workload()) == (
        () if phase == "prefill" else tuple(l.name for l in m.layers if isinstance(l, Matmul)))
    assert llm.layer_names(llm.GPT2_SMALL, 3)["qkv"] == "h.3.attn.c_attn"
    assert "q" not in llm.layer_names(llm.GPT2_SMALL, 3)
    assert llm.GPT2_SMALL.fused_qkv and not llm.LLAMA_7B.fused_qkv
    assert llm.GPT2_SMALL.kv_cache_bytes(keys, 1, 2) == 12 * 2 * keys * 768 * 2


@pytest.mark.parametrize("kw,msg", [
    ({"kv_heads": 5}, r"^DecoderSpec.kv_heads must divide heads \(32\), not 5$"),
    ({"hidden": 100}, r"^DecoderSpec.hidden \(100\) must be a multiple of heads \(32\)$"),
    ({"layers": 0}, r"^DecoderSpec.layers must be a positive integer, not 0$"),
])
def test_spec_validation(kw, msg):
    with pytest.raises(ValueError, match=msg):
        dataclasses.replace(llm.LLAMA_7B, **kw)


def test_phase_length_errors():
    with pytest.raises(ValueError, match=r"^the decode phase needs kv_len"):
        llm.workload("llama_7b", "decode")
    with pytest.raises(ValueError, match=r"^kv_len 5000 exceeds llama_7b's 4096 positions$"):
        llm.workload("llama_7b", "decode", kv_len=5000)
    with pytest.raises(ValueError, match=r"^unknown LlmPhase 'train'"):
        llm.workload("llama_7b", "train")
    with pytest.raises(ValueError, match=r"^'bert_base' is not an LLM workload"):
        llm.spec("bert_base")


@pytest.mark.parametrize("cfg,name,kw", [
    (VCU1525, "gpt2_small", {"phase": "decode", "kv_len": 700, "batch": 3}),
    (VCU1525, "gpt2_small", {"phase": "prefill", "seq_len": 64, "batch": 2}),
    (SMALL, "gpt2_small", {"phase": "decode", "kv_len": 100}),
    (VCU1525, "llama_7b", {"phase": "decode", "kv_len": 2048}),
])
def test_identical_layer_extension_equals_full_simulation(cfg, name, kw):
    opts = InferenceOptions(nm="2:8", **kw)
    fast = simulate_inference(name, cfg, opts)
    full = simulate_inference(name, cfg, dataclasses.replace(opts, exact=True))
    assert fast.extended_layers and not full.extended_layers
    assert dataclasses.replace(fast, extended_layers=False).to_dict() == full.to_dict()


def test_tokens_per_second():
    d = simulate_inference("gpt2_small", VCU1525, InferenceOptions(
        nm="2:4", phase="decode", kv_len=128, batch=4))
    assert d.tokens == 4 and d.tokens_per_second == pytest.approx(4 / d.seconds)
    assert d.dense_tokens_per_second == pytest.approx(4 / (d.dense_total_cycles
                                                           * VCU1525.cycle_seconds))
    p = simulate_inference("gpt2_small", VCU1525, InferenceOptions(
        nm="2:4", phase="prefill", seq_len=32, batch=2))
    assert p.tokens == 64 and p.tokens_per_second == pytest.approx(64 / p.seconds)
    assert simulate_inference("mlp", VCU1525, InferenceOptions()).tokens_per_second is None


def test_cli_json(tmp_path, capsys):
    out = tmp_path / "d.json"
    assert main(["simulate", "gpt2_small", "--mode", "inference", "--phase", "decode",
                 "--kv-len", "256", "--batch", "1", "--nm", "2:4", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "tokens/s" in text and "speedup" in text
    data = json.loads(out.read_text())
    for key in ("workload", "config", "method", "nm", "batch", "total_cycles", "seconds",
                "phase_cycles", "stall_cycles", "utilization", "dram_bytes", "energy_pj",
                "dense_total_cycles", "speedup_vs_dense", "layers", "tokens_per_second",
                "bytes_per_layer", "kv_cache_bytes", "weight_bytes", "roofline", "options",
                "effective_utilization", "counts"):
        assert key in data, key
    assert data["phase"] == "decode" and data["kv_len"] == 256 and data["mode"] == "inference"
    assert all(x["bound"] in ("compute", "array", "memory", "dependency")
               for x in data["layers"])
    assert all(x["dense_bound"] in ("compute", "array", "memory", "dependency")
               for x in data["layers"])
    assert data["bytes_per_layer"] == {x["name"]: x["dram_bytes"] for x in data["layers"]}
    assert sum(data["phase_cycles"].values()) == data["total_cycles"]
    # deterministic: the same run gives the same bytes
    out2 = tmp_path / "d2.json"
    main(["simulate", "gpt2_small", "--mode", "inference", "--phase", "decode", "--kv-len",
          "256", "--batch", "1", "--nm", "2:4", "--json", str(out2)])
    assert out2.read_bytes() == out.read_bytes()


@pytest.mark.parametrize("argv,msg", [
    (["resnet18", "--phase", "decode"], "--phase is only for --mode inference"),
    (["resnet18", "--mode", "inference", "--phase", "decode"],
     f"--phase is for LLM workloads ({', '.join(llm.PRESETS)}), not resnet18"),
    (["llama_7b", "--mode", "inference", "--kv-len", "9"], "--kv-len is for the decode phase"),
    (["mlp", "--mode", "inference", "--act-density", "x"],
     "argument --act-density: must be a number between 0 and 1, not 'x'"),
    (["mlp", "--mode", "inference", "--act-zero", "maybe"], "argument --act-zero: invalid"),
    (["mlp", "--mode", "inference", "--method", "srste"],
     "--method srste is for training; inference takes the weights' pattern from --nm"),
    (["mlp", "--mode", "inference", "--method", "dense", "--nm", "2:4"],
     "--method dense runs dense weights: it contradicts --nm 2:4"),
    (["mlp", "--top", "3"], "--top is only for --mode inference"),
    (["mlp", "--mode", "inference", "--top", "-1"], "argument --top"),
    (["mlp", "--mode", "inference", "--no-pregen"],
     "--no-pregen is for training: inference has no SORE mask generation"),
])
def test_cli_bad_input_is_one_line_and_status_2(argv, msg, capsys):
    assert main(["simulate", *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and msg in err, err


@pytest.mark.parametrize("name", list(llm.PRESETS))
def test_decode_defaults_to_the_default_prefill_context(name):
    # Without --kv-len a decode step attends the context a default prefill leaves:
    # llm.DEFAULT_CONTEXT positions, or the model's positions if fewer.
    from nmsat.dataflow.inference_workload import InferenceOptions, load

    s = llm.spec(name)
    want = min(1024, s.max_positions)
    dec = load(name, InferenceOptions(nm="2:4", batch=1, phase="decode"))
    pre = load(name, InferenceOptions(nm="2:4", batch=1))
    assert dec.kv_len == want == pre.seq_len == llm.default_context(s)
    assert dec.workload == load(name, InferenceOptions(nm="2:4", batch=1, phase="decode",
                                                       kv_len=want)).workload


def test_method_dense_in_inference_is_nm_1_1(tmp_path, capsys):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    assert main(["simulate", "mlp", "--mode", "inference", "--method", "dense",
                 "--json", str(a)]) == 0
    assert main(["simulate", "mlp", "--mode", "inference", "--nm", "1:1",
                 "--json", str(b)]) == 0
    assert a.read_bytes() == b.read_bytes()
    assert json.loads(a.read_text())["nm"] == "1:1"


def test_inference_summary_first_and_top_limits_layer_lines(capsys):
    from nmsat.config import resolve
    from nmsat.dataflow.inference_workload import InferenceOptions
    from nmsat.simulator.inference import simulate_inference

    assert main(["simulate", "stories260k", "--mode", "inference", "--phase", "decode",
                 "--config", "small", "--batch", "1", "--top", "4"]) == 0
    out = capsys.readouterr().out.splitlines()
    r = simulate_inference("stories260k", resolve("small"), InferenceOptions(
        nm="2:8", batch=1, phase="decode"))
    # the summary comes before the per-layer lines
    head = next(i for i, x in enumerate(out) if x.startswith("layer "))
    assert any(x.startswith("total ") for x in out[:head])
    assert any(x.startswith("speedup ") for x in out[:head])
    rows = out[head + 1:head + 5]
    want = sorted(r.layers, key=lambda x: -x.total_cycles)[:4]
    assert [x.split()[0] for x in rows] == [x.name for x in want]
    assert out[head + 5].startswith("bound: ")  # nothing past the 4 rows
    # the bound counts are every layer's, whatever --top shows
    counts = {b: sum(x.bound == b for x in r.layers)
              for b in ("compute", "array", "memory", "dependency")}
    line = next(x for x in out if x.startswith("bounds "))
    for b, n in counts.items():
        assert f"{n} {b}" in line
    assert f"of {len(r.layers)} layers" in line
    assert main(["simulate", "stories260k", "--mode", "inference", "--phase", "decode",
                 "--config", "small", "--batch", "1", "--top", "0"]) == 0
    out = capsys.readouterr().out.splitlines()
    head = next(i for i, x in enumerate(out) if x.startswith("layer "))
    assert [x.split()[0] for x in out[head + 1:head + 1 + len(r.layers)]] == \
        [x.name for x in r.layers]
