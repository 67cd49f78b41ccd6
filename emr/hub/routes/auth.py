"""SMART Backend Services endpoints: the configuration document and the token endpoint.

``GET /.well-known/smart-configuration`` (also under ``/fhir``) tells a client where
the token endpoint is and what it accepts. ``POST /auth/token`` takes the OAuth 2.0
client-credentials form with a signed client assertion and answers with an access
token, or with an OAuth error (``{"error": …, "error_description": …}``, RFC 6749 §5.2),
the shape OAuth clients expect from a token endpoint.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from emr.errors import NotFound
from emr.hub.http import hub_of
from emr.hub.tokens import ASSERTION_ALGORITHMS, TokenError

router = APIRouter()
MAX_FORM_BYTES = 64 * 1024
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


@router.get("/.well-known/smart-configuration", responses={404: {"description": "The hub runs without authentication"}})
@router.get("/fhir/.well-known/smart-configuration", include_in_schema=False)
async def smart_configuration(request: Request) -> Response:
    hub = hub_of(request)
    if not hub.auth_required:
        raise NotFound("this hub runs without authentication (emr serve --no-auth): there is no token endpoint")
    return JSONResponse({
        "token_endpoint": hub.token_url,
        "token_endpoint_auth_methods_supported": ["private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": list(ASSERTION_ALGORITHMS),
        "grant_types_supported": ["client_credentials"],
        "scopes_supported": ["system/*.cruds", "system/*.rs", "system/Patient.cruds", "system/Observation.cruds",
                             "system/AuditEvent.rs"],
        "capabilities": ["client-confidential-asymmetric", "permission-v2", "permission-v1"],
    })


@router.post("/auth/token", responses={400: {"description": "OAuth error: a malformed request or scope"},
                                       401: {"description": "OAuth error: invalid_client"}})
async def token(request: Request) -> Response:
    hub = hub_of(request)
    try:
        form = await _form(request)
        body = await run_in_threadpool(hub.tokens.issue, form)
    except TokenError as error:
        return JSONResponse({"error": error.error, "error_description": error.description},
                            status_code=error.status, headers=NO_STORE)
    return JSONResponse(body, headers=NO_STORE)


async def _form(request: Request) -> dict[str, str]:
    media = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    if media != "application/x-www-form-urlencoded":
        raise TokenError("invalid_request", "the token request must be application/x-www-form-urlencoded")
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > MAX_FORM_BYTES:
            raise TokenError("invalid_request", f"the token request is larger than {MAX_FORM_BYTES} bytes")
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True)
    except UnicodeDecodeError as error:
        raise TokenError("invalid_request", "the token request is not UTF-8") from error
    form: dict[str, str] = {}
    for name, value in pairs:
        if name in form:
            raise TokenError("invalid_request", f"'{name}' is given twice")
        form[name] = value
    return form
