"""Weight-load hoisting (``nmsat.dataflow.hoist``, issue 17 item 6): each inference GEMM's
first weight LOAD is issued right after the previous GEMM nest, before the barriers and
vector work that order the GEMM behind the previous layer.

Properties over random layer chains, buffer sizes and rings: the hoisted program executes
the same instructions as the unhoisted one with only weight LOADs moved earlier (the WGT
ring sees the same tiles in the same order), no LOAD finds its ring full (the functional
executor raises if one would overwrite a half still being read), the values are the
unhoisted program's, and only read-only weights move. Training programs are unchanged.
And the measurement it is for: decode projections that follow another projection (Llama's
``k_proj`` and ``v_proj`` after ``q_proj``, here at GPT-2 small's width; GPT-2's fused
``attn.c_attn`` has no such neighbour) reach 90% of the DRAM roof on vcu1525 with the hoist
and do not without it.
"""

import dataclasses

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nmsat.config import SMALL, VCU1525
from nmsat.dataflow.compiler import CompileOptions, compile_workload
from nmsat.dataflow.execute import execute
from nmsat.dataflow.hoist import hoisted_loads
from nmsat.dataflow.inference import ActDensity, compile_inference
from nmsat.dataflow.isa import Buffer, Compute, Load, Release, Store
from nmsat.simulator import system
from nmsat.simulator.roofline import layer_traffic
from nmsat.workloads import llm
from nmsat.workloads.layers import Elementwise, Linear, OpKind, Workload

BUFS = ("activation", "weight", "output")


def _chain(dims: list[int], tokens: int, norm: bool, lead: bool = False) -> Workload:
    """Linear layers, with a norm between them (``norm``) and before the first (``lead``)."""
    layers: list = []
    for i, (a, b) in enumerate(zip(dims, dims[1:])):
        if norm and (i or lead):
            layers.append(Elementwise(f"n{i}", shape=(tokens, a), kind=OpKind.NORM))
        layers.append(Linear(f"fc{i}", in_features=a, out_features=b, tokens=tokens))
    return Workload("chain", tuple(layers), batch=1)


def _executed(prog):
    """Every executed instruction with its resolved tile (loop steps dropped: peeling a
    loop changes them, not the tiles)."""
    zero = (0,) * 4
    return [(dataclasses.replace(ins, row0=0, col0=0, row_steps=zero, col_steps=zero)
             if isinstance(ins, (Load, Store)) else ins, r0, c0)
            for ins, r0, c0 in prog.unrolled()]


def _is_wgt_load(ins) -> bool:
    return isinstance(ins, Load) and ins.buffer is Buffer.WGT


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dims=st.lists(st.integers(1, 70), min_size=3, max_size=4),
       tokens=st.integers(1, 5), norm=st.booleans(), lead=st.booleans(),
       nm=st.sampled_from(["1:1", "2:4", "2:8"]),
       kib=st.sampled_from([1, 2, 4]), double=st.tuples(*[st.booleans()] * 3),
       seed=st.integers(0, 2**16))
def test_hoist_only_moves_weight_loads_earlier(dims, tokens, norm, lead, nm, kib, double,
                                               seed):
    cfg = SMALL.replace(**{f"buffers.{b}.kib": kib for b in BUFS},
                        **{f"buffers.{b}.double_buffered": d for b, d in zip(BUFS, double)})
    wl = _chain(dims, tokens, norm, lead)
    progs = [compile_inference(wl, cfg, nm, 1, ActDensity.dense(), hoist_weights=h)[1]
             for h in (False, True)]
    plain, hoisted = (_executed(p) for p in progs)
    # the same instructions, weight LOADs aside, in the same order
    assert [x for x in plain if not _is_wgt_load(x[0])] == \
        [x for x in hoisted if not _is_wgt_load(x[0])]
    # the WGT ring gets the same tiles in the same order
    assert [x for x in plain if _is_wgt_load(x[0])] == \
        [x for x in hoisted if _is_wgt_load(x[0])]
    # program-order ring occupancy: no LOAD into a full WGT ring (it would overwrite a
    # half still being read), and every weight LOAD is at or before its place without
    # the hoist (counted in non-LOAD instructions before it)
    halves, held = cfg.buffers.weight.halves, 0
    before = {}
    for run, seq in (("plain", plain), ("hoisted", hoisted)):
        n, pos = 0, []
        for ins, _, _ in seq:
            if _is_wgt_load(ins):
                pos.append(n)
            else:
                n += 1
        before[run] = pos
    assert all(h <= p for h, p in zip(before["hoisted"], before["plain"]))
    moved = sum(h < p for h, p in zip(before["hoisted"], before["plain"]))
    gemms = sum(1 for x in wl.layers if isinstance(x, Linear))
    # one block per layer after the first (a ring of 1 or 2), and the first layer's when a
    # vector op precedes it
    assert moved == gemms - 1 + (norm and lead)
    for ins, _, _ in hoisted:
        if _is_wgt_load(ins):
            held += 1
            assert held <= halves
        elif isinstance(ins, Compute) and ins.pop_b or \
                isinstance(ins, Release) and ins.buffer is Buffer.WGT:
            held -= 1
    assert held == 0
    # a hoisted LOAD reads a weight tensor (read-only in an inference program)
    names = [t.name for t in progs[1].tensors]
    assert len(hoisted_loads(progs[1])) == moved and not hoisted_loads(progs[0])
    assert all(names[ld.tensor].endswith((".w", ".w.ff")) for ld in hoisted_loads(progs[1]))
    # values: the executor refuses a LOAD into a full ring; the outputs are the same
    rng = np.random.default_rng(seed)
    dram = {t.name: rng.integers(-3, 4, (t.rows, t.cols)) for t in progs[0].tensors}
    a, b = (execute(p, cfg, dict(dram)) for p in progs)
    assert all(np.array_equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("nm", ["dense", "2:8"])
def test_training_programs_are_unchanged(nm):
    wl = _chain([48, 40, 36], 3, True)
    method = "dense" if nm == "dense" else "bdwp"
    progs = [compile_workload(wl, SMALL, CompileOptions(method=method, nm="2:8",
                                                        hoist_weights=h))
             for h in (False, True)]
    assert progs[0].to_bytes() == progs[1].to_bytes()


def _decode_roof(spec: llm.DecoderSpec, nm: str, hoist: bool) -> dict[str, float]:
    """DRAM cycles / attributed cycles of each GEMM of the middle decoder layer of ``spec``
    cut to 3 layers (KV 16) on vcu1525, by the layer's name in decoder layer 1."""
    spec = dataclasses.replace(spec, layers=3)
    w = llm.workload(spec, "decode", 1, kv_len=16)
    _, prog = compile_inference(w, VCU1525, nm, None, ActDensity.dense(), hoist_weights=hoist)
    wall = system.attribute_wall_time(system.run(prog, VCU1525, record=False))
    per: dict[str, int] = {}
    for (layer, _), c in wall.items():
        per[layer] = per.get(layer, 0) + c
    bw = VCU1525.dram.total_bytes_per_cycle
    mid = llm.layer_names(spec, 1)["ln_1"].rsplit(".", 1)[0] + "."
    return {t.name: t.dram_bytes / bw / per[t.name] for t in layer_traffic(prog, VCU1525, ())
            if t.name.startswith(mid) and per.get(t.name)}


# A Llama decoder at GPT-2 small's width (d = 768, 12 heads, FFN 3072, GPT-2's vocabulary):
# its k_proj and v_proj are 768 x 768 projections right after another one.
LLAMA_768 = dataclasses.replace(llm.LLAMA_7B, name="llama_768", hidden=768, heads=12,
                                kv_heads=12, ffn=3072, vocab=50257)


@pytest.mark.parametrize("nm", ["1:1", "2:4"])
def test_decode_projection_after_a_projection_reaches_the_dram_roof(nm):
    # k_proj and v_proj follow a projection (one BARRIER STORE, no vector op): the only
    # exposed time at the boundary was their first weight block's load
    on, off = _decode_roof(LLAMA_768, nm, True), _decode_roof(LLAMA_768, nm, False)
    for name in ("model.layers.1.self_attn.k_proj", "model.layers.1.self_attn.v_proj"):
        assert on[name] >= 0.9, (name, on[name])
        assert on[name] > off[name] + 0.03, (name, on[name], off[name])
    # GPT-2's projection after a projection, mlp.c_proj after mlp.c_fc (GELU in its
    # output path), over 4x the bytes of each of those
    on, off = (_decode_roof(llm.GPT2_SMALL, nm, h) for h in (True, False))
    assert on["h.1.mlp.c_proj"] >= 0.9 and on["h.1.mlp.c_proj"] > off["h.1.mlp.c_proj"]
