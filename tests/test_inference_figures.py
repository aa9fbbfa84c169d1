"""Inference figures: the plotted data is the data the functions return."""

from __future__ import annotations

import numpy as np
import pytest

from nmsat.config import SMALL, VCU1525
from nmsat.reports import inference_figures as F
from nmsat.simulator import inference_sweeps as S
from nmsat.simulator.inference import InferenceOptions, simulate_inference


def test_roofline_plots_every_gemm_layer_at_its_intensity(tmp_path):
    r = simulate_inference("gpt2_small", VCU1525, InferenceOptions(
        nm="2:4", phase="decode", kv_len=64, batch=2))
    d = F.roofline_data(r)
    gemm = [x for x in r.layers if x.dense_macs]
    assert d["layers"]["name"] == [x.name for x in gemm]
    assert d["layers"]["intensity"] == [x.intensity for x in gemm]
    assert d["layers"]["performance"] == [x.dense_macs / x.total_cycles for x in gemm]
    assert d["layers"]["bound"] == [x.bound for x in gemm]
    # from the config, not from the result: 2:4 doubles the 1,024 MACs/cycle; 4 x 64 B/cycle
    a, m = VCU1525.array, VCU1525.dram
    assert (d["peak_dense"], d["peak"]) == (a.peak_macs_per_cycle, 2 * a.peak_macs_per_cycle)
    assert d["bandwidth"] == m.channels * m.bytes_per_cycle
    assert d["ridge"] == 2 * a.peak_macs_per_cycle / (m.channels * m.bytes_per_cycle)
    p = F.roofline_figure(r)
    assert set(d["layers"]["bound"]) <= {b for b, _ in F.BOUND_MARKERS}
    drawn = {b: p.artists["points"][b].get_offsets() for b, _ in F.BOUND_MARKERS}
    for b, pts in drawn.items():
        sel = [i for i, x in enumerate(d["layers"]["bound"]) if x == b]
        want = np.array([[d["layers"]["intensity"][i], d["layers"]["performance"][i]]
                         for i in sel]).reshape(-1, 2)
        assert np.array_equal(np.asarray(pts), want)
    x, y = p.artists["roofs"]["nm"].get_data()
    assert y[1] == d["peak"] and x[1] == d["ridge"]
    assert y[0] == pytest.approx(x[0] * d["bandwidth"])
    paths = F.write_figures([p], tmp_path)
    assert sorted(q.suffix for q in paths) == [".png", ".svg"]


def test_speedup_sweeps_plot_their_data():
    d = S.speedup_vs_batch("mlp", SMALL, ["2:4", "2:8"], [1, 16, 256])
    p = F.speedup_batch_figure(d)
    for nm in ("2:4", "2:8"):
        xs, ys = p.artists["lines"][nm].get_data()
        assert list(xs) == [1, 16, 256] and list(ys) == d["speedup"][nm]
        b, peak = p.artists["limits"][nm]
        assert b.get_ydata()[0] == d["byte_ratio"][nm]
        assert peak.get_ydata()[0] == d["peak_ratio"][nm] == 2.0
    # The memory- to compute-bound transition as the batch grows, drawn as open markers.
    assert d["bound"]["2:4"][0] == "memory" and d["bound"]["2:4"][-1] == "compute"
    for nm in ("2:4", "2:8"):
        pts = p.artists["memory_points"][nm].get_offsets()
        want = [[v, s_] for v, s_, b in zip(d["values"], d["speedup"][nm], d["bound"][nm])
                if b == "memory"]
        assert np.array_equal(np.asarray(pts), np.array(want).reshape(-1, 2))
    s = S.speedup_vs_seq_len("gpt2_small", VCU1525, ["2:4"], [8, 32], phase="prefill")
    ps = F.speedup_seq_figure(s)
    assert list(ps.artists["lines"]["2:4"].get_data()[1]) == s["speedup"]["2:4"]
    assert [row[2] for row in ps.table.rows] == s["speedup"]["2:4"]
    with pytest.raises(ValueError, match="axis must be seq_len or kv_len"):
        S.speedup_vs_seq_len("gpt2_small", VCU1525, ["2:4"], [8], axis="batch")
