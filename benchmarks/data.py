"""Seeded synthetic data for the benchmarks: facility histories as NDJSON and visit Bundles.

Everything is built with the project's own builders (``emr.fhir.builders``), so the
resources are the ones the simulator and a real facility would send, and every one
passes the hub's profile checks. Same seed, same bytes.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import orjson

from emr.fhir.builders import encounter, lab_observation, patient, results_report, test_order
from emr.identity import generate_national_id, local_system

START = datetime(2024, 1, 1, 1, 0, tzinfo=timezone.utc)
SPAN_DAYS = 600  # results spread over 2024 and most of 2025
# (LOINC, display, unit, mean, sd): common quantity tests of the catalogue (data/tests.yaml)
TESTS = (
    ("4548-4", "Hemoglobin A1c", "%", 6.2, 1.1),
    ("2345-7", "Glucose", "mmol/L", 6.0, 1.5),
    ("2160-0", "Creatinine", "umol/L", 85.0, 20.0),
    ("718-7", "Hemoglobin", "g/L", 135.0, 15.0),
    ("6690-2", "Leukocytes", "10*9/L", 7.0, 2.0),
    ("777-3", "Platelets", "10*9/L", 250.0, 60.0),
    ("1742-6", "ALT", "U/L", 30.0, 12.0),
    ("1920-8", "AST", "U/L", 28.0, 10.0),
    ("2093-3", "Cholesterol", "mmol/L", 5.0, 1.0),
)


@dataclass(frozen=True)
class Person:
    national_id: str
    family: str
    given: str
    gender: str
    birth_date: str


def people(seed: int, count: int) -> list[Person]:
    """``count`` citizens with distinct valid national IDs."""
    rng = random.Random(seed)
    seen: set[str] = set()
    out: list[Person] = []
    while len(out) < count:
        year, sex = rng.randint(1940, 2005), rng.choice(("male", "female"))
        nid = generate_national_id(rng, province_code=rng.choice(("027", "001", "019")), birth_year=year, sex=sex)
        if nid not in seen:
            seen.add(nid)
            birth = f"{year}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
            out.append(Person(nid, rng.choice(("Nguyễn", "Trần", "Lê", "Phạm")), rng.choice(("Văn An", "Thị Bình")),
                              sex, birth))
    return out


def history(seed: int, facility: str, persons: list[Person], results_per_patient: int) -> Iterator[dict]:
    """One facility's bulk export: a Patient per person (source id ``p<n>``), then its results."""
    rng = random.Random(f"{seed}-{facility}")
    for n, person in enumerate(persons):
        yield {**patient(facility_code=facility, mrn=f"{facility}-{n:07d}", national_id=person.national_id,
                         family=person.family, given=person.given, gender=person.gender,
                         birth_date=person.birth_date), "id": f"p{n}"}
    for n in range(len(persons)):
        for k in range(results_per_patient):
            yield {**_observation(rng, facility, f"Patient/p{n}", f"{n}-{k}"), "id": f"o{n}-{k}"}


def _observation(rng: random.Random, facility: str, patient_ref: str, key: str) -> dict:
    loinc, display, unit, mean, sd = rng.choice(TESTS)
    collected = START + timedelta(minutes=rng.randrange(SPAN_DAYS * 24 * 60))
    value = {"valueQuantity": {"value": round(max(rng.gauss(mean, sd), 0.0), 2), "unit": unit,
                               "system": "http://unitsofmeasure.org", "code": unit}}
    return lab_observation(patient_ref=patient_ref, facility_code=facility, loinc=loinc, display=display,
                           collected=collected.isoformat(), value=value,
                           identifier={"system": local_system(facility, "result"), "value": key})


def write_ndjson(path: Path, resources: Iterator[dict]) -> int:
    """Write resources one per line; returns how many."""
    n = 0
    with path.open("wb") as out:
        for resource in resources:
            out.write(orjson.dumps(resource) + b"\n")
            n += 1
    return n


def visit_bundle(rng: random.Random, facility: str, patient_id: str, visit: str, tests: int = 9) -> dict:
    """A transaction Bundle as a facility publishes one visit: the encounter, an order and a
    result per test and the report over them (``2 + 2 × tests`` entries; 20 by default)."""
    ref = f"Patient/{patient_id}"
    at = START + timedelta(days=SPAN_DAYS, minutes=rng.randrange(60 * 24 * 30))
    enc_id = {"system": local_system(facility, "encounter"), "value": visit}
    entries = [_post(encounter(patient_ref=ref, facility_code=facility, start=at.isoformat(), identifier=enc_id), enc_id)]
    results = []
    for loinc, display, unit, mean, sd in rng.sample(TESTS, tests):
        order_id = {"system": local_system(facility, "order"), "value": f"{visit}-{loinc}"}
        entries.append(_post(test_order(patient_ref=ref, facility_code=facility, loinc=loinc, display=display,
                                        authored=at.isoformat(), identifier=order_id,
                                        encounter_ref=_urn(enc_id)), order_id))
        result_id = {"system": local_system(facility, "result"), "value": f"{visit}-{loinc}"}
        value = {"valueQuantity": {"value": round(max(rng.gauss(mean, sd), 0.0), 2), "unit": unit,
                                   "system": "http://unitsofmeasure.org", "code": unit}}
        results.append(_post(lab_observation(patient_ref=ref, facility_code=facility, loinc=loinc, display=display,
                                             collected=at.isoformat(), value=value, identifier=result_id), result_id))
    report_id = {"system": local_system(facility, "report"), "value": visit}
    report = results_report(patient_ref=ref, facility_code=facility, issued=(at + timedelta(hours=2)).isoformat(),
                            collected=at.isoformat(), identifier=report_id, result_refs=[e["fullUrl"] for e in results])
    entries += results + [_post(report, report_id)]
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def _urn(identifier: dict) -> str:
    return f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, identifier['system'] + '|' + identifier['value'])}"


def _post(resource: dict, identifier: dict) -> dict:
    return {"fullUrl": _urn(identifier), "resource": resource,
            "request": {"method": "POST", "url": resource["resourceType"],
                        "ifNoneExist": f"identifier={identifier['system']}|{identifier['value']}"}}
