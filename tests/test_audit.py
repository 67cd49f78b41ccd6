"""The audit trail: an AuditEvent for every access to patient data, immutable, and `emr audit`."""

from __future__ import annotations

import orjson
import pytest
from typer.testing import CliRunner

from emr.cli import app as cli
from emr.fhir import validate_resource
from emr.identity import NATIONAL_ID_SYSTEM
from tests.test_security import HDR, NID, bearer, check_reuse, hub, post, publish, put, refused, register  # noqa: F401

runner = CliRunner()
BY_PERSON = f"/fhir/AuditEvent?patient.identifier={NATIONAL_ID_SYSTEM}|{NID}&_sort=date&_count=200"


def events(hub, headers, query=BY_PERSON) -> list[dict]:
    return [e["resource"] for e in hub.get(query, headers=headers).json().get("entry", [])]


def summary(event: dict) -> tuple[str, str, str, str]:
    agent = next(a["who"]["reference"] for a in event["agent"] if "reference" in a.get("who", {}))
    return event["subtype"][0]["code"], event["action"], event["outcome"], agent


def test_every_access_to_a_person_is_recorded(hub, clock):
    bac_ninh, bach_mai = bearer(hub, clock, "27001"), bearer(hub, clock, "01001")
    pid = register(hub, bac_ninh, "27001")
    oid = publish(hub, bac_ninh, pid)
    refused(hub.get(f"/fhir/Observation/{oid}", headers=bach_mai), 403)
    register(hub, bach_mai, "01001")
    hub.get(f"/fhir/Observation?patient.identifier={NATIONAL_ID_SYSTEM}|{NID}", headers=bach_mai)
    check_reuse(hub, bach_mai, "01001")
    trail = [summary(e) for e in events(hub, bac_ninh)]
    assert trail == [
        ("create", "C", "0", "Organization/27001"),
        ("create", "C", "0", "Organization/27001"),
        ("read", "R", "4", "Organization/01001"),
        ("create", "C", "0", "Organization/01001"),
        ("search-type", "E", "0", "Organization/01001"),
        ("operation", "E", "0", "Organization/01001"),
    ]
    refusal = events(hub, bac_ninh)[2]
    assert "no treatment relationship" in refusal["outcomeDesc"]
    assert {"reference": f"Patient/{pid}"} in [e.get("what") for e in refusal["entity"]]


def test_an_audit_event_has_the_balp_shape_and_is_valid_fhir(hub, clock):
    bac_ninh = bearer(hub, clock, "27001")
    pid = register(hub, bac_ninh, "27001")
    hub.get(f"/fhir/Patient/{pid}", headers=bac_ninh)
    read = events(hub, bac_ninh)[-1]
    validate_resource({k: v for k, v in read.items() if k != "meta"})
    assert read["type"]["code"] == "rest" and read["recorded"].startswith("2025-10-01")
    client, facility = read["agent"]
    assert client["requestor"] and client["who"]["identifier"]["value"] == "test-27001"
    assert client["purposeOfUse"][0]["coding"][0]["code"] == "TREAT"
    assert facility["who"] == {"reference": "Organization/27001"}
    patient_entities = [e for e in read["entity"] if e["role"]["code"] == "1"]
    assert {"type": "Patient", "identifier": {"system": NATIONAL_ID_SYSTEM, "value": NID}} in \
        [e["what"] for e in patient_entities]


def test_the_accesses_to_one_result_are_found_by_its_reference(hub, clock):
    """The trail names what it touched by versioned reference (Observation/x/_history/1):
    ``entity`` finds it by the plain reference, and ``patient`` holds only the Patients."""
    bac_ninh = bearer(hub, clock, "27001")
    pid = register(hub, bac_ninh, "27001")
    oid = publish(hub, bac_ninh, pid)
    hub.get(f"/fhir/Observation/{oid}", headers=bac_ninh)
    found = events(hub, bac_ninh, f"/fhir/AuditEvent?entity=Observation/{oid}&_sort=date")
    assert [e["subtype"][0]["code"] for e in found] == ["create", "read"]
    assert events(hub, bac_ninh, f"/fhir/AuditEvent?patient=Observation/{oid}") == []


def test_an_order_time_check_is_found_by_each_of_the_persons_patients(hub, clock):
    """A check names the person by national ID and each of their Patients by id: ``patient``
    finds its entry from either facility's registration."""
    bac_ninh, bach_mai = bearer(hub, clock, "27001"), bearer(hub, clock, "01001")
    registrations = [register(hub, bac_ninh, "27001"), register(hub, bach_mai, "01001")]
    check_reuse(hub, bach_mai, "01001")
    for pid in registrations:
        found = events(hub, bac_ninh, f"/fhir/AuditEvent?patient=Patient/{pid}&_sort=date")
        assert "operation" in [e["subtype"][0]["code"] for e in found]


def test_a_failed_write_leaves_no_success_entry_but_a_failure(hub, clock):
    bach_mai = bearer(hub, clock, "01001")
    pid = register(hub, bach_mai, "01001")
    good = {"resourceType": "Encounter", "status": "finished", "subject": {"reference": f"Patient/{pid}"},
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
            "serviceProvider": {"reference": "Organization/01001"}}
    bad = {**good, "serviceProvider": {"reference": "Organization/27001"}}
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": good, "request": {"method": "POST", "url": "Encounter"}},
        {"resource": bad, "request": {"method": "POST", "url": "Encounter"}}]}
    refused(post(hub, "", bundle, bach_mai), 403)
    trail = [summary(e) for e in events(hub, bach_mai)]
    assert trail == [("create", "C", "0", "Organization/01001"), ("transaction", "E", "4", "Organization/01001")]


@pytest.mark.parametrize("attempt", ["post", "put", "delete"])
def test_audit_events_cannot_be_changed_through_the_api(hub, clock, attempt):
    bac_ninh = bearer(hub, clock, "27001")
    register(hub, bac_ninh, "27001")
    original = events(hub, bac_ninh)[0]
    forged = {**original, "outcome": "4"}
    forged.pop("meta")
    response = {"post": lambda: post(hub, "AuditEvent", forged, bac_ninh),
                "put": lambda: put(hub, f"AuditEvent/{original['id']}", forged, bac_ninh),
                "delete": lambda: hub.delete(f"/fhir/AuditEvent/{original['id']}", headers=bac_ninh)}[attempt]()
    assert "written by the hub only" in refused(response, 403)
    emergency = {**bac_ninh, "X-Purpose-Of-Use": "ETREAT"}
    refused(put(hub, f"AuditEvent/{original['id']}", forged, emergency), 403)
    bundle = {"resourceType": "Bundle", "type": "transaction",
              "entry": [{"request": {"method": "DELETE", "url": f"AuditEvent/{original['id']}"}}]}
    refused(post(hub, "", bundle, bac_ninh), 403)
    assert hub.get(f"/fhir/AuditEvent/{original['id']}", headers=bac_ninh).json() == original


def test_the_access_log_of_a_person_is_theirs_not_everyones(hub, clock):
    bac_ninh, cho_ray = bearer(hub, clock, "27001"), bearer(hub, clock, "79001")
    register(hub, bac_ninh, "27001")
    assert events(hub, cho_ray) == []  # Chợ Rẫy has no relationship with this person


def test_emr_audit_prints_who_accessed_a_person(hub, clock, sqlite_url):
    bac_ninh, bach_mai = bearer(hub, clock, "27001"), bearer(hub, clock, "01001")
    pid = register(hub, bac_ninh, "27001")
    oid = publish(hub, bac_ninh, pid)
    hub.get(f"/fhir/Observation/{oid}", headers={**bach_mai, "X-Purpose-Of-Use": "ETREAT"})
    wide = {"COLUMNS": "220"}
    vi = runner.invoke(cli, ["audit", "--national-id", NID, "--db", sqlite_url], env=wide)
    assert vi.exit_code == 0, vi.output
    assert "Bệnh viện Bạch Mai" in vi.output and "CẤP CỨU (phá kính)" in vi.output and "3 lượt truy cập" in vi.output
    en = runner.invoke(cli, ["audit", "--national-id", NID, "--db", sqlite_url, "--lang", "en"], env=wide)
    assert "EMERGENCY (break-glass)" in en.output and "Create" in en.output and "Observation" in en.output
    nobody = runner.invoke(cli, ["audit", "--national-id", "001085012345", "--db", sqlite_url, "--lang", "en"])
    assert nobody.exit_code == 0 and "No access has been recorded" in nobody.output


@pytest.mark.parametrize("args, message", [
    (["--national-id", "12345"], "not 12"),
    (["--national-id", NID, "--db", "sqlite:////nonexistent/hub.db"], "no hub database"),
    (["--national-id", NID, "--lang", "fr"], "--lang"),
])
def test_emr_audit_rejects_bad_input_in_one_line(args, message):
    result = runner.invoke(cli, ["audit", *args])
    assert result.exit_code == 2 and message in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_tokens_and_keys_never_reach_the_audit_trail(hub, clock):
    bac_ninh = bearer(hub, clock, "27001")
    register(hub, bac_ninh, "27001")
    token = bac_ninh["Authorization"].removeprefix("Bearer ")
    stored = orjson.dumps(events(hub, bac_ninh)).decode()
    assert token not in stored and token.split(".")[2] not in stored
