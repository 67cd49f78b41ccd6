"""Properties of writing: what is created can be read and found, conditional creates and transactions hold."""

from __future__ import annotations

from hypothesis import strategies as st

from emr.conformance.client import Answer
from emr.conformance.session import (
    Property,
    Session,
    Violation,
    expect_same_ids,
    outcome_text,
    without_meta,
)
from emr.identity import mrn_system
from emr.testing import (
    broken,
    citizens,
    diagnostic_reports,
    facility_codes,
    lab_observations,
    patient_of,
    service_requests,
)

# Defects any FHIR server must refuse, whatever profiles it enforces (FHIR JSON itself forbids them).
UNIVERSAL_DEFECTS = ("wrong-type", "bad-date")


def register(session: Session, data: st.DataObject, *values: str, facility: str | None = None) -> tuple[dict, dict]:
    """A fresh citizen registered at a facility: (the Patient sent, the Patient created)."""
    citizen = session.scope.rekey(data.draw(citizens(), label="citizen"))
    code = facility or data.draw(facility_codes(), label="facility")
    sent = session.scope.tagged(patient_of(citizen, facility_code=code, mrn=session.scope.token()), *values)
    return sent, session.create(sent)


def expect_read_back(session: Session, sent: dict, created: dict) -> None:
    rtype = sent["resourceType"]
    stored = session.read(rtype, created["id"])
    if without_meta(stored) != without_meta(sent):
        where = first_difference(without_meta(sent), without_meta(stored))
        raise Violation(f"GET {rtype}/{created['id']} differs from what was created, at {where}",
                        f"GET {rtype}/{created['id']} khác với nội dung đã tạo, tại {where}")


def first_difference(sent: object, stored: object, path: str = "") -> str:
    """Where two JSON values first differ, as a dotted path with the two values."""
    if isinstance(sent, dict) and isinstance(stored, dict):
        for key in sorted(set(sent) | set(stored)):
            if sent.get(key) != stored.get(key):
                return first_difference(sent.get(key), stored.get(key), f"{path}.{key}" if path else key)
    if isinstance(sent, list) and isinstance(stored, list) and len(sent) == len(stored):
        for index, (a, b) in enumerate(zip(sent, stored)):
            if a != b:
                return first_difference(a, b, f"{path}[{index}]")
    return f"{path or '(root)'}: sent {_short(sent)}, read {_short(stored)}"


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


# ---------------------------------------------------------------- 1. create, then read

def create_read(session: Session, data: st.DataObject) -> None:
    sent, created = register(session, data, session.scope.token())
    expect_read_back(session, sent, created)
    ref = f"Patient/{created['id']}"
    results = []
    for _ in range(data.draw(st.integers(0, 2), label="results")):
        observation = session.scope.tagged(data.draw(lab_observations(patient_ref=ref)), session.scope.token())
        results.append(session.create(observation))
        expect_read_back(session, observation, results[-1])
    later = [service_requests(patient_ref=ref)]
    if results:
        later.append(diagnostic_reports(patient_ref=ref, result_refs=[f"Observation/{r['id']}" for r in results]))
    for resource in data.draw(st.lists(st.one_of(later), max_size=2), label="others"):
        resource = session.scope.tagged(resource, session.scope.token())
        expect_read_back(session, resource, session.create(resource))


# ---------------------------------------------------------------- 2. search by identifier

def search_identifier(session: Session, data: st.DataObject) -> None:
    group = session.scope.token()
    people = []
    for _ in range(data.draw(st.integers(1, 4), label="patients")):
        own = session.scope.token()
        sent, created = register(session, data, own, group)
        people.append((own, sent, created["id"]))
    for own, sent, pid in people:
        found = session.search("Patient", [session.identifier(own)])
        expect_same_ids(found.ids, {pid}, what_en=f"Patient?identifier=…|{own}", what_vi=f"Patient?identifier=…|{own}")
        mrn = sent["identifier"][0]
        found = session.search("Patient", [("identifier", f"{mrn['system']}|{mrn['value']}")])
        expect_same_ids(found.ids, {pid}, what_en="the search by MRN", what_vi="tìm theo mã bệnh nhân (MRN)")
    found = session.search("Patient", [session.identifier(group)])
    expect_same_ids(found.ids, {pid for _, _, pid in people}, what_en=f"Patient?identifier=…|{group}",
                    what_vi=f"Patient?identifier=…|{group}")
    expect_total(found.totals, len(people))
    ref = f"Patient/{people[0][2]}"
    observations = {session.create(session.scope.tagged(o, group))["id"]
                    for o in data.draw(st.lists(lab_observations(patient_ref=ref), max_size=3), label="results")}
    found = session.search("Observation", [session.identifier(group)])
    expect_same_ids(found.ids, observations, what_en=f"Observation?identifier=…|{group}",
                    what_vi=f"Observation?identifier=…|{group}")


def expect_total(totals: list[int], wanted: int) -> None:
    wrong = [t for t in totals if t != wanted]
    if wrong:
        raise Violation(f"Bundle.total says {wrong[0]}, but {wanted} resources match",
                        f"Bundle.total ghi {wrong[0]}, nhưng có {wanted} tài nguyên khớp")


# ---------------------------------------------------------------- 3. conditional create

def conditional_create(session: Session, data: st.DataObject) -> None:
    code = data.draw(facility_codes(), label="facility")
    repeats = data.draw(st.integers(2, 3), label="sequential")
    ids = [_conditional_id(session.client.request("POST", "Patient", body=body, headers=headers))
           for body, headers in [_conditional(session, data, code)] * repeats]
    statuses = [201] + [200] * (repeats - 1)
    _expect_one(session, ids, statuses, _statuses(session, len(ids)), what_en="sequential", what_vi="tuần tự")
    count = data.draw(st.integers(2, max(2, session.concurrency)), label="concurrent")
    body, headers = _conditional(session, data, code)
    answers = session.client.at_once(count, "POST", "Patient", body=body, headers=headers)
    ids = [_conditional_id(a) for a in answers]
    wanted = sorted([201] + [200] * (count - 1))
    _expect_one(session, ids, wanted, sorted(a.status for a in answers), what_en=f"{count} concurrent",
                what_vi=f"{count} yêu cầu đồng thời")
    criteria = headers["If-None-Exist"].split("=", 1)[1]
    found = session.search("Patient", [("identifier", criteria)])
    if len(set(found.ids)) != 1:
        raise Violation(f"{count} concurrent conditional creates left {len(set(found.ids))} Patients with "
                        f"identifier {criteria}, not 1",
                        f"{count} yêu cầu tạo có điều kiện đồng thời để lại {len(set(found.ids))} Patient "
                        f"có định danh {criteria}, thay vì 1")


def _conditional(session: Session, data: st.DataObject, code: str) -> tuple[dict, dict[str, str]]:
    citizen = session.scope.rekey(data.draw(citizens(), label="citizen"))
    mrn = session.scope.token()
    body = session.scope.tagged(patient_of(citizen, facility_code=code, mrn=mrn))
    headers = {"If-None-Exist": f"identifier={mrn_system(code)}|{mrn}", "Prefer": "return=representation"}
    return body, headers


def _conditional_id(answer: Answer) -> str | None:
    body = answer.resource()
    if answer.status >= 300:
        raise Violation(f"a conditional create answered {answer.status}: {outcome_text(answer)}",
                        f"tạo có điều kiện trả về {answer.status}: {outcome_text(answer)}")
    location = answer.headers.get("location", "")
    return body.get("id") or (location.split("/_history")[0].rsplit("/", 1)[-1] if location else None)


def _statuses(session: Session, count: int) -> list[int]:
    return [e.status for e in session.client.exchanges[-count:]]


def _expect_one(session: Session, ids: list, wanted: list[int], got: list[int], *, what_en: str, what_vi: str) -> None:
    if got != wanted or len(set(ids)) != 1:
        raise Violation(f"{what_en} conditional creates of one Patient answered {got} with {len(set(ids))} "
                        f"different ids; expected {wanted} and one id",
                        f"tạo có điều kiện ({what_vi}) cùng một Patient trả về {got} với {len(set(ids))} id "
                        f"khác nhau; mong đợi {wanted} và một id")


# ---------------------------------------------------------------- 4. transactions are atomic

def transaction_atomic(session: Session, data: st.DataObject) -> None:
    group = session.scope.token()
    entries = _entries(session, data, group)
    bad = data.draw(st.integers(0, len(entries) - 1), label="bad entry")
    damaged = [dict(e) for e in entries]
    damaged[bad]["resource"] = data.draw(broken(entries[bad]["resource"], kinds=UNIVERSAL_DEFECTS), label="defect")
    answer = session.client.request("POST", "", body=_bundle(damaged))
    if not 400 <= answer.status < 500:
        raise Violation(f"a transaction whose entry {bad} is invalid answered {answer.status}, not 4xx",
                        f"giao dịch có mục {bad} không hợp lệ trả về {answer.status}, không phải 4xx")
    for rtype in ("Patient", "Observation"):
        left = session.search(rtype, [session.identifier(group)]).ids
        if left:
            raise Violation(f"the refused transaction left {len(left)} {rtype} behind ({left[0]}…)",
                            f"giao dịch bị từ chối vẫn để lại {len(left)} {rtype} ({left[0]}…)")
    _apply_whole(session, entries, group)


def _entries(session: Session, data: st.DataObject, group: str) -> list[dict]:
    code = data.draw(facility_codes(), label="facility")
    citizen = session.scope.rekey(data.draw(citizens(), label="citizen"))
    patient_url = f"urn:uuid:{data.draw(st.uuids(), label='patient urn')}"
    registered = session.scope.tagged(patient_of(citizen, facility_code=code, mrn=session.scope.token()), group)
    results = data.draw(st.lists(lab_observations(patient_ref=patient_url), min_size=1, max_size=3), label="results")
    entries = [_post(patient_url, registered)]
    entries += [_post(f"urn:uuid:{data.draw(st.uuids())}", session.scope.tagged(r, group)) for r in results]
    return entries


def _post(full_url: str, resource: dict) -> dict:
    return {"fullUrl": full_url, "resource": resource, "request": {"method": "POST", "url": resource["resourceType"]}}


def _bundle(entries: list[dict]) -> dict:
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def _apply_whole(session: Session, entries: list[dict], group: str) -> None:
    """The same transaction without the defect is applied whole, references resolved."""
    answer = session.client.request("POST", "", body=_bundle(entries))
    reply = answer.resource()
    if answer.status != 200 or len(reply.get("entry") or []) != len(entries):
        raise Violation(f"the valid transaction answered {answer.status}: {outcome_text(answer)}",
                        f"giao dịch hợp lệ trả về {answer.status}: {outcome_text(answer)}")
    patients = session.search("Patient", [session.identifier(group)]).ids
    found = session.search("Observation", [session.identifier(group)])
    if len(patients) != 1 or len(found.ids) != len(entries) - 1:
        raise Violation(f"the valid transaction made {len(patients)} Patients and {len(found.ids)} Observations, "
                        f"not 1 and {len(entries) - 1}",
                        f"giao dịch hợp lệ tạo {len(patients)} Patient và {len(found.ids)} Observation, "
                        f"thay vì 1 và {len(entries) - 1}")
    subjects = {(r.get("subject") or {}).get("reference") for r in found.resources.values()}
    if subjects != {f"Patient/{patients[0]}"}:
        raise Violation(f"Observation.subject should be Patient/{patients[0]} once the urn:uuid is resolved, "
                        f"not {sorted(map(str, subjects))}",
                        f"Observation.subject phải là Patient/{patients[0]} sau khi giải urn:uuid, "
                        f"không phải {sorted(map(str, subjects))}")


PROPERTIES = [
    Property("create-read", "Tạo rồi đọc lại được đúng nội dung (bỏ qua meta)",
             "create then read returns the same content (ignoring meta)", create_read),
    Property("search-identifier", "Tìm theo định danh trả về đúng những gì đã tạo, không hơn",
             "search by identifier finds exactly what was created, no more", search_identifier),
    Property("conditional-create", "Tạo có điều kiện là lũy đẳng, tuần tự và đồng thời",
             "conditional create is idempotent, sequentially and under concurrent requests", conditional_create),
    Property("transaction-atomic", "Giao dịch có một mục sai không để lại dấu vết nào",
             "a transaction with one invalid entry leaves no trace of the others", transaction_atomic),
]
