"""``create_app(settings)``: the hub as a FastAPI application.

The database engine, the store and its write hooks are built here, once per app,
from the settings passed in; nothing is built at import time.
"""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timezone

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException

from emr.config import Settings
from emr.catalog import load_facilities, load_tests
from emr.errors import EmrError, Gone, NotFound
from emr.fhir.builders import organization
from emr.credentials import token_url_for
from emr.hub import results
from emr.hub.audit import AuditWriter
from emr.hub.clients import ClientRegistry, load_clients
from emr.hub.db import create_schema, make_engine, write_transaction
from emr.hub.http import Hub, error_response, outcome_response
from emr.hub.limits import InputGuard, Limits
from emr.hub.linking import PatientLinker
from emr.hub.ordering import Catalogue
from emr.hub.relationships import access_facts
from emr.hub.routes import auth, cds, dashboard, fhir, operations
from emr.hub.security import SecurityMiddleware
from emr.hub.store import Store
from emr.hub.tokens import TokenService
from emr.hub.verification import IdentityRegistry, IdentityVerifier


def wall_clock() -> datetime:
    return datetime.now(timezone.utc)


def build_hub(settings: Settings, *, clock: Callable[[], datetime] = wall_clock,
              registry: IdentityRegistry | None = None, clients: ClientRegistry | None = None) -> Hub:
    """Load the registry and catalogue, open the database, and publish the facilities."""
    catalogue = Catalogue(facilities=load_facilities(settings.hospitals_dir),
                          tests=load_tests(settings.data_dir / "tests.yaml"))
    if clients is None:
        clients = (load_clients(settings.clients_path, facilities=catalogue.facilities)
                   if settings.clients_path else ClientRegistry())
    engine = make_engine(settings.database_url)
    create_schema(engine)
    store = Store(limits=Limits.of(settings))
    store.hooks["*"] = [AuditWriter(store), access_facts]  # audit first: a deletion still knows its patient
    store.hooks["Patient"] = [PatientLinker(store), results.patient_facts, IdentityVerifier(registry)]
    store.hooks["Observation"] = [results.observation_facts]
    tokens = TokenService(clients=clients, engine=engine, clock=clock, token_url=token_url_for(settings.base_url),
                          audience=settings.base_url.rstrip("/"), lifetime_seconds=settings.token_lifetime_seconds)
    hub = Hub(settings=settings, engine=engine, store=store, catalogue=catalogue, clock=clock, tokens=tokens)
    publish_facilities(hub)
    return hub


def publish_facilities(hub: Hub) -> None:
    """Create or refresh one Organization per registry facility (id = facility code)."""
    with write_transaction(hub.engine) as conn:
        for code, facility in sorted(hub.catalogue.facilities.items()):
            wanted = organization(facility)
            try:
                current = hub.store.read(conn, "Organization", code)
            except (NotFound, Gone):
                current = None
            if current is None or {k: v for k, v in current.items() if k != "meta"} != wanted:
                hub.store.update(conn, "Organization", code, wanted, now=hub.clock())


def create_app(settings: Settings, *, clock: Callable[[], datetime] = wall_clock,
               registry: IdentityRegistry | None = None, clients: ClientRegistry | None = None) -> FastAPI:
    """The hub. ``registry`` is the National Population Database to verify identities
    against (the simulator passes its synthetic one); without it nothing is checked.
    ``clients`` are the registered SMART clients (default: ``settings.clients_path``)."""
    hub = build_hub(settings, clock=clock, registry=registry, clients=clients)
    app = FastAPI(title="emr coordination hub", version="0.1.0", lifespan=_serving,
                  description="FHIR R4B coordination hub linking facilities by national ID.")
    app.state.hub = hub
    _install_error_handlers(app)
    app.add_middleware(SecurityMiddleware, hub=hub)
    app.add_middleware(InputGuard)  # outermost: a malformed request line goes no further
    app.include_router(auth.router)  # before the generic /fhir/{type}/{id} routes
    app.include_router(operations.router)  # before the generic /{type}/{id} routes
    app.include_router(fhir.router)
    app.include_router(cds.router)
    app.include_router(dashboard.router)
    return app


@asynccontextmanager
async def _serving(_app: FastAPI) -> AsyncIterator[None]:
    """While the hub serves, what start-up built (about 120,000 objects: models, schemas, tables)
    is out of the cyclic garbage collector's sight. A full collection otherwise walks all of it:
    a 50 ms stall of every request in flight, once every few hundred requests (measured on B2)."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(EmrError)
    async def _emr_error(_request: Request, exc: EmrError) -> Response:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> Response:
        return outcome_response(400, f"the request is malformed: {exc.errors()[0].get('msg', exc)}")

    @app.exception_handler(HTTPException)
    async def _http(_request: Request, exc: HTTPException) -> Response:
        code = "not-found" if exc.status_code == 404 else "not-supported" if exc.status_code == 405 else "invalid"
        return outcome_response(exc.status_code, str(exc.detail), code=code)

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> Response:
        return outcome_response(500, f"the hub failed unexpectedly ({type(exc).__name__}); "
                                     "the request was not applied", code="exception")



