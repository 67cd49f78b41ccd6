"""emr.fhir: R4B structure checks, the project's profiles, and the resource builders."""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from emr.errors import EmrError, InvalidInput, Problem, ProfileViolation
from emr.fhir import (
    LOINC_SYSTEM,
    UCUM_SYSTEM,
    bundle,
    check_profile,
    check_structure,
    model_class,
    operation_outcome,
    parameters,
    resource_types,
    to_model,
    validate_resource,
)
from emr.identity import FACILITY_CODE_SYSTEM, NATIONAL_ID_SYSTEM, PASSPORT_SYSTEM, mrn_system

# --- valid examples, built fresh for every test ------------------------------------------


def patient() -> dict:
    return {
        "resourceType": "Patient",
        "id": "p1",
        "identifier": [
            {"system": NATIONAL_ID_SYSTEM, "value": "001085012345"},
            {"system": mrn_system("01001"), "value": "BM-000123"},
        ],
        "name": [{"family": "Nguyễn", "given": ["Văn", "An"]}],
        "gender": "male",
        "birthDate": "1985-04-12",
    }


def organization() -> dict:
    return {
        "resourceType": "Organization",
        "id": "bach-mai",
        "identifier": [{"system": FACILITY_CODE_SYSTEM, "value": "01001"}],
        "name": "Bệnh viện Bạch Mai",
    }


def encounter() -> dict:
    return {
        "resourceType": "Encounter",
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "subject": {"reference": "Patient/p1"},
    }


def service_request() -> dict:
    return {
        "resourceType": "ServiceRequest",
        "status": "active",
        "intent": "order",
        "code": {"coding": [{"system": LOINC_SYSTEM, "code": "2345-7"}]},
        "subject": {"reference": "Patient/p1"},
    }


def observation() -> dict:
    """A typical lab result: fasting glucose from Bạch Mai."""
    return {
        "resourceType": "Observation",
        "id": "glu-1",
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "laboratory",
                    }
                ]
            }
        ],
        "code": {"coding": [{"system": LOINC_SYSTEM, "code": "2345-7", "display": "Glucose [Mass/volume] in Serum or Plasma"}]},
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": "2025-03-02T08:15:00+07:00",
        "issued": "2025-03-02T10:00:00+07:00",
        "performer": [{"reference": "Organization/bach-mai"}],
        "valueQuantity": {"value": 5.4, "unit": "mmol/L", "system": UCUM_SYSTEM, "code": "mmol/L"},
    }


def diagnostic_report() -> dict:
    return {
        "resourceType": "DiagnosticReport",
        "status": "final",
        "code": {"coding": [{"system": LOINC_SYSTEM, "code": "24627-2", "display": "Chest CT"}]},
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": "2025-03-02T09:00:00+07:00",
        "performer": [{"reference": "Organization/bach-mai"}],
        "result": [{"reference": "Observation/glu-1"}],
    }


VALID: dict[str, Callable[[], dict]] = {
    "Patient": patient,
    "Organization": organization,
    "Encounter": encounter,
    "ServiceRequest": service_request,
    "Observation": observation,
    "DiagnosticReport": diagnostic_report,
}


@pytest.mark.parametrize("make", VALID.values(), ids=VALID.keys())
def test_valid_examples_pass(make: Callable[[], dict]) -> None:
    resource = make()
    assert check_structure(resource) == []
    assert check_profile(resource) == []
    validate_resource(resource)
    assert resource == make(), "validation must not change the resource"


def test_types_without_a_profile_have_no_profile_problems() -> None:
    assert check_profile({"resourceType": "Practitioner"}) == []
    validate_resource({"resourceType": "Practitioner", "name": [{"family": "Trần"}]})


# --- every rule has a failing example at the right location ------------------------------


def _drop(field: str) -> Callable[[dict], None]:
    return lambda r: r.pop(field)


def _set(field: str, value: object) -> Callable[[dict], None]:
    return lambda r: r.__setitem__(field, value)


RULES = [
    # Patient
    ("no identifier", patient, _drop("identifier"), "Patient.identifier"),
    ("identifier without system", patient, _set("identifier", [{"value": "X1"}]), "Patient.identifier"),
    ("gender not in value set", patient, _set("gender", "M"), "Patient.gender"),
    (
        "national ID too short",
        patient,
        lambda r: r["identifier"][0].update(value="00108501234"),
        "Patient.identifier[0].value",
    ),
    (
        "national ID with unknown province",
        patient,
        lambda r: r["identifier"][0].update(value="999085012345"),
        "Patient.identifier[0].value",
    ),
    # Organization
    ("no facility code", organization, _set("identifier", [{"system": "urn:x", "value": "1"}]), "Organization.identifier"),
    (
        "facility code not 5 digits",
        organization,
        lambda r: r["identifier"][0].update(value="1001"),
        "Organization.identifier[0].value",
    ),
    ("no name", organization, _drop("name"), "Organization.name"),
    # Encounter
    ("encounter status", encounter, _set("status", "done"), "Encounter.status"),
    ("encounter without class", encounter, _drop("class"), "Encounter.class"),
    ("encounter without subject", encounter, _drop("subject"), "Encounter.subject"),
    ("encounter subject not a Patient", encounter, _set("subject", {"reference": "Group/g1"}), "Encounter.subject.reference"),
    # ServiceRequest
    ("request status", service_request, _set("status", "ordered"), "ServiceRequest.status"),
    ("request intent", service_request, _set("intent", "please"), "ServiceRequest.intent"),
    ("request code without coding", service_request, _set("code", {"text": "glucose"}), "ServiceRequest.code.coding"),
    ("request without code", service_request, _drop("code"), "ServiceRequest.code"),
    ("request without subject", service_request, _drop("subject"), "ServiceRequest.subject"),
    # Observation
    ("observation status bogus", observation, _set("status", "bogus"), "Observation.status"),
    ("observation empty code", observation, _set("code", {}), "Observation.code.coding"),
    (
        "observation code not LOINC",
        observation,
        _set("code", {"coding": [{"system": "http://snomed.info/sct", "code": "33747003"}]}),
        "Observation.code.coding",
    ),
    (
        "observation malformed LOINC code",
        observation,
        _set("code", {"coding": [{"system": LOINC_SYSTEM, "code": "2345"}]}),
        "Observation.code.coding[0].code",
    ),
    ("observation without subject", observation, _drop("subject"), "Observation.subject"),
    (
        "observation subject not a Patient",
        observation,
        _set("subject", {"reference": "Organization/bach-mai"}),
        "Observation.subject.reference",
    ),
    ("observation without collection time", observation, _drop("effectiveDateTime"), "Observation.effectiveDateTime"),
    ("collection time without zone", observation, _set("effectiveDateTime", "2025-03-02T08:15:00"), "Observation.effectiveDateTime"),
    ("collection time only a date", observation, _set("effectiveDateTime", "2025-03-02"), "Observation.effectiveDateTime"),
    ("observation without performer", observation, _drop("performer"), "Observation.performer"),
    (
        "observation performer only a practitioner",
        observation,
        _set("performer", [{"reference": "Practitioner/dr-1"}]),
        "Observation.performer",
    ),
    (
        "logical performer with a non-facility identifier",
        observation,
        _set("performer", [{"type": "Organization", "identifier": {"system": "urn:x", "value": "01001"}}]),
        "Observation.performer[0].identifier.system",
    ),
    (
        "logical performer with a bad facility code",
        observation,
        _set("performer", [{"type": "Organization", "identifier": {"system": FACILITY_CODE_SYSTEM, "value": "1"}}]),
        "Observation.performer[0].identifier.value",
    ),
    # DiagnosticReport
    ("report status", diagnostic_report, _set("status", "done"), "DiagnosticReport.status"),
    ("report without code", diagnostic_report, _drop("code"), "DiagnosticReport.code"),
    ("report without subject", diagnostic_report, _drop("subject"), "DiagnosticReport.subject"),
    ("report without effective", diagnostic_report, _drop("effectiveDateTime"), "DiagnosticReport.effective[x]"),
    ("report without performer", diagnostic_report, _drop("performer"), "DiagnosticReport.performer"),
    (
        "report result not an Observation",
        diagnostic_report,
        _set("result", [{"reference": "Observation/glu-1"}, {"reference": "Patient/p1"}]),
        "DiagnosticReport.result[1].reference",
    ),
]


@pytest.mark.parametrize(("make", "break_", "location"), [r[1:] for r in RULES], ids=[r[0] for r in RULES])
def test_each_rule_fails_at_its_location(make: Callable[[], dict], break_: Callable[[dict], None], location: str) -> None:
    resource = make()
    break_(resource)
    assert location in {p.location for p in check_profile(resource)}
    with pytest.raises(ProfileViolation) as raised:
        validate_resource(resource)
    assert location in {p.location for p in raised.value.problems}
    assert raised.value.status == 422


def test_bogus_status_and_empty_code_pass_the_model_but_not_the_profile() -> None:
    resource = observation() | {"status": "bogus", "code": {}}
    assert check_structure(resource) == []  # why the profile exists: fhir.resources accepts both
    with pytest.raises(ProfileViolation) as raised:
        validate_resource(resource)
    locations = {p.location for p in raised.value.problems}
    assert {"Observation.status", "Observation.code.coding"} <= locations


def test_missing_collection_time_message_says_what_it_is() -> None:
    resource = observation()
    del resource["effectiveDateTime"]
    [problem] = check_profile(resource)
    assert "specimen-collection" in problem.message
    assert problem.code == "required"


@pytest.mark.parametrize(
    "performer",
    [
        {"reference": "Organization/bach-mai"},
        {"reference": "https://hub.example.vn/fhir/Organization/bach-mai/_history/2"},
        {"type": "Organization", "identifier": {"system": FACILITY_CODE_SYSTEM, "value": "01001"}},
        {"reference": "urn:uuid:5f0c1e4e-1111-4c3a-9a52-0b1b7c1d2e3f"},  # another entry of a transaction
    ],
    ids=["literal", "absolute", "logical", "bundle-local"],
)
def test_both_performer_forms_are_accepted(performer: dict) -> None:
    resource = observation() | {"performer": [{"reference": "Practitioner/dr-1"}, performer]}
    validate_resource(resource)
    validate_resource(diagnostic_report() | {"performer": [performer]})


def test_category_is_recommended_not_required() -> None:
    resource = observation()
    del resource["category"]
    validate_resource(resource)


def test_report_may_give_a_period_instead_of_a_date_time() -> None:
    resource = diagnostic_report()
    del resource["effectiveDateTime"]
    resource["effectivePeriod"] = {"start": "2025-03-02T09:00:00+07:00", "end": "2025-03-02T09:20:00+07:00"}
    validate_resource(resource)


def test_patient_with_passport_only_is_accepted() -> None:
    foreigner = {
        "resourceType": "Patient",
        "identifier": [{"system": PASSPORT_SYSTEM, "value": "C1234567"}],
        "name": [{"family": "Smith", "given": ["Anna"]}],
        "gender": "female",
        "birthDate": "1990-06-01",
    }
    validate_resource(foreigner)


def test_national_id_demographic_conflict_is_accepted_for_the_hub_to_flag() -> None:
    resource = patient() | {"birthDate": "1992-04-12", "gender": "female"}  # the number encodes a man of 1985
    validate_resource(resource)


def test_bad_national_id_names_the_rule() -> None:
    resource = patient()
    resource["identifier"][0]["value"] = "00108501234x"
    [problem] = check_profile(resource)
    assert problem.location == "Patient.identifier[0].value"
    assert "rule 'digits'" in problem.message


# --- structure ---------------------------------------------------------------------------


def test_structure_problem_has_a_fhir_path_location() -> None:
    resource = observation()
    resource["code"]["coding"][0]["system"] = 5
    problems = check_structure(resource)
    assert [p.location for p in problems] == ["Observation.code.coding[0].system"]


def test_structure_reports_missing_required_and_unknown_fields() -> None:
    resource = {"resourceType": "Observation", "status": "final", "colour": "red"}
    problems = {p.location: p.code for p in check_structure(resource)}
    assert problems == {"Observation.code": "required", "Observation.colour": "structure"}


@pytest.mark.parametrize(
    ("resource", "code"),
    [
        ({}, "invalid"),
        ({"resourceType": 7}, "invalid"),
        ({"resourceType": "Zork"}, "not-supported"),
        ({"resourceType": "DomainResource"}, "not-supported"),
        ({"resourceType": "Coding", "code": "x"}, "not-supported"),
    ],
)
def test_missing_or_unknown_resource_type(resource: dict, code: str) -> None:
    [problem] = check_structure(resource)
    assert (problem.location, problem.code) == ("resourceType", code)
    with pytest.raises(InvalidInput) as raised:
        validate_resource(resource)
    assert not isinstance(raised.value, ProfileViolation)
    assert raised.value.problems == [problem]
    with pytest.raises(InvalidInput):
        to_model(resource)


@pytest.mark.parametrize(
    ("contained", "location"),
    [
        ({}, "Patient.contained[0].resourceType"),
        ({"resourceType": "Zork"}, "Patient.contained[0].resourceType"),
        ({"resourceType": "Resource"}, "Patient.contained[0].resourceType"),
    ],
)
def test_embedded_resources_need_a_real_type(contained: dict, location: str) -> None:
    resource = {"resourceType": "Patient", "contained": [contained]}
    assert location in {p.location for p in check_structure(resource)}


def test_structure_and_profile_problems_are_reported_together() -> None:
    resource = observation() | {"status": "bogus", "issued": "yesterday"}
    with pytest.raises(ProfileViolation) as raised:
        validate_resource(resource)
    assert {"Observation.status", "Observation.issued"} <= {p.location for p in raised.value.problems}


def test_to_model_returns_the_r4b_object_or_raises() -> None:
    model = to_model(observation())
    assert model.get_resource_type() == "Observation"
    assert type(model).__module__.startswith("fhir.resources.R4B.")
    assert model.code.coding[0].code == "2345-7"
    with pytest.raises(ProfileViolation):
        to_model({"resourceType": "Observation", "status": "final"})


def test_resource_types_are_the_concrete_r4b_types() -> None:
    types = resource_types()
    assert {"Patient", "Observation", "DiagnosticReport", "Bundle", "Parameters", "OperationOutcome"} <= types
    assert not {"Resource", "DomainResource", "Coding", "Reference"} & types
    assert "SubstanceNucleicAcid" not in types  # an R4 type that R4B dropped
    assert all(model_class(name) is not None for name in types)


# --- builders ----------------------------------------------------------------------------


def test_operation_outcome_validates_under_r4b() -> None:
    problems = [
        Problem("status 'bogus' is not valid", "Observation.status", "code-invalid"),
        Problem("no location here"),
    ]
    outcome = operation_outcome(problems)
    validate_resource(outcome)
    model = to_model(outcome)
    assert [i.expression for i in model.issue] == [["Observation.status"], None]
    assert {i.severity for i in model.issue} == {"error"}
    validate_resource(operation_outcome([], severity="information"))
    validate_resource(operation_outcome([Problem("careful", None, "informational")], severity="warning"))


def test_operation_outcome_from_an_error_validates() -> None:
    resource = observation() | {"status": "bogus", "code": {}}
    with pytest.raises(ProfileViolation) as raised:
        validate_resource(resource)
    outcome = operation_outcome(raised.value.problems)
    validate_resource(outcome)
    assert len(outcome["issue"]) == len(raised.value.problems)


def test_bundle_and_parameters_validate_under_r4b() -> None:
    entries = [observation(), {"fullUrl": "urn:uuid:1d6f3c1a-0c0b-4a55-9a0d-2f6c4f1b0e7a", "resource": patient()}]
    searchset = bundle("searchset", entries, total=2, links=[("self", "https://hub.example.vn/fhir/Observation?code=2345-7")])
    validate_resource(searchset)
    assert searchset["entry"][0] == {"resource": observation()}
    validate_resource(bundle("searchset", [], total=0))
    validate_resource(parameters([{"name": "reusable", "valueBoolean": True}]))


# --- never raises ------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=30,
)
# Field names the models and profiles look at, so junk reaches deep into the checks.
FIELD_NAMES = [
    "resourceType", "id", "status", "intent", "code", "coding", "system", "value", "display",
    "subject", "reference", "type", "identifier", "performer", "result", "effectiveDateTime",
    "effectivePeriod", "start", "gender", "birthDate", "class", "name", "contained", "entry",
    "resource", "parameter", "part", "extension", "url", "valueQuantity", "_status",
]  # fmt: skip
keys = st.sampled_from(FIELD_NAMES) | st.text(max_size=8)
field_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text() | st.sampled_from(
        ["Patient", "Observation", "Organization/bach-mai", "Patient/p1", LOINC_SYSTEM, "2345-7",
         NATIONAL_ID_SYSTEM, FACILITY_CODE_SYSTEM, "001085012345", "final", "2025-03-02T08:15:00+07:00"]
    ),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=5),
    max_leaves=40,
)  # fmt: skip
profiled_types = st.sampled_from([*VALID, "Bundle", "Parameters", "OperationOutcome", "Practitioner"])


@settings(deadline=None)  # the first example of a type imports its model class
@given(json_values)
@example("x" * 1_000_000)
@example({"resourceType": "Observation", "status": "x" * 1_000_000})
def test_check_structure_never_raises_on_any_json(value: object) -> None:
    problems = check_structure(value)  # type: ignore[arg-type]
    assert all(isinstance(p, Problem) for p in problems)
    assert all(isinstance(p, Problem) for p in check_profile(value))  # type: ignore[arg-type]


@settings(deadline=None)
@given(profiled_types, st.dictionaries(keys, field_values))
def test_checks_never_raise_on_junk_with_a_valid_resource_type(resource_type: str, body: dict) -> None:
    resource = body | {"resourceType": resource_type}
    before = copy.deepcopy(resource)
    problems = check_structure(resource) + check_profile(resource)
    assert all(isinstance(p, Problem) and isinstance(p.message, str) for p in problems)
    try:
        validate_resource(resource)
    except EmrError as error:
        assert isinstance(error, ProfileViolation)
        validate_resource(operation_outcome(error.problems))
    assert resource == before


@settings(deadline=None)
@given(st.sampled_from(list(VALID.values())), keys, field_values)
@example(patient, "gender", [])  # once reached identity.demographic_conflicts as a list
@example(observation, "status", [[[[[[[[["deep"]]]]]]]]])
@example(observation, "status", "x" * 1_000_000)
def test_checks_never_raise_when_one_field_of_a_valid_resource_is_junk(
    make: Callable[[], dict], key: str, junk: object
) -> None:
    resource = make() | {key: junk}
    try:
        validate_resource(resource)
    except EmrError as error:
        assert isinstance(error, InvalidInput)


def test_deep_nesting_is_reported_not_raised() -> None:
    nested: object = {}
    for _ in range(50_000):
        nested = {"extension": [nested]}
    problems = check_structure({"resourceType": "Observation", "status": "final", "code": {}, "extension": [nested]})
    assert problems and all(p.location for p in problems)


def test_primitives_in_the_wrong_json_type_are_found_at_any_depth_and_in_contained_resources():
    from emr.fhir.primitives import json_type_problems
    from emr.fhir.structure import model_class

    observation = {
        "resourceType": "Observation", "status": "final", "code": {"text": "K"},
        "valueQuantity": {"value": "4.1", "unit": "mmol/L"},  # a decimal sent as a string
        "referenceRange": [{"low": {"value": 3.5}}, {"high": {"value": True}}],
        "contained": [{"resourceType": "Patient", "id": "p", "active": "true", "multipleBirthInteger": 2}],
        "issued": "2025-03-01T08:00:00+07:00",
    }
    found = {(p.location, p.message) for p in json_type_problems(observation, model_class("Observation"))}
    assert found == {
        ("Observation.valueQuantity.value", "must be a JSON number, not a string"),
        ("Observation.referenceRange[1].high.value", "must be a JSON number, not a boolean"),
        ("Observation.contained[0].active", "must be a JSON boolean (true or false), not a string"),
    }
