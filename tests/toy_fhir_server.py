"""A tiny in-memory FHIR server with bugs that can be switched on, for showing that ``emr conformance`` catches them.

Correct by default for what it supports: create (with If-None-Exist), read, search by
``identifier``, ``patient.identifier``, ``date`` (with prefixes), ``_count``/``_sort``
with offset paging, and transaction Bundles (``minimal`` answers a create with only a
Location header, as some servers do). Each bug is a classic of real servers:

``racy-conditional-create``  checks for a match, yields, then inserts (two writers both miss)
``paging-off-by-one``        each next link starts one match too early (repeats, or never ends)
``half-applied-transaction`` applies entries one by one and keeps what came before a bad one
``crash-on-bad-date``        a date search value it cannot read is a 500
"""

from __future__ import annotations

import asyncio
import itertools
from urllib.parse import parse_qsl, urlencode

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from emr.errors import EmrError
from emr.fhir import validate_resource
from emr.fhir.dates import matches, parse_interval, split_prefix

KNOWN_TYPES = frozenset({"Patient", "Observation", "ServiceRequest", "DiagnosticReport", "Encounter"})
BUGS = frozenset({"racy-conditional-create", "paging-off-by-one", "half-applied-transaction", "crash-on-bad-date"})


class ToyServer:
    def __init__(self, base_url: str, *, bugs: frozenset[str] = frozenset(), token: str | None = None,
                 minimal: bool = False) -> None:
        assert bugs <= BUGS, bugs - BUGS
        self.base_url = base_url.rstrip("/")
        self.bugs = bugs
        self.token = token
        self.minimal = minimal  # answer a create with Location and no body, as some servers do
        self.store: dict[tuple[str, str], dict] = {}
        self._ids = itertools.count(1)

    # ------------------------------------------------------------ the app
    def app(self) -> Starlette:
        return Starlette(routes=[
            Route("/fhir/metadata", self.metadata, methods=["GET"]),
            Route("/fhir", self.transaction, methods=["POST"]),
            Route("/fhir/{rtype}", self.search, methods=["GET"]),
            Route("/fhir/{rtype}", self.create, methods=["POST"]),
            Route("/fhir/{rtype}/{rid}", self.read, methods=["GET"]),
            Route("/fhir/{rtype}/{rid}", self.refuse, methods=["PUT", "DELETE"]),
        ])

    async def refuse(self, _request: Request) -> Response:
        return _outcome(405, "this server only creates and reads")

    async def metadata(self, _request: Request) -> Response:
        return _json({"resourceType": "CapabilityStatement", "status": "active", "kind": "instance",
                      "fhirVersion": "4.3.0", "format": ["json"]})

    async def create(self, request: Request) -> Response:
        if denied := self._denied(request):
            return denied
        body = _body(await request.body())
        if not isinstance(body, dict) or body.get("resourceType") != request.path_params["rtype"]:
            return _outcome(400, "the body must be a resource of the type in the URL")
        criteria = request.headers.get("if-none-exist")
        if criteria:
            found = self._matches(body["resourceType"], parse_qsl(criteria))
            if "racy-conditional-create" in self.bugs:
                await asyncio.sleep(0.05)
            if found:
                return _json(found[0], 200)
        try:
            created = self._insert(body)
        except EmrError as error:
            return _outcome(error.status, str(error))
        if self.minimal:
            return Response(status_code=201, headers={"Location": f"{self.base_url}/{created['resourceType']}/"
                                                                  f"{created['id']}/_history/1"})
        return _json(created, 201)

    async def read(self, request: Request) -> Response:
        if denied := self._denied(request):
            return denied
        found = self.store.get((request.path_params["rtype"], request.path_params["rid"]))
        return _json(found) if found else _outcome(404, "not found")

    async def search(self, request: Request) -> Response:
        if denied := self._denied(request):
            return denied
        rtype = request.path_params["rtype"]
        pairs = list(request.query_params.multi_items())
        if rtype not in KNOWN_TYPES:
            return _outcome(404, f"no resource type {rtype}")
        if not dict(pairs).get("_count", "1").isdigit():
            return _outcome(400, "_count must be a number")
        try:
            hits = self._matches(rtype, pairs)
        except EmrError as error:
            if "crash-on-bad-date" in self.bugs:
                return Response("Internal Server Error", status_code=500)
            return _outcome(400, str(error))
        return _json(self._page(rtype, pairs, hits))

    async def transaction(self, request: Request) -> Response:
        if denied := self._denied(request):
            return denied
        bundle = _body(await request.body())
        if not isinstance(bundle, dict) or bundle.get("type") != "transaction":
            return _outcome(400, "only transactions")
        saved = dict(self.store)
        try:
            return _json(self._apply(bundle["entry"]))
        except EmrError as error:
            if "half-applied-transaction" not in self.bugs:
                self.store = saved
            return _outcome(error.status, str(error))

    # ------------------------------------------------------------ the store
    def _insert(self, resource: dict) -> dict:
        validate_resource(resource)
        stored = {**resource, "id": str(next(self._ids)), "meta": {**resource.get("meta", {}), "versionId": "1"}}
        self.store[(stored["resourceType"], stored["id"])] = stored
        return stored

    def _apply(self, entries: list[dict]) -> dict:
        ids = {}
        for entry in entries:
            text = orjson.dumps(entry["resource"]).decode()
            for url, ref in ids.items():
                text = text.replace(url, ref)
            created = self._insert(orjson.loads(text))
            ids[entry["fullUrl"]] = f"{created['resourceType']}/{created['id']}"
        return {"resourceType": "Bundle", "type": "transaction-response",
                "entry": [{"response": {"status": "201 Created", "location": ref}} for ref in ids.values()]}

    def _matches(self, rtype: str, pairs: list[tuple[str, str]]) -> list[dict]:
        found = [r for (t, _), r in self.store.items() if t == rtype]
        for name, value in pairs:
            if name == "identifier":
                found = [r for r in found if _has_identifier(r, value)]
            elif name == "patient.identifier":
                found = [r for r in found if _has_identifier(self._subject(r), value)]
            elif name == "date":
                prefix, text = split_prefix(value)
                wanted = parse_interval(text)
                found = [r for r in found if matches(prefix, parse_interval(r["effectiveDateTime"]), wanted)]
        return found

    def _subject(self, resource: dict) -> dict:
        rtype, _, rid = (resource.get("subject") or {}).get("reference", "").partition("/")
        return self.store.get((rtype, rid), {})

    def _page(self, rtype: str, pairs: list[tuple[str, str]], hits: list[dict]) -> dict:
        params = dict(pairs)
        count, offset = int(params.get("_count", 10)), int(params.get("_offset", 0))
        if params.get("_sort", "").lstrip("-") == "date":
            hits = sorted(hits, key=lambda r: parse_interval(r["effectiveDateTime"]).low,
                          reverse=params["_sort"].startswith("-"))
        bundle = {"resourceType": "Bundle", "type": "searchset", "total": len(hits),
                  "entry": [{"resource": r, "search": {"mode": "match"}} for r in hits[offset:offset + count]]}
        step = count - 1 if "paging-off-by-one" in self.bugs else count
        if offset + count < len(hits):
            following = [(k, v) for k, v in pairs if k != "_offset"] + [("_offset", str(offset + step))]
            bundle["link"] = [{"relation": "next", "url": f"{self.base_url}/{rtype}?{urlencode(following)}"}]
        return bundle

    def _denied(self, request: Request) -> Response | None:
        if self.token and request.headers.get("authorization") != f"Bearer {self.token}":
            return _outcome(401, "a bearer token is needed")
        return None


def _has_identifier(resource: dict, value: str) -> bool:
    system, _, code = value.rpartition("|")
    return any(i.get("value") == code and (not system or i.get("system") == system)
               for i in resource.get("identifier") or [])


def _body(raw: bytes) -> object:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None


def _json(body: dict, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/fhir+json")


def _outcome(status: int, message: str) -> Response:
    return _json({"resourceType": "OperationOutcome",
                  "issue": [{"severity": "error", "code": "invalid", "diagnostics": message}]}, status)
