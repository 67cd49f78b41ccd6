"""Shared fixtures: a fresh database per test (SQLite file, or a PostgreSQL schema), the real app.

PostgreSQL tests run against the server on 127.0.0.1:5432 (trust auth, database
``test``); each test gets its own schema, dropped afterwards. Without a server they
are skipped with the reason shown — except under CI, where a missing server fails.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone

import psycopg
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from sqlalchemy.engine import Engine

from emr.config import Settings
from emr.hub.app import create_app, wall_clock
from emr.hub.db import create_schema, make_engine
from tests.facility_clients import ActingFacility, test_clients

PG_DSN = os.environ.get("EMR_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")

settings.register_profile("ci", max_examples=60, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
settings.register_profile("dev", max_examples=25, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
settings.load_profile("ci" if os.environ.get("CI") else os.environ.get("HYPOTHESIS_PROFILE", "dev"))


def _postgres_available() -> str | None:
    try:
        with psycopg.connect(PG_DSN, connect_timeout=3):
            return None
    except psycopg.Error as exc:
        return f"no PostgreSQL at {PG_DSN}: {exc}".splitlines()[0]


@pytest.fixture(scope="session")
def postgres_problem() -> str | None:
    return _postgres_available()


@pytest.fixture
def postgres_url(postgres_problem: str | None) -> Iterator[str]:
    """A SQLAlchemy URL whose connections use a schema of their own."""
    if postgres_problem:
        if os.environ.get("CI"):
            pytest.fail(f"CI needs PostgreSQL: {postgres_problem}")
        pytest.skip(postgres_problem)
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    base = PG_DSN.replace("postgresql://", "postgresql+psycopg://", 1)
    yield f"{base}?options=-csearch_path%3D{schema}"
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'hub.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'hub.db'}"


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    """An engine on an empty hub schema, for tests of the storage layer without the app."""
    engine = make_engine(database_url)
    create_schema(engine)
    yield engine
    engine.dispose()


class FixedClock:
    """A clock the test moves by hand."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(datetime(2025, 10, 1, 8, 0, tzinfo=timezone.utc))


def make_client(url: str, clock: FixedClock | None = None, *, auth: bool = True) -> TestClient:
    """The real hub with authentication on: every facility is a registered client, and the
    client sends each request with the token of the facility it speaks for
    (``tests.facility_clients.ActingFacility``). ``auth=False`` serves it open, as
    ``emr serve --no-auth`` does, for tests of what access rules would only obscure."""
    settings_ = Settings(database_url=url, base_url="http://testserver/fhir", auth_required=auth)
    now = clock or wall_clock
    app = create_app(settings_, clock=now, clients=test_clients())
    client = TestClient(app, raise_server_exceptions=False)
    if auth:
        client.auth = ActingFacility(fhir_base=settings_.base_url, clock=now)
    return client


@pytest.fixture
def client(database_url: str) -> Iterator[TestClient]:
    with make_client(database_url) as c:
        yield c
        c.app.state.hub.engine.dispose()


@pytest.fixture
def sqlite_client(sqlite_url: str) -> Iterator[TestClient]:
    with make_client(sqlite_url) as c:
        yield c
        c.app.state.hub.engine.dispose()
