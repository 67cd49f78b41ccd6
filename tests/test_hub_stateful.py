"""The hub against a simple in-memory model: facilities register citizens, publish and amend
results, repeat conditional creates, search and ask ``$check-reuse``; after every step the
hub and the model must agree.

The model is dicts: who is registered where, and each result's status and version. Its
reuse answers come from the pure rules (``emr.reuse.decide``) applied to the model's
results, so a disagreement points at the hub's storage, indexing or fact keeping, not
at the rules. The hub runs open (no tokens): access rules have tests of their own.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone

import orjson
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, consumes, invariant, precondition, rule

from emr.fhir.builders import lab_observation
from emr.hub.ordering import Catalogue
from emr.identity import FACILITY_CODE_SYSTEM, NATIONAL_ID_SYSTEM, mrn_system
from emr.reuse import Order, PriorResult, decide
from emr.testing import Citizen, citizens, patient_of
from tests.conftest import FixedClock, make_client

HDR = {"Content-Type": "application/fhir+json"}
T0 = datetime(2025, 9, 1, 1, 0, tzinfo=timezone.utc)
FACILITIES = ("01001", "27001", "27011", "19001", "79001")
TESTS = ("4548-4", "2345-7")  # HbA1c (60 days), glucose (24 hours)
STATUSES = ("final", "preliminary", "amended", "corrected", "entered-in-error")
MAX_RESULTS_PER_CITIZEN = 8  # the hub weighs the ten newest results of a test


@dataclass(frozen=True)
class Result:
    citizen: str
    facility: str
    loinc: str
    collected: datetime
    status: str
    version: int


class HubMachine(RuleBasedStateMachine):
    registrations = Bundle("registrations")
    results = Bundle("results")

    def __init__(self) -> None:
        super().__init__()
        self.directory = tempfile.mkdtemp(prefix="hub-stateful-")
        self.client = make_client(f"sqlite:///{self.directory}/hub.db", FixedClock(T0 + timedelta(days=400)),
                                  auth=False)
        self.catalogue: Catalogue = self.client.app.state.hub.catalogue
        self.patients: dict[tuple[str, str], str] = {}  # (national ID, facility) → Patient id
        self.people: dict[str, Citizen] = {}
        self.observations: dict[str, Result] = {}

    def teardown(self) -> None:
        self.client.app.state.hub.engine.dispose()
        shutil.rmtree(self.directory, ignore_errors=True)

    # ------------------------------------------------------------ rules
    @rule(target=registrations, citizen=citizens(), facility=st.sampled_from(FACILITIES), again=st.booleans())
    def register(self, citizen: Citizen, facility: str, again: bool) -> tuple[str, str]:
        """The PIXm feed: PUT Patient?identifier=<MRN>; a citizen already known may be reused."""
        if again and self.people:
            citizen = self.people[sorted(self.people)[0]]
        else:
            citizen = replace(citizen, national_id=citizen.national_id[:6] + f"{len(self.people):06d}")
        self.people[citizen.national_id] = citizen
        key = (citizen.national_id, facility)
        body = patient_of(citizen, facility_code=facility, mrn=f"MRN-{citizen.national_id}")
        answer = self.client.put(f"/fhir/Patient?identifier={mrn_system(facility)}|MRN-{citizen.national_id}",
                                 content=orjson.dumps(body), headers=HDR)
        assert answer.status_code == (200 if key in self.patients else 201), answer.text
        assert self.patients.setdefault(key, answer.json()["id"]) == answer.json()["id"]
        return key

    @rule(key=registrations)
    def conditional_create_again(self, key: tuple[str, str]) -> None:
        nid, facility = key
        body = patient_of(self.people[nid], facility_code=facility, mrn=f"MRN-{nid}")
        answer = self.client.post("/fhir/Patient", content=orjson.dumps(body),
                                  headers={**HDR, "If-None-Exist": f"identifier={mrn_system(facility)}|MRN-{nid}"})
        assert (answer.status_code, answer.json()["id"]) == (200, self.patients[key]), answer.text

    @rule(target=results, key=registrations, loinc=st.sampled_from(TESTS), hours=st.integers(0, 24 * 90),
          status=st.sampled_from(STATUSES[:2]))
    def publish(self, key: tuple[str, str], loinc: str, hours: int, status: str) -> str:
        nid, facility = key
        if sum(r.citizen == nid for r in self.observations.values()) >= MAX_RESULTS_PER_CITIZEN:
            return "none"
        collected = T0 + timedelta(hours=hours)
        body = lab_observation(patient_ref=f"Patient/{self.patients[key]}", facility_code=facility, loinc=loinc,
                               display=loinc, collected=collected.isoformat(), status=status)
        answer = self.client.post("/fhir/Observation", content=orjson.dumps(body), headers=HDR)
        assert answer.status_code == 201, answer.text
        self.observations[answer.json()["id"]] = Result(nid, facility, loinc, collected, status, 1)
        return answer.json()["id"]

    @rule(oid=results, status=st.sampled_from(STATUSES))
    def amend(self, oid: str, status: str) -> None:
        if oid not in self.observations:
            return
        known = self.observations[oid]
        if status == known.status:  # always a change, so that a lost amendment shows
            status = STATUSES[(STATUSES.index(status) + 1) % len(STATUSES)]
        current = self.client.get(f"/fhir/Observation/{oid}").json()
        answer = self.client.put(f"/fhir/Observation/{oid}", content=orjson.dumps({**current, "status": status}),
                                 headers={**HDR, "If-Match": f'W/"{current["meta"]["versionId"]}"'})
        assert answer.status_code == 200, answer.text
        del self.observations[oid]  # an amendment is published anew: it is the newer of two results of one moment
        self.observations[oid] = replace(known, status=status, version=known.version + 1)

    @rule(oid=consumes(results))
    def delete(self, oid: str) -> None:
        if oid not in self.observations:
            return
        assert self.client.delete(f"/fhir/Observation/{oid}").status_code in (200, 204)
        del self.observations[oid]

    @precondition(lambda self: self.people)
    @rule(data=st.data(), facility=st.sampled_from(FACILITIES), loinc=st.sampled_from(TESTS),
          hours=st.integers(0, 24 * 120))
    def check_reuse(self, data: st.DataObject, facility: str, loinc: str, hours: int) -> None:
        nid = data.draw(st.sampled_from(sorted(self.people)))
        at = T0 + timedelta(hours=hours, minutes=30)
        answer = self.client.post("/fhir/$check-reuse", headers=HDR, content=orjson.dumps({
            "resourceType": "Parameters", "parameter": [
                {"name": "patient", "valueIdentifier": {"system": NATIONAL_ID_SYSTEM, "value": nid}},
                {"name": "facility", "valueIdentifier": {"system": FACILITY_CODE_SYSTEM, "value": facility}},
                {"name": "code", "valueCoding": {"system": "http://loinc.org", "code": loinc}},
                {"name": "at", "valueDateTime": at.isoformat()}]}))
        assert answer.status_code == 200, answer.text
        parts = {p["name"]: p for p in answer.json()["parameter"][0]["part"]}
        got = (parts["decision"]["valueCode"], parts.get("reason", {}).get("valueCode"),
               parts.get("observation", {}).get("valueReference", {}).get("reference"))
        assert got == self._expected(nid, facility, loinc, at), answer.text

    def _expected(self, nid: str, facility: str, loinc: str, at: datetime) -> tuple:
        published = reversed(self.observations.items())  # the hub hands over the latest published first
        priors = [PriorResult(oid, r.loinc, r.status, r.collected, r.facility, self.catalogue.lab_level(r.facility),
                              None) for oid, r in published if r.citizen == nid]
        order = Order(loinc, at, facility, self.catalogue.lab_level(facility))
        decision = decide(order, self.catalogue.policy(loinc), priors)
        reference = f"Observation/{decision.result.observation_id}" if decision.result else None
        return decision.decision, decision.reason, reference

    # ------------------------------------------------------------ invariants
    @invariant()
    def one_person_links_every_registration(self) -> None:
        for nid in self.people:
            bundle = self.client.get("/fhir/Person", params={"identifier": f"{NATIONAL_ID_SYSTEM}|{nid}"}).json()
            wanted = {f"Patient/{pid}" for (n, _), pid in self.patients.items() if n == nid}
            assert bundle["total"] == (1 if wanted else 0)
            if wanted:
                links = [link["target"]["reference"] for link in bundle["entry"][0]["resource"]["link"]]
                assert sorted(links) == sorted(wanted)

    @invariant()
    def the_chain_search_finds_every_facilitys_results(self) -> None:
        for nid in self.people:
            bundle = self.client.get("/fhir/Observation", params={
                "patient.identifier": f"{NATIONAL_ID_SYSTEM}|{nid}", "_count": "100"}).json()
            found = {e["resource"]["id"]: e["resource"] for e in bundle.get("entry", [])}
            mine = {oid: r for oid, r in self.observations.items() if r.citizen == nid}
            assert found.keys() == mine.keys() and bundle["total"] == len(mine)
            for oid, result in mine.items():
                assert (found[oid]["status"], found[oid]["meta"]["versionId"]) == (result.status, str(result.version))


TestHubAgainstModel = HubMachine.TestCase
TestHubAgainstModel.settings = settings(max_examples=8, stateful_step_count=10, deadline=None)
