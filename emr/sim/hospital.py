"""A simulated hospital's EMR as the hub sees it: a FHIR client for one facility.

It registers patients (IHE PIXm patient feed: conditional update by the facility's
MRN), publishes visits and results as transaction Bundles, asks ``$check-reuse`` at
order time and records the doctor's decisions. It talks HTTP to the hub, in-process
or over the network, exactly as a real hospital system would.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import httpx
import orjson

from emr.catalog import Facility
from emr.errors import EmrError
from emr.fhir import LOINC_SYSTEM
from emr.fhir.builders import patient
from emr.fhir.dates import to_fhir_instant
from emr.identity import FACILITY_CODE_SYSTEM, NATIONAL_ID_SYSTEM, mrn_system
from emr.sim.population import Citizen

FHIR_JSON = {"Content-Type": "application/fhir+json"}


class HubError(EmrError):
    """The hub refused or failed a request the simulated hospital sent."""

    status = 502
    issue_code = "transient"


@dataclass(frozen=True)
class HubAnswer:
    decision: str
    reason: str | None
    observation: str | None


@dataclass
class FacilityClient:
    facility: Facility
    http: httpx.Client
    requests: int = 0
    _patients: dict[int, str] = field(default_factory=dict)

    @property
    def code(self) -> str:
        return self.facility.code

    def mrn(self, citizen_index: int) -> str:
        return f"{self.code}-{citizen_index:07d}"

    def register(self, citizen_index: int, recorded: Citizen) -> str:
        """The hub's id of this facility's Patient for the citizen, registering on first visit."""
        if citizen_index in self._patients:
            return self._patients[citizen_index]
        mrn = self.mrn(citizen_index)
        body = patient(facility_code=self.code, mrn=mrn, national_id=recorded.national_id, family=recorded.family,
                       given=recorded.given_names, gender=recorded.sex, birth_date=recorded.birth_date.isoformat())
        response = self._send("PUT", f"Patient?identifier={mrn_system(self.code)}|{mrn}", body)
        self._patients[citizen_index] = response["id"]
        return response["id"]

    def check(self, national_id: str, loincs: list[str], at: datetime) -> dict[str, HubAnswer]:
        params = [{"name": "patient", "valueIdentifier": {"system": NATIONAL_ID_SYSTEM, "value": national_id}},
                  {"name": "facility", "valueIdentifier": {"system": FACILITY_CODE_SYSTEM, "value": self.code}},
                  {"name": "at", "valueDateTime": to_fhir_instant(at)}]
        params += [{"name": "code", "valueCoding": {"system": LOINC_SYSTEM, "code": c}} for c in loincs]
        answer = self._send("POST", "$check-reuse", {"resourceType": "Parameters", "parameter": params})
        return dict(_answer(result) for result in answer["parameter"])

    def transaction(self, entries: list[dict]) -> list[dict]:
        """Post a transaction Bundle; returns the response entries in order."""
        bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
        return self._send("POST", "", bundle)["entry"]

    def _send(self, method: str, path: str, body: dict) -> dict:
        self.requests += 1
        response = self.http.request(method, path, content=orjson.dumps(body), headers=FHIR_JSON)
        if response.status_code >= 400:
            raise HubError(f"{self.code}: {method} {path or '/'} answered {response.status_code}: "
                           f"{_diagnostics(response)}")
        return response.json()


def _answer(result: dict) -> tuple[str, HubAnswer]:
    parts = {p["name"]: p for p in result["part"]}
    observation = parts.get("observation", {}).get("valueReference", {}).get("reference")
    return parts["code"]["valueCoding"]["code"], HubAnswer(
        parts["decision"]["valueCode"], parts.get("reason", {}).get("valueCode"), observation)


def _diagnostics(response: httpx.Response) -> str:
    try:
        return "; ".join(i.get("diagnostics", "") for i in response.json().get("issue", []))
    except ValueError:
        return response.text[:200]
