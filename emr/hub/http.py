"""What every hub route needs from HTTP: the hub context, FHIR JSON in and out, errors as OperationOutcome."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from urllib.parse import parse_qsl

import orjson
from fastapi import Request
from fastapi.responses import Response
from sqlalchemy.engine import Engine

from emr.config import Settings
from emr.errors import EmrError, InvalidInput, PayloadTooLarge, Problem, UnsupportedMediaType
from emr.fhir import operation_outcome
from emr.hub.audit_queue import AuditQueue
from emr.hub.limits import Limits, check_json
from emr.hub.ordering import Catalogue
from emr.credentials import token_url_for
from emr.hub.store import Store
from emr.hub.tokens import TokenService

FHIR_JSON = "application/fhir+json"
ACCEPTED_TYPES = {"application/fhir+json", "application/json", "application/json+fhir"}
FORM = "application/x-www-form-urlencoded"


@dataclass
class Hub:
    """Everything a request handler needs, built once by ``create_app``."""

    settings: Settings
    engine: Engine
    store: Store
    catalogue: Catalogue
    clock: Callable[[], datetime]
    tokens: TokenService | None = None
    audit_queue: AuditQueue = field(init=False)  # where finished requests' AuditEvents are committed

    def __post_init__(self) -> None:
        self.audit_queue = AuditQueue(engine=self.engine, store=self.store)

    @property
    def base_url(self) -> str:
        return self.settings.base_url.rstrip("/")

    @property
    def auth_required(self) -> bool:
        """False when the hub runs open (``emr serve --no-auth``): pages should say so loudly."""
        return self.settings.auth_required

    @property
    def token_url(self) -> str:
        return token_url_for(self.base_url)


def hub_of(request: Request) -> Hub:
    return request.app.state.hub


def fhir_response(body: dict, *, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type=FHIR_JSON, headers=headers)


def error_response(error: EmrError) -> Response:
    return fhir_response(operation_outcome(error.problems), status=error.status)


def outcome_response(status: int, message: str, *, code: str = "invalid", location: str | None = None) -> Response:
    return fhir_response(operation_outcome([Problem(message, location, code)]), status=status)


async def read_json(request: Request, *, max_bytes: int) -> object:
    """The request body as JSON, after the content type and size checks, within the hub's
    limits on nesting, string length and characters (``emr.hub.limits``)."""
    _check_content_type(request.headers.get("content-type"))
    raw = await _read_body(request, max_bytes=max_bytes)
    body = parse_json(raw)
    check_json(body, Limits.of(hub_of(request).settings), raw)
    return body


async def read_form(request: Request, *, max_bytes: int) -> list[tuple[str, str]]:
    """The search parameters of a ``POST Type/_search`` body (``application/x-www-form-urlencoded``).

    Parsed here rather than by Starlette, whose form parser needs an optional package
    the hub does not install and would answer 500 without it.
    """
    media = (request.headers.get("content-type") or FORM).split(";")[0].strip().lower()
    if media != FORM:
        raise UnsupportedMediaType(f"a search body must be {FORM}, not '{media}'", location="Content-Type")
    body = await _read_body(request, max_bytes=max_bytes)
    try:
        return parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"the search body is not UTF-8: {exc}") from exc


async def _read_body(request: Request, *, max_bytes: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise PayloadTooLarge(f"the body is {declared} bytes; this hub takes at most {max_bytes}")
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > max_bytes:
            raise PayloadTooLarge(f"the body is larger than this hub's limit of {max_bytes} bytes")
    return bytes(body)


def parse_json(body: bytes) -> object:
    if not body.strip():
        raise InvalidInput("the request has no body; send a FHIR resource as JSON")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"the body is not valid JSON: {exc}") from exc


def _check_content_type(header: str | None) -> None:
    if header is None:
        return  # lenient: many scripts forget it, and the body is parsed as JSON anyway
    media = header.split(";")[0].strip().lower()
    if media not in ACCEPTED_TYPES:
        raise UnsupportedMediaType(
            f"content type '{media}' is not accepted; send application/fhir+json",
            location="Content-Type")


def version_headers(resource: dict) -> dict[str, str]:
    meta = resource.get("meta") or {}
    headers = {}
    if meta.get("versionId"):
        headers["ETag"] = f'W/"{meta["versionId"]}"'
    if meta.get("lastUpdated"):
        headers["Last-Modified"] = _http_date(meta["lastUpdated"])
    return headers


def _http_date(instant: str) -> str:
    moment = datetime.fromisoformat(instant.replace("Z", "+00:00"))
    return moment.strftime("%a, %d %b %Y %H:%M:%S GMT")
