"""Who is asking, and what they may see and change: the hub's access rules.

The security middleware puts the request's ``Principal`` (from its access token) in a
context variable; the store, the search and the operations call the checks below,
which read it. With no principal — the hub's own writes (facility registry, person
links, audit entries), the CLI, or a hub started with ``--no-auth`` — nothing is
restricted.

The rules:

- **Scopes**: every interaction needs a granted SMART scope for its type and letter
  (``c r u d s``), else 403.
- **Writes**: a facility writes only what it owns — its own Organization as the
  performer, author, requester, service provider or managing organization — and only
  about a patient it may see; a deleted resource is put back only by the facility that
  owned its last version. Person, Organization and AuditEvent are the hub's own.
- **Reads**: a facility sees its own data; another facility's data about a patient
  only while it has a treatment relationship with that person (a registration,
  encounter, order or referral involving the facility, linked across facilities by
  national ID) and the patient has not refused sharing (a Consent with a deny
  provision). Registry data (Organization…) is for everyone. An emergency purpose of
  use (break-glass) sees everything; it is flagged in the audit trail.

``visibility()`` is the read rule as one SQL condition, so searches filter and count
in the database and paging stays exact.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

import orjson
from sqlalchemy import and_, bindparam, exists, literal, or_, select
from sqlalchemy.engine import Connection
from sqlalchemy.sql import ColumnElement

from emr.errors import Forbidden
from emr.hub.db import ResourceRow, VersionRow
from emr.hub.relationships import AF, CL, PS, SR, owners_of, subject_of
from emr.hub.scopes import Scope, allows

R = ResourceRow.__table__
V = VersionRow.__table__
EMERGENCY_PURPOSES = frozenset({"ETREAT", "BTG"})
PUBLIC_TYPES = frozenset({"Organization", "Location", "Practitioner", "PractitionerRole", "HealthcareService",
                          "Endpoint"})
HUB_TYPES = frozenset({"Person", "Organization", "AuditEvent"})
INTERACTION_NAMES = {"c": "create", "r": "read", "u": "update", "d": "delete", "s": "search"}


@dataclass(frozen=True)
class Principal:
    """The authenticated caller of one request."""

    client_id: str
    facility: str
    scopes: tuple[Scope, ...]
    purpose: str | None = None  # HL7 v3 PurposeOfUse: TREAT, or ETREAT/BTG for an emergency
    token_id: str = ""

    @property
    def break_glass(self) -> bool:
        return self.purpose in EMERGENCY_PURPOSES


_principal: ContextVar[Principal | None] = ContextVar("emr_principal", default=None)
_hub_acting: ContextVar[bool] = ContextVar("emr_hub_acting", default=False)


def current() -> Principal | None:
    """The caller the rules apply to: None while the hub acts on its own behalf."""
    return None if _hub_acting.get() else _principal.get()


def hub_acting() -> bool:
    return _hub_acting.get()


@contextmanager
def acting_for(principal: Principal | None) -> Iterator[None]:
    token = _principal.set(principal)
    try:
        yield
    finally:
        _principal.reset(token)


@contextmanager
def as_hub() -> Iterator[None]:
    """Writes made by the hub itself (derived resources, audit entries) are not the caller's."""
    token = _hub_acting.set(True)
    try:
        yield
    finally:
        _hub_acting.reset(token)


# ---------------------------------------------------------------- scopes

def require_scope(resource_type: str, interaction: str) -> None:
    principal = current()
    if principal is not None and not allows(principal.scopes, resource_type, interaction):
        raise Forbidden(f"the access token's scopes do not allow {INTERACTION_NAMES[interaction]} of "
                        f"{resource_type} (needs system/{resource_type}.{interaction})", location=resource_type)


# ---------------------------------------------------------------- reads

def visibility(table=R) -> ColumnElement[bool] | None:  # noqa: ANN001 - a SQLAlchemy table or alias
    """The rows of ``table`` the current caller may see, as a condition; None when unrestricted."""
    principal = current()
    if principal is None or principal.break_glass:
        return None
    facility = principal.facility
    shared = select(PS.c.patient_id).where(PS.c.subject.in_(_related_subjects(facility)),
                                           PS.c.subject.not_in(_refused_subjects()))
    return or_(
        table.c.resource_type.in_(sorted(PUBLIC_TYPES)),
        table.c.pk.in_(select(AF.c.resource_pk).where(AF.c.owner == facility)),
        table.c.pk.in_(select(AF.c.resource_pk).where(AF.c.patient_id.in_(shared))),
    )


def _related_subjects(facility: str):  # noqa: ANN202 - a SQL select
    return select(PS.c.subject).join(CL, CL.c.patient_id == PS.c.patient_id).where(CL.c.facility_code == facility)


def _refused_subjects():  # noqa: ANN202 - a SQL select
    return select(PS.c.subject).join(SR, SR.c.patient_id == PS.c.patient_id)


def check_read(conn: Connection, resource_type: str, pk: int) -> None:
    """Raise ``Forbidden`` unless the caller may read the resource stored at ``pk``."""
    require_scope(resource_type, "r")
    if not may_see(conn, resource_type, pk):
        raise Forbidden(_refusal(conn, pk), location=resource_type)


def may_see(conn: Connection, resource_type: str, pk: int) -> bool:
    """``visibility()`` for one stored resource, asked with a few indexed lookups."""
    principal = current()
    if principal is None or principal.break_glass or resource_type in PUBLIC_TYPES:
        return True
    rows = conn.execute(select(AF.c.owner, AF.c.patient_id).where(AF.c.resource_pk == pk)).all()
    if any(row.owner == principal.facility for row in rows):
        return True
    patient_id = next((row.patient_id for row in rows if row.patient_id), None)
    if patient_id is None:
        return False
    subject = conn.execute(select(PS.c.subject).where(PS.c.patient_id == patient_id)).scalar()
    return (subject is not None and subject_related(conn, principal.facility, subject)
            and not subject_refused(conn, subject))


def _refusal(conn: Connection, pk: int) -> str:
    principal = current()
    patient = conn.execute(select(AF.c.patient_id).where(AF.c.resource_pk == pk)).scalar() or ""
    if patient and subject_refused(conn, patient_subject(conn, patient)):
        return ("the patient has refused sharing with other facilities (Consent); "
                "only an emergency (X-Purpose-Of-Use: ETREAT) may override it")
    return (f"facility {principal.facility} has no treatment relationship with this patient "
            "(a registration, encounter, order or referral); in an emergency send X-Purpose-Of-Use: ETREAT")


def patient_subject(conn: Connection, patient_id: str) -> str:
    found = conn.execute(select(PS.c.subject).where(PS.c.patient_id == patient_id)).scalar()
    return found or f"Patient/{patient_id}"


def subject_refused(conn: Connection, subject: str) -> bool:
    return conn.execute(_SUBJECT_REFUSED, {"subject": subject}).first() is not None


def subject_related(conn: Connection, facility: str, subject: str) -> bool:
    return conn.execute(_SUBJECT_RELATED, {"facility": facility, "subject": subject}).first() is not None


# Built once: these two run on every order-time check, where building a select costs more than running it.
_SUBJECT_REFUSED = select(literal(1)).where(exists(
    select(SR.c.resource_pk).join(PS, PS.c.patient_id == SR.c.patient_id).where(PS.c.subject == bindparam("subject"))))
_SUBJECT_RELATED = select(literal(1)).where(exists(
    _related_subjects(bindparam("facility")).where(PS.c.subject == bindparam("subject"))))


def visible_ids(conn: Connection, resource_type: str, ids: list[str]) -> set[str]:
    """Which of these resources the caller may see (all of them when unrestricted)."""
    condition = visibility()
    if condition is None or not ids:
        return set(ids)
    rows = conn.execute(select(R.c.id).where(R.c.resource_type == resource_type, R.c.id.in_(ids), condition))
    return set(rows.scalars())


# ---------------------------------------------------------------- writes

def check_write(conn: Connection, resource_type: str, pk: int | None, resource: dict | None) -> None:
    """Raise unless the caller may create (``pk`` None), update or delete (``resource`` None) this."""
    principal = current()
    if principal is None:
        return
    interaction = "c" if pk is None else "d" if resource is None else "u"
    if resource_type in HUB_TYPES:
        raise Forbidden(f"{resource_type} resources are written by the hub only; they cannot be "
                        f"{'created' if interaction == 'c' else 'changed or deleted'} through the API",
                        location=resource_type)
    require_scope(resource_type, interaction)
    stored = None if pk is None else _last_live(conn, pk)
    if stored is not None:
        _require_owner(principal, stored, verb="change")
    if resource is not None:
        _require_owner(principal, resource, verb="write")
        _require_subject_visible(conn, resource)


def _last_live(conn: Connection, pk: int) -> dict | None:
    """The stored resource, or after a deletion its last version before it: a deletion names
    no facility, so the facility that owned the resource is the one that may put it back."""
    row = conn.execute(select(R.c.deleted, R.c.content).where(R.c.pk == pk)).one()
    if not row.deleted:
        return orjson.loads(row.content)
    content = conn.execute(select(V.c.content).where(V.c.resource_pk == pk, V.c.deleted.is_(False))
                           .order_by(V.c.version_id.desc()).limit(1)).scalar()
    return orjson.loads(content) if content else None  # no live version ever: nothing to protect


def _require_owner(principal: Principal, resource: dict, *, verb: str) -> None:
    owners = owners_of(resource)
    if principal.facility in owners:
        return
    rtype = resource.get("resourceType", "resource")
    if not owners:
        raise Forbidden(f"this {rtype} names no facility as its performer, author or requester; "
                        f"name Organization/{principal.facility}", location=rtype)
    raise Forbidden(f"facility {principal.facility} may not {verb} a {rtype} of facility "
                    f"{', '.join(sorted(owners))}: a facility writes only what it performed, authored or "
                    "requested", location=rtype)


def _require_subject_visible(conn: Connection, resource: dict) -> None:
    patient_id = subject_of(resource)
    if not patient_id or resource.get("resourceType") == "Patient":
        return
    pk = conn.execute(select(R.c.pk).where(R.c.resource_type == "Patient", R.c.id == patient_id)).scalar()
    if pk is None:
        return  # a reference to no stored Patient: nothing to disclose, nothing to protect
    if not may_see(conn, "Patient", pk):
        raise Forbidden(_refusal(conn, pk), location="subject")


def sharing(conn: Connection, *, national_id: str) -> tuple[bool, bool]:
    """For a question about one person (``$check-reuse``): (may the caller see other
    facilities' data about them — a treatment relationship, and has the person refused
    sharing). An emergency sees everything; without a caller (no authentication) every
    relationship is assumed but a refusal still holds."""
    principal = current()
    if principal is not None and principal.break_glass:
        return True, False
    refused = subject_refused(conn, national_id)  # the patient's wish holds even on a hub run --no-auth
    return (principal is None or subject_related(conn, principal.facility, national_id)), refused


def restrict(condition: ColumnElement[bool]) -> ColumnElement[bool]:
    """``condition`` and the caller's visibility."""
    visible = visibility()
    return condition if visible is None else and_(condition, visible)
