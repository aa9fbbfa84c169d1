"""`nmsat workloads list|show`: output, JSON, and one-line errors with exit status 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nmsat.commands import main
from nmsat.workloads import zoo

DATA = Path(__file__).parent / "data" / "scalesim" / "topologies"


def test_list(capsys):
    assert main(["workloads", "list"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:4] == ["name", "MACs/sample", "params", "layers"]
    rows = {line.split()[0]: line.split() for line in out[1:]}
    assert list(rows) == list(zoo.names())
    assert rows["resnet50"][1:3] == ["4.0892G", "25.56M"]
    # every LLM preset a subcommand accepts is listed (stories260k was missing)
    from nmsat.workloads import llm

    assert set(llm.PRESETS) <= set(rows)
    assert rows["stories260k"][2:4] == ["0.26M", str(len(zoo.model("stories260k").layers))]
    assert zoo.model("stories260k").params == 260_032  # llama2.c's stories260K


def test_list_json(capsys):
    assert main(["workloads", "list", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["vit_b_16"]["macs"] == zoo.get("vit_b_16").macs_per_sample
    assert rows["vgg16"]["params"] == 138_357_544
    assert rows["gpt2_small"]["seq_len"] == 1024 and rows["cnn"]["input_shape"] == [1, 8, 8]


def test_show_table(capsys):
    assert main(["workloads", "show", "cnn", "--batch", "4"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("# cnn (zoo), batch 4: 337,536 MACs/sample forward, 1,350,144 per")
    conv1 = next(line.split() for line in out if line.startswith("conv1"))
    assert conv1 == ["conv1", "conv2d", "1x8x8", "16x8x8", "256x16x9", "256x9x16", "16x9x256"]
    pool = next(line.split() for line in out if line.startswith("pool"))
    assert pool == ["pool", "pool", "32x8x8", "32x4x4", "-", "-", "-"]


def test_show_json_per_phase_gemms(capsys):
    assert main(["workloads", "show", "bert_base", "--seq-len", "32", "--batch", "2",
                 "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert (doc["workload"], doc["batch"], doc["seq_len"]) == ("bert_base", 2, 32)
    assert doc["macs"] == zoo.get("bert_base", seq_len=32).macs_per_sample
    assert doc["macs"] == sum(layer["macs"] for layer in doc["layers"])
    q = next(l for l in doc["layers"] if l["name"] == "encoder.layer.0.attention.self.query")
    assert q["in_shape"] == [32, 768] and q["weight_shape"] == [768, 768]
    assert q["gemms"] == {"ff": [{"m": 64, "n": 768, "k": 768, "count": 1}],
                          "bp": [{"m": 64, "n": 768, "k": 768, "count": 1}],
                          "wg": [{"m": 768, "n": 768, "k": 64, "count": 1}]}
    scores = next(l for l in doc["layers"] if l["name"].endswith("0.attention.self.scores"))
    assert scores["gemms"]["ff"] == [{"m": 32, "n": 32, "k": 64, "count": 24}]
    assert len(scores["gemms"]["bp"]) == 2 and scores["gemms"]["wg"] == []
    sm = next(l for l in doc["layers"] if l["type"] == "elementwise")
    assert sm["config"]["kind"] == "add" and sm["gemms"] == {"ff": [], "bp": [], "wg": []}
    # the attention products (12 layers x 2 x 12 heads x 32 x 32 x 64) have no WG
    assert doc["batch_macs"]["ff"] == 2 * doc["macs"]
    assert doc["batch_macs"]["wg"] == 2 * (doc["macs"] - 12 * 2 * 32 * 32 * 768)


def test_show_scalesim_csv(capsys, tmp_path):
    assert main(["workloads", "show", str(DATA / "conv_nets" / "Resnet18.csv"), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["source"] == "SCALE-Sim v2/v3 conv" and doc["macs"] == 1_471_181_568
    assert doc["params"] is None and doc["seq_len"] is None
    path = tmp_path / "sparse.csv"
    path.write_text("Layer, M, N, K,\nG1, 8, 16, 32, 2:8,\nG2, 8, 16, 32,\n")
    assert main(["workloads", "show", str(path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1].split()[-1] == "N:M"
    assert out[2].split()[-1] == "2:8" and out[3].split()[-1] == "-"


@pytest.mark.parametrize("argv, message", [
    (["workloads", "show", "resnet19"],
     "nmsat: error: unknown workload 'resnet19': not a model (resnet18, "),
    (["workloads", "show", "mlp", "--batch", "0"],
     "nmsat: error: batch must be at least 1, not 0"),
    (["workloads", "show", "mlp", "--seq-len", "8"],
     "nmsat: error: mlp has no sequence length (seq_len=8)"),
    (["workloads", "show", "gpt2_small", "--seq-len", "4096"],
     "nmsat: error: seq_len 4096 exceeds gpt2_small's 1024 positions"),
    (["workloads", "show", "mlp", "--batch", "two"],
     "nmsat: error: workloads show: argument --batch: invalid int value: 'two'"),
    (["workloads", "show", "missing.csv"],
     "nmsat: error: no such workload file: missing.csv"),
    (["workloads"], "nmsat: error: workloads: the following arguments are required: ACTION"),
])
def test_bad_input_exits_2_with_one_line(capsys, argv, message):
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and captured.err.startswith(message)


def test_malformed_csv_is_one_line(capsys, tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, "
                    "Channels, Num Filter, Strides,\nConv1,224,224,7,7,3,64,2\n")
    assert main(["workloads", "show", str(path)]) == 2
    err = capsys.readouterr().err
    assert err == (f"nmsat: error: {path}: line 2, column 8: row does not end with a comma; "
                   f"SCALE-Sim drops the text after the last comma ('2'), so add a trailing "
                   f"comma\n")
