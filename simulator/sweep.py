"""Design-space sweeps: run a :class:`~nmsat.simulator.sweep_spec.SweepSpec` on Dask into
a crash-safe SQLite result store.

Execution
    Points run as Dask tasks: by default on a :class:`distributed.LocalCluster` of worker
    processes (one thread each) sized to the machine, started and stopped here; or on an
    existing cluster given by its scheduler address. Workers only compute and return a
    plain record; the client process alone writes the store.

Store
    One SQLite file in WAL mode. Each point is a row keyed by the SHA-256 of its full config
    dict, workload, options and nmsat version (:func:`~nmsat.simulator.sweep_spec.point_key`);
    each row is written in its own transaction, so a killed sweep leaves only whole rows and
    a resumed one skips them. A point whose simulation raises is stored with
    ``status = 'failed'`` and its error; the sweep goes on.

Everything that can be checked is checked before the store is created or touched: the
spec (by the caller), an existing store's schema, and the connection to Dask.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import logging
import os
import sqlite3
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self

from nmsat.simulator.run_cache import RunCache, program_key, run_key
from nmsat.simulator.sweep_spec import Point, SweepSpec

from nmsat import __version__
from nmsat.errors import NmsatError

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

_POINT_COLUMNS = ("key", "idx", "workload", "params", "config", "options", "nmsat_version",
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
            blocker = _blocking_file(p)
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
            conn = _read_only(p)
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
        return int(cur.lastrowid)

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
        cols = ", ".join(_POINT_COLUMNS)
        marks = ", ".join("?" for _ in _POINT_COLUMNS)
        with _transaction(self._conn):
            self._conn.execute(f"INSERT OR IGNORE INTO points ({cols}) VALUES ({marks})",
                               [row[c] for c in _POINT_COLUMNS])

    def rows(self) -> list[dict[str, Any]]:
        """Every stored point as a dict of its columns (JSON columns decoded), in spec
        order (``idx``, then key)."""
        cur = self._conn.execute(f"SELECT {', '.join(_POINT_COLUMNS)} FROM points "
                                 f"ORDER BY idx, key")
        out = []
        for values in cur:
            row = dict(zip(_POINT_COLUMNS, values))
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


def _read_only(path: Path) -> sqlite3.Connection:
    """A connection that changes nothing on disk. Without a WAL file (a store closed
    cleanly) the file is opened immutable, so not even the ``-shm`` index is created; with
    one (a killed sweep) it is read through the WAL, whose committed rows count."""
    wal = path.with_name(path.name + "-wal")
    flags = "mode=ro" if wal.exists() else "mode=ro&immutable=1"
    return sqlite3.connect(f"file:{path}?{flags}", uri=True)


def _blocking_file(p: Path) -> Path | None:
    """The existing non-folder among ``p``'s ancestors, if any (``p`` cannot exist then)."""
    return next((a for a in p.parents if a.exists() and not a.is_dir()), None)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


# --------------------------------------------------------------------------- export


def export_rows(path: str | Path) -> list[dict[str, Any]]:
    """All points of the store at ``path`` (see :meth:`ResultStore.rows`), read without
    changing anything on disk."""
    ResultStore.check(path)
    with ResultStore(Path(path), _read_only(Path(path))) as store:
        return store.rows()


def export_json(path: str | Path) -> str:
    """The store as a JSON list of points (full results included), in spec order."""
    return json.dumps(export_rows(path), indent=1, sort_keys=True, allow_nan=False) + "\n"


def export_csv(path: str | Path) -> str:
    """The store as CSV: one row per point with its axis values, status, scalar results and
    resource estimate (full per-layer results are in the JSON export)."""
    rows = export_rows(path)
    axes: list[str] = []
    for r in rows:
        for k in r["params"]:
            if k not in axes:
                axes.append(k)
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


# --------------------------------------------------------------------------- evaluation


@dataclass(frozen=True)
class PointTask:
    """What a worker needs to evaluate one point: plain data, cheap to send."""

    key: str
    workload: str
    config: dict[str, Any]
    options: dict[str, Any]

    @classmethod
    def of(cls, point: Point) -> PointTask:
        from nmsat.config import to_dict

        return cls(point.key, point.workload, to_dict(point.config), point.options_dict)


@functools.lru_cache(maxsize=16)
def _workload(name: str, batch: int, seq_len: int | None) -> Any:
    # Workers evaluate many points of few workloads: build each once per process.
    from nmsat.simulator import api

    return api.load_workload(name, batch=batch, seq_len=seq_len)


_CACHE: RunCache | None = None


def worker_cache() -> RunCache:
    """This process's cache of compiled programs and system-model runs (one per worker
    process; it holds a few whole-workload programs, tens of MB at most)."""
    global _CACHE
    if _CACHE is None:
        _CACHE = RunCache()
    return _CACHE


def evaluate_point(task: PointTask) -> dict[str, Any]:
    """Simulate one point (on a worker) and return its record for the store.

    Programs and runs are reused from :func:`worker_cache` when an earlier point of this
    process had the same workload, compile options and the config fields they depend on
    (:mod:`nmsat.simulator.run_cache`); the record is byte-identical either way.

    Never raises for a failing simulation: the record then has ``status = 'failed'`` and
    the error's one-line description, so one bad point does not stop a sweep.
    """
    from nmsat.simulator import api, area
    from nmsat.simulator.sweep_spec import WORKLOAD_OPTIONS, options_object

    from nmsat import config as nmconfig

    t0 = time.perf_counter()
    worker = f"{os.uname().nodename}:{os.getpid()}"
    try:
        cfg = nmconfig.from_dict(task.config)
        wl_opts = {k: task.options[k] for k in WORKLOAD_OPTIONS}
        sim_opts = {k: v for k, v in task.options.items() if k not in WORKLOAD_OPTIONS}
        result = api.simulate(_workload(task.workload, **wl_opts), cfg,
                              options_object(sim_opts), cache=worker_cache(),
                              workload_key=(task.workload, wl_opts["batch"],
                                            wl_opts["seq_len"]))
        data = result.to_dict(events=False, timing=False)
        record: dict[str, Any] = {
            "status": "ok",
            "total_cycles": data["total_cycles"],
            "seconds": data["seconds"],
            "energy_pj": data["energy_pj"]["total"],
            "speedup_vs_dense": data["speedup_vs_dense"],
            "utilization": data["utilization"],
            "dram_bytes": data["dram_bytes"],
            "result": json.dumps(data, sort_keys=True, allow_nan=False),
        }
        resources = area.estimate(cfg)
        if resources is not None:
            record.update(resources.as_dict())
    except Exception as e:  # noqa: BLE001 - recorded, see docstring
        msg = str(e).splitlines()[0] if str(e) else ""
        record = {"status": "failed", "error": f"{type(e).__name__}: {msg}".rstrip(": ")}
    record["key"] = task.key
    record["worker"] = worker
    record["elapsed_s"] = time.perf_counter() - t0
    return record


# --------------------------------------------------------------------------- running


@dataclass(frozen=True)
class SweepPlan:
    """The points of a spec and which of them a run will evaluate."""

    spec: SweepSpec
    points: tuple[Point, ...]
    todo: tuple[Point, ...]

    @property
    def skipped(self) -> int:
        return len(self.points) - len(self.todo)


@dataclass(frozen=True)
class SweepSummary:
    """What a run did."""

    store: Path
    points: int
    skipped: int
    ok: int
    failed: int
    seconds: float
    workers: int

    @property
    def points_per_second(self) -> float:
        done = self.ok + self.failed
        return done / self.seconds if self.seconds > 0 else 0.0


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


def plan(spec: SweepSpec, store: str | Path, resume: bool,
         points: tuple[Point, ...] | None = None) -> SweepPlan:
    """Enumerate the points and, with ``resume``, drop those already in ``store``.

    Raises :class:`SweepError` if ``store`` exists without ``resume``, or is not a store.
    Changes nothing on disk. ``points`` reuses an enumeration (planning again under the
    :class:`StoreLock`, to see what another sweep stored meanwhile).
    """
    points = spec.points() if points is None else points
    p = Path(store)
    done: set[str] = set()
    if p.is_dir():
        raise SweepError(f"store {p} is a folder, not a sweep store; choose another -o")
    if p.exists():
        if not resume:
            raise SweepError(f"store {p} already exists; pass --resume to continue it or "
                             f"choose another -o")
        ResultStore.check(p)
        with ResultStore(p, _read_only(p)) as s:
            done = s.keys()
    else:
        _check_creatable(p)
    return SweepPlan(spec, points, tuple(pt for pt in points if pt.key not in done))


def _check_creatable(p: Path) -> None:
    """Raise :class:`SweepError` unless a new store can be created at ``p`` (its nearest
    existing ancestor is a writable folder). Creates nothing."""
    blocker = _blocking_file(p)
    if blocker is not None:
        raise SweepError(f"cannot create store {p}: {blocker} is not a folder")
    parent = next(a for a in p.parents if a.exists())
    if not os.access(parent, os.W_OK | os.X_OK):
        raise SweepError(f"cannot create store {p}: {parent} is not writable")


class DaskCluster:
    """A Dask client: on a new local cluster of ``workers`` processes (one thread each),
    or connected to the scheduler at ``address``. Use as a context manager; a local
    cluster is shut down on exit."""

    def __init__(self, workers: int | None = None, address: str | None = None,
                 timeout_s: float = 10.0) -> None:
        if address is not None and workers is not None:
            raise SweepError("give either a worker count (local cluster) or a scheduler "
                             "address, not both")
        if workers is not None and workers < 1:
            raise SweepError(f"workers must be at least 1, not {workers}")
        self.address = address
        self.requested = workers if workers is not None else default_workers()
        self.timeout_s = timeout_s
        self.cluster: Any = None
        self.client: Any = None

    def __enter__(self) -> Self:
        from dask.distributed import Client, LocalCluster

        quiet = logging.CRITICAL
        if self.address is not None:
            for name in ("distributed", "distributed.client", "distributed.comm"):
                logging.getLogger(name).setLevel(quiet)
            try:
                self.client = Client(self.address, timeout=f"{self.timeout_s}s")
            except (OSError, TimeoutError, ValueError) as e:
                msg = str(e).splitlines()[0] if str(e) else type(e).__name__
                raise SweepError(f"cannot reach the Dask scheduler at {self.address}: "
                                 f"{msg}") from None
            return self
        with warnings.catch_warnings():
            # without a dashboard the scheduler still serves HTTP, on any free port if its
            # default is taken (e.g. by another sweep): nothing to warn the user about
            warnings.filterwarnings("ignore", "Port .* is already in use", UserWarning)
            self.cluster = LocalCluster(n_workers=self.requested, threads_per_worker=1,
                                        processes=True, dashboard_address=None,
                                        silence_logs=quiet)
        self.client = Client(self.cluster)
        return self

    @property
    def workers(self) -> int:
        """Worker threads the cluster has now."""
        info = self.client.scheduler_info(n_workers=-1)
        return sum(w["nthreads"] for w in info["workers"].values())

    def __exit__(self, *exc: object) -> None:
        if self.client is not None:
            self.client.close()
        if self.cluster is not None:
            self.cluster.close()


def default_workers() -> int:
    """Worker processes of the default local cluster: one per usable CPU."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


GROUP_POINTS = 8
"""Most points sent to a worker as one Dask task (see :func:`group_points`): enough to
share a dense baseline between methods and patterns, few enough to keep two workers
evenly busy on small sweeps and the progress bar moving."""


def group_points(points: Sequence[Point], size: int = GROUP_POINTS) -> list[tuple[Point, ...]]:
    """Split ``points`` into worker tasks of at most ``size`` points that share compiled
    programs: the same workload, the same options apart from method and pattern, and the
    same config fields the compiler reads (:data:`~nmsat.simulator.run_cache.PROGRAM_FIELDS`).
    Inside a task the worker compiles each program once and runs the dense baseline once
    per hardware point. Groups are in the order of their first point; within a group,
    points with equal timing fields are adjacent. Which points share a task changes only
    the speed, never a stored value."""
    groups: dict[tuple, list[Point]] = {}
    timing: dict[str, str] = {}
    for pt in points:
        shared = {k: v for k, v in pt.options if k not in ("method", "nm")}
        pkey = program_key(pt.workload, pt.config, json.dumps(shared, sort_keys=True))
        groups.setdefault(pkey, []).append(pt)
        timing[pt.key] = run_key((), pt.config, False)[1]
    out: list[tuple[Point, ...]] = []
    for members in groups.values():
        members.sort(key=lambda p: (timing[p.key], p.index))
        out.extend(tuple(members[i:i + size]) for i in range(0, len(members), size))
    return out


def _evaluate_group(tasks: list[PointTask],
                    evaluate: Callable[[PointTask], dict[str, Any]]) -> list[dict[str, Any]]:
    """Worker side: evaluate a group's points in order (they share the worker's cache)."""
    return [evaluate(t) for t in tasks]


def run(sweep: SweepPlan, store: str | Path, cluster: DaskCluster,
        on_record: Callable[[Mapping[str, Any]], None] | None = None,
        evaluate: Callable[[PointTask], dict[str, Any]] = evaluate_point) -> SweepSummary:
    """Evaluate ``sweep.todo`` on ``cluster`` (entered) and store every record.

    Creates ``store`` if it does not exist. ``on_record`` is called in the client after each
    point is stored (for a progress bar). ``evaluate`` is the worker function; the shipped
    sweep always uses :func:`evaluate_point`. Points go to the workers in the groups of
    :func:`group_points`; each point is still stored in its own transaction.
    """
    from dask.distributed import as_completed

    p = Path(store)
    st = ResultStore.open(p) if p.exists() else ResultStore.create(p)
    t0 = time.perf_counter()
    ok = failed = 0
    try:
        run_id = st.begin_run(sweep.spec, len(sweep.points))
        groups = group_points(sweep.todo)
        batches = [[PointTask.of(pt) for pt in g] for g in groups]
        futures = cluster.client.map(_evaluate_group, batches,
                                     key=[f"nmsat-points-{g[0].key}" for g in groups],
                                     pure=False, evaluate=evaluate)
        group_of = {f.key: g for f, g in zip(futures, groups)}
        for fut in as_completed(futures):
            group = group_of[fut.key]
            if fut.status == "finished":
                records = fut.result()
            else:  # the task itself died (e.g. its worker was killed repeatedly)
                exc = fut.exception()
                msg = str(exc).splitlines()[0] if str(exc) else ""
                records = [{"status": "failed",
                            "error": f"{type(exc).__name__}: {msg}".rstrip(": ")}
                           for _ in group]
            fut.release()
            for point, record in zip(group, records):
                st.write(point, record, run_id)
                if record["status"] == "ok":
                    ok += 1
                else:
                    failed += 1
                if on_record is not None:
                    on_record(record)
        workers = cluster.workers
    finally:
        st.close()
    return SweepSummary(p, len(sweep.points), sweep.skipped, ok, failed,
                        time.perf_counter() - t0, workers)

