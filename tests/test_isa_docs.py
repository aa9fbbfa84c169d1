"""docs/isa.md's encoding section is generated from ``isa.ENCODING``, ``isa.TENSOR_ENCODING``
and the encoder's own enum codes; keep it current.

Regenerate with ``python tests/test_isa_docs.py`` after changing a field or a code.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from types import SimpleNamespace

from nmsat.dataflow import isa
from nmsat.dataflow.isa.encoding import _field_int
from nmsat.types import Dataflow, Phase
from nmsat.workloads.layers import OpKind

DOC = Path(__file__).resolve().parent.parent / "docs" / "isa.md"
BEGIN = "<!-- BEGIN GENERATED ENCODING (python tests/test_isa_docs.py) -->"
END = "<!-- END GENERATED ENCODING -->"


def fields_text(table: tuple[tuple[str, int], ...]) -> str:
    """``name bits`` per field in bit order; a run of numbered fields of one width
    (``row_step0`` .. ``row_step3``) is one entry, ``row_step0..3 32 each``."""
    out: list[str] = []
    i = 0
    while i < len(table):
        name, bits = table[i]
        m = re.fullmatch(r"(.*?)(\d+)", name)
        j = i + 1
        if m:
            stem, first = m.group(1), int(m.group(2))
            while (j < len(table) and table[j][1] == bits
                   and table[j][0] == f"{stem}{first + j - i}"):
                j += 1
        if j - i > 1:
            out.append(f"{name}..{first + j - i - 1} {bits} each")
        else:
            out.append(f"{name} {bits}")
        i = j
    return ", ".join(out)


def _code(field: str, value) -> int:
    """The integer the encoder writes for ``value`` in ``field``."""
    return _field_int(SimpleNamespace(**{field: value}), field)


def render() -> str:
    op_bits = isa.OPCODE_BITS
    lines = [
        f"Every instruction is one `INSTR_BITS = {isa.INSTR_BITS}`-bit little-endian word: the "
        f"opcode in bits 0..{op_bits - 1} (`OPCODE_BITS = {op_bits}`), then the opcode's fields "
        "LSB-first in the order of `ENCODING[opcode]`, zero padding. An N:M pattern is two "
        "fields `nm_n`, `nm_m` (dense = 1:1); bools are one bit; enum fields hold these codes:",
        "",
        "| field | codes |",
        "|---|---|",
    ]
    enums = [
        ("`buffer` (`Buffer`)", [(b.name, int(b)) for b in isa.Buffer]),
        ("`transform` (`Transform`)", [(t.name, int(t)) for t in isa.Transform]),
        ("`view` (`SoreView`)", [(v.name, int(v)) for v in isa.SoreView]),
        ("`dataflow`", [(d.name, _code("dataflow", d)) for d in Dataflow]),
        ("`phase`", [(str(p), _code("phase", p)) for p in Phase]),
        ("`kind` (`OpKind`)", [(str(k), _code("kind", k)) for k in OpKind]),
        ("`units` (`Unit`, bit mask)", [(u.name, int(u)) for u in isa.Unit]),
        ("tensor `elem` (`ElemType`)", [(e.name.lower(), int(e)) for e in isa.ElemType]),
    ]
    for name, codes in enums:
        lines.append(f"| {name} | {', '.join(f'{n}={c}' for n, c in codes)} |")
    lines += ["", f"| opcode | code | fields (bits), after the opcode | bits used of "
                  f"{isa.INSTR_BITS} |", "|---|---|---|---|"]
    for op, table in isa.ENCODING.items():
        used = op_bits + sum(b for _, b in table)
        lines.append(f"| {op.name} | {int(op)} | {fields_text(table)} | {used} |")
    used = sum(b for _, b in isa.TENSOR_ENCODING)
    lines += ["", f"Tensor descriptors are `TENSOR_BITS = {isa.TENSOR_BITS}` bits ({used} used), "
                  f"fields LSB-first: {fields_text(isa.TENSOR_ENCODING)}."]
    return "\n".join(lines)


def _current() -> str:
    text = DOC.read_text(encoding="utf-8")
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    return text[start:end].strip("\n")


def test_isa_doc_is_current():
    assert _current() == render(), "docs/isa.md is stale: run python tests/test_isa_docs.py"


def test_every_opcode_and_field_is_in_the_doc():
    doc = _current()
    for op, table in isa.ENCODING.items():
        row = next(r for r in doc.splitlines() if r.startswith(f"| {op.name} |"))
        for name, bits in table:
            stem = re.sub(r"\d+$", "", name)
            assert re.search(rf"\b{re.escape(stem)}\d*(\.\.\d+)? {bits}\b", row), (op, name)
    for name, _ in isa.TENSOR_ENCODING:
        assert re.search(rf"\b{name}\b", doc.splitlines()[-1]), name


def test_fields_text_groups_numbered_runs_only():
    assert fields_text((("a", 1), ("s0", 8), ("s1", 8), ("s2", 8), ("t0", 8), ("t1", 4))) == \
        "a 1, s0..2 8 each, t0 8, t1 4"
    assert fields_text((("x1", 2), ("x2", 2))) == "x1..2 2 each"
    assert fields_text((("x0", 2), ("x2", 2))) == "x0 2, x2 2"


if __name__ == "__main__":
    text = DOC.read_text(encoding="utf-8")
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    DOC.write_text(text[:start] + "\n" + render() + "\n" + text[end:], encoding="utf-8")
    print(f"wrote {DOC}", file=sys.stderr)
