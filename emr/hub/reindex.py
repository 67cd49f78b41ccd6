"""Rebuilding the search index tables from the stored resources.

The index tables hold nothing of their own: every row is derived from a current
resource's JSON by ``searchparams``. When the derivation changes (a parameter added, two
parameters found to read the same element), a database written before the change keeps
its old rows; ``emr reindex`` derives them again. The tables are dropped and created
afresh, so rows and columns an earlier hub wrote go with them, and their lookup indexes
are built once the rows are in, which is cheaper than keeping them in step row by row.
Its statistics for the query planner are refreshed at the end.

All of it is one transaction: a failure leaves the old tables as they were. Searches
wait while it runs (SQLite serves the old rows until the commit; PostgreSQL holds the
tables locked), so it is meant for a quiet hub.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import orjson
from sqlalchemy import Table, select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.schema import CreateTable, DropTable

from emr.hub.batchwrite import CachedResolver
from emr.hub.db import INDEX_TABLES, ReferenceIndex, write_transaction
from emr.hub.plannerstats import analyze
from emr.hub.rowcopy import write_rows
from emr.hub.searchparams import extract
from emr.hub.store import R, index_rows, reference_row

BATCH = 2000  # resources read and indexed at a time


@dataclass
class ReindexResult:
    resources: int = 0
    rows: Counter = field(default_factory=Counter)  # by table name


def reindex(engine: Engine) -> ReindexResult:
    """Drop every search index row and derive them again from the current resources.

    A logical reference (a subject named only by national ID) is resolved in a second pass,
    once every resource's identifiers are indexed, so that it may name a resource stored
    after it; the second pass reads the resources again rather than holding what the
    first found, so memory stays flat however large the hub.
    """
    result = ReindexResult()
    with write_transaction(engine) as conn:
        tables = [model.__table__ for model in INDEX_TABLES]
        _recreate_without_indexes(conn, tables)
        logical = 0
        for batch in _current_resources(conn):
            logical += _index(conn, batch, result)
        for table in tables:  # before resolving: it looks identifiers up
            for index in sorted(table.indexes, key=lambda i: i.name or ""):
                index.create(conn)
        if logical:
            resolve = CachedResolver(conn)
            for batch in _current_resources(conn):
                _resolve(conn, batch, resolve, result)
    analyze(engine)
    return result


def _recreate_without_indexes(conn: Connection, tables: list[Table]) -> None:
    for table in tables:
        conn.execute(DropTable(table, if_exists=True))
        conn.execute(CreateTable(table))


def _current_resources(conn: Connection) -> Iterator[list[tuple[int, dict]]]:
    """Every current resource as (pk, resource), a batch at a time, in pk order."""
    last = 0
    while True:
        rows = conn.execute(select(R.c.pk, R.c.content).where(R.c.pk > last, R.c.deleted.is_(False))
                            .order_by(R.c.pk).limit(BATCH)).all()
        if not rows:
            return
        yield [(pk, orjson.loads(content)) for pk, content in rows]
        last = rows[-1].pk


def _index(conn: Connection, batch: list[tuple[int, dict]], result: ReindexResult) -> int:
    """Write a batch's rows, logical references left unresolved; how many there were."""
    per_table: dict[Table, list[dict]] = {}
    logical = 0
    for pk, resource in batch:
        found = extract(resource)
        logical += len(found.logical_references)
        for model, rows in index_rows(pk, resource, lambda *_: None, found).items():
            per_table.setdefault(model.__table__, []).extend(rows)
    for table, rows in per_table.items():
        write_rows(conn, table, rows)
        result.rows[table.name] += len(rows)
    result.resources += len(batch)
    return logical


def _resolve(conn: Connection, batch: list[tuple[int, dict]], resolve: CachedResolver,
             result: ReindexResult) -> None:
    rows = [reference_row(pk, resource["resourceType"], param, target_type, target_id)
            for pk, resource in batch
            for param, target_type, system, value in extract(resource).logical_references
            if (target_id := resolve(target_type, system, value))]
    write_rows(conn, ReferenceIndex.__table__, rows)
    result.rows[ReferenceIndex.__tablename__] += len(rows)
