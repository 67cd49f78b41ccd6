"""The order-time question: for each ordered test, reuse a recent result or repeat it?

``check`` fetches the person's candidate results with one indexed query
(``results.candidates``) and hands them to the pure rules in ``emr.reuse``. The
``$check-reuse`` operation and the CDS Hooks services both call it, so they can
never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from sqlalchemy.engine import Connection

from emr.catalog import Facility, LabTest
from emr.errors import Forbidden, InvalidInput
from emr.fhir import LOINC_SYSTEM
from emr.fhir.builders import facility_reference
from emr.fhir.dates import parse_interval, to_fhir_instant
from emr.hub import access, audit, results
from emr.hub.verification import registration_trusted
from emr.identity import FACILITY_CODE_SYSTEM, NATIONAL_ID_SYSTEM, parse_national_id
from emr.reuse import Decision, Order, PriorResult, ReusePolicy, decide


STRICTEST_LEVEL = 5
# Far more than any order set; a bound so one request cannot ask about thousands of codes.
MAX_TESTS_PER_QUESTION = 200


@dataclass(frozen=True)
class Catalogue:
    """The facility registry and test catalogue, as the hub needs them."""

    facilities: dict[str, Facility]
    tests: dict[str, LabTest]

    def lab_level(self, facility_code: str | None) -> int:
        facility = self.facilities.get(facility_code or "")
        return facility.lab.quality_level.value if facility else 0

    def policy(self, loinc: str) -> ReusePolicy:
        test = self.tests.get(loinc)
        if test is None:  # not in the catalogue: nothing says it may be shared
            return ReusePolicy(loinc, timedelta(0), shareable=False, positive_only=False, price_vnd=0)
        return ReusePolicy(loinc, timedelta(hours=test.validity_hours.value), shareable=test.shareable.value,
                          positive_only=test.positive_only, price_vnd=test.price_vnd.value)


@dataclass(frozen=True)
class CheckRequest:
    national_id: str
    facility_code: str
    loincs: list[str]
    at: datetime


def check(conn: Connection, catalogue: Catalogue, request: CheckRequest) -> list[Decision]:
    """Decide every ordered test. An ordering facility the hub does not know gets the
    strictest reading (only top-level labs recognised).

    The access rules apply as to a search: a facility asks only for its own orders, and
    sees other facilities' results only with a treatment relationship with the person;
    when the person refused sharing, another facility's result is refused (``consent``)."""
    access.require_scope("Observation", "s")
    if len(request.loincs) > MAX_TESTS_PER_QUESTION:
        raise InvalidInput(f"{len(request.loincs)} tests in one question; ask about at most "
                           f"{MAX_TESTS_PER_QUESTION}", location="code")
    request = _as_caller(request)
    decisions = _decide(conn, catalogue, request)
    audit.touched_person(conn, request.national_id,
                         [f"Observation/{d.result.observation_id}" for d in decisions if d.result])
    return decisions


def _as_caller(request: CheckRequest) -> CheckRequest:
    principal = access.current()
    if principal is None or request.facility_code in ("", principal.facility):
        return request if principal is None else replace(request, facility_code=principal.facility)
    raise Forbidden(f"facility {principal.facility} may ask only about its own orders, not facility "
                    f"{request.facility_code}'s", location="facility")


def _decide(conn: Connection, catalogue: Catalogue, request: CheckRequest) -> list[Decision]:
    known = request.facility_code in catalogue.facilities
    order_level = catalogue.lab_level(request.facility_code) if known else STRICTEST_LEVEL
    if not registration_trusted(conn, national_id=request.national_id, facility_code=request.facility_code):
        return [Decision(loinc, "repeat", "identity-unverified", price_vnd=catalogue.policy(loinc).price_vnd)
                for loinc in request.loincs]
    related, refused = access.sharing(conn, national_id=request.national_id)
    found = results.candidates(conn, national_id=request.national_id, loincs=request.loincs, at=request.at,
                               only_from=None if related else request.facility_code)
    priors = [PriorResult(f.observation_id, f.loinc, f.status, f.collected, f.performer_code,
                          catalogue.lab_level(f.performer_code), f.positive, f.identity_ok,
                          sharing_refused=refused and f.performer_code != request.facility_code) for f in found]
    return [decide(Order(loinc, request.at, request.facility_code, order_level), catalogue.policy(loinc), priors)
            for loinc in request.loincs]


# ---------------------------------------------------------------- Parameters in and out

def parse_parameters(body: object, *, now: datetime, catalogue: Catalogue) -> CheckRequest:
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
        raise InvalidInput("$check-reuse takes a Parameters resource", location="resourceType")
    listed = body.get("parameter") or []
    if not isinstance(listed, list):
        raise InvalidInput("Parameters.parameter must be a list", location="Parameters.parameter")
    params = [p for p in listed if isinstance(p, dict)]
    national_id = _identifier(params, "patient", NATIONAL_ID_SYSTEM)
    parse_national_id(national_id)
    facility = _identifier(params, "facility", FACILITY_CODE_SYSTEM)
    if facility not in catalogue.facilities:
        raise InvalidInput(f"facility {facility} is not in the hub's registry", location="facility")
    loincs = [p["valueCoding"].get("code") for p in params
              if p.get("name") == "code" and isinstance(p.get("valueCoding"), dict)
              and p["valueCoding"].get("system", LOINC_SYSTEM) == LOINC_SYSTEM]
    if not loincs or not all(isinstance(c, str) and c for c in loincs):
        raise InvalidInput("give at least one 'code' (valueCoding with a LOINC code)", location="Parameters.parameter")
    return CheckRequest(national_id, facility, list(dict.fromkeys(loincs)), _at(params, now))


def _identifier(params: list[dict], name: str, system: str) -> str:
    for p in params:
        ident = p.get("valueIdentifier") if p.get("name") == name else None
        if isinstance(ident, dict) and ident.get("system") == system and isinstance(ident.get("value"), str):
            return ident["value"]
    raise InvalidInput(f"parameter '{name}' must be a valueIdentifier with system {system}", location=name)


def _at(params: list[dict], now: datetime) -> datetime:
    for p in params:
        if p.get("name") == "at":
            text = p.get("valueDateTime")
            if not isinstance(text, str) or "T" not in text:
                raise InvalidInput("'at' must be a valueDateTime with a time", location="at")
            return datetime.fromtimestamp(parse_interval(text).low / 1000, tz=now.tzinfo)
    return now


def decisions_to_parameters(decisions: list[Decision]) -> dict:
    return {"resourceType": "Parameters", "parameter": [_result(d) for d in decisions]}


def _result(d: Decision) -> dict:
    parts: list[dict] = [{"name": "code", "valueCoding": {"system": LOINC_SYSTEM, "code": d.loinc}},
                         {"name": "decision", "valueCode": d.decision}]
    if d.reason:
        parts.append({"name": "reason", "valueCode": d.reason})
    if d.result:
        parts += [
            {"name": "observation", "valueReference": {"reference": f"Observation/{d.result.observation_id}"}},
            {"name": "performer", "valueReference": facility_reference(d.result.performer_code or "")},
            {"name": "collected", "valueDateTime": to_fhir_instant(d.result.collected)},
            {"name": "expires", "valueDateTime": to_fhir_instant(d.expires)},
        ]
    parts.append({"name": "priceVnd", "valueMoney": {"value": d.price_vnd, "currency": "VND"}})
    return {"name": "result", "part": parts}
