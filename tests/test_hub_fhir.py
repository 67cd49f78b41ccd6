"""The hub's FHIR REST API through the real app, on SQLite and on PostgreSQL."""

from __future__ import annotations

import orjson
import pytest

from emr.fhir.builders import lab_observation, patient
from emr.identity import FACILITY_CODE_SYSTEM, NATIONAL_ID_SYSTEM, PASSPORT_SYSTEM, mrn_system

NID = "027085012345"  # Bắc Ninh, male, 1985
HDR = {"Content-Type": "application/fhir+json"}


def post(client, path, body, **headers):
    return client.post(f"/fhir/{path}", content=orjson.dumps(body), headers={**HDR, **headers})


def put(client, path, body, **headers):
    return client.put(f"/fhir/{path}", content=orjson.dumps(body), headers={**HDR, **headers})


def register(client, facility="27001", mrn="BN-1", nid=NID, **kw):
    body = patient(facility_code=facility, mrn=mrn, national_id=nid, family=kw.pop("family", "Nguyễn"),
                   given=kw.pop("given", "Văn An"), gender=kw.pop("gender", "male"),
                   birth_date=kw.pop("birth_date", "1985-04-12"), **kw)
    response = put(client, f"Patient?identifier={mrn_system(facility)}|{mrn}", body)
    assert response.status_code in (200, 201), response.text
    return response.json()


def publish(client, patient_id, facility="27001", loinc="4548-4", collected="2025-09-20T08:00:00+07:00", **kw):
    body = lab_observation(patient_ref=f"Patient/{patient_id}", facility_code=facility, loinc=loinc,
                           display="HbA1c", collected=collected,
                           value={"valueQuantity": {"value": 6.1, "unit": "%"}}, **kw)
    response = post(client, "Observation", body)
    assert response.status_code == 201, response.text
    return response.json()


def outcome(response, status):
    assert response.status_code == status, response.text
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"] and body["issue"][0]["diagnostics"]
    return body


# ---------------------------------------------------------------- basics

def test_capability_statement_lists_what_the_hub_searches(client):
    response = client.get("/fhir/metadata")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/fhir+json")
    statement = response.json()
    patient_entry = next(r for r in statement["rest"][0]["resource"] if r["type"] == "Patient")
    assert {"identifier", "family", "given", "birthdate", "gender"} <= {p["name"] for p in patient_entry["searchParam"]}
    assert patient_entry["conditionalCreate"] and patient_entry["conditionalUpdate"]
    from emr.fhir import to_model

    to_model(statement)


def test_create_read_update_history(client):
    created = post(client, "Patient", patient(facility_code="01001", mrn="BM-1", national_id=NID, family="Trần",
                                              given="Thị Bình", gender="male", birth_date="1985"))
    assert created.status_code == 201
    assert created.headers["location"].endswith("/_history/1")
    assert created.headers["etag"] == 'W/"1"'
    body = created.json()
    read = client.get(f"/fhir/Patient/{body['id']}")
    assert read.json() == body
    body["gender"] = "male"
    body["name"][0]["family"] = "Trần Văn"
    updated = put(client, f"Patient/{body['id']}", body)
    assert updated.status_code == 200 and updated.json()["meta"]["versionId"] == "2"
    history = client.get(f"/fhir/Patient/{body['id']}/_history").json()
    assert history["total"] == 2 and [e["resource"]["meta"]["versionId"] for e in history["entry"]] == ["2", "1"]
    assert client.get(f"/fhir/Patient/{body['id']}/_history/1").json()["name"][0]["family"] == "Trần"


def test_if_match_rejects_a_stale_version(client):
    body = register(client)
    body["active"] = True
    assert put(client, f"Patient/{body['id']}", body, **{"If-Match": 'W/"1"'}).status_code == 200
    outcome(put(client, f"Patient/{body['id']}", body, **{"If-Match": 'W/"1"'}), 412)


def test_delete_then_read_is_gone(client):
    body = register(client)
    assert client.delete(f"/fhir/Patient/{body['id']}").status_code == 204
    outcome(client.get(f"/fhir/Patient/{body['id']}"), 410)


@pytest.mark.parametrize("media", ["application/fhir+json", "application/json", "application/json+fhir"])
def test_accepts_the_json_media_types(client, media):
    body = patient(facility_code="01001", mrn="X1", national_id=None, family="Lê", given="An", gender="female",
                   birth_date="2000-01-01")
    response = client.post("/fhir/Patient", content=orjson.dumps(body), headers={"Content-Type": media})
    assert response.status_code == 201
    assert response.headers["content-type"].startswith("application/fhir+json")


# ---------------------------------------------------------------- conditional

def test_conditional_create_header_and_query_forms(client):
    body = patient(facility_code="01001", mrn="BM-7", national_id=NID, family="Phạm", given="Minh",
                   gender="male", birth_date="1985-01-01")
    criteria = f"identifier={mrn_system('01001')}|BM-7"
    first = post(client, "Patient", body, **{"If-None-Exist": criteria})
    again = post(client, "Patient", body, **{"If-None-Exist": criteria})
    query_form = post(client, f"Patient?{criteria}", body)
    assert first.status_code == 201 and again.status_code == 200 and query_form.status_code == 200
    assert first.json()["id"] == again.json()["id"] == query_form.json()["id"]


def test_conditional_create_with_several_matches_is_412(client):
    register(client, facility="27001", mrn="A")
    register(client, facility="01001", mrn="B")
    body = patient(facility_code="79001", mrn="C", national_id=NID, family="Nguyễn", given="Văn An",
                   gender="male", birth_date="1985-04-12")
    outcome(post(client, "Patient", body, **{"If-None-Exist": f"identifier={NATIONAL_ID_SYSTEM}|{NID}"}), 412)


def test_conditional_update_is_the_patient_feed(client):
    first = register(client, mrn="BN-9")
    second = register(client, mrn="BN-9", given="Văn Bình")
    assert first["id"] == second["id"] and second["meta"]["versionId"] == "2"


# ---------------------------------------------------------------- linking

def test_two_facilities_one_search_by_national_id(client):
    local = register(client, facility="27001", mrn="BN-1")
    central = register(client, facility="01001", mrn="BM-1")
    assert local["id"] != central["id"]
    publish(client, local["id"], facility="27001")
    publish(client, central["id"], facility="01001", loinc="2345-7")
    found = client.get(f"/fhir/Observation?patient.identifier={NATIONAL_ID_SYSTEM}|{NID}").json()
    assert found["total"] == 2
    assert {e["resource"]["subject"]["reference"] for e in found["entry"]} == {
        f"Patient/{local['id']}", f"Patient/{central['id']}"}
    person = client.get(f"/fhir/Person?identifier={NATIONAL_ID_SYSTEM}|{NID}").json()["entry"][0]["resource"]
    assert {link["target"]["reference"] for link in person["link"]} == {f"Patient/{local['id']}", f"Patient/{central['id']}"}
    assert "meta" not in person or "tag" not in person["meta"]


def test_contradicting_demographics_are_linked_and_flagged(client):
    register(client, facility="27001", mrn="BN-1", birth_date="1985-04-12")
    register(client, facility="01001", mrn="BM-1", birth_date="1985-07-30", family="Nguyen")
    person = client.get(f"/fhir/Person?identifier={NATIONAL_ID_SYSTEM}|{NID}").json()["entry"][0]["resource"]
    assert len(person["link"]) == 2
    assert person["meta"]["tag"][0]["code"] == "needs-review"
    assert any("birth-date" in e["valueString"] for e in person["extension"])


def test_number_contradicting_its_own_sex_is_flagged_not_dropped(client):
    body = register(client, mrn="BN-2", gender="female")  # digit 4 = 0 says male
    assert body["id"]
    person = client.get(f"/fhir/Person?identifier={NATIONAL_ID_SYSTEM}|{NID}").json()["entry"][0]["resource"]
    assert person["meta"]["tag"][0]["code"] == "needs-review"


def test_patient_without_national_id_is_linked_later(client):
    passport = {"system": PASSPORT_SYSTEM, "value": "C1234567"}
    body = patient(facility_code="01001", mrn="BM-F1", national_id=None, family="Smith", given="John",
                   gender="male", birth_date="1985-02-02", other_identifiers=[passport])
    created = post(client, "Patient", body).json()
    assert client.get(f"/fhir/Person?identifier={NATIONAL_ID_SYSTEM}|{NID}").json()["total"] == 0
    created["identifier"].append({"system": NATIONAL_ID_SYSTEM, "value": NID})
    put(client, f"Patient/{created['id']}", created)
    register(client, facility="27001", mrn="BN-1", family="Smith", given="John", birth_date="1985-02-02")
    person = client.get(f"/fhir/Person?identifier={NATIONAL_ID_SYSTEM}|{NID}").json()["entry"][0]["resource"]
    assert len(person["link"]) == 2


def test_ihe_pix_cross_references_identifiers(client):
    local = register(client, facility="27001", mrn="BN-1")
    register(client, facility="01001", mrn="BM-1")
    response = client.get(f"/fhir/Patient/$ihe-pix?sourceIdentifier={mrn_system('27001')}|BN-1")
    params = response.json()["parameter"]
    identifiers = {(p["valueIdentifier"]["system"], p["valueIdentifier"]["value"])
                   for p in params if p["name"] == "targetIdentifier"}
    assert (mrn_system("01001"), "BM-1") in identifiers and (NATIONAL_ID_SYSTEM, NID) in identifiers
    assert f"Patient/{local['id']}" in {p["valueReference"]["reference"] for p in params if p["name"] == "targetId"}
    only = client.get(f"/fhir/Patient/$ihe-pix?sourceIdentifier={mrn_system('27001')}|BN-1"
                      f"&targetSystem={mrn_system('01001')}").json()["parameter"]
    assert [p["valueIdentifier"]["value"] for p in only if p["name"] == "targetIdentifier"] == ["BM-1"]
    outcome(client.get(f"/fhir/Patient/$ihe-pix?sourceIdentifier={mrn_system('27001')}|nobody"), 404)


# ---------------------------------------------------------------- bundles

def _transaction(entries):
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def test_transaction_rewrites_urn_uuid_references(client):
    pat = patient(facility_code="27001", mrn="T-1", national_id=NID, family="Nguyễn", given="An",
                  gender="male", birth_date="1985")
    obs = lab_observation(patient_ref="urn:uuid:11111111-1111-1111-1111-111111111111", facility_code="27001",
                          loinc="2345-7", display="Glucose", collected="2025-09-01T07:00:00+07:00")
    bundle = _transaction([
        {"fullUrl": "urn:uuid:11111111-1111-1111-1111-111111111111", "resource": pat,
         "request": {"method": "POST", "url": "Patient"}},
        {"fullUrl": "urn:uuid:22222222-2222-2222-2222-222222222222", "resource": obs,
         "request": {"method": "POST", "url": "Observation"}},
    ])
    response = post(client, "", bundle)
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["type"] == "transaction-response"
    patient_id = result["entry"][0]["resource"]["id"]
    assert result["entry"][1]["resource"]["subject"]["reference"] == f"Patient/{patient_id}"
    assert result["entry"][0]["response"]["status"].startswith("201")


def test_one_bundle_registers_links_and_publishes(client):
    """Results sent ahead of their Patient in one transaction, one naming it by reference and
    one only by national ID: both are found under the Patient, the person is linked, and the
    first result can be reused at another hospital."""
    pat = patient(facility_code="27001", mrn="T-9", national_id=NID, family="Trần", given="Cúc",
                  gender="male", birth_date="1985")
    by_reference, by_identifier = (
        lab_observation(patient_ref="urn:uuid:44444444-4444-4444-4444-444444444444", facility_code="27001",
                        loinc=loinc, display=loinc, collected="2025-09-01T07:00:00+07:00",
                        value={"valueQuantity": {"value": 6.1, "unit": "%"}}) for loinc in ("4548-4", "2345-7"))
    by_identifier["subject"] = {"type": "Patient", "identifier": {"system": NATIONAL_ID_SYSTEM, "value": NID}}
    response = post(client, "", _transaction([
        {"fullUrl": f"urn:uuid:3333333{n}-3333-3333-3333-333333333333", "resource": obs,
         "request": {"method": "POST", "url": "Observation"}} for n, obs in enumerate((by_reference, by_identifier))
    ] + [{"fullUrl": "urn:uuid:44444444-4444-4444-4444-444444444444", "resource": pat,
          "request": {"method": "POST", "url": "Patient"}}]))
    assert response.status_code == 200, response.text
    patient_id = response.json()["entry"][2]["resource"]["id"]
    assert client.get(f"/fhir/Observation?subject=Patient/{patient_id}").json()["total"] == 2
    persons = client.get(f"/fhir/Person?identifier={NATIONAL_ID_SYSTEM}|{NID}").json()
    assert [link["target"]["reference"] for e in persons["entry"] for link in e["resource"]["link"]] == [
        f"Patient/{patient_id}"]
    register(client, "01001", mrn="BM-9", family="Trần", given="Cúc")  # referred up to Bạch Mai
    params = [{"name": "patient", "valueIdentifier": {"system": NATIONAL_ID_SYSTEM, "value": NID}},
              {"name": "facility", "valueIdentifier": {"system": FACILITY_CODE_SYSTEM, "value": "01001"}},
              {"name": "at", "valueDateTime": "2025-09-10T08:00:00+07:00"},
              {"name": "code", "valueCoding": {"system": "http://loinc.org", "code": "4548-4"}}]
    answer = post(client, "$check-reuse", {"resourceType": "Parameters", "parameter": params})
    assert answer.status_code == 200, answer.text
    parts = {p["name"]: p for p in answer.json()["parameter"][0]["part"]}
    assert parts["decision"]["valueCode"] == "reuse", parts


def test_transaction_with_one_bad_entry_leaves_no_trace(client):
    good = patient(facility_code="27001", mrn="T-2", national_id=NID, family="Lê", given="Bình",
                   gender="male", birth_date="1985")
    bad = {"resourceType": "Observation", "status": "bogus", "code": {}}
    response = post(client, "", _transaction([
        {"resource": good, "request": {"method": "POST", "url": "Patient"}},
        {"resource": bad, "request": {"method": "POST", "url": "Observation"}},
    ]))
    body = outcome(response, 422)
    assert any("Bundle.entry[1]" in (i.get("expression") or [""])[0] for i in body["issue"])
    assert client.get(f"/fhir/Patient?identifier={mrn_system('27001')}|T-2").json()["total"] == 0


def test_batch_reports_each_entry(client):
    good = patient(facility_code="27001", mrn="B-1", national_id=None, family="Lê", given="Bình",
                   gender="male", birth_date="1985")
    response = post(client, "", {"resourceType": "Bundle", "type": "batch", "entry": [
        {"resource": good, "request": {"method": "POST", "url": "Patient"}},
        {"resource": {"resourceType": "Observation", "status": "bogus"}, "request": {"method": "POST", "url": "Observation"}},
    ]})
    statuses = [e["response"]["status"] for e in response.json()["entry"]]
    assert statuses[0].startswith("201") and statuses[1].startswith("4")


# ---------------------------------------------------------------- search

def test_search_patient_by_name_is_accent_insensitive(client):
    register(client, mrn="N-1", family="Nguyễn", given="Thị Hằng", gender="female", nid="027185012345")
    assert client.get("/fhir/Patient?family=nguyen").json()["total"] == 1
    assert client.get("/fhir/Patient?given=hang").json()["total"] == 1
    assert client.get("/fhir/Patient?family:exact=Nguyen").json()["total"] == 0
    assert client.get("/fhir/Patient?gender=female&birthdate=1985").json()["total"] == 1


def test_date_prefixes_and_sorting(client):
    pid = register(client)["id"]
    for day in ("01", "10", "20"):
        publish(client, pid, collected=f"2025-09-{day}T08:00:00+07:00")
    by = lambda q: client.get(f"/fhir/Observation?patient={pid}&{q}").json()  # noqa: E731
    assert by("date=ge2025-09-10")["total"] == 2
    assert by("date=lt2025-09-10")["total"] == 1
    assert by("date=2025-09")["total"] == 3
    assert by("date=gt2025-09-10T08:00:00%2B07:00")["total"] == 1
    newest_first = [e["resource"]["effectiveDateTime"][:10] for e in by("_sort=-date")["entry"]]
    assert newest_first == ["2025-09-20", "2025-09-10", "2025-09-01"]


def test_paging_walks_every_match_once(client):
    pid = register(client)["id"]
    made = {publish(client, pid, collected=f"2025-08-{d:02d}T08:00:00+07:00")["id"] for d in range(1, 12)}
    page = client.get(f"/fhir/Observation?patient=Patient/{pid}&_count=4&_sort=date").json()
    seen = []
    while True:
        assert page["total"] == 11
        seen += [e["resource"]["id"] for e in page["entry"]]
        nxt = [link["url"] for link in page["link"] if link["relation"] == "next"]
        if not nxt:
            break
        page = client.get(nxt[0].replace("http://testserver", "")).json()
    assert len(seen) == 11 and set(seen) == made


def test_include_diagnostic_report_results(client):
    pid = register(client)["id"]
    obs = publish(client, pid)
    report = {"resourceType": "DiagnosticReport", "status": "final",
              "code": {"coding": [{"system": "http://loinc.org", "code": "4548-4"}]},
              "subject": {"reference": f"Patient/{pid}"}, "effectiveDateTime": "2025-09-20T08:00:00+07:00",
              "performer": [{"reference": "Organization/27001"}], "result": [{"reference": f"Observation/{obs['id']}"}]}
    assert post(client, "DiagnosticReport", report).status_code == 201
    found = client.get(f"/fhir/DiagnosticReport?patient={pid}&_include=DiagnosticReport:result").json()
    assert [e["search"]["mode"] for e in found["entry"]] == ["match", "include"]


def test_performer_logical_reference_is_searchable_by_identifier(client):
    pid = register(client)["id"]
    publish(client, pid, facility="27001")

    assert client.get(f"/fhir/Observation?performer:identifier={FACILITY_CODE_SYSTEM}|27001").json()["total"] == 1


def test_patient_and_subject_are_one_search_kept_once(client):
    """An Observation's ``patient`` and ``subject`` read the same element: every way of asking
    by either name finds the result, and the hub keeps one index row for the two."""
    pid = register(client)["id"]
    obs = publish(client, pid)["id"]
    for query in (f"patient={pid}", f"subject=Patient/{pid}", f"subject:Patient={pid}",
                  f"patient.identifier={NATIONAL_ID_SYSTEM}|{NID}", f"subject:Patient.gender=male"):
        found = client.get(f"/fhir/Observation?{query}").json()
        assert [e["resource"]["id"] for e in found["entry"]] == [obs], query
    for name in ("patient", "subject"):
        found = client.get(f"/fhir/Observation?_id={obs}&_include=Observation:{name}").json()
        assert [(e["resource"]["resourceType"], e["search"]["mode"]) for e in found["entry"]] == [
            ("Observation", "match"), ("Patient", "include")], name
    with client.app.state.hub.engine.connect() as conn:
        rows = conn.exec_driver_sql(
            "SELECT param FROM ix_reference JOIN resource ON resource.pk = ix_reference.resource_pk "
            f"WHERE resource.id = '{obs}' AND target_type = 'Patient'").scalars().all()
    assert rows == ["patient"]


# ---------------------------------------------------------------- errors

def test_malformed_json(client):
    outcome(client.post("/fhir/Patient", content=b"{not json", headers=HDR), 400)


def test_wrong_resource_type_for_url(client):
    outcome(post(client, "Observation", {"resourceType": "Patient"}), 400)


def test_unknown_type(client):
    outcome(client.get("/fhir/Spaceship"), 404)


def test_profile_failure(client):
    body = outcome(post(client, "Observation", {"resourceType": "Observation", "status": "bogus", "code": {}}), 422)
    assert any(i.get("expression") for i in body["issue"])


def test_invalid_national_id(client):
    body = patient(facility_code="01001", mrn="Z", national_id="000085012345", family="A", given="B",
                   gender="male", birth_date="1985")
    response = post(client, "Patient", body)
    assert 400 <= response.status_code < 500
    assert "province" in response.text


def test_unsupported_search_parameter(client):
    outcome(client.get("/fhir/Patient?shoe-size=42"), 400)
    assert client.get("/fhir/Patient?shoe-size=42", headers={"Prefer": "handling=lenient"}).status_code == 200


def test_body_over_limit_is_413(client):
    huge = b'{"resourceType": "Patient", "text": "' + b"x" * (6 * 1024 * 1024) + b'"}'
    outcome(client.post("/fhir/Patient", content=huge, headers=HDR), 413)


def test_wrong_content_type_is_415(client):
    outcome(client.post("/fhir/Patient", content=b"<Patient/>", headers={"Content-Type": "application/xml"}), 415)


def test_unknown_route_is_an_operation_outcome(client):
    outcome(client.get("/fhir/Patient/x/y/z/w"), 404)


def test_search_by_post_reads_a_form_body(client):
    """POST Type/_search used Starlette's form parser, which needs a package the hub does not
    install: every such search was a 500."""
    created = post(client, "Patient", patient(facility_code="01001", mrn="FORM-1", national_id=NID, family="A",
                                              given="B", gender="male", birth_date="1985")).json()
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    found = client.post("/fhir/Patient/_search", content=f"identifier={mrn_system('01001')}|FORM-1", headers=form)
    assert found.status_code == 200 and [e["resource"]["id"] for e in found.json()["entry"]] == [created["id"]]
    outcome(client.post("/fhir/Patient/_search", content=b"{}", headers=HDR), 415)


@pytest.mark.parametrize("field, value", [("birthDate", 0), ("active", "true"), ("gender", True)])
def test_a_primitive_in_the_wrong_json_type_is_refused(client, field, value):
    """The R4B models read 0 as a date and "true" as a boolean; FHIR JSON does not, and the
    hub must not store (and later serve) what other clients cannot read."""
    body = patient(facility_code="01001", mrn="TYPE-1", national_id=NID, family="A", given="B",
                   gender="male", birth_date="1985") | {field: value}
    issue = outcome(post(client, "Patient", body), 422)["issue"]
    assert [i["expression"] for i in issue] == [[f"Patient.{field}"]]


def test_search_by_logical_id(client):
    first, second = register(client, mrn="ID-1")["id"], register(client, mrn="ID-2", nid=None)["id"]
    assert client.get(f"/fhir/Patient?_id={first}").json()["total"] == 1
    found = client.get(f"/fhir/Patient?_id={first},{second}&_sort=_id").json()
    assert [e["resource"]["id"] for e in found["entry"]] == sorted([first, second])
    assert client.get("/fhir/Patient?_id=not-a-stored-id").json()["total"] == 0
