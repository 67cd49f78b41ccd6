"""Hostile input: oversized, over-deep, malformed or injected requests get a 4xx OperationOutcome,
never a 500, and leave the store as it was.

"The store" is every clinical row: resources and their versions, index rows, person
links, result facts. The audit trail (AuditEvents record refused requests too) and
the token bookkeeping are expected to grow and are left out of the comparison.
A search whose values are merely odd (an SQL fragment as a family name) is a valid
search: it answers 200 with nothing found, and the fragment stays a string.
"""

from __future__ import annotations

import base64
import json
from urllib.parse import quote

import orjson
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlmodel import SQLModel

from emr.fhir.builders import lab_observation, patient
from emr.hub.searchparams import params_for
from emr.identity import FACILITY_CODE_SYSTEM, NATIONAL_ID_SYSTEM, mrn_system
from tests.strategies import FRAGMENTS, RESOURCE_TYPES, raw_bodies, resource_bodies, search_pairs

HDR = {"Content-Type": "application/fhir+json"}
NID = "027085012345"
NOT_THE_STORE = {"used_assertion"}  # token bookkeeping


def store_rows(client) -> dict[str, int]:
    """Row counts of every clinical table, AuditEvents left out."""
    engine = client.app.state.hub.engine
    resource = SQLModel.metadata.tables["resource"]
    counts = {}
    with engine.connect() as conn:
        for name, table in SQLModel.metadata.tables.items():
            if name in NOT_THE_STORE:
                continue
            query = select(func.count()).select_from(table)
            if name == "resource":
                query = query.where(table.c.resource_type != "AuditEvent")
            elif "resource_pk" in table.c:
                query = query.join(resource, resource.c.pk == table.c.resource_pk).where(
                    resource.c.resource_type != "AuditEvent")
            counts[name] = conn.execute(query).scalar_one()
    return counts


def refused(response, *statuses: int) -> dict:
    assert response.status_code in (statuses or range(400, 500)), (response.status_code, response.text[:300])
    body = response.json()
    assert body["resourceType"] == "OperationOutcome" and body["issue"][0]["diagnostics"], body
    return body


@pytest.fixture
def seeded(client):
    """A hub with one registered patient and one result, so injections have something to find."""
    body = patient(facility_code="27001", mrn="H-1", national_id=NID, family="Nguyễn", given="Văn An",
                   gender="male", birth_date="1985-04-12")
    pid = client.put(f"/fhir/Patient?identifier={mrn_system('27001')}|H-1", content=orjson.dumps(body),
                     headers=HDR).json()["id"]
    obs = lab_observation(patient_ref=f"Patient/{pid}", facility_code="27001", loinc="4548-4", display="HbA1c",
                          collected="2025-09-20T08:00:00+07:00", value={"valueQuantity": {"value": 6.1, "unit": "%"}})
    assert client.post("/fhir/Observation", content=orjson.dumps(obs), headers=HDR).status_code == 201
    return client


def _cursor(data: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def _nested(depth: int) -> bytes:
    return b'{"resourceType": "Patient", "extension": ' + b"[" * depth + b"]" * depth + b"}"


def _check_reuse(codes: int) -> bytes:
    return orjson.dumps({"resourceType": "Parameters", "parameter": [
        {"name": "patient", "valueIdentifier": {"system": NATIONAL_ID_SYSTEM, "value": NID}},
        {"name": "facility", "valueIdentifier": {"system": FACILITY_CODE_SYSTEM, "value": "01001"}},
        *[{"name": "code", "valueCoding": {"system": "http://loinc.org", "code": f"{i}-1"}} for i in range(codes)]]})


def _patient_with(**fields: object) -> bytes:
    body = patient(facility_code="27001", mrn="H-2", national_id=NID, family="Nguyễn", given="Văn An",
                   gender="male", birth_date="1985-04-12")
    return orjson.dumps({**body, **fields})


def _bundle(*entries: dict) -> bytes:
    return orjson.dumps({"resourceType": "Bundle", "type": "transaction", "entry": list(entries)})


HOSTILE = {  # name: (method, url, body, extra headers)
    "nested 900 deep": ("POST", "/fhir/Patient", _nested(900), {}),
    "nested 5000 deep": ("POST", "/fhir/Patient", _nested(5000), {}),
    "infinite number": ("POST", "/fhir/Observation", b'{"resourceType": "Observation", "valueQuantity": {"value": 1e999}}', {}),
    "huge integer": ("POST", "/fhir/Patient", b'{"resourceType": "Patient", "multipleBirthInteger": 1' + b"0" * 400 + b"}", {}),
    "invalid UTF-8 body": ("POST", "/fhir/Patient", b'{"resourceType": "Patient", "name": [{"family": "\xff\xfe"}]}', {}),
    "lone surrogate": ("POST", "/fhir/Patient", b'{"resourceType": "Patient", "id": "\\ud800"}', {}),
    "NUL in a string": ("POST", "/fhir/Patient", _patient_with(name=[{"family": "a\u0000b"}]), {}),
    "bell in a string": ("POST", "/fhir/Patient", _patient_with(name=[{"family": "a\u0007b"}]), {}),
    "string over 1 MiB": ("POST", "/fhir/Patient", _patient_with(name=[{"family": "x" * (1024 * 1024 + 1)}]), {}),
    "script in the narrative": ("POST", "/fhir/Patient", _patient_with(text={
        "status": "generated", "div": '<div xmlns="http://www.w3.org/1999/xhtml"><script>alert(1)</script></div>'}), {}),
    "event handler in the narrative": ("POST", "/fhir/Patient", _patient_with(text={
        "status": "generated", "div": '<div xmlns="http://www.w3.org/1999/xhtml"><img src="x" onerror="alert(1)"/></div>'}), {}),
    "too many Bundle entries": ("POST", "/fhir", _bundle(*[{"request": {"method": "GET", "url": "Patient"}}] * 1001), {}),
    "non-string ifNoneExist": ("POST", "/fhir", _bundle({"resource": orjson.loads(_patient_with()), "request": {
        "method": "POST", "url": "Patient", "ifNoneExist": 5}}), {}),
    "NUL in ifNoneExist": ("POST", "/fhir", _bundle({"resource": orjson.loads(_patient_with()), "request": {
        "method": "POST", "url": "Patient", "ifNoneExist": "identifier=a%00b"}}), {}),
    "huge _count in a Bundle": ("POST", "/fhir", _bundle({"request": {"method": "GET", "url": "Patient?_count=" + "9" * 5000}}), {}),
    "NUL in If-None-Exist": ("POST", "/fhir/Patient", _patient_with(), {"If-None-Exist": "identifier=a%00b"}),
    "SQL in If-Match": ("PUT", "/fhir/Patient/x", _patient_with(id="x"), {"If-Match": "W/\"1' OR '1'='1\""}),
    "SQL as an id": ("PUT", "/fhir/Patient/1'%20OR%20'1'='1", _patient_with(id="1' OR '1'='1"), {}),
    "id of 500 characters": ("PUT", "/fhir/Patient/" + "a" * 500, _patient_with(id="a" * 500), {}),
    "body too large": ("POST", "/fhir/Patient", b" " * (5 * 1024 * 1024 + 1), {}),
    "5000 tests in one question": ("POST", "/fhir/$check-reuse", _check_reuse(5000), {}),
    "SQL as a national ID": ("POST", "/fhir/$check-reuse", orjson.dumps({"resourceType": "Parameters", "parameter": [
        {"name": "patient", "valueIdentifier": {"system": NATIONAL_ID_SYSTEM, "value": "' OR 1=1 --"}}]}), {}),
    "deep CDS hook": ("POST", "/cds-services/reuse-check-order-select", b'{"hook": "order-select", "context": '
                      + b"[" * 900 + b"]" * 900 + b"}", {}),
    "NUL in a search": ("GET", "/fhir/Patient?family=a%00b", None, {}),
    "invalid UTF-8 in a search": ("GET", "/fhir/Patient?family=%ff%fe", None, {}),
    "invalid UTF-8 in a path": ("GET", "/fhir/Patient/%ff%fe", None, {}),
    "NUL in a path": ("GET", "/fhir/Patient/a%00b", None, {}),
    "_count of 5000 digits": ("GET", "/fhir/Patient?_count=" + "9" * 5000, None, {}),
    "_count in superscript": ("GET", "/fhir/Patient?_count=%C2%B2", None, {}),
    "41 search parameters": ("GET", "/fhir/Patient?" + "&".join(f"family=a{i}" for i in range(41)), None, {}),
    "101 values in one parameter": ("GET", "/fhir/Patient?family=" + ",".join(f"a{i}" for i in range(101)), None, {}),
    "form search with 2000 parameters": ("POST", "/fhir/Patient/_search", ("family=a&" * 2000).encode(),
                                         {"Content-Type": "application/x-www-form-urlencoded"}),
    "cursor of the wrong kind": ("GET", f"/fhir/Patient?_cursor={_cursor({'k': [], 'p': {}, 's': 'a'})}", None, {}),
    "cursor beyond BIGINT": ("GET", f"/fhir/Patient?_cursor={_cursor({'k': 1, 'p': 2 ** 70, 's': 2 ** 70})}", None, {}),
    "text cursor on a numeric sort": ("GET", f"/fhir/Patient?_cursor={_cursor({'k': 'x', 'p': 1, 's': 1})}", None, {}),
    "SQL in _sort": ("GET", "/fhir/Patient?_sort=name;DROP TABLE resource", None, {}),
    "SQL in _include": ("GET", "/fhir/Observation?_include=Observation:subject'--", None, {}),
    "SQL in a date": ("GET", "/fhir/Observation?date=2025' OR 1=1", None, {}),
    "NUL in a PIX query": ("GET", "/fhir/Patient/$ihe-pix?sourceIdentifier=x|a%00", None, {}),
}


def test_hostile_requests_are_refused_and_change_nothing(seeded):
    wrong = {}
    for name, (method, url, body, headers) in sorted(HOSTILE.items()):
        before = store_rows(seeded)
        response = seeded.request(method, url, content=body,
                                  headers={**HDR, **headers} if body is not None else headers)
        try:
            refused(response)
            assert store_rows(seeded) == before, "the store changed"
        except (AssertionError, ValueError, KeyError) as error:
            wrong[name] = f"{response.status_code}: {error}"[:300]
    assert wrong == {}


@pytest.mark.parametrize("resource_type", ["Patient", "Observation"])
def test_injections_in_every_search_parameter_find_nothing(seeded, resource_type):
    before = store_rows(seeded)
    for param in sorted(params_for(resource_type)):
        for fragment in FRAGMENTS:
            response = seeded.get(f"/fhir/{resource_type}", params={param: fragment})
            assert response.status_code < 500, (param, fragment, response.text[:200])
            if response.status_code == 200:
                assert response.json()["total"] == 0, (param, fragment)  # nothing leaks out
            else:
                refused(response)
    assert store_rows(seeded) == before


def test_injections_in_conditional_criteria_stay_criteria(seeded):
    """A conditional create whose criteria hold SQL is a conditional create like any other: the
    first creates, the retry finds it, and the SQL never runs."""
    for n, fragment in enumerate(FRAGMENTS[:10]):
        before = store_rows(seeded)
        body = patient(facility_code="27001", mrn=fragment, national_id=NID, family="Nguyễn", given="Văn An",
                       gender="male", birth_date="1985-04-12")
        headers = {**HDR, "If-None-Exist": f"identifier={quote(mrn_system('27001'))}|{quote(fragment, safe='')}"}
        first = seeded.post("/fhir/Patient", content=orjson.dumps(body), headers=headers)
        again = seeded.post("/fhir/Patient", content=orjson.dumps(body), headers=headers)
        assert first.status_code < 500 and again.status_code < 500, (fragment, first.text[:200])
        if first.status_code == 201:
            assert again.status_code == 200 and again.json()["id"] == first.json()["id"], fragment
            assert store_rows(seeded)["resource"] == before["resource"] + 1
        else:
            refused(first)
            assert store_rows(seeded) == before
    assert seeded.get("/fhir/Observation", params={"code": "4548-4"}).json()["total"] == 1  # the tables survived


# ---------------------------------------------------------------- fuzzing with a fixed budget

@settings(max_examples=120)
@given(resource_type=st.sampled_from(RESOURCE_TYPES), pairs=search_pairs())
def test_fuzzed_searches_never_fail_the_hub(sqlite_client, resource_type, pairs):
    before = store_rows(sqlite_client)
    response = sqlite_client.get(f"/fhir/{resource_type}", params=pairs)
    assert response.status_code < 500, response.text[:300]
    if response.status_code >= 400:
        refused(response)
    assert store_rows(sqlite_client) == before


@settings(max_examples=120)
@given(target=st.sampled_from(("/fhir/Patient", "/fhir/Observation", "/fhir", "/fhir/$check-reuse",
                               "/fhir/Patient/x1", "/cds-services/reuse-check-order-select")),
       body=st.one_of(resource_bodies(), raw_bodies()))
def test_fuzzed_bodies_never_fail_the_hub_and_refusals_write_nothing(sqlite_client, target, body):
    before = store_rows(sqlite_client)
    content = body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False).encode()
    method = "PUT" if target.endswith("/x1") else "POST"
    response = sqlite_client.request(method, target, content=content, headers=HDR)
    assert response.status_code < 500, response.text[:300]
    if response.status_code >= 400:
        if not target.startswith("/cds-services") or response.headers["content-type"].startswith("application/fhir"):
            refused(response)
        assert store_rows(sqlite_client) == before


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=25)


@given(value=JSON_VALUES, depth=st.integers(1, 8), longest=st.integers(1, 400))
@example(value={"\x08": None}, depth=2, longest=11)  # JSON writes U+0008 as \b, not \u0008
@example(value=["\x0c"], depth=2, longest=11)  # and U+000C as \f
@settings(max_examples=300, deadline=None)
def test_the_quick_body_check_answers_as_the_full_walk(value, depth, longest):
    """With the raw bytes, check_json skips the string work on bodies that cannot hold a long
    string or a control character; it must refuse exactly what the full walk refuses, at the same place."""
    from emr.errors import EmrError
    from emr.hub.limits import Limits, _walk_json, check_json

    limits = Limits(depth, longest, 10, 10, 10)

    def verdict(check) -> tuple[str, str | None] | None:
        try:
            check()
        except EmrError as exc:
            return type(exc).__name__, exc.problems[0].location
        return None

    assert verdict(lambda: check_json(value, limits, orjson.dumps(value))) == verdict(lambda: _walk_json(value, limits))
