"""Linking every facility's Patient to one person by the personal identification number.

Each facility registers its own Patient (its MRN plus the national ID). After every
Patient write the hub rebuilds the ``Person`` resource for each national ID the
Patient carries now or carried before, linking all Patients that share it. When the
linked records disagree (birth date, sex, family name) or contradict the number's
own birth year and sex, the Person is tagged ``needs-review`` with the reasons, and
the records stay linked: nothing is merged and nothing is dropped.

The ``person`` table row for a national ID is inserted-or-ignored and then locked, so
two facilities registering the same citizen at once still make exactly one Person.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import orjson
from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection

from emr.errors import InvalidInput, InvalidNationalId, NotFound
from emr.hub import access, audit
from emr.hub.db import PersonRow, ReferenceIndex, ResourceRow, TokenIndex
from emr.hub.searchparams import normalise
from emr.hub.store import Store
from emr.identity import NATIONAL_ID_SYSTEM, demographic_conflicts, parse_national_id

REVIEW_TAG_SYSTEM = "urn:emr:tag"
REVIEW_TAG = {"system": REVIEW_TAG_SYSTEM, "code": "needs-review", "display": "Linked records disagree"}
REVIEW_REASON_URL = "urn:emr:extension:link-review-reason"

R = ResourceRow.__table__
TK = TokenIndex.__table__
RF = ReferenceIndex.__table__
P = PersonRow.__table__


@dataclass
class PatientLinker:
    """The Patient write hook that keeps ``Person`` resources in step."""

    store: Store

    def __call__(self, conn: Connection, pk: int, patient: dict, now: datetime) -> None:
        patient_id = patient["id"]
        national_ids = set(national_ids_of(patient)) | self._previously_linked(conn, patient_id)
        for national_id in sorted(national_ids):
            self.relink(conn, national_id, now=now)

    def _previously_linked(self, conn: Connection, patient_id: str) -> set[str]:
        persons = select(RF.c.resource_pk).where(
            RF.c.resource_type == "Person", RF.c.param == "link",
            RF.c.target_type == "Patient", RF.c.target_id == patient_id)
        ids = select(TK.c.code).where(TK.c.resource_pk.in_(persons), TK.c.param == "identifier",
                                      TK.c.system == NATIONAL_ID_SYSTEM)
        return set(conn.execute(ids).scalars())

    def relink(self, conn: Connection, national_id: str, *, now: datetime) -> None:
        """Rebuild the Person of one national ID from every Patient that carries it now."""
        person_id = _lock_person(conn, national_id)
        person, row = linked_person(person_id, national_id, _patients_with(conn, national_id))
        conn.execute(update(P).where(P.c.national_id == national_id).values(
            needs_review=row["needs_review"], review_reasons=row["review_reasons"]))
        self.store.update(conn, "Person", person_id, person, now=now)


def linked_person(person_id: str, national_id: str, patients: list[dict]) -> tuple[dict, dict]:
    """The Person resource and the ``person`` table row for every Patient with one national ID.

    ``patients`` in the order they were stored. The write hook and the bulk import both
    build the Person here.
    """
    reasons = review_reasons(national_id, patients)
    row = {"national_id": national_id, "person_id": person_id, "needs_review": bool(reasons),
           "review_reasons": "\n".join(reasons)}
    return person_resource(person_id, national_id, patients, reasons), row


def national_ids_of(patient: dict) -> list[str]:
    return [i["value"] for i in patient.get("identifier") or []
            if isinstance(i, dict) and i.get("system") == NATIONAL_ID_SYSTEM and i.get("value")]


def _lock_person(conn: Connection, national_id: str) -> str:
    values = {"national_id": national_id, "person_id": str(uuid.uuid4()), "needs_review": False, "review_reasons": ""}
    dialect_insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    conn.execute(dialect_insert(P).values(values).on_conflict_do_nothing())
    query = select(P.c.person_id).where(P.c.national_id == national_id)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    return conn.execute(query).scalar_one()


def _patients_with(conn: Connection, national_id: str) -> list[dict]:
    pks = select(TK.c.resource_pk).where(TK.c.resource_type == "Patient", TK.c.param == "identifier",
                                         TK.c.system == NATIONAL_ID_SYSTEM, TK.c.code == national_id)
    rows = conn.execute(select(R.c.content).where(R.c.pk.in_(pks), R.c.deleted.is_(False)).order_by(R.c.pk))
    return [orjson.loads(content) for content in rows.scalars()]


def review_reasons(national_id: str, patients: list[dict]) -> list[str]:
    """Why a person's linked records need a human look; empty when they agree."""
    reasons: list[str] = []
    try:
        number = parse_national_id(national_id)
    except InvalidNationalId as exc:
        return [f"national-id: {exc.message}"]
    for patient in patients:
        for conflict in demographic_conflicts(number, birth_date=patient.get("birthDate"), gender=patient.get("gender")):
            reasons.append(f"Patient/{patient['id']} {conflict}")
    for label, values in _disagreements(patients).items():
        reasons.append(f"{label}: linked records say {', '.join(sorted(values))}")
    return reasons


def _disagreements(patients: list[dict]) -> dict[str, set[str]]:
    fields = {
        "birth-date": {p["birthDate"] for p in patients if p.get("birthDate")},
        "gender": {p["gender"] for p in patients if p.get("gender") in ("male", "female")},
        "family-name": {normalise(n["family"]) for p in patients for n in p.get("name") or []
                        if isinstance(n, dict) and n.get("family")},
    }
    return {label: values for label, values in fields.items() if len(values) > 1}


def person_resource(person_id: str, national_id: str, patients: list[dict], reasons: list[str]) -> dict:
    person: dict = {
        "resourceType": "Person",
        "id": person_id,
        "identifier": [{"use": "official", "system": NATIONAL_ID_SYSTEM, "value": national_id}],
        "active": bool(patients),
        "link": [{"target": {"reference": f"Patient/{p['id']}"}, "assurance": "level3"} for p in patients],
    }
    first = patients[0] if patients else {}
    for element in ("name", "gender", "birthDate"):
        if first.get(element):
            person[element] = first[element]
    if reasons:
        person["meta"] = {"tag": [REVIEW_TAG]}
        person["extension"] = [{"url": REVIEW_REASON_URL, "valueString": r} for r in reasons]
    return person


# ---------------------------------------------------------------- $ihe-pix

def pix_query(conn: Connection, *, source_identifier: str, target_systems: list[str]) -> dict:
    """IHE PIXm ITI-83: every identifier the hub knows for the person behind one identifier —
    among the registrations the caller may see (a source it may not see is not found)."""
    access.require_scope("Patient", "s")
    system, _, value = source_identifier.partition("|")
    if not system or not value:
        raise InvalidInput("sourceIdentifier must be 'system|value'", location="sourceIdentifier")
    sources = _visible(conn, _patients_by_identifier(conn, system, value))
    if not sources:
        raise NotFound(f"no Patient carries the identifier {source_identifier}", location="sourceIdentifier")
    linked = {p["id"]: p for p in sources}
    for national_id in {n for p in sources for n in national_ids_of(p)}:
        linked.update({p["id"]: p for p in _visible(conn, _patients_with(conn, national_id))})
    audit.touched_patients(conn, sorted(linked))
    return _pix_parameters(list(linked.values()), skip=(system, value), target_systems=target_systems)


def _visible(conn: Connection, patients: list[dict]) -> list[dict]:
    allowed = access.visible_ids(conn, "Patient", [p["id"] for p in patients])
    return [p for p in patients if p["id"] in allowed]


def _patients_by_identifier(conn: Connection, system: str, value: str) -> list[dict]:
    pks = select(TK.c.resource_pk).where(TK.c.resource_type == "Patient", TK.c.param == "identifier",
                                         TK.c.system == system, TK.c.code == value)
    rows = conn.execute(select(R.c.content).where(R.c.pk.in_(pks), R.c.deleted.is_(False)).order_by(R.c.pk))
    return [orjson.loads(c) for c in rows.scalars()]


def _pix_parameters(patients: list[dict], *, skip: tuple[str, str], target_systems: list[str]) -> dict:
    identifiers: dict[tuple[str, str], dict] = {}
    for patient in patients:
        for ident in patient.get("identifier") or []:
            key = (ident.get("system", ""), ident.get("value", ""))
            if key != skip and (not target_systems or key[0] in target_systems):
                identifiers[key] = {"system": key[0], "value": key[1]}
    parts = [{"name": "targetIdentifier", "valueIdentifier": i} for _, i in sorted(identifiers.items())]
    parts += [{"name": "targetId", "valueReference": {"reference": f"Patient/{p['id']}"}} for p in patients]
    return {"resourceType": "Parameters", "parameter": parts}
