"""Functional execution of compiled programs: the tile loops, transforms, K splits and
OUT accumulation reproduce each layer's GEMMs computed directly with the reference."""

import numpy as np
import pytest

from nmsat.config import SMALL
from nmsat.dataflow.compiler import CompileOptions, compile_layer, compile_workload
from nmsat.dataflow.execute import execute
from nmsat.dataflow.isa import Compute, Loop
from nmsat.errors import NmsatError
from nmsat.reference import ConvGeom, col2im, engine_gemm, im2col, nm_mask, quantize
from nmsat.types import NM, Method, Mode, Phase
from nmsat.workloads.layers import Conv2d, Linear, Matmul, Workload

# 2 KiB buffers (1 KiB halves): the layers below need K, N and M splits and edge blocks.
CFG = SMALL.replace(**{"buffers.activation.kib": 2, "buffers.weight.kib": 2,
                       "buffers.output.kib": 2})
P, A = SMALL.array.macs_per_pe, SMALL.array.act_window


def _workload(batch):
    return Workload("exec", (
        Conv2d("conv", in_ch=8, out_ch=12, in_h=9, in_w=7, kh=3, kw=3, stride=2, padding=1),
        Conv2d("grp", in_ch=8, out_ch=8, in_h=6, in_w=6, kh=3, kw=3, padding=1, groups=2),
        Linear("fc", in_features=72, out_features=40, tokens=3),
        Matmul("att", m=10, n=9, k=6, count=2)), batch)


def _gemm(a, b, nm="1:1"):
    return engine_gemm(a, b, "fp16", P, A, nm)


def _masked(w, nm):
    return np.where(nm_mask(w.astype(np.float32), nm, axis=0), w, 0).astype(np.float16)


@pytest.mark.parametrize("method", [Method.DENSE, Method.BDWP])
@pytest.mark.parametrize("offline", [True, False])
def test_training_program_computes_every_gemm(method, offline):
    batch, nm = 2, NM(2, 4)
    w = _workload(batch)
    prog = compile_workload(w, CFG, CompileOptions(method=method, nm=nm,
                                                   offline_schedule=offline))
    rng = np.random.default_rng(11)
    dram = {t.name: quantize(rng.standard_normal((t.rows, t.cols)), "fp16")
            for t in prog.tensors if t.name.endswith((".x", ".w", ".dy", ".a", ".b", ".dc"))}
    out = execute(prog, CFG, dram)
    # the program really splits: some compute block covers part of its GEMM's K
    full_k = {(li, ph): g.k for li, layer in enumerate(w.layers)
              for ph in (Phase.FF, Phase.BP, Phase.WG) for g in layer.gemms(ph, batch)}
    assert any(i.k < full_k.get((i.layer, i.phase), 0) for i in prog.instructions
               if isinstance(i, Compute))
    assert sum(isinstance(i, Loop) for i in prog.instructions) > 10
    sparse = method is Method.BDWP
    for layer in w.layers:
        L = layer.name
        if isinstance(layer, Matmul):
            cnt, m, k = layer.count * batch, layer.m, layer.k
            for g in range(cnt):
                a = dram[f"{L}.a"][g * m:(g + 1) * m]
                b = dram[f"{L}.b"][g * k:(g + 1) * k]
                dc = dram[f"{L}.dc"][g * m:(g + 1) * m]
                assert np.array_equal(out[f"{L}.c"][g * m:(g + 1) * m],
                                      _gemm(a, b).astype(np.float16))
                assert np.array_equal(out[f"{L}.da"][g * m:(g + 1) * m],
                                      _gemm(dc, b.T).astype(np.float16))
                assert np.array_equal(out[f"{L}.db"][g * k:(g + 1) * k],
                                      _gemm(a.T, dc).astype(np.float16))
            continue
        ff_nm = nm if sparse and layer.nm_applies(Phase.FF, method, nm) else NM(1, 1)
        bp_nm = nm if sparse and layer.nm_applies(Phase.BP, method, nm) else NM(1, 1)
        x, wt, dy = dram[f"{L}.x"], dram[f"{L}.w"], dram[f"{L}.dy"]
        if isinstance(layer, Linear):
            assert np.array_equal(out[f"{L}.y"], _gemm(x, wt, ff_nm).astype(np.float16))
            wbp = _masked(wt.T, bp_nm) if not bp_nm.dense else wt.T
            assert np.array_equal(out[f"{L}.dx"], _gemm(dy, wbp, bp_nm).astype(np.float16))
            assert np.array_equal(out[f"{L}.dw"], _gemm(dy.T, x))
            continue
        g_ = layer.groups
        cpg, cog = layer.in_ch // g_, layer.out_ch // g_
        geom = ConvGeom(batch, cpg, layer.in_h, layer.in_w, cog, layer.kh, layer.kw,
                        layer.stride, layer.padding)
        hw, rows = batch * layer.in_h * layer.in_w, batch * layer.out_h * layer.out_w
        for g in range(g_):
            xg = x[g * hw:(g + 1) * hw].reshape(batch, layer.in_h, layer.in_w, cpg)
            cols = im2col(xg.transpose(0, 3, 1, 2), geom)
            wg = wt[:, g * cog:(g + 1) * cog]
            dyg = dy[:, g * cog:(g + 1) * cog]
            wff = _masked(wt, ff_nm)[:, g * cog:(g + 1) * cog] if not ff_nm.dense else wg
            assert np.array_equal(out[f"{L}.y"][:, g * cog:(g + 1) * cog],
                                  _gemm(cols, wff, ff_nm).astype(np.float16))
            assert np.array_equal(out[f"{L}.dw"][g * cog:(g + 1) * cog], _gemm(dyg.T, cols))
            wbp = _masked(wt.T, bp_nm)[g * cog:(g + 1) * cog] if not bp_nm.dense else wg.T
            dx = col2im(_gemm(dyg, wbp, bp_nm), geom, cpg)  # fp32 NCHW
            got = out[f"{L}.dx"][g * hw:(g + 1) * hw].reshape(
                batch, layer.in_h, layer.in_w, cpg).transpose(0, 3, 1, 2).astype(np.float32)
            # col2im's fp32 sums are split across row blocks: order may differ, so the
            # fp16 results agree to rounding
            assert np.allclose(got, dx.astype(np.float16), rtol=2e-3,
                               atol=2e-3 * np.abs(dx).max())
        assert rows == layer.gemms(Phase.FF, batch)[0].m


def test_inference_program_uses_precompressed_weights():
    batch, nm = 3, NM(2, 4)
    w = Workload("inf", (Linear("fc", in_features=64, out_features=24, tokens=5),), batch)
    prog = compile_workload(w, CFG, CompileOptions(mode=Mode.INFERENCE, nm=nm))
    rng = np.random.default_rng(12)
    x = quantize(rng.standard_normal((15, 64)), "fp16")
    wt = quantize(rng.standard_normal((64, 24)), "fp16")
    out = execute(prog, CFG, {"fc.x": x, "fc.w.ff": _masked(wt, nm)})
    assert np.array_equal(out["fc.y"], _gemm(x, wt, nm).astype(np.float16))


def test_compile_layer_runs_one_gemm():
    w = _workload(2)
    prog = compile_layer(w, "conv", Phase.FF, CFG, CompileOptions(nm=NM(2, 4)))
    assert {i.phase for i in prog.instructions if isinstance(i, Compute)} == {Phase.FF}
    assert {t.name for t in prog.tensors} == {"conv.x", "conv.w.ff", "conv.y"}
    rng = np.random.default_rng(13)
    x = quantize(rng.standard_normal((2 * 9 * 7, 8)), "fp16")
    wt = quantize(rng.standard_normal((72, 12)), "fp16")
    out = execute(prog, CFG, {"conv.x": x, "conv.w.ff": _masked(wt, NM(2, 4))})
    geom = ConvGeom(2, 8, 9, 7, 12, 3, 3, 2, 1)
    cols = im2col(x.reshape(2, 9, 7, 8).transpose(0, 3, 1, 2), geom)
    assert np.array_equal(out["conv.y"], _gemm(cols, wt, "2:4").astype(np.float16))
    with pytest.raises(NmsatError, match="no layer 'nope'"):
        compile_layer(w, "nope", Phase.FF, CFG)
    with pytest.raises(NmsatError, match="no wg GEMM"):
        compile_layer(w, "conv", Phase.WG, CFG, CompileOptions(mode=Mode.INFERENCE))
