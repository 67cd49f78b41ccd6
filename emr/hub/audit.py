"""The audit trail: an AuditEvent (IHE BALP shape) for every access to patient data.

Each request under ``/fhir`` and ``/cds-services`` carries an ``AuditTrail`` (a context
variable set by the security middleware). Reads, searches and operations note the
patients they touch on it; when the response is ready the middleware writes one
AuditEvent per person touched — who (client and facility), what (interaction,
resources, query), which patient, why (purpose of use) and the outcome — before
the response leaves. Creates, updates and deletes are audited by ``AuditWriter``, a
store write hook, in the same database transaction as the change: no change
without its entry, no entry for a change that rolled back (a failed write is
audited afterwards, as a failure). Requests the hub refuses (401, 403) are audited
too. AuditEvents are the hub's own: the API cannot create, change or delete them.
"""

from __future__ import annotations

import base64
import uuid
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import bindparam, select
from sqlalchemy.engine import Connection

from emr.fhir.dates import to_fhir_instant
from emr.hub import access
from emr.hub.access import Principal
from emr.hub.db import ResourceRow, before_commit, transaction_state
from emr.hub.relationships import AF, PS, person_key, subject_of
from emr.identity import NATIONAL_ID_SYSTEM

if TYPE_CHECKING:
    from emr.hub.store import Store

R = ResourceRow.__table__
DCM = "http://dicom.nema.org/resources/ontology/DCM"
ACT_REASON = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
RESTFUL = "http://hl7.org/fhir/restful-interaction"
OPERATION_SYSTEM = "urn:emr:code:operation"
CLIENT_SYSTEM = "urn:emr:client-id"
BREAK_GLASS = {"system": ACT_REASON, "code": "BTG", "display": "break the glass"}
ACTIONS = {"create": "C", "read": "R", "vread": "R", "history-instance": "R", "search-type": "E",
           "update": "U", "delete": "D", "operation": "E", "transaction": "E", "batch": "E"}
MAX_REFERENCES = 50  # data entities named per event (a search names its query instead, as BALP's Query does)


@dataclass
class Touched:
    """What one request did to one person's data."""

    national_id: str | None
    patient_ids: set[str] = field(default_factory=set)
    references: list[str] = field(default_factory=list)


@dataclass
class AuditTrail:
    """The audit context of one request."""

    principal: Principal | None
    interaction: str  # a restful-interaction code
    resource_type: str | None = None
    operation: str | None = None
    query: str | None = None
    address: str | None = None
    touched: dict[str, Touched] = field(default_factory=dict)  # by subject
    written: set[str] = field(default_factory=set)  # subjects whose change was audited in its transaction

    def touch(self, subject: str, *, patient_id: str | None, reference: str | None) -> None:
        entry = self.touched.setdefault(subject, Touched(subject if _is_national_id(subject) else None))
        if patient_id:
            entry.patient_ids.add(patient_id)
        if reference and reference not in entry.references:
            entry.references.append(reference)


_trail: ContextVar[AuditTrail | None] = ContextVar("emr_audit_trail", default=None)


def current_trail() -> AuditTrail | None:
    return None if access.hub_acting() else _trail.get()


def start(trail: AuditTrail):  # noqa: ANN201 - a contextvars Token
    return _trail.set(trail)


def stop(token) -> None:  # noqa: ANN001
    _trail.reset(token)


# ---------------------------------------------------------------- noting what was touched

def touched_rows(conn: Connection, rows: list[tuple[int, str]]) -> None:
    """Note the patients behind stored resources ``(pk, 'Type/id')`` on the request's trail."""
    trail = current_trail()
    if trail is None or not rows:
        return
    refs = dict(rows)
    query = (select(AF.c.resource_pk, AF.c.patient_id, PS.c.subject)
             .outerjoin(PS, PS.c.patient_id == AF.c.patient_id)
             .where(AF.c.resource_pk.in_(list(refs)), AF.c.patient_id != ""))
    for pk, patient_id, subject in conn.execute(query).all():
        trail.touch(subject or f"Patient/{patient_id}", patient_id=patient_id, reference=refs[pk])


def touched_patients(conn: Connection, patient_ids: list[str]) -> None:
    if current_trail() is None or not patient_ids:
        return
    rows = conn.execute(select(R.c.pk, R.c.id).where(R.c.resource_type == "Patient", R.c.id.in_(patient_ids)))
    touched_rows(conn, [(pk, f"Patient/{rid}") for pk, rid in rows.all()])


def touched_write(conn: Connection, reference: str, pk: int | None, resource: dict | None) -> None:
    """Note whom a write (``resource`` None: a deletion of ``pk``) is about before it is checked,
    so a refused write is audited against its patient."""
    trail = current_trail()
    if trail is None:
        return
    if resource is None:
        if pk is not None:
            touched_rows(conn, [(pk, reference)])
        return
    subject, patient_id = _subject_of_write(conn, pk or 0, resource, deleted=False)
    if subject:
        trail.touch(subject, patient_id=patient_id, reference=reference)


def touched_person(conn: Connection, national_id: str, references: list[str]) -> None:
    """Note a question about one person by national ID (``$check-reuse``, CDS Hooks, PIXm)."""
    trail = current_trail()
    if trail is None:
        return
    patients = conn.execute(_PATIENTS_OF, {"subject": national_id}).scalars().all()
    for patient_id in patients or [None]:
        trail.touch(national_id, patient_id=patient_id, reference=None)
    for reference in references:
        trail.touch(national_id, patient_id=None, reference=reference)


_PATIENTS_OF = select(PS.c.patient_id).where(PS.c.subject == bindparam("subject"))  # built once: asked per check


# ---------------------------------------------------------------- writing events

@dataclass
class AuditWriter:
    """Store write hook (every type): the audit entries of a request's creates, updates and
    deletes, one per patient and action, written just before their transaction commits."""

    store: "Store"

    def __call__(self, conn: Connection, pk: int, resource: dict, now: datetime) -> None:
        trail = current_trail()
        if trail is None or resource.get("resourceType") == "AuditEvent":
            return
        method = _method_of(resource)
        subject, patient_id = _subject_of_write(conn, pk, resource, deleted=method == "delete")
        ref = f"{resource['resourceType']}/{resource['id']}/_history/{resource['meta']['versionId']}"
        state = transaction_state(conn)
        if "audit" not in state:
            pending: dict[tuple[str, str], Touched] = {}
            state["audit"] = pending
            before_commit(conn, lambda c: self._flush(c, trail, pending, now))
        national_id = subject if subject and _is_national_id(subject) else None
        touched = state["audit"].setdefault((subject or ref, method), Touched(national_id))
        if patient_id:
            touched.patient_ids.add(patient_id)
        touched.references.append(ref)
        trail.written.add(subject or ref)

    def _flush(self, conn: Connection, trail: AuditTrail, pending: dict, now: datetime) -> None:
        for (_, method), touched in sorted(pending.items()):
            event = audit_event(trail, touched, interaction=method, outcome="0", description=None, now=now)
            write_event(self.store, conn, event, now=now)


def write_event(store: "Store", conn: Connection, event: dict, *, now: datetime) -> None:
    """Insert a hub-built AuditEvent (its shape is checked by the tests, not again on every write)."""
    with access.as_hub():
        store.insert_new(conn, event, now=now, new_id=str(uuid.uuid4()), validate=False)


def pending_events(trail: AuditTrail, *, status: int, message: str | None, now: datetime) -> list[dict]:
    """The events a finished request still owes: its reads, or its failure."""
    outcome = "0" if status < 400 else "8" if status >= 500 else "4"
    if outcome == "0":
        return [audit_event(trail, touched, interaction=trail.interaction, outcome="0", description=None, now=now)
                for subject, touched in sorted(trail.touched.items()) if subject not in trail.written]
    description = message or f"refused with HTTP {status}"
    events = [audit_event(trail, touched, interaction=trail.interaction, outcome=outcome,
                          description=description, now=now) for _, touched in sorted(trail.touched.items())]
    if not events and (status in (401, 403) or trail.written):
        events.append(audit_event(trail, Touched(None), interaction=trail.interaction, outcome=outcome,
                                  description=description, now=now))
    return events


def audit_event(trail: AuditTrail, touched: Touched, *, interaction: str, outcome: str,
                description: str | None, now: datetime) -> dict:
    purpose = (trail.principal.purpose if trail.principal else None) or "TREAT"
    subtype = [{"system": RESTFUL, "code": interaction}]
    if trail.operation:
        subtype.append({"system": OPERATION_SYSTEM, "code": trail.operation})
    event: dict = {
        "resourceType": "AuditEvent",
        "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest",
                 "display": "RESTful Operation"},
        "subtype": subtype,
        "action": ACTIONS.get(interaction, "E"),
        "recorded": to_fhir_instant(now),
        "outcome": outcome,
        "purposeOfEvent": [{"coding": [{"system": ACT_REASON, "code": purpose}]}],
        "agent": _agents(trail, purpose),
        "source": {"observer": {"display": "emr coordination hub"},
                   "type": [{"system": "http://terminology.hl7.org/CodeSystem/security-source-type",
                             "code": "4", "display": "Application Server"}]},
        "entity": _entities(trail, touched),
    }
    if description:
        event["outcomeDesc"] = description[:1000]
    if trail.principal is not None and trail.principal.break_glass:
        event["meta"] = {"security": [BREAK_GLASS]}
    return event


def _agents(trail: AuditTrail, purpose: str) -> list[dict]:
    principal = trail.principal
    client: dict = {"type": {"coding": [{"system": DCM, "code": "110153", "display": "Source Role ID"}]},
                    "requestor": True,
                    "purposeOfUse": [{"coding": [{"system": ACT_REASON, "code": purpose}]}]}
    if principal is None:
        client["who"] = {"display": "unauthenticated caller"}
    else:
        client["who"] = {"identifier": {"system": CLIENT_SYSTEM, "value": principal.client_id},
                         "display": principal.client_id}
    if trail.address:
        client["network"] = {"address": trail.address[:255], "type": "2"}
    agents = [client]
    if principal is not None:
        agents.append({"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-RoleClass",
                                            "code": "PROV", "display": "healthcare provider"}]},
                       "who": {"reference": f"Organization/{principal.facility}"}, "requestor": False})
    return agents


def _entities(trail: AuditTrail, touched: Touched) -> list[dict]:
    patient_role = {"type": {"system": ENTITY_TYPE, "code": "1", "display": "Person"},
                    "role": {"system": OBJECT_ROLE, "code": "1", "display": "Patient"}}
    entities = [{"what": {"reference": f"Patient/{pid}"}, **patient_role} for pid in sorted(touched.patient_ids)]
    if touched.national_id:
        entities.append({"what": {"type": "Patient", "identifier": {"system": NATIONAL_ID_SYSTEM,
                                                                   "value": touched.national_id}}, **patient_role})
    listed = [] if trail.interaction == "search-type" else touched.references[:MAX_REFERENCES]  # BALP: a query
    entities += [{"what": {"reference": ref}, "type": {"system": ENTITY_TYPE, "code": "2", "display": "System Object"},
                  "role": {"system": OBJECT_ROLE, "code": "4", "display": "Domain Resource"}}
                 for ref in listed]
    if trail.query is not None or trail.resource_type:
        text = f"{trail.resource_type or ''}{'?' + trail.query if trail.query else ''}" or "/"
        entities.append({"type": {"system": ENTITY_TYPE, "code": "2", "display": "System Object"},
                         "role": {"system": OBJECT_ROLE, "code": "24", "display": "Query"},
                         "query": base64.b64encode(text.encode()).decode()})
    return entities


def _method_of(resource: dict) -> str:
    if set(resource) <= {"resourceType", "id", "meta"}:
        return "delete"
    return "create" if str(resource.get("meta", {}).get("versionId")) == "1" else "update"


def _subject_of_write(conn: Connection, pk: int, resource: dict, *, deleted: bool) -> tuple[str | None, str | None]:
    """(subject, patient id) of a written resource. Runs before ``access_facts`` replaces the
    resource's rows, so a deletion still finds whom the deleted resource was about."""
    if deleted:
        patient_id = conn.execute(select(AF.c.patient_id).where(AF.c.resource_pk == pk, AF.c.patient_id != "")
                                  .limit(1)).scalar()
    else:
        patient_id = subject_of(resource)
    if not patient_id:
        return None, None
    known = transaction_state(conn).setdefault("subjects", {})  # patient id -> person, for this transaction
    if resource.get("resourceType") == "Patient" and not deleted:
        known[patient_id] = person_key(resource)
    elif patient_id not in known:
        known[patient_id] = access.patient_subject(conn, patient_id)
    return known[patient_id], patient_id


def _is_national_id(subject: str) -> bool:
    return len(subject) == 12 and subject.isdigit()
