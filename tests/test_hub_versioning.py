"""Versioned update: ``If-Match`` on PUT by id, on conditional PUT and in Bundle entries.

A write whose ``If-Match`` names anything but the current version is refused with 412
and an OperationOutcome, and changes nothing; a malformed ETag is a 400.
"""

from __future__ import annotations

import orjson
import pytest

from emr.fhir.builders import patient
from emr.identity import mrn_system

HDR = {"Content-Type": "application/fhir+json"}
NID = "027085012345"
MRN_QUERY = f"identifier={mrn_system('27001')}|BN-IFM"


def body(family: str = "Nguyễn") -> dict:
    return patient(facility_code="27001", mrn="BN-IFM", national_id=NID, family=family, given="Văn An",
                   gender="male", birth_date="1985-04-12")


def put(client, path: str, resource: dict, etag: str | None = None):
    headers = {**HDR, **({"If-Match": etag.encode()} if etag is not None else {})}  # bytes: any octets
    return client.put(f"/fhir/{path}", content=orjson.dumps(resource), headers=headers)


def refused(response, status: int = 412) -> None:
    assert response.status_code == status, response.text
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome" and outcome["issue"][0]["diagnostics"]


def current(client, rid: str) -> dict:
    return client.get(f"/fhir/Patient/{rid}").json()


def test_update_by_id_needs_the_current_version(client):
    created = put(client, f"Patient?{MRN_QUERY}", body()).json()
    rid = created["id"]
    changed = {**created, "gender": "female"}
    assert put(client, f"Patient/{rid}", changed, 'W/"1"').json()["meta"]["versionId"] == "2"
    refused(put(client, f"Patient/{rid}", {**created, "gender": "other"}, 'W/"1"'))
    assert current(client, rid)["gender"] == "female"
    assert put(client, f"Patient/{rid}", {**created, "gender": "other"}, '"2"').status_code == 200  # strong form
    refused(put(client, "Patient/does-not-exist", {**created, "id": "does-not-exist"}, 'W/"1"'))


def test_conditional_update_honours_if_match(client):
    first = put(client, f"Patient?{MRN_QUERY}", body(), 'W/"1"')
    refused(first)  # nothing matches yet, so no version can match
    created = put(client, f"Patient?{MRN_QUERY}", body())
    assert created.status_code == 201
    assert put(client, f"Patient?{MRN_QUERY}", body("Trần"), 'W/"1"').json()["meta"]["versionId"] == "2"
    refused(put(client, f"Patient?{MRN_QUERY}", body("Lê"), 'W/"1"'))
    assert current(client, created.json()["id"])["name"][0]["family"] == "Trần"


def test_a_stale_entry_rolls_the_whole_transaction_back(client):
    rid = put(client, f"Patient?{MRN_QUERY}", body()).json()["id"]
    other = {"resourceType": "Patient", "identifier": [{"system": mrn_system("27001"), "value": "BN-OTHER"}]}
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": other, "request": {"method": "POST", "url": "Patient"}},
        {"resource": {**body("Lê"), "id": rid}, "request": {"method": "PUT", "url": f"Patient/{rid}", "ifMatch": 'W/"7"'}},
    ]}
    refused(client.post("/fhir", content=orjson.dumps(bundle), headers=HDR))
    assert client.get("/fhir/Patient", params={"identifier": f"{mrn_system('27001')}|BN-OTHER"}).json()["total"] == 0
    assert current(client, rid)["meta"]["versionId"] == "1"


@pytest.mark.parametrize("etag", ['W/"abc"', '"²"', '"٣"', "W/" + '"' + "9" * 5000 + '"', ""])
def test_a_malformed_etag_is_a_client_error(sqlite_client, etag):
    created = put(sqlite_client, f"Patient?{MRN_QUERY}", body()).json()
    refused(put(sqlite_client, f"Patient/{created['id']}", created, etag or " "), 400)
    assert sqlite_client.get(f"/fhir/Patient/{created['id']}/_history/²").status_code == 404


def test_a_new_version_is_never_dated_before_the_one_it_replaces(sqlite_url, clock):
    """A writer that read the clock before waiting for the row's lock must not date its version
    earlier than the version committed meanwhile (clients polling _lastUpdated would miss it)."""
    from datetime import timedelta

    from tests.conftest import make_client

    with make_client(sqlite_url, clock, auth=False) as client:
        created = put(client, f"Patient?{MRN_QUERY}", body()).json()
        clock.now -= timedelta(minutes=5)
        updated = put(client, f"Patient/{created['id']}", {**created, "gender": "female"}).json()
        client.app.state.hub.engine.dispose()
    assert updated["meta"]["versionId"] == "2"
    assert updated["meta"]["lastUpdated"] >= created["meta"]["lastUpdated"]


@pytest.fixture
def open_client(database_url):
    from tests.conftest import make_client

    with make_client(database_url, auth=False) as opened:
        yield opened


def test_every_version_reads_back_after_updates_deletion_and_return(open_client):
    """Each version's JSON, old and current, comes back from vread and history through two
    updates, a deletion and a re-creation (the hub keeps the current JSON once, beside the
    versions before it)."""
    client = open_client
    rid = put(client, f"Patient?{MRN_QUERY}", body("Một")).json()["id"]
    for family in ("Hai", "Ba"):
        assert put(client, f"Patient/{rid}", {**body(family), "id": rid}).status_code == 200
    assert client.delete(f"/fhir/Patient/{rid}").status_code in (200, 204)
    restored = put(client, f"Patient/{rid}", {**body("Năm"), "id": rid})
    assert restored.status_code == 201 and restored.headers["Location"].endswith(f"Patient/{rid}/_history/5")
    for version, family in {"1": "Một", "2": "Hai", "3": "Ba", "5": "Năm"}.items():
        read = client.get(f"/fhir/Patient/{rid}/_history/{version}")
        assert read.status_code == 200 and read.json()["name"][0]["family"] == family, read.text
    assert client.get(f"/fhir/Patient/{rid}/_history/4").status_code == 410
    history = client.get(f"/fhir/Patient/{rid}/_history").json()
    shown = [(e["request"]["method"], (e.get("resource") or {}).get("name", [{}])[0].get("family"))
             for e in history["entry"]]
    assert shown == [("PUT", "Năm"), ("DELETE", None), ("PUT", "Ba"), ("PUT", "Hai"), ("POST", "Một")]


def test_deleting_a_deleted_resource_again_changes_nothing(open_client):
    rid = put(open_client, f"Patient?{MRN_QUERY}", body()).json()["id"]
    for _ in range(2):
        assert open_client.delete(f"/fhir/Patient/{rid}").status_code in (200, 204)
    history = open_client.get(f"/fhir/Patient/{rid}/_history").json()
    assert [e["request"]["method"] for e in history["entry"]] == ["DELETE", "POST"]
