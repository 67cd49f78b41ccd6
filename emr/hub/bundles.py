"""``POST /fhir`` with a transaction or batch Bundle.

A transaction is all or nothing: every entry runs in one database transaction, and
the first failure rolls everything back and answers with an OperationOutcome whose
location names the entry. Before anything is written, each ``urn:uuid:`` fullUrl is
given its final id (a new one, or the match of a conditional create or update), and
every reference to it anywhere in the Bundle is rewritten.

A batch runs each entry on its own (a savepoint each) and reports each outcome.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

import orjson
from sqlalchemy import select
from sqlalchemy.engine import Connection

from emr.errors import EmrError, InvalidInput
from emr.fhir import bundle, operation_outcome
from emr.hub import search
from emr.hub.batchwrite import BatchWriter
from emr.hub.db import write_transaction
from emr.hub.http import Hub
from emr.hub.limits import Limits
from emr.hub.store import R, Written, claim

METHOD_ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "GET": 3}


@dataclass
class Entry:
    index: int
    method: str
    resource_type: str
    rid: str | None
    query: str
    resource: dict | None
    full_url: str | None
    if_none_exist: str | None
    if_match: str | None
    planned_id: str | None = None
    existing: dict | None = None  # the match of a conditional create, found while planning


def require_type(body: object, resource_type: str) -> None:
    if not isinstance(body, dict) or body.get("resourceType") != resource_type:
        found = body.get("resourceType") if isinstance(body, dict) else type(body).__name__
        raise InvalidInput(f"the body is a {found}, but the URL names {resource_type}", location="resourceType")


def process(hub: Hub, body: object) -> dict:
    require_type(body, "Bundle")
    kind = body.get("type")
    entries = _parse_entries(hub, body)
    if kind == "transaction":
        return _transaction(hub, entries)
    if kind == "batch":
        return _batch(hub, entries)
    raise InvalidInput(f"POST /fhir takes a transaction or batch Bundle, not '{kind}'", location="Bundle.type")


# ---------------------------------------------------------------- parsing

def _parse_entries(hub: Hub, body: dict) -> list[Entry]:
    raw = body.get("entry") or []
    if not isinstance(raw, list):
        raise InvalidInput("Bundle.entry must be a list", location="Bundle.entry")
    if len(raw) > hub.settings.max_bundle_entries:
        raise InvalidInput(f"the Bundle has {len(raw)} entries; this hub takes at most "
                           f"{hub.settings.max_bundle_entries}", location="Bundle.entry")
    return [_parse_entry(hub, i, e) for i, e in enumerate(raw)]


def _parse_entry(hub: Hub, index: int, raw: object) -> Entry:
    where = f"Bundle.entry[{index}]"
    request = raw.get("request") if isinstance(raw, dict) else None
    if not isinstance(request, dict) or request.get("method") not in METHOD_ORDER or not isinstance(request.get("url"), str):
        raise InvalidInput("each entry needs request.method (GET, POST, PUT or DELETE) and request.url",
                           location=f"{where}.request")
    path, query = _relative(hub, request["url"])
    parts = [p for p in path.split("/") if p]
    if not parts:
        raise InvalidInput(f"request.url '{request['url']}' names no resource type", location=f"{where}.request.url")
    resource = raw.get("resource")
    if request["method"] in ("POST", "PUT") and not isinstance(resource, dict):
        raise InvalidInput(f"a {request['method']} entry needs a resource", location=f"{where}.resource")
    for name, value in (("fullUrl", raw.get("fullUrl")), ("request.ifNoneExist", request.get("ifNoneExist")),
                        ("request.ifMatch", request.get("ifMatch"))):
        if value is not None and not isinstance(value, str):
            raise InvalidInput(f"{name} must be a string", location=f"{where}.{name}")
    return Entry(index, request["method"], parts[0], parts[1] if len(parts) > 1 else None, query,
                 resource, raw.get("fullUrl"), request.get("ifNoneExist"), request.get("ifMatch"))


def _relative(hub: Hub, url: str) -> tuple[str, str]:
    if url.startswith(hub.base_url):
        url = url[len(hub.base_url):]
    split = urlsplit(url)
    return split.path, split.query


# ---------------------------------------------------------------- transaction

def _transaction(hub: Hub, entries: list[Entry]) -> dict:
    now = hub.clock()
    responses: dict[int, dict] = {}
    with write_transaction(hub.engine) as conn:
        mapping = _assign_ids(hub, conn, entries)
        for entry in entries:
            if entry.resource is not None:
                entry.resource = rewrite_references(entry.resource, mapping)
        ordered = sorted(entries, key=lambda e: (METHOD_ORDER[e.method], e.index))
        creates = [e for e in ordered if _creates_new(e)]
        for entry in ordered:
            if entry.method == "POST" and creates:  # the POSTs run together: new ones first, batched
                responses.update(_create_all(hub, conn, creates, now=now))
                creates = []
            if entry.index not in responses:
                with _located(entry):
                    responses[entry.index] = _run(hub, conn, entry, now=now)
    return bundle("transaction-response", [responses[e.index] for e in entries])


def _creates_new(entry: Entry) -> bool:
    """A POST whose id is planned and which matched nothing: a plain insert."""
    return entry.method == "POST" and entry.planned_id is not None and entry.existing is None


def _create_all(hub: Hub, conn: Connection, entries: list[Entry], *, now: datetime) -> dict[int, dict]:
    """Check every new resource as a single create would, then insert them all with a few statements."""
    resources = []
    for entry in entries:
        with _located(entry):
            require_type(entry.resource, entry.resource_type)
            resources.append(hub.store.prepare_new(conn, entry.resource, now=now, new_id=entry.planned_id))
    BatchWriter(conn, hub.store, now).write(resources)
    return {e.index: _write_response(hub, Written(r, created=True, status=201)) for e, r in zip(entries, resources)}


@contextmanager
def _located(entry: Entry) -> Iterator[None]:
    """Errors raised for one entry name it: ``Bundle.entry[i]…``."""
    try:
        yield
    except EmrError as exc:
        exc.problems = [p.__class__(p.message, f"Bundle.entry[{entry.index}]" + (
            f".{p.location}" if p.location else ""), p.code) for p in exc.problems]
        raise


def _assign_ids(hub: Hub, conn: Connection, entries: list[Entry]) -> dict[str, str]:
    """fullUrl → 'Type/id' for every entry that creates or conditionally writes."""
    matches = _claim_all(hub, conn, entries)
    mapping: dict[str, str] = {}
    for entry in entries:
        if not entry.full_url or entry.method not in ("POST", "PUT"):
            continue
        with _located(entry):
            entry.planned_id = _planned_id(hub, conn, entry, matches)
        if entry.planned_id:
            mapping[entry.full_url] = f"{entry.resource_type}/{entry.planned_id}"
    return mapping


def _claim_all(hub: Hub, conn: Connection, entries: list[Entry]) -> dict[tuple[str, str], list[int]]:
    """Claim every conditional create's criteria in one go (``Store.claim``), then look up
    the matches of those that name one identifier together."""
    keys = []
    for entry in entries:
        if entry.full_url and entry.method == "POST" and entry.if_none_exist:
            with _located(entry):
                keys.append((entry.resource_type, search.criteria_key(search.parse_criteria(entry.if_none_exist))))
    claim(conn, keys)
    conditional = [(e.resource_type, e.if_none_exist) for e in entries
                   if e.full_url and e.method == "POST" and e.if_none_exist]
    return hub.store.identifier_matches(conn, conditional)


def _planned_id(hub: Hub, conn: Connection, entry: Entry, matches: dict[tuple[str, str], list[int]]) -> str | None:
    """The id the entry's resource will have: its match, the URL's id, or a new one."""
    if entry.method == "PUT" and entry.rid:
        return entry.rid
    if entry.method == "POST" and entry.if_none_exist:
        entry.existing = hub.store.match(conn, entry.resource_type, entry.if_none_exist, claimed=True,
                                         found=matches.get((entry.resource_type, entry.if_none_exist)))
        return entry.existing["id"] if entry.existing else str(uuid.uuid4())
    if entry.method == "POST":
        return str(uuid.uuid4())
    if entry.query:
        pks = search.find_pks(conn, entry.resource_type, search.parse_criteria(entry.query), limit=2,
                              limits=Limits.of(hub.settings))
        if len(pks) == 1:
            return conn.execute(select(R.c.id).where(R.c.pk == pks[0])).scalar_one()
    return entry.resource.get("id") if entry.resource else None


def rewrite_references(node: object, mapping: dict[str, str]) -> object:
    """A copy of ``node`` with every ``reference`` found in ``mapping`` replaced (Bundles and bulk import)."""
    if isinstance(node, dict):
        return {k: (mapping.get(v, v) if k == "reference" and isinstance(v, str) else rewrite_references(v, mapping))
                for k, v in node.items()}
    if isinstance(node, list):
        return [rewrite_references(item, mapping) for item in node]
    return node


def _run(hub: Hub, conn: Connection, entry: Entry, *, now: datetime) -> dict:
    store = hub.store
    if entry.method == "DELETE":
        store.delete(conn, entry.resource_type, _need_id(entry), now=now)
        return {"response": {"status": "204 No Content"}}
    if entry.method == "GET":
        return _get(hub, conn, entry)
    require_type(entry.resource, entry.resource_type)
    if entry.method == "POST" and entry.existing is not None:
        written = Written(entry.existing, created=False, status=200)
    elif entry.method == "POST" and entry.planned_id:
        written = store.insert_new(conn, entry.resource, now=now, new_id=entry.planned_id)
    elif entry.method == "POST":
        written = store.create(conn, entry.resource, now=now, if_none_exist=entry.if_none_exist)
    elif entry.rid:
        written = store.update(conn, entry.resource_type, entry.rid, entry.resource, now=now, if_match=entry.if_match)
    else:
        written = store.conditional_update(conn, entry.resource_type, entry.query, entry.resource, now=now,
                                           if_match=entry.if_match)
    return _write_response(hub, written)


def _need_id(entry: Entry) -> str:
    if not entry.rid:
        raise InvalidInput("DELETE needs Type/id", location="request.url")
    return entry.rid


def _get(hub: Hub, conn: Connection, entry: Entry) -> dict:
    if entry.rid:
        resource = hub.store.read(conn, entry.resource_type, entry.rid)
        return {"resource": resource, "response": {"status": "200 OK"}}
    query = search.parse_query(entry.resource_type, search.parse_criteria(entry.query) if entry.query else [],
                               default_count=hub.settings.default_page_size, max_count=hub.settings.max_page_size,
                               limits=Limits.of(hub.settings))
    page = search.run(conn, query)
    found = [{"fullUrl": f"{hub.base_url}/{t}/{i}", "resource": orjson.loads(c), "search": {"mode": "match"}}
             for t, i, c in page.rows]
    return {"resource": bundle("searchset", found, total=page.total), "response": {"status": "200 OK"}}


def _write_response(hub: Hub, written: Written) -> dict:
    resource = written.resource
    meta = resource["meta"]
    status = "201 Created" if written.status == 201 else "200 OK"
    return {"fullUrl": f"{hub.base_url}/{resource['resourceType']}/{resource['id']}",
            "resource": resource,
            "response": {"status": status,
                         "location": f"{resource['resourceType']}/{resource['id']}/_history/{meta['versionId']}",
                         "etag": f'W/"{meta["versionId"]}"', "lastModified": meta["lastUpdated"]}}


# ---------------------------------------------------------------- batch

def _batch(hub: Hub, entries: list[Entry]) -> dict:
    now = hub.clock()
    out = []
    for entry in entries:
        try:
            with write_transaction(hub.engine) as conn:
                out.append(_run(hub, conn, entry, now=now))
        except EmrError as exc:
            out.append({"response": {"status": f"{exc.status}", "outcome": operation_outcome(exc.problems)}})
    return bundle("batch-response", out)

