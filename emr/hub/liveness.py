"""Knowing a pooled PostgreSQL connection still works before handing it out: asked only after idleness.

A connection in the pool can die without the hub noticing: the server restarted, an
administrator ended the session, a proxy or ``idle_session_timeout`` closed it. Asking
the server on every checkout (SQLAlchemy's ``pool_pre_ping``) catches all of these, at
one round trip per checkout; a ``$check-reuse`` checks out twice (its reads, then its
audit entry), so two of its round trips were these questions, about a connection that
had answered a millisecond before.

Here the question is asked only of a connection that has sat in the pool for
``PING_AFTER`` seconds or more. A restart takes longer than that, and every way a
connection is closed for idleness waits far longer, so a dead connection is still
caught before use. What is given up: a connection killed less than ``PING_AFTER``
after it was last used fails the one statement that finds it dead; SQLAlchemy then
sees a disconnect and discards every connection of the pool opened before it, so the
requests after it get fresh ones.

The pool is also last in, first out: a quiet hub keeps reusing its few warm
connections (with their prepared statements) and lets the rest go idle, where they are
asked before use.
"""

from __future__ import annotations

import time

from sqlalchemy import event, exc
from sqlalchemy.engine import Engine

PING_AFTER = 1.0  # seconds in the pool after which a connection is asked before use
_CHECKED_IN = "emr.checked_in"  # monotonic time the connection last went back to the pool


def attach(engine: Engine) -> None:
    """Ask ``engine``'s pooled connections whether they are alive when they have been idle."""
    dialect = engine.dialect

    @event.listens_for(engine, "checkin")
    def _note(_dbapi_connection, record) -> None:  # type: ignore[no-untyped-def]
        record.info[_CHECKED_IN] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _ask_if_idle(dbapi_connection, record, _proxy) -> None:  # type: ignore[no-untyped-def]
        since = record.info.get(_CHECKED_IN)  # None: opened for this checkout
        if since is None or time.monotonic() - since < PING_AFTER:
            return
        try:
            alive = dialect.do_ping(dbapi_connection)
        except dialect.loaded_dbapi.Error as error:
            if not dialect.is_disconnect(error, dbapi_connection, None):
                raise
            alive = False
        if not alive:  # the pool opens a new connection and drops every older one
            raise exc.InvalidatePoolError("a pooled connection no longer answers")
