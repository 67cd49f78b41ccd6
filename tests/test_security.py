"""Authentication (SMART Backend Services), access by treatment relationship, consent, break-glass.

Every rule has a test that tries to break it; the hub is the real app with authentication
on, and each facility is a registered client (``tests.facility_clients``).
"""

from __future__ import annotations

from datetime import timedelta

import orjson
import pytest

from emr.credentials import ASSERTION_TYPE, generated_key, seeded_key
from emr.fhir.builders import lab_observation, patient, referral, sharing_refusal
from emr.hub.clients import facility_client, registry_of
from emr.identity import FACILITY_CODE_SYSTEM, NATIONAL_ID_SYSTEM, mrn_system
from tests.conftest import make_client
from tests.facility_clients import TEST_SEED, client_id

TOKEN_URL = "http://testserver/auth/token"
HDR = {"Content-Type": "application/fhir+json"}
NID = "027085012345"  # Bắc Ninh, male, 1985


@pytest.fixture
def hub(sqlite_url, clock):
    """The hub with no automatic credentials: each test says who it is."""
    with make_client(sqlite_url, clock) as client:
        client.auth = None
        yield client
        client.app.state.hub.engine.dispose()


def assertion(clock, facility="01001", *, key=None, aud=TOKEN_URL, jti=None, lifetime=timedelta(minutes=4),
              issuer=None):
    key = key or seeded_key(TEST_SEED, facility)
    return key.assertion(client_id=issuer or client_id(facility), token_url=aud, now=clock(), jti=jti,
                         lifetime=lifetime)


def ask_token(hub, signed, scope="system/*.cruds", **extra):
    form = {"grant_type": "client_credentials", "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": signed, "scope": scope, **extra}
    return hub.post("/auth/token", data=form)


def bearer(hub, clock, facility="01001", scope="system/*.cruds", **extra) -> dict:
    response = ask_token(hub, assertion(clock, facility), scope, **extra)
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def put(hub, path, body, headers):
    return hub.put(f"/fhir/{path}", content=orjson.dumps(body), headers={**HDR, **headers})


def post(hub, path, body, headers):
    return hub.post(f"/fhir/{path}", content=orjson.dumps(body), headers={**HDR, **headers})


def register(hub, headers, facility, nid=NID, mrn="M-1"):
    body = patient(facility_code=facility, mrn=mrn, national_id=nid, family="Nguyễn", given="Văn An",
                   gender="male", birth_date="1985-04-12")
    response = put(hub, f"Patient?identifier={mrn_system(facility)}|{mrn}", body, headers)
    assert response.status_code in (200, 201), response.text
    return response.json()["id"]


def publish(hub, headers, patient_id, facility="27001", loinc="4548-4"):
    body = lab_observation(patient_ref=f"Patient/{patient_id}", facility_code=facility, loinc=loinc,
                           display="HbA1c", collected="2025-09-20T08:00:00+07:00",
                           value={"valueQuantity": {"value": 7.2, "unit": "%"}})
    response = post(hub, "Observation", body, headers)
    assert response.status_code == 201, response.text
    return response.json()["id"]


def refused(response, status):
    assert response.status_code == status, response.text
    body = response.json()
    assert body["resourceType"] == "OperationOutcome" and body["issue"][0]["diagnostics"]
    return body["issue"][0]["diagnostics"]


def check_reuse(hub, headers, facility, nid=NID, code="4548-4"):
    params = {"resourceType": "Parameters", "parameter": [
        {"name": "patient", "valueIdentifier": {"system": NATIONAL_ID_SYSTEM, "value": nid}},
        {"name": "facility", "valueIdentifier": {"system": FACILITY_CODE_SYSTEM, "value": facility}},
        {"name": "code", "valueCoding": {"system": "http://loinc.org", "code": code}},
        {"name": "at", "valueDateTime": "2025-10-01T09:00:00+07:00"}]}
    response = post(hub, "$check-reuse", params, headers)
    assert response.status_code == 200, response.text
    return {p["name"]: p for p in response.json()["parameter"][0]["part"]}


# ---------------------------------------------------------------- public, and what needs a token

def test_metadata_and_smart_configuration_are_public_and_declare_the_service(hub):
    statement = hub.get("/fhir/metadata").json()
    security = statement["rest"][0]["security"]
    assert security["service"][0]["coding"][0]["code"] == "SMART-on-FHIR"
    assert security["extension"][0]["extension"][0]["valueUri"] == TOKEN_URL
    for path in ("/.well-known/smart-configuration", "/fhir/.well-known/smart-configuration"):
        config = hub.get(path).json()
        assert config["token_endpoint"] == TOKEN_URL
        assert set(config["token_endpoint_auth_signing_alg_values_supported"]) == {"RS384", "ES384"}


@pytest.mark.parametrize("method, path", [
    ("GET", "/fhir/Patient"), ("GET", "/fhir/Observation/x"), ("POST", "/fhir/$check-reuse"),
    ("POST", "/fhir"), ("GET", "/cds-services"), ("GET", "/fhir/Patient/x/y/z"), ("DELETE", "/fhir/Patient/x"),
])
def test_no_token_is_401_with_an_operation_outcome(hub, method, path):
    response = hub.request(method, path, content=b"{}", headers=HDR)
    assert "this hub needs a bearer access token" in refused(response, 401)
    assert response.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize("header", ["Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "Bearer not.a.token", "bearer x y"])
def test_malformed_authorization_is_401(hub, header):
    refused(hub.get("/fhir/Patient", headers={"Authorization": header}), 401)


# ---------------------------------------------------------------- the token endpoint

def test_a_token_lets_the_facility_in_and_carries_the_granted_scopes(hub, clock):
    response = ask_token(hub, assertion(clock), "system/Patient.rs system/Observation.cruds openid")
    body = response.json()
    assert response.status_code == 200 and body["token_type"] == "bearer" and body["expires_in"] == 300
    assert body["scope"] == "system/Observation.cruds system/Patient.rs"
    assert response.headers["cache-control"] == "no-store"
    headers = {"Authorization": f"Bearer {body['access_token']}"}
    assert hub.get("/fhir/Patient", headers=headers).status_code == 200


def test_an_expired_token_is_401(hub, clock):
    headers = bearer(hub, clock)
    assert hub.get("/fhir/Patient", headers=headers).status_code == 200
    clock.now += timedelta(seconds=301)
    assert "expired" in refused(hub.get("/fhir/Patient", headers=headers), 401)


def test_a_tampered_token_is_401(hub, clock):
    token = bearer(hub, clock)["Authorization"]
    head, payload, signature = token.removeprefix("Bearer ").split(".")
    forged = payload[:-2] + ("A" if payload[-2] != "A" else "B") + payload[-1]
    refused(hub.get("/fhir/Patient", headers={"Authorization": f"Bearer {head}.{forged}.{signature}"}), 401)


def test_wrong_audience_is_refused(hub, clock):
    response = ask_token(hub, assertion(clock, aud="http://elsewhere/auth/token"))
    assert response.status_code == 401 and response.json()["error"] == "invalid_client"
    assert "aud" in response.json()["error_description"]


def test_a_replayed_jti_is_refused(hub, clock):
    signed = assertion(clock, jti="once-only")
    assert ask_token(hub, signed).status_code == 200
    again = ask_token(hub, signed)
    assert again.status_code == 401 and "already used" in again.json()["error_description"]
    assert ask_token(hub, assertion(clock, jti="once-only")).status_code == 401  # a new assertion, the same jti


def test_an_expired_or_too_long_assertion_is_refused(hub, clock):
    stale = assertion(clock)
    clock.now += timedelta(minutes=5)
    assert ask_token(hub, stale).status_code == 401
    assert ask_token(hub, assertion(clock, lifetime=timedelta(minutes=30))).status_code == 401


def test_a_key_that_is_not_registered_is_refused(hub, clock):
    stranger = seeded_key("someone-else", "01001")
    response = ask_token(hub, assertion(clock, key=stranger))
    assert response.status_code == 401 and response.json()["error"] == "invalid_client"
    unknown_client = ask_token(hub, assertion(clock, issuer="test-99999"))
    assert unknown_client.status_code == 401


@pytest.mark.parametrize("form, error", [
    ({"grant_type": "password"}, "unsupported_grant_type"),
    ({"client_assertion_type": "urn:other"}, "invalid_request"),
    ({"client_assertion": ""}, "invalid_request"),
    ({"client_assertion": "garbage"}, "invalid_client"),
    ({"scope": ""}, "invalid_scope"),
    ({"scope": "patient/*.rs"}, "invalid_scope"),
    ({"purpose_of_use": "SHOPPING"}, "invalid_request"),
])
def test_bad_token_requests_get_an_oauth_error(hub, clock, form, error):
    base = {"grant_type": "client_credentials", "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": assertion(clock), "scope": "system/*.rs"}
    response = hub.post("/auth/token", data={**base, **form})
    assert response.status_code in (400, 401) and response.json()["error"] == error


def test_rs384_clients_work_too(sqlite_url, clock):
    from fastapi.testclient import TestClient

    from emr.config import Settings
    from emr.hub.app import create_app

    key = generated_key("RS384", kid="rsa-1")
    clients = registry_of([facility_client("bm-lab", "01001", key.jwks())])
    app = create_app(Settings(database_url=sqlite_url, base_url="http://testserver/fhir"), clock=clock,
                     clients=clients)
    with TestClient(app) as client:
        signed = key.assertion(client_id="bm-lab", token_url=TOKEN_URL, now=clock())
        assert ask_token(client, signed).status_code == 200
    app.state.hub.engine.dispose()


def test_a_private_key_in_a_registration_is_refused():
    key = seeded_key(TEST_SEED, "01001")
    private = {"keys": [{**key.key.as_dict(private=True), "kid": key.kid}]}
    with pytest.raises(Exception, match="private material"):
        facility_client("leaky", "01001", private)


# ---------------------------------------------------------------- scopes

def test_a_scope_that_does_not_allow_the_interaction_is_403(hub, clock):
    read_only = bearer(hub, clock, scope="system/Patient.rs system/Observation.rs")
    body = patient(facility_code="01001", mrn="S-1", national_id=NID, family="A", given="B", gender="male",
                   birth_date="1985")
    assert "system/Patient.c" in refused(post(hub, "Patient", body, read_only), 403)
    assert "search of Encounter" in refused(hub.get("/fhir/Encounter", headers=read_only), 403)
    assert hub.get("/fhir/Patient", headers=read_only).status_code == 200
    hook = {"hook": "order-select", "hookInstance": "x", "context": {"patientId": "nobody", "draftOrders": {}}}
    refused(hub.post("/cds-services/reuse-check-order-select", content=orjson.dumps(hook),
                     headers={**HDR, **bearer(hub, clock, scope="system/Patient.rs")}), 403)


# ---------------------------------------------------------------- writes

def test_a_facility_cannot_write_for_another(hub, clock):
    bac_ninh, bach_mai = bearer(hub, clock, "27001"), bearer(hub, clock, "01001")
    pid = register(hub, bac_ninh, "27001")
    register(hub, bach_mai, "01001")
    body = lab_observation(patient_ref=f"Patient/{pid}", facility_code="27001", loinc="4548-4", display="HbA1c",
                           collected="2025-09-20T08:00:00+07:00")
    assert "a facility writes only what it performed" in refused(post(hub, "Observation", body, bach_mai), 403)
    mine = register(hub, bac_ninh, "27001", mrn="M-2")
    stolen = hub.get(f"/fhir/Patient/{mine}", headers=bac_ninh).json()
    refused(put(hub, f"Patient/{mine}", stolen, bach_mai), 403)  # Bạch Mai may see it, not change it
    refused(hub.delete(f"/fhir/Patient/{mine}", headers=bach_mai), 403)
    visit = {"resourceType": "Encounter", "status": "finished", "subject": {"reference": f"Patient/{pid}"},
             "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"}}
    assert "names no facility" in refused(post(hub, "Encounter", visit, bac_ninh), 403)


def test_a_transaction_with_one_foreign_entry_writes_nothing(hub, clock):
    bach_mai = bearer(hub, clock, "01001")
    pid = register(hub, bach_mai, "01001")
    own = lab_observation(patient_ref=f"Patient/{pid}", facility_code="01001", loinc="4548-4", display="x",
                          collected="2025-09-20T08:00:00+07:00")
    foreign = {**own, "performer": [{"reference": "Organization/27001"}]}
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": own, "request": {"method": "POST", "url": "Observation"}},
        {"resource": foreign, "request": {"method": "POST", "url": "Observation"}}]}
    refused(post(hub, "", bundle, bach_mai), 403)
    assert hub.get(f"/fhir/Observation?patient={pid}", headers=bach_mai).json()["total"] == 0


def test_a_deleted_resource_is_put_back_only_by_the_facility_that_owned_it(hub, clock):
    bac_ninh, bach_mai = bearer(hub, clock, "27001"), bearer(hub, clock, "01001")
    pid = register(hub, bac_ninh, "27001")
    register(hub, bach_mai, "01001")  # Bạch Mai treats the patient too: it may see the result
    oid = publish(hub, bac_ninh, pid)
    mine = hub.get(f"/fhir/Observation/{oid}", headers=bac_ninh).json()
    theirs = {**mine, "performer": [{"reference": "Organization/01001"}]}
    assert hub.delete(f"/fhir/Observation/{oid}", headers=bac_ninh).status_code in (200, 204)
    assert "of facility 27001" in refused(put(hub, f"Observation/{oid}", theirs, bach_mai), 403)
    refused(hub.delete(f"/fhir/Observation/{oid}", headers=bach_mai), 403)
    back = put(hub, f"Observation/{oid}", mine, bac_ninh)
    assert back.status_code in (200, 201) and back.json()["meta"]["versionId"] == "3", back.text
    assert hub.get(f"/fhir/Observation/{oid}", headers=bach_mai).json()["meta"]["versionId"] == "3"
    refused(put(hub, f"Observation/{oid}", theirs, bach_mai), 403)  # live again, and still Bắc Ninh's


# ---------------------------------------------------------------- reads and the treatment relationship

def test_reading_another_facilitys_data_needs_a_relationship(hub, clock):
    bac_ninh, bach_mai = bearer(hub, clock, "27001"), bearer(hub, clock, "01001")
    pid = register(hub, bac_ninh, "27001")
    oid = publish(hub, bac_ninh, pid)
    by_nid = f"/fhir/Observation?patient.identifier={NATIONAL_ID_SYSTEM}|{NID}"
    assert "no treatment relationship" in refused(hub.get(f"/fhir/Observation/{oid}", headers=bach_mai), 403)
    assert hub.get(by_nid, headers=bach_mai).json()["total"] == 0
    assert hub.get(f"/fhir/Person?identifier={NATIONAL_ID_SYSTEM}|{NID}", headers=bach_mai).json()["total"] == 0
    assert check_reuse(hub, bach_mai, "01001")["reason"]["valueCode"] == "no-prior-result"
    assert hub.get(f"/fhir/Patient/$ihe-pix?sourceIdentifier={mrn_system('27001')}|M-1",
                   headers=bach_mai).status_code == 404
    register(hub, bach_mai, "01001")  # the patient arrives at Bạch Mai: now it has a relationship
    assert hub.get(f"/fhir/Observation/{oid}", headers=bach_mai).status_code == 200
    assert hub.get(by_nid, headers=bach_mai).json()["total"] == 1
    assert check_reuse(hub, bach_mai, "01001")["decision"]["valueCode"] == "reuse"


def test_a_referral_is_a_relationship(hub, clock):
    bac_ninh, cho_ray = bearer(hub, clock, "27001"), bearer(hub, clock, "79001")
    pid = register(hub, bac_ninh, "27001")
    oid = publish(hub, bac_ninh, pid)
    refused(hub.get(f"/fhir/Observation/{oid}", headers=cho_ray), 403)
    request, _task = referral(patient_ref=f"Patient/{pid}", from_code="27001", to_code="79001",
                              authored="2025-09-21T08:00:00+07:00", reason="diabetes",
                              identifier={"system": "urn:emr:facility:27001:referral", "value": "R-1"})
    response = post(hub, "ServiceRequest", request, bac_ninh)
    assert response.status_code == 201, response.text
    assert hub.get(f"/fhir/Observation/{oid}", headers=cho_ray).status_code == 200


def test_paging_and_total_count_only_what_the_caller_may_see(hub, clock):
    bac_ninh, bach_mai = bearer(hub, clock, "27001"), bearer(hub, clock, "01001")
    seen = register(hub, bac_ninh, "27001", nid="027085000001", mrn="A")
    hidden = register(hub, bac_ninh, "27001", nid="027085000002", mrn="B")
    register(hub, bach_mai, "01001", nid="027085000001", mrn="A")
    for _ in range(3):
        publish(hub, bac_ninh, seen)
        publish(hub, bac_ninh, hidden)
    page = hub.get("/fhir/Observation?_count=2", headers=bach_mai).json()
    ids = [e["resource"]["id"] for e in page["entry"]]
    while any(link["relation"] == "next" for link in page["link"]):
        url = next(link["url"] for link in page["link"] if link["relation"] == "next")
        page = hub.get(url.replace("http://testserver", ""), headers=bach_mai).json()
        ids += [e["resource"]["id"] for e in page["entry"]]
        assert page["total"] == 3
    assert len(ids) == 3 and hub.get("/fhir/Observation", headers=bac_ninh).json()["total"] == 6


def test_cds_hooks_follow_the_same_rule(hub, clock):
    bac_ninh, bach_mai = bearer(hub, clock, "27001"), bearer(hub, clock, "01001")
    pid = register(hub, bac_ninh, "27001")
    publish(hub, bac_ninh, pid)
    request = {"hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea", "hook": "order-select",
               "context": {"userId": "PractitionerRole/1", "patientId": pid, "draftOrders": {
                   "resourceType": "Bundle", "entry": [{"resource": {
                       "resourceType": "ServiceRequest", "id": "sr-1", "status": "draft", "intent": "order",
                       "code": {"coding": [{"system": "http://loinc.org", "code": "4548-4"}]},
                       "subject": {"reference": f"Patient/{pid}"}}}]}}}
    refused(hub.post("/cds-services/reuse-check-order-select", content=orjson.dumps(request),
                     headers={**HDR, **bach_mai}), 403)
    foreign = {**request, "context": {**request["context"]}}
    foreign["context"]["draftOrders"]["entry"][0]["resource"]["requester"] = {"reference": "Organization/27001"}
    refused(hub.post("/cds-services/reuse-check-order-select", content=orjson.dumps(foreign),
                     headers={**HDR, **bach_mai}), 403)  # nor may it ask as Bắc Ninh


def test_check_reuse_only_for_the_callers_own_facility(hub, clock):
    bach_mai = bearer(hub, clock, "01001")
    params = {"resourceType": "Parameters", "parameter": [
        {"name": "patient", "valueIdentifier": {"system": NATIONAL_ID_SYSTEM, "value": NID}},
        {"name": "facility", "valueIdentifier": {"system": FACILITY_CODE_SYSTEM, "value": "27001"}},
        {"name": "code", "valueCoding": {"system": "http://loinc.org", "code": "4548-4"}}]}
    assert "own orders" in refused(post(hub, "$check-reuse", params, bach_mai), 403)


# ---------------------------------------------------------------- consent

def test_a_refusal_of_sharing_hides_the_patient_from_other_facilities(hub, clock):
    bac_ninh, bach_mai = bearer(hub, clock, "27001"), bearer(hub, clock, "01001")
    pid = register(hub, bac_ninh, "27001")
    oid = publish(hub, bac_ninh, pid)
    register(hub, bach_mai, "01001")
    assert check_reuse(hub, bach_mai, "01001")["decision"]["valueCode"] == "reuse"
    consent = sharing_refusal(patient_ref=f"Patient/{pid}", facility_code="27001",
                              recorded="2025-09-25T10:00:00+07:00",
                              identifier={"system": "urn:emr:facility:27001:consent", "value": "C-1"})
    assert post(hub, "Consent", consent, bac_ninh).status_code == 201
    assert "refused sharing" in refused(hub.get(f"/fhir/Observation/{oid}", headers=bach_mai), 403)
    by_nid = f"/fhir/Observation?patient.identifier={NATIONAL_ID_SYSTEM}|{NID}"
    assert hub.get(by_nid, headers=bach_mai).json()["total"] == 0
    assert hub.get(f"/fhir/Patient?identifier={NATIONAL_ID_SYSTEM}|{NID}", headers=bach_mai).json()["total"] == 1
    answer = check_reuse(hub, bach_mai, "01001")
    assert (answer["decision"]["valueCode"], answer["reason"]["valueCode"]) == ("repeat", "consent")
    assert hub.get(by_nid, headers=bac_ninh).json()["total"] == 1  # its own records stay its own
    emergency = {**bach_mai, "X-Purpose-Of-Use": "ETREAT"}
    assert hub.get(f"/fhir/Observation/{oid}", headers=emergency).status_code == 200


# ---------------------------------------------------------------- break-glass

def test_break_glass_reads_succeed_and_are_flagged(hub, clock):
    bac_ninh, bach_mai = bearer(hub, clock, "27001"), bearer(hub, clock, "01001")
    pid = register(hub, bac_ninh, "27001")
    oid = publish(hub, bac_ninh, pid)
    assert hub.get(f"/fhir/Observation/{oid}", headers={**bach_mai, "X-Purpose-Of-Use": "ETREAT"}).status_code == 200
    emergency_token = bearer(hub, clock, "01001", purpose_of_use="BTG")
    assert hub.get(f"/fhir/Observation/{oid}", headers=emergency_token).status_code == 200
    events = hub.get(f"/fhir/AuditEvent?patient.identifier={NATIONAL_ID_SYSTEM}|{NID}&purpose=ETREAT,BTG",
                     headers=bac_ninh).json()
    flagged = [e["resource"] for e in events["entry"]]
    assert len(flagged) == 2
    assert all(e["meta"]["security"][0]["code"] == "BTG" and e["outcome"] == "0" for e in flagged)
    assert {e["agent"][1]["who"]["reference"] for e in flagged} == {"Organization/01001"}


def test_a_client_without_break_glass_cannot_declare_an_emergency(sqlite_url, clock):
    from fastapi.testclient import TestClient

    from emr.config import Settings
    from emr.hub.app import create_app

    key = seeded_key(TEST_SEED, "01001")
    clients = registry_of([facility_client("no-glass", "01001", key.jwks(), break_glass=False)])
    app = create_app(Settings(database_url=sqlite_url, base_url="http://testserver/fhir"), clock=clock,
                     clients=clients)
    with TestClient(app) as client:
        signed = key.assertion(client_id="no-glass", token_url=TOKEN_URL, now=clock())
        assert ask_token(client, signed, purpose_of_use="ETREAT").json()["error"] == "invalid_scope"
        token = ask_token(client, key.assertion(client_id="no-glass", token_url=TOKEN_URL, now=clock())).json()
        headers = {"Authorization": f"Bearer {token['access_token']}", "X-Purpose-Of-Use": "ETREAT"}
        refused(client.get("/fhir/Patient", headers=headers), 403)
    app.state.hub.engine.dispose()


def test_no_auth_hub_asks_for_nothing_and_says_so(sqlite_url):
    from fastapi.testclient import TestClient

    from emr.config import Settings
    from emr.hub.app import create_app

    app = create_app(Settings(database_url=sqlite_url, auth_required=False))
    assert app.state.hub.auth_required is False
    with TestClient(app) as client:
        assert client.get("/fhir/Patient").status_code == 200
        assert client.get("/.well-known/smart-configuration").status_code == 404
        assert "security" not in client.get("/fhir/metadata").json()["rest"][0]
    app.state.hub.engine.dispose()
