"""Pulling the plug on the hub: SIGKILL under write load, restart, and count what survived.

Writer threads send transaction Bundles (a Patient, three Observations and a report
over them) to ``emr serve`` running in its own process, and note which ones were
acknowledged with 2xx. The hub is killed with SIGKILL in the middle of that, then
started again on the same database. Every acknowledged Bundle must be there in full;
every other one must be there in full or not at all — never half.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections import Counter
from dataclasses import dataclass

import httpx
import orjson
import pytest
from sqlalchemy import text

from emr.fhir.builders import lab_observation, patient, results_report
from emr.hub.db import make_engine
from emr.identity import NATIONAL_ID_SYSTEM, local_system, mrn_system
from tests.hub_process import HubProcess

HDR = {"Content-Type": "application/fhir+json"}
WRITERS = 4
FACILITY = "27001"
LOINCS = ("4548-4", "2345-7", "2160-0")
ENOUGH = 30  # acknowledged Bundles before the kill


@dataclass
class Sent:
    number: int
    identifiers: list[tuple[str, str]]  # (resource type, "system|value") of every entry
    acknowledged: bool = False


def bundle(number: int) -> tuple[dict, list[tuple[str, str]]]:
    mrn = {"system": mrn_system(FACILITY), "value": f"D-{number}"}
    national_id = f"027085{number:06d}"
    patient_url = f"urn:uuid:00000000-0000-4000-8000-{number:012d}"
    person = patient(facility_code=FACILITY, mrn=mrn["value"], national_id=national_id, family="Hoàng",
                     given="Văn Nam", gender="male", birth_date="1985-01-02")
    entries = [_post(person, mrn, patient_url)]
    result_urls = []
    for i, loinc in enumerate(LOINCS):
        ident = {"system": local_system(FACILITY, "result"), "value": f"D-{number}-{loinc}"}
        url = f"urn:uuid:00000000-0000-4000-9000-{number:08d}{i:04d}"
        obs = lab_observation(patient_ref=patient_url, facility_code=FACILITY, loinc=loinc, display=loinc,
                              collected="2025-09-20T08:00:00+07:00", identifier=ident,
                              value={"valueQuantity": {"value": number + i / 10, "unit": "%"}})
        entries.append(_post(obs, ident, url))
        result_urls.append(url)
    report_id = {"system": local_system(FACILITY, "report"), "value": f"D-{number}"}
    report = results_report(patient_ref=patient_url, facility_code=FACILITY, issued="2025-09-20T10:00:00+07:00",
                            collected="2025-09-20T08:00:00+07:00", identifier=report_id, result_refs=result_urls)
    entries.append(_post(report, report_id, None))
    identifiers = [(e["resource"]["resourceType"], e["request"]["ifNoneExist"].removeprefix("identifier="))
                   for e in entries]
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}, identifiers


def _post(resource: dict, identifier: dict, full_url: str | None) -> dict:
    entry = {"resource": resource, "request": {"method": "POST", "url": resource["resourceType"],
                                               "ifNoneExist": f"identifier={identifier['system']}|{identifier['value']}"}}
    return {"fullUrl": full_url, **entry} if full_url else entry


def load(base: str, sent: list[Sent], stop: threading.Event, counter: iter) -> None:
    with httpx.Client(timeout=30, headers=HDR) as http:
        while not stop.is_set():
            number = next(counter)
            body, identifiers = bundle(number)
            record = Sent(number, identifiers)
            sent.append(record)
            try:
                answer = http.post(base, content=orjson.dumps(body))
            except httpx.TransportError:
                return  # the hub is gone; this Bundle's fate is unknown
            record.acknowledged = answer.status_code == 200
            if answer.status_code >= 500:
                return


IDENTIFIERS_PER_SEARCH = 20  # keeps each search value under the hub's length limit


def stored(http: httpx.Client, base: str, sent: list[Sent]) -> Counter:
    """How many resources the hub holds under each identifier that was sent (one search per type)."""
    wanted: dict[str, list[str]] = {}
    for record in sent:
        for rtype, identifier in record.identifiers:
            wanted.setdefault(rtype, []).append(identifier)
    found: Counter = Counter()
    for rtype, identifiers in wanted.items():
        for start in range(0, len(identifiers), IDENTIFIERS_PER_SEARCH):
            escaped = ",".join(i.replace(",", "\\,") for i in identifiers[start:start + IDENTIFIERS_PER_SEARCH])
            page = http.get(f"{base}/{rtype}", params={"identifier": escaped, "_count": 1000}).json()
            assert page["total"] == len(page.get("entry", [])), "more than one page"
            for entry in page.get("entry", []):
                ident = entry["resource"]["identifier"][0]
                found[(rtype, f"{ident['system']}|{ident['value']}")] += 1
    return found


@pytest.mark.parametrize("database_url", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)],
                         indirect=True)
def test_a_killed_hub_keeps_every_acknowledged_write_and_no_half_bundle(database_url, monkeypatch):
    monkeypatch.setenv("EMR_AUTH_REQUIRED", "false")  # durability, not access control
    sent: list[Sent] = []
    stop = threading.Event()
    counter = iter(range(1, 1_000_000))
    hub = HubProcess(database_url)
    hub.start()
    writers = [threading.Thread(target=load, args=(hub.base, sent, stop, counter)) for _ in range(WRITERS)]
    for writer in writers:
        writer.start()
    deadline = time.monotonic() + 60
    while sum(r.acknowledged for r in sent) < ENOUGH and time.monotonic() < deadline:
        time.sleep(0.05)
    hub.kill()  # mid-load: some Bundles are in flight
    stop.set()
    for writer in writers:
        writer.join(timeout=60)
    acknowledged = [r for r in sent if r.acknowledged]
    assert len(acknowledged) >= ENOUGH, hub.output()
    restarted = HubProcess(database_url)
    with restarted:
        _check_survivors(restarted.base, sent)
    _check_database_file(database_url)


def _check_survivors(base: str, sent: list[Sent]) -> None:
    with httpx.Client(timeout=60, headers=HDR) as http:
        at_hub = stored(http, base, sent)
        assert max(at_hub.values()) == 1, "a resource was stored twice"
        for record in sent:
            found = sum(at_hub[key] for key in record.identifiers)
            if record.acknowledged:
                assert found == len(record.identifiers), f"acknowledged Bundle {record.number} lost {found}"
            else:
                assert found in (0, len(record.identifiers)), f"Bundle {record.number} is half there"
        first = next(r for r in sent if r.acknowledged)
        national_id = f"027085{first.number:06d}"
        results = http.get(f"{base}/Observation", params={"patient.identifier": f"{NATIONAL_ID_SYSTEM}|{national_id}"})
        assert results.json()["total"] == len(LOINCS)  # the indexes survived with the rows
        body, _ = bundle(999_999)
        assert http.post(base, content=orjson.dumps(body)).status_code == 200  # and it takes writes again


def _check_database_file(url: str) -> None:
    if not url.startswith("sqlite"):
        return
    with sqlite3.connect(url.removeprefix("sqlite:///")) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_sqlite_commits_are_synced_before_they_are_acknowledged(sqlite_url):
    engine = make_engine(sqlite_url)
    with engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA synchronous")).scalar() == 2  # FULL
    engine.dispose()
