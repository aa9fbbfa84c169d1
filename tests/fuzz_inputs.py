"""Hostile inputs for every kind nmsat reads, and a judge of what the CLI made of each.

Hypothesis strategies generate malformed accelerator configs (TOML, YAML, JSON), training
traces (a real trace, mutated), SCALE-Sim topology CSVs, sweep specs and whole command
lines; :class:`Sandbox` runs one command line in-process through ``nmsat.commands.main``
under a CPU-time limit (and a wall-time limit for runs blocked without using the CPU) and
an address-space limit, and classifies the outcome:

``ok`` (exit 0), ``refused`` (exit 2, one line naming a file, field or flag) or a defect:
``traceback``, ``over 10 s``, ``over 1 GiB``, ``partial output`` (a refusal that left or
changed a file), ``non-regular file replaced`` (a FIFO, socket, device link or folder
destination no longer what it was), ``exit code N``, ``multi-line message``,
``refusal not naming`` (no file, field or flag in the message), ``library error passed
through`` (the refusal is an exception that NumPy or the standard library raised, printed
as it came, not a message of nmsat's about the input; seen by wrapping each command).

Used by ``tests/test_fuzz.py`` (CI: a few thousand inputs) and ``benchmarks/fuzz.py``
(100,000 and more, counts by outcome).
"""

from __future__ import annotations

import contextlib
import dis
import functools
import io
import json
import os
import re
import resource
import shutil
import signal
import socket
import stat
import tempfile
import time
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import strategies as st

TIME_LIMIT_S = 10.0
"""Most CPU time (all threads) one input may take. CPU, not wall time: on a shared machine
a 0.5 s run can take 10 s of wall time, and a verdict must not depend on the neighbours."""
WALL_LIMIT_S = 60.0
"""Most wall time one input may take: catches a run blocked without using the CPU (a read
from a FIFO that never ends, a lock that is never released)."""
MEMORY_LIMIT = 1 << 30

DEFECTS = ("traceback", "over 10 s", "over 1 GiB", "partial output",
           "non-regular file replaced", "exit code", "multi-line message",
           "refusal not naming", "library error passed through")

PROJECT = Path(__file__).resolve().parents[1]
"""The source tree: an exception raised outside it (NumPy, the standard library) and
printed as a refusal was not translated into a message about the input."""

# ---------------------------------------------------------------------------- values

NASTY_INTS = st.sampled_from([0, -1, 1, 2, 3, 7, 255, 256, 65535, 65536, 2**31, 2**32, 2**63,
                              10**12, 10**30, -(2**63)])
NASTY_FLOATS = st.sampled_from([0.0, -0.0, 1e-300, 1e300, float("inf"), float("-inf"),
                                float("nan"), 0.5, -1.5, 1e12])
NASTY_STRINGS = st.sampled_from(["", " ", "2:8", " 2:8", "02:08", "2:08 ", "8:2", "0:8", "2:0",
                                 "dense", "1:1", "2:8:1", "a:b", "-1:4", "os", "ws", "OS",
                                 "fp16", "int8", "bf16", "none", "gate", "skip", "\x00",
                                 "é", "../../etc", "x" * 300, "1e9", "nan", "true"])
SCALARS = st.one_of(NASTY_INTS, NASTY_FLOATS, NASTY_STRINGS, st.booleans(), st.none(),
                    st.integers(-10**6, 10**6), st.floats(allow_nan=True))
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=8)
TEXT_GARBAGE = st.one_of(
    st.text(max_size=200), st.binary(max_size=200).map(lambda b: b.decode("latin-1")),
    st.integers(1, 5000).map(lambda n: "[" * n), st.integers(1, 5000).map(lambda n: "{" * n),
    st.integers(1, 3000).map(lambda n: "a:\n" + "".join(" " * i + "- \n" for i in range(n))),
    st.integers(1, 2000).map(lambda n: "x = " + "[" * n + "]" * n),
    st.just("a: &a [*a]\n"),
    st.just("a: &a [1,1,1,1,1,1,1,1]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,"
            "*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d]\nf: &f [*e,"
            "*e,*e,*e,*e,*e,*e,*e]\ng: [*f,*f,*f,*f,*f,*f,*f,*f]\n"),
    st.just("1: 2\n"), st.just("? [1, 2]\n: 3\n"), st.just("!!python/object:os.system {}\n"),
)


def _leaf_paths(d: dict, prefix: str = "") -> list[str]:
    out = []
    for k, v in d.items():
        if isinstance(v, dict):
            out += _leaf_paths(v, f"{prefix}{k}.")
        else:
            out.append(f"{prefix}{k}")
    return out


def _set(d: dict, path: str, value: Any) -> None:
    *parents, leaf = path.split(".")
    for p in parents:
        d = d.setdefault(p, {}) if isinstance(d.get(p, {}), dict) else {}
    d[leaf] = value


def _dump(data: Any, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(data, allow_nan=True)
    if fmt == "yaml":
        import yaml

        return yaml.safe_dump(data)
    import tomli_w

    try:
        return tomli_w.dumps(data)
    except (TypeError, ValueError):  # None or a non-dict top: not TOML-expressible
        return "x = 1\n[[[broken\n"


@st.composite
def config_files(draw) -> tuple[str, str]:
    """(suffix, text) of an accelerator config: a valid one with a few fields broken."""
    from nmsat import config

    fmt = draw(st.sampled_from(["toml", "yaml", "json"]))
    if draw(st.integers(0, 9)) == 0:
        return fmt, draw(TEXT_GARBAGE)
    data = config.to_dict(config.SMALL if draw(st.booleans()) else config.VCU1525)
    paths = _leaf_paths(data)
    for _ in range(draw(st.integers(1, 3))):
        what = draw(st.integers(0, 9))
        if what == 0:
            _set(data, draw(st.text(min_size=1, max_size=12)), draw(VALUES))
        elif what == 1:
            data.pop(draw(st.sampled_from(sorted(data))), None)
        elif what == 2:
            _set(data, "array.nm_patterns", draw(st.lists(NASTY_STRINGS, max_size=4)))
        else:
            _set(data, draw(st.sampled_from(paths)), draw(VALUES))
    if draw(st.booleans()):
        data = {"preset": draw(st.sampled_from(["small", "vcu1525", "nope"])), **data}
    return fmt, _dump(data, fmt)


@st.composite
def csv_files(draw) -> str:
    """A SCALE-Sim topology (conv or GEMM form) with broken cells, rows and headers."""
    if draw(st.integers(0, 9)) == 0:
        return draw(TEXT_GARBAGE)
    gemm = draw(st.booleans())
    head = ["Layer", "M", "N", "K"] if gemm else [
        "Layer name", "IFMAP Height", "IFMAP Width", "Filter Height", "Filter Width",
        "Channels", "Num Filter", "Strides"]
    if draw(st.booleans()):
        head = head + draw(st.sampled_from([["Sparsity"], ["Batch Size"], ["N:M"], ["x"]]))
    cell = st.one_of(st.integers(1, 64).map(str), NASTY_INTS.map(str), NASTY_STRINGS,
                     NASTY_FLOATS.map(str))
    rows = []
    for i in range(draw(st.integers(0, 6))):
        vals = [f"L{i}"] + [str(draw(st.integers(1, 32))) for _ in head[1:]]
        for _ in range(draw(st.integers(0, 2))):
            vals[draw(st.integers(0, len(vals) - 1))] = draw(cell)
        if draw(st.integers(0, 5)) == 0:
            vals = vals[:draw(st.integers(0, len(vals)))]
        rows.append(vals)
    if draw(st.integers(0, 20)) == 0:  # many layers: every instruction field must fit
        rows += [[f"L{i}", "8", "8", "8"] for i in range(draw(st.integers(100, 3000)))]
    sep = draw(st.sampled_from([",", ", ", ";"]))
    trail = draw(st.sampled_from(["", sep]))
    return "\n".join(sep.join(r) + trail for r in [head, *rows]) + "\n"


_CONSTRAINT_TOKENS = ["array.rows", "array.cols", "pes", "buffer_kib", "batch", "nm", "1", "2",
                      "10", "0", "'a'", "[1, 2]", "true", "+", "-", "*", "/", "//", "%", "**",
                      "<", "<=", "==", "in", "not", "and", "or", "(", ")", "min(", "max(",
                      "abs(", ",", "10 ** 10 ** 10", "'a' * 10 ** 10", "'%999999999d' % 1",
                      "-" * 300, "(" * 200, "x.y", "__import__('os')", "lambda: 1", "1e308 * 10"]


@st.composite
def spec_files(draw) -> tuple[str, str]:
    """(suffix, text) of a sweep spec: axes, constraints, options and sample drawn broken."""
    fmt = draw(st.sampled_from(["toml", "yaml"]))
    if draw(st.integers(0, 9)) == 0:
        return fmt, draw(TEXT_GARBAGE)
    spec: dict[str, Any] = {"name": draw(st.sampled_from(["t", "", "x" * 50])),
                            "base": draw(st.sampled_from(["small", "small", "vcu1525", "nope",
                                                          "/dev/zero.toml", "in/cfg.toml"])),
                            "workloads": draw(st.lists(st.sampled_from(
                                ["mlp", "cnn", "bert_base", "nope"]), min_size=0, max_size=2))}
    fields = ["array.rows", "array.cols", "clock_mhz", "buffers.weight.kib", "dram.channels",
              "energy.mac_fp16.pj", "array.nm_patterns", "seq_len", "batch", "nm", "method",
              "interleave", "nope.field"]
    axis = st.one_of(
        st.lists(SCALARS, max_size=4),
        st.fixed_dictionaries({"start": SCALARS, "stop": SCALARS, "step": SCALARS}),
        st.fixed_dictionaries({"start": SCALARS, "stop": SCALARS, "factor": SCALARS}),
        st.fixed_dictionaries({"random": st.sampled_from(["uniform", "int", "log-uniform",
                                                          "choice", "x"]),
                               "low": SCALARS, "high": SCALARS, "count": SCALARS,
                               "seed": SCALARS}),
        VALUES)
    spec["axes"] = {f: draw(axis) for f in draw(st.lists(st.sampled_from(fields), max_size=3,
                                                         unique=True))}
    if draw(st.booleans()):
        toks = draw(st.lists(st.sampled_from(_CONSTRAINT_TOKENS), min_size=1, max_size=8))
        spec["constraints"] = [" ".join(toks)]
    if draw(st.integers(0, 3)) == 0:
        spec["options"] = {draw(st.sampled_from(fields)): draw(SCALARS)}
    if draw(st.integers(0, 4)) == 0:
        spec["sample"] = {"count": draw(SCALARS), "seed": draw(SCALARS)}
    if draw(st.integers(0, 4)) == 0:
        spec["config"] = {draw(st.sampled_from(fields)): draw(VALUES)}
    return fmt, _dump(spec, fmt)


@functools.cache
def valid_trace() -> bytes:
    """A small valid trace built directly (one 16x8 linear layer, batch 2, 4 iterations),
    so that mutating and reading it costs milliseconds; every invariant holds."""
    from nmsat import reference
    from nmsat.types import NM, Method, Phase
    from nmsat.workloads.layers import Linear
    from nmsat.workloads.trace import (
        STAT_NAMES,
        EpochRecord,
        LayerTensors,
        Sample,
        Trace,
        TraceLayer,
        dumps_trace,
    )

    rng = np.random.default_rng(0)
    layer = Linear("fc", in_features=16, out_features=8)
    nm, method = NM(2, 8), Method.BDWP
    tl = TraceLayer(layer, method, nm, layer.nm_applies(Phase.FF, method, nm),
                    layer.nm_applies(Phase.BP, method, nm))
    w = rng.standard_normal((8, 16)).astype(np.float32)
    w16 = w.astype(np.float16)
    ff, bp = reference.layer_masks(w16.astype(np.float32), method, nm)
    x, dy = rng.standard_normal((2, 16), np.float32), rng.standard_normal((2, 8), np.float32)
    zero = np.float16(0)
    lt = LayerTensors(w_master=w, bias=np.zeros(8, np.float32), velocity=np.zeros_like(w),
                      w_fp16=w16, ff_mask=ff, bp_mask=bp, w_ff=np.where(ff, w16, zero),
                      w_bp=np.where(bp, w16, zero), x=x, x_fp16=x.astype(np.float16), dy=dy,
                      dy_fp16=dy.astype(np.float16), dw=(dy.T @ x).astype(np.float32))
    stats = {k: np.full((4, 1), 0.25, np.float32) for k in STAT_NAMES}
    for k in ("ff_flip", "bp_flip"):
        stats[k][0] = np.nan
    acc = (EpochRecord(1, 2.0, 0.5, 0.5), EpochRecord(2, 1.0, 0.75, 0.7))
    t = Trace(version=1, tool_version="fuzz", torch_version="none", model="fuzz",
              dataset="digits", method=method, nm=nm, seed=0, split_seed=0, epochs=2, batch=2,
              lr=0.1, momentum=0.9, srste_decay=0.0, train_size=4, test_size=4, threads=1,
              wall_seconds=0.0, layers=(tl,), loss=np.ones(4, np.float32), stats=stats,
              accuracy=acc, baseline=None, samples=(Sample(3, 2, 0.01, {"fc": lt}),))
    return dumps_trace(t)


@functools.cache
def _trace_members() -> tuple[tuple[str, bytes], ...]:
    with zipfile.ZipFile(io.BytesIO(valid_trace())) as z:
        return tuple((n, z.read(n)) for n in z.namelist())


def _rezip(files: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", method) as z:
        for n, b in files.items():
            z.writestr(n, b)
    return out.getvalue()


@st.composite
def trace_files(draw) -> bytes:
    """A real trace with its bytes, manifest or members broken."""
    data = valid_trace()
    what = draw(st.integers(0, 7))
    if what == 0:  # flipped bytes
        b = bytearray(data)
        for _ in range(draw(st.integers(1, 8))):
            b[draw(st.integers(0, len(b) - 1))] ^= draw(st.integers(1, 255))
        return bytes(b)
    if what == 1:
        return data[:draw(st.integers(0, len(data)))]
    files = dict(_trace_members())
    if what in (2, 3):  # a manifest field set to a hostile value (checksums stay right)
        m = json.loads(files["manifest.json"])
        paths = [p for p in _json_paths(m) if not p.startswith("members")]
        path = draw(st.sampled_from(paths))
        _json_set(m, path, draw(VALUES))
        files["manifest.json"] = json.dumps(m, allow_nan=True).encode()
        return _rezip(files)
    if what == 4:  # a member replaced by another array with a correct checksum
        import hashlib

        m = json.loads(files["manifest.json"])
        name = draw(st.sampled_from(sorted(m["members"])))
        old = np.load(io.BytesIO(files[name]))
        new = old.copy()
        if new.size and new.dtype.kind == "f":
            with np.errstate(over="ignore"):  # 1e300 into a float16 is Inf: as wanted
                new.flat[draw(st.integers(0, new.size - 1))] = draw(NASTY_FLOATS)
        elif draw(st.booleans()):
            new = np.zeros(draw(st.lists(st.integers(0, 3), max_size=3)), dtype=new.dtype)
        buf = io.BytesIO()
        np.save(buf, new)
        files[name] = buf.getvalue()
        m["members"][name] = {"sha256": hashlib.sha256(files[name]).hexdigest(),
                              "dtype": str(new.dtype), "shape": list(new.shape)}
        files["manifest.json"] = json.dumps(m, allow_nan=True).encode()
        return _rezip(files)
    if what == 5:  # other compression methods
        return _rezip(files, draw(st.sampled_from([zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA,
                                                   zipfile.ZIP_STORED])))
    if what == 6:  # a huge member declared by a tiny zip, or a deep manifest
        n = draw(st.integers(1, 40))
        files["manifest.json"] = (b"[" * (n * 1000)) if draw(st.booleans()) else \
            b" " * (n << 20)
        return _rezip(files)
    files["x" + draw(st.text(max_size=8)).replace("/", "_")] = draw(st.binary(max_size=64))
    return _rezip(files)


def _json_paths(d: Any, prefix: str = "") -> list[str]:
    out = [prefix.rstrip(".")] if prefix else []
    if isinstance(d, dict):
        for k, v in d.items():
            out += _json_paths(v, f"{prefix}{k}.")
    elif isinstance(d, list):
        for i, v in enumerate(d[:3]):
            out += _json_paths(v, f"{prefix}{i}.")
    return out


def _json_set(d: Any, path: str, value: Any) -> None:
    *parents, leaf = path.split(".")
    for p in parents:
        d = d[int(p)] if isinstance(d, list) else d[p]
    if isinstance(d, list):
        d[int(leaf)] = value
    else:
        d[leaf] = value


# ---------------------------------------------------------------------------- command lines

DESTS = ["out/fifo", "out/sock", "out/null", "out/dir", "out/keep.json", "out/new.json",
         "out/sub/new.json", "out/keep.json/x", "/proc/x", "/dev/null", "out/link-dangling"]
INPUTS = ["in/file", "out/fifo", "/dev/zero", "out/dir", "in/missing.csv", "out/sock",
          "/proc/self/mem"]
NUMBERS = st.one_of(NASTY_INTS.map(str), NASTY_FLOATS.map(str), NASTY_STRINGS,
                    st.integers(-3, 40).map(str))


def _flag(draw, name: str, pool: Any) -> list[str]:
    return [name, draw(pool)] if draw(st.integers(0, 2)) == 0 else []


@st.composite
def command_lines(draw) -> list[str]:
    """A whole ``nmsat`` command line: real subcommands and flags with hostile values."""
    cmd = draw(st.sampled_from(["simulate", "simulate", "simulate", "train", "trace", "report",
                                "sweep", "sweep-export", "sweep-report", "config", "workloads",
                                "rtl", "demo", "junk"]))
    dest = st.sampled_from(DESTS)
    inp = st.sampled_from(INPUTS)
    if cmd == "simulate":
        argv = ["simulate", draw(st.sampled_from(["mlp", "cnn", "nope", "in/file.csv",
                                                  "in/file.nmt", *INPUTS])),
                "--config", draw(st.sampled_from(["small", "small", "vcu1525", "nope",
                                                  "/dev/zero.toml", "out/fifo.toml",
                                                  "in/cfg.toml"]))]
        argv += ["--batch", draw(st.sampled_from(["1", "2"]) | NUMBERS)]
        for flag, pool in (("--nm", NASTY_STRINGS), ("--method", NASTY_STRINGS),
                           ("--seq-len", NUMBERS), ("--mode", st.sampled_from(
                               ["train", "inference", "x"])),
                           ("--phase", st.sampled_from(["prefill", "decode", "x"])),
                           ("--kv-len", NUMBERS), ("--act-density", NUMBERS),
                           ("--json", dest), ("--scalesim-reports", dest), ("--report", dest)):
            argv += _flag(draw, flag, pool)
    elif cmd == "train":  # never a valid run: --epochs or --trace is always hostile
        argv = ["train", "--train-limit", "32", "--no-compare", "--epochs",
                draw(st.sampled_from(["0", "-1", "1000000000", "10001", "x", "1e3"])),
                "--trace", draw(dest)]
        for flag in ("--batch", "--lr", "--momentum", "--seed", "--threads", "--nm"):
            argv += _flag(draw, flag, NUMBERS)
    elif cmd == "trace":
        argv = ["trace", "inspect", draw(inp | st.just("in/file.nmt"))]
    elif cmd == "report":
        argv = ["report", draw(inp | st.just("in/file.json")), "-o", draw(dest)]
    elif cmd == "sweep":
        argv = ["sweep", draw(inp | st.just("in/spec.toml")), "-o", draw(dest),
                "--scheduler", "tcp://127.0.0.1:9", "--connect-timeout", "0.05"]
    elif cmd == "sweep-export":
        argv = ["sweep", "export", draw(inp), "--csv", *_flag(draw, "--out", dest)]
    elif cmd == "sweep-report":
        argv = ["sweep", "report", draw(inp), "-o", draw(dest)]
    elif cmd == "config":
        argv = ["config", draw(st.sampled_from(["check", "show", "x"])),
                draw(inp | st.sampled_from(["in/cfg.toml", "small"]))]
    elif cmd == "workloads":
        argv = ["workloads", "show", draw(st.sampled_from(["in/file.csv", "nope", *INPUTS]))]
        argv += _flag(draw, "--seq-len", NUMBERS) + _flag(draw, "--batch", NUMBERS)
    elif cmd == "rtl":  # generate only onto hostile destinations; run/synth with bad values
        argv = draw(st.sampled_from([
            ["rtl", "generate", "--config", "small", "-o",  # never a writable folder
             draw(st.sampled_from(["out/fifo", "out/sock", "out/null", "out/keep.json",
                                   "out/keep.json/x", "/proc/x"]))],
            ["rtl", "run", "mlp", "--layer", "nope", "--config", "small"],
            ["rtl", "run", "mlp", "--layer", "fc3", "--phase", "x", "--config", "small"],
            ["rtl", "synth", "--config", "nope"],
            ["rtl", "synth", "--calibrate", draw(st.sampled_from(DESTS[:4]))],
        ]))
    elif cmd == "demo":
        argv = ["demo", *_flag(draw, "--nm", NASTY_STRINGS)]
    else:
        argv = draw(st.lists(st.sampled_from(["--json", "-o", "x", "--", "-", "--help=x",
                                              "simulate", "--batch"]), max_size=4))
    return argv


# ---------------------------------------------------------------------------- running


_RAISED: list[BaseException] = []
"""The exception the last command raised to :func:`nmsat.commands.main`, if any."""


def _wrap_commands(parser: Any) -> None:
    """Make every subcommand's handler record the exception it raises (then re-raise it),
    so the judge can tell a translated refusal from a library error ``main`` printed."""
    import argparse

    func = parser._defaults.get("func")
    if func is not None and not getattr(func, "_fuzz_wrapped", False):
        def wrapped(args: Any, _f: Any = func) -> Any:
            try:
                return _f(args)
            except BaseException as e:
                _RAISED.append(e)
                raise
        wrapped._fuzz_wrapped = True  # type: ignore[attr-defined]
        parser.set_defaults(func=wrapped)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in {id(p): p for p in action.choices.values()}.values():
                _wrap_commands(sub)


def _untranslated(e: BaseException) -> str | None:
    """``Type: message (file:line)`` if ``e`` is not an nmsat error and no nmsat code chose
    its message: its innermost frame is outside the project, or the instruction it stopped
    at there is not a ``raise`` (a call into NumPy or a builtin such as ``int()`` raised
    it). The instruction is read from the bytecode, not the source file, so an edit to
    the file while the run goes on cannot change the verdict."""
    from nmsat.errors import NmsatError

    if isinstance(e, NmsatError) or e.__traceback__ is None:
        return None
    tb = e.__traceback__
    while tb.tb_next is not None:
        tb = tb.tb_next
    code = tb.tb_frame.f_code
    path = Path(code.co_filename)
    op = code.co_code[tb.tb_lasti] if 0 <= tb.tb_lasti < len(code.co_code) else None
    if (path.is_relative_to(PROJECT) and "site-packages" not in path.parts
            and op in _RAISE_OPS):
        return None
    return f"{type(e).__name__}: {str(e)[:100]} ({path.name}:{tb.tb_lineno})"


_RAISE_OPS = {dis.opmap[name] for name in ("RAISE_VARARGS", "RERAISE") if name in dis.opmap}


def _device_null() -> str:
    return stat.filemode(os.stat("/dev/null").st_mode)[0]


class _Timeout(BaseException):
    """Raised in the run by the interval timer (a BaseException: no handler swallows it)."""


@dataclass
class Outcome:
    kind: str
    detail: str = ""


class Sandbox:
    """A folder with hostile destinations (FIFO, socket, link to /dev/null, folder) and
    input files; runs command lines in it and judges them."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="nmsat-fuzz-"))
        self._socks: list[socket.socket] = []
        self._cwd = os.getcwd()
        (self.root / "in").mkdir()
        out = self.root / "out"
        out.mkdir()
        os.mkfifo(out / "fifo")
        s = socket.socket(socket.AF_UNIX)
        s.bind(str(out / "sock"))
        self._socks.append(s)
        os.symlink("/dev/null", out / "null")
        os.symlink(self.root / "nowhere" / "x", out / "link-dangling")
        (out / "dir").mkdir()
        (out / "keep.json").write_text("KEEP\n")
        self._special = {n: self._kind(out / n) for n in ("fifo", "sock", "null", "dir")}
        self._devnull = _device_null()  # out/null and a DEST lead here: never replaced
        self._parser_patch()

    @staticmethod
    def _parser_patch() -> None:
        """Build the full argparse tree once, not per call (15 ms each): what is measured
        is nmsat's handling of the input, not parser construction. ``close`` undoes it."""
        import nmsat.commands as c

        if not hasattr(c, "_fuzz_original"):
            c._fuzz_original = c.build_parser
            parser = c.build_parser()
            _wrap_commands(parser)
            c.build_parser = lambda *args, **kwargs: parser

    @staticmethod
    def _parser_unpatch() -> None:
        import nmsat.commands as c

        if hasattr(c, "_fuzz_original"):
            c.build_parser = c._fuzz_original
            del c._fuzz_original

    def close(self) -> None:
        self._parser_unpatch()
        for s in self._socks:
            s.close()
        shutil.rmtree(self.root, ignore_errors=True)

    @staticmethod
    def _kind(p: Path) -> str:
        try:
            return stat.filemode(os.lstat(p).st_mode)[0] + (os.readlink(p) if p.is_symlink()
                                                            else "")
        except FileNotFoundError:
            return "missing"

    def _snapshot(self) -> dict[str, tuple]:
        out = {}
        for dirpath, dirnames, filenames in os.walk(self.root):
            for n in dirnames + filenames:
                p = Path(dirpath) / n
                st_ = os.lstat(p)
                # a folder's own times change when a file is made and removed in it: not
                # an output; what it holds is compared entry by entry
                out[str(p.relative_to(self.root))] = (
                    (stat.S_IFDIR,) if stat.S_ISDIR(st_.st_mode) else
                    (stat.S_IFMT(st_.st_mode), st_.st_size, st_.st_mtime_ns))
        return out

    def _reset_out(self) -> None:
        out = self.root / "out"
        for p in out.iterdir():
            if p.name not in ("fifo", "sock", "null", "dir", "keep.json", "link-dangling"):
                shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
        for p in (out / "dir").iterdir():
            shutil.rmtree(p) if p.is_dir() else p.unlink()
        (out / "keep.json").write_text("KEEP\n")

    def write_inputs(self, files: dict[str, bytes]) -> None:
        for name, data in files.items():
            (self.root / "in" / name).write_bytes(data)

    def run(self, argv: list[str]) -> Outcome:
        from nmsat.commands import main

        self._reset_out()
        before = self._snapshot()
        err, out = io.StringIO(), io.StringIO()
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        base = _vm_bytes()
        code: int | None = None
        kind = None
        _RAISED.clear()
        t0 = time.perf_counter()
        os.chdir(self.root)
        c0 = time.process_time()
        old = signal.signal(signal.SIGALRM, _alarm)
        old_prof = signal.signal(signal.SIGPROF, _alarm)
        try:
            resource.setrlimit(resource.RLIMIT_AS, (base + MEMORY_LIMIT, hard))
            signal.setitimer(signal.ITIMER_REAL, WALL_LIMIT_S)
            signal.setitimer(signal.ITIMER_PROF, TIME_LIMIT_S)
            # every warning shows, as in a fresh process (the default shows each once)
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out), \
                    warnings.catch_warnings():
                warnings.simplefilter("always")
                try:
                    code = main(argv)
                except SystemExit as e:  # --help, --version
                    code = e.code if isinstance(e.code, int) else 2
        except _Timeout:
            kind = Outcome("over 10 s", " ".join(argv))
        except MemoryError:
            kind = Outcome("over 1 GiB", " ".join(argv))
        except Exception as e:  # noqa: BLE001 - the defect being counted
            kind = Outcome("traceback", f"{type(e).__name__}: {str(e)[:120]} <- {argv}")
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.setitimer(signal.ITIMER_PROF, 0)
            signal.signal(signal.SIGALRM, old)
            signal.signal(signal.SIGPROF, old_prof)
            resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
            os.chdir(self._cwd)
        self.last_cpu, self.last_wall = time.process_time() - c0, time.perf_counter() - t0
        if kind is None and (self.last_cpu > TIME_LIMIT_S or self.last_wall > WALL_LIMIT_S):
            kind = Outcome("over 10 s", " ".join(argv))
        for n, k in self._special.items():
            if self._kind(self.root / "out" / n) != k:
                return Outcome("non-regular file replaced", f"out/{n} <- {argv}")
        if _device_null() != self._devnull:
            return Outcome("non-regular file replaced", f"/dev/null <- {argv}")
        if kind is not None:
            return kind
        msg = err.getvalue()
        if code == 0:
            return Outcome("ok")
        if code != 2:
            return Outcome("exit code", f"{code}: {msg[:200]} <- {argv}")
        after = self._snapshot()
        if after != before:
            changed = sorted(k for k in before.keys() | after.keys()
                             if before.get(k) != after.get(k))
            return Outcome("partial output", f"{changed[:3]} <- {argv}")
        if out.getvalue():  # a refusal prints nothing but its line on stderr
            return Outcome("partial output", f"stdout {out.getvalue()[:100]!r} <- {argv}")
        lines = msg.strip().splitlines()
        if len(lines) != 1 or not lines[0].startswith("nmsat: error: "):
            return Outcome("multi-line message", f"{msg[:300]!r} <- {argv}")
        if not _names_something(msg, argv):
            return Outcome("refusal not naming", f"{msg.strip()[:200]} <- {argv}")
        lib = next((w for w in map(_untranslated, _RAISED) if w), None)
        if lib is not None:
            return Outcome("library error passed through", f"{lib} <- {argv}")
        return Outcome("refused", f"{lines[0]} <- {argv}")


def _alarm(signum, frame):  # noqa: ARG001
    raise _Timeout


def _vm_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[0]) * resource.getpagesize()


_NAMED = re.compile(r"(--?[a-z][\w-]*|'[^']+'|\"[^\"]+\"|\b[\w]+\.[\w.]+\b|\b(?:array|dram|"
                    r"buffers|sore|energy|numerics|clock_mhz|name|preset|workloads|axes|"
                    r"constraints|options|sample|config|base|seq_len|batch|N:M|epochs|"
                    r"command|layer|member|manifest|store|trace)\b)")


def _names_something(msg: str, argv: list[str]) -> bool:
    """The refusal names a file given, a flag, or a field (dotted or quoted name)."""
    text = msg.removeprefix("nmsat: error: ")
    if any((len(a) >= 2 or a.startswith("-")) and a in text for a in argv):
        return True
    return bool(_NAMED.search(text))


# ---------------------------------------------------------------------------- cases

VALID_CSV = b"Layer, M, N, K,\nL0,16,16,16,\nL1,8,32,16,\n"
VALID_SPEC = b'name = "t"\nbase = "small"\nworkloads = ["mlp"]\n[axes]\n"array.rows" = [2, 4]\n'
VALID_CONFIG = b'preset = "small"\n'
SIM = ["--config", "small", "--batch", "2", "--json", "out/new.json"]
# An existing non-store as -o: the spec is loaded and every point built and validated,
# then the store is refused, so no Dask cluster is started (0.2 s per input).
SWEEP = ["-o", "out/keep.json"]


@st.composite
def cases(draw, kind: str) -> tuple[dict[str, bytes], list[str]]:
    """(input files by name in ``in/``, command line) of one hostile input of ``kind``:
    ``config``, ``trace``, ``csv``, ``spec`` or ``cli``."""
    files = {"file": draw(st.binary(max_size=64)), "file.csv": VALID_CSV,
             "spec.toml": VALID_SPEC, "cfg.toml": VALID_CONFIG,
             "file.json": draw(TEXT_GARBAGE).encode("utf-8", "replace")}
    if kind == "config":
        fmt, text = draw(config_files())
        name = f"cfg.{fmt}"
        files[name] = text.encode("utf-8", "replace")
        argv = (["simulate", "mlp", f"--config=in/{name}", "--batch", "2", "--json",
                 "out/new.json"] if draw(st.integers(0, 19)) == 0  # simulating costs ~0.1 s
                else ["config", "check", f"in/{name}"])
    elif kind == "trace":
        files["file.nmt"] = draw(trace_files())
        argv = (["simulate", "in/file.nmt", *SIM] if draw(st.integers(0, 9)) == 0
                else ["trace", "inspect", "in/file.nmt"])
    elif kind == "csv":
        files["file.csv"] = draw(csv_files()).encode("utf-8", "replace")
        argv = (["simulate", "in/file.csv", *SIM] if draw(st.integers(0, 4)) == 0
                else ["workloads", "show", "in/file.csv"])
    elif kind == "spec":
        fmt, text = draw(spec_files())
        files[f"spec.{fmt}"] = text.encode("utf-8", "replace")
        argv = ["sweep", f"in/spec.{fmt}", *SWEEP]
    else:
        files["file.nmt"] = valid_trace()
        argv = draw(command_lines())
    return files, argv


KINDS = ("config", "trace", "csv", "spec", "cli")
