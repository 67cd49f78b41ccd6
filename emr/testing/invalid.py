"""Hypothesis strategies for what a FHIR server must refuse: malformed numbers, broken resources, bad requests.

:func:`broken` takes a valid resource and draws a copy with exactly one defect of a
named kind, so a test knows what it broke and a shrunk counterexample stays readable.
Every resource drawn here fails ``emr.fhir.validate_resource``.

Kinds of defect:

``wrong-type``        a primitive element holds a JSON value of the wrong type
``bad-date``          a date or dateTime element holds something that is not a real date
``bad-code``          a required-binding code (``status``, ``gender``) holds a code outside its value set
``missing-required``  an element the resource cannot be without is gone
``broken-reference``  the subject reference is not a reference to a Patient
``bad-national-id``   the Patient's personal identification number is malformed (this project's profile)
"""

from __future__ import annotations

import copy

from hypothesis import strategies as st

from emr.identity import NATIONAL_ID_SYSTEM, load_provinces
from emr.testing.strategies import lab_observations, patients, service_requests

# Where each kind of defect can be put, per resource type.
PRIMITIVES = {"Patient": ("gender", "birthDate"), "Observation": ("status", "effectiveDateTime"),
              "ServiceRequest": ("status", "intent", "authoredOn"), "DiagnosticReport": ("status", "issued"),
              "Encounter": ("status",)}
DATES = {"Patient": ("birthDate",), "Observation": ("effectiveDateTime",), "ServiceRequest": ("authoredOn",),
         "DiagnosticReport": ("effectiveDateTime", "issued")}
CODES = {"Patient": ("gender",), "Observation": ("status",), "ServiceRequest": ("status", "intent"),
         "DiagnosticReport": ("status",), "Encounter": ("status",)}
REQUIRED = {"Observation": ("status", "code"), "ServiceRequest": ("status", "intent"),
            "DiagnosticReport": ("status", "code"), "Encounter": ("status", "class")}
SUBJECTS = {"Observation": ("subject",), "ServiceRequest": ("subject",), "DiagnosticReport": ("subject",),
            "Encounter": ("subject",)}
KINDS = ("wrong-type", "bad-date", "bad-code", "missing-required", "broken-reference", "bad-national-id")


def malformed_national_ids() -> st.SearchStrategy[object]:
    """Values that are not a personal identification number: each breaks one rule of ``parse_national_id``."""
    known = set(load_provinces())
    digits = st.text("0123456789", min_size=12, max_size=12)
    return st.one_of(
        st.text("0123456789", max_size=20).filter(lambda s: len(s) != 12),  # length
        digits.map(lambda s: s[:5] + "x" + s[6:]),  # a character that is not a digit
        digits.map(lambda s: f" {s[1:]}"),  # stray whitespace
        digits.filter(lambda s: s[:3] not in known),  # no such province
        st.integers(0, 10**12 - 1),  # a number, not a string
    )


def impossible_dates() -> st.SearchStrategy[str]:
    """Strings shaped like FHIR dates (or not at all) that name no real moment."""
    return st.sampled_from([
        "2025-02-30", "2025-13-01", "2025-00-10", "2025-06-31T08:00:00+07:00", "2025-06-01T25:00:00+07:00",
        "2025-06-01T08:61:00Z", "01/06/2025", "yesterday", "2025-6-1", "",
    ])


def wrong_type_values() -> st.SearchStrategy[object]:
    """JSON values that are never a FHIR string, code or date."""
    return st.one_of(st.integers(-10**6, 10**6), st.booleans(), st.lists(st.integers(0, 9), min_size=1, max_size=2),
                     st.dictionaries(st.sampled_from(["value", "code"]), st.integers(), min_size=1, max_size=1))


def bad_codes() -> st.SearchStrategy[str]:
    return st.sampled_from(["bogus", "FINAL", "done", "m", "đã xong"])


def kinds_for(resource: dict) -> tuple[str, ...]:
    """The kinds of defect :func:`broken` can put into ``resource``."""
    rtype = resource.get("resourceType", "")
    tables = {"wrong-type": PRIMITIVES, "bad-date": DATES, "bad-code": CODES, "missing-required": REQUIRED,
              "broken-reference": SUBJECTS}
    found = [kind for kind, table in tables.items() if _present(resource, table.get(rtype, ()))]
    if rtype == "Patient" and _national_id_index(resource) is not None:
        found.append("bad-national-id")
    return tuple(found)


@st.composite
def broken(draw: st.DrawFn, resource: dict, *, kinds: tuple[str, ...] = KINDS) -> dict:
    """A deep copy of ``resource`` with one defect of one of ``kinds`` (those it can carry)."""
    possible = [kind for kind in kinds_for(resource) if kind in kinds]
    if not possible:
        raise ValueError(f"a {resource.get('resourceType')} can carry none of the defects {kinds}")
    kind = draw(st.sampled_from(possible))
    damaged = copy.deepcopy(resource)
    rtype = resource["resourceType"]
    if kind == "bad-national-id":
        damaged["identifier"][_national_id_index(resource)]["value"] = draw(malformed_national_ids())
    elif kind == "broken-reference":
        damaged[SUBJECTS[rtype][0]] = draw(broken_references())
    elif kind == "missing-required":
        del damaged[draw(st.sampled_from(_present(resource, REQUIRED[rtype])))]
    else:
        table, values = {"wrong-type": (PRIMITIVES, wrong_type_values()), "bad-date": (DATES, impossible_dates()),
                         "bad-code": (CODES, bad_codes())}[kind]
        damaged[draw(st.sampled_from(_present(resource, table[rtype])))] = draw(values)
    return damaged


def broken_references() -> st.SearchStrategy[object]:
    """Values of a Reference to a Patient that point nowhere a Patient can be."""
    return st.one_of(
        st.sampled_from([{"reference": "Patient"}, {"reference": "Patient/"}, {"reference": "Organization/01001"},
                         {"reference": "Patient/a b"}, {"reference": "not a reference"}, {"display": "Nguyễn Văn An"},
                         {"type": "Organization", "reference": "Patient/1"}]),
        st.just("Patient/1"),  # a string where a Reference object belongs
    )


def invalid_resources() -> st.SearchStrategy[dict]:
    """Patients, results and orders with one defect each."""
    valid = st.one_of(patients(), lab_observations(patient_ref="Patient/example"),
                      service_requests(patient_ref="Patient/example"))
    return valid.flatmap(broken)


def malformed_json() -> st.SearchStrategy[bytes]:
    """Bodies that are not JSON at all, or not a JSON object."""
    return st.one_of(
        st.sampled_from([b"{", b'{"resourceType": "Patient",}', b"resourceType=Patient", b"<Patient/>", b"\xff\xfe"]),
        st.sampled_from([b"[]", b"42", b'"Patient"', b"null"]),
    )


def bad_search_values() -> st.SearchStrategy[tuple[str, str]]:
    """(parameter, value) pairs whose value no server can read: dates that are not dates, counts that are not numbers."""
    return st.one_of(
        impossible_dates().filter(bool).map(lambda v: ("date", v)),
        st.sampled_from(["ge", "lt", "gt", "le"]).flatmap(
            lambda p: impossible_dates().filter(bool).map(lambda v: ("date", p + v))),
        st.sampled_from(["abc", "-1", "1.5", "ten"]).map(lambda v: ("_count", v)),
    )


def _present(resource: dict, names: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(name for name in names if name in resource)


def _national_id_index(resource: dict) -> int | None:
    for index, identifier in enumerate(resource.get("identifier") or []):
        if isinstance(identifier, dict) and identifier.get("system") == NATIONAL_ID_SYSTEM:
            return index
    return None
