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
    ``status = 'failed'`` and its error; the sweep goes on. The store, its schema, its
    exports and the lease a running sweep holds on it are in
    :mod:`nmsat.simulator.sweep_store` (re-exported here).

Everything that can be checked is checked before the store is created or touched: the
spec (by the caller), an existing store's schema, and the connection to Dask.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

from nmsat.simulator.run_cache import UNIT_TIMING_FIELDS, RunCache, program_key, run_key
from nmsat.simulator.sweep_spec import Point, SweepSpec
from nmsat.simulator.sweep_store import (
    AREA,
    HOST_COLUMNS,
    METRICS,
    POINT_COLUMNS,
    SCHEMA_VERSION,
    ResultStore,
    StoreLock,
    SweepError,
    check_creatable,
    export_csv,
    export_json,
    export_rows,
    open_read_only,
)

__all__ = [
    "AREA", "GROUP_POINTS", "HOST_COLUMNS", "METRICS", "POINT_COLUMNS", "SCHEMA_VERSION",
    "DaskCluster", "PointTask", "ResultStore", "StoreLock", "SweepError", "SweepPlan",
    "SweepSummary", "default_workers", "evaluate_point", "export_csv", "export_json",
    "export_rows", "group_points", "plan", "run", "worker_cache",
]


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
    from nmsat import config as nmconfig
    from nmsat.simulator import api, area
    from nmsat.simulator.sweep_spec import WORKLOAD_OPTIONS, options_object

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
        with ResultStore(p, open_read_only(p)) as s:
            done = s.keys()
    else:
        check_creatable(p)
    return SweepPlan(spec, points, tuple(pt for pt in points if pt.key not in done))



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
        # Without a dashboard the scheduler still serves HTTP (health, metrics), by default on
        # port 8787. When that port is taken (another sweep, a user's own cluster), distributed
        # 2026.8 retries on a free port but leaks the first socket (a ResourceWarning). Ask
        # for a free port from the start: local-only, no dashboard, nothing to collide with.
        self.cluster = LocalCluster(n_workers=self.requested, threads_per_worker=1,
                                    processes=True, dashboard_address=None,
                                    scheduler_kwargs={"dashboard": False,
                                                      "dashboard_address": "127.0.0.1:0"},
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


GROUP_POINTS = 16
"""Most points sent to a worker as one Dask task (see :func:`group_points`): enough to
share a program and its dense baseline between methods, patterns and the timing fields
of a typical sweep (the co-design spec's 4 vector-lane x 3 SORE-lane values = 12 points
per program stay one task: split over two workers, they compiled both programs twice and
ran each dense baseline twice), few enough to keep two workers evenly busy on small
sweeps and the progress bar moving."""


def group_points(points: Sequence[Point], size: int = GROUP_POINTS) -> list[tuple[Point, ...]]:
    """Split ``points`` into worker tasks of at most ``size`` points that share compiled
    programs: the same workload, the same options apart from method and pattern, and the
    same config fields the compiler reads (:data:`~nmsat.simulator.run_cache.PROGRAM_FIELDS`).
    Inside a task the worker compiles each program once and runs the dense baseline once
    per hardware point. Groups are in the order of the first *design* they hold (a design:
    the axis values apart from the workload, ranked by its first point), the workloads of
    a design in spec order: a sweep over several workloads completes whole designs as it
    goes, so one stopped early can still be compared design by design. Within a group,
    points with equal timing fields are adjacent, and so are points whose timing fields
    differ only in those a dense baseline cannot read (``sore.*``,
    :data:`~nmsat.simulator.run_cache.UNIT_TIMING_FIELDS`), so a group split into
    several tasks splits few dense baselines. Which points share a task changes only the
    speed, never a stored value."""
    groups: dict[tuple, list[Point]] = {}
    timing: dict[str, tuple[str, str]] = {}
    unit_prefixes = tuple(UNIT_TIMING_FIELDS.values())
    for pt in points:
        shared = {k: v for k, v in pt.options if k not in ("method", "nm")}
        pkey = program_key(pt.workload, pt.config, json.dumps(shared, sort_keys=True))
        groups.setdefault(pkey, []).append(pt)
        full = run_key((), pt.config, False)[1]
        dense = {k: v for k, v in json.loads(full).items() if not k.startswith(unit_prefixes)}
        timing[pt.key] = (json.dumps(dense, sort_keys=True), full)
    design: dict[str, int] = {}
    for pt in points:
        design.setdefault(json.dumps(pt.params, sort_keys=True, default=str), pt.index)
    out: list[tuple[Point, ...]] = []
    for members in groups.values():
        members.sort(key=lambda p: (timing[p.key], p.index))
        out.extend(tuple(members[i:i + size]) for i in range(0, len(members), size))

    def rank(g: tuple[Point, ...]) -> tuple[int, int]:
        return (min(design[json.dumps(p.params, sort_keys=True, default=str)] for p in g),
                g[0].index)

    out.sort(key=rank)
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

