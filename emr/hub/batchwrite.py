"""Writing many new resources at once: a few multi-row statements instead of several per resource.

The bulk import and the new resources of a transaction Bundle are written through
here. Every row is built by the same function the
one-resource write path uses — ``store.index_rows``, ``results.fact_rows``,
``linking.linked_person``, ``IdentityVerifier.identity_row`` — so the two paths
cannot drift apart; only the lookups differ: here they are answered from caches
filled by one query per batch instead of one query per row.

The hooks this module knows (linking, result facts, identity, access rows) run
batched; any other hook registered on the store (the audit trail) runs once per
resource, as it would on the ordinary path.
"""

from __future__ import annotations

import functools
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import orjson
from sqlalchemy import Select, Table, bindparam, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection

from emr.fhir.dates import Interval
from emr.hub import access, memo, results
from emr.hub.db import PatientIdentity, PersonRow, ResultFact, TokenIndex
from emr.hub.linking import PatientLinker, linked_person, national_ids_of
from emr.hub.relationships import access_facts, access_rows, record_subjects
from emr.hub.packed import pack
from emr.hub.rowcopy import reserve_pks, write_rows, write_tables
from emr.hub.searchparams import Extracted, extract
from emr.hub.store import (
    CURRENT,
    R,
    V,
    LogicalResolver,
    Store,
    index_rows,
    resolve_logical,
    stamp,
    stored_ids_with_identifier,
)
from emr.hub.verification import TRUSTED, IdentityVerifier
from emr.identity import NATIONAL_ID_SYSTEM

F = ResultFact.__table__
I = PatientIdentity.__table__
P = PersonRow.__table__
TK = TokenIndex.__table__
RowsBeside = Callable[[int, dict], dict[Table, list[dict]]]  # a new resource's (pk, JSON) -> more rows, by table
IN_CHUNK = 500  # values per SQL IN (...) list, well under every driver's parameter limit


def chunks(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


@dataclass(slots=True)
class Ready:
    """A stamped new resource with the part of its writing that needs no database done:
    its JSON, that JSON packed as its row stores it, and its index entries.

    ``ready`` builds one beside the write; the bulk import builds them in its worker
    processes, so a ``Ready`` crosses a process boundary as bytes and plain tuples
    (about half the cost of pickling the dict and the dataclasses themselves)."""

    resource: dict
    json: bytes
    content: bytes
    extracted: Extracted

    def __getstate__(self) -> tuple:
        e = self.extracted
        dates = [(param, interval.low, interval.high) for param, interval in e.dates]
        return self.json, self.content, (e.tokens, e.strings, dates, e.references, e.logical_references)

    def __setstate__(self, state: tuple) -> None:
        self.json, self.content, (tokens, strings, dates, references, logical) = state
        self.resource = orjson.loads(self.json)
        self.extracted = Extracted(tokens, strings, [(p, Interval(low, high)) for p, low, high in dates],
                                   references, logical)


def ready(resource: dict) -> Ready:
    """``resource`` (stamped, new) with its JSON, packed content and index entries."""
    data = orjson.dumps(resource)
    return Ready(resource, data, pack(data), extract(resource))


def insert_resources(conn: Connection, items: list[Ready], *, resolve: LogicalResolver,
                     beside: RowsBeside | None = None) -> list[int]:
    """Insert stamped, new resources with their first version and index rows (and the rows
    ``beside`` gives for each, written with them); their pks, in order.

    A logical reference to a resource of the same batch resolves as it would had that
    resource been written first: identifiers are gathered from the whole batch before
    any reference is resolved.
    """
    if not items:
        return []
    pks = reserve_pks(conn, R, len(items))
    resolve = _with_batch_identifiers(conn, resolve, items)
    per_table: dict[Table, list[dict]] = defaultdict(list)
    for pk, item in zip(pks, items):
        for model, table_rows in index_rows(pk, item.resource, resolve, item.extracted).items():
            per_table[model.__table__].extend(table_rows)
        if beside is not None:
            for table, table_rows in beside(pk, item.resource).items():
                per_table[table].extend(table_rows)
    write_tables(conn, [
        (R, [{"pk": pk, "resource_type": i.resource["resourceType"], "id": i.resource["id"], "version_id": 1,
              "last_updated": i.resource["meta"]["lastUpdated"], "deleted": False, "content": i.content}
             for pk, i in zip(pks, items)]),
        (V, [{"resource_pk": pk, "version_id": 1, "last_updated": i.resource["meta"]["lastUpdated"],
              "method": "POST", "deleted": False, "content": CURRENT} for pk, i in zip(pks, items)]),
        *per_table.items()])
    return pks


def _with_batch_identifiers(conn: Connection, resolve: LogicalResolver, items: list[Ready]) -> LogicalResolver:
    """``resolve``, also counting the identifiers the batch itself carries."""
    local: dict[tuple[str, str, str], set[str]] = defaultdict(set)
    for item in items:
        for param, system, code in item.extracted.tokens:
            if param == "identifier":
                local[(item.resource["resourceType"], system, code)].add(item.resource["id"])
    if not local:
        return resolve

    def both(target_type: str, system: str, value: str) -> str | None:
        mine = local.get((target_type, system, value))
        if not mine:
            return resolve(target_type, system, value)
        ids = mine | set(stored_ids_with_identifier(conn, target_type, system, value))
        return next(iter(ids)) if len(ids) == 1 else None

    return both


@dataclass
class CachedResolver:
    """Logical references (type + identifier) resolved once per import, not once per row."""

    conn: Connection
    known: dict[tuple[str, str, str], str | None] = field(default_factory=dict)

    def __call__(self, target_type: str, system: str, value: str) -> str | None:
        key = (target_type, system, value)
        if key not in self.known:
            self.known[key] = resolve_logical(self.conn, target_type, system, value)
        return self.known[key]


@functools.cache
def _patient_lookups() -> tuple[Select, Select]:
    """Patients' national IDs, and their identity statuses, by Patient id: built once, asked per Bundle."""
    ids = bindparam("ids", expanding=True)
    national_ids = select(R.c.id, TK.c.code).join(TK, TK.c.resource_pk == R.c.pk).where(
        R.c.resource_type == "Patient", R.c.id.in_(ids), TK.c.param == "identifier",
        TK.c.system == NATIONAL_ID_SYSTEM)
    return national_ids, select(I.c.patient_id, I.c.status).where(I.c.patient_id.in_(ids))


@dataclass
class CachedLookups:
    """``results.FactLookups`` answered from caches that ``preload`` fills with one query per chunk."""

    conn: Connection
    national_ids: dict[str, str | None] = field(default_factory=dict)
    statuses: dict[str, str | None] = field(default_factory=dict)
    codes: dict[str, str | None] = field(default_factory=dict)

    def preload(self, patient_ids: set[str]) -> None:
        wanted = sorted(patient_ids - self.national_ids.keys())
        for part in chunks(wanted, IN_CHUNK):
            self.national_ids.update(dict.fromkeys(part))
            self.statuses.update(dict.fromkeys(part))
            national_ids, statuses = _patient_lookups()
            for patient_id, code in self.conn.execute(national_ids, {"ids": part}):
                self.national_ids[patient_id] = self.national_ids[patient_id] or code
            self.statuses.update(dict(self.conn.execute(statuses, {"ids": part}).all()))

    def national_id(self, patient_id: str | None) -> str | None:
        return self.national_ids.get(patient_id) if patient_id else None

    def facility_code(self, organization_id: str) -> str | None:
        if organization_id not in self.codes:
            self.codes[organization_id] = results.facility_code_of(self.conn, organization_id)
        return self.codes[organization_id]

    def trusted(self, patient_id: str | None) -> bool:
        status = self.statuses.get(patient_id) if patient_id else None
        return status is None or status in TRUSTED


@dataclass
class BatchWriter:
    """Writes chunks of new resources and keeps the derived records in step, in one transaction."""

    conn: Connection
    store: Store
    now: datetime
    resolve: LogicalResolver | None = None  # logical references' targets; by default looked up once each
    lookups: CachedLookups = field(init=False)

    def __post_init__(self) -> None:
        self.resolve = self.resolve or CachedResolver(self.conn)
        self.lookups = CachedLookups(self.conn)

    def write(self, resources: Sequence[dict | Ready]) -> list[int]:
        """Insert stamped new resources and run their hooks (a new Patient's before the others',
        so the results written beside it read its national ID and identity status)."""
        items = [r if isinstance(r, Ready) else ready(r) for r in resources]
        pks = insert_resources(self.conn, items, resolve=self.resolve,
                               beside=access_rows if access_facts in self.store.hooks.get("*", []) else None)
        by_type: dict[str, list[tuple[int, dict]]] = defaultdict(list)
        for pk, item in zip(pks, items):
            by_type[item.resource["resourceType"]].append((pk, item.resource))
        for rtype in by_type:
            memo.forget(self.conn, rtype)
        for rtype in sorted(by_type, key=lambda t: t != "Patient"):
            self._run_hooks(rtype, by_type[rtype])
        return pks

    def _run_hooks(self, rtype: str, written: list[tuple[int, dict]]) -> None:
        for hook in self.store.hooks.get("*", []):  # hooks on every write (audit, access)
            if hook is access_facts:  # its rows went in with the resources: one statement fewer
                record_subjects(self.conn, [r for _, r in written if r.get("resourceType") == "Patient"])
                continue
            for pk, resource in written:
                hook(self.conn, pk, resource, self.now)
        with access.as_hub():  # what the type's hooks write (person links…) is the hub's, not the caller's
            for hook in self.store.hooks.get(rtype, []):
                self._run_type_hook(hook, written)

    def _run_type_hook(self, hook: object, written: list[tuple[int, dict]]) -> None:
        if isinstance(hook, PatientLinker):
            self._link(hook, [r for _, r in written])
        elif isinstance(hook, IdentityVerifier):
            self._insert(I, [row for _, r in written if (row := hook.identity_row(r)) is not None])
        elif hook is results.observation_facts:
            self._facts(written)
        elif hook is not results.patient_facts:  # a new Patient has no results yet: its id was never referred to
            for pk, resource in written:
                hook(self.conn, pk, resource, self.now)

    def _facts(self, written: list[tuple[int, dict]]) -> None:
        self.lookups.preload({pid for _, r in written if (pid := results.subject_patient_id(r))})
        self._insert(F, [row for pk, r in written for row in results.fact_rows(pk, r, self.lookups)])

    def _link(self, linker: PatientLinker, patients: list[dict]) -> None:
        """One Person per new national ID in a few statements; a national ID the hub already
        links goes through the linker itself, which reads every facility's Patients."""
        by_nid: dict[str, list[dict]] = defaultdict(list)
        for patient in patients:
            for national_id in dict.fromkeys(national_ids_of(patient)):
                by_nid[national_id].append(patient)
        planned = {nid: linked_person(str(uuid.uuid4()), nid, group) for nid, group in by_nid.items()}
        dialect_insert = pg_insert if self.conn.dialect.name == "postgresql" else sqlite_insert
        for part in chunks(sorted(planned), IN_CHUNK):
            self.conn.execute(dialect_insert(P).on_conflict_do_nothing(), [planned[n][1] for n in part])
        owners = self._person_owners(sorted(planned))
        persons = []
        for national_id, (person, row) in sorted(planned.items()):
            if owners.get(national_id) == row["person_id"]:
                stamp(person, version=1, now=self.now)
                persons.append(person)
            else:
                linker.relink(self.conn, national_id, now=self.now)
        if persons:
            self.write(persons)

    def _person_owners(self, national_ids: list[str]) -> dict[str, str]:
        owners: dict[str, str] = {}
        for part in chunks(national_ids, IN_CHUNK):
            query = select(P.c.national_id, P.c.person_id).where(P.c.national_id.in_(part))
            if self.conn.dialect.name == "postgresql":
                query = query.with_for_update()
            owners.update(dict(self.conn.execute(query).all()))
        return owners

    def _insert(self, table: Table, rows: list[dict]) -> None:
        write_rows(self.conn, table, rows)
