"""A simulated hospital's EMR as the hub sees it: a FHIR client for one facility.

It registers patients (IHE PIXm patient feed: conditional update by the facility's
MRN) and asks ``$check-reuse`` at order time, both while the clinician waits: a few
quick tries, then ``HubUnavailable``. Everything it publishes — visits, results, the
doctor's decisions, as transaction Bundles — goes through its store-and-forward
outbox (``emr.sim.outbox``), which keeps trying until the hub has it. It talks HTTP to
the hub, in-process or over the network, exactly as a real hospital system would.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

import httpx
import orjson

from emr.catalog import Facility
from emr.errors import EmrError
from emr.fhir import LOINC_SYSTEM
from emr.fhir.builders import patient
from emr.fhir.dates import to_fhir_instant
from emr.identity import FACILITY_CODE_SYSTEM, NATIONAL_ID_SYSTEM, mrn_system
from emr.sim.network import IDEMPOTENCY_KEY, Link
from emr.sim.outbox import Attempt, Courier, Message
from emr.sim.population import Citizen

FHIR_JSON = {"Content-Type": "application/fhir+json"}
RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
# An order-entry screen tries the hub this often, within seconds, before the clinician
# goes on without an answer (assumption).
WHILE_WAITING_ATTEMPTS = 4


class HubError(EmrError):
    """The hub refused or failed a request the simulated hospital sent."""

    status = 502
    issue_code = "transient"


class HubUnavailable(HubError):
    """The hub could not be reached, did not answer in time, or asked to come back later."""

    status = 503


@dataclass(frozen=True)
class HubAnswer:
    decision: str
    reason: str | None
    observation: str | None


@dataclass
class FacilityClient:
    facility: Facility
    http: httpx.Client
    courier: Courier | None = None  # the outbox every publication goes through
    link: Link | None = None  # the simulated network under ``http``, when there is one
    requests: int = 0
    _patients: dict[int, str] = field(default_factory=dict)

    @property
    def code(self) -> str:
        return self.facility.code

    def mrn(self, citizen_index: int) -> str:
        return f"{self.code}-{citizen_index:07d}"

    def patient(self, citizen_index: int, recorded: Citizen) -> dict:
        """This facility's Patient resource for the citizen, as its clerk registered them."""
        return patient(facility_code=self.code, mrn=self.mrn(citizen_index), national_id=recorded.national_id,
                       family=recorded.family, given=recorded.given_names, gender=recorded.sex,
                       birth_date=recorded.birth_date.isoformat())

    def register(self, citizen_index: int, recorded: Citizen) -> str:
        """The hub's id of this facility's Patient for the citizen, registering on first visit."""
        if citizen_index in self._patients:
            return self._patients[citizen_index]
        mrn = self.mrn(citizen_index)
        response = self._send("PUT", f"Patient?identifier={mrn_system(self.code)}|{mrn}",
                              self.patient(citizen_index, recorded))
        self._patients[citizen_index] = response["id"]
        return response["id"]

    def forget(self, citizen_index: int) -> None:
        """Drop the remembered registration of a citizen who will not come back in this run."""
        self._patients.pop(citizen_index, None)

    def check(self, national_id: str, loincs: list[str], at: datetime) -> dict[str, HubAnswer]:
        params = [{"name": "patient", "valueIdentifier": {"system": NATIONAL_ID_SYSTEM, "value": national_id}},
                  {"name": "facility", "valueIdentifier": {"system": FACILITY_CODE_SYSTEM, "value": self.code}},
                  {"name": "at", "valueDateTime": to_fhir_instant(at)}]
        params += [{"name": "code", "valueCoding": {"system": LOINC_SYSTEM, "code": c}} for c in loincs]
        answer = self._send("POST", "$check-reuse", {"resourceType": "Parameters", "parameter": params})
        return dict(_answer(result) for result in answer["parameter"])

    def publish(self, key: str, entries: list[dict]) -> None:
        """Hand a transaction Bundle to the outbox under ``key``; it is sent now or as soon as it can be."""
        if self.courier is None:
            raise HubError(f"{self.code}: no outbox to publish through")
        self.courier.publish(key, {"resourceType": "Bundle", "type": "transaction", "entry": entries})

    def idempotency_key(self, key: str) -> str:
        return f"{self.code}/{key}"

    def deliver(self, message: Message) -> Attempt:
        """One try at sending an outbox message (the courier decides what happens next)."""
        self.requests += 1
        headers = {**FHIR_JSON, IDEMPOTENCY_KEY: self.idempotency_key(message.key)}
        try:
            response = self.http.request("POST", "", content=orjson.dumps(message.body), headers=headers)
        except httpx.TransportError as error:
            return Attempt("retry", f"{type(error).__name__}: {error}")
        if response.status_code < 300:
            return Attempt("delivered")
        error = f"{response.status_code}: {_diagnostics(response)}"
        if response.status_code in RETRYABLE_STATUSES:
            return Attempt("retry", error, _retry_after(response))
        return Attempt("rejected", error)

    def _send(self, method: str, path: str, body: dict) -> dict:
        """Send while someone waits: a few quick tries, then ``HubUnavailable``."""
        problem = ""
        for _ in range(WHILE_WAITING_ATTEMPTS):
            self.requests += 1
            try:
                response = self.http.request(method, path, content=orjson.dumps(body), headers=FHIR_JSON)
            except httpx.TransportError as error:
                problem = f"{type(error).__name__}: {error}"
                continue
            if response.status_code in RETRYABLE_STATUSES:
                problem = f"answered {response.status_code}"
                continue
            if response.status_code >= 400:
                raise HubError(f"{self.code}: {method} {path or '/'} answered {response.status_code}: "
                               f"{_diagnostics(response)}")
            return response.json()
        raise HubUnavailable(f"{self.code}: {method} {path or '/'} failed {WHILE_WAITING_ATTEMPTS} times ({problem})")


def _answer(result: dict) -> tuple[str, HubAnswer]:
    parts = {p["name"]: p for p in result["part"]}
    observation = parts.get("observation", {}).get("valueReference", {}).get("reference")
    return parts["code"]["valueCoding"]["code"], HubAnswer(
        parts["decision"]["valueCode"], parts.get("reason", {}).get("valueCode"), observation)


def _retry_after(response: httpx.Response) -> timedelta | None:
    value = response.headers.get("Retry-After", "")
    return timedelta(seconds=int(value)) if value.isdigit() else None


def _diagnostics(response: httpx.Response) -> str:
    try:
        return "; ".join(i.get("diagnostics", "") for i in response.json().get("issue", []))
    except ValueError:
        return response.text[:200]
