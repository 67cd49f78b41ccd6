"""Resource JSON is stored deflated against a fixed dictionary and read back unchanged,
including from a database written before packing existed."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import text

from emr.fhir.builders import patient
from emr.hub.db import create_schema, make_engine
from emr.hub.packed import DICTIONARY, FORMAT_V1, pack, unpack
from tests.conftest import make_client

HDR = {"Content-Type": "application/fhir+json"}
PATIENT = patient(facility_code="27001", mrn="BN-PACK", national_id="027085012346", family="Nguyễn",
                  given="Thị Hoa", gender="female", birth_date="1990-02-03")


@given(st.text())
def test_any_text_comes_back_as_it_was_packed(value):
    assert unpack(pack(value)) == value
    assert unpack(pack(value.encode())) == value


def test_plain_json_from_before_packing_reads_as_it_is():
    assert unpack('{"resourceType":"Patient"}') == '{"resourceType":"Patient"}'
    assert unpack(b'{"resourceType":"Patient"}') == '{"resourceType":"Patient"}'
    with pytest.raises(ValueError, match="unknown format"):
        unpack(b"\x07abc")


def test_the_dictionary_is_the_one_the_stored_format_names():
    """Changing the dictionary would make every stored resource unreadable: a new one needs a
    new format byte. This pins the first one."""
    import hashlib

    assert FORMAT_V1 == 1
    assert hashlib.sha256(DICTIONARY).hexdigest()[:16] == "4721eb0d1eea897e"


def test_the_hub_stores_a_resource_packed_and_serves_it_whole(database_url):
    with make_client(database_url, auth=False) as client:
        created = client.post("/fhir/Patient", content=orjson.dumps(PATIENT), headers=HDR)
        assert created.status_code == 201, created.text
        with client.app.state.hub.engine.connect() as conn:
            stored = conn.execute(text("SELECT content FROM resource WHERE id = :id"),
                                  {"id": created.json()["id"]}).scalar_one()
        served = client.get(f"/fhir/Patient/{created.json()['id']}")
        client.app.state.hub.engine.dispose()
    assert bytes(stored)[0] == FORMAT_V1
    assert len(stored) < 0.5 * len(served.content)
    assert served.json() == created.json()


def test_a_database_written_before_packing_still_reads_and_takes_new_versions(database_url):
    """Rows as an earlier hub wrote them: plain JSON text, and an empty text marker on the
    current version's row. On PostgreSQL the columns were ``text``; the hub turns them
    into bytes when it opens the database."""
    old = {**PATIENT, "id": "legacy-1", "meta": {"versionId": "1", "lastUpdated": "2025-01-02T03:04:05.000Z"}}
    _write_old_style(database_url, old)
    with make_client(database_url, auth=False) as client:
        assert client.get("/fhir/Patient/legacy-1").json() == old
        changed = {**old, "gender": "male"}
        assert client.put("/fhir/Patient/legacy-1", content=orjson.dumps(changed), headers=HDR).status_code == 200
        assert client.get("/fhir/Patient/legacy-1/_history/1").json() == old
        history = client.get("/fhir/Patient/legacy-1/_history").json()
        client.app.state.hub.engine.dispose()
    assert [e["resource"]["gender"] for e in history["entry"]] == ["male", "female"]


def _write_old_style(url: str, resource: dict) -> None:
    engine = make_engine(url)
    create_schema(engine)
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            for table in ("resource", "resource_version"):
                conn.exec_driver_sql(f"ALTER TABLE {table} ALTER COLUMN content TYPE text USING ''")
        conn.execute(text("INSERT INTO resource (pk, resource_type, id, version_id, last_updated, deleted, content) "
                          "VALUES (1, 'Patient', :id, 1, :at, false, :content)"),
                     {"id": resource["id"], "at": resource["meta"]["lastUpdated"],
                      "content": orjson.dumps(resource).decode()})
        conn.execute(text("INSERT INTO resource_version (resource_pk, version_id, last_updated, method, deleted, "
                          "content) VALUES (1, 1, :at, 'POST', false, '')"), {"at": resource["meta"]["lastUpdated"]})
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql("SELECT setval(pg_get_serial_sequence('resource', 'pk'), 1)")
    engine.dispose()
