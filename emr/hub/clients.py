"""The hub's registered clients: which facility each one speaks for, its public keys, its scopes.

A client is a facility's system (its EMR or lab system) registered for SMART Backend
Services: a ``client_id``, the facility code it acts for (a facility of
``hospitals/``), a JWKS with its public keys and the system scopes it may be
granted. ``emr serve`` reads them from ``Settings.clients_path`` — one YAML or JSON
file, or a directory of them::

    clients:
      - client_id: bach-mai-his
        facility: "01001"
        jwks: {keys: [{kty: EC, crv: P-384, kid: bm-2025, x: …, y: …}]}
        scopes: system/Patient.cruds system/Observation.cruds   # optional: the facility default
        break_glass: true                                        # optional: may declare emergencies

The simulator and the tests build the registry in memory from keys they generate.
A JWKS that holds a private key is refused: the hub never needs one.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import orjson
import yaml
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from emr.errors import DataFileError, InvalidInput, Problem
from emr.hub.scopes import Scope, parse_scopes

# What a facility's system may be granted unless its registration says otherwise.
FACILITY_SCOPES = (
    "system/Patient.cruds system/Observation.cruds system/DiagnosticReport.cruds system/Encounter.cruds "
    "system/ServiceRequest.cruds system/Task.cruds system/DetectedIssue.cruds system/Consent.cruds "
    "system/Person.rs system/Organization.rs system/AuditEvent.rs"
)
KEY_TYPES = {"RSA": "RS384", "EC": "ES384"}
PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "k")


@dataclass(frozen=True)
class RegisteredClient:
    client_id: str
    facility: str
    jwks: dict = field(repr=False)
    scopes: tuple[Scope, ...]
    break_glass: bool = True

    @cached_property
    def key_set(self) -> KeySet:
        """The registered public keys, imported once: every token request is verified against them."""
        return KeySet.import_key_set(self.jwks)


@dataclass(frozen=True)
class ClientRegistry:
    clients: dict[str, RegisteredClient] = field(default_factory=dict)

    def get(self, client_id: str) -> RegisteredClient | None:
        return self.clients.get(client_id)

    def __len__(self) -> int:
        return len(self.clients)


def facility_client(client_id: str, facility: str, jwks: dict, *, scopes: str = FACILITY_SCOPES,
                    break_glass: bool = True) -> RegisteredClient:
    """A client of one facility, checked: public keys only, each with a ``kid``, scopes well-formed."""
    _check_jwks(jwks)
    return RegisteredClient(client_id, facility, jwks, parse_scopes(scopes), break_glass)


def registry_of(clients: Iterable[RegisteredClient]) -> ClientRegistry:
    found: dict[str, RegisteredClient] = {}
    for client in clients:
        if client.client_id in found:
            raise InvalidInput(f"client_id '{client.client_id}' is registered twice", location="client_id")
        found[client.client_id] = client
    return ClientRegistry(found)


# ---------------------------------------------------------------- files

def load_clients(path: Path, *, facilities: Iterable[str]) -> ClientRegistry:
    """Every client in ``path`` (a file, or a directory of ``*.yaml``/``*.yml``/``*.json``);
    ``DataFileError`` listing every problem at once."""
    if not path.exists():
        raise DataFileError(f"clients file {path} does not exist")
    known = set(facilities)
    files = sorted(p for p in path.iterdir() if p.suffix in {".yaml", ".yml", ".json"}) if path.is_dir() else [path]
    clients, problems = [], []
    for file in files:
        for index, entry in enumerate(_entries(file, problems)):
            client = _client(entry, label=f"{file.name}:clients[{index}]", known=known, problems=problems)
            if client is not None:
                clients.append(client)
    seen: set[str] = set()
    for client in clients:
        if client.client_id in seen:
            problems.append(Problem(f"client_id '{client.client_id}' is registered twice", str(path)))
        seen.add(client.client_id)
    if problems:
        raise DataFileError(f"the clients in {path} are invalid ({len(problems)} problems)", problems=problems)
    return ClientRegistry({c.client_id: c for c in clients})


def _entries(file: Path, problems: list[Problem]) -> list[object]:
    try:
        text = file.read_text(encoding="utf-8")
        document = orjson.loads(text) if file.suffix == ".json" else yaml.safe_load(text)
    except (OSError, UnicodeDecodeError, yaml.YAMLError, orjson.JSONDecodeError) as error:
        problems.append(Problem(f"cannot read: {error}", file.name))
        return []
    entries = document.get("clients") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        problems.append(Problem("the file must hold 'clients:', a list", file.name))
        return []
    return entries


def _client(entry: object, *, label: str, known: set[str], problems: list[Problem]) -> RegisteredClient | None:
    if not isinstance(entry, dict):
        problems.append(Problem("each client must be a mapping", label))
        return None
    client_id, facility = entry.get("client_id"), entry.get("facility")
    before = len(problems)
    if not isinstance(client_id, str) or not client_id.strip():
        problems.append(Problem("client_id is missing", f"{label}.client_id"))
    if not isinstance(facility, str) or facility not in known:
        problems.append(Problem(f"facility {facility!r} is not in hospitals/", f"{label}.facility"))
    try:
        client = facility_client(str(client_id), str(facility), entry.get("jwks"),
                                 scopes=str(entry.get("scopes", FACILITY_SCOPES)),
                                 break_glass=bool(entry.get("break_glass", True)))
    except InvalidInput as error:
        problems.append(Problem(error.message, f"{label}.{error.problems[0].location or 'jwks'}"))
        return None
    return client if len(problems) == before else None


def _check_jwks(jwks: object) -> None:
    keys = jwks.get("keys") if isinstance(jwks, dict) else None
    if not isinstance(keys, list) or not keys:
        raise InvalidInput("jwks must be a JSON Web Key Set with at least one key", location="jwks")
    for key in keys:
        if not isinstance(key, dict) or key.get("kty") not in KEY_TYPES or not key.get("kid"):
            raise InvalidInput("every key needs a kid and kty RSA or EC", location="jwks")
        if any(member in key for member in PRIVATE_MEMBERS):
            raise InvalidInput(f"key '{key['kid']}' holds private material; register the public key only",
                               location="jwks")
        if key["kty"] == "EC" and key.get("crv") != "P-384":
            raise InvalidInput(f"key '{key['kid']}' must be on curve P-384 (ES384)", location="jwks")
    try:
        KeySet.import_key_set(jwks)
    except (JoseError, ValueError, TypeError) as error:
        raise InvalidInput(f"jwks cannot be read: {error}", location="jwks") from error
