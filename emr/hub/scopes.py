"""SMART v2 system scopes: parse them, intersect what was asked with what is allowed, check one interaction.

A scope names a resource type (or ``*``) and the interactions it allows, as letters
in the order ``c r u d s`` (create, read, update, delete, search):
``system/Observation.cruds``, ``system/Patient.rs``, ``system/*.rs``. SMART v1 forms
(``.read``, ``.write``, ``.*``) are read as their v2 equivalents. Scopes with
query parameters (``system/Observation.rs?category=…``) are not supported and are
never granted. Nothing here touches HTTP or a database.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from emr.errors import InvalidInput

LETTERS = "cruds"
_V1 = {"read": "rs", "write": "cud", "*": "cruds"}
_SCOPE = re.compile(r"^system/(\*|[A-Z][A-Za-z]{1,63})\.([a-z*]+)$")
Interaction = str  # one of LETTERS


@dataclass(frozen=True, order=True)
class Scope:
    resource_type: str  # a FHIR type, or "*"
    letters: str  # a non-empty subsequence of "cruds"

    def __str__(self) -> str:
        return f"system/{self.resource_type}.{self.letters}"

    def allows(self, resource_type: str, interaction: Interaction) -> bool:
        return self.resource_type in ("*", resource_type) and interaction in self.letters


def parse_scope(text: str) -> Scope:
    """One scope; ``InvalidInput`` naming the problem when it is not a system scope this hub grants."""
    match = _SCOPE.match(text)
    if match is None:
        raise InvalidInput(f"'{text}' is not a SMART system scope such as system/Observation.rs", location="scope")
    resource_type, access = match.groups()
    letters = _V1.get(access, access)
    if not letters or any(ch not in LETTERS for ch in letters) or letters != _ordered(set(letters)):
        raise InvalidInput(f"'{text}': the interactions must be letters of 'cruds' in that order", location="scope")
    return Scope(resource_type, letters)


def parse_scopes(text: str) -> tuple[Scope, ...]:
    """Every scope in a space-separated list. Kinds this hub does not grant — ``openid``,
    ``patient/…``, scopes narrowed by query parameters — are dropped."""
    return tuple(parse_scope(part) for part in text.split() if part.startswith("system/") and "?" not in part)


def grant(requested: tuple[Scope, ...], allowed: tuple[Scope, ...]) -> tuple[Scope, ...]:
    """What may be granted: each requested scope narrowed to what an allowed scope permits."""
    granted: dict[str, set[str]] = {}
    for asked in requested:
        for permitted in allowed:
            if asked.resource_type not in ("*", permitted.resource_type) and permitted.resource_type != "*":
                continue
            resource_type = permitted.resource_type if asked.resource_type == "*" else asked.resource_type
            letters = set(asked.letters) & set(permitted.letters)
            if letters:
                granted.setdefault(resource_type, set()).update(letters)
    return tuple(sorted(Scope(t, _ordered(letters)) for t, letters in granted.items()))


def allows(scopes: tuple[Scope, ...], resource_type: str, interaction: Interaction) -> bool:
    return any(scope.allows(resource_type, interaction) for scope in scopes)


def format_scopes(scopes: tuple[Scope, ...]) -> str:
    return " ".join(str(scope) for scope in scopes)


def _ordered(letters: set[str]) -> str:
    return "".join(ch for ch in LETTERS if ch in letters)
