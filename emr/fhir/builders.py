"""Builders for the clinical resources the project exchanges, as plain FHIR JSON dicts.

The simulator, the tests and the test kit all build their Patients, Observations and
ServiceRequests here, so there is one idea of what a well-formed resource of this
project looks like. Every builder's output passes ``emr.fhir.validate_resource``.
"""

from __future__ import annotations

from emr.catalog import Facility
from emr.fhir.profiles import LOINC_SYSTEM
from emr.identity import FACILITY_CODE_SYSTEM, NATIONAL_ID_SYSTEM, mrn_system

OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"


def facility_reference(code: str) -> dict:
    """A logical reference to a facility by its code (no server id needed)."""
    return {"type": "Organization", "identifier": {"system": FACILITY_CODE_SYSTEM, "value": code}}


def patient(*, facility_code: str, mrn: str, national_id: str | None, family: str, given: str,
            gender: str, birth_date: str, other_identifiers: list[dict] | None = None) -> dict:
    identifiers = [{"use": "usual", "system": mrn_system(facility_code), "value": mrn}]
    if national_id:
        identifiers.append({"use": "official", "system": NATIONAL_ID_SYSTEM, "value": national_id})
    identifiers.extend(other_identifiers or [])
    return {
        "resourceType": "Patient",
        "identifier": identifiers,
        "name": [{"use": "official", "family": family, "given": given.split(), "text": f"{family} {given}"}],
        "gender": gender,
        "birthDate": birth_date,
        "managingOrganization": facility_reference(facility_code),
    }


def lab_observation(*, patient_ref: str, facility_code: str, loinc: str, display: str, collected: str,
                    status: str = "final", category: str = "laboratory", value: dict | None = None,
                    identifier: dict | None = None) -> dict:
    """A result; ``collected`` is the specimen-collection time (effectiveDateTime)."""
    observation = {
        "resourceType": "Observation",
        "status": status,
        "category": [{"coding": [{"system": OBSERVATION_CATEGORY, "code": category}]}],
        "code": {"coding": [{"system": LOINC_SYSTEM, "code": loinc, "display": display}], "text": display},
        "subject": {"reference": patient_ref},
        "effectiveDateTime": collected,
        "performer": [facility_reference(facility_code)],
    }
    if identifier:
        observation["identifier"] = [identifier]
    observation.update(value or {})
    return observation


LAB_LEVEL_URL = "urn:emr:extension:lab-quality-level"
ISO15189_URL = "urn:emr:extension:iso15189-accredited"
EMR_LIVE_URL = "urn:emr:extension:emr-go-live"


def organization(facility: Facility) -> dict:
    """A facility of the registry as the Organization the hub serves (id = facility code)."""
    extensions = [
        {"url": LAB_LEVEL_URL, "valueInteger": facility.lab.quality_level.value},
        {"url": ISO15189_URL, "valueBoolean": facility.lab.iso15189.value},
    ]
    if facility.emr.go_live is not None:
        extensions.append({"url": EMR_LIVE_URL, "valueDate": facility.emr.go_live.value.isoformat()})
    return {
        "resourceType": "Organization",
        "id": facility.code,
        "extension": extensions,
        "identifier": [{"use": "official", "system": FACILITY_CODE_SYSTEM, "value": facility.code}],
        "active": True,
        "type": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/organization-type",
                              "code": "prov", "display": "Healthcare Provider"}]}],
        "name": facility.name_vi,
        "alias": [facility.name_en],
        "address": [{"state": facility.province_2025, "country": "VN"}],
    }


REFERRAL_CODE = {"system": "http://snomed.info/sct", "code": "3457005", "display": "Patient referral"}
REUSE_DECISION_SYSTEM = "urn:emr:code:reuse-decision"
OVERRIDE_REASON_SYSTEM = "urn:emr:code:reuse-override"


def encounter(*, patient_ref: str, facility_code: str, start: str, identifier: dict) -> dict:
    return {
        "resourceType": "Encounter",
        "identifier": [identifier],
        "status": "finished",
        "class": {"system": ACT_CODE, "code": "AMB", "display": "ambulatory"},
        "subject": {"reference": patient_ref},
        "period": {"start": start},
        "serviceProvider": facility_reference(facility_code),
    }


def test_order(*, patient_ref: str, facility_code: str, loinc: str, display: str, authored: str,
               identifier: dict, encounter_ref: str | None = None) -> dict:
    order = {
        "resourceType": "ServiceRequest",
        "identifier": [identifier],
        "status": "completed",
        "intent": "order",
        "code": {"coding": [{"system": LOINC_SYSTEM, "code": loinc, "display": display}]},
        "subject": {"reference": patient_ref},
        "authoredOn": authored,
        "requester": facility_reference(facility_code),
    }
    if encounter_ref:
        order["encounter"] = {"reference": encounter_ref}
    return order


def referral(*, patient_ref: str, from_code: str, to_code: str, authored: str, identifier: dict,
             reason: str) -> tuple[dict, dict]:
    """A referral as a ServiceRequest and the Task that asks the receiving facility to act on it."""
    request = {
        "resourceType": "ServiceRequest",
        "identifier": [identifier],
        "status": "active",
        "intent": "order",
        "category": [{"coding": [REFERRAL_CODE]}],
        "code": {"coding": [REFERRAL_CODE], "text": reason},
        "subject": {"reference": patient_ref},
        "authoredOn": authored,
        "requester": facility_reference(from_code),
        "performer": [facility_reference(to_code)],
    }
    task = {
        "resourceType": "Task",
        "identifier": [{**identifier, "value": identifier["value"] + "-task"}],
        "status": "requested",
        "intent": "order",
        "for": {"reference": patient_ref},
        "authoredOn": authored,
        "requester": facility_reference(from_code),
        "owner": facility_reference(to_code),
    }
    return request, task


def results_report(*, patient_ref: str, facility_code: str, issued: str, collected: str, identifier: dict,
                   result_refs: list[str]) -> dict:
    return {
        "resourceType": "DiagnosticReport",
        "identifier": [identifier],
        "status": "final",
        "code": {"coding": [{"system": LOINC_SYSTEM, "code": "11502-2", "display": "Laboratory report"}]},
        "subject": {"reference": patient_ref},
        "effectiveDateTime": collected,
        "issued": issued,
        "performer": [facility_reference(facility_code)],
        "result": [{"reference": ref} for ref in result_refs],
    }


def reuse_decision(*, patient_ref: str, facility_code: str, order_ref: str | None, observation_ref: str,
                   identified: str, reused: bool, override_reason: str | None = None) -> dict:
    """The treating doctor's decision on an offered result, as a DetectedIssue."""
    action = {"system": REUSE_DECISION_SYSTEM, "code": "reused" if reused else "repeated",
              "display": "Result reused" if reused else "Test repeated"}
    mitigation: dict = {"action": {"coding": [action]}, "date": identified,
                        "author": facility_reference(facility_code)}
    if override_reason:
        mitigation["action"]["coding"].append({"system": OVERRIDE_REASON_SYSTEM, "code": override_reason})
    implicated = [{"reference": observation_ref}] + ([{"reference": order_ref}] if order_ref else [])
    return {
        "resourceType": "DetectedIssue",
        "status": "final",
        "code": {"coding": [{"system": REUSE_DECISION_SYSTEM, "code": "duplicate-test",
                             "display": "Recent result available from another facility"}]},
        "patient": {"reference": patient_ref},
        "identifiedDateTime": identified,
        "author": facility_reference(facility_code),
        "implicated": implicated,
        "mitigation": [mitigation],
    }


CONSENT_SCOPE = {"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy",
                 "display": "Privacy Consent"}
CONSENT_CATEGORY = {"system": "http://loinc.org", "code": "59284-0", "display": "Patient Consent"}
OPT_OUT = {"system": ACT_CODE, "code": "OPTOUT", "display": "opt-out"}


def sharing_refusal(*, patient_ref: str, facility_code: str, recorded: str, identifier: dict) -> dict:
    """The patient's refusal to have their records shared with other facilities, as recorded
    by one facility (e.g. on a request the patient made in VNeID): a Consent that denies."""
    return {
        "resourceType": "Consent",
        "identifier": [identifier],
        "status": "active",
        "scope": {"coding": [CONSENT_SCOPE]},
        "category": [{"coding": [CONSENT_CATEGORY]}],
        "patient": {"reference": patient_ref},
        "dateTime": recorded,
        "organization": [facility_reference(facility_code)],
        "policyRule": {"coding": [OPT_OUT], "text": "Refuses sharing with other facilities (Decree 13/2023/NĐ-CP)"},
        "provision": {"type": "deny"},
    }
