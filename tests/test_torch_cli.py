"""PyTorch models from the command line: FILE.py:FACTORY and torchvision:NAME, imported
through torch.fx; --input-shape is batch first."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from nmsat.commands import main
from nmsat.workloads import load, zoo

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "examples" / "tiny_cnn.py"


def _one_line_error(capsys, argv, fragment):
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and fragment in err, err


def test_file_factory_simulates_the_traced_layers(tmp_path, capsys):
    from nmsat.simulator import api
    from nmsat.workloads.torch_import import from_torch

    js = tmp_path / "r.json"
    assert main(["-q", "simulate", f"{TINY}:tiny_cnn", "--input-shape", "2,3,32,32",
                 "--config", "small", "--json", str(js)]) == 0
    capsys.readouterr()
    got = json.loads(js.read_text())
    ns: dict = {}
    exec(compile(TINY.read_text(), str(TINY), "exec"), ns)
    w = from_torch(ns["tiny_cnn"](), (3, 32, 32), name="tiny_cnn", batch=2)
    ref = api.simulate(w, "small", api.SimOptions.create("bdwp", "2:8"))
    assert got["batch"] == 2 and got["total_cycles"] == ref.total_cycles
    assert [x["name"] for x in got["layers"]] == [x.name for x in ref.layers]


RESNET_FILE = ROOT / "tests" / "data" / "resnet18_torch.py"


def test_file_spec_loads_like_the_zoo():
    got = load(f"{RESNET_FILE}:resnet18", input_shape=(3, 3, 224, 224))
    ref = zoo.get("resnet18", batch=3)
    assert got.source == "torch" and got.workload.batch == 3
    assert got.workload.macs() == ref.macs()
    assert [dataclasses.replace(x, name="") for x in got.workload.layers] == \
           [dataclasses.replace(x, name="") for x in ref.layers]


def _torchvision_or_skip():
    try:
        import torchvision  # noqa: F401
    except Exception as e:  # ImportError, or a CUDA build that cannot load beside CPU torch
        pytest.skip(f"torchvision does not import here: {str(e).splitlines()[0]}")


def test_torchvision_resnet18_is_the_zoo_resnet18():
    _torchvision_or_skip()
    got = load("torchvision:resnet18", batch=2)
    ref = zoo.get("resnet18", batch=2)
    assert got.workload.macs() == ref.macs()
    assert [dataclasses.replace(x, name="") for x in got.workload.layers] == \
           [dataclasses.replace(x, name="") for x in ref.layers]


@pytest.mark.parametrize("body, fragment", [
    (None, "no such model file"),
    ("def other():\n    return 1\n", "has no function 'net'"),
    ("def net():\n    return 3\n", "returned int, not a torch.nn.Module"),
    ("raise RuntimeError('broken model file')\n", "RuntimeError: broken model file"),
    ("def net():\n    raise ValueError('bad width')\n", "net(): ValueError: bad width"),
])
def test_bad_model_file_is_one_line(tmp_path, capsys, body, fragment):
    f = tmp_path / "m.py"
    if body is not None:
        f.write_text(body)
    _one_line_error(capsys, ["simulate", f"{f}:net", "--config", "small"], fragment)


@pytest.mark.parametrize("argv, fragment", [
    ([f"{TINY}:tiny_cnn", "--input-shape", "1,3,32,32", "--batch", "4"],
     "--batch 4 disagrees with --input-shape's batch 1"),
    ([f"{TINY}:tiny_cnn", "--input-shape", "0,3,32,32"], "--input-shape: must be"),
    ([f"{TINY}:tiny_cnn", "--input-shape", "3"], "--input-shape: must be"),
    (["mlp", "--input-shape", "1,64"], "--input-shape is for PyTorch models"),
    ([f"{TINY}:tiny_cnn", "--seq-len", "8"], "--seq-len is for the zoo's language models"),
])
def test_bad_shape_or_batch_is_one_line(capsys, argv, fragment):
    _one_line_error(capsys, ["simulate", *argv, "--config", "small"], fragment)


def test_inference_mode_takes_the_batch_from_the_shape(tmp_path, capsys):
    js = tmp_path / "i.json"
    assert main(["-q", "simulate", f"{TINY}:tiny_cnn", "--input-shape", "2,3,32,32",
                 "--mode", "inference", "--config", "small", "--json", str(js)]) == 0
    capsys.readouterr()
    d = json.loads(js.read_text())
    names = [x["name"] for x in d["layers"]]
    assert d["batch"] == 2 and names[0] == "conv1" and {"conv2", "fc"} <= set(names)
