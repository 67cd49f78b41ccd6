"""The hub's result facts: kept in step with Observations, read by the order-time check.

``observation_facts`` is the Observation write hook that records, for every LOINC
coding, who the result is about (national ID), when the specimen was collected,
its status, the performing facility and whether it is positive; ``fact_rows`` builds
those rows for it and for the bulk import, which answers the lookups from caches
instead of one query each. ``patient_facts``
copies a Patient's national ID onto its results when the Patient is linked later.
``candidates`` answers "this person's newest results for these tests" with one
query over ``ix_result_lookup``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Protocol

from sqlalchemy import bindparam, delete, func, insert, select, update
from sqlalchemy.engine import Connection

from emr.fhir import LOINC_SYSTEM
from emr.fhir.dates import parse_interval
from emr.hub import memo
from emr.hub.db import ResourceRow, ResultFact, TokenIndex
from emr.hub.linking import national_ids_of
from emr.hub.verification import patient_trusted
from emr.identity import FACILITY_CODE_SYSTEM, NATIONAL_ID_SYSTEM

F = ResultFact.__table__
R = ResourceRow.__table__
TK = TokenIndex.__table__

POSITIVE_CODES = frozenset({"POS", "DET", "A", "AA", "H", "HH", "HU", "L", "LL", "LU", "R"})
NEGATIVE_CODES = frozenset({"NEG", "ND", "N", "S"})
POSITIVE_SNOMED = frozenset({"10828004", "260373001"})  # Positive; Detected
NEGATIVE_SNOMED = frozenset({"260385009", "260415000"})  # Negative; Not detected
CANDIDATES_PER_TEST = 10


@dataclass(frozen=True)
class FactRow:
    observation_id: str
    loinc: str
    status: str
    collected: datetime
    performer_code: str | None
    positive: bool | None
    identity_ok: bool


class FactLookups(Protocol):
    """What building a result's facts needs to know beyond the Observation itself."""

    def national_id(self, patient_id: str | None) -> str | None: ...
    def facility_code(self, organization_id: str) -> str | None: ...
    def trusted(self, patient_id: str | None) -> bool: ...


@dataclass(frozen=True)
class DatabaseLookups:
    """Lookups answered by the database (the per-resource write path), each asked once per
    transaction until a Patient or Organization is written (``memo``)."""

    conn: Connection

    def national_id(self, patient_id: str | None) -> str | None:
        return memo.remembered(self.conn, "Patient", ("national-id", patient_id),
                               lambda: _national_id(self.conn, patient_id))

    def facility_code(self, organization_id: str) -> str | None:
        return memo.remembered(self.conn, "Organization", ("facility-code", organization_id),
                               lambda: facility_code_of(self.conn, organization_id))

    def trusted(self, patient_id: str | None) -> bool:
        return memo.remembered(self.conn, "Patient", ("trusted", patient_id),
                               lambda: patient_trusted(self.conn, patient_id))


def fact_rows(pk: int, observation: dict, lookups: FactLookups) -> list[dict]:
    """The ``result_fact`` rows of one Observation (none for a tombstone or an undated result).

    The write hook and the bulk import both build their rows here.
    """
    if "status" not in observation:
        return []  # a deletion tombstone: the facts are gone with the result
    collected = _collected_ms(observation)
    loincs = _loinc_codes(observation)
    if collected is None or not loincs:
        return []
    patient_id = subject_patient_id(observation)
    row = {"resource_pk": pk, "observation_id": observation["id"], "patient_id": patient_id or "",
           "national_id": lookups.national_id(patient_id), "status": observation.get("status", ""),
           "collected_ms": collected, "performer_code": performer_code(observation, lookups),
           "positive": result_positive(observation), "identity_ok": lookups.trusted(patient_id)}
    return [{**row, "loinc": code} for code in loincs]


def observation_facts(conn: Connection, pk: int, observation: dict, _now: datetime) -> None:
    """Observation write hook: replace this Observation's facts."""
    conn.execute(delete(F).where(F.c.resource_pk == pk))
    rows = fact_rows(pk, observation, DatabaseLookups(conn))
    if rows:
        conn.execute(insert(F), rows)


def patient_facts(conn: Connection, _pk: int, patient: dict, _now: datetime) -> None:
    """Patient write hook: results follow their Patient's (possibly new) national ID."""
    ids = national_ids_of(patient)
    conn.execute(update(F).where(F.c.patient_id == patient["id"]).values(national_id=ids[0] if ids else None))


def _candidates_query(*, own_only: bool):  # noqa: ANN202 - a SQL select
    """This person's newest results for some tests, up to ten per test; built once, then only bound.

    Building the windowed select costs far more than running it (about 1 ms against
    tens of µs), so each of its two shapes is built once and reused."""
    where = [F.c.national_id == bindparam("national_id"), F.c.loinc.in_(bindparam("loincs", expanding=True)),
             F.c.collected_ms <= bindparam("at_ms")]
    if own_only:
        where.append(F.c.performer_code == bindparam("only_from"))
    ranked = select(
        F.c.observation_id, F.c.loinc, F.c.status, F.c.collected_ms, F.c.performer_code, F.c.positive,
        F.c.identity_ok, F.c.row,
        func.row_number().over(partition_by=F.c.loinc, order_by=(F.c.collected_ms.desc(), F.c.row.desc())).label("n"),
    ).where(*where).subquery()
    newest_first = (ranked.c.collected_ms.desc(), ranked.c.row.desc())  # the later published wins a tie
    return select(ranked).where(ranked.c.n <= CANDIDATES_PER_TEST).order_by(*newest_first)


CANDIDATES = {own_only: _candidates_query(own_only=own_only) for own_only in (False, True)}


def candidates(conn: Connection, *, national_id: str, loincs: list[str], at: datetime,
               only_from: str | None = None) -> list[FactRow]:
    """The newest results (up to ten per test) collected no later than ``at``, newest first (of two
    collected at once, the later published): one indexed query.
    ``only_from``: just this facility's own results (the caller may not see the others')."""
    values = {"national_id": national_id, "loincs": list(loincs), "at_ms": int(at.timestamp() * 1000)}
    if only_from is not None:
        values["only_from"] = only_from
    rows = conn.execute(CANDIDATES[only_from is not None], values).all()
    return [FactRow(r.observation_id, r.loinc, r.status,
                    datetime.fromtimestamp(r.collected_ms / 1000, tz=timezone.utc), r.performer_code, r.positive,
                    r.identity_ok)
            for r in rows]


def result_positive(observation: dict) -> bool | None:
    """True for a positive/detected/abnormal result, False for negative, None when it does not say."""
    codes = {c.get("code") for i in observation.get("interpretation") or [] for c in i.get("coding") or []}
    value_codes = {c.get("code") for c in (observation.get("valueCodeableConcept") or {}).get("coding") or []}
    if codes & POSITIVE_CODES or value_codes & POSITIVE_SNOMED:
        return True
    if codes & NEGATIVE_CODES or value_codes & NEGATIVE_SNOMED:
        return False
    return None


def _collected_ms(observation: dict) -> int | None:
    when = observation.get("effectiveDateTime") or observation.get("effectiveInstant")
    if not isinstance(when, str):
        return None
    return parse_interval(when).low


def _loinc_codes(observation: dict) -> list[str]:
    return sorted({c["code"] for c in (observation.get("code") or {}).get("coding") or []
                   if c.get("system") == LOINC_SYSTEM and c.get("code")})


def subject_patient_id(observation: dict) -> str | None:
    ref = (observation.get("subject") or {}).get("reference") or ""
    parts = ref.split("/")
    return parts[-1] if len(parts) >= 2 and parts[-2] == "Patient" else None


def _national_id(conn: Connection, patient_id: str | None) -> str | None:
    if not patient_id:
        return None
    pk = select(R.c.pk).where(R.c.resource_type == "Patient", R.c.id == patient_id).scalar_subquery()
    return conn.execute(select(TK.c.code).where(
        TK.c.resource_pk == pk, TK.c.param == "identifier", TK.c.system == NATIONAL_ID_SYSTEM).limit(1)).scalar()


def performer_code(observation: dict, lookups: FactLookups) -> str | None:
    """The facility code of the first performer that names a facility."""
    for performer in observation.get("performer") or []:
        identifier = performer.get("identifier") or {}
        if identifier.get("system") == FACILITY_CODE_SYSTEM and identifier.get("value"):
            return identifier["value"]
        ref = performer.get("reference") or ""
        if ref.startswith("Organization/"):
            return lookups.facility_code(ref.split("/")[-1])
    return None


def facility_code_of(conn: Connection, organization_id: str) -> str | None:
    pk = select(R.c.pk).where(R.c.resource_type == "Organization", R.c.id == organization_id).scalar_subquery()
    code = conn.execute(select(TK.c.code).where(
        TK.c.resource_pk == pk, TK.c.param == "identifier", TK.c.system == FACILITY_CODE_SYSTEM).limit(1)).scalar()
    return code or organization_id  # facility Organizations use the facility code as their id
