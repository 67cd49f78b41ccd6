"""What a simulated hospital sends to the hub, as transaction Bundle entries.

Every resource carries the facility's own identifier for it and is created with
``ifNoneExist`` on that identifier, so sending the same Bundle twice (a retry after a
lost answer) stores it once. Each Bundle also carries the facility's Patient as a
conditional create on its MRN and refers to it by that entry's ``urn:uuid:``, so a
Bundle written while the hub was unreachable needs no id from the hub to be sent later.
Result values are drawn from the catalogue's hints with the random number the engine
drew for that test, so they do not depend on the hub.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from statistics import NormalDist

from emr.catalog import LabTest
from emr.fhir.builders import (
    encounter,
    lab_observation,
    referral,
    sharing_refusal,
    results_report,
    reuse_decision,
    test_order,
)
from emr.fhir.dates import to_fhir_instant
from emr.identity import local_system
from emr.sim.journeys import Visit

INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"


@dataclass(slots=True)
class PerformedTest:
    test: str
    collected: datetime
    ready: datetime
    status: str
    positive: bool
    value_draw: float
    facility: str
    message: str | None = None  # the Idempotency-Key of the Bundle that publishes the result


def _key(visit: Visit, *parts: str) -> str:
    return "-".join([str(visit.citizen), str(visit.number), *parts])


def _ident(facility: str, kind: str, value: str) -> dict:
    return {"system": local_system(facility, kind), "value": value}


def _urn(identifier: dict) -> str:
    return f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, identifier['system'] + '|' + identifier['value'])}"


def _post(resource: dict, identifier: dict) -> dict:
    type_ = resource["resourceType"]
    return {"fullUrl": _urn(identifier), "resource": resource,
            "request": {"method": "POST", "url": type_,
                        "ifNoneExist": f"identifier={identifier['system']}|{identifier['value']}"}}


def patient_entry(patient: dict) -> tuple[str, dict]:
    """The facility's Patient as a conditional create on its MRN (the first identifier),
    and the reference the other entries use for it."""
    entry = _post(patient, patient["identifier"][0])
    return entry["fullUrl"], entry


def visit_entries(visit: Visit, patient_ref: str, performed: list[PerformedTest],
                  tests: dict[str, LabTest]) -> list[dict]:
    """The encounter, an order per performed test and, when referring on, the referral and its Task."""
    enc_id = _ident(visit.facility, "encounter", _key(visit))
    entries = [_post(encounter(patient_ref=patient_ref, facility_code=visit.facility,
                               start=to_fhir_instant(visit.at), identifier=enc_id), enc_id)]
    for p in performed:
        order_id = _ident(visit.facility, "order", _key(visit, p.test))
        entries.append(_post(test_order(patient_ref=patient_ref, facility_code=visit.facility, loinc=p.test,
                                        display=tests[p.test].loinc_display, authored=to_fhir_instant(visit.at),
                                        identifier=order_id, encounter_ref=_urn(enc_id)), order_id))
    if visit.refers_to:
        ref_id = _ident(visit.facility, "referral", _key(visit))
        request, task = referral(patient_ref=patient_ref, from_code=visit.facility, to_code=visit.refers_to,
                                 authored=to_fhir_instant(visit.at), identifier=ref_id, reason=visit.condition)
        task["focus"] = {"reference": _urn(ref_id)}
        entries += [_post(request, ref_id), _post(task, task["identifier"][0])]
    return entries


def result_entries(visit: Visit, patient_ref: str, performed: list[PerformedTest], tests: dict[str, LabTest],
                   *, issued: str) -> list[dict]:
    """One Observation per performed test (panels with their members) and a report over them."""
    entries: list[dict] = []
    top_refs: list[str] = []
    for p in performed:
        spec = tests[p.test]
        members = [_observation(visit, patient_ref, p, tests[m]) for m in spec.members]
        main = _observation(visit, patient_ref, p, spec)
        if members:
            main[0]["hasMember"] = [{"reference": m[1]["fullUrl"]} for m in members]
        entries += [entry for _, entry in members] + [main[1]]
        top_refs.append(main[1]["fullUrl"])
    report_id = _ident(visit.facility, "report", _key(visit))
    report = results_report(patient_ref=patient_ref, facility_code=visit.facility, issued=issued,
                            collected=to_fhir_instant(performed[0].collected), identifier=report_id,
                            result_refs=top_refs)
    return entries + [_post(report, report_id)]


def _observation(visit: Visit, patient_ref: str, p: PerformedTest, spec: LabTest) -> tuple[dict, dict]:
    identifier = _ident(visit.facility, "result", _key(visit, spec.loinc))
    body = lab_observation(patient_ref=patient_ref, facility_code=visit.facility, loinc=spec.loinc,
                           display=spec.loinc_display, collected=to_fhir_instant(p.collected), status=p.status,
                           category="imaging" if spec.category == "imaging" else "laboratory",
                           value=_value(spec, p), identifier=identifier)
    entry = _post(body, identifier)
    return entry["resource"], entry


def _value(spec: LabTest, p: PerformedTest) -> dict:
    if spec.value_type == "quantity" and spec.normal_mean and spec.normal_sd:
        draw = min(max(p.value_draw, 1e-6), 1 - 1e-6)
        value = NormalDist(spec.normal_mean.value, spec.normal_sd.value).inv_cdf(draw)
        return {"valueQuantity": {"value": round(max(value, 0.0), 2), "unit": spec.unit,
                                  "system": "http://unitsofmeasure.org", "code": spec.unit}}
    if spec.value_type == "coded" and spec.answers:
        answer = _coded_answer(spec, p)
        flag = "NEG" if answer == spec.negative_answer else "POS"
        return {"valueString": answer,
                "interpretation": [{"coding": [{"system": INTERPRETATION, "code": flag}]}]} if spec.negative_answer \
            else {"valueString": answer}
    if spec.value_type == "imaging":
        return {"valueString": "Không thấy bất thường cấp tính (no acute abnormality)"}
    return {}


def _coded_answer(spec: LabTest, p: PerformedTest) -> str:
    if spec.negative_answer is None:
        return spec.answers[int(p.value_draw * len(spec.answers)) % len(spec.answers)]
    if not p.positive:
        return spec.negative_answer
    others = [a for a in spec.answers if a != spec.negative_answer]
    return others[int(p.value_draw * len(others)) % len(others)]


def decision_entry(visit: Visit, patient_ref: str, observation_ref: str | None, test: str, *,
                   reused: bool, reason: str | None) -> dict | None:
    if observation_ref is None:
        return None
    identifier = _ident(visit.facility, "reuse-decision", _key(visit, test))
    issue = reuse_decision(patient_ref=patient_ref, facility_code=visit.facility, order_ref=None,
                           observation_ref=observation_ref, identified=to_fhir_instant(visit.at),
                           reused=reused, override_reason=reason)
    issue["identifier"] = [identifier]
    return _post(issue, identifier)


def consent_entry(visit: Visit, patient_ref: str) -> dict:
    """The patient's refusal of sharing, as this facility records it (once: conditional on its identifier)."""
    identifier = _ident(visit.facility, "consent", str(visit.citizen))
    return _post(sharing_refusal(patient_ref=patient_ref, facility_code=visit.facility,
                                 recorded=to_fhir_instant(visit.at), identifier=identifier), identifier)
