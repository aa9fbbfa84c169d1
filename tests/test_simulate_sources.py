"""What a workload file fixes (method, per-layer N:M, batch) reaches the simulator.

A training trace records the method and pattern it was trained with and its batch; a
SCALE-Sim v3 topology fixes a pattern per layer. ``nmsat simulate FILE`` uses them unless
flags override them.
"""

import json

import pytest

from nmsat.commands import main
from nmsat.config import SMALL
from nmsat.dataflow.compiler import CompileOptions, compile_workload
from nmsat.dataflow.isa import Compute
from nmsat.simulator.api import SimOptions, simulate
from nmsat.types import NM, Method
from nmsat.workloads import load

pytest.importorskip("torch")

V3_GEMM = ("Layer, M, N, K, Batch Size, Sparsity,\n"
           "dense_one, 64, 64, 64, 4, 1:1,\n"
           "sparse_one, 64, 64, 64, 4, 2:4,\n")


def _computes(program):
    """(layer name, phase, N:M) of every COMPUTE instruction."""
    out = set()
    for ins in program.instructions:  # LOOP bodies are inline in the flat list
        if isinstance(ins, Compute):
            out.add((program.layers[ins.layer], str(ins.phase), str(ins.nm)))
    return out


@pytest.fixture(scope="module")
def srste_trace(tmp_path_factory):
    path = tmp_path_factory.mktemp("t") / "srste.nmt"
    from nmsat.workloads.trace import save_trace
    from nmsat.workloads.train import TrainConfig, train

    save_trace(train(TrainConfig(model="mlp", method="srste", nm="1:4", epochs=1, batch=64,
                                 train_limit=128)), path)
    return path


def _json(tmp_path, capsys, *args):
    out = tmp_path / "r.json"
    assert main(["simulate", *args, "--json", str(out)]) == 0
    capsys.readouterr()
    return json.loads(out.read_text())


def test_trace_fixes_method_pattern_and_batch(srste_trace, tmp_path, capsys):
    r = _json(tmp_path, capsys, str(srste_trace))
    assert (r["method"], r["nm"], r["batch"]) == ("srste", "1:4", 64)
    assert r["options"]["layer_nm"] == {"fc1": "1:4", "fc2": "1:4", "fc3": "1:4"}


def test_flags_override_the_trace(srste_trace, tmp_path, capsys):
    r = _json(tmp_path, capsys, str(srste_trace), "--method", "bdwp", "--nm", "2:8",
              "--batch", "8")
    assert (r["method"], r["nm"], r["batch"]) == ("bdwp", "2:8", 8)
    assert "layer_nm" not in r["options"]


def test_per_layer_patterns_compile_per_layer(tmp_path):
    csv = tmp_path / "v3.csv"
    csv.write_text(V3_GEMM)
    loaded = load(csv)
    assert dict(loaded.layer_nm) == {"dense_one": NM(1, 1), "sparse_one": NM(2, 4)}
    prog = compile_workload(loaded.workload, SMALL,
                            CompileOptions(method=Method.BDWP, nm=NM(2, 8),
                                           layer_nm=tuple(loaded.layer_nm.items())))
    patterns = {}
    for name, phase, nm in _computes(prog):
        patterns.setdefault((name, phase), set()).add(nm)
    assert patterns[("dense_one", "ff")] == {"1:1"}
    assert patterns[("dense_one", "bp")] == {"1:1"}
    assert patterns[("sparse_one", "ff")] == {"2:4"}
    assert patterns[("sparse_one", "bp")] == {"2:4"}
    assert patterns[("sparse_one", "wg")] == {"1:1"}


def test_layer_patterns_change_the_result(tmp_path):
    csv = tmp_path / "v3.csv"
    csv.write_text(V3_GEMM)
    loaded = load(csv)
    base = simulate(loaded, "small", SimOptions(nm=NM(2, 4), events=False))
    fixed = simulate(loaded, "small", SimOptions(nm=NM(2, 4), events=False,
                                                 layer_nm=tuple(loaded.layer_nm.items())))
    # dense_one runs dense when the file says so: more cycles than all-2:4.
    assert fixed.total_cycles > base.total_cycles
    assert fixed.dense_total_cycles == base.dense_total_cycles


def test_unsupported_layer_pattern_is_one_line(tmp_path, capsys):
    csv = tmp_path / "v3.csv"
    csv.write_text(V3_GEMM.replace("2:4", "3:16"))
    assert main(["simulate", str(csv), "--config", "small"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "3:16" in err and "not supported" in err


# --------------------------------------------------------------------------- inference


def test_inference_takes_the_trace_patterns(srste_trace, tmp_path, capsys):
    r = _json(tmp_path, capsys, str(srste_trace), "--mode", "inference", "--batch", "4")
    assert r["nm"] == "1:4"
    assert r["options"]["layer_nm"] == {"fc1": "1:4", "fc2": "1:4", "fc3": "1:4"}
    assert {x["name"]: x["nm"] for x in r["layers"] if x["dense_macs"]} == \
        {"fc1": "1:4", "fc2": "1:4", "fc3": "1:4"}
    # the byte ratio is the trace's pattern's, not the default 2:8's
    from nmsat.reference import compressed_bytes, dense_bytes
    shapes = [(64, 256), (256, 128), (128, 10)]  # mlp: 64 -> 256 -> 128 -> 10
    want = sum(dense_bytes(s, "fp16") for s in shapes) / \
        sum(compressed_bytes(s, "1:4", 0, "fp16") for s in shapes)
    assert r["weight_byte_ratio"] == pytest.approx(want)


def test_inference_flags_override_the_trace(srste_trace, tmp_path, capsys):
    r = _json(tmp_path, capsys, str(srste_trace), "--mode", "inference", "--batch", "4",
              "--nm", "2:8")
    assert r["nm"] == "2:8" and "layer_nm" not in r["options"]
    assert {x["nm"] for x in r["layers"] if x["dense_macs"]} == {"2:8"}


def test_inference_per_layer_patterns_from_a_scalesim_file(tmp_path, capsys):
    csv = tmp_path / "v3.csv"
    csv.write_text(V3_GEMM)
    r = _json(tmp_path, capsys, str(csv), "--mode", "inference", "--config", "small")
    # two patterns in the file: the default (2:8) is the run's label, the layers keep theirs
    assert r["options"]["layer_nm"] == {"dense_one": "1:1", "sparse_one": "2:4"}
    by = {x["name"]: x for x in r["layers"]}
    assert by["dense_one"]["nm"] == "1:1" and by["sparse_one"]["nm"] == "2:4"
    assert by["dense_one"]["speedup_vs_dense"] == pytest.approx(1.0, abs=0.02)
    assert by["sparse_one"]["speedup_vs_dense"] > 1.2
    forced = _json(tmp_path, capsys, str(csv), "--mode", "inference", "--config", "small",
                   "--nm", "2:4")
    assert {x["nm"] for x in forced["layers"]} == {"2:4"}
    assert forced["total_cycles"] < r["total_cycles"]  # dense_one is sparse now
    assert forced["dense_total_cycles"] == r["dense_total_cycles"]
