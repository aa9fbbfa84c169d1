"""The model zoo: published MAC and parameter figures, shape chaining, per-phase GEMMs."""

from __future__ import annotations

import math
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nmsat.types import Phase
from nmsat.workloads import zoo
from nmsat.workloads.layers import Conv2d, Elementwise, Linear, Matmul, OpKind

ALL = zoo.names()

# torchvision's published per-image figures (``weights.meta["_ops"]``, GMACs at 224x224,
# which torchvision labels GFLOPS) and ``_num_params``.
TORCHVISION = {
    "resnet18": (1.81, 11_689_512),
    "resnet50": (4.09, 25_557_032),
    "vgg16": (15.47, 138_357_544),
    "mobilenet_v2": (0.30, 3_504_872),
    "vit_b_16": (17.56, 86_567_656),
}


@pytest.mark.parametrize("name", sorted(TORCHVISION))
def test_macs_match_torchvision_within_1_percent(name):
    gmacs, _ = TORCHVISION[name]
    macs = zoo.get(name).macs_per_sample
    assert abs(macs / 1e9 - gmacs) / gmacs < 0.01, macs


@pytest.mark.parametrize("name", sorted(TORCHVISION))
def test_params_match_torchvision_exactly(name):
    assert zoo.model(name).params == TORCHVISION[name][1]


def test_exact_mac_counts():
    # Independent closed forms. ViT-B/16: patch embedding conv, 12 layers of
    # 4 d^2 + 2 d ff projections per token plus 2 s^2 d attention products, the head.
    s, d, ff = 197, 768, 3072
    vit = 196 * 768 * 3 * 16 * 16 + 12 * (s * (4 * d * d + 2 * d * ff) + 2 * s * s * d) + d * 1000
    assert zoo.get("vit_b_16").macs_per_sample == vit
    # torchvision's 17.56 G includes the attention matmuls: without them it is 4% lower.
    attn = sum(layer.macs() for layer in zoo.model("vit_b_16").layers
               if isinstance(layer, Matmul))
    assert attn == 12 * 2 * s * s * d
    assert (vit - attn) / 1e9 < 17.56 * 0.99
    assert zoo.get("mlp").macs_per_sample == 64 * 256 + 256 * 256 + 256 * 10
    assert zoo.get("cnn").macs_per_sample == 64 * 9 * 16 + 64 * 9 * 16 * 32 + 512 * 64 + 64 * 10


def test_language_model_figures():
    # Hugging Face parameter counts: bert-base-uncased BertModel (with the pooler) and GPT-2
    # small (LM head tied to the token embedding).
    assert zoo.model("bert_base").params == 109_482_240
    assert zoo.model("gpt2_small").params == 124_439_808
    d, ff = 768, 3072
    for seq in (1, 128, 384):
        per_layer = seq * (4 * d * d + 2 * d * ff) + 2 * seq * seq * d
        assert zoo.get("bert_base", seq_len=seq).macs_per_sample == 12 * per_layer + d * d
    seq = 1024
    per_layer = seq * (4 * d * d + 2 * d * ff) + 2 * seq * seq * d
    assert zoo.get("gpt2_small").macs_per_sample == 12 * per_layer + seq * d * 50257


def test_cifar_variants():
    # kuangliu/pytorch-cifar parameter counts for the same adaptations.
    assert zoo.model("resnet18_cifar").params == 11_173_962
    assert zoo.model("resnet50_cifar").params == 23_520_842
    assert zoo.model("resnet18_cifar").layers[0].in_shape == (3, 32, 32)
    # Hand count: stem, layer1 (4 convs at 32x32), layers 2-4 (a strided conv, three
    # convs and a 1x1 downsample each, the same MACs per stage), the classifier.
    stage = 16 * 16 * 576 * 128 + 3 * 16 * 16 * 1152 * 128 + 16 * 16 * 64 * 128
    hand = 32 * 32 * 27 * 64 + 4 * 32 * 32 * 576 * 64 + 3 * stage + 512 * 10
    assert zoo.get("resnet18_cifar").macs_per_sample == hand == 555_422_720
    for name in ("resnet18_cifar", "resnet50_cifar", "vgg16_cifar", "mobilenet_v2_cifar"):
        last = zoo.model(name).layers[-1]
        assert isinstance(last, Linear) and last.out_features == 10


def test_digits_models_exact_definition():
    mlp = zoo.model("mlp")
    assert [(l.name, type(l).__name__) for l in mlp.layers] == [
        ("fc1", "Linear"), ("relu1", "Elementwise"), ("fc2", "Linear"),
        ("relu2", "Elementwise"), ("fc3", "Linear")]
    assert [(l.in_features, l.out_features) for l in mlp.layers if isinstance(l, Linear)] == [
        (64, 256), (256, 256), (256, 10)]
    cnn = zoo.model("cnn")
    assert [l.name for l in cnn.layers] == ["conv1", "relu1", "conv2", "relu2", "pool", "fc1",
                                            "relu3", "fc2"]
    conv1, conv2 = cnn.layers[0], cnn.layers[2]
    assert (conv1.in_shape, conv1.out_shape, conv1.kh, conv1.padding) == ((1, 8, 8),
                                                                          (16, 8, 8), 3, 1)
    assert (conv2.in_shape, conv2.out_shape) == ((16, 8, 8), (32, 8, 8))
    cw = cnn.workload()
    pool = cw.layer("pool")
    assert (pool.kind, pool.in_shape, pool.out_shape) == (OpKind.POOL, (32, 8, 8), (32, 4, 4))
    assert (cw.layer("fc1").in_features, cw.layer("fc1").out_features) == (512, 64)
    assert (cw.layer("fc2").in_features, cw.layer("fc2").out_features) == (64, 10)


def _compatible(out: tuple[int, ...], inp: tuple[int, ...]) -> bool:
    """Equal shapes, or a view (flatten, heads split/merged) of the same elements."""
    return out == inp if len(out) == len(inp) else math.prod(out) == math.prod(inp)


@pytest.mark.parametrize("name", ALL)
def test_shapes_chain(name):
    m = zoo.model(name)
    outs = {zoo.INPUT: m.input_shape}
    seen = set()
    for layer in m.layers:
        srcs = m.inputs[layer.name]
        assert srcs and all(s in outs for s in srcs), (layer.name, srcs)  # producers run first
        if layer.name not in m.gathers:
            assert _compatible(outs[srcs[0]], layer.in_shape), (layer.name, outs[srcs[0]],
                                                                 layer.in_shape)
            if isinstance(layer, Matmul):  # B operand: count x k x n elements
                assert math.prod(outs[srcs[1]]) == layer.count * layer.k * layer.n, layer.name
            if isinstance(layer, Elementwise) and layer.kind is OpKind.ADD:
                assert all(_compatible(outs[s], layer.shape) for s in srcs), layer.name
        outs[layer.name] = layer.out_shape
        seen.add(layer.name)
        if isinstance(layer, Elementwise):
            assert layer.elements == math.prod(layer.out_shape)
    # every layer but the last feeds another one (nothing dangles)
    consumed = {s for srcs in m.inputs.values() for s in srcs}
    assert {l.name for l in m.layers[:-1]} <= consumed


def test_sequential_models_chain_strictly():
    # Without branches, each layer reads exactly the previous one's output.
    for name in ("mlp", "cnn", "vgg16", "vgg16_cifar"):
        m = zoo.model(name)
        prev = zoo.INPUT
        for layer in m.layers:
            assert m.inputs[layer.name] == (prev,)
            prev = layer.name


def test_resnet_block_structure():
    m = zoo.model("resnet18")
    assert m.inputs["layer2.0.add"] == ("layer2.0.bn2", "layer2.0.downsample.1")
    assert m.inputs["layer1.0.add"] == ("layer1.0.bn2", "maxpool")
    ds = m.layers[[l.name for l in m.layers].index("layer2.0.downsample.0")]
    assert (ds.kh, ds.stride, ds.in_shape, ds.out_shape) == (1, 2, (64, 56, 56), (128, 28, 28))
    dw = zoo.model("mobilenet_v2").layers[3]  # features.1.conv.0.0: the first depthwise conv
    assert isinstance(dw, Conv2d) and dw.groups == dw.in_ch == dw.out_ch == 32


def test_attention_layers():
    m = zoo.model("bert_base", seq_len=64)
    scores = m.workload().layer("encoder.layer.0.attention.self.scores")
    ctx = m.workload().layer("encoder.layer.0.attention.self.context")
    assert (scores.m, scores.n, scores.k, scores.count) == (64, 64, 64, 12)
    assert (ctx.m, ctx.n, ctx.k, ctx.count) == (64, 64, 64, 12)
    sm = m.workload().layer("encoder.layer.0.attention.self.softmax")
    assert sm.kind is OpKind.SOFTMAX and sm.shape == (12, 64, 64)
    kinds = {l.kind for l in m.layers if isinstance(l, Elementwise)}
    assert kinds == {OpKind.NORM, OpKind.ACT, OpKind.SOFTMAX, OpKind.ADD}


@pytest.mark.parametrize("name", ALL)
def test_weight_layers_phases_have_equal_macs(name):
    w = zoo.get(name, batch=3)
    for layer in w.layers:
        ff = sum(g.macs for g in layer.gemms(Phase.FF, 3))
        if layer.has_weights:
            for phase in (Phase.BP, Phase.WG):
                assert sum(g.macs for g in layer.gemms(phase, 3)) == ff, (layer.name, phase)
        elif isinstance(layer, Matmul):  # BP computes both operand gradients
            assert sum(g.macs for g in layer.gemms(Phase.BP, 3)) == 2 * ff
        else:
            assert ff == 0
    assert w.macs(Phase.FF) == 3 * w.macs_per_sample


@settings(max_examples=25, deadline=None)
@given(name=st.sampled_from(ALL), batch=st.integers(1, 64))
def test_batch_scales_macs_linearly(name, batch):
    assert zoo.get(name, batch=batch).macs() == batch * zoo.get(name).macs_per_sample


@settings(max_examples=20, deadline=None)
@given(seq=st.integers(1, 512))
def test_bert_seq_len_shapes(seq):
    m = zoo.model("bert_base", seq_len=seq)
    assert m.input_shape == (seq,)
    q = m.workload().layer("encoder.layer.11.attention.self.query")
    assert q.in_shape == (seq, 768)


def test_registry_errors():
    with pytest.raises(ValueError, match=r"unknown model 'resnet19' \(choose from resnet18, "):
        zoo.get("resnet19")
    with pytest.raises(ValueError, match=r"^resnet18 has no sequence length \(seq_len=128\)$"):
        zoo.get("resnet18", seq_len=128)
    with pytest.raises(ValueError, match=r"^seq_len 2048 exceeds gpt2_small's 1024 positions$"):
        zoo.get("gpt2_small", seq_len=2048)
    with pytest.raises(ValueError, match=r"^seq_len must be a positive integer, not 0$"):
        zoo.get("bert_base", seq_len=0)
    with pytest.raises(ValueError, match=r"^batch must be at least 1, not 0$"):
        zoo.get("mlp", batch=0)
    assert set(ALL) == {"resnet18", "resnet50", "vgg16", "mobilenet_v2", "resnet18_cifar",
                        "resnet50_cifar", "vgg16_cifar", "mobilenet_v2_cifar", "vit_b_16",
                        "bert_base", "gpt2_small", "mlp", "cnn", "llama_7b", "stories260k"}


def test_load_resolves_names_and_rejects_unknown(tmp_path):
    loaded = zoo.load("resnet18", batch=4)
    assert loaded.workload.batch == 4 and loaded.source == "zoo" and not loaded.layer_nm
    assert zoo.load("gpt2_small", seq_len=16).workload.layer("lm_head").tokens == 16
    kinds = re.escape(", ".join(zoo.FILE_LOADERS))
    assert ".csv" in zoo.FILE_LOADERS
    with pytest.raises(ValueError, match=r"^unknown workload 'nope': not a model \(resnet18, "
                                         rf".*\) nor a file \({kinds}\)$"):
        zoo.load("nope")
    with pytest.raises(FileNotFoundError, match="no such workload file: missing.csv"):
        zoo.load("missing.csv")
    other = tmp_path / "model.onnx"
    other.write_text("x")
    from nmsat.errors import NmsatError
    with pytest.raises(NmsatError,
                       match=rf"unknown workload file type '\.onnx' \(known: {kinds}\)"):
        zoo.load(str(other))


def test_package_reexports():
    import nmsat.workloads as w

    assert w.get is zoo.get and w.load is zoo.load and w.names is zoo.names
