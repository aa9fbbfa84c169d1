"""Sweep specs: validation messages, axis kinds, constraints, deterministic enumeration."""

from __future__ import annotations

import json

import pytest

from nmsat import config as nmconfig
from nmsat.simulator import sweep_spec
from nmsat.simulator.sweep_spec import AxisKind, AxisTarget, Constraint, SweepSpecError

BASE = """
name = "t"
base = "small"
workloads = ["mlp"]
"""


def load(text: str, fmt: str = "toml"):
    return sweep_spec.loads(text, fmt, "t.toml")


def err(text: str, fmt: str = "toml") -> str:
    with pytest.raises(SweepSpecError) as e:
        load(text, fmt).points()
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_axes_of_every_kind_and_fixed_options():
    s = load(BASE + """
[config]
"dram.channels" = 2
[options]
method = "srste"
batch = 8
[axes]
"array.rows" = [2, 4]
"buffers.weight.kib" = { start = 8, stop = 64, factor = 2 }
"dram.latency_cycles" = { start = 10, stop = 30, step = 10 }
"clock_mhz" = { random = "uniform", low = 100.0, high = 300.0, count = 2, seed = 1 }
"sore.lanes" = { random = "int", low = 1, high = 16, count = 3, seed = 2 }
nm = { random = "choice", values = ["2:4", "2:8", "1:8"], count = 2, seed = 3 }
interleave = [true, false]
""")
    kinds = {a.name: (a.kind, a.target) for a in s.axes}
    assert kinds["array.rows"] == (AxisKind.LIST, AxisTarget.CONFIG)
    assert kinds["buffers.weight.kib"] == (AxisKind.RANGE, AxisTarget.CONFIG)
    assert kinds["nm"] == (AxisKind.RANDOM, AxisTarget.OPTION)
    values = {a.name: a.values for a in s.axes}
    assert values["buffers.weight.kib"] == (8, 16, 32, 64)
    assert values["dram.latency_cycles"] == (10, 20, 30)
    assert all(isinstance(v, float) and 100 <= v <= 300 for v in values["clock_mhz"])
    assert len(set(values["sore.lanes"])) == 3 and all(1 <= v <= 16 for v in values["sore.lanes"])
    assert s.base.dram.channels == 2
    pts = s.points()
    assert len(pts) == 2 * 4 * 3 * 2 * 3 * 2 * 2
    assert len({p.key for p in pts}) == len(pts)
    p = pts[-1]
    assert p.options_dict["method"] == "srste" and p.options_dict["batch"] == 8
    assert p.config.array.rows == 4 and p.config.buffers.weight.kib == 64
    # the last axis varies fastest
    assert [dict(q.params)["interleave"] for q in pts[:2]] == [True, False]
    # same spec -> same points, same keys (random axes are seeded)
    assert [q.key for q in pts] == [q.key for q in s.points()]


def test_yaml_spec_and_nested_axes():
    s = load("""
base: small
workloads: [mlp, cnn]
axes:
  array:
    rows: [2, 4]
  method: [dense, bdwp]
constraints:
  - "not (method == 'dense' and array.rows == 4)"
""", "yaml")
    pts = s.points()
    assert len(pts) == 2 * (2 * 2 - 1)
    assert pts[0].workload == "mlp" and pts[-1].workload == "cnn"


def test_constraints_drop_points_and_derived_names():
    s = load(BASE + """
constraints = ["buffer_kib <= 48", "pes * 2 > 8 or array.rows == 2"]
[axes]
"buffers.weight.kib" = [8, 16, 32]
"array.rows" = [1, 2, 4]
""")
    got = [(p.config.buffers.weight.kib, p.config.array.rows) for p in s.points()]
    # small: activation and output buffers are 16 KiB each, cols = 4
    assert got == [(8, 2), (8, 4), (16, 2), (16, 4)]


def test_sample_is_a_seeded_subset_in_order():
    text = BASE + '[axes]\n"array.rows" = [1, 2, 3, 4]\n"sore.lanes" = [1, 2, 3, 4]\n'
    full = load(text).points()
    a = load(text + "[sample]\ncount = 5\nseed = 11\n").points()
    b = load(text + "[sample]\ncount = 5\nseed = 11\n").points()
    c = load(text + "[sample]\ncount = 5\nseed = 12\n").points()
    assert [p.key for p in a] == [p.key for p in b] != [p.key for p in c]
    keys = [p.key for p in full]
    assert sorted(keys.index(p.key) for p in a) == [keys.index(p.key) for p in a]
    assert [p.index for p in a] == list(range(5))


def test_key_covers_config_workload_options_and_version():
    s = load(BASE)
    (p,) = s.points()
    cfg = nmconfig.to_dict(p.config)
    opts = p.options_dict
    assert p.key == sweep_spec.point_key(cfg, "mlp", opts)
    assert len(p.key) == 64
    changed = dict(cfg, clock_mhz=cfg["clock_mhz"] + 1)
    assert sweep_spec.point_key(changed, "mlp", opts) != p.key
    assert sweep_spec.point_key(cfg, "cnn", opts) != p.key
    assert sweep_spec.point_key(cfg, "mlp", dict(opts, pregen=not opts["pregen"])) != p.key
    assert sweep_spec.point_key(cfg, "mlp", opts, version="0.0.0") != p.key


@pytest.mark.parametrize("text, fragment", [
    ('workloads = ["mlp"]\n[axes]\n"array.rowz" = [1]\n', "unknown axis 'array.rowz'"),
    ('workloads = ["mlp"]\n[axes]\nmethd = ["dense"]\n', "unknown axis 'methd'"),
    ('workloads = ["mlp"]\nfoo = 1\n', "unknown key 'foo'"),
    ('workloads = ["mlp"]\nworkloads = ["cnn"]\n', "duplicate key 'workloads'"),
    ('workloads = ["nope"]\n', "unknown workload 'nope'"),
    ('base = "tiny"\nworkloads = ["mlp"]\n', "unknown preset 'tiny'"),
    ("[axes]\n", "workloads is missing"),
    ('workloads = ["mlp"]\n[axes]\n"array.rows" = ["8"]\n',
     "array.rows must be an integer, not '8'"),
    ('workloads = ["mlp"]\n[axes]\n"array.rows" = [0, 8]\n',
     "array.rows must be between 1 and 256, not 0"),
    ('workloads = ["mlp"]\n[axes]\n"array.rows" = [8, 8]\n', "duplicate value 8"),
    ('workloads = ["mlp"]\n[axes]\n"array.rows" = []\n', "empty"),
    ('workloads = ["mlp"]\n[axes]\nnm = ["2:9x"]\n', "axes.nm: N:M pattern must look like 2:8"),
    ('workloads = ["mlp"]\n[axes]\nmethod = ["sparse"]\n', "unknown Method 'sparse'"),
    ('workloads = ["mlp"]\n[axes]\ninterleave = [1]\n', "must be true or false, not 1"),
    ('workloads = ["mlp"]\n[options]\nbatch = 0\n', "options.batch: must be at least 1, not 0"),
    ('workloads = ["mlp"]\n[options]\nspeed = 1\n', "unknown simulate option 'speed'"),
    ('workloads = ["mlp"]\n[config]\n"array.rows" = 1.5\n',
     "array.rows must be an integer, not 1.5"),
    ('workloads = ["mlp"]\n[axes]\n"array.rows" = {start = 8, stop = 4, step = 1}\n',
     "stop (4) is below start (8)"),
    ('workloads = ["mlp"]\n[axes]\n"array.rows" = {start = 1, stop = 4}\n', "exactly one of step"),
    ('workloads = ["mlp"]\n[axes]\n"array.rows" = {start = 1, stop = 4, stp = 1}\n',
     "unknown key 'stp'"),
    (('workloads = ["mlp"]\n[axes]\n"array.rows" = {random = "int", low = 1, high = 3, count = 5, '
     'seed = 1}\n'), "count 5 exceeds the 3 integers"),
    (('workloads = ["mlp"]\n[axes]\n"array.rows" = {random = "gauss", low = 1, high = 3, '
      'count = 1, seed = 1}\n'), "unknown RandomDistribution 'gauss'"),
    ('workloads = ["mlp"]\n[axes]\n"array.rows" = {random = "int", low = 1, high = 3, count = 1}\n',
     "needs seed"),
    ('workloads = ["mlp"]\nconstraints = ["array.rowz < 3"]\n', "unknown name 'array.rowz'"),
    ('workloads = ["mlp"]\nconstraints = ["__import__(\'os\').system(\'x\') == 0"]\n',
     "is not allowed in a constraint"),
    ('workloads = ["mlp"]\nconstraints = ["array.rows.__class__ == 1"]\n', "unknown name"),
    ('workloads = ["mlp"]\nconstraints = ["array.rows +"]\n', "is not an expression"),
    ('workloads = ["mlp"]\nconstraints = ["array.rows + 1"]\n', "must give true or false, not 17"),
    ('workloads = ["mlp"]\n[sample]\ncount = 2\nseed = 1\n', "sample.count 2 exceeds the 1 points"),
    ('workloads = ["mlp"]\n[axes]\nclock_mhz = [100, 100.0]\n',
     "points 0 and 1 are the same point"),
    ('workloads = ["mlp"]\n[axes]\n"array.act_window" = [2, 16]\n',
     "point 0 (array.act_window=2) is not a valid accelerator"),
])
def test_malformed_specs_name_the_field_and_value(text, fragment):
    msg = err(text)
    assert fragment in msg, msg
    assert msg.startswith("t.toml: ")


def test_yaml_duplicate_keys_rejected():
    assert "duplicate key 'axes'" in err("workloads: [mlp]\naxes: {}\naxes: {}\n", "yaml")


def test_load_rejects_unknown_suffix_and_missing_file(tmp_path):
    with pytest.raises(SweepSpecError, match="must end in .toml"):
        sweep_spec.load(tmp_path / "s.json")
    with pytest.raises(SweepSpecError, match="not found"):
        sweep_spec.load(tmp_path / "s.toml")


def test_base_config_file_relative_to_the_spec(tmp_path):
    nmconfig.save(nmconfig.SMALL.replace(**{"array.rows": 3}), tmp_path / "hw.toml")
    (tmp_path / "s.toml").write_text('base = "hw.toml"\nworkloads = ["mlp"]\n')
    (p,) = sweep_spec.load(tmp_path / "s.toml").points()
    assert p.config.array.rows == 3


def test_constraint_language_is_interpreted_safely():
    known = frozenset({"a.b", "c", "method"})
    env = {"a.b": 6, "c": 4, "method": "bdwp"}
    assert Constraint.parse("a.b // c == 1 and a.b % c == 2", known, "x").holds(env)
    assert Constraint.parse("2 < c <= a.b < 7", known, "x").holds(env)
    assert not Constraint.parse("max(a.b, c) ** 2 < 36", known, "x").holds(env)
    assert Constraint.parse("method in ['bdwp', 'srste'] and not -c > 0", known, "x").holds(env)
    for bad in ("[x for x in c]", "lambda: 1", "c if c else 1", "open('f')", "c.real", "{1: 2}"):
        with pytest.raises(SweepSpecError):
            Constraint.parse(bad, known, "x")
    with pytest.raises(SweepSpecError, match="division by zero"):
        Constraint.parse("a.b / (c - 4) > 1", known, "x").holds(env)


@pytest.mark.parametrize("axis, fragment", [
    ("{start = 1, stop = 1e12, step = 1}",
     "the range has 1,000,000,000,000 values (limit 100,000)"),
    ("{start = 1, stop = 2, step = 1e-300}", "the range has about 1e+300 values (limit 100"),
    ("{start = 1, stop = 1e308, step = 1e-300}", "the range has too many values (limit 100"),
    ("{start = 1, stop = 1e300, factor = 1.000001}", "values (limit 100,000)"),
    ("{random = \"uniform\", low = 1, high = 2, count = 1000000000, seed = 0}",
     "count must be an integer from 1 to 100,000"),
    ("{values = []}", "the list of values is empty"),
])
def test_axis_sizes_are_counted_before_values_are_made(axis, fragment):
    """A range is counted arithmetically: a billion-value range is refused at once, never
    built (a list of a billion floats would take gigabytes; a tiny step would loop)."""
    msg = err(BASE + f'[axes]\n"clock_mhz" = {axis}\n')
    assert fragment in msg


def test_integer_geometric_range_is_exact():
    s = load(BASE + '[axes]\n"buffers.weight.kib" = {start = 1, stop = 1024, factor = 2}\n')
    assert s.axes[0].values == tuple(2 ** i for i in range(11))


@pytest.mark.parametrize("expr, fragment", [
    ("10 ** 10 ** 10 > 1", "is over 256 bits"),
    ("len_a * 10 ** 10 == 'x'", "unknown name"),
    ("'a' * 10 ** 10 == 'x'", "a string or list over 10,000 items"),
    ("[1, 2] * 10 ** 9 == [1]", "a string or list over 10,000 items"),
    ("'%0999999999d' % 1 == 'x'", "not string formatting"),
    ("2 ** 200 * 2 ** 200 > 0", "an integer over 256 bits"),
    ("min([]) > 0", "min() arg is an empty sequence"),
    ("-" * 500 + "1 < 0", "nests deeper than 32 levels"),
    ("array.rows" + " + 1" * 1000 + " > 0", "characters (limit 2,000)"),
    ("(" * 300 + "1" + ")" * 300 + " > 0", "not an expression"),
])
def test_constraint_language_is_bounded(expr, fragment):
    """Integer size, repetition, formatting and depth are refused before they cost time or
    memory: each of these would run for minutes or exhaust memory in plain Python."""
    msg = err(BASE + f"constraints = [{json.dumps(expr)}]\n"
              + '[axes]\n"array.rows" = [2, 4]\n')
    assert fragment in msg, msg


def test_sequence_length_on_a_model_without_one_is_refused():
    assert "axes.seq_len: mlp has no sequence length" in err(BASE + "[axes]\nseq_len = [8, 16]\n")
    assert "options.seq_len: mlp has no sequence length" in err(BASE + "[options]\nseq_len = 8\n")
    msg = err(BASE.replace('["mlp"]', '["bert_base"]') + "[axes]\nseq_len = [128, 4096]\n")
    assert "seq_len 4096 exceeds bert_base's 512 positions" in msg


def test_a_field_with_only_a_lower_bound_names_it():
    """This raised a TypeError (formatting a missing upper bound) instead of a message."""
    msg = err(BASE + '[axes]\n"energy.asic.mac_fp16.value" = [-1.0, 1.0]\n')
    assert "energy.asic.mac_fp16.value must be at least 0, not -1.0" in msg


def test_area_constraints_use_the_area_model():
    from nmsat.rtl.synth import XCVU9P
    from nmsat.simulator import area

    spec = load('base = "vcu1525"\nworkloads = ["mlp"]\nconstraints = ["fits_xcvu9p"]\n'
                '[axes]\n"array.rows" = [8, 16, 24, 32]\n"weight_update.lanes" = [16, 256]\n')
    kept = {(p.params[0][1], p.params[1][1]) for p in spec.points()}
    for rows in (8, 16, 24, 32):
        for lanes in (16, 256):
            cfg = nmconfig.preset("vcu1525").replace(
                **{"array.rows": rows, "weight_update.lanes": lanes})
            r = area.estimate(cfg)
            fits = (r.lut <= XCVU9P.capacity.lut and r.ff <= XCVU9P.capacity.ff
                    and r.dsp <= XCVU9P.capacity.dsp and r.bram <= XCVU9P.capacity.bram36)
            assert ((rows, lanes) in kept) == fits
    assert (16, 16) in kept and (32, 16) not in kept  # the preset fits, twice its rows not
    # between the 16-row (about 704,000 LUTs) and the 24-row (about 1,032,000) estimates
    lut = load('base = "vcu1525"\nworkloads = ["mlp"]\nconstraints = ["lut < 850000"]\n'
               '[axes]\n"array.rows" = [8, 16, 24]\n')
    assert [p.params[0][1] for p in lut.points()] == [8, 16]
    msg = err('base = "vcu1525"\nworkloads = ["mlp"]\nconstraints = ["dsp < 9000"]\n'
              '[config]\n"numerics.dtype" = "bf16"\n[axes]\n"array.rows" = [8]\n')
    assert "no estimate for numerics.dtype 'bf16'" in msg


def test_the_shipped_codesign_spec_is_valid_and_large_enough():
    from pathlib import Path

    spec = sweep_spec.load(Path(__file__).parent.parent / "examples" / "codesign-vcu1525.toml")
    assert spec.workloads == ("resnet18", "resnet50", "vgg16", "vit_b_16", "bert_base")
    assert dict(spec.options)["nm"] == "2:8" and dict(spec.options)["method"] == "bdwp"
    assert spec.grid_size >= 2000


def test_the_shipped_codesign_subset_holds_vcu1525_and_the_five_models():
    from pathlib import Path

    from nmsat import config as nmconfig

    root = Path(__file__).parent.parent / "examples"
    spec = sweep_spec.load(root / "codesign-vcu1525-subset.toml")
    full = sweep_spec.load(root / "codesign-vcu1525.toml")
    assert spec.workloads == full.workloads and spec.options == full.options
    points = spec.points()
    assert len(points) == 100  # 20 of 27 designs fit the XCVU9P, five models each
    preset = nmconfig.to_dict(nmconfig.preset("vcu1525"))
    assert sum(nmconfig.to_dict(p.config) == preset for p in points) == 5
    full_keys = {p.key for p in full.points()}
    assert {p.key for p in points} <= full_keys  # a subset of the full sweep's points
