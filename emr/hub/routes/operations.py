"""Whole-server and type-level operations: metadata, IHE PIXm ``$ihe-pix``, ``$check-reuse``."""

from __future__ import annotations

from functools import partial
from importlib.metadata import version

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from emr.hub import ordering
from emr.hub.capability import capability_statement
from emr.hub.db import read_transaction
from emr.hub.http import Hub, fhir_response, hub_of, read_json
from emr.hub.linking import pix_query
from emr.hub.openapi import PARAMETERS, RESOURCE, FhirJSONResponse, answers, fhir_body
from emr.hub.security import settled

router = APIRouter(prefix="/fhir", default_response_class=FhirJSONResponse)


@router.get("/metadata", responses=answers(RESOURCE))
async def metadata(request: Request) -> Response:
    hub = hub_of(request)
    return fhir_response(capability_statement(
        base_url=hub.base_url, software_version=version("emr"), release_date="2026-11-25",
        token_url=hub.token_url if hub.auth_required else None))


@router.get("/Patient/$ihe-pix", responses=answers(PARAMETERS), openapi_extra={"parameters": [
    {"name": "sourceIdentifier", "in": "query", "required": True, "schema": {"type": "string"}},
    {"name": "targetSystem", "in": "query", "required": False, "schema": {"type": "string"}}]})
async def ihe_pix(request: Request) -> Response:
    hub = hub_of(request)
    source = request.query_params.get("sourceIdentifier", "")
    targets = request.query_params.getlist("targetSystem")

    def work() -> dict:
        with read_transaction(hub.engine) as conn:
            return pix_query(conn, source_identifier=source, target_systems=targets)

    return fhir_response(await run_in_threadpool(work))


@router.post("/$check-reuse", responses=answers(PARAMETERS), openapi_extra=fhir_body(PARAMETERS))
async def check_reuse(request: Request) -> Response:
    hub = hub_of(request)
    body = await read_json(request, max_bytes=hub.settings.max_body_bytes)
    return fhir_response(await run_in_threadpool(settled, hub, partial(answer_check, hub, body)))


def answer_check(hub: Hub, body: object) -> dict:
    """The answer to a ``$check-reuse`` question: both are Parameters resources."""
    question = ordering.parse_parameters(body, now=hub.clock(), catalogue=hub.catalogue)
    with read_transaction(hub.engine) as conn:
        return ordering.decisions_to_parameters(ordering.check(conn, hub.catalogue, question))
