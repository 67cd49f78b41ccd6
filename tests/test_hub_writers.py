"""Many writers at once on PostgreSQL: threads and processes, two hub processes, one database.

Writers register the same citizens at several facilities (conditional updates of the
same Patients from several writers at once), publish transaction Bundles of results
(each sent twice) and increment a shared resource with ``If-Match``. Afterwards: one
Person per national ID linking each facility's Patient once, every acknowledged
Observation stored exactly once, version ids 1..n without gaps or repeats for every
resource, no conditional update lost (each one got a version of its own) and no
``If-Match`` increment lost.
"""

from __future__ import annotations

import threading
from collections import Counter, defaultdict
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context

import httpx
import orjson
import pytest

from emr.fhir.builders import lab_observation, patient
from emr.identity import NATIONAL_ID_SYSTEM, local_system, mrn_system
from tests.hub_process import HubProcess
from tests.serving import served_hub

pytestmark = pytest.mark.postgres

FACILITIES = ("01001", "27001", "19001", "24001", "27011", "19011")
CITIZENS = tuple(f"{province}{sex}{year}{i:06d}" for i, (province, sex, year) in enumerate(
    [("027", "0", "85"), ("019", "1", "72"), ("024", "0", "90"), ("027", "1", "60")] * 3, start=1))
LOINCS = ("4548-4", "2345-7")
HDR = {"Content-Type": "application/fhir+json"}
THREADS, PROCESSES, THREADS_PER_PROCESS, JOBS_PER_WRITER, INCREMENTS = 6, 2, 3, 6, 4


@dataclass(frozen=True)
class Ack:
    kind: str  # patient-put | observation | increment
    key: str
    status: int
    version: str = ""


def _jobs(writer: int) -> list[tuple[str, int]]:
    """(facility, citizen) pairs: writers 2n and 2n+1 do the same jobs, and each pair shares
    some with the next pair, so up to four writers update one registration at once."""
    team = writer // 2
    return [(FACILITIES[(team + k) % len(FACILITIES)], (team * 5 + k) % len(CITIZENS))
            for k in range(JOBS_PER_WRITER)]


def _patient(facility: str, citizen: int, writer: int, job: int) -> dict:
    body = patient(facility_code=facility, mrn=f"W-{citizen}", national_id=CITIZENS[citizen], family="Phạm",
                   given="Thị Lan", gender="female" if CITIZENS[citizen][3] == "1" else "male",
                   birth_date=f"19{CITIZENS[citizen][4:6]}-05-06")
    body["telecom"] = [{"system": "phone", "value": f"09{writer:02d}{job:06d}"}]  # every write differs
    return body


def _results_bundle(facility: str, citizen: int, writer: int, job: int) -> tuple[dict, list[str]]:
    mrn = {"system": mrn_system(facility), "value": f"W-{citizen}"}
    patient_url = f"urn:uuid:00000000-0000-4000-8000-{int(facility):06d}{citizen:06d}"
    entries = [{"fullUrl": patient_url, "resource": _patient(facility, citizen, writer, job),
                "request": {"method": "POST", "url": "Patient", "ifNoneExist": f"identifier={mrn['system']}|{mrn['value']}"}}]
    keys = []
    for loinc in LOINCS:
        ident = {"system": local_system(facility, "result"), "value": f"w{writer}-j{job}-{loinc}"}
        obs = lab_observation(patient_ref=patient_url, facility_code=facility, loinc=loinc, display=loinc,
                              collected="2025-09-20T08:00:00+07:00", identifier=ident,
                              value={"valueQuantity": {"value": 5.5, "unit": "%"}})
        entries.append({"resource": obs, "request": {"method": "POST", "url": "Observation",
                                                     "ifNoneExist": f"identifier={ident['system']}|{ident['value']}"}})
        keys.append(f"{ident['system']}|{ident['value']}")
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}, keys


def write(base: str, writer: int, task_id: str) -> list[Ack]:
    """One writer's whole job, over its own HTTP connection."""
    acks: list[Ack] = []
    with httpx.Client(base_url=base + "/", timeout=120, headers=HDR) as http:
        for job, (facility, citizen) in enumerate(_jobs(writer)):
            put = http.put(f"Patient?identifier={mrn_system(facility)}|W-{citizen}",
                           content=orjson.dumps(_patient(facility, citizen, writer, job)))
            acks.append(Ack("patient-put", f"{facility}/{citizen}", put.status_code,
                            put.json().get("meta", {}).get("versionId", "")))
            bundle, keys = _results_bundle(facility, citizen, writer, job)
            for _ in range(2):  # the second send is a retry after a "lost" answer
                sent = http.post("", content=orjson.dumps(bundle))
                acks += [Ack("observation", key, sent.status_code) for key in keys]
        acks += _increment(http, writer, task_id)
    return acks


def _increment(http: httpx.Client, writer: int, task_id: str) -> list[Ack]:
    """Read-modify-write with If-Match until each of this writer's increments lands."""
    acks = []
    for n in range(INCREMENTS):
        marker = f"writer {writer} increment {n}"
        while True:
            current = http.get(f"Task/{task_id}")
            task = current.json()
            task["note"] = [*task.get("note", []), {"text": marker}]
            answer = http.put(f"Task/{task_id}", content=orjson.dumps(task), headers={"If-Match": current.headers["etag"]})
            if answer.status_code != 412:
                acks.append(Ack("increment", marker, answer.status_code,
                                answer.json().get("meta", {}).get("versionId", "")))
                break
    return acks


def write_in_process(base: str, first_writer: int, task_id: str) -> list[Ack]:
    """A writer process: several writer threads of its own."""
    with ThreadPoolExecutor(THREADS_PER_PROCESS) as pool:
        parts = pool.map(lambda w: write(base, w, task_id), range(first_writer, first_writer + THREADS_PER_PROCESS))
    return [ack for part in parts for ack in part]


def test_concurrent_writers_cannot_corrupt_links_versions_or_results(postgres_url, monkeypatch):
    monkeypatch.setenv("EMR_AUTH_REQUIRED", "false")  # storage under contention, not access control
    with served_hub(postgres_url) as hub_a, HubProcess(postgres_url) as hub_b:
        http = httpx.Client(timeout=60, headers=HDR)
        task = {"resourceType": "Task", "status": "requested", "intent": "order",
                "requester": {"reference": "Organization/01001"}}
        task_id = http.post(f"{hub_a}/Task", content=orjson.dumps(task)).json()["id"]
        start = threading.Barrier(THREADS)

        def thread_writer(writer: int) -> list[Ack]:
            start.wait()
            return write(hub_a if writer % 2 else hub_b.base, writer, task_id)

        with ProcessPoolExecutor(PROCESSES, mp_context=get_context("spawn")) as processes, \
                ThreadPoolExecutor(THREADS) as threads:
            remote = [processes.submit(write_in_process, hub_b.base if p % 2 else hub_a,
                                       THREADS + p * THREADS_PER_PROCESS, task_id) for p in range(PROCESSES)]
            acks = [a for part in threads.map(thread_writer, range(THREADS)) for a in part]
            acks += [a for future in remote for a in future.result()]
        _check(http, hub_a, acks, task_id)


def _check(http: httpx.Client, base: str, acks: list[Ack], task_id: str) -> None:
    statuses = Counter(a.status for a in acks)
    assert set(statuses) <= {200, 201}, statuses
    writers_per_patient = Counter(a.key for a in acks if a.kind == "patient-put")
    assert max(writers_per_patient.values()) >= 3, "the writers did not overlap"
    _check_links(http, base)
    _check_conditional_updates(http, base, [a for a in acks if a.kind == "patient-put"])
    for key in {a.key for a in acks if a.kind == "observation"}:
        assert http.get(f"{base}/Observation", params={"identifier": key}).json()["total"] == 1, key
    observations = http.get(f"{base}/Observation", params={"_summary": "count"}).json()["total"]
    assert observations == len({a.key for a in acks if a.kind == "observation"})
    increments = [a for a in acks if a.kind == "increment"]
    task = http.get(f"{base}/Task/{task_id}").json()
    assert sorted(n["text"] for n in task["note"]) == sorted(a.key for a in increments)
    assert sorted(int(a.version) for a in increments) == list(range(2, len(increments) + 2))
    _check_history(http, f"{base}/Task/{task_id}")


def _check_links(http: httpx.Client, base: str) -> None:
    for national_id in CITIZENS:
        ident = f"{NATIONAL_ID_SYSTEM}|{national_id}"
        persons = http.get(f"{base}/Person", params={"identifier": ident}).json()
        patients = http.get(f"{base}/Patient", params={"identifier": ident, "_count": 100}).json()
        if patients["total"] == 0:
            assert persons["total"] == 0
            continue
        assert persons["total"] == 1, national_id
        person = persons["entry"][0]["resource"]
        links = [link["target"]["reference"] for link in person["link"]]
        assert len(links) == len(set(links)), "a Patient is linked twice"
        assert set(links) == {f"Patient/{e['resource']['id']}" for e in patients["entry"]}
        _check_history(http, f"{base}/Person/{person['id']}")


def _check_conditional_updates(http: httpx.Client, base: str, puts: list[Ack]) -> None:
    by_patient: dict[str, list[int]] = defaultdict(list)
    for ack in puts:
        by_patient[ack.key].append(int(ack.version))
    for key, versions in by_patient.items():
        facility, citizen = key.split("/")
        found = http.get(f"{base}/Patient", params={"identifier": f"{mrn_system(facility)}|W-{citizen}"}).json()
        assert found["total"] == 1, key
        resource = found["entry"][0]["resource"]
        assert sorted(versions) == list(range(1, len(versions) + 1)), f"{key}: a conditional update was lost"
        assert resource["meta"]["versionId"] == str(len(versions))
        _check_history(http, f"{base}/Patient/{resource['id']}")


def _check_history(http: httpx.Client, url: str) -> None:
    entries = http.get(f"{url}/_history").json()["entry"]
    versions = [int(e["response"]["etag"].strip('W/"')) for e in entries]
    assert versions == list(range(len(versions), 0, -1)), f"{url}: versions {versions}"
    stamps = [e["response"]["lastModified"] for e in reversed(entries)]
    assert stamps == sorted(stamps), f"{url}: lastUpdated goes backwards"
