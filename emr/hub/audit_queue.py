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
took about 10 ms, and SQLite runs one inside whichever commit finds the WAL over 1,000
pages: with about 40 pages per entry, one request in 25 paid it. These transactions
skip that automatic checkpoint; the queue runs one on a thread of its own instead,
after every ``CHECKPOINT_EVERY`` entries, so no response waits for it. Data writes
have their own background checkpoints (``emr.hub.walcheckpoint``).
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

from emr.hub import access
from emr.hub.batchwrite import BatchWriter
from emr.hub.db import BEFORE_COMMIT, TRANSACTION_STATE, write_transaction
from emr.hub.store import Store, stamp


# Audit entries between background checkpoints: an entry adds about 40 pages to the WAL
# (measured on B2's entries), so this is about SQLite's own 1,000-page interval.
CHECKPOINT_EVERY = 25


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
    _unchecked: int = 0  # entries committed without a checkpoint since the last one began
    _checkpointing: bool = False

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
            BatchWriter(conn, self.store, batch[-1].now).write(events)
        if not durable and self.engine.dialect.name == "sqlite":
            self._count_unchecked(len(events))

    def _count_unchecked(self, entries: int) -> None:
        """Start a checkpoint in the background once enough entries wait in the WAL."""
        with self._queue_lock:
            self._unchecked += entries
            if self._unchecked < CHECKPOINT_EVERY or self._checkpointing:
                return
            self._unchecked, self._checkpointing = 0, True
        threading.Thread(target=self._checkpoint, name="emr-audit-checkpoint", daemon=True).start()

    def _checkpoint(self) -> None:
        """Copy the WAL into the database while entries keep coming, then the few pages added
        meanwhile between two commits, so the next commit can start the WAL afresh."""
        try:
            with self.engine.connect() as conn:  # a pooled connection: synchronous=FULL, as checkpoints need
                driver = conn.connection.driver_connection
                driver.execute("PRAGMA wal_checkpoint(PASSIVE)")
                with self._writer:
                    driver.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except Exception:  # noqa: BLE001, S110 - the next checkpoint, or a data write's own, catches up
            pass
        finally:
            self._checkpointing = False


@contextmanager
def _transaction(engine: Engine, *, durable: bool) -> Iterator[Connection]:
    """A write transaction; unless ``durable``, one whose commit does not wait for the disk."""
    if durable or engine.dialect.name != "sqlite":
        with write_transaction(engine) as conn:
            if not durable:  # PostgreSQL: for this transaction only
                conn.exec_driver_sql("SET LOCAL synchronous_commit TO OFF")
            yield conn
        return
    with engine.connect() as conn, _unsynced(conn):
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
    """``synchronous=NORMAL`` and no automatic checkpoint on this SQLite connection (set outside a
    transaction: SQLite refuses inside one), then its own settings back before it returns to the
    pool; a connection whose settings cannot be restored is never used again."""
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


# The queue checkpoints in the background instead of in a request's commit.
_UNSYNCED = {"synchronous": 1, "wal_autocheckpoint": 0}  # 1: NORMAL
