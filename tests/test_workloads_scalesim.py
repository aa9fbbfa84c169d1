"""SCALE-Sim topology importer: the real SCALE-Sim files, both dialects, malformed rows."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nmsat.errors import NmsatError
from nmsat.types import NM
from nmsat.workloads import load, scalesim
from nmsat.workloads.layers import Conv2d, Linear
from nmsat.workloads.scalesim import Dialect, Form, Geometry

DATA = Path(__file__).parent / "data" / "scalesim" / "topologies"
CONV_HEADER = ("Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, "
               "Num Filter, Strides,\n")


def _scalesim_ofmap(h: int, f: int, s: int) -> int:
    """SCALE-Sim's topology_utils: ofmap = ceil((H - fh + s) / s)."""
    return math.ceil((h - f + s) / s)


# Resnet18.csv transcribed by hand: (IFMAP H = W, filter, channels, filters, stride, count).
RESNET18_ROWS = [
    (224, 7, 3, 64, 2, 1),
    (56, 3, 64, 64, 1, 4),
    (56, 3, 64, 128, 2, 1), (28, 3, 128, 128, 1, 3), (56, 1, 64, 128, 2, 1),
    (28, 3, 128, 256, 2, 1), (14, 3, 256, 256, 1, 3), (28, 1, 128, 256, 2, 1),
    (14, 3, 256, 512, 2, 1), (7, 3, 512, 512, 1, 3), (14, 1, 256, 512, 2, 1),
    (1, 1, 512, 1000, 1, 1),
]


def test_resnet18_csv_macs_by_hand():
    topo = scalesim.read(DATA / "conv_nets" / "Resnet18.csv")
    assert (topo.form, topo.dialect, topo.name, len(topo.layers)) == (
        Form.CONV, Dialect.COMMON, "Resnet18", 21)
    hand = sum(n * _scalesim_ofmap(h, f, s) ** 2 * f * f * c * k
               for h, f, c, k, s, n in RESNET18_ROWS)
    assert topo.workload().macs_per_sample == hand == 1_471_181_568
    # SCALE-Sim's ceil gives Conv1 110x110 and the 1x1 stride-2 shortcut 29x29 (a real
    # convolution of the unpadded IFMAP gives 109 and 28); the exact geometry does that.
    w = topo.workload()
    assert w.layer("Conv1").out_shape == (64, 110, 110)
    assert w.layer("Conv3_s").out_shape == (128, 29, 29)
    exact = scalesim.read(DATA / "conv_nets" / "Resnet18.csv", geometry=Geometry.EXACT)
    ew = exact.workload()
    assert ew.layer("Conv1").out_shape == (64, 109, 109)
    assert ew.layer("Conv3_s").out_shape == (128, 28, 28)
    assert ew.layer("Conv3_s").in_shape == (64, 56, 56)
    assert ew.layer("FC").macs() == 512 * 1000


def test_real_files():
    resnet50 = scalesim.read(DATA / "mlperf" / "Resnet50.csv")  # blank line after the header
    assert len(resnet50.layers) == 54 and resnet50.lines["Conv1"] == 3
    assert resnet50.workload().layer("CB2a_1").in_shape == (64, 56, 56)
    alexnet = scalesim.read(DATA / "conv_nets" / "alexnet.csv")  # space-padded fields
    assert [l.name for l in alexnet.layers] == ["Conv1", "Conv2", "Conv3", "Conv4", "Conv5"]
    conv1 = alexnet.layers[0]
    assert conv1.out_shape == (96, 55, 55) and conv1.macs() == 55 * 55 * 121 * 3 * 96
    vit = scalesim.read(DATA / "GEMM_mnk" / "vit_s.csv")  # GEMM form, trailing blank line
    assert vit.form is Form.GEMM
    assert [(l.tokens, l.out_features, l.in_features) for l in vit.layers] == [
        (196, 192, 384), (196, 1176, 64), (196, 64, 1176), (196, 1536, 384), (196, 384, 1536)]
    assert vit.workload().macs_per_sample == sum(m * n * k for m, n, k in [
        (196, 192, 384), (196, 1176, 64), (196, 64, 1176), (196, 1536, 384), (196, 384, 1536)])


def test_v3_sparsity_column_conv_and_gemm():
    conv = scalesim.parse(
        "Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, "
        "Num Filter, Strides, Sparsity,\nCONV_1,     5,    5,   3,   3,   2,   6,   1,   2:4,\n"
        "CONV_2, 5, 5, 3, 3, 8, 6, 1, ,\n", name="conv")
    assert conv.dialect is Dialect.V3 and dict(conv.layer_nm) == {"CONV_1": NM(2, 4)}
    gemm = scalesim.parse("Layer, M, N, K,\nGEMM_1, 3, 5, 16, 3:4,\nGEMM_2, 3, 5, 16,\n",
                          name="gemm")
    assert gemm.form is Form.GEMM and gemm.dialect is Dialect.V3
    assert dict(gemm.layer_nm) == {"GEMM_1": NM(3, 4)}
    assert gemm.layers[0] == Linear("GEMM_1", in_features=16, out_features=5, tokens=3)


def test_optional_columns_may_be_empty_or_missing():
    topo = scalesim.parse("Layer, M, N, K, Batch Size, Sparsity,\nG1, 2, 3, 4, 8, 1:4,\n"
                          "G2, 2, 3, 4, 8,\nG3, 2, 3, 4, , ,\n")
    assert dict(topo.layer_nm) == {"G1": NM(1, 4)} and topo.batch == 8
    with pytest.raises(NmsatError, match=r"line 2: expected 6 fields as in the header on line "
                                         r"1, found 3$"):
        scalesim.parse("Layer, M, N, K, Batch Size, Sparsity,\nG1, 2, 3,\n")


def test_v2_stride_width_column_and_headerless():
    # SCALE-Sim v2 writes separate stride columns; a 9th integer without a header is one too.
    text = ("Layer name,IFMAP height,IFMAP width,Filter height,Filter width,Channels,"
            "Num filter,Stride height,Stride width,\nC1,9,9,3,3,4,8,2,2,\n")
    topo = scalesim.parse(text)
    assert topo.dialect is Dialect.V2 and topo.layers[0].stride == 2
    headerless = scalesim.parse("C1,9,9,3,3,4,8,2,2,\nC2,4,4,1,1,8,8,1,1,\n")
    assert [l.name for l in headerless.layers] == ["C1", "C2"]  # SCALE-Sim drops row 1
    assert headerless.dialect is Dialect.V2


def test_v3_batch_column_by_header():
    text = ("Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, "
            "Num Filter, Strides, Batch Size,\nFF_1, 512, 512, 1, 1, 64, 128, 1, 4,\n")
    topo = scalesim.parse(text)
    assert topo.batch == 4 and topo.dialect is Dialect.V3
    assert topo.workload().batch == 4 and topo.workload(2).batch == 2


def test_depthwise_is_a_grouped_conv_with_scalesims_macs():
    text = CONV_HEADER + "Conv2_DP, 114, 114, 3, 3, 32, 1, 1,\nConv3, 112,112,1,1,32,64,1,\n"
    topo = scalesim.parse(text)
    dp = topo.layers[0]
    assert isinstance(dp, Conv2d) and (dp.groups, dp.in_ch, dp.out_ch) == (32, 32, 32)
    # SCALE-Sim runs 32 single-channel layers of 1 filter each
    assert dp.macs() == 32 * (112 * 112 * 9 * 1 * 1)
    assert dp.out_shape == topo.layers[1].in_shape


def test_comments_tabs_crlf_bom():
    text = ("\ufeff" + CONV_HEADER.replace("\n", "\r\n") + "\tConv2_dw,112,112,3,3,1,1,1,#dw\r\n"
            "# a comment line\r\n\r\n")
    topo = scalesim.parse(text)
    assert [l.name for l in topo.layers] == ["Conv2_dw"] and topo.lines["Conv2_dw"] == 2


def test_load_returns_layer_nm(tmp_path):
    path = tmp_path / "sparse.csv"
    path.write_text("Layer, M, N, K,\nG1, 8, 16, 32, 2:8,\nG2, 8, 16, 32,\n")
    loaded = load(str(path), batch=3)
    assert loaded.workload.batch == 3 and loaded.workload.name == "sparse"
    assert dict(loaded.layer_nm) == {"G1": NM(2, 8)}
    assert loaded.source == "SCALE-Sim v3 gemm"
    with pytest.raises(ValueError, match="has no sequence length"):
        load(str(path), seq_len=8)


def _err(text: str, **kw) -> str:
    with pytest.raises(NmsatError) as info:
        scalesim.parse(text, name="t.csv", **kw)
    return str(info.value)


@pytest.mark.parametrize("text, message", [
    (CONV_HEADER + "Conv1,224,224,7,7,3,64,2\n",
     "t.csv: line 2, column 8: row does not end with a comma; SCALE-Sim drops the text after "
     "the last comma ('2'), so add a trailing comma"),
    (CONV_HEADER + "Conv1,224,224,x,7,3,64,2,\n",
     "t.csv: line 2, column 4 (Filter Height): expected a positive integer, not 'x'"),
    (CONV_HEADER + "Conv1,224,224,7,7,3,0,2,\n",
     "t.csv: line 2, column 7 (Num Filter): expected a positive integer, not 0"),
    ("C1,5,5,3,3,2,6,1,9:8,\n",
     "t.csv: line 1, column 9 (Sparsity): N must be between 1 and M, not 9 (M=8)"),
    ("Layer, M, N, K, Sparsity,\nG,4,4,4,2-4,\n",
     "t.csv: line 2, column 5 (Sparsity): N:M pattern must look like 2:8, not '2-4'"),
    (CONV_HEADER + "Conv1,224,224,7,7,3,64,\n",
     "t.csv: line 2: expected 8 fields as in the header on line 1, found 7"),
    ("Conv1,224,224,7,7,3,64,2,1,1,\n",
     "t.csv: line 1: expected 8 or 9 fields (conv) or 4 or 5 fields (GEMM), found 10"),
    ("C1,9,9,3,3,4,8,1,\nC2,9,9,3,3,4,8,1,1,1,\n",
     "t.csv: line 2: expected 8 or 9 fields for a conv row, found 10"),
    ("C1,9,9,3,3,4,8,1,2:4,\nC2,9,9,3,3,4,8,1,1,\n",
     "t.csv: line 2, column 9: a stride width (v2) here but an N:M pattern (v3) in the same "
     "column on line 1"),
    ("C1,9,9,3,3,4,8,1,x,\n",
     "t.csv: line 1, column 9: expected a stride width (v2) or an N:M pattern (v3), not 'x'"),
    ("C1,9,9,3,3,4,8,2,1,\n",
     "t.csv: line 1, column 9 (Stride Width): stride width 1 differs from stride height 2; "
     "only square strides are supported"),
    (CONV_HEADER + "Conv1,7,224,9,7,3,64,2,\n",
     "t.csv: line 2, column 4 (Filter Height): filter height 9 exceeds the IFMAP Height 7"),
    (CONV_HEADER + "A,9,9,3,3,4,8,1,\n\nA,9,9,3,3,4,8,1,\n",
     "t.csv: line 4, column 1 (Layer name): duplicate layer name 'A' (first on line 2)"),
    (CONV_HEADER + " ,9,9,3,3,4,8,1,\n",
     "t.csv: line 2, column 1 (Layer name): empty layer name"),
    ("Layer, M, N, Batch,\nG,4,4,1,\n", "t.csv: line 1: the header lacks the 'K' column"),
    ("Layer, M, N, K, Batch Size,\nG,4,4,4,1,\nH,4,4,4,2,\n",
     "t.csv: line 3, column 5 (Batch Size): batch size 2 differs from 1 on line 2 (one "
     "topology has one batch size)"),
    ("\n\n", "t.csv: no layers (the file is empty)"),
    (CONV_HEADER, "t.csv: no layers (only a header on line 1)"),
    ("just some text\n", "t.csv: no layers (only a header on line 1)"),
    ("Conv1 224 224 7 7 3 64 2\nx\n", "t.csv: line 2: not a comma-separated row: 'x'"),
])
def test_malformed_rows(text, message):
    assert _err(text) == message


def test_explicit_form_mismatch_and_layout_file():
    with pytest.raises(NmsatError, match=r"line 2: expected 4 or 5 fields for a GEMM row, "
                                         r"found 8$"):
        scalesim.parse(CONV_HEADER.replace("IFMAP", "IF") + "C,9,9,3,3,4,8,1,\n", form="gemm")
    layout = Path(__file__).parent / "data" / "scalesim" / "layouts" / "conv_nets" / "test.csv"
    with pytest.raises(NmsatError, match=r"test.csv: line 2: expected 8 or 9 fields \(conv\) "
                                         r"or 4 or 5 fields \(GEMM\), found 21$"):
        scalesim.read(layout)
    with pytest.raises(ValueError, match="unknown Form 'fc'"):
        scalesim.parse("G,1,1,1,\n", form="fc")


@settings(max_examples=60, deadline=None)
@given(h=st.integers(1, 40), w=st.integers(1, 40), fh=st.integers(1, 7), fw=st.integers(1, 7),
       c=st.integers(1, 16), f=st.integers(1, 16), s=st.integers(1, 4), dp=st.booleans())
def test_conv_rows_reproduce_scalesim_macs(h, w, fh, fw, c, f, s, dp):
    if fh > h or fw > w:
        return
    name = "L_DP" if dp else "L"
    topo = scalesim.parse(CONV_HEADER + f"{name},{h},{w},{fh},{fw},{c},{f},{s},\n")
    per_channel = _scalesim_ofmap(h, fh, s) * _scalesim_ofmap(w, fw, s) * fh * fw * f
    expected = c * per_channel if dp else per_channel * c  # DP: C layers of one channel
    assert topo.workload().macs_per_sample == expected
    exact = scalesim.parse(CONV_HEADER + f"{name},{h},{w},{fh},{fw},{c},{f},{s},\n",
                           geometry="exact").layers[0]
    assert exact.out_h == (h - fh) // s + 1 and exact.in_shape == (c, h, w)


@settings(max_examples=30, deadline=None)
@given(m=st.integers(1, 5000), n=st.integers(1, 5000), k=st.integers(1, 5000),
       nm=st.sampled_from(["", "1:4", "2:4", "2:8", "1:1"]))
def test_gemm_rows(m, n, k, nm):
    topo = scalesim.parse(f"Layer,M,N,K,\nG,{m},{n},{k},{nm + ',' if nm else ''}\n")
    assert topo.workload().macs_per_sample == m * n * k
    assert dict(topo.layer_nm) == ({"G": NM.parse(nm)} if nm else {})


_ROW = st.builds(
    lambda name, fields, comma: ",".join([name, *fields]) + ("," if comma else ""),
    st.sampled_from(["L", "L_DP", "", "L"]),
    st.lists(st.sampled_from(["1", "2", "3", "7", "9", "0", "x", "2:4", "9:8", "", "-1"]),
             max_size=10),
    st.booleans())


@settings(max_examples=300, deadline=None)
@given(text=st.one_of(st.text(alphabet=",:0123456789 DPx#\n-", max_size=120),
                      st.lists(_ROW, min_size=1, max_size=4).map("\n".join)),
       header=st.sampled_from(["", CONV_HEADER, "Layer, M, N, K, Sparsity,\n"]))
def test_any_text_parses_or_fails_with_one_located_error(text, header):
    try:
        topo = scalesim.parse(header + text, name="f.csv")
    except NmsatError as e:
        msg = str(e)
        assert msg.startswith("f.csv: ") and "\n" not in msg
    else:
        assert topo.layers and topo.workload().macs_per_sample > 0
