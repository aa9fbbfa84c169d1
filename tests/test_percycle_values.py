"""The per-cycle model computes exactly nmsat.reference.engine_gemm, and its hazard
checks fire when the schedule breaks a dependency."""

import zlib

import numpy as np
import pytest

from nmsat.config import SMALL
from nmsat.reference import compress, engine_gemm, quantize
from nmsat.simulator.percycle import ScheduleHazard, simulate
from nmsat.types import Dataflow


def _cfg(rows=3, cols=2, lanes=4, window=8, la=2):
    return SMALL.replace(**{"array.rows": rows, "array.cols": cols, "array.macs_per_pe": lanes,
                            "array.act_window": window, "array.acc_latency": la})


def _operands(rng, m, n, k, dtype):
    if dtype in ("int8", "int16"):
        hi = 128 if dtype == "int8" else 32768
        return rng.integers(-hi, hi, (m, k)), rng.integers(-hi, hi, (k, n))
    a = quantize(rng.standard_normal((m, k)) * 3, dtype)
    b = quantize(rng.standard_normal((k, n)) * 3, dtype)
    return a, b


def _same(x, y):
    if x.dtype == np.float32:
        return np.array_equal(x.view(np.uint32), y.view(np.uint32))
    return np.array_equal(x, y)


@pytest.mark.parametrize("dataflow", [Dataflow.OS, Dataflow.WS])
@pytest.mark.parametrize("interleave", [False, True])
@pytest.mark.parametrize("dtype", ["fp16", "bf16", "int8", "int16"])
@pytest.mark.parametrize("nm", ["1:1", "1:4", "2:4", "2:8", "1:8", "4:8"])
def test_values_bit_exact(dataflow, interleave, dtype, nm):
    rng = np.random.default_rng(zlib.crc32(repr((dataflow, interleave, dtype, nm)).encode()))
    cfg = _cfg()
    a, b = _operands(rng, 7, 5, 43, dtype)  # shapes that do not divide the array
    res = simulate(a, b, cfg=cfg, dataflow=dataflow, nm=nm, interleave=interleave,
                   dtype=dtype)
    ref = engine_gemm(a, b, dtype, 4, 8, nm)
    assert _same(res.out, ref)


@pytest.mark.parametrize("dataflow", [Dataflow.OS, Dataflow.WS])
def test_accumulates_into_existing_partial_sums(dataflow):
    """Splitting K over two blocks (acc carried in OUT) gives the bits of one block."""
    rng = np.random.default_rng(3)
    cfg = _cfg(la=3)
    a, b = _operands(rng, 6, 4, 48, "fp16")
    first = simulate(a[:, :24], b[:24], cfg=cfg, dataflow=dataflow, nm="2:8")
    both = simulate(a[:, 24:], b[24:], cfg=cfg, dataflow=dataflow, nm="2:8", acc=first.out)
    assert _same(both.out, engine_gemm(a, b, "fp16", 4, 8, "2:8"))


def test_compressed_operand_and_subnormals():
    rng = np.random.default_rng(4)
    cfg = _cfg()
    a = quantize(rng.standard_normal((5, 32)) * 1e-4, "fp16")  # fp16 subnormal range
    b = quantize(rng.standard_normal((32, 3)) * 1e-3, "fp16")
    comp = compress(b, "2:4", axis=0)
    res = simulate(a, comp, cfg=cfg, dataflow=Dataflow.OS, nm="2:4")
    assert _same(res.out, engine_gemm(a, comp, "fp16", 4, 8, "2:4"))


def test_stalls_do_not_change_values_and_add_cycles():
    rng = np.random.default_rng(5)
    cfg = _cfg()
    a, b = _operands(rng, 6, 4, 40, "fp16")
    free = simulate(a, b, cfg=cfg, dataflow=Dataflow.OS, nm="2:4")
    iv = rng.random(500) < 0.5
    stalled = simulate(a, b, cfg=cfg, dataflow=Dataflow.OS, nm="2:4", in_valid=iv,
                       out_ready=rng.random(500) < 0.5)
    assert _same(stalled.out, free.out)
    assert stalled.cycles > free.cycles
    assert stalled.stalled.sum() == stalled.cycles - free.cycles
    assert (stalled.busy_pes[stalled.stalled] == 0).all()


def test_activity_counts_every_real_product_once():
    rng = np.random.default_rng(6)
    cfg = _cfg(la=1)
    a, b = _operands(rng, 6, 4, 32, "fp16")
    res = simulate(a, b, cfg=cfg, dataflow=Dataflow.WS, nm="1:1")
    assert res.busy_lanes.sum() == 6 * 4 * 32
    assert res.busy_pes.max() <= 3 * 2


def test_os_accumulator_hazard_detected():
    """Issuing dependent chunks faster than La cycles apart must raise."""
    rng = np.random.default_rng(7)
    a, b = _operands(rng, 3, 2, 40, "fp16")
    with pytest.raises(ScheduleHazard, match="before its previous add"):
        simulate(a, b, cfg=_cfg(la=3), dataflow=Dataflow.OS, interleave=False,
                 _hooks={"ii": 2})


@pytest.mark.parametrize("rows,cols,la,m", [(3, 2, 4, 2), (4, 3, 1, 2)])
def test_ws_tile_rules_are_tight(rows, cols, la, m):
    """Taking one cycle off the interleaved WS tile-to-tile rules breaks a dependency
    (psum read before written, or shadow weights overwritten before use)."""
    rng = np.random.default_rng(8)
    cfg = _cfg(rows=rows, cols=cols, la=la)
    a, b = _operands(rng, m, 2, 4 * rows * 3, "fp16")
    simulate(a, b, cfg=cfg, dataflow=Dataflow.WS)  # the real rules: no hazard
    with pytest.raises(ScheduleHazard):
        simulate(a, b, cfg=cfg, dataflow=Dataflow.WS, _hooks={"slack": 1})
