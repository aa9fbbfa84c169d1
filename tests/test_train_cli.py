"""``nmsat train``: smoke runs on a small subset, bad input, determinism, missing torch."""

from __future__ import annotations

import dataclasses
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from nmsat.commands import main
from nmsat.workloads.trace import STAT_NAMES, TENSOR_NAMES, load_trace
from nmsat.workloads.train import TrainConfig, load_dataset, train

pytestmark = pytest.mark.torch
QUICK = ["--epochs", "1", "--train-limit", "64", "--batch", "16"]


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_train_bdwp_mlp_writes_trace_and_compares_with_dense(capsys, tmp_path):
    p = tmp_path / "out" / "t.nmt"  # a missing folder is created
    code, out, err = run(capsys, "train", "--model", "mlp", "--dataset", "digits", "--method",
                         "bdwp", "--nm", "2:8", "--seed", "3", "--trace", str(p), *QUICK)
    assert code == 0, err
    assert "bdwp 2:8   epoch   1/1  loss" in out and "dense      epoch   1/1" in out
    assert "accuracy loss" in out and "N:M phases: fc1 FF, fc1 BP" in out
    t = load_trace(p)
    assert (t.model, str(t.method), str(t.nm), t.seed, t.epochs) == ("mlp", "bdwp", "2:8", 3, 1)
    assert t.baseline is not None and t.iterations == 4


def test_train_srste_cnn_no_compare(capsys, tmp_path):
    p = tmp_path / "c.nmt"
    code, out, err = run(capsys, "train", "--model", "cnn", "--method", "srste", "--nm", "2:4",
                         "--no-compare", "--sample-iters", "0,-1", "--trace", str(p), *QUICK)
    assert code == 0, err
    assert "dense      epoch" not in out
    assert "dense (M does not divide the channels): conv1 FF" in out
    t = load_trace(p)
    assert t.baseline is None and [s.iteration for s in t.samples] == [0, 3]
    assert [(x.sparse_ff, x.sparse_bp) for x in t.weight_layers] == [
        (False, False), (True, False), (True, False), (True, False)]


def test_train_without_trace(capsys):
    code, out, _ = run(capsys, "train", "--method", "dense", *QUICK)
    assert code == 0 and "trace written" not in out and "dense" in out


@pytest.mark.parametrize("argv, message", [
    (["--nm", "9:8"], "argument --nm: N must be between 1 and M, not 9 (M=8)"),
    (["--nm", "2-8"], "N:M pattern must look like 2:8"),
    (["--model", "resnet9"], "argument --model: invalid choice: 'resnet9'"),
    (["--method", "magic"], "argument --method: invalid choice: 'magic'"),
    (["--epochs", "0"], "epochs must be a positive integer, not 0"),
    (["--lr", "-1"], "lr must be a positive number"),
    (["--batch", "100"], "batch 100 is larger than the training set (64)"),
    (["--sample-iters", "99"], "sample iteration 99 is outside the run's 4 iterations"),
    (["--sample-iters", "x"], "expected comma-separated iteration numbers"),
])
def test_bad_input_one_line_exit_2_nothing_written(capsys, tmp_path, argv, message):
    p = tmp_path / "t.nmt"
    code, out, err = run(capsys, "train", *QUICK, "--trace", str(p), *argv)
    assert code == 2
    assert err.count("\n") == 1 and message in err, err
    assert "epoch" not in out  # rejected before any training
    assert not p.exists() and list(tmp_path.iterdir()) == []


def test_unwritable_trace_path_fails_before_training(capsys, tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    for target, message in ((f / "t.nmt", "is not a folder"), (tmp_path, "it is a folder")):
        code, out, err = run(capsys, "train", *QUICK, "--trace", str(target))
        assert code == 2 and message in err and err.count("\n") == 1
        assert "epoch" not in out  # no training happened
    assert sorted(x.name for x in tmp_path.iterdir()) == ["file"]


def test_missing_torch_gives_install_hint(capsys, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch -> ImportError
    code, out, err = run(capsys, "train", *QUICK, "--trace", str(tmp_path / "t.nmt"))
    assert code == 2 and "epoch" not in out
    assert "pip install 'nmsat[torch]'" in err and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_cli_defaults_are_train_config_defaults():
    from nmsat.commands import build_parser

    args = build_parser().parse_args(["train"])
    cfg = TrainConfig()
    for f in ("model", "dataset", "epochs", "seed", "batch", "lr", "momentum", "srste_decay",
              "threads"):
        assert getattr(args, f) == getattr(cfg, f), f
    assert (args.method, args.nm) == (cfg.method.value, cfg.nm)


def test_same_seed_same_trace_bit_for_bit():
    cfg = TrainConfig(model="cnn", method="bdwp", epochs=1, batch=16, train_limit=48,
                      sample_iterations=(0, -1))
    data = load_dataset("digits", 48)
    a, b = train(cfg, dataset=data), train(cfg, dataset=data)
    np.testing.assert_array_equal(a.loss, b.loss)
    for k in STAT_NAMES:
        np.testing.assert_array_equal(a.stats[k], b.stats[k])
    assert a.accuracy == b.accuracy
    for sa, sb in zip(a.samples, b.samples, strict=True):
        for name in sa.layers:
            for tn in TENSOR_NAMES:
                np.testing.assert_array_equal(getattr(sa.layers[name], tn),
                                              getattr(sb.layers[name], tn))
    c = train(dataclasses.replace(cfg, seed=1), dataset=data)
    assert not np.array_equal(a.loss, c.loss)


def test_dataset_split_is_fixed_and_disjoint():
    d = load_dataset("digits")
    assert (len(d.y_train), len(d.y_test)) == (1438, 359)
    assert d.x_train.dtype == np.float32 and 0 <= d.x_train.min() and d.x_train.max() <= 1
    e = load_dataset("digits")
    np.testing.assert_array_equal(d.x_test, e.x_test)
    train_rows = {r.tobytes() for r in d.x_train}
    # Digits has a few duplicate images; nearly all test rows must be unseen.
    assert sum(r.tobytes() in train_rows for r in d.x_test) < 5
