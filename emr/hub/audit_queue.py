"""Committing the audit entries of finished requests: several requests' entries in one transaction.

A request's response waits until its AuditEvents are committed (``emr.hub.security``).
Requests that finish while another request's entries are being committed queue
theirs, and the next writer commits everything queued in one transaction (group
commit): one writer at a time instead of every request contending for SQLite's
write lock, and one commit for many requests. Each request still waits for its own
entries' commit, and a batch that fails is retried one request at a time, so one
bad entry fails only its own request.

Durability. Data changes and the audit entries written with them commit with
``synchronous=FULL`` (``emr.hub.db``). The entries of requests that succeeded
without changing anything — reads, searches, ``$check-reuse``, CDS Hooks — are
committed on SQLite with ``synchronous=NORMAL`` for that one transaction: in WAL
mode the commit is in the operating system's hands before the response leaves, so
a crash or kill of the hub loses none of them; only a power cut or an operating-system
crash can lose the last few reads' entries (never a data change, and never a
refusal's or failure's entry, which keep their own fsync). The fsync this saves was
half the time of a ``$check-reuse``. PostgreSQL commits them with ``synchronous_commit``
off for that transaction, the same bargain: the server has the entries before the hub
answers, and only a crash of the database server or its machine can lose the last
reads' entries (at most 0.6 s of them, three times ``wal_writer_delay``), never
leaving the database inconsistent.

Checkpoints. A checkpoint (copying the WAL into the database file, with two fsyncs)
took about 10 ms, and SQLite would run one inside whichever commit found the WAL over
1,000 pages: with about 40 pages per entry, one request in 25 paid it. These commits
count as write transactions for the hub's background checkpoints (``emr.hub.walcheckpoint``),
as data writes do, so no response waits for one, and the WAL stays bounded however
closely entries follow each other.
"""

from __future__ import annotations

import sqlite3
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.engine import Connection, Engine

from emr.hub import access, walcheckpoint
from emr.hub.batchwrite import BatchWriter
from emr.hub.db import BEFORE_COMMIT, TRANSACTION_STATE, set_for_commit, write_transaction
from emr.hub.store import Store, stamp


@dataclass
class _Ticket:
    """One request's entries, waiting for their commit."""

    events: list[dict]
    now: datetime
    durable: bool  # needs its own fsync (a refusal's or a failure's entry)
    done: bool = False
    error: Exception | None = None


@dataclass
class AuditQueue:
    """The hub's writer of finished requests' AuditEvents (one per hub, shared by its request threads)."""

    engine: Engine
    store: Store
    _queued: list[_Ticket] = field(default_factory=list)
    _queue_lock: threading.Lock = field(default_factory=threading.Lock)
    _writer: threading.Lock = field(default_factory=threading.Lock)  # held by the one committing

    def record(self, events: list[dict], *, now: datetime, durable: bool) -> None:
        """Commit ``events`` (hub-built AuditEvents) and return once they are; raise if they could not be."""
        if not events:
            return
        ticket = _Ticket(events, now, durable)
        with self._queue_lock:
            self._queued.append(ticket)
        with self._writer:
            if not ticket.done:  # not committed by the writer before us: commit all that waits
                with self._queue_lock:
                    batch, self._queued = self._queued, []
                self._commit(batch)
        if ticket.error is not None:
            raise ticket.error

    def _commit(self, batch: list[_Ticket]) -> None:
        try:
            self._write(batch)
        except Exception as exc:  # noqa: BLE001 - told to each waiting request, which answers 500
            if len(batch) > 1:
                for ticket in batch:
                    self._commit([ticket])
                return
            batch[0].error = exc
        for ticket in batch:
            ticket.done = True

    def _write(self, batch: list[_Ticket]) -> None:
        events = []
        for ticket in batch:
            for event in ticket.events:
                event = {**event, "id": str(uuid.uuid4())}
                stamp(event, version=1, now=ticket.now)
                events.append(event)
        durable = any(t.durable for t in batch)
        with _transaction(self.engine, durable=durable) as conn, access.as_hub():
            BatchWriter(conn, self.store, batch[-1].now, resolve=_named_by_id).write(events)


def _named_by_id(_target_type: str, _system: str, _value: str) -> None:
    """No lookup for an entry's logical references: an entry names every Patient it touched by
    id as well as by national ID (``audit._entities``), so searches by ``patient`` or ``entity``
    find it through those, and a lookup would cost each entry a query."""
    return None


@contextmanager
def _transaction(engine: Engine, *, durable: bool) -> Iterator[Connection]:
    """A write transaction; unless ``durable``, one whose commit does not wait for the disk."""
    if durable or engine.dialect.name != "sqlite":
        with write_transaction(engine) as conn:
            if not durable:  # PostgreSQL: for this transaction only, sent with its rows
                set_for_commit(conn, "SET LOCAL synchronous_commit TO OFF")
            yield conn
        return
    with walcheckpoint.writing(engine), engine.connect() as conn, _unsynced(conn):
        try:
            with conn.execution_options(sqlite_begin="IMMEDIATE").begin():
                yield conn
                for work in conn.info.pop(BEFORE_COMMIT, []):  # as write_transaction does
                    work(conn)
        finally:
            conn.info.pop(BEFORE_COMMIT, None)
            conn.info.pop(TRANSACTION_STATE, None)


@contextmanager
def _unsynced(conn: Connection) -> Iterator[None]:
    """``synchronous=NORMAL`` on this SQLite connection (set outside a transaction: SQLite refuses
    inside one), then its own setting back before it returns to the pool; a connection whose
    setting cannot be restored is never used again."""
    driver = conn.connection.driver_connection
    saved = {name: driver.execute(f"PRAGMA {name}").fetchone()[0] for name in _UNSYNCED}
    try:
        for name, value in _UNSYNCED.items():
            driver.execute(f"PRAGMA {name}={value}")
        yield
    finally:
        try:
            for name, value in saved.items():
                driver.execute(f"PRAGMA {name}={int(value)}")
        except sqlite3.Error:
            conn.invalidate()


_UNSYNCED = {"synchronous": 1}  # NORMAL
