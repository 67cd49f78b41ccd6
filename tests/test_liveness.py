"""Pooled PostgreSQL connections: a dead one is not handed out after idling, a warm one is not asked."""

from __future__ import annotations

import psycopg
import pytest
from sqlalchemy import exc, text

from emr.hub import liveness
from tests.conftest import PG_DSN

pytestmark = pytest.mark.parametrize("database_url", ["postgres"], indirect=True)


def backend_of(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(text("SELECT pg_backend_pid()")).scalar_one()


def end_session(pid: int) -> None:
    """What a server restart or an administrator does to a session."""
    with psycopg.connect(PG_DSN, autocommit=True) as admin:
        assert admin.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone()[0]


def counting_pings(engine, monkeypatch) -> list[int]:
    pings: list[int] = []
    ping = engine.dialect.do_ping
    monkeypatch.setattr(engine.dialect, "do_ping", lambda dbapi: pings.append(1) or ping(dbapi))
    return pings


def test_a_connection_that_died_while_idle_is_replaced_before_use(engine, monkeypatch):
    monkeypatch.setattr(liveness, "PING_AFTER", 0.0)  # every connection back in the pool counts as idle
    first = backend_of(engine)
    end_session(first)
    second = backend_of(engine)  # no error: the dead one was found out on checkout
    assert second != first


def test_a_connection_used_a_moment_ago_is_handed_out_without_asking_the_server(engine, monkeypatch):
    pings = counting_pings(engine, monkeypatch)
    assert backend_of(engine) == backend_of(engine) == backend_of(engine)  # last in, first out: the warm one
    assert pings == []
    monkeypatch.setattr(liveness, "PING_AFTER", 0.0)
    backend_of(engine)
    assert pings == [1]


def test_a_connection_killed_just_after_use_fails_one_statement_and_the_pool_starts_afresh(engine):
    """The price of not asking every time: the request that finds it dead fails, the next is served."""
    first = backend_of(engine)
    end_session(first)
    with pytest.raises(exc.OperationalError), engine.connect() as conn:
        conn.execute(text("SELECT 1"))
    assert backend_of(engine) != first
