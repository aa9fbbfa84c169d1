"""Compile every zoo model: MACs per phase, program size independent of batch, speed."""

import time

import pytest

from nmsat.config import VCU1525
from nmsat.dataflow.compiler import CompileOptions, compile_workload
from nmsat.dataflow.isa import Compute
from nmsat.types import NM, Method, Phase

zoo = pytest.importorskip("nmsat.workloads.zoo")

MODELS = ["resnet18", "resnet50", "vgg16", "mobilenet_v2", "vit_b_16", "bert_base",
          "gpt2_small", "mlp", "cnn"]


@pytest.mark.parametrize("name", MODELS)
def test_zoo_model_compiles_with_exact_macs(name):
    w = zoo.get(name, batch=32)
    t = time.process_time()
    prog = compile_workload(w, VCU1525, CompileOptions(method=Method.BDWP, nm=NM(2, 8)))
    assert time.process_time() - t < 2.0
    dense = {ph: 0 for ph in (Phase.FF, Phase.BP, Phase.WG)}
    for _, ins, times in prog.executions():
        if isinstance(ins, Compute):
            dense[ins.phase] += ins.dense_macs * times
    for ph, v in dense.items():
        assert v == w.macs(ph)
    small = compile_workload(zoo.get(name, batch=1), VCU1525, CompileOptions())
    assert len(prog.instructions) <= 2 * len(small.instructions) + 50
