"""Property 7: bad input gets a 4xx with an OperationOutcome, never a 5xx and never a success."""

from __future__ import annotations

from collections.abc import Callable

from hypothesis import strategies as st

from emr.conformance.client import Answer
from emr.conformance.session import Property, Session, Violation, outcome_text
from emr.testing import (
    DEFECT_KINDS,
    bad_search_values,
    broken,
    citizens,
    facility_codes,
    lab_observations,
    malformed_json,
    patient_of,
    service_requests,
)


def bad_input(session: Session, data: st.DataObject) -> None:
    kind = data.draw(st.sampled_from(sorted(REQUESTS)), label="kind")
    answer = REQUESTS[kind](session, data)
    body = answer.resource()
    refused = 400 <= answer.status < 500
    if refused and body.get("resourceType") == "OperationOutcome" and body.get("issue"):
        return
    if refused:
        raise Violation(f"{kind}: answered {answer.status} but without an OperationOutcome saying why",
                        f"{kind}: trả về {answer.status} nhưng không có OperationOutcome giải thích")
    raise Violation(f"{kind}: answered {answer.status}, not 4xx: {outcome_text(answer)}",
                    f"{kind}: trả về {answer.status}, không phải 4xx: {outcome_text(answer)}")


def _invalid_resource(session: Session, data: st.DataObject) -> Answer:
    valid = st.one_of(_patients(session), lab_observations(), service_requests())
    resource = data.draw(valid.flatmap(lambda r: broken(r, kinds=DEFECT_KINDS)), label="invalid resource")
    tagged = session.scope.tagged(resource, session.scope.token())  # should it be stored after all, it is the run's
    return session.client.request("POST", resource["resourceType"], body=tagged)


def _patients(session: Session) -> st.SearchStrategy[dict]:
    return st.builds(lambda who, code: patient_of(session.scope.rekey(who), facility_code=code,
                                                  mrn=session.scope.token()), citizens(), facility_codes())


def _type_mismatch(session: Session, data: st.DataObject) -> Answer:
    resource = session.scope.tagged(data.draw(_patients(session), label="patient"), session.scope.token())
    return session.client.request("POST", "Observation", body=resource)


def _malformed_json(session: Session, data: st.DataObject) -> Answer:
    return session.client.request("POST", "Patient", body=data.draw(malformed_json(), label="body"))


def _bad_search(session: Session, data: st.DataObject) -> Answer:
    name, value = data.draw(bad_search_values(), label="search")
    return session.client.request("GET", "Observation", params=[(name, value)])


def _unknown_type(session: Session, data: st.DataObject) -> Answer:
    name = data.draw(st.sampled_from(["Patients", "patient", "BenhNhan", "Foo"]), label="type")
    return session.client.request("GET", name)


def _id_mismatch(session: Session, data: st.DataObject) -> Answer:
    resource = session.scope.tagged(data.draw(_patients(session), label="patient"))
    resource["id"] = session.scope.token()
    return session.client.request("PUT", f"Patient/{session.scope.token()}", body=resource)


def _bad_bundle(session: Session, data: st.DataObject) -> Answer:
    kind = data.draw(st.sampled_from(["collection", "document", "searchset", "no-such-type"]), label="Bundle.type")
    return session.client.request("POST", "", body={"resourceType": "Bundle", "type": kind})


REQUESTS: dict[str, Callable[[Session, st.DataObject], Answer]] = {
    "invalid-resource": _invalid_resource,
    "type-mismatch": _type_mismatch,
    "malformed-json": _malformed_json,
    "bad-search-value": _bad_search,
    "unknown-type": _unknown_type,
    "id-mismatch": _id_mismatch,
    "bad-bundle-type": _bad_bundle,
}

PROPERTIES = [
    Property("bad-input", "Dữ liệu sai nhận 4xx kèm OperationOutcome, không bao giờ 5xx",
             "bad input gets a 4xx with an OperationOutcome, never a 5xx", bad_input),
]
