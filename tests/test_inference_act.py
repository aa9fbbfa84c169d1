"""Activation sparsity (``array.act_zero``): gating saves MAC energy only; skipping saves
cycles only where the WS feeder can drop a whole all-zero row slice; both combine with
N:M weights (dual-sided) and each is switchable."""

from __future__ import annotations

import math

import pytest

from nmsat.config import VCU1525
from nmsat.dataflow.inference import (
    ActDensity,
    apply_activation_skip,
    compile_inference,
    row_skip_fraction,
    skip_rows,
)
from nmsat.dataflow.isa import Compute
from nmsat.simulator.inference import InferenceOptions, simulate_inference
from nmsat.types import NM, Dataflow
from nmsat.workloads import zoo

WS = VCU1525.replace(**{"name": "ws_only", "array.dataflows": ["ws"]})
OS = VCU1525.replace(**{"name": "os_only", "array.dataflows": ["os"]})


def _with(cfg, act):
    return cfg.replace(**{"array.act_zero": act})


def _run(cfg, act, nm="1:1", density=None, spec="mlp", batch=64):
    d = ActDensity.dense() if density is None else ActDensity.uniform(density)
    return simulate_inference(spec, _with(cfg, act), InferenceOptions(nm=nm, batch=batch,
                                                                      density=d))


@pytest.mark.parametrize("nm", ["1:1", "2:4"])
def test_gating_saves_mac_energy_only(nm):
    asic = VCU1525.replace(**{"energy.mode": "asic"})  # MAC energy is its own kind there
    none = _run(asic, "none", nm, 0.4, "resnet18_cifar", 4)
    gate = _run(asic, "gate", nm, 0.4, "resnet18_cifar", 4)
    assert gate.total_cycles == none.total_cycles
    assert gate.dram_bytes == none.dram_bytes
    e0, e1 = none.energy_by_kind_pj, gate.energy_by_kind_pj
    assert e1["mac"] == pytest.approx(0.4 * e0["mac"], rel=1e-6)
    for k in e0:
        if k not in ("mac", "total"):
            assert e1[k] == pytest.approx(e0[k], rel=1e-12), k  # same up to the sum grid
    # Dual-sided: the N:M run's MACs are the kept weights' products, gated on top.
    if nm == "2:4":
        dense = _run(asic, "none", "1:1", 0.4, "resnet18_cifar", 4)
        assert e1["mac"] < 0.5 * 0.4 * dense.energy_by_kind_pj["mac"] * 1.01
        assert gate.speedup_vs_dense == none.speedup_vs_dense > 1.5


def test_without_the_pe_option_density_changes_nothing():
    a = _run(VCU1525, "none", "2:4", None)
    b = _run(VCU1525, "none", "2:4", 0.1)
    assert a.total_cycles == b.total_cycles and a.energy_pj == b.energy_pj


def test_skip_fraction_is_all_zero_probability():
    assert row_skip_fraction(0.5, 64) == 0.5 ** 64
    assert row_skip_fraction(1.0, 3) == 0.0 and row_skip_fraction(0.0, 3) == 1.0
    # vcu1525: a WS row slice is R x K-per-cycle = 16 x 4 dense, 16 x 8 at 2:4.
    assert skip_rows(1000, 4096, NM(1, 1), 0.01, VCU1525) == math.floor(1000 * 0.99 ** 64)
    assert skip_rows(1000, 4096, NM(2, 4), 0.01, VCU1525) == math.floor(1000 * 0.99 ** 128)
    assert skip_rows(1000, 4096, NM(1, 1), 0.5, VCU1525) == 0
    with pytest.raises(ValueError, match=r"^activation density must be a number between 0 "
                                         r"and 1, not 1.5$"):
        row_skip_fraction(1.5, 4)


def test_skip_at_relu_densities_saves_no_cycles():
    # At d = 0.5 a 64-element slice is all zero with probability 2^-64: nothing to skip.
    gate = _run(WS, "gate", "1:1", 0.5)
    skip = _run(WS, "skip", "1:1", 0.5)
    assert skip.total_cycles == gate.total_cycles
    assert skip.energy_pj == gate.energy_pj


def test_skip_drops_ws_rows_and_only_ws_rows():
    wl = zoo.get("mlp", batch=256)
    dens = ActDensity.uniform(0.01)
    cfg = _with(WS, "skip")
    sched, run = compile_inference(wl, cfg, "1:1", None, dens)
    pairs = [(a, b) for a, b in zip(sched.instructions, run.instructions)
             if isinstance(a, Compute)]
    assert pairs and all(a.dataflow is Dataflow.WS for a, _ in pairs)
    for a, b in pairs:
        assert b.m == max(1, a.m - skip_rows(a.m, a.k, a.nm, 0.01, cfg)) < a.m
        assert (b.n, b.k, b.nm) == (a.n, a.k, a.nm)
    # OS cannot skip: the program is unchanged.
    cfg_os = _with(OS, "skip")
    s_os, r_os = compile_inference(wl, cfg_os, "1:1", None, dens)
    assert r_os is s_os or r_os.instructions == s_os.instructions
    assert apply_activation_skip(s_os, wl, dens, cfg_os) is s_os
    # The cycles saved are real on the WS array, and nothing changes on the OS array.
    assert _run(WS, "skip", "1:1", 0.01, batch=256).total_cycles < \
        _run(WS, "gate", "1:1", 0.01, batch=256).total_cycles
    assert _run(OS, "skip", "1:1", 0.01, batch=256).total_cycles == \
        _run(OS, "gate", "1:1", 0.01, batch=256).total_cycles


def test_attention_products_stay_dense():
    d = ActDensity.uniform(0.3)
    w = zoo.get("bert_base", seq_len=16)
    kinds = {type(layer).__name__: d.of(layer) for layer in w.layers}
    assert kinds["Matmul"] == 1.0 and kinds["Linear"] == 0.3 and kinds["Elementwise"] == 1.0


@pytest.mark.torch
def test_densities_from_a_training_trace(tmp_path):
    from nmsat.commands import main
    from nmsat.workloads.trace import save_trace
    from nmsat.workloads.train import TrainConfig, train

    t = train(TrainConfig(model="mlp", epochs=1, batch=16, train_limit=64))
    path = tmp_path / "run.nmt"
    save_trace(t, path)
    dens = ActDensity.from_trace(path)
    for tl in t.weight_layers:
        want = 1.0 - float(t.layer_stats(tl.name)["act_zero"][-1])
        assert dens.of(tl.layer) == want
    # ReLU outputs feed fc2 and fc3: some of their activations are zero.
    assert dens.of(t.layer("fc2").layer) < 1.0
    out = tmp_path / "r.json"
    assert main(["simulate", str(path), "--mode", "inference", "--nm", "dense",
                 "--act-zero", "gate", "--batch", "8", "--json", str(out)]) == 0
    import json

    data = json.loads(out.read_text())
    assert data["act_zero"] == "gate" and data["act_density"] == "trace mlp"
    assert {x["name"]: x["act_density"] for x in data["layers"]}["fc2"] == \
        dens.of(t.layer("fc2").layer)
