"""Tile-program ISA: JSON and binary round trips, field widths, validation messages."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nmsat.config import SMALL, VCU1525
from nmsat.dataflow import isa
from nmsat.dataflow.compiler import CompileOptions, compile_workload
from nmsat.dataflow.isa import (
    ENCODING,
    INSTR_BITS,
    Barrier,
    Buffer,
    Compute,
    ConvView,
    ElemType,
    IsaError,
    Load,
    Loop,
    Program,
    Release,
    Sore,
    SoreView,
    Store,
    Tensor,
    Transform,
    Unit,
    Vector,
    WeightUpdate,
    decode,
    encode,
)
from nmsat.types import NM, Dataflow, Method, Mode, Phase
from nmsat.workloads.layers import Conv2d, Elementwise, Linear, Matmul, OpKind, Workload


def _workload():
    return Workload("w", (
        Conv2d("c", in_ch=8, out_ch=16, in_h=12, in_w=12, kh=3, kw=3, padding=1),
        Elementwise("n", kind=OpKind.NORM, elements=16 * 144),
        Conv2d("g", in_ch=16, out_ch=16, in_h=12, in_w=12, kh=3, kw=3, groups=4),
        Matmul("m", m=10, n=10, k=8, count=2),
        Linear("fc", in_features=1600, out_features=10)), 3)


@pytest.mark.parametrize("opts", [CompileOptions(), CompileOptions(method=Method.SRSTE),
                                  CompileOptions(mode=Mode.INFERENCE, nm=NM(2, 4)),
                                  CompileOptions(interleave=False, pregen=False,
                                                 offline_schedule=False)])
@pytest.mark.parametrize("cfg", [SMALL, VCU1525], ids=["small", "vcu1525"])
def test_compiled_program_round_trips(cfg, opts):
    p = compile_workload(_workload(), cfg, opts)
    assert Program.from_json(p.to_json()) == p
    assert Program.from_json(p.to_json(indent=2)) == p
    raw = p.to_bytes()
    assert Program.from_bytes(raw) == p
    n_words = len(p.instructions) * INSTR_BITS // 8
    assert len(raw) > n_words


def _region(draw):
    u32 = st.integers(0, 2**32 - 1)
    return {"tensor": 0, "row0": draw(u32), "col0": draw(u32),
            "rows": draw(st.integers(1, 2**24 - 1)), "cols": draw(st.integers(1, 2**24 - 1)),
            "bytes": draw(st.integers(1, 2**32 - 1)),
            "transform": draw(st.sampled_from([Transform.NONE, Transform.TRANSPOSE])),
            "row_steps": (draw(u32), 0, 0, 0), "col_steps": (draw(u32), 0, 0, 0)}


@st.composite
def instructions(draw):
    kind = draw(st.sampled_from(list(isa.Opcode)))
    u32 = st.integers(1, 2**32 - 1)
    if kind is isa.Opcode.LOAD:
        return Load(buffer=draw(st.sampled_from([Buffer.ACT, Buffer.WGT])),
                    nm=draw(st.sampled_from([NM(1, 1), NM(2, 4), NM(2, 8), NM(15, 16)])),
                    **_region(draw))
    if kind is isa.Opcode.STORE:
        return Store(**_region(draw))
    if kind is isa.Opcode.COMPUTE:
        nm = draw(st.sampled_from([NM(1, 1), NM(2, 4), NM(2, 8), NM(1, 16), NM(15, 16)]))
        return Compute(draw(st.sampled_from(list(Dataflow))), nm,
                       *[draw(st.integers(1, 2**24 - 1)) for _ in range(3)],
                       interleave=draw(st.booleans()), pop_a=draw(st.booleans()),
                       pop_b=draw(st.booleans()), layer=0,
                       phase=draw(st.sampled_from(list(Phase))))
    if kind is isa.Opcode.RELEASE:
        return Release(draw(st.sampled_from([Buffer.ACT, Buffer.WGT])))
    if kind is isa.Opcode.SORE:
        return Sore(0, 0, draw(st.sampled_from(list(SoreView))), NM(2, 8), draw(u32),
                    draw(u32), draw(u32), draw(u32), 0)
    if kind is isa.Opcode.WEIGHT_UPDATE:
        return WeightUpdate(0, draw(u32), draw(u32), draw(u32), 0)
    if kind is isa.Opcode.VECTOR:
        return Vector(draw(st.sampled_from(list(OpKind))), draw(u32),
                      draw(st.integers(0, 2**32 - 1)), draw(st.integers(0, 2**32 - 1)), 0,
                      draw(st.sampled_from(list(Phase))))
    if kind is isa.Opcode.BARRIER:
        return Barrier(Unit(draw(st.integers(1, 31))))
    return None  # LOOP: built by the program strategy


@settings(max_examples=150, deadline=None)
@given(st.lists(instructions(), min_size=1, max_size=12))
def test_random_instructions_round_trip(items):
    body = [i for i in items if i is not None]
    if not body:
        return
    # Wrap everything in one loop so depth-0 address steps are legal.
    prog = Program((Loop(3, len(body)),) + tuple(body),
                   (Tensor("t", 4, 4, ElemType.FP16),), ("layer",), (("k", "v"),))
    for ins in prog.instructions:
        assert decode(encode(ins)) == ins
    assert Program.from_bytes(prog.to_bytes()) == prog
    assert Program.from_json(prog.to_json()) == prog


def test_encoding_table_fits_the_word():
    for fields in ENCODING.values():
        assert isa.OPCODE_BITS + sum(b for _, b in fields) <= INSTR_BITS
        names = [n for n, _ in fields]
        assert len(names) == len(set(names))


def test_values_must_fit_their_fields():
    with pytest.raises(IsaError, match=r"Compute.m must be between 0 and 16777215"):
        Compute(Dataflow.OS, NM(1, 1), 2**24, 1, 1)
    with pytest.raises(IsaError, match="Loop.count must be an integer >= 1, not 0"):
        Loop(0, 1)
    with pytest.raises(IsaError, match="Load.buffer must be ACT or WGT"):
        Load(0, 0, 0, 1, 1, 1, buffer=Buffer.OUT)
    with pytest.raises(IsaError, match="Sore.nm must be a sparse"):
        Sore(0, 0, SoreView.FF, NM(1, 1), 1, 1, 1, 1)
    with pytest.raises(IsaError, match="Barrier.units must be a non-empty"):
        Barrier(Unit(0))


def test_program_validation():
    t = (Tensor("t", 8, 8),)
    with pytest.raises(IsaError, match="loop body of 5 runs past"):
        Program((Loop(2, 5), Release(Buffer.ACT)), t)
    with pytest.raises(IsaError, match="only 0 loop"):
        Program((Load(0, 0, 0, 1, 1, 2, row_steps=(1, 0, 0, 0)),), t)
    with pytest.raises(IsaError, match="tensor 3 is not a tensor"):
        Program((Load(3, 0, 0, 1, 1, 2),), t)
    with pytest.raises(IsaError, match="IM2COL needs tensor 't' to have a conv view"):
        Program((Load(0, 0, 0, 1, 1, 2, transform=Transform.IM2COL),), t)
    deep = tuple(Loop(2, 5 - d) for d in range(5)) + (Release(Buffer.ACT),)
    with pytest.raises(IsaError, match="nest deeper than 4"):
        Program(deep, t)


def test_json_and_binary_errors():
    p = Program((Release(Buffer.ACT),), (Tensor("t", 2, 2),))
    d = json.loads(p.to_json())
    d["instructions"][0]["colour"] = 1
    with pytest.raises(IsaError, match="unknown field 'colour'"):
        Program.from_dict(d)
    d = json.loads(p.to_json())
    d["version"] = 99
    with pytest.raises(IsaError, match=f"version must be {isa.ISA_VERSION}"):
        Program.from_dict(d)
    with pytest.raises(IsaError, match="unknown op 'jump'"):
        Program.from_dict({"version": isa.ISA_VERSION, "instructions": [{"op": "jump"}]})
    with pytest.raises(IsaError, match="bad magic"):
        Program.from_bytes(b"hello")
    with pytest.raises(IsaError, match="unknown opcode 15"):
        decode(bytes([15]) + bytes(INSTR_BITS // 8 - 1))


def test_executions_multiply_loop_counts():
    t = (Tensor("t", 64, 64),)
    p = Program((Loop(3, 3), Loop(4, 1), Release(Buffer.ACT), Release(Buffer.WGT),
                 Release(Buffer.ACT)), t)
    times = [n for _, _, n in p.executions()]
    assert times == [12, 3, 1]
    assert sum(1 for _ in p.unrolled()) == 12 + 3 + 1


def test_conv_view_and_tensor_checks():
    cv = ConvView(2, 8, 8, 3, 3, 3, 1, 1)
    assert (cv.out_h, cv.im2col_rows, cv.im2col_cols) == (8, 128, 27)
    with pytest.raises(IsaError, match="does not match"):
        Tensor("x", 100, 3, conv=cv)
    with pytest.raises(IsaError, match="does not fit"):
        ConvView(1, 2, 2, 1, 5, 5)


def test_listing_indents_loop_bodies():
    p = Program((Loop(2, 2), Load(0, 0, 0, 4, 4, 32, row_steps=(4, 0, 0, 0)),
                 Compute(Dataflow.WS, NM(2, 8), 4, 4, 8, pop_b=False, layer=0),
                 Release(Buffer.WGT)), (Tensor("x", 8, 4),), ("fc",))
    lines = p.listing().splitlines()
    assert lines[0].startswith("LOOP")
    assert lines[1].startswith("  LOAD     x[0:+4, 0:+4] +i0*(4,0) none 32 B -> ACT")
    assert lines[2].startswith("  COMPUTE  ws 2:8 m=4 n=4 k=8 interleave keep_b  # fc ff")
    assert lines[3].startswith("RELEASE")
