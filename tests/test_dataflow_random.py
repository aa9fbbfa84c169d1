"""Property test: random layers and array/buffer configs compile to programs whose tile
loops store every output exactly once, keep within the buffers, count the workload's
MACs, and (functionally executed) reproduce the FF GEMM."""

from collections import Counter

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nmsat.config import SMALL
from nmsat.dataflow.compiler import CompileOptions, compile_layer, compile_workload
from nmsat.dataflow.execute import execute
from nmsat.dataflow.isa import Buffer, Compute, Load, Store, Transform
from nmsat.errors import NmsatError
from nmsat.reference import ConvGeom, engine_gemm, im2col, quantize
from nmsat.types import NM, Dataflow, Method, Phase
from nmsat.workloads.layers import Conv2d, Linear, Matmul, Workload


@st.composite
def cases(draw):
    kind = draw(st.sampled_from(["conv", "linear", "matmul"]))
    if kind == "conv":
        g = draw(st.sampled_from([1, 1, 2]))
        layer = Conv2d("L", in_ch=g * draw(st.integers(1, 6)), out_ch=g * draw(st.integers(1, 6)),
                       in_h=draw(st.integers(3, 8)), in_w=draw(st.integers(3, 8)),
                       kh=draw(st.integers(1, 3)), kw=draw(st.integers(1, 3)),
                       stride=draw(st.integers(1, 2)), padding=draw(st.integers(0, 1)),
                       groups=g)
    elif kind == "linear":
        layer = Linear("L", in_features=draw(st.integers(1, 70)),
                       out_features=draw(st.integers(1, 40)), tokens=draw(st.integers(1, 5)))
    else:
        layer = Matmul("L", m=draw(st.integers(1, 12)), n=draw(st.integers(1, 12)),
                       k=draw(st.integers(1, 12)), count=draw(st.integers(1, 3)))
    cfg = SMALL.replace(**{
        "array.rows": draw(st.integers(1, 4)), "array.cols": draw(st.integers(1, 4)),
        "array.acc_latency": draw(st.integers(1, 3)),
        "buffers.activation.kib": draw(st.sampled_from([1, 2, 4, 16])),
        "buffers.weight.kib": draw(st.sampled_from([1, 2, 4, 16])),
        "buffers.output.kib": draw(st.sampled_from([1, 2, 4, 16])),
        "array.dataflows": draw(st.sampled_from([["os", "ws"], ["os"], ["ws"]]))})
    opts = CompileOptions(method=draw(st.sampled_from(list(Method))),
                          nm=draw(st.sampled_from([NM(2, 4), NM(1, 4), NM(2, 8)])),
                          interleave=draw(st.booleans()),
                          offline_schedule=draw(st.booleans()),
                          fixed_dataflow=draw(st.sampled_from(list(Dataflow))))
    return Workload("rand", (layer,), draw(st.integers(1, 3))), cfg, opts


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_random_layers_compile_correctly(case):
    w, cfg, opts = case
    try:
        prog = compile_workload(w, cfg, opts)
    except NmsatError as e:
        assert "buffers." in str(e) and "minimum tile" in str(e)
        return
    b = cfg.buffers
    dense = Counter()
    stored: dict[str, np.ndarray] = {}
    for ins, r0, c0 in prog.unrolled():
        if isinstance(ins, Compute):
            dense[ins.phase] += ins.dense_macs
            assert ins.dataflow.value in cfg.array.dataflows
        elif isinstance(ins, Load):
            half = (b.activation if ins.buffer is Buffer.ACT else b.weight).usable_bytes
            assert ins.bytes <= half
        elif isinstance(ins, Store) and ins.transform is not Transform.COL2IM:
            t = prog.tensors[ins.tensor]
            arr = stored.setdefault(t.name, np.zeros((t.rows, t.cols), np.int64))
            arr[r0:r0 + ins.rows, c0:c0 + ins.cols] += 1
    for ph in (Phase.FF, Phase.BP, Phase.WG):
        assert dense[ph] == w.macs(ph)
    for name, arr in stored.items():
        assert (arr == 1).all(), name


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_random_ff_programs_compute_the_layer(case):
    w, cfg, opts = case
    layer = w.layers[0]
    if isinstance(layer, Matmul) or (isinstance(layer, Conv2d) and layer.groups > 1):
        return  # covered by tests/test_dataflow_execute.py
    try:
        prog = compile_layer(w, "L", Phase.FF, cfg, opts)
    except NmsatError:
        return
    rng = np.random.default_rng(0)
    dram = {t.name: quantize(rng.standard_normal((t.rows, t.cols)), "fp16")
            for t in prog.tensors if not t.name.endswith(".y")}
    out = execute(prog, cfg, dram)
    wname = next(t for t in dram if ".w" in t)
    nm = prog.tensors[[t.name for t in prog.tensors].index(wname)].nm
    x = dram["L.x"]
    if isinstance(layer, Conv2d):
        geom = ConvGeom(w.batch, layer.in_ch, layer.in_h, layer.in_w, layer.out_ch,
                        layer.kh, layer.kw, layer.stride, layer.padding)
        x = im2col(x.reshape(w.batch, layer.in_h, layer.in_w, layer.in_ch)
                   .transpose(0, 3, 1, 2), geom)
    a = cfg.array
    ref = engine_gemm(x, dram[wname], "fp16", a.macs_per_pe, a.act_window, nm)
    assert np.array_equal(out["L.y"], ref.astype(np.float16))
