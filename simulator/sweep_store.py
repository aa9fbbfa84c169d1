"""The crash-safe SQLite result store of design-space sweeps (:mod:`nmsat.simulator.sweep`).

One SQLite file in WAL mode. Each point is a row keyed by the SHA-256 of its full config
dict, workload, options and nmsat version (:func:`~nmsat.simulator.sweep_spec.point_key`);
each row is written in its own transaction, so a killed sweep leaves only whole rows and a
resumed one skips them. A point whose simulation raises is stored with
``status = 'failed'`` and its error. :class:`StoreLock` is the lease one running sweep holds
on its store; readers (:func:`export_rows`, :func:`export_json`, :func:`export_csv`) need
none and change nothing on disk.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sqlite3
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self

from nmsat import __version__
from nmsat.errors import NmsatError
from nmsat.simulator.sweep_spec import Point, SweepSpec

__all__ = ["AREA", "HOST_COLUMNS", "METRICS", "POINT_COLUMNS", "SCHEMA_VERSION", "ResultStore",
           "StoreLock", "SweepError", "axis_names", "blocking_file", "check_creatable",
           "export_csv",
           "export_json", "export_rows", "open_read_only"]

SCHEMA_VERSION = 1

METRICS: tuple[str, ...] = ("total_cycles", "seconds", "energy_pj", "speedup_vs_dense",
                            "utilization", "dram_bytes")
"""Scalar result columns of the store (``energy_pj`` is the total)."""

AREA: tuple[str, ...] = ("lut", "ff", "dsp", "bram")
"""Resource-estimate columns (from :mod:`nmsat.simulator.area`; BRAM in RAMB36 units)."""

HOST_COLUMNS: tuple[str, ...] = ("run", "worker", "elapsed_s", "finished_at")
"""Columns that describe where and when a point ran, not its result (they differ between
two runs of the same sweep; everything else is identical)."""

_SCHEMA = f"""
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE runs (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    started_at TEXT NOT NULL,
    points INTEGER NOT NULL,
    axes TEXT NOT NULL
);
CREATE TABLE points (
    key TEXT PRIMARY KEY,
    idx INTEGER NOT NULL,
    workload TEXT NOT NULL,
    params TEXT NOT NULL,
    config TEXT NOT NULL,
    options TEXT NOT NULL,
    nmsat_version TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('ok', 'failed')),
    error TEXT,
    {", ".join(f"{m} {'INTEGER' if m in ('total_cycles', 'dram_bytes') else 'REAL'}"
               for m in METRICS)},
    lut INTEGER, ff INTEGER, dsp INTEGER, bram REAL,
    result TEXT,
    run INTEGER NOT NULL REFERENCES runs(id),
    worker TEXT,
    elapsed_s REAL,
    finished_at TEXT NOT NULL
);
"""

POINT_COLUMNS = ("key", "idx", "workload", "params", "config", "options", "nmsat_version",
                  "status", "error", *METRICS, *AREA, "result", *HOST_COLUMNS)


class SweepError(NmsatError):
    """A sweep cannot start: the store exists or is not a sweep store, Dask is unreachable."""


# --------------------------------------------------------------------------- store


class ResultStore:
    """The SQLite result store of one or more sweep runs.

    Open with :meth:`create` (a new file; fails if it exists) or :meth:`open` (an existing
    store; checks its schema). Writes are single transactions; readers may read while a
    sweep writes (WAL).
    """

    def __init__(self, path: Path, conn: sqlite3.Connection) -> None:
        self.path = path
        self._conn = conn

    @staticmethod
    def _connect(path: Path) -> sqlite3.Connection:
        conn = sqlite3.connect(path, isolation_level=None, timeout=30)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable and atomic per commit
        conn.execute("PRAGMA foreign_keys=ON")
        return conn

    @classmethod
    def check(cls, path: str | Path) -> None:
        """Raise :class:`SweepError` unless ``path`` is a sweep store of this schema (opens it
        read-only, so nothing is changed)."""
        p = Path(path)
        if not p.exists():
            blocker = blocking_file(p)
            why = f"{blocker} is not a folder" if blocker else "no such file"
            raise SweepError(f"no sweep store at {p}: {why}")
        if p.is_dir():
            raise SweepError(f"{p} is a folder, not a sweep store")
        if not p.is_file():
            raise SweepError(f"{p} is not a regular file, not a sweep store")
        try:
            with open(p, "rb") as f:
                head = f.read(16)
        except OSError as e:
            raise SweepError(f"cannot read sweep store {p}: {e.strerror or e}") from None
        if head != b"SQLite format 3\x00":
            what = "an empty file" if not head else "not an SQLite database"
            raise SweepError(f"{p} is not a sweep store ({what})")
        try:
            conn = open_read_only(p)
            try:
                tables = {t for (t,) in conn.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table'")}
                row = (conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
                       if "meta" in tables else None)
            finally:
                conn.close()
        except sqlite3.DatabaseError as e:
            raise SweepError(f"{p} is not a sweep store ({e})") from None
        if not {"meta", "points", "runs"} <= tables:
            missing = sorted({"meta", "points", "runs"} - tables)
            names = (f"{', '.join(missing[:-1])} or {missing[-1]}" if len(missing) > 1
                     else missing[0])
            raise SweepError(f"{p} is an SQLite database but not a sweep store (no {names} "
                             f"table)")
        if row is None:
            raise SweepError(f"{p} is not a sweep store (no schema version in its meta table)")
        if row[0] != str(SCHEMA_VERSION):
            raise SweepError(f"{p} is a sweep store of schema {row[0]!r}, not "
                             f"{SCHEMA_VERSION} (made by another nmsat version)")

    @classmethod
    def create(cls, path: str | Path) -> ResultStore:
        """Create a new store at ``path`` (which must not exist). The file is built under a
        temporary name and renamed into place, so ``path`` is either absent or complete."""
        p = Path(path)
        if p.exists():
            raise SweepError(f"{p} already exists")
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
        try:
            conn = cls._connect(tmp)
            try:
                conn.executescript(_SCHEMA)
                with _transaction(conn):
                    conn.executemany("INSERT INTO meta VALUES (?, ?)",
                                     [("schema", str(SCHEMA_VERSION)),
                                      ("created_by", f"nmsat {__version__}")])
            finally:
                conn.close()  # checkpoints the WAL into the file and removes it
            os.replace(tmp, p)
        except BaseException as e:
            for leftover in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm")):
                leftover.unlink(missing_ok=True)
            if isinstance(e, sqlite3.Error):  # e.g. a read-only folder: one line, no trace
                raise SweepError(f"cannot create store {p}: {e}") from None
            raise
        return cls(p, cls._connect(p))

    @classmethod
    def open(cls, path: str | Path) -> ResultStore:
        cls.check(path)
        return cls(Path(path), cls._connect(Path(path)))

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def keys(self) -> set[str]:
        return {k for (k,) in self._conn.execute("SELECT key FROM points")}

    def begin_run(self, spec: SweepSpec, points: int) -> int:
        with _transaction(self._conn):
            cur = self._conn.execute(
                "INSERT INTO runs (name, started_at, points, axes) VALUES (?, ?, ?, ?)",
                (spec.name, _now(), points, json.dumps(list(spec.axis_names))))
        if cur.lastrowid is None:
            raise RuntimeError("the runs table gave no row id")
        return cur.lastrowid

    def write(self, point: Point, record: Mapping[str, Any], run: int) -> None:
        """Store one evaluated point in one transaction (idempotent on the key)."""
        from nmsat.config import to_dict

        row = {
            "key": point.key,
            "idx": point.index,
            "workload": point.workload,
            "params": json.dumps(dict(point.params), sort_keys=True),
            "config": json.dumps(to_dict(point.config), sort_keys=True),
            "options": json.dumps(point.options_dict, sort_keys=True),
            "nmsat_version": __version__,
            "status": record["status"],
            "error": record.get("error"),
            **{m: record.get(m) for m in METRICS},
            **{a: record.get(a) for a in AREA},
            "result": record.get("result"),
            "run": run,
            "worker": record.get("worker"),
            "elapsed_s": record.get("elapsed_s"),
            "finished_at": _now(),
        }
        cols = ", ".join(POINT_COLUMNS)
        marks = ", ".join("?" for _ in POINT_COLUMNS)
        with _transaction(self._conn):
            self._conn.execute(f"INSERT OR IGNORE INTO points ({cols}) VALUES ({marks})",
                               [row[c] for c in POINT_COLUMNS])

    def rows(self) -> list[dict[str, Any]]:
        """Every stored point as a dict of its columns (JSON columns decoded), in spec
        order (``idx``, then key)."""
        cur = self._conn.execute(f"SELECT {', '.join(POINT_COLUMNS)} FROM points "
                                 f"ORDER BY idx, key")
        out = []
        for values in cur:
            row = dict(zip(POINT_COLUMNS, values))
            for c in ("params", "config", "options", "result"):
                if row[c] is not None:
                    row[c] = json.loads(row[c])
            out.append(row)
        return out


class _transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on error) on an autocommit
    connection: each block is one atomic write."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        self.conn.execute("ROLLBACK" if exc_type else "COMMIT")


def open_read_only(path: Path) -> sqlite3.Connection:
    """A connection that changes nothing on disk. Without a WAL file (a store closed
    cleanly) the file is opened immutable, so not even the ``-shm`` index is created; with
    one (a killed sweep) it is read through the WAL, whose committed rows count."""
    wal = path.with_name(path.name + "-wal")
    flags = "mode=ro" if wal.exists() else "mode=ro&immutable=1"
    return sqlite3.connect(f"file:{path}?{flags}", uri=True)


def blocking_file(p: Path) -> Path | None:
    """The existing non-folder among ``p``'s ancestors, if any (``p`` cannot exist then)."""
    return next((a for a in p.parents if a.exists() and not a.is_dir()), None)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


# --------------------------------------------------------------------------- export


def export_rows(path: str | Path) -> list[dict[str, Any]]:
    """All points of the store at ``path`` (see :meth:`ResultStore.rows`), read without
    changing anything on disk."""
    ResultStore.check(path)
    with ResultStore(Path(path), open_read_only(Path(path))) as store:
        return store.rows()


def export_json(path: str | Path) -> str:
    """The store as a JSON list of points (full results included), in spec order."""
    return json.dumps(export_rows(path), indent=1, sort_keys=True, allow_nan=False) + "\n"


def axis_names(rows: list[dict[str, Any]]) -> list[str]:
    """The swept axes of exported ``rows``, in the order they first appear."""
    axes: list[str] = []
    for r in rows:
        for k in r["params"]:
            if k not in axes:
                axes.append(k)
    return axes


def export_csv(path: str | Path) -> str:
    """The store as CSV: one row per point with its axis values, status, scalar results and
    resource estimate (full per-layer results are in the JSON export)."""
    rows = export_rows(path)
    axes = axis_names(rows)
    header = ["key", "idx", "workload", *axes, "status", "error", *METRICS, *AREA]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    for r in rows:
        w.writerow([r["key"], r["idx"], r["workload"],
                    *(_csv_value(r["params"].get(a)) for a in axes),
                    r["status"], r["error"] or "",
                    *(_csv_value(r[m]) for m in METRICS), *(_csv_value(r[a]) for a in AREA)])
    return buf.getvalue()


def _csv_value(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(v)  # round-trips exactly
    if isinstance(v, list):
        return " ".join(map(str, v))
    return str(v)



# --------------------------------------------------------------------------- lease and creation


class StoreLock:
    """An exclusive lease on a sweep store while one ``nmsat sweep`` runs into it.

    The lease is an advisory ``flock`` on ``.STORE.lock`` beside the store, taken without
    waiting: a second sweep on the same store is refused with one line naming the holder's
    pid. The kernel drops a ``flock`` when its process dies, so after ``kill -9`` the next
    ``--resume`` takes the lease at once (a leftover lock file holds no lease). The lock
    file is removed on release; a holder re-checks after locking that the file it locked is
    still the one at the path, so a release racing a new sweep never gives two leases.
    Readers (``sweep export``, ``sweep report``) need no lease: SQLite's WAL lets them
    read while a sweep writes.
    """

    def __init__(self, store: str | Path) -> None:
        self.store = Path(store)
        self.path = self.store.with_name(f".{self.store.name}.lock")
        self._fd: int | None = None
        self._made: list[Path] = []

    def __enter__(self) -> Self:
        import fcntl

        self._made = [d for d in (self.path.parent, *self.path.parent.parents)
                      if not d.exists()]
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise SweepError(f"cannot create store {self.store}: {e.strerror or e}") from None
        for _ in range(10):
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                             0o644)
            except OSError as e:
                raise SweepError(f"cannot lock store {self.store}: {self.path}: "
                                 f"{e.strerror or e}") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 32).decode("ascii", "replace").strip() or "?"
                os.close(fd)
                raise SweepError(f"store {self.store} is in use by another nmsat sweep (pid "
                                 f"{holder}); wait for it to finish, or choose another "
                                 f"-o") from None
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())
                self._fd = fd
                return self
            os.close(fd)  # released and removed under us: lock the new file
        raise SweepError(f"cannot lock store {self.store}: its lock file keeps changing")

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            self.path.unlink(missing_ok=True)  # while still holding the lease
            os.close(self._fd)
            self._fd = None
        for d in self._made:  # folders made for the lock, if the sweep left them empty
            try:
                d.rmdir()
            except OSError:
                break



def check_creatable(p: Path) -> None:
    """Raise :class:`SweepError` unless a new store can be created at ``p`` (its nearest
    existing ancestor is a writable folder). Creates nothing."""
    blocker = blocking_file(p)
    if blocker is not None:
        raise SweepError(f"cannot create store {p}: {blocker} is not a folder")
    parent = next(a for a in p.parents if a.exists())
    if not os.access(parent, os.W_OK | os.X_OK):
        raise SweepError(f"cannot create store {p}: {parent} is not writable")

