"""docs/config.md's field table is generated from ``nmsat.config.describe``; keep it current.

Regenerate with ``python tests/test_config_docs.py`` after changing a config field.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

from nmsat import config as C
from nmsat.energy_config import entries as energy_entries
from nmsat.energy_config import unit_of

DOC = Path(__file__).resolve().parent.parent / "docs" / "config.md"
BEGIN = "<!-- BEGIN GENERATED FIELDS (python tests/test_config_docs.py) -->"
END = "<!-- END GENERATED FIELDS -->"

# Unit of every leaf field; a new field without an entry fails the test below.
UNITS = {
    "name": "-", "clock_mhz": "MHz",
    "array.rows": "PEs", "array.cols": "PEs", "array.macs_per_pe": "multipliers",
    "array.act_window": "K elements", "array.nm_patterns": "N:M list",
    "array.dataflows": "os/ws list", "array.acc_latency": "cycles", "array.act_zero": "mode",
    "buffers.act_layout": "layout",
    "array.shadow_weights": "bool", "array.weight_load_ports": "chains/PE row",
    "numerics.dtype": "type", "numerics.master_dtype": "type",
    "dram.channels": "channels", "dram.bytes_per_cycle": "B/cycle/channel",
    "dram.latency_cycles": "cycles", "dram.burst_bytes": "B", "dram.model": "model",
    "dram.dma": "layout",
    "dram.banks": "banks/channel", "dram.row_bytes": "B/channel", "dram.t_rp_cycles": "cycles",
    "dram.t_rcd_cycles": "cycles",
    "sore.lanes": "lanes", "sore.cycles_per_weight": "cycles", "sore.pipeline_latency": "cycles",
    "weight_update.lanes": "fp32 lanes", "weight_update.pipeline_latency": "cycles",
    "weight_update.momentum": "-",
    "energy.mode": "mode", "energy.asic.node_nm": "nm", "energy.asic.vdd": "V",
    **{f"buffers.{b}.{f}": u for b in ("activation", "weight", "output")
       for f, u in (("kib", "KiB"), ("banks", "banks"), ("bank_bytes_per_cycle", "B/cycle/port"),
                    ("ports", "ports"), ("double_buffered", "bool"))},
}


def _ranges(obj, prefix=""):
    out = {}
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        if dataclasses.is_dataclass(v) and not isinstance(v, C.EnergyEntry):
            out.update(_ranges(v, f"{prefix}{f.name}."))
        else:
            out[f"{prefix}{f.name}"] = (f.metadata.get("min"), f.metadata.get("max"))
    return out


ENTRIES = {f"energy.{n}": e for n, e in energy_entries(C.VCU1525.energy)}
"""Energy coefficients (value, source, range): one row each, unit from the field."""


def _unit(name: str) -> str:
    if name in ENTRIES:
        return unit_of(name[len("energy."):])
    return UNITS[name]


def _num(v) -> str:
    return str(v) if isinstance(v, int) else f"{v:g}"


def _cell(v) -> str:
    return str(v).replace("|", "\\|")


def render() -> str:
    small = {n: v for n, v, _ in C.describe(C.SMALL)}
    ranges = _ranges(C.VCU1525)
    lines = ["| field | vcu1525 | small | unit | valid | source / reasoning |",
             "|---|---|---|---|---|---|"]
    for name, value, doc in C.describe(C.VCU1525):
        lo, hi = ranges.get(name, (None, None))
        valid = f"{_num(lo)} .. {_num(hi)}" if lo is not None else ""
        s = small[name] if small[name] != value else "="
        if name in ENTRIES:  # "2 pJ": the unit has its own column
            value = value.split(" ", 1)[0]
            s = s if s == "=" else s.split(" ", 1)[0]
            valid = f"{ENTRIES[name].low:g} .. {ENTRIES[name].high:g}"
        lines.append(f"| `{name}` | {_cell(value)} | {_cell(s)} | {_unit(name)} | {valid} "
                     f"| {_cell(doc)} |")
    return "\n".join(lines)


def _current() -> str:
    text = DOC.read_text(encoding="utf-8")
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    return text[start:end].strip("\n")


def test_units_cover_exactly_the_fields():
    names = [n for n, _, _ in C.describe(C.VCU1525) if n not in ENTRIES]
    assert sorted(names) == sorted(UNITS)


def test_config_doc_is_current():
    assert _current() == render(), "docs/config.md is stale: run python tests/test_config_docs.py"


def test_every_field_row_has_a_source():
    for row in render().splitlines()[2:]:
        cells = [c.strip() for c in row.strip("|").split(" | ")]
        assert len(cells[-1]) > 10, row


if __name__ == "__main__":
    text = DOC.read_text(encoding="utf-8")
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    DOC.write_text(text[:start] + "\n" + render() + "\n" + text[end:], encoding="utf-8")
    print(f"wrote {DOC}", file=sys.stderr)


def test_doc_example_files_load(tmp_path):
    import re

    text = DOC.read_text(encoding="utf-8")
    blocks = re.findall(r"```(toml|yaml)\n(.*?)```", text, flags=re.S)
    assert [lang for lang, _ in blocks] == ["toml", "yaml"]
    for i, (lang, body) in enumerate(blocks):
        p = tmp_path / f"example{i}.{lang}"
        p.write_text(body)
        cfg = C.load(p)
        assert cfg != C.VCU1525 and cfg != C.SMALL
