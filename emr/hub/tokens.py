"""The token endpoint's work: check a client assertion, remember its ``jti``, issue an access token.

SMART Backend Services (``client_credentials`` with a ``private_key_jwt`` assertion):
the assertion must be signed RS384 or ES384 with a key of the client's registered
JWKS (named by ``kid``), and its claims must say ``iss`` = ``sub`` = the client id,
``aud`` = this token endpoint, an ``exp`` no more than five minutes ahead, and a
``jti`` never seen before — used ``jti`` values are kept in the hub database until
their assertion expires. The access token is a JWT signed (HS256) with a secret the
hub draws when it starts; it carries the client, its facility, the granted scopes
and a declared purpose of use, and lives ``Settings.token_lifetime_seconds``.

Times come from the hub's clock; the signatures from joserfc.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import orjson
from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import OctKey
from sqlalchemy import delete, insert
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from emr.credentials import ASSERTION_TYPE
from emr.errors import InvalidInput, Unauthorized
from emr.hub.clients import ClientRegistry, RegisteredClient
from emr.hub.db import UsedAssertion, write_transaction
from emr.hub.scopes import Scope, format_scopes, grant, parse_scopes

ASSERTION_ALGORITHMS = ("RS384", "ES384")
ACCESS_ALGORITHM = "HS256"
MAX_ASSERTION_SECONDS = 300
EMERGENCY_PURPOSES = frozenset({"ETREAT", "BTG"})  # HL7 v3 PurposeOfUse: emergency treatment, break the glass
PURPOSES = EMERGENCY_PURPOSES | {"TREAT"}
U = UsedAssertion.__table__


class TokenError(Exception):
    """An OAuth 2.0 error response (RFC 6749 §5.2)."""

    def __init__(self, error: str, description: str, *, status: int = 400) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status


@dataclass(frozen=True)
class Grant:
    """What a valid access token says about its bearer."""

    client_id: str
    facility: str
    scopes: tuple[Scope, ...]
    purpose: str | None
    token_id: str


@dataclass
class TokenService:
    clients: ClientRegistry
    engine: Engine
    clock: Callable[[], datetime]
    token_url: str
    audience: str
    lifetime_seconds: int
    _secret: OctKey = field(default_factory=lambda: OctKey.import_key(secrets.token_bytes(32)), repr=False)

    # ------------------------------------------------------------ issuing
    def issue(self, form: dict[str, str]) -> dict:
        """The token response for a token request's form fields, or ``TokenError``."""
        if form.get("grant_type") != "client_credentials":
            raise TokenError("unsupported_grant_type", "grant_type must be client_credentials")
        if form.get("client_assertion_type") != ASSERTION_TYPE:
            raise TokenError("invalid_request", f"client_assertion_type must be {ASSERTION_TYPE}")
        if not form.get("client_assertion"):
            raise TokenError("invalid_request", "client_assertion is missing")
        client, claims = self._verify_assertion(form["client_assertion"])
        scopes = self._granted(client, form.get("scope", ""))
        purpose = _purpose(form.get("purpose_of_use"), client)
        self._remember(client.client_id, str(claims["jti"]), int(claims["exp"]))
        now = int(self.clock().timestamp())
        body = {"iss": self.token_url, "sub": client.client_id, "aud": self.audience, "iat": now,
                "exp": now + self.lifetime_seconds, "jti": str(uuid.uuid4()), "scope": format_scopes(scopes),
                "facility": client.facility}
        if purpose:
            body["purpose_of_use"] = purpose
        token = jwt.encode({"alg": ACCESS_ALGORITHM, "typ": "at+jwt"}, body, self._secret,
                           algorithms=[ACCESS_ALGORITHM])
        return {"access_token": token, "token_type": "bearer", "expires_in": self.lifetime_seconds,
                "scope": format_scopes(scopes)}

    def _verify_assertion(self, assertion: str) -> tuple[RegisteredClient, dict]:
        header = _header(assertion)
        if header.get("alg") not in ASSERTION_ALGORITHMS:
            raise TokenError("invalid_client", "the assertion must be signed with RS384 or ES384", status=401)
        if not header.get("kid"):
            raise TokenError("invalid_client", "the assertion header must name its key (kid)", status=401)
        unverified = _unverified_claims(assertion)
        client = self.clients.get(str(unverified.get("iss", "")))
        if client is None:
            raise TokenError("invalid_client", "the assertion's iss is not a registered client", status=401)
        try:
            token = jwt.decode(assertion, client.key_set, algorithms=list(ASSERTION_ALGORITHMS))
        except JoseError as error:
            raise TokenError("invalid_client", f"the assertion's signature does not verify against the "
                                               f"client's registered keys ({error.error})", status=401) from error
        self._check_claims(client, token.claims)
        return client, token.claims

    def _check_claims(self, client: RegisteredClient, claims: dict) -> None:
        now = int(self.clock().timestamp())
        registry = jwt.JWTClaimsRegistry(
            now=now, leeway=0, iss={"essential": True, "value": client.client_id},
            sub={"essential": True, "value": client.client_id}, aud={"essential": True, "value": self.token_url},
            exp={"essential": True}, jti={"essential": True})
        try:
            registry.validate(claims)
        except JoseError as error:
            raise TokenError("invalid_client", f"the assertion is not acceptable: {error.description}",
                             status=401) from error
        if int(claims["exp"]) > now + MAX_ASSERTION_SECONDS:
            raise TokenError("invalid_client", "the assertion's exp is more than five minutes ahead", status=401)

    def _granted(self, client: RegisteredClient, requested: str) -> tuple[Scope, ...]:
        if not requested.strip():
            raise TokenError("invalid_scope", "scope is missing: ask for system scopes such as system/Observation.rs")
        try:
            scopes = grant(parse_scopes(requested), client.scopes)
        except InvalidInput as error:
            raise TokenError("invalid_scope", error.message) from error
        if not scopes:
            raise TokenError("invalid_scope", "none of the requested scopes is allowed for this client")
        return scopes

    def _remember(self, client_id: str, jti: str, expires_at: int) -> None:
        now = int(self.clock().timestamp())
        try:
            with write_transaction(self.engine) as conn:
                conn.execute(delete(U).where(U.c.expires_at < now))
                conn.execute(insert(U).values(client_id=client_id, jti=jti[:255], expires_at=expires_at))
        except IntegrityError as error:
            raise TokenError("invalid_client", "this assertion's jti was already used", status=401) from error

    # ------------------------------------------------------------ checking
    def verify(self, token: str) -> Grant:
        """The grant behind a bearer token; ``Unauthorized`` when it is not one this hub issued and still valid."""
        try:
            decoded = jwt.decode(token, self._secret, algorithms=[ACCESS_ALGORITHM])
            jwt.JWTClaimsRegistry(now=int(self.clock().timestamp()), leeway=0,
                                  iss={"essential": True, "value": self.token_url},
                                  aud={"essential": True, "value": self.audience},
                                  exp={"essential": True}).validate(decoded.claims)
        except JoseError as error:
            raise Unauthorized(f"the access token is not valid ({error.description or error.error}); "
                               f"get a new one from {self.token_url}") from error
        claims = decoded.claims
        client = self.clients.get(str(claims.get("sub")))
        if client is None:
            raise Unauthorized("the access token's client is no longer registered")
        return Grant(client.client_id, client.facility, parse_scopes(str(claims.get("scope", ""))),
                     claims.get("purpose_of_use"), str(claims.get("jti", "")))


def _purpose(value: str | None, client: RegisteredClient) -> str | None:
    if not value:
        return None
    if value not in PURPOSES:
        raise TokenError("invalid_request", f"purpose_of_use must be one of {', '.join(sorted(PURPOSES))}")
    if value in EMERGENCY_PURPOSES and not client.break_glass:
        raise TokenError("invalid_scope", "this client may not declare an emergency (break-glass) purpose")
    return value


def _header(assertion: str) -> dict:
    try:
        return jws.extract_compact(assertion.encode()).protected
    except (JoseError, ValueError) as error:
        raise TokenError("invalid_client", "client_assertion is not a compact JWS", status=401) from error


def _unverified_claims(assertion: str) -> dict:
    """The claims before the signature is checked: only to find which client's keys to check it with."""
    try:
        claims = orjson.loads(jws.extract_compact(assertion.encode()).payload)
    except (JoseError, ValueError) as error:
        raise TokenError("invalid_client", "client_assertion's payload is not JSON", status=401) from error
    if not isinstance(claims, dict):
        raise TokenError("invalid_client", "client_assertion's payload is not a JSON object", status=401)
    return claims
