"""What the access rules need to know about each resource, kept in step with every write.

For each resource: which facility owns it (performed, authored or requested it), and
which patient it is about. For registrations, encounters, orders and referrals: which
facilities it puts in a treatment relationship with that patient. For each Patient:
the person it is (its national ID, or ``Patient/<id>`` until it has one). For each
Consent that denies sharing: the patient who refused.

``access_facts`` is the store's write hook for every resource type; the functions
that read a resource (``owners_of``, ``subject_of``, ``care_facilities_of``) are
plain and pure, and the write checks in ``emr.hub.access`` use the same ones.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Table, delete
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection

from emr.hub.db import AccessFact, CareLink, PatientSubject, SharingRefusal
from emr.hub.rowcopy import write_tables
from emr.identity import FACILITY_CODE_SYSTEM, NATIONAL_ID_SYSTEM

AF = AccessFact.__table__
CL = CareLink.__table__
PS = PatientSubject.__table__
SR = SharingRefusal.__table__

_MRN_PREFIX, _MRN_SUFFIX = "urn:emr:facility:", ":mrn"
# Where each type names the facility that owns it; other types use DEFAULT_OWNER_FIELDS.
OWNER_FIELDS: dict[str, tuple[str, ...]] = {
    "Patient": ("managingOrganization",),
    "Observation": ("performer",),
    "DiagnosticReport": ("performer",),
    "Encounter": ("serviceProvider",),
    "ServiceRequest": ("requester",),
    "Task": ("requester", "owner"),
    "DetectedIssue": ("author",),
    "Consent": ("organization",),
    "AuditEvent": ("agent.who",),
    "Person": (),
    "Organization": (),
}
DEFAULT_OWNER_FIELDS = ("performer", "requester", "author", "recorder", "asserter", "serviceProvider",
                        "managingOrganization", "organization", "custodian")
# Which facilities a registration, encounter, order or referral relates to its patient.
CARE_FIELDS: dict[str, tuple[str, ...]] = {
    "Patient": ("managingOrganization",),
    "Encounter": ("serviceProvider",),
    "ServiceRequest": ("requester", "performer"),
    "Task": ("requester", "owner"),
}
SUBJECT_FIELDS = ("subject", "patient", "for", "beneficiary")


# ---------------------------------------------------------------- reading a resource

def owners_of(resource: dict) -> set[str]:
    """The facility codes that own ``resource`` (a Patient without managingOrganization
    belongs to the facility whose MRN it carries)."""
    rtype = resource.get("resourceType", "")
    owners = _facilities(resource, OWNER_FIELDS.get(rtype, DEFAULT_OWNER_FIELDS))
    if rtype == "Patient" and not owners:
        owners = _mrn_facilities(resource)
    return owners


def care_facilities_of(resource: dict) -> set[str]:
    rtype = resource.get("resourceType", "")
    if rtype not in CARE_FIELDS:
        return set()
    found = _facilities(resource, CARE_FIELDS[rtype])
    if rtype == "Patient" and not found:
        found = _mrn_facilities(resource)
    return found


def subject_of(resource: dict) -> str | None:
    """The id of the Patient ``resource`` is about (itself, for a Patient), or None."""
    rtype = resource.get("resourceType")
    if rtype == "Patient":
        return resource.get("id")
    if rtype == "Person":
        return next((pid for link in resource.get("link") or [] if isinstance(link, dict)
                     if (pid := patient_id_of(link.get("target")))), None)
    if rtype == "AuditEvent":
        return next((pid for entity in resource.get("entity") or [] if isinstance(entity, dict)
                     if (pid := patient_id_of(entity.get("what")))), None)
    for name in SUBJECT_FIELDS:
        pid = patient_id_of(resource.get(name))
        if pid:
            return pid
    return None


def patient_id_of(reference: object) -> str | None:
    ref = reference.get("reference") if isinstance(reference, dict) else None
    if not isinstance(ref, str):
        return None
    parts = ref.rstrip("/").split("/")
    return parts[-1] if len(parts) >= 2 and parts[-2] == "Patient" and parts[-1] else None


def facility_of(reference: object) -> str | None:
    """The facility code a reference names: ``Organization/<code>`` or a facility-code identifier."""
    if not isinstance(reference, dict):
        return None
    identifier = reference.get("identifier")
    if isinstance(identifier, dict) and identifier.get("system") == FACILITY_CODE_SYSTEM and identifier.get("value"):
        return str(identifier["value"])
    ref = reference.get("reference")
    if isinstance(ref, str):
        parts = ref.rstrip("/").split("/")
        if len(parts) >= 2 and parts[-2] == "Organization" and parts[-1]:
            return parts[-1]
    return None


def refuses_sharing(consent: dict) -> bool:
    """An active Consent whose provision denies: the patient refused cross-facility sharing."""
    provision = consent.get("provision") if isinstance(consent.get("provision"), dict) else {}
    return consent.get("status") == "active" and provision.get("type") == "deny"


def _facilities(resource: dict, fields: tuple[str, ...]) -> set[str]:
    found = set()
    for path in fields:
        for value in _walk(resource, path.split(".")):
            code = facility_of(value)
            if code:
                found.add(code)
    return found


def _walk(node: object, path: list[str]):
    if isinstance(node, list):
        for item in node:
            yield from _walk(item, path)
    elif not path:
        yield node
    elif isinstance(node, dict) and path[0] in node:
        yield from _walk(node[path[0]], path[1:])


def _mrn_facilities(patient: dict) -> set[str]:
    return {system[len(_MRN_PREFIX):-len(_MRN_SUFFIX)] for i in patient.get("identifier") or []
            if isinstance(i, dict) and isinstance(system := i.get("system"), str)
            and system.startswith(_MRN_PREFIX) and system.endswith(_MRN_SUFFIX)}


# ---------------------------------------------------------------- the write hook

def access_facts(conn: Connection, pk: int, resource: dict, _now: datetime) -> None:
    """Store write hook (every type): replace this resource's owner, subject, care and consent rows."""
    if str((resource.get("meta") or {}).get("versionId")) != "1":  # a first version has no rows yet
        for table in (AF, CL, SR):
            conn.execute(delete(table).where(table.c.resource_pk == pk))
    write_tables(conn, list(access_rows(pk, resource).items()))
    if resource.get("resourceType") == "Patient":
        record_subjects(conn, [resource])


def access_rows(pk: int, resource: dict) -> dict[Table, list[dict]]:
    """The owner, care-link and sharing-refusal rows of one stored resource, by table."""
    if "meta" in resource and len(resource) <= 3 and "id" in resource:
        return {}  # a deletion tombstone: it owns nothing and relates nobody
    patient_id = (subject_of(resource) or "")[:64]
    rows: dict[Table, list[dict]] = {
        AF: [{"resource_pk": pk, "owner": o[:16], "patient_id": patient_id} for o in sorted(owners_of(resource)) or [""]]}
    if patient_id:
        rows[CL] = [{"resource_pk": pk, "facility_code": f[:16], "patient_id": patient_id}
                    for f in sorted(care_facilities_of(resource))]
        if resource.get("resourceType") == "Consent" and refuses_sharing(resource):
            rows[SR] = [{"resource_pk": pk, "patient_id": patient_id}]
    return rows


def person_key(patient: dict) -> str:
    """Whom a Patient is: its national ID, or ``Patient/<id>`` while it has none."""
    national_id = next((i["value"] for i in patient.get("identifier") or [] if isinstance(i, dict)
                        and i.get("system") == NATIONAL_ID_SYSTEM and isinstance(i.get("value"), str)), None)
    return national_id or f"Patient/{patient['id']}"


def record_subjects(conn: Connection, patients: list[dict]) -> None:
    """Record (or correct) whom each Patient is (the write hook's part that a new resource's
    other access rows, written with it by ``emr.hub.batchwrite``, leave to be done)."""
    if not patients:
        return
    values = [{"patient_id": patient["id"], "subject": person_key(patient)[:80]} for patient in patients]
    statement = (pg_insert if conn.dialect.name == "postgresql" else sqlite_insert)(PS)
    conn.execute(statement.on_conflict_do_update(index_elements=["patient_id"],
                                                 set_={"subject": statement.excluded.subject}), values)
