"""Trace files: round trip, immutability, every corruption case with its message, the
workload view, and consistency of the stored tensors with the reference model."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import zipfile

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from nmsat import __version__
from nmsat import reference as R
from nmsat.errors import NmsatError
from nmsat.types import NM, Method, Phase
from nmsat.workloads import zoo
from nmsat.workloads.trace import (
    STAT_NAMES,
    TENSOR_NAMES,
    Trace,
    TraceError,
    dumps_trace,
    load_trace,
    loads_trace,
    save_trace,
    summarize,
    trace_to_workload,
)
from nmsat.workloads.train import TrainConfig, dense_config, train, with_baseline

pytestmark = pytest.mark.torch


@pytest.fixture(scope="module")
def cnn_trace() -> Trace:
    cfg = TrainConfig(model="cnn", method="bdwp", nm="2:8", epochs=2, batch=16,
                      train_limit=64, sample_iterations=(0, 1, -1))
    return with_baseline(train(cfg), train(dense_config(cfg)))


@pytest.fixture(scope="module")
def blob(cnn_trace) -> bytes:
    return dumps_trace(cnn_trace)


def members(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        return {n: z.read(n) for n in z.namelist()}


def rezip(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        for n, b in files.items():
            z.writestr(n, b)
    return out.getvalue()


def edit_manifest(data: bytes, fn) -> bytes:
    files = members(data)
    m = json.loads(files["manifest.json"])
    fn(m)
    files["manifest.json"] = json.dumps(m).encode()
    return rezip(files)


def npy(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


def replace_array(data: bytes, path: str, a: np.ndarray, fix_manifest: bool) -> bytes:
    files = members(data)
    files[path] = npy(a)
    if fix_manifest:
        m = json.loads(files["manifest.json"])
        m["members"][path] = {"sha256": hashlib.sha256(files[path]).hexdigest(),
                              "dtype": str(a.dtype), "shape": list(a.shape)}
        files["manifest.json"] = json.dumps(m).encode()
    return rezip(files)


def expect_error(data: bytes, *fragments: str) -> str:
    with pytest.raises(TraceError) as ei:
        loads_trace(data)
    msg = str(ei.value)
    assert "\n" not in msg and isinstance(ei.value, NmsatError)
    for f in fragments:
        assert f in msg, msg
    return msg


# --------------------------------------------------------------------------- content


def test_trace_records_the_run(cnn_trace):
    t = cnn_trace
    assert (t.model, t.method, t.nm, t.version, t.tool_version) == (
        "cnn", Method.BDWP, NM(2, 8), 1, __version__)
    assert t.iterations == 2 * (64 // 16) == t.loss.shape[0]
    assert [x.name for x in t.weight_layers] == ["conv1", "conv2", "fc1", "fc2"]
    sparse = {x.name: (x.sparse_ff, x.sparse_bp) for x in t.weight_layers}
    # conv1 has one input channel: 8 does not divide it, so its FF stays dense.
    assert sparse == {"conv1": (False, True), "conv2": (True, True), "fc1": (True, True),
                      "fc2": (True, True)}
    st = t.stats
    assert set(st) == set(STAT_NAMES)
    assert np.isnan(st["ff_flip"][0]).all() and not np.isnan(st["ff_flip"][1:]).any()
    np.testing.assert_array_equal(st["ff_density"][:, 0], 1.0)  # conv1 FF dense
    np.testing.assert_array_equal(st["ff_density"][:, 1:3], 0.25)  # whole groups of 8
    np.testing.assert_array_equal(st["bp_density"][:, :3], 0.25)
    # fc2: 10 = 8 + partial 2
    np.testing.assert_array_equal(st["bp_density"][:, 3], np.float32(0.4))
    assert ((st["act_zero"] >= 0) & (st["act_zero"] <= 1)).all()
    assert (st["act_zero"][:, 1:] > 0.05).all()  # post-ReLU inputs have zeros
    assert len(t.accuracy) == 2 and t.baseline is not None and len(t.baseline.accuracy) == 2
    assert [s.iteration for s in t.samples] == [0, 1, t.iterations - 1]


def test_gemm_dims_per_phase_come_from_the_layer_model(cnn_trace, blob):
    m = json.loads(members(blob)["manifest.json"])
    conv2 = next(x for x in m["layers"] if x["layer"]["name"] == "conv2")
    # FF: [batch*8*8, 32] x K = 3*3*16; BP: K = 32 output channels; WG: K = batch*8*8.
    assert conv2["gemms"] == {"ff": [[1024, 32, 144, 1]], "bp": [[1024, 144, 32, 1]],
                              "wg": [[32, 144, 1024, 1]]}


def test_stored_masks_are_the_reference_masks_of_the_stored_fp16_weights(cnn_trace):
    """What the RTL replays is self-consistent: the SORE's masks of the fp16 weights."""
    for s in cnn_trace.samples:
        for tl in cnn_trace.weight_layers:
            lt = s.layers[tl.name]
            np.testing.assert_array_equal(lt.w_fp16, R.quantize(lt.w_master, "fp16"))
            rff, rbp = R.layer_masks(lt.w_fp16.astype(np.float32), "bdwp", "2:8")
            np.testing.assert_array_equal(lt.ff_mask, rff if tl.sparse_ff else True)
            np.testing.assert_array_equal(lt.bp_mask, rbp if tl.sparse_bp else True)
            np.testing.assert_array_equal(lt.w_ff, np.where(lt.ff_mask, lt.w_fp16, 0))
            np.testing.assert_array_equal(lt.w_bp, np.where(lt.bp_mask, lt.w_fp16, 0))
            np.testing.assert_array_equal(lt.x_fp16, R.quantize(lt.x, "fp16"))
            np.testing.assert_array_equal(lt.dy_fp16, R.quantize(lt.dy, "fp16"))


def test_weight_update_replays_bit_for_bit_on_the_engine_model(cnn_trace):
    """Iteration 0's stored update operands give iteration 1's master weights and
    momentum exactly under reference.weight_update: training's update is the engine's."""
    s0, s1 = cnn_trace.samples[0], cnn_trace.samples[1]
    assert (s0.iteration, s1.iteration) == (0, 1)
    for name, a in s0.layers.items():
        w, v = R.weight_update(a.w_master, a.dw, a.velocity, s0.lr, cnn_trace.momentum)
        np.testing.assert_array_equal(w, s1.layers[name].w_master)
        np.testing.assert_array_equal(v, s1.layers[name].velocity)


@pytest.mark.parametrize("name", ["conv2", "fc1"])
def test_reference_train_step_on_stored_tensors(cnn_trace, name):
    """The replay recipe of docs/trace-format.md: train_step on the stored fp32 tensors
    uses exactly the stored fp16 operands and weights, and its fp16-operand gradient is
    within fp16 input rounding of the fp32 one the training used."""
    s = cnn_trace.samples[-1]
    a, layer = s.layers[name], cnn_trace.layer(name).layer
    conv = None
    if name.startswith("conv"):
        conv = R.ConvGeom(n=cnn_trace.batch, c=layer.in_ch, h=layer.in_h, w=layer.in_w,
                          cout=layer.out_ch, kh=layer.kh, kw=layer.kw, stride=layer.stride,
                          padding=layer.padding, groups=layer.groups)
    r = R.train_step(a.w_master, a.x, a.dy, method="bdwp", nm="2:8", lr=s.lr,
                     momentum=cnn_trace.momentum, velocity=a.velocity, conv=conv)
    np.testing.assert_array_equal(r.w_ff, a.w_ff)
    np.testing.assert_array_equal(r.w_bp, a.w_bp)
    scale = np.abs(a.dw).max()
    np.testing.assert_allclose(r.dw, a.dw, atol=2e-2 * scale)


def test_sampled_weight_gradient_is_dense_dy_t_x(cnn_trace):
    lt = cnn_trace.samples[-1].layers["fc1"]
    want = lt.dy.astype(np.float64).T @ lt.x.astype(np.float64)
    np.testing.assert_allclose(lt.dw, want, rtol=1e-4, atol=1e-6)


def test_trace_to_workload_is_the_zoo_model(cnn_trace):
    wl = trace_to_workload(cnn_trace)
    ref = zoo.get("cnn", batch=16)
    assert wl.layers == ref.layers and wl.batch == 16
    assert wl.macs(Phase.FF) == ref.macs(Phase.FF)
    for tl in cnn_trace.layers:
        assert tl.layer.nm_applies(Phase.BP, cnn_trace.method, cnn_trace.nm) == tl.sparse_bp


def test_summary(cnn_trace):
    s = summarize(cnn_trace)
    json.dumps(s)  # JSON-ready
    assert s["final_test_accuracy"] == cnn_trace.final_accuracy
    assert s["baseline_test_accuracy"] == cnn_trace.baseline.final_accuracy
    rows = {r["name"]: r for r in s["layers"]}
    assert rows["conv2"]["ff_density"] == 0.25 and "ff_density" not in rows["pool"]


# --------------------------------------------------------------------------- round trip


def test_round_trip_is_lossless_and_byte_stable(cnn_trace, blob, tmp_path):
    p = tmp_path / "run.nmt"
    save_trace(cnn_trace, p)
    t = load_trace(p)
    for f in dataclasses.fields(Trace):
        a, b = getattr(cnn_trace, f.name), getattr(t, f.name)
        if f.name == "loss":
            np.testing.assert_array_equal(a, b)
        elif f.name == "stats":
            for k in STAT_NAMES:
                np.testing.assert_array_equal(a[k], b[k])
        elif f.name == "samples":
            for sa, sb in zip(a, b, strict=True):
                assert (sa.iteration, sa.epoch, sa.lr) == (sb.iteration, sb.epoch, sb.lr)
                for name in sa.layers:
                    for tn in TENSOR_NAMES:
                        x, y = getattr(sa.layers[name], tn), getattr(sb.layers[name], tn)
                        assert x.dtype == y.dtype
                        np.testing.assert_array_equal(x, y)
        else:
            assert a == b, f.name
    assert dumps_trace(t) == blob  # fixed zip timestamps: same trace, same bytes


def test_loaded_trace_is_immutable(blob):
    t = loads_trace(blob)
    with pytest.raises(dataclasses.FrozenInstanceError):
        t.seed = 3
    with pytest.raises(ValueError):
        t.loss[0] = 1.0
    with pytest.raises(ValueError):
        t.samples[0].layers["fc1"].w_master[0, 0] = 1.0
    with pytest.raises(TypeError):
        t.stats["ff_density"] = None
    with pytest.raises(TypeError):
        t.samples[0].layers["fc1"] = None


def test_save_is_atomic(cnn_trace, tmp_path, monkeypatch):
    p = tmp_path / "t.nmt"
    save_trace(cnn_trace, p)
    before = p.read_bytes()
    import nmsat.workloads.trace as tr

    def boom(trace):
        raise RuntimeError("disk full")
    monkeypatch.setattr(tr, "dumps_trace", boom)
    with pytest.raises(RuntimeError):
        tr.save_trace(cnn_trace, p)
    assert p.read_bytes() == before and [x.name for x in tmp_path.iterdir()] == ["t.nmt"]


# --------------------------------------------------------------------------- corruption


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(TraceError, match="trace not found"):
        load_trace(tmp_path / "nope.nmt")
    with pytest.raises(TraceError, match="is a folder, not a regular file"):
        load_trace(tmp_path)


def test_truncated_file(blob, tmp_path):
    p = tmp_path / "cut.nmt"
    p.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(TraceError, match="truncated or corrupted") as ei:
        load_trace(p)
    assert str(ei.value).startswith(str(p))


def test_not_a_zip():
    expect_error(b"hello, I am a text file", "not a readable zip container")


def test_flipped_byte_in_compressed_data(blob):
    files = members(blob)
    target = "samples/1/fc1/w_master.npy"
    with zipfile.ZipFile(io.BytesIO(blob)) as z:
        info = z.getinfo(target)
    data = bytearray(blob)
    pos = info.header_offset + 30 + len(target.encode()) + len(info.extra) + info.compress_size // 2
    data[pos] ^= 0xFF
    assert files  # the container itself still parses
    expect_error(bytes(data), "corrupt")


def test_bad_checksum(blob):
    files = members(blob)
    path = "samples/1/conv2/w_master.npy"
    a = np.load(io.BytesIO(files[path]))
    a = a.copy()
    a[0, 0, 0, 0] += 1.0  # a consistent zip (fresh CRC) whose data no longer matches
    expect_error(replace_array(blob, path, a, fix_manifest=False),
                 f"member '{path}' fails its SHA-256 checksum")


@pytest.mark.parametrize("version", [2, 0, "1"])
def test_wrong_version(blob, version):
    def fn(m):
        m["version"] = version
    expect_error(edit_manifest(blob, fn), f"unsupported trace version {version!r}",
                 "reads version 1")


def test_not_a_trace_format(blob):
    def fn(m):
        m["format"] = "something-else"
    expect_error(edit_manifest(blob, fn), "not an nmsat trace")


def test_inconsistent_tensor_shape(blob):
    path = "samples/0/fc1/w_master.npy"
    bad = np.zeros((64, 511), np.float32)  # the layer is 512 -> 64
    expect_error(replace_array(blob, path, bad, fix_manifest=True),
                 "layer fc1: w_master has shape (64, 511), expected (64, 512)")


def test_inconsistent_activation_shape(blob):
    path = "samples/1/conv2/x.npy"
    bad = np.zeros((16, 16, 8, 7), np.float32)
    expect_error(replace_array(blob, path, bad, fix_manifest=True),
                 "conv2: x has shape (16, 16, 8, 7), expected (16, 16, 8, 8)")


def test_inconsistent_stats_shape(blob):
    bad = np.zeros((8, 3), np.float32)
    expect_error(replace_array(blob, "stats/bp_flip.npy", bad, fix_manifest=True),
                 "stats bp_flip has shape (8, 3), expected (8, 4)")


def test_layer_shape_edited_against_its_gemms(blob):
    def fn(m):
        m["layers"][0]["layer"]["out_ch"] = 24
    expect_error(edit_manifest(blob, fn), "layer conv1: stored GEMM dims")


def test_sparsity_flags_must_follow_the_layer_rule(blob):
    def fn(m):
        m["layers"][0]["sparse_ff"] = True  # conv1: 1 input channel cannot be 2:8
        m["layers"][0]["layer"]["name"] = "conv1"
    expect_error(edit_manifest(blob, fn), "layer conv1: sparse_ff/sparse_bp True/True")


def test_manifest_dtype_mismatch(blob):
    files = members(blob)
    m = json.loads(files["manifest.json"])
    m["members"]["loss.npy"]["dtype"] = "float64"
    files["manifest.json"] = json.dumps(m).encode()
    expect_error(rezip(files), "member 'loss.npy' holds float32")


def test_unknown_and_missing_fields(blob):
    def extra(m):
        m["run"]["colour"] = "blue"
    expect_error(edit_manifest(blob, extra), "manifest run: unknown field 'colour'")

    def missing(m):
        del m["run"]["seed"]
    expect_error(edit_manifest(blob, missing), "manifest run: missing field 'seed'")

    def wrong_type(m):
        m["run"]["batch"] = "16"
    expect_error(edit_manifest(blob, wrong_type), "manifest run.batch: expected int")

    def bad_method(m):
        m["run"]["method"] = "magic"
    expect_error(edit_manifest(blob, bad_method), "run.method: unknown Method 'magic'")


def test_duplicate_manifest_key(blob):
    files = members(blob)
    raw = files["manifest.json"].decode()
    files["manifest.json"] = raw.replace('"format":', '"version": 1, "format":', 1).encode()
    expect_error(rezip(files), "duplicate key 'version'")


def test_missing_and_unlisted_members(blob):
    files = members(blob)
    del files["stats/act_zero.npy"]
    expect_error(rezip(files), "member 'stats/act_zero.npy' is missing")
    files = members(blob)
    files["extra.npy"] = npy(np.zeros(3))
    expect_error(rezip(files), "member 'extra.npy' is not listed in the manifest")
    files = members(blob)
    del files["manifest.json"]
    expect_error(rezip(files), "no manifest.json")


def test_manifest_not_json(blob):
    files = members(blob)
    files["manifest.json"] = b"{not json"
    expect_error(rezip(files), "manifest.json is not valid JSON")


def test_zoo_load_resolves_a_trace_file(cnn_trace, tmp_path):
    p = tmp_path / "run.nmt"
    save_trace(cnn_trace, p)
    lw = zoo.load(p)
    assert lw.workload.layers == zoo.get("cnn").layers and lw.workload.batch == 16
    assert dict(lw.layer_nm) == {n: NM(2, 8) for n in ("conv1", "conv2", "fc1", "fc2")}
    assert lw.source == "trace bdwp 2:8"
    assert zoo.load(p, batch=4).workload.batch == 4
    with pytest.raises(ValueError, match="no sequence length"):
        zoo.load(p, seq_len=128)


# --------------------------------------------------------------------------- hostile files


def test_a_manifest_that_would_inflate_to_gigabytes_is_refused_unread():
    """3 MB of deflated zeros declaring a 2 GiB manifest: refused from the directory,
    before any byte is inflated (this ended in a MemoryError)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        with z.open("manifest.json", "w", force_zip64=True) as f:
            chunk = b" " * (1 << 20)
            for _ in range(20):  # 20 MiB is enough to cross the limits; the check is by size
                f.write(chunk)
    expect_error(out.getvalue(), "member 'manifest.json' inflates to 20,971,520 bytes",
                 "limit 16,777,216")


def test_unsupported_compression_is_one_line(blob):
    files = members(blob)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        for n, b in files.items():
            z.writestr(n, b, compress_type=zipfile.ZIP_BZIP2 if n == "loss.npy" else None)
    data = bytearray(out.getvalue())
    expect_error(bytes(data), "member 'loss.npy' uses compression method 12")


@pytest.mark.parametrize("tensor", ["w_master", "x", "dw"])
def test_non_finite_tensors_are_refused_naming_the_member(blob, cnn_trace, tensor):
    s = cnn_trace.samples[-1]
    name = next(iter(s.layers))
    a = getattr(s.layers[name], tensor).copy()
    a.flat[0] = np.nan
    path = f"samples/{len(cnn_trace.samples) - 1}/{name}/{tensor}.npy"
    expect_error(replace_array(blob, path, a, fix_manifest=True), f"{tensor} ({path}) holds "
                 "NaN or Inf")


def test_a_working_copy_that_is_not_fp16_of_the_master_is_refused(blob, cnn_trace):
    s = cnn_trace.samples[0]
    name = next(iter(s.layers))
    a = s.layers[name].w_fp16.copy()
    a.flat[0] = a.flat[0] + np.float16(1)
    path = f"samples/0/{name}/w_fp16.npy"
    expect_error(replace_array(blob, path, a, fix_manifest=True), "w_fp16", "is not what")


@pytest.mark.parametrize("tensor", ["w_master", "x", "dy"])
def test_a_finite_value_beyond_fp16_is_refused_without_a_warning(blob, cnn_trace, tensor):
    """A finite fp32 value over fp16's range (its fp16 copy would be Inf) is refused as a
    mismatch of the fp16 copy, in one line and with no NumPy overflow warning on stderr
    (the fuzz run found `RuntimeWarning: overflow encountered in cast` before the line)."""
    import warnings

    s = cnn_trace.samples[0]
    name = next(iter(s.layers))
    a = getattr(s.layers[name], tensor).copy()
    a.flat[0] = np.float32(1e6)
    path = f"samples/0/{name}/{tensor}.npy"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        expect_error(replace_array(blob, path, a, fix_manifest=True), "is not what")


def test_a_layer_field_out_of_range_is_refused_naming_the_layer(blob):
    """A negative layer width in the manifest is refused naming the manifest layer (the
    fuzz run found the bare 'GEMM dimension n must be a positive integer')."""
    def edit(m):
        layer = next(d["layer"] for d in m["layers"] if "out_features" in d["layer"])
        layer["out_features"] = -1000000
    expect_error(edit_manifest(blob, edit), "manifest layers[", "GEMM dimension")


def test_device_and_fifo_are_refused_without_reading(tmp_path):
    import os

    from nmsat.workloads.trace import load_trace

    with pytest.raises(TraceError, match="/dev/zero is a device, not a regular file"):
        load_trace("/dev/zero")
    fifo = tmp_path / "t.nmt"
    os.mkfifo(fifo)
    with pytest.raises(TraceError, match="is a FIFO, not a regular file"):
        load_trace(fifo)
