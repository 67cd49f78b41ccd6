"""CDS Hooks 2.0 endpoints: discovery and the two order-entry services."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from emr.errors import NotFound
from emr.hub import access, cds, ordering
from emr.hub.db import read_transaction
from emr.hub.http import hub_of, read_json
from emr.hub.openapi import CDS_CARDS, CDS_DISCOVERY, CDS_REQUEST, answers, fhir_body
from emr.hub.security import settled

router = APIRouter(prefix="/cds-services")


@router.get("", responses=answers(CDS_DISCOVERY, media="application/json"))
async def discovery() -> Response:
    return JSONResponse(cds.discovery())


@router.post("/{service_id}", responses=answers(CDS_CARDS, media="application/json"),
             openapi_extra=fhir_body(CDS_REQUEST, media="application/json"))
async def call_service(request: Request, service_id: str) -> Response:
    hub = hub_of(request)
    body = await read_json(request, max_bytes=hub.settings.max_body_bytes)

    def work() -> dict:
        orders = cds.parse_hook_request(service_id, body)
        access.require_scope("Observation", "s")  # a hook call is a question about results
        now = hub.clock()
        with read_transaction(hub.engine) as conn:
            try:
                patient = hub.store.read(conn, "Patient", orders.patient_id)
            except NotFound:
                return {"cards": []}  # a patient the hub has never seen has nothing to reuse
            question = cds.check_request(orders, patient, hub.catalogue, now=now)
            if question is None:
                return {"cards": []}
            decisions = ordering.check(conn, hub.catalogue, question)
        return cds.cards(orders, decisions, hub.catalogue, base_url=hub.base_url, now=now)

    return JSONResponse(await run_in_threadpool(settled, hub, work))
