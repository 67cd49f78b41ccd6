"""The FHIR REST interactions: read, vread, search, create, update, delete, history, Bundles."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlencode

import orjson

from fastapi import APIRouter, Path, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from emr.errors import NotFound
from emr.fhir import bundle, model_class
from emr.hub import bundles, search
from emr.hub.db import read_transaction, write_transaction
from emr.hub.http import Hub, fhir_response, hub_of, read_form, read_json, version_headers
from emr.hub.limits import Limits
from emr.hub.openapi import (
    BUNDLE, FORM, RESOURCE, SEARCH_QUERY, FhirJSONResponse, answers, fhir_body, resource_types,
)
from emr.hub.store import Written

router = APIRouter(prefix="/fhir", default_response_class=FhirJSONResponse)
TypeName = Annotated[str, Path(description="A FHIR R4B resource type", json_schema_extra={"enum": resource_types()})]


def _known_type(resource_type: str) -> str:
    if model_class(resource_type) is None:
        raise NotFound(f"'{resource_type}' is not a FHIR R4B resource type", location=resource_type)
    return resource_type


def _lenient(request: Request) -> bool:
    return "handling=lenient" in (request.headers.get("prefer") or "").replace(" ", "")


def _written_response(hub: Hub, written: Written, request: Request) -> Response:
    resource = written.resource
    headers = version_headers(resource)
    if written.created or written.status == 201:
        headers["Location"] = (f"{hub.base_url}/{resource['resourceType']}/{resource['id']}"
                               f"/_history/{resource['meta']['versionId']}")
    if "return=minimal" in (request.headers.get("prefer") or ""):
        return Response(status_code=written.status, headers=headers)
    return fhir_response(resource, status=written.status, headers=headers)


# ------------------------------------------------------------------ whole system

@router.post("", responses=answers(BUNDLE), openapi_extra=fhir_body(BUNDLE))
@router.post("/", include_in_schema=False)
async def system_bundle(request: Request) -> Response:
    hub = hub_of(request)
    body = await read_json(request, max_bytes=hub.settings.max_body_bytes)
    result = await run_in_threadpool(bundles.process, hub, body)
    return fhir_response(result)


# ------------------------------------------------------------------ type level

@router.get("/{resource_type}", responses=answers(BUNDLE), openapi_extra={"parameters": SEARCH_QUERY})
async def search_type(request: Request, resource_type: TypeName) -> Response:
    hub = hub_of(request)
    pairs = list(request.query_params.multi_items())
    result = await run_in_threadpool(searchset, hub, _known_type(resource_type), pairs, lenient=_lenient(request))
    return fhir_response(result)


@router.post("/{resource_type}/_search", responses=answers(BUNDLE),
             openapi_extra=fhir_body({"type": "object", "additionalProperties": {"type": "string"}}, media=FORM))
async def search_type_post(request: Request, resource_type: TypeName) -> Response:
    hub = hub_of(request)
    form = await read_form(request, max_bytes=hub.settings.max_body_bytes)
    pairs = list(request.query_params.multi_items()) + form
    result = await run_in_threadpool(searchset, hub, _known_type(resource_type), pairs, lenient=_lenient(request))
    return fhir_response(result)


@router.post("/{resource_type}", responses=answers(RESOURCE, created=True), openapi_extra=fhir_body(RESOURCE))
async def create(request: Request, resource_type: TypeName) -> Response:
    hub = hub_of(request)
    _known_type(resource_type)
    body = await read_json(request, max_bytes=hub.settings.max_body_bytes)
    criteria = request.headers.get("if-none-exist") or (request.url.query or None)

    def work() -> Written:
        bundles.require_type(body, resource_type)
        with write_transaction(hub.engine) as conn:
            return hub.store.create(conn, body, now=hub.clock(), if_none_exist=criteria)

    return _written_response(hub, await run_in_threadpool(work), request)


@router.put("/{resource_type}", responses=answers(RESOURCE, created=True), openapi_extra=fhir_body(RESOURCE))
async def conditional_update(request: Request, resource_type: TypeName) -> Response:
    hub = hub_of(request)
    _known_type(resource_type)
    body = await read_json(request, max_bytes=hub.settings.max_body_bytes)
    criteria = request.url.query
    if_match = request.headers.get("if-match")

    def work() -> Written:
        if not criteria:
            raise NotFound("PUT needs an id (Type/id) or search criteria (Type?identifier=…)")
        with write_transaction(hub.engine) as conn:
            return hub.store.conditional_update(conn, resource_type, criteria, body, now=hub.clock(),
                                                if_match=if_match)

    return _written_response(hub, await run_in_threadpool(work), request)


# ------------------------------------------------------------------ instance level

@router.get("/{resource_type}/{rid}", responses=answers(RESOURCE))
async def read(request: Request, resource_type: TypeName, rid: str) -> Response:
    hub = hub_of(request)

    def work() -> dict:
        with read_transaction(hub.engine) as conn:
            return hub.store.read(conn, _known_type(resource_type), rid)

    resource = await run_in_threadpool(work)
    return fhir_response(resource, headers=version_headers(resource))


@router.put("/{resource_type}/{rid}", responses=answers(RESOURCE, created=True), openapi_extra=fhir_body(RESOURCE))
async def update(request: Request, resource_type: TypeName, rid: str) -> Response:
    hub = hub_of(request)
    _known_type(resource_type)
    body = await read_json(request, max_bytes=hub.settings.max_body_bytes)
    if_match = request.headers.get("if-match")

    def work() -> Written:
        with write_transaction(hub.engine) as conn:
            return hub.store.update(conn, resource_type, rid, body, now=hub.clock(), if_match=if_match)

    return _written_response(hub, await run_in_threadpool(work), request)


@router.delete("/{resource_type}/{rid}", status_code=204, responses=answers(None, status=204))
async def delete(request: Request, resource_type: TypeName, rid: str) -> Response:
    hub = hub_of(request)
    _known_type(resource_type)

    def work() -> None:
        with write_transaction(hub.engine) as conn:
            hub.store.delete(conn, resource_type, rid, now=hub.clock())

    await run_in_threadpool(work)
    return Response(status_code=204)


@router.get("/{resource_type}/{rid}/_history", responses=answers(BUNDLE))
async def history(request: Request, resource_type: TypeName, rid: str) -> Response:
    hub = hub_of(request)

    def work() -> dict:
        with read_transaction(hub.engine) as conn:
            versions = hub.store.history(conn, _known_type(resource_type), rid)
        entries = [_history_entry(hub, resource_type, rid, content, method, deleted)
                   for content, method, deleted in versions]
        return bundle("history", entries, total=len(entries))

    return fhir_response(await run_in_threadpool(work))


@router.get("/{resource_type}/{rid}/_history/{vid}", responses=answers(RESOURCE))
async def vread(request: Request, resource_type: TypeName, rid: str, vid: str) -> Response:
    hub = hub_of(request)

    def work() -> dict:
        with read_transaction(hub.engine) as conn:
            return hub.store.vread(conn, _known_type(resource_type), rid, vid)

    resource = await run_in_threadpool(work)
    return fhir_response(resource, headers=version_headers(resource))


def _history_entry(hub: Hub, rtype: str, rid: str, content: dict, method: str, deleted: bool) -> dict:
    version = content["meta"]["versionId"]
    entry: dict = {"fullUrl": f"{hub.base_url}/{rtype}/{rid}",
                   "request": {"method": method, "url": f"{rtype}/{rid}" if method != "POST" else rtype},
                   "response": {"status": "410 Gone" if deleted else "200 OK",
                                "etag": f'W/"{version}"', "lastModified": content["meta"]["lastUpdated"]}}
    if not deleted:
        entry["resource"] = content
    return entry


# ------------------------------------------------------------------ search

def searchset(hub: Hub, resource_type: str, pairs: list[tuple[str, str]], *, lenient: bool) -> dict:
    """Run a search and wrap the page in a searchset Bundle with self/next links."""
    query = search.parse_query(resource_type, pairs, default_count=hub.settings.default_page_size,
                               max_count=hub.settings.max_page_size, lenient=lenient, limits=Limits.of(hub.settings))
    with read_transaction(hub.engine) as conn:
        page = search.run(conn, query)
    entries = [_search_entry(hub, t, i, c, "match") for t, i, c in page.rows]
    entries += [_search_entry(hub, t, i, c, "include") for t, i, c in page.included]
    links = [("self", _link(hub, resource_type, query.echo, None))]
    if page.next_cursor:
        links.append(("next", _link(hub, resource_type, query.echo, page.next_cursor)))
    return bundle("searchset", entries, total=page.total, links=links)


def _search_entry(hub: Hub, rtype: str, rid: str, content: str, mode: str) -> dict:
    return {"fullUrl": f"{hub.base_url}/{rtype}/{rid}", "resource": orjson.loads(content), "search": {"mode": mode}}


def _link(hub: Hub, rtype: str, echo: list[tuple[str, str]], cursor: str | None) -> str:
    params = list(echo) + ([("_cursor", cursor)] if cursor else [])
    return f"{hub.base_url}/{rtype}" + (f"?{urlencode(params)}" if params else "")
