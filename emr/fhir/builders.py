"""Builders for the clinical resources the project exchanges, as plain FHIR JSON dicts.

The simulator, the tests and the test kit all build their Patients, Observations and
ServiceRequests here, so there is one idea of what a well-formed resource of this
project looks like. Every builder's output passes ``emr.fhir.validate_resource``.
"""

from __future__ import annotations

from emr.identity import FACILITY_CODE_SYSTEM, NATIONAL_ID_SYSTEM, mrn_system

LOINC = "http://loinc.org"
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
        "code": {"coding": [{"system": LOINC, "code": loinc, "display": display}], "text": display},
        "subject": {"reference": patient_ref},
        "effectiveDateTime": collected,
        "performer": [facility_reference(facility_code)],
    }
    if identifier:
        observation["identifier"] = [identifier]
    observation.update(value or {})
    return observation
