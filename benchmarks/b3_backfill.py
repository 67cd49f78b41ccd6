"""B3 bulk backfill: one facility's history as NDJSON, loaded until searchable by national ID.

Achieved: ``emr import``'s path (every line checked against the profiles, ids mapped,
Patients linked to Persons, result facts and index rows written) in a fresh process,
timed from the first line read to the commit; beside it, that process's own CPU time,
which bounds the import as written: its workers check and prepare, but one process
takes every prepared line, writes it and links it. Ceiling: the very rows it wrote, read
back and written into an empty database of the same schema as fast as the driver
allows — one ``executemany`` transaction on SQLite, ``COPY`` on PostgreSQL.
"""

from __future__ import annotations

import os
import time
from contextlib import closing
from datetime import datetime, timezone
from pathlib import Path

import orjson

from sqlalchemy import text
from sqlmodel import SQLModel

from benchmarks.data import history, people, write_ndjson
from benchmarks.harness import (
    PG_DSN, Outcome, checking_rate, database, in_fresh_process, peak_rss_mb, schema_of, shared_bound,
)

TITLE = "B3 bulk backfill"
SEED = 2025
SOURCE = "27001"
SIZES = {"smoke": 30, "small": 2_000, "medium": 20_000, "full": 100_000}  # patients; 10 resources each
RESULTS_PER_PATIENT = 9


def run(size: str, kind: str, workdir: Path) -> Outcome:
    outcome = Outcome(TITLE, size, kind)
    path = workdir / f"b3-{size}.ndjson"
    count = write_ndjson(path, history(SEED, SOURCE, people(SEED, SIZES[size]), RESULTS_PER_PATIENT))
    with database(kind, workdir, "b3") as url:
        child = in_fresh_process(import_once, url, str(path))
        disk = disk_bytes(url)
        rows = table_rows(url)
        largest = largest_tables(url, count)
    with database(kind, workdir, "b3ceiling") as url:
        ceiling_seconds = write_rows(url, rows)
    outcome.add("backfill", count / child["seconds"], "resources/s", count / ceiling_seconds,
                target=">= 10,000/s SQLite; >= 15,000/s PostgreSQL")
    outcome.add("size on disk", disk / count, "bytes/resource", path.stat().st_size / count,
                higher_is_better=False, target="<= 2,500 bytes")
    outcome.add("peak memory", child["peak_mb"], "MB")
    outcome.add("the loading process alone, one core", count / child["loader_cpu"], "resources/s",
                target="bounds this import: one process takes, writes and links every line")
    checking = checking_rate(read_resources(path))
    outcome.add("checking alone, one core", checking, "resources/s",
                target="bounds the backfill: it checks every line")
    workers = os.cpu_count() or 1
    pool = in_fresh_process(pool_checking_rate, str(path), workers)
    outcome.add(f"checking alone, the import's {workers} workers", pool, "resources/s",
                target="bounds the backfill, measured with every core busy checking")
    # The pool's rate per core is one core's share with the others busy too: lower than
    # checking alone on an idle machine wherever cores slow each other down.
    outcome.add(f"checking + writing, {workers} cores", shared_bound([pool / workers, count / ceiling_seconds], workers),
                "resources/s", target="the most an import that checks each line and writes these rows can reach")
    outcome.notes.append(f"{count:,} resources ({SIZES[size]:,} Patients, {RESULTS_PER_PATIENT} Observations each), "
                         f"{path.stat().st_size / 1e6:.1f} MB of NDJSON; {sum(len(r) for _, r in rows.values()):,} "
                         "rows written. Ceiling of size on disk: the NDJSON bytes themselves.")
    if largest:
        outcome.notes.append("on disk, bytes per resource: " + ", ".join(f"{n} {b:,.0f}" for n, b in largest))
    return outcome


def import_once(url: str, path: str) -> dict:
    """In a fresh process: open the hub, import the file, report the time and peak memory."""
    from emr.config import Settings
    from emr.hub.app import build_hub
    from emr.hub.bulk import import_files

    hub = build_hub(Settings(database_url=url))
    started, cpu = time.perf_counter(), time.process_time()
    result = import_files(hub, [Path(path)], source=SOURCE, workers=2)
    seconds, loader_cpu = time.perf_counter() - started, time.process_time() - cpu
    hub.engine.dispose()
    # process_time is this process's own CPU (its threads included, its checking workers not):
    # the work no worker can take off the one process that loads.
    return {"seconds": seconds, "created": result.created, "peak_mb": peak_rss_mb(), "loader_cpu": loader_cpu}


def pool_checking_rate(path: str, workers: int) -> float:
    """In a fresh process: lines per second that the import's own checking pool (``workers``
    processes, every line checked, nothing prepared or written) gets through the file."""
    from emr.hub.bulk import Preparation, Preparing, scan

    found = scan([Path(path)], SOURCE)
    never_stamped = datetime(2025, 1, 1, tzinfo=timezone.utc)  # checking only: nothing is stamped
    with Preparation(found, Preparing(SOURCE, found.places, never_stamped), workers=workers,
                     check_only=True) as preparation:
        started = time.perf_counter()
        refused = sum(len(work.problems) for work in preparation.works())
        seconds = time.perf_counter() - started
    if refused:
        raise RuntimeError(f"B3's own file has {refused} refused lines")
    return found.good / seconds


def read_resources(path: Path) -> list[dict]:
    with path.open("rb") as handle:
        return [orjson.loads(line) for line in handle if line.strip()]


def largest_tables(url: str, count: int) -> list[tuple[str, float]]:
    """SQLite only: the tables and indexes taking most room, in bytes per resource."""
    if not url.startswith("sqlite"):
        return []
    import sqlite3

    with closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as conn:
        try:
            rows = conn.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name ORDER BY 2 DESC LIMIT 8").fetchall()
        except sqlite3.OperationalError:  # a SQLite built without the dbstat table
            return []
    return [(name, size / count) for name, size in rows]


def disk_bytes(url: str) -> int:
    from emr.hub.db import make_engine

    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            if url.startswith("sqlite"):
                conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
                return Path(url.removeprefix("sqlite:///")).stat().st_size
            return int(conn.execute(text(
                "SELECT sum(pg_total_relation_size(quote_ident(schemaname) || '.' || quote_ident(tablename))) "
                "FROM pg_tables WHERE schemaname = current_schema()")).scalar_one())
    finally:
        engine.dispose()


def table_rows(url: str) -> dict[str, tuple[list[str], list[tuple]]]:
    """Every row of every hub table as stored (resource JSON still packed): (column names,
    rows) by table name."""
    from emr.hub.db import make_engine

    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return {t.name: _stored_rows(conn, t) for t in SQLModel.metadata.sorted_tables}
    finally:
        engine.dispose()


def _stored_rows(conn, table) -> tuple[list[str], list[tuple]]:
    columns = [c.name for c in table.columns]
    names = ", ".join(f'"{c}"' for c in columns)
    return columns, [tuple(r) for r in conn.exec_driver_sql(f'SELECT {names} FROM "{table.name}"')]


def write_rows(url: str, rows: dict[str, tuple[list[str], list[tuple]]]) -> float:
    """Seconds to write ``rows`` into a fresh database of the hub's schema, the fastest plain way."""
    from emr.hub.db import create_schema, make_engine

    engine = make_engine(url)
    create_schema(engine)
    engine.dispose()
    if url.startswith("sqlite"):
        return _sqlite_write(url.removeprefix("sqlite:///"), rows)
    return _postgres_copy(schema_of(url) or "public", rows)


def _sqlite_write(path: str, rows: dict[str, tuple[list[str], list[tuple]]]) -> float:
    import sqlite3

    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    started = time.perf_counter()
    conn.execute("BEGIN")
    for table, (columns, values) in rows.items():
        marks = ", ".join("?" * len(columns))
        conn.executemany(f'INSERT INTO "{table}" ({", ".join(columns)}) VALUES ({marks})', values)
    conn.execute("COMMIT")
    seconds = time.perf_counter() - started
    conn.close()
    return seconds


def _postgres_copy(schema: str, rows: dict[str, tuple[list[str], list[tuple]]]) -> float:
    import psycopg

    with psycopg.connect(PG_DSN, options=f"-csearch_path={schema}") as conn:
        started = time.perf_counter()
        with conn.cursor() as cursor:
            for table, (columns, values) in rows.items():
                with cursor.copy(f'COPY "{table}" ({", ".join(columns)}) FROM STDIN') as copy:
                    for row in values:
                        copy.write_row(row)
        conn.commit()
        return time.perf_counter() - started
