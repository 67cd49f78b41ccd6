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
