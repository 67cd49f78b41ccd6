"""Test clients for every facility of the registry, and an ``httpx.Auth`` that acts as the right one.

Hubs built by the shared fixtures (``make_client``, ``served_hub``) register one SMART
client per facility, ``test-<code>``, with a key derived from a fixed seed. Most hub
tests play several facilities in turn through one HTTP client; ``ActingFacility``
sends each request with the token of the facility it speaks for, the way that
facility's own system would:

- a resource in the body speaks for the facility that owns it (the hub's own rule,
  ``emr.hub.relationships.owners_of``): the performer of a result, the managing
  organisation of a registration…;
- ``$check-reuse`` speaks for its ``facility`` parameter, a CDS Hooks call for the
  requester of its draft orders, a Bundle for the owner of its first resource;
- anything else (reads, searches, deletes) for the facility that acted last, or
  ``01001`` (Bạch Mai) when none has.

Tests about access control itself use ``facility_auth`` for one fixed facility.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Generator
from datetime import datetime

import httpx
import orjson

from emr.catalog import load_facilities
from emr.config import Settings
from emr.credentials import SmartAuth, seeded_key, token_url_for
from emr.hub.clients import ClientRegistry, facility_client, registry_of
from emr.hub.relationships import facility_of, owners_of
from emr.identity import FACILITY_CODE_SYSTEM

TEST_SEED = "emr-tests"
DEFAULT_FACILITY = "01001"
ALL_SCOPES = "system/*.cruds"


def client_id(facility: str) -> str:
    return f"test-{facility}"


@functools.cache
def facility_codes() -> tuple[str, ...]:
    return tuple(sorted(load_facilities(Settings().hospitals_dir)))


def test_clients() -> ClientRegistry:
    """One registered client per facility, with its seeded key's public half."""
    return registry_of(facility_client(client_id(code), code, seeded_key(TEST_SEED, code).jwks())
                       for code in facility_codes())


def facility_auth(facility: str, *, fhir_base: str, clock: Callable[[], datetime], scope: str = ALL_SCOPES,
                  purpose_of_use: str | None = None) -> SmartAuth:
    return SmartAuth(client_id=client_id(facility), key=seeded_key(TEST_SEED, facility),
                     token_url=token_url_for(fhir_base), scope=scope, clock=clock, purpose_of_use=purpose_of_use)


class ActingFacility(httpx.Auth):
    """Each request as the facility it speaks for (see the module docstring)."""

    requires_response_body = True

    def __init__(self, *, fhir_base: str, clock: Callable[[], datetime]) -> None:
        self._fhir_base = fhir_base
        self._clock = clock
        self._auths: dict[str, SmartAuth] = {}
        self.last = DEFAULT_FACILITY

    def for_facility(self, facility: str) -> SmartAuth:
        if facility not in self._auths:
            self._auths[facility] = facility_auth(facility, fhir_base=self._fhir_base, clock=self._clock)
        return self._auths[facility]

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        speaking = speaks_for(request)
        if speaking:
            self.last = speaking
        yield from self.for_facility(speaking or self.last).auth_flow(request)


def speaks_for(request: httpx.Request) -> str | None:
    """The facility a request's body speaks for, if it names one."""
    if request.method not in ("POST", "PUT") or len(request.content) > 1_000_000:
        return None
    try:
        body = orjson.loads(request.content)
    except orjson.JSONDecodeError:
        return None
    try:
        facility = _facility_of_body(body) if isinstance(body, dict) else None
    except (TypeError, AttributeError, KeyError):  # a malformed body a test sends on purpose
        return None
    return facility if facility in facility_codes() else None


def _facility_of_body(body: dict) -> str | None:
    if body.get("resourceType") == "Parameters":
        return next((p["valueIdentifier"].get("value") for p in body.get("parameter") or []
                     if isinstance(p, dict) and p.get("name") == "facility"
                     and isinstance(p.get("valueIdentifier"), dict)
                     and p["valueIdentifier"].get("system") == FACILITY_CODE_SYSTEM), None)
    if body.get("resourceType") == "Bundle":
        first = next((e.get("resource") for e in body.get("entry") or []
                      if isinstance(e, dict) and isinstance(e.get("resource"), dict)), None)
        return _facility_of_body(first) if first else None
    if "hook" in body and isinstance(body.get("context"), dict):
        draft = body["context"].get("draftOrders") or {}
        requesters = [facility_of(e.get("resource", {}).get("requester")) for e in draft.get("entry") or []
                      if isinstance(e, dict)]
        return next((code for code in requesters if code), None)
    owners = sorted(owners_of(body))
    return owners[0] if owners else None


class HubURL(str):
    """A served hub's FHIR base URL that also hands out credentials for it (the hub runs on real time)."""

    @functools.cached_property
    def auth(self) -> ActingFacility:
        from emr.hub.app import wall_clock

        return ActingFacility(fhir_base=str(self), clock=wall_clock)

    def auth_for(self, facility: str) -> SmartAuth:
        return self.auth.for_facility(facility)

    def bearer(self, facility: str) -> str:
        """An ``Authorization`` header value for clients that take a fixed one (fhirpy)."""
        with httpx.Client() as http:
            response = http.send(self.auth_for(facility).token_request())
        response.raise_for_status()
        return f"Bearer {response.json()['access_token']}"
