"""PostgreSQL's planner statistics follow the hub's writes, even with autovacuum off."""

from __future__ import annotations

import time

import orjson
from sqlalchemy import text

from emr.fhir.builders import patient
from emr.hub import plannerstats
from emr.hub.db import create_schema, make_engine
from tests.conftest import make_client

HDR = {"Content-Type": "application/fhir+json"}
ANALYZED = text("SELECT relname, last_analyze IS NOT NULL OR last_autoanalyze IS NOT NULL FROM pg_stat_user_tables "
                "WHERE schemaname = current_schema() AND relname IN ('resource', 'ix_token', 'result_fact')")


def register(client, n: int) -> None:
    body = patient(facility_code="27001", mrn=f"PS-{n}", national_id=None, family="Đỗ", given="Minh",
                   gender="male", birth_date="1980")
    assert client.post("/fhir/Patient", content=orjson.dumps(body), headers=HDR).status_code == 201


def test_the_tables_a_hub_writes_to_are_analyzed_as_they_grow(postgres_url):
    with make_client(postgres_url) as client:
        engine = client.app.state.hub.engine
        analyzed: dict[str, bool] = {}
        deadline, n = time.monotonic() + 30, 0
        while time.monotonic() < deadline:  # statistics reach pg_stat_user_tables within a second or so
            for _ in range(plannerstats.CHECK_EVERY):
                register(client, n)
                n += 1
            with engine.connect() as conn:
                analyzed = dict(conn.execute(ANALYZED).all())
            if analyzed.get("resource") and analyzed.get("ix_token"):
                break
        with engine.connect() as conn:
            estimate = conn.execute(text("SELECT reltuples FROM pg_class WHERE oid = 'resource'::regclass")).scalar()
        engine.dispose()
    assert analyzed == {"resource": True, "ix_token": True, "result_fact": False}  # no results were written
    assert estimate >= 50


def test_refresh_analyzes_only_what_changed_past_the_threshold(postgres_url):
    engine = make_engine(postgres_url)
    create_schema(engine)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO person (national_id, person_id, needs_review, review_reasons) "
                          "SELECT lpad(g::text, 12, '0'), 'p' || g, false, '' FROM generate_series(1, 200) g"))
        conn.execute(text("SELECT pg_stat_force_next_flush()"))
    assert plannerstats.refresh(engine) == ["person"]
    assert plannerstats.refresh(engine) == []  # nothing changed since
    engine.dispose()
