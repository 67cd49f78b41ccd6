"""Concurrent conditional creates make exactly one resource; a real FHIR client works against the hub.

These tests serve the hub with uvicorn on 127.0.0.1 and talk to it over real HTTP.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import orjson
import pytest

from emr.fhir.builders import lab_observation, patient
from emr.identity import NATIONAL_ID_SYSTEM, mrn_system
from tests.serving import served_hub

NID = "001185004321"  # Hà Nội, female, 1985


@pytest.fixture
def served(database_url: str) -> Iterator[str]:
    with served_hub(database_url) as base:
        yield base


def test_twenty_concurrent_conditional_creates_make_one_patient(served: str):
    body = orjson.dumps(patient(facility_code="01001", mrn="RACE-1", national_id=NID, family="Đỗ",
                                given="Thu Hà", gender="female", birth_date="1985-03-03"))
    criteria = f"identifier={mrn_system('01001')}|RACE-1"
    barrier = threading.Barrier(20)

    def attempt(_: int) -> tuple[int, str]:
        with httpx.Client(timeout=60, auth=served.auth_for("01001")) as http:
            barrier.wait()
            r = http.post(f"{served}/Patient", content=body,
                          headers={"Content-Type": "application/fhir+json", "If-None-Exist": criteria})
            return r.status_code, r.json()["id"]

    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(attempt, range(20)))
    assert sorted(s for s, _ in results) == [200] * 19 + [201]
    assert len({rid for _, rid in results}) == 1
    found = httpx.get(f"{served}/Patient", params={"identifier": f"{mrn_system('01001')}|RACE-1"},
                      auth=served.auth_for("01001")).json()
    assert found["total"] == 1
    persons = httpx.get(f"{served}/Person", params={"identifier": f"{NATIONAL_ID_SYSTEM}|{NID}"},
                        auth=served.auth_for("01001")).json()
    assert persons["total"] == 1


def test_concurrent_registrations_from_facilities_make_one_person(served: str):
    facilities = ["01001", "27001", "19001", "79001", "89001", "74001"]

    def register(code: str) -> int:
        body = patient(facility_code=code, mrn=f"M-{code}", national_id=NID, family="Đỗ", given="Thu Hà",
                       gender="female", birth_date="1985-03-03")
        return httpx.put(f"{served}/Patient", params={"identifier": f"{mrn_system(code)}|M-{code}"},
                         content=orjson.dumps(body), headers={"Content-Type": "application/fhir+json"},
                         timeout=60, auth=served.auth_for(code)).status_code

    with ThreadPoolExecutor(max_workers=len(facilities)) as pool:
        assert set(pool.map(register, facilities)) == {201}
    persons = httpx.get(f"{served}/Person", params={"identifier": f"{NATIONAL_ID_SYSTEM}|{NID}"},
                        auth=served.auth_for("01001")).json()
    assert persons["total"] == 1
    assert len(persons["entry"][0]["resource"]["link"]) == len(facilities)


def test_fhirpy_client_against_the_hub(served: str):
    from fhirpy import SyncFHIRClient

    client = SyncFHIRClient(served, authorization=served.bearer("27001"))
    body = patient(facility_code="27001", mrn="FP-1", national_id=NID, family="Đỗ", given="Thu Hà",
                   gender="female", birth_date="1985-03-03")
    created = client.resource("Patient", **body)
    created.save()
    assert created.id
    again = client.resources("Patient").search(identifier=f"{mrn_system('27001')}|FP-1").get_or_create(
        client.resource("Patient", **body))
    assert again[0].id == created.id and again[1] is False
    obs = client.resource("Observation", **lab_observation(
        patient_ref=f"Patient/{created.id}", facility_code="27001", loinc="4548-4", display="HbA1c",
        collected="2025-09-20T08:00:00+07:00"))
    obs.save()
    found = client.resources("Observation").search(**{"patient.identifier": f"{NATIONAL_ID_SYSTEM}|{NID}"})
    assert found.count() == 1
    assert found.first().id == obs.id
