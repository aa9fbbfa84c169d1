"""The dataflow compiler: MACs, N:M fractions, buffer limits, loop coverage, the three
optimisation passes in isolation, physics, and program size independent of batch."""

from collections import Counter, defaultdict

import numpy as np
import pytest

from nmsat.arith import ceil_div
from nmsat.config import SMALL, VCU1525
from nmsat.dataflow import compiler, timing
from nmsat.dataflow.compiler import CompileOptions, compile_workload
from nmsat.dataflow.isa import (
    Barrier,
    Buffer,
    Compute,
    Load,
    Release,
    Sore,
    Store,
    Transform,
    Unit,
    Vector,
    WeightUpdate,
    region_bytes,
)
from nmsat.errors import NmsatError
from nmsat.reference import compressed_bytes
from nmsat.types import NM, Dataflow, Method, Mode, Phase
from nmsat.workloads.layers import Conv2d, Elementwise, Linear, Matmul, OpKind, Workload


def tiny(batch=4):
    return Workload("tiny", (
        Conv2d("c1", in_ch=3, out_ch=16, in_h=20, in_w=20, kh=3, kw=3, padding=1),
        Elementwise("r1", kind=OpKind.ACT, elements=16 * 20 * 20),
        Conv2d("c2", in_ch=16, out_ch=32, in_h=20, in_w=20, kh=3, kw=3, stride=2, padding=1),
        Elementwise("bn", kind=OpKind.NORM, elements=32 * 10 * 10),
        Conv2d("dw", in_ch=32, out_ch=32, in_h=10, in_w=10, kh=3, kw=3, padding=1, groups=32),
        Conv2d("pw", in_ch=32, out_ch=64, in_h=10, in_w=10),
        Matmul("att", m=12, n=12, k=8, count=2),
        Linear("fc", in_features=6400, out_features=10),
        Linear("odd", in_features=10, out_features=24, tokens=3)), batch)


def mid(batch=8):
    """Bigger layers so the VCU1525 buffers force K and N splits."""
    return Workload("mid", (
        Conv2d("a", in_ch=64, out_ch=256, in_h=28, in_w=28, kh=3, kw=3, padding=1),
        Conv2d("b", in_ch=256, out_ch=512, in_h=28, in_w=28, kh=3, kw=3, stride=2,
               padding=1),
        Linear("fc", in_features=4096, out_features=4096, tokens=16)), batch)


def by_phase(prog):
    dense, macs = Counter(), Counter()
    for _, ins, times in prog.executions():
        if isinstance(ins, Compute):
            dense[ins.phase] += ins.dense_macs * times
            macs[(ins.layer, ins.phase)] += ins.macs * times
    return dense, macs


@pytest.mark.parametrize("method", list(Method))
@pytest.mark.parametrize("cfg", [SMALL, VCU1525], ids=["small", "vcu1525"])
def test_macs_per_phase_and_nm_fraction(method, cfg):
    w = tiny()
    nm = NM(2, 8) if cfg is VCU1525 else NM(1, 4)
    prog = compile_workload(w, cfg, CompileOptions(method=method, nm=nm))
    dense, macs = by_phase(prog)
    for ph in (Phase.FF, Phase.BP, Phase.WG):
        assert dense[ph] == w.macs(ph)
    for li, layer in enumerate(w.layers):
        for ph in (Phase.FF, Phase.BP, Phase.WG):
            gemms = layer.gemms(ph, w.batch)
            if not gemms:
                continue
            exact = 0
            for g in gemms:
                kept = g.k
                if layer.nm_applies(ph, method, nm):
                    kept = (g.k // nm.m) * nm.n + min(nm.n, g.k % nm.m)
                exact += g.m * g.n * g.count * kept
            assert macs[(li, ph)] == exact, (layer.name, ph)


def test_nm_fraction_is_n_over_m_where_k_divides():
    w = tiny()
    prog = compile_workload(w, VCU1525, CompileOptions(method=Method.BDWP, nm=NM(2, 8)))
    _, macs = by_phase(prog)
    c2 = [layer.name for layer in w.layers].index("c2")
    for ph in (Phase.FF, Phase.BP):
        assert macs[(c2, ph)] * 8 == w.layers[c2].gemms(ph, 4)[0].macs * 2
    assert macs[(c2, Phase.WG)] == w.layers[c2].gemms(Phase.WG, 4)[0].macs


@pytest.mark.parametrize("offline", [True, False])
@pytest.mark.parametrize("cfg", [SMALL, VCU1525], ids=["small", "vcu1525"])
def test_every_block_fits_its_buffer_half(cfg, offline):
    for w in (tiny(), mid()):
        prog = compile_workload(w, cfg, CompileOptions(offline_schedule=offline))
        b = cfg.buffers
        computes = []
        for _, ins, _ in prog.executions():
            if isinstance(ins, Load):
                half = (b.activation if ins.buffer is Buffer.ACT else b.weight).usable_bytes
                assert ins.bytes <= half
            if isinstance(ins, Compute):
                computes.append(ins)
            if isinstance(ins, Store):
                # the OUT half holds fp32 partial sums of the block; a COL2IM block
                # accumulates its feature-map footprint (the store's fp16 bytes, x2)
                for c in computes:
                    if ins.transform is Transform.COL2IM:
                        assert ins.bytes * 2 <= b.output.usable_bytes
                    else:
                        assert c.m * c.n * 4 <= b.output.usable_bytes
                computes = []


def test_compressed_loads_are_exact_bytes():
    prog = compile_workload(mid(), VCU1525, CompileOptions(nm=NM(2, 8)))
    seen = 0
    for _, ins, _ in prog.executions():
        if isinstance(ins, Load) and ins.buffer is Buffer.WGT:
            t = prog.tensors[ins.tensor]
            if not t.nm.dense:
                assert ins.bytes == compressed_bytes((ins.rows, ins.cols), t.nm, 0, "fp16")
                seen += 1
    assert seen


def test_buffer_too_small_raises_naming_the_buffer():
    cfg = VCU1525.replace(**{"array.rows": 64, "array.cols": 64, "buffers.output.kib": 8})
    with pytest.raises(NmsatError, match="buffers.output.*minimum tile"):
        compile_workload(tiny(), cfg)
    cfg = VCU1525.replace(**{"array.rows": 256, "buffers.activation.kib": 1})
    with pytest.raises(NmsatError, match="buffers.activation"):
        compile_workload(tiny(), cfg)


def _coverage(prog):
    """Per (layer, phase, tensor): how often each output element is stored; per compute
    group, the K covered."""
    hits = defaultdict(lambda: None)
    for ins, r0, c0 in prog.unrolled():
        if isinstance(ins, Store):
            t = prog.tensors[ins.tensor]
            if ins.transform is Transform.COL2IM:
                continue
            arr = hits[t.name]
            if arr is None:
                arr = hits[t.name] = np.zeros((t.rows, t.cols), np.int64)
            assert r0 + ins.rows <= t.rows and c0 + ins.cols <= t.cols, t.name
            arr[r0:r0 + ins.rows, c0:c0 + ins.cols] += 1
    return hits


@pytest.mark.parametrize("cfg", [SMALL, VCU1525], ids=["small", "vcu1525"])
def test_loop_nests_store_every_output_exactly_once(cfg):
    for w in (tiny(2), mid(1)):
        prog = compile_workload(w, cfg)
        hits = _coverage(prog)
        assert hits
        for name, arr in hits.items():
            assert (arr == 1).all(), name


def test_operand_loads_stay_inside_their_tensors_and_buffers_balance():
    prog = compile_workload(tiny(2), SMALL)
    held = {Buffer.ACT: 0, Buffer.WGT: 0}
    for ins, r0, c0 in prog.unrolled():
        if isinstance(ins, Load):
            t = prog.tensors[ins.tensor]
            rows, cols = t.rows, t.cols
            if ins.transform is Transform.TRANSPOSE:
                rows, cols = cols, rows
            elif ins.transform is Transform.IM2COL:
                rows, cols = t.conv.im2col_rows, t.conv.im2col_cols
            assert r0 + ins.rows <= rows and c0 + ins.cols <= cols, (t.name, r0, c0)
            held[ins.buffer] += 1
            assert held[ins.buffer] <= 2  # a ring of two halves
        elif isinstance(ins, Compute):
            held[Buffer.ACT] -= ins.pop_a
            held[Buffer.WGT] -= ins.pop_b
        elif isinstance(ins, Release):
            held[ins.buffer] -= 1
        assert min(held.values()) >= 0
    assert held == {Buffer.ACT: 0, Buffer.WGT: 0}


def _strip(prog, drop_interleave=False):
    out = []
    for ins in prog.instructions:
        if drop_interleave and isinstance(ins, Compute):
            ins = type(ins)(**{**ins.__dict__, "interleave": True})
        out.append(ins)
    return out


def test_interleave_pass_changes_only_the_interleave_flag():
    w = mid()
    on = compile_workload(w, VCU1525, CompileOptions(interleave=True, offline_schedule=False))
    off = compile_workload(w, VCU1525, CompileOptions(interleave=False,
                                                      offline_schedule=False))
    assert _strip(on, True) == _strip(off, True)
    assert all(i.interleave for i in on.instructions if isinstance(i, Compute))
    assert not any(i.interleave for i in off.instructions if isinstance(i, Compute))
    cyc = [sum(timing.compute_cycles(i, VCU1525) * t for _, i, t in p.executions()
               if isinstance(i, Compute)) for p in (on, off)]
    assert cyc[0] < cyc[1]


def test_pregen_pass_only_moves_sore_work():
    w = tiny()
    on = compile_workload(w, VCU1525, CompileOptions(pregen=True))
    off = compile_workload(w, VCU1525, CompileOptions(pregen=False))
    key = lambda p: Counter(repr(i) for i in p.instructions if not isinstance(i, Barrier))
    assert key(on) == key(off)
    non_sore = lambda p: [i for i in p.instructions if not isinstance(i, (Sore, Barrier))]
    assert non_sore(on) == non_sore(off)
    assert [i for i in on.instructions if isinstance(i, Sore)]

    def overlapped(p):
        """SORE instructions for a layer dispatched while an earlier layer's FF
        computes, i.e. followed by a compute of a different layer before any barrier
        that waits for the SORE."""
        n = 0
        for idx, ins in enumerate(p.instructions):
            if isinstance(ins, Sore):
                for nxt in p.instructions[idx + 1:]:
                    if isinstance(nxt, Barrier) and nxt.units & Unit.SORE:
                        break
                    if isinstance(nxt, Compute) and nxt.layer != ins.layer:
                        n += 1
                        break
        return n
    assert overlapped(off) == 0
    assert overlapped(on) > 0


def test_offline_schedule_changes_only_tiling_and_never_costs_more():
    w = mid()
    on = compile_workload(w, VCU1525, CompileOptions(offline_schedule=True))
    off = compile_workload(w, VCU1525, CompileOptions(offline_schedule=False))
    other = lambda p: [i for i in p.instructions
                       if isinstance(i, (Sore, WeightUpdate, Vector))]
    assert other(on) == other(off)
    assert by_phase(on) == by_phase(off)
    assert {i.dataflow for i in off.instructions if isinstance(i, Compute)} == {Dataflow.OS}
    low_on = compiler.lower(w, VCU1525, CompileOptions())
    compiler.offline_schedule(low_on, VCU1525, CompileOptions())
    low_off = compiler.lower(w, VCU1525, CompileOptions())
    compiler.offline_schedule(low_off, VCU1525, CompileOptions(offline_schedule=False))
    for i, task in enumerate(low_on.tasks):
        if isinstance(task, compiler.GemmTask):
            ctx = compiler.TaskCtx(task, low_on, VCU1525)
            assert compiler.estimate_cycles(ctx, low_on.tilings[i]) <= \
                compiler.estimate_cycles(ctx, low_off.tilings[i])


def test_offline_schedule_uses_both_dataflows_on_a_real_mix():
    w = Workload("mix", (Linear("wide", in_features=64, out_features=64, tokens=4096),
                         Linear("deep", in_features=8192, out_features=16, tokens=16)), 1)
    prog = compile_workload(w, VCU1525, CompileOptions(method=Method.DENSE))
    assert {i.dataflow for i in prog.instructions if isinstance(i, Compute)} == \
        {Dataflow.OS, Dataflow.WS}


def test_physics_every_compute_at_least_macs_over_peak():
    prog = compile_workload(mid(), VCU1525)
    for _, ins, _ in prog.executions():
        if isinstance(ins, Compute):
            assert timing.compute_cycles(ins, VCU1525) * \
                VCU1525.array.peak_macs_per_cycle >= ins.macs


def test_program_size_does_not_grow_with_batch():
    sizes = [len(compile_workload(mid(b), VCU1525).instructions) for b in (1, 8, 64, 512)]
    assert max(sizes) <= 2 * min(sizes)
    big = compile_workload(mid(512), VCU1525)
    small = compile_workload(mid(8), VCU1525)
    assert big.totals()["dense_macs"] == 64 * small.totals()["dense_macs"]


def test_sore_and_weight_update_tasks():
    w = tiny()
    for method, views in ((Method.DENSE, 0), (Method.SRSTE, 1), (Method.BDWP, 2)):
        prog = compile_workload(w, VCU1525, CompileOptions(method=method, nm=NM(2, 8)))
        sores = [i for i in prog.instructions if isinstance(i, Sore)]
        wus = [i for i in prog.instructions if isinstance(i, WeightUpdate)]
        assert len(wus) == sum(1 for layer in w.layers if layer.has_weights)
        per_layer = Counter(s.layer for s in sores)
        for li, layer in enumerate(w.layers):
            want = sum(layer.nm_applies(ph, method, NM(2, 8)) for ph in (Phase.FF, Phase.BP)) \
                if layer.has_weights else 0
            assert per_layer.get(li, 0) == want
        assert max(per_layer.values(), default=0) == views  # SORE views of a sparse layer
        for s in sores:
            assert s.groups * 8 >= s.weights and s.read_bytes == 2 * s.weights
            assert s.write_bytes == prog.tensors[s.dst].bytes


def test_inference_is_ff_only_with_precompressed_weights():
    w = tiny()
    prog = compile_workload(w, VCU1525, CompileOptions(mode=Mode.INFERENCE, nm=NM(2, 4)))
    assert not any(isinstance(i, (Sore, WeightUpdate)) for i in prog.instructions)
    dense, _ = by_phase(prog)
    assert dense == Counter({Phase.FF: w.macs(Phase.FF)})
    comp = [t for t in prog.tensors if not t.nm.dense]
    assert comp and all(t.name.endswith(".w.ff") for t in comp)


def test_unsupported_pattern_and_bad_options_raise():
    with pytest.raises(ValueError, match="3:8"):
        compile_workload(tiny(), VCU1525, CompileOptions(nm=NM(3, 8)))
    with pytest.raises(ValueError, match="batch"):
        CompileOptions(batch=0)
    with pytest.raises(ValueError, match="Method .magic"):
        CompileOptions(method="magic")


def test_tensor_bytes_match_reference():
    prog = compile_workload(tiny(), VCU1525)
    for t in prog.tensors:
        if not t.nm.dense:
            assert t.bytes == compressed_bytes((t.rows, t.cols), t.nm, 0, "fp16")
        else:
            assert t.bytes == region_bytes(t.rows, t.cols, t.elem)


def test_backward_order_and_weight_updates_overlap_the_engine():
    w = Workload("bn", (
        Conv2d("c1", in_ch=8, out_ch=16, in_h=8, in_w=8, kh=3, kw=3, padding=1),
        Elementwise("n1", kind=OpKind.NORM, elements=16 * 64),
        Conv2d("c2", in_ch=16, out_ch=16, in_h=8, in_w=8, kh=3, kw=3, padding=1),
        Elementwise("n2", kind=OpKind.NORM, elements=16 * 64),
        Linear("fc", in_features=1024, out_features=10)), 2)
    prog = compile_workload(w, VCU1525)
    names = [layer.name for layer in w.layers]
    seq = [(type(i).__name__, names[i.layer], getattr(i, "phase", None))
           for i in prog.instructions if isinstance(i, (Compute, Vector))]
    bp = [(t, n) for t, n, ph in seq if ph is Phase.BP]
    order = [n for i, (t, n) in enumerate(bp) if i == 0 or bp[i - 1][1] != n]
    assert order == ["fc", "n2", "c2", "n1", "c1"]
    # the vector op runs beside the previous layer's WG GEMM: no barrier on WU between
    # the vector op and that WG's computes
    ins = prog.instructions
    v = next(i for i, x in enumerate(ins) if isinstance(x, Vector) and x.phase is Phase.BP)
    wg = next(i for i in range(v, len(ins)) if isinstance(ins[i], Compute))
    assert ins[wg].phase is Phase.WG and names[ins[wg].layer] == "fc"
    assert not any(isinstance(x, Barrier) and x.units & Unit.WU for x in ins[v:wg])
    # every weight update is followed by engine work before anything waits for it
    ins = prog.instructions
    for i, x in enumerate(ins):
        if isinstance(x, WeightUpdate):
            nxt = next((j for j in range(i + 1, len(ins)) if isinstance(ins[j], Compute)
                        or isinstance(ins[j], Barrier) and ins[j].units & Unit.WU), None)
            if nxt is not None:
                assert isinstance(ins[nxt], Compute)
    assert sum(isinstance(x, WeightUpdate) for x in ins) == 3


# ----------------------------------------------------------------- engine buffer words


def _bank_words(ins, cfg):
    """Words per bank a COMPUTE block occupies in the engine's buffers (rtl/layouts.py)."""
    a = cfg.array
    kc = ceil_div(ins.k, a.k_per_cycle(ins.nm))
    nt = ceil_div(ins.n, a.cols)
    return {"buffers.weight": nt * kc, "buffers.output": ceil_div(ins.m, a.rows) * nt,
            # one window per (row, chunk), R diagonal banks (layouts.act_location)
            "buffers.activation": ins.m * ceil_div(kc, a.rows)}


@pytest.mark.parametrize("nm", ["1:1", "2:8", "1:8", "2:4"])
@pytest.mark.parametrize("spec", ["mlp", "cnn"])
def test_blocks_fit_the_engine_banks(spec, nm):
    """Every COMPUTE of the digits MLP and CNN on the small preset's 2 x 2 variant fits the
    RTL engine's ACT, WGT and OUT banks. Sized by bytes alone, 2:8 and 1:8 blocks (two or
    one of the four lanes busy) overflow the weight bank (the RTL then wrapped addresses);
    with ``buffers.act_layout = fmap`` (a conv's feature map, not its im2col windows)
    the CNN's conv2 overflows the activation bank."""
    from nmsat.config import SMALL
    from nmsat.dataflow.compiler import CompileOptions, compile_workload
    from nmsat.dataflow.isa import Compute
    from nmsat.workloads import zoo

    assert SMALL.buffers.act_layout == "windows"
    cfg = SMALL.replace(**{"array.rows": 2, "array.cols": 2})
    words = cfg.bank_words()
    wl = zoo.load(spec, batch=8).workload
    over = {}
    for engine_words, layout in ((True, "windows"), (False, "windows"), (True, "fmap")):
        c = cfg.replace(**{"buffers.act_layout": layout})
        prog = compile_workload(wl, c, CompileOptions(nm=nm, engine_words=engine_words))
        blocks = [i for i, _, _ in prog.unrolled() if isinstance(i, Compute)]
        assert blocks
        over[engine_words, layout] = {
            b for i in blocks for b, w in _bank_words(i, cfg).items() if w > words[b]}
    assert over[True, "windows"] == set()
    assert "buffers.weight" not in over[True, "fmap"]
    if nm in ("2:8", "1:8"):
        assert "buffers.weight" in over[False, "windows"]
    if spec == "cnn":
        assert "buffers.activation" in over[True, "fmap"]


@pytest.mark.parametrize("kib", [1, 2, 4])
@pytest.mark.parametrize("nm", ["1:1", "2:4", "2:8"])
def test_blocks_fit_the_shadow_weight_banks(kib, nm):
    """With shadow weights the engine's WGT banks are ``bank_words / R`` deep per half and
    a block's words sit at ``ct ceil(kc / R) + kt`` (rtl/layouts.wgt_shadow_location), so
    the compiler must count whole K-tiles: every COMPUTE of the digits CNN (conv1: K = 9,
    so kc is not a multiple of R) fits the RTL's bank depth. Counting ``nt kc`` words
    instead (the column layout's rule) overflows it in 5 of these 9 cases."""
    from nmsat.config import SMALL
    from nmsat.dataflow.compiler import CompileOptions, compile_workload
    from nmsat.dataflow.isa import Compute
    from nmsat.rtl.engine import buffer_geometry
    from nmsat.rtl.layouts import EngineShape
    from nmsat.workloads import zoo

    cfg = SMALL.replace(**{"array.shadow_weights": True, "array.weight_load_ports": 2,
                           "buffers.weight.kib": kib})
    depth = buffer_geometry(cfg, EngineShape.from_config(cfg))["wgt"]
    R = cfg.array.rows
    prog = compile_workload(zoo.load("cnn", batch=2).workload, cfg, CompileOptions(nm=nm))
    blocks = [i for i, _, _ in prog.unrolled() if isinstance(i, Compute)]
    assert blocks
    for b in blocks:
        kc = ceil_div(b.k, cfg.array.k_per_cycle(b.nm))
        assert ceil_div(b.n, cfg.array.cols) * ceil_div(kc, R) <= depth, (b, depth)
    assert depth * R <= cfg.bank_words()["buffers.weight"]
