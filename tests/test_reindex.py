"""``emr reindex``: the search index tables derived again from the stored resources."""

from __future__ import annotations

import orjson
from sqlalchemy import inspect, select, text
from typer.testing import CliRunner

from emr.cli import app
from emr.fhir.builders import lab_observation, patient
from emr.hub.db import INDEX_TABLES, make_engine
from emr.identity import NATIONAL_ID_SYSTEM
from tests.conftest import make_client
from tests.older_schema import with_row_keys

HDR = {"Content-Type": "application/fhir+json"}
NIDS = ("027085000201", "027085000202")


def index_rows(url: str) -> dict[str, list[tuple]]:
    """Every index row, without any surrogate key, sorted: what searches read."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return {m.__tablename__: sorted(tuple(r) for r in conn.execute(select(*m.__table__.columns)))
                    for m in INDEX_TABLES}
    finally:
        engine.dispose()


def publish(client, nid: str, mrn: str, *, by_identifier: bool = False) -> tuple[str, str]:
    body = patient(facility_code="27001", mrn=mrn, national_id=nid, family="Phạm", given="Thu Hà",
                   gender="female", birth_date="1990-03-04")
    pid = client.post("/fhir/Patient", content=orjson.dumps(body), headers=HDR).json()["id"]
    obs = lab_observation(patient_ref=f"Patient/{pid}", facility_code="27001", loinc="4548-4", display="HbA1c",
                          collected="2025-09-20T08:00:00+07:00", value={"valueQuantity": {"value": 6.1, "unit": "%"}})
    if by_identifier:
        obs["subject"] = {"type": "Patient", "identifier": {"system": NATIONAL_ID_SYSTEM, "value": nid}}
    created = client.post("/fhir/Observation", content=orjson.dumps(obs), headers=HDR)
    assert created.status_code == 201, created.text
    return pid, created.json()["id"]


def reindex(url: str, *args: str):
    return CliRunner().invoke(app, ["reindex", "--db", url, *args])


def test_reindex_gives_back_the_rows_the_hub_wrote_and_drops_what_it_no_longer_derives(database_url):
    with make_client(database_url) as client:
        publish(client, NIDS[0], "RX-1")
        _, gone = publish(client, NIDS[1], "RX-2")
        assert client.delete(f"/fhir/Observation/{gone}").status_code in (200, 204)
        client.app.state.hub.engine.dispose()
    written = index_rows(database_url)
    with_row_keys(database_url)
    engine = make_engine(database_url)
    with engine.begin() as conn:  # what an earlier hub derived: subject beside patient, and a parameter since gone
        conn.execute(text("INSERT INTO ix_reference (resource_pk, resource_type, param, target_type, target_id) "
                          "SELECT resource_pk, resource_type, 'subject', target_type, target_id FROM ix_reference "
                          "WHERE param = 'patient'"))
        conn.execute(text("INSERT INTO ix_token (resource_pk, resource_type, param, system, code) "
                          "SELECT resource_pk, resource_type, 'retired', '', 'x' FROM ix_token"))
        conn.execute(text("DELETE FROM ix_string"))  # and a parameter it did not have yet
    engine.dispose()

    result = reindex(database_url, "--lang", "en")

    assert result.exit_code == 0, result.output
    assert result.output.startswith("Rebuilt the search index of ")
    assert index_rows(database_url) == written
    engine = make_engine(database_url)
    columns = {t: [c["name"] for c in inspect(engine).get_columns(t)] for t in ("ix_token", "ix_reference")}
    indexes = {i["name"] for i in inspect(engine).get_indexes("ix_token")}
    engine.dispose()
    assert all("row" not in names for names in columns.values())
    assert {"ix_token_lookup", "ix_ix_token_resource_pk"} <= indexes


def test_a_result_that_named_its_patient_before_the_patient_existed_is_found_after_reindex(database_url):
    """A logical reference resolves at write time, so one written ahead of its target stays
    unresolved; reindex resolves every logical reference once all identifiers are indexed."""
    with make_client(database_url) as client:
        obs = lab_observation(patient_ref="Patient/none", facility_code="27001", loinc="4548-4", display="HbA1c",
                              collected="2025-09-20T08:00:00+07:00")
        obs["subject"] = {"type": "Patient", "identifier": {"system": NATIONAL_ID_SYSTEM, "value": NIDS[0]}}
        early = client.post("/fhir/Observation", content=orjson.dumps(obs), headers=HDR).json()["id"]
        pid, _ = publish(client, NIDS[0], "RX-3")
        before = [e["resource"]["id"] for e in client.get(f"/fhir/Observation?subject=Patient/{pid}").json()["entry"]]
        assert reindex(database_url).exit_code == 0
        after = [e["resource"]["id"] for e in client.get(f"/fhir/Observation?subject=Patient/{pid}").json()["entry"]]
        client.app.state.hub.engine.dispose()
    assert early not in before and early in after


def test_reindex_speaks_vietnamese_by_default_and_refuses_what_is_not_a_hub(tmp_path, sqlite_url):
    with make_client(sqlite_url) as client:
        client.app.state.hub.engine.dispose()
    said = reindex(sqlite_url)
    assert said.exit_code == 0 and said.output.startswith("Đã dựng lại chỉ mục tìm kiếm của ")
    missing = reindex(f"sqlite:///{tmp_path / 'none.db'}")
    assert missing.exit_code == 2 and "there is no hub database" in missing.output
    assert reindex(sqlite_url, "--lang", "fr").exit_code == 2
