"""The FHIR resource store: create, read, update, delete and history, with their indexes.

Every function here runs inside a transaction the caller opened (one per request,
or one for a whole transaction Bundle), so a write and its index rows, its history
row and whatever derived records the hooks keep (person links, result facts) commit
or vanish together.

Conditional creates are atomic without a check-then-insert race: the writer first
inserts-or-ignores a row in ``conditional_claim`` keyed by the normalised criteria,
then locks that row (PostgreSQL ``FOR UPDATE``; SQLite's single writer already holds
the lock), and only then searches and inserts. A second writer with the same criteria
waits on the lock and then finds the first one's resource.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime

import orjson
from sqlalchemy import bindparam, case, delete, func, insert, select, tuple_, type_coerce, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection

from emr.errors import Conflict, EmrError, Gone, InvalidInput, NotFound, PreconditionFailed
from emr.fhir import validate_resource
from emr.fhir.dates import to_fhir_instant
from emr.hub import access, audit, memo, search
from emr.hub.db import (
    INDEX_TABLES,
    ConditionalClaim,
    DateIndex,
    ReferenceIndex,
    ResourceRow,
    StringIndex,
    TokenIndex,
    VersionRow,
)
from emr.hub.limits import Limits
from emr.hub.packed import PackedJSON
from emr.hub.searchparams import Extracted, extract

ID_RE = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
R = ResourceRow.__table__
V = VersionRow.__table__

WriteHook = Callable[[Connection, int, dict, datetime], None]
# A version row's content is empty while it is the current version: the resource row holds
# that JSON, and it moves to the version row when a newer version replaces it. Each
# resource's JSON is stored once, not twice. (Tested by length: a database from before
# ``emr.hub.packed`` holds the empty marker as text, a newer one as an empty blob.)
CURRENT = ""
_IS_CURRENT = func.length(V.c.content) == 0
_VERSION_CONTENT = type_coerce(func.coalesce(case((_IS_CURRENT, None), else_=V.c.content), R.c.content),
                               PackedJSON()).label("content")


@dataclass(frozen=True)
class Written:
    resource: dict
    created: bool
    status: int  # 201 created, 200 updated or matched


@dataclass
class Store:
    """Resource persistence plus the hooks that keep derived records in step."""

    hooks: dict[str, list[WriteHook]] = field(default_factory=dict)
    limits: Limits | None = None  # bounds on conditional criteria (from Settings)

    # ------------------------------------------------------------ create
    def create(self, conn: Connection, resource: dict, *, now: datetime,
               if_none_exist: str | None = None, new_id: str | None = None) -> Written:
        rtype = _type_of(resource)
        if if_none_exist:
            found = self.match(conn, rtype, if_none_exist)
            if found is not None:
                return Written(found, created=False, status=200)
        resource = dict(resource)
        resource["id"] = new_id or str(uuid.uuid4())
        return self._insert(conn, resource, now=now)

    def insert_new(self, conn: Connection, resource: dict, *, now: datetime, new_id: str,
                   validate: bool = True) -> Written:
        """Create without conditions (the caller has already matched and claimed). ``validate``
        False only for what the hub builds itself and its tests check (audit entries)."""
        return self._insert(conn, {**resource, "id": new_id}, now=now, validate=validate)

    def match(self, conn: Connection, rtype: str, criteria: str, *, claimed: bool = False,
              found: list[int] | None = None) -> dict | None:
        """The one resource matching conditional ``criteria``, claimed for this transaction
        (already, when ``claimed``: see ``claim``), or None. ``found``: the matches' pks, when
        the caller has looked them up already (``identifier_matches``)."""
        params = search.parse_criteria(criteria)
        if not claimed:
            claim(conn, [(rtype, search.criteria_key(params))])
        pks = found if found is not None else search.find_pks(conn, rtype, params, limit=2, limits=self.limits)
        if len(pks) > 1:
            raise PreconditionFailed(
                f"conditional request matched {len(pks)} {rtype} resources: '{criteria}' must identify one",
                location=f"{rtype}?{criteria}")
        if not pks:
            return None
        found = _content_by_pk(conn, pks[0])
        _check_read(conn, rtype, found["id"], pks[0])
        return found

    def prepare_new(self, conn: Connection, resource: dict, *, now: datetime, new_id: str,
                    validate: bool = True) -> dict:
        """A new resource stamped as version 1, checked and cleared for the caller, not yet stored."""
        resource = {**resource, "id": new_id}
        stamp(resource, version=1, now=now)
        if validate:
            validate_resource(resource)
        _check_write(conn, f"{resource['resourceType']}/{resource['id']}", None, resource)
        return resource

    def identifier_matches(self, conn: Connection, wanted: list[tuple[str, str]]) -> dict[tuple[str, str], list[int]]:
        """For each (type, criteria) that is exactly ``identifier=system|value``: its matches' pks,
        all found in one query per type. Other criteria are left for ``match`` to search."""
        keys: dict[tuple[str, str], tuple[str, str, str]] = {}
        for rtype, criteria in wanted:
            try:
                pairs = search.parse_criteria(criteria)
                search.check_pairs(pairs, self.limits)
            except EmrError:
                continue  # ``match`` reports it, at its entry
            identifier = search.one_identifier(rtype, pairs)
            if identifier is not None:
                keys[(rtype, criteria)] = (rtype, *identifier)
        found = search.pks_by_identifier(conn, set(keys.values()))
        return {wanted_key: found[key] for wanted_key, key in keys.items()}

    def _insert(self, conn: Connection, resource: dict, *, now: datetime, validate: bool = True) -> Written:
        resource = self.prepare_new(conn, resource, now=now, new_id=resource["id"], validate=validate)
        content = _dump(resource)
        pk = conn.execute(insert(R).values(
            resource_type=resource["resourceType"], id=resource["id"], version_id=1,
            last_updated=resource["meta"]["lastUpdated"], deleted=False, content=content,
        ).returning(R.c.pk)).scalar_one()
        self._after_write(conn, pk, resource, method="POST", now=now)
        return Written(resource, created=True, status=201)

    # ------------------------------------------------------------ read
    def read(self, conn: Connection, rtype: str, rid: str) -> dict:
        row = conn.execute(select(R.c.pk, R.c.deleted, R.c.content).where(
            R.c.resource_type == rtype, R.c.id == rid)).first()
        if row is None:
            raise NotFound(f"{rtype}/{rid} is not known to this hub", location=f"{rtype}/{rid}")
        if row.deleted:
            raise Gone(f"{rtype}/{rid} was deleted", location=f"{rtype}/{rid}")
        _check_read(conn, rtype, rid, row.pk)
        return orjson.loads(row.content)

    def vread(self, conn: Connection, rtype: str, rid: str, version: str) -> dict:
        pk = _pk_of(conn, rtype, rid)
        _check_read(conn, rtype, rid, pk)
        row = conn.execute(select(V.c.deleted, _VERSION_CONTENT).join(R, R.c.pk == V.c.resource_pk).where(
            V.c.resource_pk == pk, V.c.version_id == _int_version(version))).first()
        if row is None:
            raise NotFound(f"{rtype}/{rid} has no version {version}", location=f"{rtype}/{rid}/_history/{version}")
        if row.deleted:
            raise Gone(f"{rtype}/{rid} version {version} is a deletion")
        return orjson.loads(row.content)

    def history(self, conn: Connection, rtype: str, rid: str) -> list[tuple[dict, str, bool]]:
        """(content, method, deleted) for every version, newest first."""
        pk = _pk_of(conn, rtype, rid)
        _check_read(conn, rtype, rid, pk)
        rows = conn.execute(select(_VERSION_CONTENT, V.c.method, V.c.deleted).join(R, R.c.pk == V.c.resource_pk)
                            .where(V.c.resource_pk == pk).order_by(V.c.version_id.desc())).all()
        return [(orjson.loads(r.content), r.method, r.deleted) for r in rows]

    # ------------------------------------------------------------ update
    def update(self, conn: Connection, rtype: str, rid: str, resource: dict, *, now: datetime,
               if_match: str | None = None) -> Written:
        _check_body_matches_url(resource, rtype, rid)
        current = _lock_current(conn, rtype, rid)
        if current is None:
            if if_match:
                raise PreconditionFailed(f"{rtype}/{rid} does not exist, so If-Match cannot hold")
            return self._insert(conn, dict(resource), now=now)
        pk, version, last_updated, deleted = current
        if if_match and _etag_version(if_match) != version:
            raise PreconditionFailed(
                f"{rtype}/{rid} is at version {version}, not {_etag_version(if_match)} (If-Match)",
                location=f"{rtype}/{rid}")
        written = self._replace(conn, pk, dict(resource), version=version + 1, now=_not_before(now, last_updated))
        # FHIR: an update that brings a deleted resource back creates it (201), as for a new id.
        return Written(written.resource, created=True, status=201) if deleted else written

    def conditional_update(self, conn: Connection, rtype: str, criteria: str, resource: dict, *,
                           now: datetime, if_match: str | None = None) -> Written:
        """``PUT Type?criteria`` — the IHE PIXm patient feed. With ``if_match`` the matched
        resource must be at that version (and must exist), as for ``PUT Type/id``."""
        _type_of(resource, expected=rtype)
        params = search.parse_criteria(criteria)
        claim(conn, [(rtype, search.criteria_key(params))])
        pks = search.find_pks(conn, rtype, params, limit=2, limits=self.limits)
        if len(pks) > 1:
            raise PreconditionFailed(f"'{criteria}' matched several {rtype} resources", location=f"{rtype}?{criteria}")
        if not pks:
            if if_match:
                raise PreconditionFailed(f"no {rtype} matches '{criteria}', so If-Match cannot hold",
                                         location=f"{rtype}?{criteria}")
            if resource.get("id") and _exists(conn, rtype, resource["id"]):
                raise Conflict(f"{rtype}/{resource['id']} exists but does not match '{criteria}'")
            return self.create(conn, resource, now=now, new_id=resource.get("id"))
        current_id = conn.execute(select(R.c.id).where(R.c.pk == pks[0])).scalar_one()
        if resource.get("id") not in (None, current_id):
            raise InvalidInput(f"body id '{resource['id']}' differs from the matched {rtype}/{current_id}")
        return self.update(conn, rtype, current_id, {**resource, "id": current_id}, now=now, if_match=if_match)

    def _replace(self, conn: Connection, pk: int, resource: dict, *, version: int, now: datetime) -> Written:
        stamp(resource, version=version, now=now)
        validate_resource(resource)
        _check_write(conn, f"{resource['resourceType']}/{resource['id']}", pk, resource)
        content = _dump(resource)
        _keep_previous(conn, pk, version - 1)
        conn.execute(update(R).where(R.c.pk == pk).values(
            version_id=version, last_updated=resource["meta"]["lastUpdated"], deleted=False, content=content))
        _drop_indexes(conn, pk)
        self._after_write(conn, pk, resource, method="PUT", now=now)
        return Written(resource, created=False, status=200)

    # ------------------------------------------------------------ delete
    def delete(self, conn: Connection, rtype: str, rid: str, *, now: datetime) -> None:
        current = _lock_current(conn, rtype, rid)
        if current is None:
            return  # deleting what is not there succeeds (FHIR: 200/204 either way)
        pk, version, last_updated, deleted = current
        _check_write(conn, f"{rtype}/{rid}", pk, None)
        if deleted:
            return  # already deleted: it succeeds again and adds no version
        now = _not_before(now, last_updated)
        instant = to_fhir_instant(now)
        tombstone = {"resourceType": rtype, "id": rid, "meta": {"versionId": str(version + 1), "lastUpdated": instant}}
        _keep_previous(conn, pk, version)
        conn.execute(update(R).where(R.c.pk == pk).values(
            version_id=version + 1, last_updated=instant, deleted=True, content=_dump(tombstone)))
        conn.execute(insert(V).values(resource_pk=pk, version_id=version + 1, last_updated=instant,
                                      method="DELETE", deleted=True, content=CURRENT))
        _drop_indexes(conn, pk)
        self._run_hooks(conn, pk, tombstone, now)

    # ------------------------------------------------------------ shared
    def _after_write(self, conn: Connection, pk: int, resource: dict, *, method: str, now: datetime) -> None:
        conn.execute(insert(V).values(
            resource_pk=pk, version_id=int(resource["meta"]["versionId"]),
            last_updated=resource["meta"]["lastUpdated"], method=method, deleted=False, content=CURRENT))
        _write_indexes(conn, pk, resource)
        self._run_hooks(conn, pk, resource, now)

    def _run_hooks(self, conn: Connection, pk: int, resource: dict, now: datetime) -> None:
        for hook in self.hooks.get("*", []):
            hook(conn, pk, resource, now)
        with access.as_hub():  # what the type's hooks write (person links…) is the hub's, not the caller's
            for hook in self.hooks.get(resource["resourceType"], []):
                hook(conn, pk, resource, now)


# ---------------------------------------------------------------- helpers

def _check_read(conn: Connection, rtype: str, rid: str, pk: int) -> None:
    """Note the read on the request's audit trail, then apply the caller's access rules."""
    audit.touched_rows(conn, [(pk, f"{rtype}/{rid}")])
    access.check_read(conn, rtype, pk)


def _check_write(conn: Connection, reference: str, pk: int | None, resource: dict | None) -> None:
    """Note the write's patient on the request's audit trail, then apply the caller's access rules."""
    audit.touched_write(conn, reference, pk, resource)
    access.check_write(conn, reference.split("/")[0], pk, resource)


def _type_of(resource: object, *, expected: str | None = None) -> str:
    if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
        raise InvalidInput("the body must be a JSON object with a 'resourceType'", location="resourceType")
    rtype = resource["resourceType"]
    if expected and rtype != expected:
        raise InvalidInput(f"body is a {rtype} but the URL names {expected}", location="resourceType")
    return rtype


def _check_body_matches_url(resource: dict, rtype: str, rid: str) -> None:
    _type_of(resource, expected=rtype)
    if not ID_RE.match(rid):
        raise InvalidInput(f"'{rid}' is not a valid FHIR id", location="id")
    if resource.get("id") != rid:
        raise InvalidInput(f"body id '{resource.get('id')}' must equal the id in the URL '{rid}'", location="id")


def stamp(resource: dict, *, version: int, now: datetime) -> None:
    meta = dict(resource.get("meta") or {})
    meta["versionId"] = str(version)
    meta["lastUpdated"] = to_fhir_instant(now)
    resource["meta"] = meta


def _dump(resource: dict) -> str:
    return orjson.dumps(resource).decode()


def _int_version(version: str) -> int:
    if not _is_small_number(version):
        raise NotFound(f"'{version}' is not a version id of this hub")
    return int(version)


def _etag_version(etag: str) -> int:
    text = etag.strip().removeprefix("W/").strip('"')
    if not _is_small_number(text):
        raise InvalidInput(f"If-Match '{etag[:40]}' is not a version ETag such as W/\"3\"", location="If-Match")
    return int(text)


def _is_small_number(text: str) -> bool:
    """ASCII digits that fit a version id (``str.isdigit`` also takes '²' and 5,000-digit strings)."""
    return text.isascii() and text.isdigit() and len(text) <= 18


def _pk_of(conn: Connection, rtype: str, rid: str) -> int:
    pk = conn.execute(select(R.c.pk).where(R.c.resource_type == rtype, R.c.id == rid)).scalar()
    if pk is None:
        raise NotFound(f"{rtype}/{rid} is not known to this hub", location=f"{rtype}/{rid}")
    return pk


def _exists(conn: Connection, rtype: str, rid: str) -> bool:
    return conn.execute(select(R.c.pk).where(R.c.resource_type == rtype, R.c.id == rid)).first() is not None


def _lock_current(conn: Connection, rtype: str, rid: str) -> tuple[int, int, str, bool] | None:
    """(pk, version, lastUpdated, deleted) of a resource, row-locked until the transaction ends."""
    query = select(R.c.pk, R.c.version_id, R.c.last_updated, R.c.deleted).where(
        R.c.resource_type == rtype, R.c.id == rid)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    row = conn.execute(query).first()
    return (row.pk, row.version_id, row.last_updated, bool(row.deleted)) if row else None


def _not_before(now: datetime, last_updated: str) -> datetime:
    """A new version is never older than the one it replaces. A transaction reads its clock
    when it starts and may then wait for this row's lock while a later one writes it; without
    this, version n+1 could carry an earlier lastUpdated than version n, and a client polling
    ``_lastUpdated=gt…`` would never see it."""
    previous = datetime.fromisoformat(last_updated.replace("Z", "+00:00"))
    return max(now, previous) if now.tzinfo else now


def _keep_previous(conn: Connection, pk: int, version: int) -> None:
    """Before the resource row takes a new version, its current JSON moves to its version row."""
    current = select(R.c.content).where(R.c.pk == pk).scalar_subquery()
    conn.execute(update(V).where(V.c.resource_pk == pk, V.c.version_id == version, _IS_CURRENT)
                 .values(content=current))


def _content_by_pk(conn: Connection, pk: int) -> dict:
    return orjson.loads(conn.execute(select(R.c.content).where(R.c.pk == pk)).scalar_one())


def claim(conn: Connection, keys: Iterable[tuple[str, str]]) -> None:
    """Claim (type, criteria key) pairs for this transaction before searching for their matches.

    All of a transaction's claims are taken at once and in one order, so two Bundles that
    share criteria wait for each other instead of deadlocking."""
    table = ConditionalClaim.__table__
    values = [{"resource_type": rtype, "criteria": key[:512]} for rtype, key in sorted(set(keys))]
    if not values:
        return
    if conn.dialect.name != "postgresql":  # SQLite's single writer already holds the lock
        conn.execute(sqlite_insert(table).on_conflict_do_nothing(), values)
        return
    conn.execute(pg_insert(table).on_conflict_do_nothing(), values)
    wanted = [(v["resource_type"], v["criteria"]) for v in values]
    conn.execute(select(table.c.criteria).where(tuple_(table.c.resource_type, table.c.criteria).in_(wanted))
                 .order_by(table.c.resource_type, table.c.criteria).with_for_update())


def _drop_indexes(conn: Connection, pk: int) -> None:
    memo.forget_all(conn)  # replacing or deleting is rare: forget every remembered answer
    for table in INDEX_TABLES:
        conn.execute(delete(table.__table__).where(table.__table__.c.resource_pk == pk))


LogicalResolver = Callable[[str, str, str], str | None]


def index_rows(pk: int, resource: dict, resolve: LogicalResolver,
               found: Extracted | None = None) -> dict[type, list[dict]]:
    """Every index row of one resource, by index table.

    ``resolve(target_type, system, value)`` turns a logical reference into the id of
    the one resource carrying that identifier. The write path and the batched writes
    both build their rows here; ``found`` is the resource's ``extract``, when the
    caller already has it.
    """
    rtype = resource["resourceType"]
    found = found or extract(resource)
    base = {"resource_pk": pk, "resource_type": rtype}
    tokens = [{**base, "param": p, "system": s[:255], "code": c[:255]} for p, s, c in found.tokens]
    refs = [reference_row(pk, rtype, p, t, i) for p, t, i in found.references]
    for param, target_type, system, value in found.logical_references:
        tokens.append({**base, "param": f"{param}:identifier", "system": system[:255], "code": value[:255]})
        target_id = resolve(target_type, system, value)
        if target_id:
            refs.append(reference_row(pk, rtype, param, target_type, target_id))
    return {
        TokenIndex: tokens,
        StringIndex: [{**base, "param": p, "value": v, "raw": r} for p, v, r in found.strings],
        DateIndex: [{**base, "param": p, "low": i.low, "high": i.high} for p, i in found.dates],
        ReferenceIndex: refs,
    }


def reference_row(pk: int, rtype: str, param: str, target_type: str, target_id: str) -> dict:
    return {"resource_pk": pk, "resource_type": rtype, "param": param, "target_type": target_type[:64],
            "target_id": target_id[:64]}


def _write_indexes(conn: Connection, pk: int, resource: dict) -> None:
    memo.forget(conn, resource["resourceType"])
    rows = index_rows(pk, resource, lambda t, s, v: resolve_logical(conn, t, s, v))
    for table, table_rows in rows.items():
        _insert_many(conn, table, table_rows)


def resolve_logical(conn: Connection, target_type: str, system: str, value: str) -> str | None:
    """The id of the one resource that carries this identifier, if exactly one does
    (asked once per transaction until a ``target_type`` resource is written)."""
    return memo.remembered(conn, target_type, ("identifier", system, value),
                           lambda: _resolve_logical(conn, target_type, system, value))


def _resolve_logical(conn: Connection, target_type: str, system: str, value: str) -> str | None:
    ids = stored_ids_with_identifier(conn, target_type, system, value)
    return ids[0] if len(ids) == 1 else None


def stored_ids_with_identifier(conn: Connection, target_type: str, system: str, value: str) -> list[str]:
    """Up to two ids of stored ``target_type`` resources carrying this identifier."""
    found = conn.execute(_IDS_WITH_IDENTIFIER, {"rtype": target_type, "system": system, "code": value})
    return list(found.scalars())


# Asked for every logical reference written and every audit entry: built once, bound per call.
_IDS_WITH_IDENTIFIER = (
    select(R.c.id).join(TokenIndex.__table__, TokenIndex.__table__.c.resource_pk == R.c.pk)
    .where(TokenIndex.__table__.c.resource_type == bindparam("rtype"),
           TokenIndex.__table__.c.param == "identifier",
           TokenIndex.__table__.c.code == bindparam("code"), TokenIndex.__table__.c.system == bindparam("system"),
           R.c.deleted.is_(False)).limit(2))


def _insert_many(conn: Connection, table: type, rows: Iterable[dict]) -> None:
    rows = list(rows)
    if rows:
        conn.execute(insert(table.__table__), rows)
