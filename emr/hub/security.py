"""The gate in front of ``/fhir`` and ``/cds-services``: a bearer token, and an audit entry on the way out.

``SecurityMiddleware`` (plain ASGI) checks the access token of every request under
those paths — except ``GET /fhir/metadata`` and the SMART configuration, which are
public — and answers 401 with an OperationOutcome and ``WWW-Authenticate`` when it
is missing or invalid. A valid token becomes the request's ``Principal`` (for the
access rules in ``emr.hub.access``); an ``X-Purpose-Of-Use: ETREAT`` (or ``BTG``)
header declares an emergency for this request. Every request also gets an
``AuditTrail``; when the response is ready, and before it is sent, the trail's
AuditEvents are written. If they cannot be written the caller gets a 500, not the data.

With ``Settings.auth_required`` off (``emr serve --no-auth``) no token is asked for
and nothing is restricted, but everything is still audited.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from emr.errors import EmrError, Forbidden, InvalidInput, Problem, Unauthorized
from emr.fhir import operation_outcome
from emr.hub import access, audit
from emr.hub.access import Principal
from emr.hub.audit import AuditTrail
from emr.hub.http import Hub
from emr.hub.tokens import EMERGENCY_PURPOSES, PURPOSES

PROTECTED = ("/fhir", "/cds-services")
PUBLIC = {("GET", "/fhir/metadata"), ("GET", "/fhir/.well-known/smart-configuration")}
PURPOSE_HEADER = "x-purpose-of-use"
T = TypeVar("T")


class SecurityMiddleware:
    def __init__(self, app: ASGIApp, *, hub: Hub) -> None:
        self.app = app
        self.hub = hub

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _protected(scope["method"], scope["path"]):
            await self.app(scope, receive, send)
            return
        trail = _trail_for(scope)
        try:
            trail.principal = self._authenticate(Headers(scope=scope)) if self.hub.auth_required else None
        except EmrError as error:
            await self._refuse(send, trail, error)
            return
        with access.acting_for(trail.principal):
            token = audit.start(trail)
            try:
                await self.app(scope, receive, _AuditedSend(self.hub, trail, send))
            finally:
                audit.stop(token)

    def _authenticate(self, headers: Headers) -> Principal:
        scheme, _, token = (headers.get("authorization") or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized(f"this hub needs a bearer access token (SMART Backend Services); "
                               f"get one from {self.hub.token_url}")
        grant = self.hub.tokens.verify(token.strip())
        purpose = headers.get(PURPOSE_HEADER)
        if purpose is not None and purpose not in PURPOSES:
            raise InvalidInput(f"X-Purpose-Of-Use must be one of {', '.join(sorted(PURPOSES))}",
                               location="X-Purpose-Of-Use")
        client = self.hub.tokens.clients.get(grant.client_id)
        if purpose in EMERGENCY_PURPOSES and not (client and client.break_glass):
            raise Forbidden("this client may not declare an emergency (break-glass) purpose of use",
                            location="X-Purpose-Of-Use")
        return Principal(grant.client_id, grant.facility, grant.scopes, purpose or grant.purpose, grant.token_id)

    async def _refuse(self, send: Send, trail: AuditTrail, error: EmrError) -> None:
        await run_in_threadpool(write_pending, self.hub, trail, error.status, str(error))
        headers = [(b"content-type", b"application/fhir+json")]
        if error.status == 401:
            headers.append((b"www-authenticate", b'Bearer realm="emr", error="invalid_token"'))
        body = orjson.dumps(operation_outcome(error.problems))
        await send({"type": "http.response.start", "status": error.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


class _AuditedSend:
    """Holds the response back until its audit entries are written; a failure there becomes a 500."""

    def __init__(self, hub: Hub, trail: AuditTrail, send: Send) -> None:
        self.hub, self.trail, self.send = hub, trail, send
        self.start: Message | None = None
        self.replaced = False

    async def __call__(self, message: Message) -> None:
        if self.replaced:
            return
        if message["type"] == "http.response.start":
            self.start = message
            if message["status"] < 400:
                await self._flush(message["status"], None)
            return
        if message["type"] == "http.response.body" and self.start is not None:
            start, self.start = self.start, None
            if start["status"] >= 400:
                await self._flush(start["status"], _diagnostics(message.get("body", b"")))
            if self.replaced:
                return
            await self.send(start)
        await self.send(message)

    async def _flush(self, status: int, description: str | None) -> None:
        try:
            now = self.hub.clock()
            events = audit.pending_events(self.trail, status=status, message=description, now=now)
            if events:  # none left when the route committed them from its own thread (``settle``)
                await run_in_threadpool(self.hub.audit_queue.record, events, now=now, durable=status >= 400)
        except Exception as exc:  # noqa: BLE001 - no audit entry, no data
            self.replaced = True
            body = orjson.dumps(operation_outcome([Problem(
                f"the hub could not write the audit trail ({type(exc).__name__}); nothing was disclosed",
                None, "exception")]))
            await self.send({"type": "http.response.start", "status": 500,
                             "headers": [(b"content-type", b"application/fhir+json")]})
            await self.send({"type": "http.response.body", "body": body})


def write_pending(hub: Hub, trail: AuditTrail, status: int, description: str | None) -> None:
    """Commit the request's AuditEvents (with other requests' if they finish together; ``emr.hub.audit_queue``)."""
    now = hub.clock()
    events = audit.pending_events(trail, status=status, message=description, now=now)
    hub.audit_queue.record(events, now=now, durable=status >= 400)


def settled(hub: Hub, work: Callable[[], T]) -> T:
    """``work()``, then the entries the request owes committed, as for a success, from the same
    worker thread: the response then leaves without a second thread hop to write them.

    For a route's work that ends in its answer: a failure after it is still audited, as a failure."""
    answer = work()
    trail = audit.current_trail()
    if trail is not None:
        write_pending(hub, trail, 200, None)
        trail.written.update(trail.touched)
    return answer


def _diagnostics(body: bytes) -> str | None:
    try:
        issues = orjson.loads(body).get("issue") or []
        return "; ".join(str(i.get("diagnostics", "")) for i in issues if isinstance(i, dict)) or None
    except (orjson.JSONDecodeError, AttributeError):
        return None


def _protected(method: str, path: str) -> bool:
    if (method, path.rstrip("/")) in PUBLIC:
        return False
    return any(path == prefix or path.startswith(prefix + "/") for prefix in PROTECTED)


def _trail_for(scope: Scope) -> AuditTrail:
    method, path = scope["method"], scope["path"]
    query = scope.get("query_string", b"").decode("latin-1") or None
    client = scope.get("client")
    trail = AuditTrail(principal=None, interaction="operation", query=query,
                       address=client[0] if client else None)
    if path.startswith("/cds-services"):
        trail.operation = "cds-" + (path.removeprefix("/cds-services").strip("/") or "discovery")
        return trail
    parts = [p for p in path.removeprefix("/fhir").split("/") if p]
    if parts and parts[-1].startswith("$"):
        trail.operation = parts[-1][1:]
        trail.resource_type = parts[0] if len(parts) > 1 else None
        return trail
    trail.resource_type = parts[0] if parts else None
    trail.interaction = _interaction(method, parts)
    return trail


def _interaction(method: str, parts: list[str]) -> str:
    """The FHIR restful interaction a request under /fhir asks for (for its audit entry)."""
    if not parts:
        return "transaction"
    if len(parts) == 1:
        return {"POST": "create", "PUT": "update"}.get(method, "search-type")
    if parts[1] == "_search":
        return "search-type"
    if len(parts) == 2:
        return {"PUT": "update", "DELETE": "delete"}.get(method, "read")
    return "vread" if len(parts) >= 4 else "history-instance"
