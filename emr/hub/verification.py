"""Identity verification against the National Population Database (Project 06).

When a facility registers a Patient with a national ID, the hub asks the identity
registry whether the name, birth date and sex match the number, and keeps the answer
per registration. A registration that does not verify is still stored and linked —
but ``$check-reuse`` will not offer another facility's result to it, nor offer a
result recorded under it to anyone else (reason ``identity-unverified``): a typo in
a name must not hand one patient another patient's HbA1c.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from sqlalchemy import bindparam, delete, insert, select, update
from sqlalchemy.engine import Connection

from emr.hub import memo
from emr.hub.db import PatientIdentity, ResultFact
from emr.hub.linking import national_ids_of
from emr.identity import FACILITY_CODE_SYSTEM

I = PatientIdentity.__table__
F = ResultFact.__table__
TRUSTED = frozenset({"verified", "not-checked"})


class IdentityRegistry(Protocol):
    def verify_patient(self, patient: dict) -> str: ...


@dataclass
class IdentityVerifier:
    """Patient write hook: ask the registry, remember the answer, mark the patient's results."""

    registry: IdentityRegistry | None

    def __call__(self, conn: Connection, _pk: int, patient: dict, _now: datetime) -> None:
        conn.execute(delete(I).where(I.c.patient_id == patient["id"]))
        row = self.identity_row(patient)
        if row is not None:
            conn.execute(insert(I).values(row))
            conn.execute(update(F).where(F.c.patient_id == patient["id"]).values(identity_ok=row["status"] in TRUSTED))
        memo.forget(conn, "Patient")  # its trust is what was just written

    def identity_row(self, patient: dict) -> dict | None:
        """The ``patient_identity`` row of a registration (None without a national ID);
        the write hook and the bulk import both build it here."""
        ids = national_ids_of(patient)
        if not ids:
            return None
        status = self.registry.verify_patient(patient) if self.registry else "not-checked"
        return {"patient_id": patient["id"], "national_id": ids[0],
                "facility_code": managing_facility(patient) or "", "status": status}


def managing_facility(patient: dict) -> str | None:
    org = patient.get("managingOrganization") or {}
    identifier = org.get("identifier") or {}
    if identifier.get("system") == FACILITY_CODE_SYSTEM:
        return identifier.get("value")
    ref = org.get("reference") or ""
    return ref.split("/", 1)[1] if ref.startswith("Organization/") else None


def patient_trusted(conn: Connection, patient_id: str | None) -> bool:
    if not patient_id:
        return True
    status = conn.execute(select(I.c.status).where(I.c.patient_id == patient_id)).scalar()
    return status is None or status in TRUSTED


def registration_trusted(conn: Connection, *, national_id: str, facility_code: str) -> bool:
    """False when this facility's registration of the number failed verification."""
    statuses = conn.execute(_REGISTRATION_STATUSES, {"national_id": national_id, "facility": facility_code})
    return all(s in TRUSTED for s in statuses.scalars())


# Asked on every order-time check: built once, only bound per call.
_REGISTRATION_STATUSES = select(I.c.status).where(I.c.national_id == bindparam("national_id"),
                                                  I.c.facility_code == bindparam("facility"))
