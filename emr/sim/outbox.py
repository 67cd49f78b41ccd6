"""Store-and-forward: a hospital's durable outbox and the courier that empties it.

Everything a hospital publishes is first written to the ``outbox`` table of its own
SQLite file, then sent. A message leaves the table's pending state only when the hub
acknowledged it (2xx) or refused it for good (a 4xx other than 408/429: parked as
``dead`` for an operator, never silently dropped). When the hub is unreachable, times
out or answers 408/429/5xx, the courier waits and tries again with exponential
backoff and jitter, honouring ``Retry-After``. Messages go strictly in the order they
were written: the oldest pending message blocks the ones behind it, so after an
outage the backlog drains in order.

Resending is safe because every entry of every Bundle is a conditional create on the
facility's own identifier: the hub stores a message once however often it arrives.

The file runs in WAL mode with ``synchronous=NORMAL``: a committed message survives the
hospital process being killed (it is in the WAL before the commit returns); only a
power cut can lose the last few. Times are simulated instants passed in by the caller.
"""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Literal

import orjson
from sqlalchemy import Column, MetaData, Text
from sqlalchemy.dialects.sqlite import dialect as sqlite_dialect
from sqlalchemy.schema import CreateIndex, CreateTable
from sqlmodel import Field, SQLModel

from emr.sim.clock import SimClock

# The courier's timing (assumptions: typical interface-engine settings, not a standard).
FIRST_RETRY = timedelta(seconds=30)
BACKOFF_FACTOR = 2.0
MAX_RETRY_DELAY = timedelta(minutes=30)
MESSAGE_LIFETIME = timedelta(days=30)  # after this a failing message is parked as dead


class _OutboxBase(SQLModel):
    metadata = MetaData()  # the hospital's file, never the hub's schema


class OutboxRow(_OutboxBase, table=True):
    __tablename__ = "outbox"

    seq: int | None = Field(default=None, primary_key=True)
    key: str = Field(max_length=200, unique=True)
    created_at: str = Field(max_length=40)
    state: str = Field(default="pending", max_length=16, index=True)  # pending | delivered | dead
    attempts: int = 0
    next_attempt_at: str | None = Field(default=None, max_length=40)
    delivered_at: str | None = Field(default=None, max_length=40)
    last_error: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    body: str = Field(sa_column=Column(Text, nullable=False))


T = OutboxRow.__table__
# ``OutboxRow``'s DDL, compiled once: building an engine per hospital file only to
# create one table cost more than the rest of opening it.
_SCHEMA = tuple(str(ddl.compile(dialect=sqlite_dialect())) for ddl in
                (CreateTable(T, if_not_exists=True), *(CreateIndex(i, if_not_exists=True) for i in T.indexes)))


@dataclass(frozen=True)
class Message:
    seq: int
    key: str
    created_at: datetime
    attempts: int
    next_attempt_at: datetime | None
    body: dict


@dataclass(frozen=True)
class Attempt:
    """What one send came to."""

    outcome: Literal["delivered", "retry", "rejected"]
    error: str = ""
    retry_after: timedelta | None = None


class Outbox:
    """The ``outbox`` table of one hospital's SQLite file.

    The schema is ``OutboxRow``'s; the statements run on one connection held open for
    the outbox's life (a simulated hospital writes and sends a message at every visit,
    and a pooled connection and a compiled query per step cost more than the step). Each
    write is its own transaction, committed before the call returns.
    """

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, isolation_level=None)  # autocommit: one statement, one transaction
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        for statement in _SCHEMA:
            self._db.execute(statement)

    def put(self, key: str, body: dict, *, at: datetime) -> bool:
        """Write a message; a key already in the outbox is left as it is (False)."""
        cursor = self._db.execute(
            "INSERT INTO outbox (key, created_at, state, attempts, last_error, body) "
            "VALUES (?, ?, 'pending', 0, '', ?) ON CONFLICT DO NOTHING",
            (key, _stamp(at), orjson.dumps(body).decode()))
        return cursor.rowcount == 1

    def head(self) -> Message | None:
        """The oldest pending message: the only one the courier may send next."""
        row = self._db.execute(
            "SELECT seq, key, created_at, attempts, next_attempt_at, body FROM outbox "
            "WHERE state = 'pending' ORDER BY seq LIMIT 1").fetchone()
        if row is None:
            return None
        seq, key, created_at, attempts, next_attempt_at, body = row
        return Message(seq, key, _parse(created_at), attempts,
                       _parse(next_attempt_at) if next_attempt_at else None, orjson.loads(body))

    def delivered(self, seq: int, *, at: datetime) -> None:
        self._db.execute("UPDATE outbox SET state = 'delivered', attempts = attempts + 1, delivered_at = ?, "
                         "next_attempt_at = NULL WHERE seq = ?", (_stamp(at), seq))

    def failed(self, seq: int, *, error: str, retry_at: datetime) -> None:
        self._db.execute("UPDATE outbox SET attempts = attempts + 1, last_error = ?, next_attempt_at = ? "
                         "WHERE seq = ?", (error[:500], _stamp(retry_at), seq))

    def dead(self, seq: int, *, error: str) -> None:
        self._db.execute("UPDATE outbox SET state = 'dead', attempts = attempts + 1, last_error = ?, "
                         "next_attempt_at = NULL WHERE seq = ?", (error[:500], seq))

    def counts(self) -> dict[str, int]:
        """Messages by state, and every send attempt made."""
        by_state = dict(self._db.execute("SELECT state, count(*) FROM outbox GROUP BY state").fetchall())
        attempts = self._db.execute("SELECT coalesce(sum(attempts), 0) FROM outbox").fetchone()[0]
        return {"messages": sum(by_state.values()), "delivered": by_state.get("delivered", 0),
                "pending": by_state.get("pending", 0), "dead": by_state.get("dead", 0), "attempts": attempts}

    def bodies(self, state: str = "delivered") -> list[tuple[str, dict]]:
        """(key, body) of every message in ``state``, oldest first."""
        rows = self._db.execute("SELECT key, body FROM outbox WHERE state = ? ORDER BY seq", (state,)).fetchall()
        return [(key, orjson.loads(body)) for key, body in rows]

    def close(self) -> None:
        self._db.close()


@dataclass(frozen=True)
class Backoff:
    first: timedelta = FIRST_RETRY
    factor: float = BACKOFF_FACTOR
    cap: timedelta = MAX_RETRY_DELAY
    lifetime: timedelta = MESSAGE_LIFETIME

    def delay(self, attempt: int, rng: random.Random) -> timedelta:
        """The wait before try ``attempt + 1``: half of the capped exponential step is
        fixed, the other half random ("equal jitter"), so hospitals that failed together
        do not all come back at the same second, and the wait never shrinks to nothing."""
        step = min(self.cap.total_seconds(), self.first.total_seconds() * self.factor ** min(attempt - 1, 60))
        return timedelta(seconds=step / 2 + step / 2 * rng.random())


@dataclass
class Courier:
    """Sends one outbox's messages in order, on the simulated clock."""

    outbox: Outbox
    send: Callable[[Message], Attempt]
    clock: SimClock
    rng: random.Random
    backoff: Backoff = field(default_factory=Backoff)
    max_backlog: int = 0
    _backlog: int = 0
    _wake_at: datetime | None = None

    def publish(self, key: str, body: dict) -> None:
        if self.outbox.put(key, body, at=self.clock.now):
            self._backlog += 1
            self.max_backlog = max(self.max_backlog, self._backlog)
        self.drain()

    def drain(self) -> None:
        """Send pending messages oldest first until one fails or is not yet due."""
        while (message := self.outbox.head()) is not None:
            now = self.clock.now
            if message.next_attempt_at and message.next_attempt_at > now:
                self._wake(message.next_attempt_at)
                return
            attempt = self.send(message)
            if attempt.outcome == "delivered":
                self.outbox.delivered(message.seq, at=now)
            elif attempt.outcome == "rejected" or now - message.created_at >= self.backoff.lifetime:
                self.outbox.dead(message.seq, error=attempt.error)
            else:
                wait = max(self.backoff.delay(message.attempts + 1, self.rng), attempt.retry_after or timedelta(0))
                self.outbox.failed(message.seq, error=attempt.error, retry_at=now + wait)
                self._wake(now + wait)
                return
            self._backlog -= 1

    def _wake(self, at: datetime) -> None:
        if self._wake_at is not None and self._wake_at <= at:
            return
        self._wake_at = at
        self.clock.schedule(at, lambda: self._woken(at))

    def _woken(self, at: datetime) -> None:
        if self._wake_at != at:
            return  # superseded by an earlier wake-up
        self._wake_at = None
        self.drain()


def _stamp(at: datetime) -> str:
    return at.astimezone(timezone.utc).isoformat()


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text)
