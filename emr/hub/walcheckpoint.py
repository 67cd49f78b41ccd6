"""SQLite's WAL copied into the database file on a thread of its own, not inside a request.

In WAL mode SQLite runs a checkpoint inside whichever commit finds the log over 1,000
pages: it copies every page the log holds into the database file and syncs it. On a
hub of a million results that commit took up to 200 ms, and one visit Bundle in ten
paid it: B1's p99 was eight times its p50. Measured in process on 200,000 resources,
with the automatic checkpoint off: p99 87 -> 21 ms, p50 unchanged.

So the hub's SQLite connections turn the automatic checkpoint off (``db.make_engine``)
and every ``CHECKPOINT_EVERY`` write transactions ``Checkpointer`` starts a PASSIVE
checkpoint on a background thread: it copies what it can without waiting for readers or
writers, who go on meanwhile. Durability is unchanged: a commit is in the synced log
before the hub answers, whether or not it has reached the database file yet. SQLite
also checkpoints when the last connection to the database closes.

Starting the log over. A writer writes from the start of the log again only if, when its
transaction began, every frame of the log had been copied. Writes that follow each other
without a pause never leave a PASSIVE checkpoint that moment: each finds frames committed
while it ran, and the log grew by the whole of every write (500 back-to-back creates: a
76 MiB log). So when a PASSIVE checkpoint has copied a log of ``RESTART_PAGES`` or more in
full, the checkpointer takes a writer's turn (``writerqueue``), so this engine's new write
transactions queue behind it, and runs a RESTART checkpoint: it copies the few frames
committed since the PASSIVE one and starts the log over. On 2,000 back-to-back creates one write in 30 was held back, by about 2 ms at the median, and
the log stayed under 5.5 MiB. Past ``RESTART_WAIT_MS`` (its busy timeout) SQLite gives the
RESTART up for a PASSIVE checkpoint, so writers are never held back much longer; the next
checkpoint tries again. A log that a reader's snapshot still needs cannot start over, so it
holds no writer back. ``journal_size_limit`` (``WAL_SIZE_LIMIT``) cuts a log file left
larger than that (by an import, say) back to it when the log starts over.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.engine import Connection, Engine

from emr.hub.commitcount import EveryNCommits
from emr.hub.writerqueue import WriterQueue

# Write transactions between background checkpoints: a visit Bundle adds about 100 pages
# to the log and a single write about 40, so this is near SQLite's own 1,000 pages.
CHECKPOINT_EVERY = 10
# A log this long after a PASSIVE checkpoint is started over (4 MiB of 4 KiB pages).
RESTART_PAGES = 1_000
# How long the RESTART checkpoint waits for the write under way and for readers (its busy timeout).
RESTART_WAIT_MS = 100
# The size a log file is cut back to when it starts over (``PRAGMA journal_size_limit``).
WAL_SIZE_LIMIT = 8 * 1024 * 1024


@dataclass
class Checkpointer:
    """Starts a background checkpoint after every ``CHECKPOINT_EVERY`` commits of one engine."""

    engine: Engine
    _writers: WriterQueue = field(default_factory=WriterQueue)
    _every: EveryNCommits = field(init=False)

    def __post_init__(self) -> None:
        self._every = EveryNCommits(CHECKPOINT_EVERY, self._checkpoint, "emr-wal-checkpoint")

    @contextmanager
    def writing(self) -> Iterator[None]:
        """Around one write transaction: in turn with this process's other writers and the
        log's restart (``writerqueue``), counted once it commits."""
        with self._writers.turn():
            yield
        self._every.committed()

    def _checkpoint(self) -> None:
        """A failed checkpoint is left to the next one: the log only grows meanwhile."""
        if not Path(self.engine.url.database or "").exists():
            return  # gone (a finished test's folder): connecting would create it anew
        with self.engine.connect() as conn:
            _, log, copied = conn.connection.driver_connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            if log >= RESTART_PAGES and copied == log:  # short of it, a reader still needs the log
                self._restart(conn)

    def _restart(self, conn: Connection) -> None:
        """Copy the rest of the log and start it over, taking a writer's turn so that this
        engine's new write transactions wait behind it."""
        with self._writers.turn(), _busy_timeout(conn, RESTART_WAIT_MS):
            conn.connection.driver_connection.execute("PRAGMA wal_checkpoint(RESTART)")


@contextmanager
def _busy_timeout(conn: Connection, milliseconds: int) -> Iterator[None]:
    """A shorter busy timeout on ``conn`` for a while; a connection whose own cannot be restored is dropped."""
    driver = conn.connection.driver_connection
    saved = driver.execute("PRAGMA busy_timeout").fetchone()[0]
    driver.execute(f"PRAGMA busy_timeout={milliseconds}")
    try:
        yield
    finally:
        try:
            driver.execute(f"PRAGMA busy_timeout={int(saved)}")
        except sqlite3.Error:
            conn.invalidate()


def checkpointer_of(engine: Engine) -> Checkpointer | None:
    return getattr(engine, "emr_checkpointer", None)


@contextmanager
def writing(engine: Engine) -> Iterator[None]:
    """Around one write transaction on ``engine`` (``Checkpointer.writing``; nothing without a checkpointer)."""
    checkpointer = checkpointer_of(engine)
    if checkpointer is None:
        yield
        return
    with checkpointer.writing():
        yield


def attach(engine: Engine) -> None:
    engine.emr_checkpointer = Checkpointer(engine)  # type: ignore[attr-defined]
