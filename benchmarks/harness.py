"""What every benchmark shares: figures beside their ceilings, databases, timing, a served hub.

A benchmark returns an :class:`Outcome`: figures, each measured beside its ceiling in
the same run on the same data, so the ratio holds across machines and load even when
the absolute numbers do not.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import resource
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import closing, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx

SIZES = ("smoke", "small", "medium", "full")
PG_DSN = os.environ.get("EMR_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


@dataclass(frozen=True)
class Figure:
    """One measured figure; ``ratio`` is achieved ÷ ceiling, turned round when lower is better."""

    name: str
    value: float
    unit: str
    ceiling: float | None = None
    higher_is_better: bool = True
    target: str = ""

    @property
    def ratio(self) -> float | None:
        if not self.ceiling or not self.value:
            return None
        return self.value / self.ceiling if self.higher_is_better else self.ceiling / self.value


@dataclass
class Outcome:
    benchmark: str
    size: str
    database: str
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def add(self, name: str, value: float, unit: str, ceiling: float | None = None, *,
            higher_is_better: bool = True, target: str = "") -> None:
        self.figures.append(Figure(name, value, unit, ceiling, higher_is_better, target))

    def as_json(self) -> dict:
        data = asdict(self)
        data["figures"] = [{**asdict(f), "ratio": f.ratio} for f in self.figures]
        return data


# ---------------------------------------------------------------- measuring

def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0-100) by nearest rank; 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


def checking_rate(resources: list[dict], *, at_most: int = 5_000) -> float:
    """Resources per second that ``validate_resource`` (R4B structure and the project's
    profiles) checks on one core: a bound on any path that must check what it stores."""
    from emr.fhir import validate_resource

    sample = resources[::max(1, len(resources) // at_most)][:at_most]  # every kind, in the file's proportions
    for first in {r["resourceType"]: r for r in sample}.values():
        validate_resource(first)  # each type's model loaded before the clock starts
    started = time.perf_counter()
    for item in sample:
        validate_resource(item)
    return len(sample) / (time.perf_counter() - started)


def shared_bound(rates: list[float], cores: int) -> float:
    """Items per second on ``cores`` cores, perfectly shared, of work whose parts each run
    alone at ``rates`` per second on one core: what a path doing those parts and nothing
    else could reach at best."""
    return cores / sum(1 / rate for rate in rates)


def peak_rss_mb() -> float:
    """This process's own peak resident memory. Linux carries ``ru_maxrss`` over from the
    parent through fork and exec, so a fresh benchmark process would report the runner's
    peak; ``VmHWM`` belongs to the process's own address space."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def in_fresh_process(fn: Callable, *args: object) -> object:
    """Run ``fn(*args)`` in a newly started interpreter (so its peak memory is its own)."""
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()


# ---------------------------------------------------------------- databases

@contextmanager
def database(kind: str, workdir: Path, name: str) -> Iterator[str]:
    """A fresh, empty database: a SQLite file in ``workdir``, or a PostgreSQL schema of its own."""
    if kind == "sqlite":
        path = workdir / f"{name}.db"
        for leftover in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            leftover.unlink(missing_ok=True)
        yield f"sqlite:///{path}"
        return
    import psycopg

    schema = f"bench_{name}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    base = PG_DSN.replace("postgresql://", "postgresql+psycopg://", 1)
    try:
        yield f"{base}?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def postgres_problem() -> str | None:
    try:
        import psycopg

        with psycopg.connect(PG_DSN, connect_timeout=3):
            return None
    except Exception as exc:  # noqa: BLE001 - any failure means: skip PostgreSQL, say why
        return f"no PostgreSQL at {PG_DSN}: {exc}".splitlines()[0]


def schema_of(url: str) -> str | None:
    return url.split("search_path%3D", 1)[1] if "search_path%3D" in url else None


def preload(url: str, path: Path, patients: int, *, source: str, seed: int) -> tuple[float, int]:
    """Fill a hub database through the bulk path: ``patients`` Patients with 9 results each.

    Returns the seconds the import took and the resources it stored. On SQLite the first
    load of a size is kept beside ``path`` and later ones copy it (B1 and B2 preload the
    same data), reporting the seconds the first one took.
    """
    if not url.startswith("sqlite:///"):
        return _import(url, path, patients, source=source, seed=seed)
    kept = path.with_name(f"preloaded-{patients}-{source}-{seed}.db")
    facts = kept.with_suffix(".json")
    if not facts.exists():
        kept.unlink(missing_ok=True)
        seconds, count = _import(f"sqlite:///{kept}", path, patients, source=source, seed=seed)
        with closing(sqlite3.connect(kept)) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        facts.write_text(json.dumps({"seconds": seconds, "count": count}), encoding="utf-8")
    shutil.copyfile(kept, url.removeprefix("sqlite:///"))
    known = json.loads(facts.read_text(encoding="utf-8"))
    return known["seconds"], known["count"]


def _import(url: str, path: Path, patients: int, *, source: str, seed: int) -> tuple[float, int]:
    from benchmarks.data import history, people, write_ndjson
    from emr.config import Settings
    from emr.hub.app import build_hub
    from emr.hub.bulk import import_files

    count = write_ndjson(path, history(seed, source, people(seed, patients), 9))
    hub = build_hub(Settings(database_url=url))
    started = time.perf_counter()
    import_files(hub, [path], source=source, workers=2)
    seconds = time.perf_counter() - started
    hub.engine.dispose()
    return seconds, count


# ---------------------------------------------------------------- serving

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def served(db_url: str | None, *, bare: bool = False) -> Iterator[str]:
    """The hub (or, ``bare``, a one-route ASGI app) under uvicorn on 127.0.0.1, in its own process.

    Yields the FHIR base URL. The hub is served without authentication: the benchmark
    is a local measurement, like ``emr serve`` with ``EMR_AUTH_REQUIRED=false``.
    """
    port = free_port()
    command = [sys.executable, "-m", "benchmarks.server", "--port", str(port)]
    command += ["--bare"] if bare else ["--db", db_url or ""]
    process = subprocess.Popen(command, cwd=Path(__file__).resolve().parent.parent)
    base = f"http://127.0.0.1:{port}/fhir"
    try:
        _wait_until_up(base + "/metadata", process)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=30)


def _wait_until_up(url: str, process: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the benchmark server exited with {process.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"the benchmark server did not answer {url} within {timeout:.0f} s")
