"""The requests a province's facilities send a hub, written from a seeded stream.

Three kinds, as in the pilot: ``publish`` (a transaction Bundle with a visit — the
Patient, the encounter, the orders — and its results and report: 10 to 20 resources,
built by the simulator's own publishing code), ``search`` (every facility's results
for a national ID, ``Observation?patient.identifier=…``) and ``check``
(``$check-reuse`` for three tests). A facility searches and checks only citizens it
has registered itself, so a hub with access rules answers it as it would the real
facility. Contents depend only on the seed; which citizens are ready to be searched
depends on which publications have completed.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta

import orjson

from emr.catalog import Facility, LabTest, load_facilities, load_tests
from emr.config import Settings
from emr.fhir import LOINC_SYSTEM
from emr.fhir.builders import patient
from emr.fhir.dates import VIETNAM_TZ, to_fhir_instant
from emr.identity import FACILITY_CODE_SYSTEM, NATIONAL_ID_SYSTEM
from emr.sim.journeys import Visit
from emr.sim.population import Citizen, generate_population, load_population_tables
from emr.sim.publishing import PerformedTest, patient_entry, result_entries, visit_entries

PROVINCES = ("019", "024", "027")  # the northern pilot cluster: Thái Nguyên, Bắc Giang, Bắc Ninh
PANEL = ("2345-7", "4548-4", "2160-0", "2093-3", "58410-2", "1742-6", "1920-8")  # common first-visit tests
TESTS_PER_VISIT = 4
START = date(2025, 10, 1)


@dataclass(frozen=True)
class Call:
    kind: str
    facility: str
    method: str
    path: str
    body: bytes | None = None
    params: dict[str, str] | None = None
    citizen: int = -1


@dataclass
class Workload:
    facilities: dict[str, Facility]
    tests: dict[str, LabTest]
    citizens: Sequence[Citizen]
    rng: random.Random
    _visits: int = 0
    _ready: list[tuple[str, int]] = field(default_factory=list)  # (facility, citizen) known to the hub
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def next_call(self, kind: str) -> Call:
        """The next request of ``kind``; a publication when nothing has been published yet."""
        with self._lock:
            ready = list(self._ready)
        if kind == "publish" or not ready:
            return self._publish()
        facility, citizen = ready[self.rng.randrange(len(ready))]
        return self._search(facility, citizen) if kind == "search" else self._check(facility, citizen)

    def completed(self, call: Call, ok: bool) -> None:
        if ok and call.kind == "publish":
            with self._lock:
                self._ready.append((call.facility, call.citizen))

    def _publish(self) -> Call:
        self._visits += 1
        code = self.rng.choice(sorted(self.facilities))
        facility = self.facilities[code]
        index = self.rng.randrange(len(self.citizens))
        at = _visit_time(self.rng, self._visits)
        tests = [t for t in PANEL if t in facility.tests][:TESTS_PER_VISIT]
        visit = Visit(index, self._visits, at, code, "local", "load-test", tuple(tests), None)
        patient_ref, registration = patient_entry(_patient(code, index, self.citizens[index]))
        performed = [self._performed(visit, test) for test in tests]
        entries = [registration, *visit_entries(visit, patient_ref, performed, self.tests),
                   *result_entries(visit, patient_ref, performed, self.tests, issued=to_fhir_instant(at))]
        body = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
        return Call("publish", code, "POST", "", orjson.dumps(body), citizen=index)

    def _performed(self, visit: Visit, test: str) -> PerformedTest:
        collected = visit.at + timedelta(minutes=20)
        ready = collected + timedelta(hours=self.tests[test].turnaround_hours.value)
        return PerformedTest(test, collected, ready, "final", False, self.rng.random(), visit.facility)

    def _search(self, facility: str, citizen: int) -> Call:
        ident = f"{NATIONAL_ID_SYSTEM}|{self.citizens[citizen].national_id}"
        return Call("search", facility, "GET", "Observation", params={"patient.identifier": ident, "_count": "50"},
                    citizen=citizen)

    def _check(self, facility: str, citizen: int) -> Call:
        at = _visit_time(self.rng, self._visits) + timedelta(days=1)
        codes = self.rng.sample(PANEL, 3)
        params = [{"name": "patient", "valueIdentifier": {"system": NATIONAL_ID_SYSTEM,
                                                          "value": self.citizens[citizen].national_id}},
                  {"name": "facility", "valueIdentifier": {"system": FACILITY_CODE_SYSTEM, "value": facility}},
                  {"name": "at", "valueDateTime": to_fhir_instant(at)}]
        params += [{"name": "code", "valueCoding": {"system": LOINC_SYSTEM, "code": c}} for c in codes]
        body = orjson.dumps({"resourceType": "Parameters", "parameter": params})
        return Call("check", facility, "POST", "$check-reuse", body, citizen=citizen)


def build_workload(settings: Settings, *, seed: int, citizens: int = 3000) -> Workload:
    """Facilities of the northern cluster, ``citizens`` synthetic residents, one seeded stream."""
    registry = load_facilities(settings.hospitals_dir)
    facilities = {code: f for code, f in registry.items()
                  if f.province_code in PROVINCES or f.kind == "central"}
    tables = load_population_tables(settings.data_dir / "population.yaml")
    share = {code: citizens // len(PROVINCES) for code in PROVINCES}
    people = generate_population(random.Random(f"{seed}:load:population"), tables=tables, residents=share, on=START)
    return Workload(facilities, load_tests(settings.data_dir / "tests.yaml"), people, random.Random(f"{seed}:load"))


def _patient(code: str, index: int, citizen: Citizen) -> dict:
    return patient(facility_code=code, mrn=f"{code}-L{index:07d}", national_id=citizen.national_id,
                   family=citizen.family, given=citizen.given_names, gender=citizen.sex,
                   birth_date=citizen.birth_date.isoformat())


def _visit_time(rng: random.Random, number: int) -> datetime:
    """Clinic hours of the days after ``START``: about a hundred visits a day."""
    day = START + timedelta(days=number // 100)
    return datetime.combine(day, time(7), tzinfo=VIETNAM_TZ) + timedelta(minutes=rng.randrange(9 * 60))
