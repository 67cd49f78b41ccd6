"""The project's own checks on resource values, beyond what the R4B models enforce.

``fhir.resources`` checks shape and primitive formats but accepts, for example,
``Observation.status = "bogus"`` and an empty ``code``. The hub needs more: every
result must say which test it is (LOINC), whose it is, when the specimen was taken
and which laboratory produced it, or it cannot be found and reused at order time.

:func:`check_profile` dispatches on ``resourceType`` to one small function per type;
each returns problems with a FHIRPath-like location, and none raises on malformed
input (the structural checks report the malformation). Types without a profile here
get an empty list.

The value sets below are the fixed codes of the FHIR R4B specification.
"""

from __future__ import annotations

import re
import reprlib
from collections.abc import Callable
from datetime import datetime

from emr.errors import InvalidNationalId, Problem
from emr.identity import (
    FACILITY_CODE_SYSTEM,
    NATIONAL_ID_SYSTEM,
    parse_national_id,
)

LOINC_SYSTEM = "http://loinc.org"
UCUM_SYSTEM = "http://unitsofmeasure.org"

# R4B value sets (required bindings)
ADMINISTRATIVE_GENDER = frozenset({"male", "female", "other", "unknown"})
ENCOUNTER_STATUS = frozenset(
    {"planned", "arrived", "triaged", "in-progress", "onleave", "finished", "cancelled", "entered-in-error", "unknown"}
)
REQUEST_STATUS = frozenset({"draft", "active", "on-hold", "revoked", "completed", "entered-in-error", "unknown"})
REQUEST_INTENT = frozenset(
    {
        "proposal", "plan", "directive", "order", "original-order", "reflex-order",
        "filler-order", "instance-order", "option",
    }
)  # fmt: skip
OBSERVATION_STATUS = frozenset(
    {"registered", "preliminary", "final", "amended", "corrected", "cancelled", "entered-in-error", "unknown"}
)
DIAGNOSTIC_REPORT_STATUS = frozenset(
    {
        "registered", "partial", "preliminary", "final", "amended", "corrected", "appended",
        "cancelled", "entered-in-error", "unknown",
    }
)  # fmt: skip

_LOINC_CODE = re.compile(r"[0-9]{1,7}-[0-9]")
_FACILITY_CODE = re.compile(r"[0-9]{5}")
# A full FHIR dateTime down to the second, with a time zone.
_ZONED_DATE_TIME = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})"
)
# Relative or absolute literal reference: [base/]Type/id[/_history/vid]
_LITERAL_REFERENCE = re.compile(
    r"(?:[A-Za-z][A-Za-z0-9+.-]*://\S+/)?(?P<type>[A-Z][A-Za-z]+)/[A-Za-z0-9.-]{1,64}(?:/_history/[A-Za-z0-9.-]{1,64})?"
)
# A reference to another entry of the same Bundle: its type cannot be seen.
_BUNDLE_LOCAL_REFERENCE = re.compile(r"urn:(?:uuid|oid):\S+")
_SHOWN = 60  # characters of a bad value quoted in a message


def check_profile(resource: dict) -> list[Problem]:
    """Every profile problem of a resource; an empty list for types without a profile."""
    if not isinstance(resource, dict):
        return []
    resource_type = resource.get("resourceType")
    check = _CHECKS.get(resource_type) if isinstance(resource_type, str) else None
    return check(resource) if check else []


# --- one function per resource type --------------------------------------------------


def _patient(resource: dict) -> list[Problem]:
    problems = []
    identifiers = _list(resource.get("identifier"))
    if not any(_text(_field(i, "system")) and _text(_field(i, "value")) for i in identifiers):
        problems.append(
            Problem(
                "needs at least one identifier with a system and a value "
                "(national ID, passport, insurance number or a facility MRN)",
                "Patient.identifier",
                "required",
            )
        )
    problems += _in_value_set(resource, "Patient", "gender", ADMINISTRATIVE_GENDER, required=False)
    for index, identifier in enumerate(identifiers):
        if _field(identifier, "system") == NATIONAL_ID_SYSTEM:
            problems += _national_id_problems(resource, identifier, f"Patient.identifier[{index}].value")
    return problems


def _national_id_problems(patient: dict, identifier: dict, location: str) -> list[Problem]:
    """A malformed number is rejected. Demographics that contradict a well-formed number
    are not: the hub links such a record and flags it for review (registration errors
    happen, and dropping the record would lose clinical data)."""
    try:
        parse_national_id(identifier.get("value"))
    except InvalidNationalId as error:
        return [Problem(error.message, location, "value")]
    return []


def _organization(resource: dict) -> list[Problem]:
    problems = []
    facility_ids = [
        (index, identifier)
        for index, identifier in enumerate(_list(resource.get("identifier")))
        if _field(identifier, "system") == FACILITY_CODE_SYSTEM
    ]
    if not facility_ids:
        problems.append(
            Problem(
                f"needs an identifier with system {FACILITY_CODE_SYSTEM} (the 5-digit insurance facility code)",
                "Organization.identifier",
                "required",
            )
        )
    for index, identifier in facility_ids:
        problems += _facility_code_problems(identifier.get("value"), f"Organization.identifier[{index}].value")
    if not _text(resource.get("name")):
        problems.append(Problem("name is required", "Organization.name", "required"))
    return problems


def _encounter(resource: dict) -> list[Problem]:
    problems = _in_value_set(resource, "Encounter", "status", ENCOUNTER_STATUS)
    klass = resource.get("class")
    if not (isinstance(klass, dict) and _text(klass.get("code"))):
        problems.append(
            Problem("class is required: a Coding with a code (e.g. AMB, IMP, EMER)", "Encounter.class", "required")
        )
    problems += reference_problems(resource.get("subject"), "Patient", "Encounter.subject")
    return problems


def _service_request(resource: dict) -> list[Problem]:
    problems = _in_value_set(resource, "ServiceRequest", "status", REQUEST_STATUS)
    problems += _in_value_set(resource, "ServiceRequest", "intent", REQUEST_INTENT)
    problems += _coded_problems(resource.get("code"), "ServiceRequest.code", "the ordered test")
    problems += reference_problems(resource.get("subject"), "Patient", "ServiceRequest.subject")
    return problems


def _observation(resource: dict) -> list[Problem]:
    """A lab or imaging result. ``category`` is recommended but not required."""
    problems = _in_value_set(resource, "Observation", "status", OBSERVATION_STATUS)
    problems += _loinc_problems(resource.get("code"))
    problems += reference_problems(resource.get("subject"), "Patient", "Observation.subject")
    collected = resource.get("effectiveDateTime")
    if collected is None:
        problems.append(
            Problem(
                "effectiveDateTime is required: the specimen-collection time, from which a result's validity is counted",
                "Observation.effectiveDateTime",
                "required",
            )
        )
    else:
        problems += _zoned_date_time_problems(collected, "Observation.effectiveDateTime", "the specimen-collection time")
    problems += _performer_problems(resource, "Observation")
    return problems


def _diagnostic_report(resource: dict) -> list[Problem]:
    problems = _in_value_set(resource, "DiagnosticReport", "status", DIAGNOSTIC_REPORT_STATUS)
    problems += _coded_problems(resource.get("code"), "DiagnosticReport.code", "the report")
    problems += reference_problems(resource.get("subject"), "Patient", "DiagnosticReport.subject")
    problems += _report_effective_problems(resource)
    problems += _performer_problems(resource, "DiagnosticReport")
    for index, result in enumerate(_list(resource.get("result"))):
        problems += reference_problems(result, "Observation", f"DiagnosticReport.result[{index}]")
    return problems


def _report_effective_problems(resource: dict) -> list[Problem]:
    if "effectiveDateTime" in resource:
        return _zoned_date_time_problems(
            resource["effectiveDateTime"], "DiagnosticReport.effectiveDateTime", "the specimen-collection time"
        )
    period = resource.get("effectivePeriod")
    if isinstance(period, dict) and "start" in period:
        return _zoned_date_time_problems(period["start"], "DiagnosticReport.effectivePeriod.start", "the period start")
    return [
        Problem(
            "effectiveDateTime or effectivePeriod.start is required: when the specimen was collected or the study done",
            "DiagnosticReport.effective[x]",
            "required",
        )
    ]


_CHECKS: dict[str, Callable[[dict], list[Problem]]] = {
    "Patient": _patient,
    "Organization": _organization,
    "Encounter": _encounter,
    "ServiceRequest": _service_request,
    "Observation": _observation,
    "DiagnosticReport": _diagnostic_report,
}


# --- shared pieces --------------------------------------------------------------------


def reference_problems(reference: object, target: str, location: str) -> list[Problem]:
    """Problems with a Reference that must point at a ``target`` resource.

    Accepted forms: a literal ``{"reference": "Target/{id}"}`` (relative or absolute
    URL, optionally versioned), a Bundle-internal ``urn:uuid:`` reference, and a
    logical ``{"type": "Target", "identifier": {"system": ..., "value": ...}}``; an
    Organization's logical identifier must be its facility code.
    """
    if not isinstance(reference, dict):
        code = "required" if reference is None else "structure"
        return [Problem(f"a reference to a {target} is required", location, code)]
    declared = reference.get("type")
    if declared is not None and declared != target:
        return [Problem(f"must refer to a {target}, not a {_show(declared)}", f"{location}.type", "value")]
    literal = reference.get("reference")
    if literal is not None:
        return _literal_problems(literal, target, f"{location}.reference")
    identifier = reference.get("identifier")
    if identifier is None:
        return [
            Problem(
                f"must carry a reference ('{target}/{{id}}') or a type and identifier", location, "required"
            )
        ]
    if declared != target:
        return [Problem(f"a logical reference must say type '{target}'", f"{location}.type", "required")]
    return _logical_problems(identifier, target, f"{location}.identifier")


def _literal_problems(literal: object, target: str, location: str) -> list[Problem]:
    if isinstance(literal, str):
        match = _LITERAL_REFERENCE.fullmatch(literal)
        if match and match["type"] == target:
            return []
        if _BUNDLE_LOCAL_REFERENCE.fullmatch(literal):
            return []
    return [Problem(f"{_show(literal)} is not a reference to a {target} (expected '{target}/{{id}}')", location, "value")]


def _logical_problems(identifier: object, target: str, location: str) -> list[Problem]:
    if not isinstance(identifier, dict):
        return [Problem("identifier must be an Identifier with system and value", location, "structure")]
    if target == "Organization":
        if identifier.get("system") != FACILITY_CODE_SYSTEM:
            message = f"an Organization is identified by its facility code (system {FACILITY_CODE_SYSTEM})"
            return [Problem(message, f"{location}.system", "value")]
        return _facility_code_problems(identifier.get("value"), f"{location}.value")
    return [
        Problem(f"{field} is required in a logical reference", f"{location}.{field}", "required")
        for field in ("system", "value")
        if not _text(identifier.get(field))
    ]


def _performer_problems(resource: dict, resource_type: str) -> list[Problem]:
    """At least one performer must be the Organization (facility) that produced the result."""
    location = f"{resource_type}.performer"
    performers = _list(resource.get("performer"))
    if not performers:
        return [Problem("performer is required: the Organization (facility) that produced the result", location, "required")]
    attempts: list[Problem] = []
    for index, performer in enumerate(performers):
        if _may_be(performer, "Organization"):
            problems = reference_problems(performer, "Organization", f"{location}[{index}]")
            if not problems:
                return []
            attempts += problems
    return attempts or [
        Problem("performer needs an Organization (the facility that produced the result)", location, "required")
    ]


def _may_be(reference: object, target: str) -> bool:
    """Whether a Reference claims, or may be, a ``target`` (an untyped urn: reference may be)."""
    if not isinstance(reference, dict):
        return False
    declared = reference.get("type")
    if declared is not None:
        return declared == target
    literal = reference.get("reference")
    if not isinstance(literal, str):
        return False
    if _BUNDLE_LOCAL_REFERENCE.fullmatch(literal):
        return True
    match = _LITERAL_REFERENCE.fullmatch(literal)
    return bool(match) and match["type"] == target


def _facility_code_problems(value: object, location: str) -> list[Problem]:
    if isinstance(value, str) and _FACILITY_CODE.fullmatch(value):
        return []
    return [Problem(f"{_show(value)} is not a facility code (5 digits, e.g. 01001)", location, "value")]


def _in_value_set(
    resource: dict, resource_type: str, field: str, allowed: frozenset[str], *, required: bool = True
) -> list[Problem]:
    value = resource.get(field)
    location = f"{resource_type}.{field}"
    if value is None:
        return [Problem(f"{field} is required", location, "required")] if required else []
    if isinstance(value, str) and value in allowed:
        return []
    message = f"{_show(value)} is not a valid {field}; expected one of: {', '.join(sorted(allowed))}"
    return [Problem(message, location, "code-invalid")]


def _coded_problems(concept: object, location: str, what: str) -> list[Problem]:
    """A CodeableConcept must have at least one coding with a system and a code."""
    if not isinstance(concept, dict):
        return [Problem(f"code is required: a coded {what}", location, "required")]
    if any(_text(_field(c, "system")) and _text(_field(c, "code")) for c in _list(concept.get("coding"))):
        return []
    return [Problem(f"needs at least one coding with a system and a code for {what}", f"{location}.coding", "required")]


def _loinc_problems(concept: object) -> list[Problem]:
    location = "Observation.code"
    if not isinstance(concept, dict):
        return [Problem("code is required: a LOINC coding of the test", location, "required")]
    loinc = [(i, c) for i, c in enumerate(_list(concept.get("coding"))) if _field(c, "system") == LOINC_SYSTEM]
    if not loinc:
        message = f"code needs at least one LOINC coding (system {LOINC_SYSTEM}) naming the test"
        return [Problem(message, f"{location}.coding", "required")]
    return [
        Problem(
            f"{_show(coding.get('code'))} is not a LOINC code (digits, a hyphen and a check digit, e.g. 2345-7)",
            f"{location}.coding[{index}].code",
            "value",
        )
        for index, coding in loinc
        if not (isinstance(coding.get("code"), str) and _LOINC_CODE.fullmatch(coding["code"]))
    ]


def _zoned_date_time_problems(value: object, location: str, what: str) -> list[Problem]:
    if isinstance(value, str) and _ZONED_DATE_TIME.fullmatch(value):
        try:
            datetime.fromisoformat(value.replace("Z", "+00:00"))
            return []
        except ValueError:
            pass
    message = (
        f"{_show(value)} must be a full date-time with seconds and a time zone "
        f"(e.g. 2025-03-02T08:15:00+07:00): it is {what}"
    )
    return [Problem(message, location, "value")]


def _list(value: object) -> list:
    return value if isinstance(value, list) else []


def _field(value: object, name: str) -> object:
    return value.get(name) if isinstance(value, dict) else None


def _text(value: object) -> bool:
    return isinstance(value, str) and bool(value.strip())


_repr = reprlib.Repr()
_repr.maxstring = _repr.maxother = _SHOWN  # a huge or deeply nested value is quoted briefly


def _show(value: object) -> str:
    return _repr.repr(value)
