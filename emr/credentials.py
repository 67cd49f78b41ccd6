"""A facility system's side of SMART Backend Services: its key pair, its client assertion, its tokens.

``seeded_key`` derives a P-384 key pair (ES384) from a seed and a name, so a simulation
run, or a test, has the same keys every time without storing any (anyone who knows the
seed knows the key: for simulations and tests only). ``SmartAuth`` is an
``httpx.Auth``: it signs a client assertion, trades it at the hub's token endpoint for
an access token, sends the token as a bearer token, and fetches a new one shortly
before it expires (by the clock it is given) or when the hub answers 401. When the
token endpoint refuses, its answer is what the caller gets. Private keys and tokens
never appear in a ``repr`` or a log line.

The cryptography is the JOSE library's (joserfc) and cryptography's: nothing here
signs or verifies by hand.
"""

from __future__ import annotations

import hashlib
import threading
import uuid
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import httpx
from cryptography.hazmat.primitives.asymmetric import ec
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_LIFETIME = timedelta(minutes=4)  # SMART: at most five minutes
RENEW_BEFORE = 30  # seconds before an access token expires that a new one is fetched
_P384_ORDER = int("FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFC7634D81F4372DDF581A0DB248B0A77AECEC196ACCC52973", 16)


@dataclass(frozen=True)
class ClientKey:
    """A private signing key with its key id and algorithm (ES384 or RS384)."""

    kid: str
    alg: str
    key: ECKey | RSAKey = field(repr=False)

    def public_jwk(self) -> dict:
        public = self.key.as_dict(private=False)
        return {**public, "kid": self.kid, "alg": self.alg, "use": "sig"}

    def jwks(self) -> dict:
        return {"keys": [self.public_jwk()]}

    def assertion(self, *, client_id: str, token_url: str, now: datetime, jti: str | None = None,
                  lifetime: timedelta = ASSERTION_LIFETIME) -> str:
        """A signed client assertion (``private_key_jwt``) for the token endpoint at ``token_url``."""
        issued = int(now.timestamp())
        claims = {"iss": client_id, "sub": client_id, "aud": token_url, "iat": issued,
                  "exp": issued + int(lifetime.total_seconds()), "jti": jti or str(uuid.uuid4())}
        return jwt.encode({"alg": self.alg, "kid": self.kid, "typ": "JWT"}, claims, self.key, algorithms=[self.alg])


def seeded_key(seed: int | str, name: str) -> ClientKey:
    """The ES384 key pair of ``name`` in the run seeded with ``seed``: the same inputs, the same key."""
    digest = hashlib.sha512(f"emr-client-key:{seed}:{name}".encode()).digest()
    scalar = int.from_bytes(digest, "big") % (_P384_ORDER - 1) + 1
    private = ec.derive_private_key(scalar, ec.SECP384R1())
    kid = hashlib.sha256(f"{seed}:{name}".encode()).hexdigest()[:16]
    return ClientKey(kid, "ES384", ECKey.import_key(private))


def generated_key(alg: str = "ES384", *, kid: str | None = None) -> ClientKey:
    """A fresh random key pair (for a real deployment's client, or a test of RS384)."""
    key = RSAKey.generate_key(2048) if alg == "RS384" else ECKey.generate_key("P-384")
    return ClientKey(kid or uuid.uuid4().hex[:16], alg, key)


def token_url_for(fhir_base: str) -> str:
    """The hub's token endpoint, as its smart-configuration advertises it."""
    base = fhir_base.rstrip("/")
    return base.removesuffix("/fhir") + "/auth/token"


class SmartAuth(httpx.Auth):
    """Bearer tokens from the hub's token endpoint, fetched when first needed and again after a 401."""

    requires_response_body = True

    def __init__(self, *, client_id: str, key: ClientKey, token_url: str, scope: str,
                 clock: Callable[[], datetime], purpose_of_use: str | None = None) -> None:
        self.client_id = client_id
        self._key = key
        self.token_url = token_url
        self.scope = scope
        self._clock = clock
        self._purpose = purpose_of_use
        self._token: str | None = None
        self._renew_at: datetime | None = None
        self._lock = threading.Lock()
        self.tokens_fetched = 0

    def __repr__(self) -> str:
        return f"SmartAuth(client_id={self.client_id!r}, token_url={self.token_url!r})"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        token = self._token
        if token is None or (self._renew_at is not None and self._clock() >= self._renew_at):
            token = yield from self._fetch()
            if token is None:
                return  # the caller gets the token endpoint's refusal
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if response.status_code == 401:
            token = yield from self._fetch()
            if token is None:
                return
            request.headers["Authorization"] = f"Bearer {token}"
            yield request

    def token_request(self) -> httpx.Request:
        form = {"grant_type": "client_credentials", "scope": self.scope,
                "client_assertion_type": ASSERTION_TYPE,
                "client_assertion": self._key.assertion(client_id=self.client_id, token_url=self.token_url,
                                                        now=self._clock())}
        if self._purpose:
            form["purpose_of_use"] = self._purpose
        return httpx.Request("POST", self.token_url, data=form, headers={"Accept": "application/json"})

    def _fetch(self) -> Generator[httpx.Request, httpx.Response, str | None]:
        asked_at = self._clock()
        response = yield self.token_request()
        if response.status_code != 200:
            return None
        body = response.json()
        with self._lock:
            self._token = body["access_token"]
            lifetime = int(body.get("expires_in", 0))
            self._renew_at = asked_at + timedelta(seconds=lifetime - RENEW_BEFORE) if lifetime > RENEW_BEFORE else None
            self.tokens_fetched += 1
        return self._token
