"""Export a sweep store as an Apache Parquet file (with `pyarrow <https://arrow.apache.org/
docs/python/parquet.html>`_, the ``parquet`` extra: ``pip install nmsat[parquet]``).

One row per point, in spec order, with every stored column: the key, position and
workload; one typed column per swept axis (``axis.<name>``, e.g. ``axis.array.rows``);
status and error; the scalar results and resource estimate as int64/float64 (bit-exact);
the nmsat version and where and when the point ran; and the JSON columns ``params``,
``config``, ``options`` and ``result`` as JSON text (the full per-layer result), so that a
data-frame library reads the scalars directly and the rest on demand.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from nmsat.simulator.sweep import AREA, METRICS, SweepError, export_rows
from nmsat.simulator.sweep_store import axis_names

__all__ = ["export_parquet", "table"]

_INT = frozenset({"idx", "total_cycles", "dram_bytes", "lut", "ff", "dsp", "run"})


def _pyarrow() -> Any:
    try:
        import pyarrow
        import pyarrow.parquet  # noqa: F401 - the writer is a submodule
    except ImportError:
        raise SweepError("Parquet export needs pyarrow: pip install 'nmsat[parquet]'") \
            from None
    return pyarrow


def table(path: str | Path) -> Any:
    """The store at ``path`` as a :class:`pyarrow.Table` (see the module docstring)."""
    pa = _pyarrow()
    rows = export_rows(path)
    axes = axis_names(rows)
    cols: dict[str, Any] = {}

    def add(name: str, values: list[Any], typ: Any = None) -> None:
        cols[name] = pa.array(values, type=typ)

    add("key", [r["key"] for r in rows], pa.string())
    add("idx", [r["idx"] for r in rows], pa.int64())
    add("workload", [r["workload"] for r in rows], pa.string())
    for a in axes:
        values = [r["params"].get(a) for r in rows]
        try:
            add(f"axis.{a}", values)
        except (pa.ArrowInvalid, pa.ArrowTypeError):  # mixed kinds: keep them as JSON text
            add(f"axis.{a}", [None if v is None else json.dumps(v) for v in values],
                pa.string())
    add("status", [r["status"] for r in rows], pa.string())
    add("error", [r["error"] for r in rows], pa.string())
    for c in (*METRICS, *AREA):
        add(c, [r[c] for r in rows], pa.int64() if c in _INT else pa.float64())
    add("nmsat_version", [r["nmsat_version"] for r in rows], pa.string())
    add("run", [r["run"] for r in rows], pa.int64())
    add("worker", [r["worker"] for r in rows], pa.string())
    add("elapsed_s", [r["elapsed_s"] for r in rows], pa.float64())
    add("finished_at", [r["finished_at"] for r in rows], pa.string())
    for c in ("params", "config", "options", "result"):
        add(c, [None if r[c] is None else json.dumps(r[c], sort_keys=True, allow_nan=False)
                for r in rows], pa.string())
    return pa.table(cols)


def export_parquet(path: str | Path) -> bytes:
    """The store at ``path`` as the bytes of a Parquet file (zstd-compressed)."""
    pa = _pyarrow()
    sink = pa.BufferOutputStream()
    pa.parquet.write_table(table(path), sink, compression="zstd")
    return sink.getvalue().to_pybytes()
