"""Importer of SCALE-Sim topology CSV files (conv and GEMM forms, v2 and v3 dialects).

A SCALE-Sim topology is one layer per row. The rules (the full list is in
``docs/workloads.md``; the sources are SCALE-Sim v2's and v3's ``topology_utils.py``):

* **Header.** A first row whose numeric columns are not all integers is a header. If every
  header field is a known column name, columns are read by name (so v3's ``Batch Size``,
  ``Sparsity`` and separate ``Stride height``/``Stride width`` columns are found wherever
  they are); otherwise the header text is ignored and columns are positional, as in
  SCALE-Sim. A file without a header starts with data (SCALE-Sim would drop that row).
* **Trailing comma.** SCALE-Sim drops whatever follows a row's last comma, so every data
  row must end with a comma. Text after it is allowed only as a ``#`` comment; anything
  else is the missing-comma mistake and is an error (SCALE-Sim would crash or silently
  drop the field).
* **Conv form**: ``name, IFMAP H, IFMAP W, filter H, filter W, channels, filters, stride,``
  plus an optional 9th column: an integer is v2's stride width, an ``N:M`` pattern is v3's
  sparsity. **GEMM form**: ``name, M, N, K,`` plus an optional v3 ``N:M``; a row becomes
  a :class:`~nmsat.workloads.layers.Linear` of ``M`` tokens, ``K`` inputs and ``N``
  outputs (SCALE-Sim maps it to a conv with M output rows, window K and N filters).
* **Depthwise.** A conv layer whose name contains ``DP`` is, in SCALE-Sim, expanded into one
  layer per channel with ``Channels = 1`` and the row's ``Num Filter`` filters each. It is
  imported as one grouped convolution with the same MACs: ``groups = C``, ``C x filters``
  output channels.
* **Geometry.** IFMAP sizes are taken as already padded (SCALE-Sim has no padding column).
  SCALE-Sim computes ``ofmap = ceil((H - fh + s) / s)``, one more output row or column than
  a real convolution when ``(H - fh)`` is not a multiple of ``s``. By default
  (:attr:`Geometry.SCALESIM`) the import reproduces SCALE-Sim's sizes and MACs by
  extending the IFMAP at the bottom/right to ``(ofmap - 1) s + fh``;
  :attr:`Geometry.EXACT` keeps the file's IFMAP and the floor rule of a real convolution.

Each row's v3 ``N:M`` is returned in :attr:`Topology.layer_nm` (layer name -> :class:`NM`),
which :func:`load_workload` hands to the simulator as the per-layer pattern the file fixes.
Errors are :class:`~nmsat.errors.NmsatError` naming the file, line and column.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from nmsat.errors import NmsatError
from nmsat.types import NM, _Choice
from nmsat.workloads.layers import Conv2d, Layer, Linear, Workload

__all__ = ["Dialect", "Form", "Geometry", "Topology", "load_workload", "parse", "read"]


class Form(_Choice):
    """Which kind of rows a topology file holds."""

    CONV = "conv"
    GEMM = "gemm"


class Dialect(_Choice):
    """The SCALE-Sim version a file needs: columns only v2 reads (a separate stride
    width), columns only v3 reads (sparsity, batch size), or neither."""

    COMMON = "v2/v3"
    V2 = "v2"
    V3 = "v3"


class Geometry(_Choice):
    """How a conv row's output size is computed (see the module docstring)."""

    SCALESIM = "scalesim"  # ceil((H - fh + s) / s), as SCALE-Sim computes it
    EXACT = "exact"  # floor((H - fh) / s) + 1, a real convolution of the given IFMAP


# Column keys -> the name used in messages.
_TITLES = {
    "name": "Layer name", "ifmap_h": "IFMAP Height", "ifmap_w": "IFMAP Width",
    "filt_h": "Filter Height", "filt_w": "Filter Width", "channels": "Channels",
    "filters": "Num Filter", "stride": "Strides", "stride_w": "Stride Width",
    "batch": "Batch Size", "sparsity": "Sparsity", "m": "M", "n": "N", "k": "K",
}

# Normalised header text -> column key, per form.
_ALIASES = {
    Form.CONV: {
        "layer name": "name", "layer": "name", "name": "name",
        "ifmap height": "ifmap_h", "ifmap h": "ifmap_h",
        "ifmap width": "ifmap_w", "ifmap w": "ifmap_w",
        "filter height": "filt_h", "filter h": "filt_h",
        "filter width": "filt_w", "filter w": "filt_w",
        "channels": "channels", "num channels": "channels",
        "num filter": "filters", "num filters": "filters",
        "strides": "stride", "stride": "stride", "stride height": "stride",
        "stride h": "stride",
        "stride width": "stride_w", "stride w": "stride_w",
        "batch": "batch", "batch size": "batch",
        "sparsity": "sparsity", "sparsity ratio": "sparsity",
    },
    Form.GEMM: {
        "layer name": "name", "layer": "name", "name": "name",
        "m": "m", "n": "n", "k": "k",
        "batch": "batch", "batch size": "batch",
        "sparsity": "sparsity", "sparsity ratio": "sparsity",
    },
}

_WHAT = {"sparsity": "an N:M pattern (v3)", "stride_w": "a stride width (v2)"}

_OPTIONAL = ("stride_w", "batch", "sparsity")

_REQUIRED = {
    Form.CONV: ("name", "ifmap_h", "ifmap_w", "filt_h", "filt_w", "channels", "filters",
                "stride"),
    Form.GEMM: ("name", "m", "n", "k"),
}


@dataclass(frozen=True)
class Topology:
    """A parsed SCALE-Sim topology.

    Attributes
    ----------
    name
        The file's stem (SCALE-Sim's run name for it).
    form, dialect
        Conv or GEMM rows; the SCALE-Sim version whose columns the file uses.
    layers
        One layer per row (a ``DP`` row is one grouped convolution).
    layer_nm
        Layer name -> the row's v3 ``N:M`` pattern, for rows that have one.
    batch
        The file's ``Batch Size`` column (v3), or ``None`` if it has none.
    lines
        Layer name -> the line it was read from.
    """

    name: str
    form: Form
    dialect: Dialect
    layers: tuple[Layer, ...]
    layer_nm: Mapping[str, NM] = field(default_factory=lambda: MappingProxyType({}))
    batch: int | None = None
    lines: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))

    def workload(self, batch: int | None = None) -> Workload:
        """The layers bound to ``batch`` samples (default: the file's batch, else 1)."""
        return Workload(self.name, self.layers, batch or self.batch or 1)


class _Where:
    """Formats error messages: ``FILE: line L, column C (Title): what``."""

    def __init__(self, source: str) -> None:
        self.source = source

    def error(self, line: int, what: str, col: int | None = None,
              key: str | None = None) -> NmsatError:
        where = f"{self.source}: line {line}"
        if col is not None:
            where += f", column {col}"
            if key is not None:
                where += f" ({_TITLES[key]})"
        return NmsatError(f"{where}: {what}")


def _normalise(text: str) -> str:
    return " ".join(text.lstrip("\ufeff").strip().lower().split())


def _is_int(text: str) -> bool:
    return text.strip().lstrip("+-").isdigit()


def _positive(w: _Where, line: int, col: int, key: str, text: str) -> int:
    if not _is_int(text):
        raise w.error(line, f"expected a positive integer, not {text!r}", col, key)
    value = int(text)
    if value < 1:
        raise w.error(line, f"expected a positive integer, not {value}", col, key)
    return value


def _pattern(w: _Where, line: int, col: int, text: str) -> NM:
    try:
        return NM.parse(text)
    except ValueError as e:
        raise w.error(line, str(e), col, "sparsity") from None


def _data_fields(w: _Where, line: int, text: str) -> list[str]:
    """Split a data row, enforcing SCALE-Sim's trailing-comma rule."""
    parts = text.split(",")
    tail = parts[-1].strip()
    if len(parts) == 1:
        raise w.error(line, f"not a comma-separated row: {text!r}")
    if tail and not tail.startswith("#"):
        raise w.error(line, f"row does not end with a comma; SCALE-Sim drops the text after "
                            f"the last comma ({tail!r}), so add a trailing comma", len(parts))
    return [p.strip() for p in parts[:-1]]


def _header_columns(fields: list[str], form: Form) -> list[str] | None:
    """Column keys named by a header, or ``None`` if any field is not a known name."""
    aliases = _ALIASES[form]
    keys = [aliases.get(_normalise(f)) for f in fields]
    return None if any(k is None for k in keys) else keys  # type: ignore[return-value]


def parse(text: str, name: str = "topology", form: Form | str | None = None,
          geometry: Geometry | str = Geometry.SCALESIM, source: str | None = None) -> Topology:
    """Parse the text of a SCALE-Sim topology file.

    Parameters
    ----------
    text
        The file's contents.
    name
        The topology's name (the file stem).
    form
        ``"conv"`` or ``"gemm"``; ``None`` detects it from the header or the column count.
    geometry
        How conv output sizes are computed (:class:`Geometry`).
    source
        What error messages call the file (default: ``name``).

    Raises
    ------
    NmsatError
        A malformed row, naming the line and column.
    """
    w = _Where(source or name)
    geometry = Geometry.parse(geometry)
    rows = [(i, line.strip()) for i, line in enumerate(text.splitlines(), 1)
            if line.strip() and not line.strip().startswith("#")]
    if not rows:
        raise NmsatError(f"{w.source}: no layers (the file is empty)")
    reader = _Rows(w, Form.parse(form) if form is not None else None)
    rows = reader.header(rows)

    layers: list[Layer] = []
    layer_nm: dict[str, NM] = {}
    lines: dict[str, int] = {}
    batch: tuple[int, int] | None = None  # (value, line)
    for line, text_row in rows:
        fields = _data_fields(w, line, text_row)
        row_cols = reader.columns_of(line, fields)
        values = _values(w, line, row_cols, fields)
        col_of = {key: i for i, key in enumerate(row_cols, 1)}
        lname = str(values["name"])
        if lname in lines:
            raise w.error(line, f"duplicate layer name {lname!r} (first on line {lines[lname]})",
                          col_of["name"], "name")
        if "batch" in values:
            b = int(values["batch"])  # type: ignore[arg-type]
            if batch is None:
                batch = (b, line)
            elif b != batch[0]:
                raise w.error(line, f"batch size {b} differs from {batch[0]} on line {batch[1]} "
                                    f"(one topology has one batch size)", col_of["batch"], "batch")
        assert reader.form is not None  # columns_of decided it
        layers.append(_layer(w, line, reader.form, values, col_of, geometry))
        lines[lname] = line
        if "sparsity" in values:
            layer_nm[lname] = values["sparsity"]  # type: ignore[assignment]

    assert reader.form is not None
    return Topology(name, reader.form, reader.dialect(bool(layer_nm)), tuple(layers),
                    MappingProxyType(layer_nm), batch[0] if batch else None,
                    MappingProxyType(lines))


class _Rows:
    """Which column each field of a row is: from the header, or by SCALE-Sim's positions."""

    def __init__(self, w: _Where, form: Form | None) -> None:
        self.w = w
        self.form = form  # None until the header or the first row decides it
        self.columns: list[str] | None = None  # column keys named by a usable header
        self.header_line: int | None = None
        self.ninth: tuple[str, int] | None = None  # a positional 9th conv column: kind, line

    def header(self, rows: list[tuple[int, str]]) -> list[tuple[int, str]]:
        """Detect and read a header (a first row without a number in column 2); returns
        the data rows."""
        w = self.w
        first_line, first = rows[0]
        head = [f.strip() for f in first.split(",")]
        while head and not head[-1]:
            head.pop()
        if len(head) >= 2 and _is_int(head[1]):
            return rows
        self.header_line = first_line
        for form in [self.form] if self.form else [Form.GEMM, Form.CONV]:
            self.columns = _header_columns(head, form)
            if self.columns is not None:
                self.form = form
                break
        if self.columns is not None:
            assert self.form is not None
            missing = [k for k in _REQUIRED[self.form] if k not in self.columns]
            if missing:
                raise w.error(first_line, f"the header lacks the {_TITLES[missing[0]]!r} column")
            dup = next((k for k in self.columns if self.columns.count(k) > 1), None)
            if dup is not None:
                raise w.error(first_line, f"the header names the {_TITLES[dup]!r} column twice")
        if len(rows) == 1:
            raise NmsatError(f"{w.source}: no layers (only a header on line {first_line})")
        return rows[1:]

    def columns_of(self, line: int, fields: list[str]) -> list[str]:
        """The column keys of a data row's fields."""
        w = self.w
        if self.form is None:  # no usable header: the first row's column count decides
            if len(fields) in (4, 5):
                self.form = Form.GEMM
            elif len(fields) in (8, 9):
                self.form = Form.CONV
            else:
                raise w.error(line, f"expected 8 or 9 fields (conv) or 4 or 5 fields (GEMM), "
                                    f"found {len(fields)}")
        base = list(_REQUIRED[self.form])
        cols = self.columns
        # A header of just the common columns leaves an extra (9th / 5th) column positional.
        if cols is not None and not (cols == base and len(fields) == len(cols) + 1):
            # a row may stop before trailing optional columns (v3 reads them as absent)
            short = len(fields) < len(cols) and all(k in _OPTIONAL for k in cols[len(fields):])
            if len(fields) != len(cols) and not short:
                raise w.error(line, f"expected {len(cols)} fields as in the header on line "
                                    f"{self.header_line}, found {len(fields)}")
            return cols[:len(fields)]
        if len(fields) not in (len(base), len(base) + 1):
            kind = "conv" if self.form is Form.CONV else "GEMM"
            raise w.error(line, f"expected {len(base)} or {len(base) + 1} fields for a {kind} "
                                f"row, found {len(fields)}")
        if len(fields) == len(base):
            return base
        extra = fields[-1]
        if self.form is Form.GEMM or ":" in extra:
            kind = "sparsity"
        elif _is_int(extra):
            kind = "stride_w"
        else:
            raise w.error(line, f"expected a stride width (v2) or an N:M pattern (v3), "
                                f"not {extra!r}", len(fields))
        if self.form is Form.CONV:  # v2 and v3 read a 9th column differently: one per file
            if self.ninth is not None and self.ninth[0] != kind:
                raise w.error(line, f"{_WHAT[kind]} here but {_WHAT[self.ninth[0]]} in the "
                                    f"same column on line {self.ninth[1]}", len(fields))
            self.ninth = self.ninth or (kind, line)
        return base + [kind]

    def dialect(self, has_nm: bool) -> Dialect:
        keys = set(self.columns or ()) | ({self.ninth[0]} if self.ninth else set())
        if has_nm or "sparsity" in keys or "batch" in keys:
            return Dialect.V3
        return Dialect.V2 if "stride_w" in keys else Dialect.COMMON


def _values(w: _Where, line: int, row_cols: list[str], fields: list[str]) -> dict[str, object]:
    """A row's fields by column key, validated (empty optional fields are left out)."""
    values: dict[str, object] = {}
    for col, (key, raw) in enumerate(zip(row_cols, fields), 1):
        if key == "name":
            if not raw:
                raise w.error(line, "empty layer name", col, key)
            values[key] = raw
        elif key in _OPTIONAL and not raw:
            continue
        elif key == "sparsity":
            values[key] = _pattern(w, line, col, raw)
        else:
            values[key] = _positive(w, line, col, key, raw)
    return values


def _layer(w: _Where, line: int, form: Form, v: dict, col_of: dict[str, int],
           geometry: Geometry) -> Layer:
    name = v["name"]
    if form is Form.GEMM:
        return Linear(name, in_features=v["k"], out_features=v["n"], tokens=v["m"])
    stride = v["stride"]
    if v.get("stride_w", stride) != stride:
        raise w.error(line, f"stride width {v['stride_w']} differs from stride height {stride}; "
                            f"only square strides are supported", col_of["stride_w"], "stride_w")
    size = {}
    for dim, fdim in (("ifmap_h", "filt_h"), ("ifmap_w", "filt_w")):
        if v[fdim] > v[dim]:
            raise w.error(line, f"{_TITLES[fdim].lower()} {v[fdim]} exceeds the "
                                f"{_TITLES[dim]} {v[dim]}", col_of[fdim], fdim)
        size[dim] = v[dim]
        if geometry is Geometry.SCALESIM:
            out = (v[dim] - v[fdim] + stride - 1) // stride + 1
            size[dim] = (out - 1) * stride + v[fdim]
    c, f = v["channels"], v["filters"]
    groups = 1
    if "DP" in name:  # SCALE-Sim: C single-channel layers of f filters each
        groups, f = c, c * f
    return Conv2d(name, in_ch=c, out_ch=f, in_h=size["ifmap_h"], in_w=size["ifmap_w"],
                  kh=v["filt_h"], kw=v["filt_w"], stride=stride, padding=0, groups=groups)


def read(path: str | os.PathLike, form: Form | str | None = None,
         geometry: Geometry | str = Geometry.SCALESIM) -> Topology:
    """Read a SCALE-Sim topology CSV file; see :func:`parse`."""
    from nmsat.fileio import LIMITS, InputError, read_bytes

    text_path = os.fspath(path)
    try:
        data = read_bytes(text_path, "SCALE-Sim topology", LIMITS["csv"])
    except InputError as e:
        raise NmsatError(str(e)) from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise NmsatError(f"{text_path}: not a text file ({e.reason} at byte {e.start})") \
            from None
    stem = os.path.splitext(os.path.basename(text_path))[0]
    return parse(text, name=stem, form=form, geometry=geometry, source=text_path)


def load_workload(path: str | os.PathLike, batch: int | None = None,
                  seq_len: int | None = None):
    """:func:`nmsat.workloads.load`'s loader for ``.csv`` files.

    ``batch`` overrides the file's ``Batch Size`` column (default: the file's, else 1).
    Returns a :class:`~nmsat.workloads.zoo.LoadedWorkload` whose ``layer_nm`` holds the
    file's per-layer ``N:M`` patterns.
    """
    from nmsat.workloads.zoo import LoadedWorkload

    if seq_len is not None:
        raise ValueError(f"{os.fspath(path)}: a SCALE-Sim topology has no sequence length "
                         f"(seq_len={seq_len!r})")
    topo = read(path)
    return LoadedWorkload(topo.workload(batch), topo.layer_nm,
                          f"SCALE-Sim {topo.dialect} {topo.form}")
