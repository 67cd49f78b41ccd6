"""The search parameters the hub supports, and how their values are pulled out of a resource.

The table below is the whole truth about searching: the hub indexes exactly these
paths, the search parser accepts exactly these names, and the CapabilityStatement
lists exactly these. Paths are dotted element names; a list anywhere along the path
is walked element by element, and ``effective[x]``-style choices are spelled out.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from functools import lru_cache
from types import MappingProxyType
from typing import Literal

from emr.fhir.dates import Interval, parse_interval, period_interval

ParamType = Literal["token", "string", "date", "reference"]


@dataclass(frozen=True)
class SearchParam:
    name: str
    type: ParamType
    paths: tuple[str, ...]
    targets: tuple[str, ...] = ()
    doc: str = ""
    stored: str = ""  # the name its index rows are kept under (see ``params_for``)


def _p(name: str, type_: ParamType, *paths: str, targets: tuple[str, ...] = (), doc: str = "") -> SearchParam:
    return SearchParam(name, type_, tuple(paths), targets, doc)


_SUBJECT = ("Patient",)
_ORG = ("Organization",)
_EFFECTIVE = ("effectiveDateTime", "effectivePeriod", "effectiveInstant")

_COMMON = (
    _p("_id", "token", "id", doc="Logical id"),
    _p("_lastUpdated", "date", "meta.lastUpdated", doc="When the hub last changed the resource"),
)

_RESULTS = (
    _p("identifier", "token", "identifier"),
    _p("patient", "reference", "subject", targets=_SUBJECT, doc="The patient the result is about"),
    _p("subject", "reference", "subject", targets=_SUBJECT),
    _p("code", "token", "code"),
    _p("category", "token", "category"),
    _p("date", "date", *_EFFECTIVE, doc="Specimen collection time (effective[x])"),
    _p("status", "token", "status"),
    _p("performer", "reference", "performer", targets=_ORG + ("Practitioner",)),
    _p("based-on", "reference", "basedOn", targets=("ServiceRequest",)),
    _p("encounter", "reference", "encounter", targets=("Encounter",)),
)

REGISTRY: dict[str, tuple[SearchParam, ...]] = {
    "Patient": (
        _p("identifier", "token", "identifier", doc="Any identifier; the national ID links facilities"),
        _p("family", "string", "name.family"),
        _p("given", "string", "name.given"),
        _p("name", "string", "name.family", "name.given", "name.text"),
        _p("birthdate", "date", "birthDate"),
        _p("gender", "token", "gender"),
        _p("organization", "reference", "managingOrganization", targets=_ORG),
    ),
    "Organization": (
        _p("identifier", "token", "identifier", doc="Facility code (Decision 384/QĐ-BYT)"),
        _p("name", "string", "name", "alias"),
    ),
    "Person": (
        _p("identifier", "token", "identifier"),
        _p("link", "reference", "link.target", targets=("Patient",)),
        _p("patient", "reference", "link.target", targets=("Patient",)),
    ),
    "Observation": _RESULTS,
    "DiagnosticReport": _RESULTS + (_p("result", "reference", "result", targets=("Observation",)),),
    "Encounter": (
        _p("identifier", "token", "identifier"),
        _p("patient", "reference", "subject", targets=_SUBJECT),
        _p("subject", "reference", "subject", targets=_SUBJECT),
        _p("status", "token", "status"),
        _p("date", "date", "period"),
        _p("service-provider", "reference", "serviceProvider", targets=_ORG),
        _p("based-on", "reference", "basedOn", targets=("ServiceRequest",)),
    ),
    "ServiceRequest": (
        _p("identifier", "token", "identifier"),
        _p("patient", "reference", "subject", targets=_SUBJECT),
        _p("subject", "reference", "subject", targets=_SUBJECT),
        _p("status", "token", "status"),
        _p("intent", "token", "intent"),
        _p("code", "token", "code"),
        _p("authored", "date", "authoredOn"),
        _p("requester", "reference", "requester", targets=_ORG + ("Practitioner",)),
        _p("performer", "reference", "performer", targets=_ORG + ("Practitioner",)),
        _p("based-on", "reference", "basedOn", targets=("ServiceRequest",)),
        _p("encounter", "reference", "encounter", targets=("Encounter",)),
    ),
    "Task": (
        _p("identifier", "token", "identifier"),
        _p("patient", "reference", "for", targets=_SUBJECT),
        _p("subject", "reference", "for", targets=_SUBJECT),
        _p("status", "token", "status"),
        _p("requester", "reference", "requester", targets=_ORG + ("Practitioner",)),
        _p("performer", "reference", "owner", targets=_ORG + ("Practitioner",),
           doc="The facility asked to do the task (Task.owner)"),
        _p("owner", "reference", "owner", targets=_ORG + ("Practitioner",)),
        _p("based-on", "reference", "basedOn", targets=("ServiceRequest",)),
        _p("focus", "reference", "focus", targets=("ServiceRequest",)),
        _p("authored-on", "date", "authoredOn"),
    ),
    "DetectedIssue": (
        _p("identifier", "token", "identifier"),
        _p("patient", "reference", "patient", targets=_SUBJECT),
        _p("code", "token", "code"),
        _p("identified", "date", "identifiedDateTime"),
        _p("implicated", "reference", "implicated", targets=("Observation", "ServiceRequest")),
        _p("author", "reference", "author", targets=_ORG + ("Practitioner",)),
        _p("mitigation", "token", "mitigation.action",
           doc="What was done about the issue (mitigation.action): for a reuse decision, reused or repeated "
               "and the doctor's override reason; not a standard FHIR parameter"),
    ),
    "Consent": (
        _p("identifier", "token", "identifier"),
        _p("patient", "reference", "patient", targets=_SUBJECT),
        _p("status", "token", "status"),
        _p("category", "token", "category"),
        _p("date", "date", "dateTime"),
        _p("organization", "reference", "organization", targets=_ORG),
        _p("provision-type", "token", "provision.type",
           doc="deny or permit (provision.type): deny refuses sharing with other facilities; not a standard "
               "FHIR parameter"),
    ),
    "AuditEvent": (
        _p("patient", "reference", "entity.what", targets=_SUBJECT,
           doc="The patient whose data was accessed (entity.what); patient.identifier finds every access "
               "to a person by national ID"),
        _p("entity", "reference", "entity.what", targets=_SUBJECT + ("Observation", "DiagnosticReport")),
        _p("agent", "reference", "agent.who", targets=_ORG),
        _p("date", "date", "recorded"),
        _p("action", "token", "action"),
        _p("outcome", "token", "outcome"),
        _p("subtype", "token", "subtype"),
        _p("type", "token", "type"),
        _p("purpose", "token", "purposeOfEvent", "agent.purposeOfUse",
           doc="Purpose of use: TREAT, or ETREAT/BTG for an emergency (break-glass) access"),
    ),
}


@lru_cache(maxsize=64)
def params_for(resource_type: str) -> Mapping[str, SearchParam]:
    """Every search parameter of ``resource_type``, by name (common ones included).

    Two parameters that read the same paths with the same targets (an Observation's
    ``patient`` and ``subject``) would index the same values twice, so their rows are
    kept once, under the name listed first; ``stored`` says which name that is.
    """
    out: dict[str, SearchParam] = {}
    first: dict[tuple, str] = {}
    for p in _COMMON + REGISTRY.get(resource_type, ()):
        out[p.name] = replace(p, stored=first.setdefault((p.type, p.paths, p.targets), p.name))
    return MappingProxyType(out)


# ---------------------------------------------------------------- extraction

@dataclass(frozen=True)
class Extracted:
    tokens: list[tuple[str, str, str]]          # (param, system, code)
    strings: list[tuple[str, str, str]]         # (param, normalised, raw)
    dates: list[tuple[str, Interval]]           # (param, interval)
    references: list[tuple[str, str, str]]      # (param, target type, target id)
    logical_references: list[tuple[str, str, str, str]]  # (param, target type, system, value)


def extract(resource: dict) -> Extracted:
    """All index entries for one resource, per the registry (``_id`` has none: a search on it
    reads the resource row's own id)."""
    out = Extracted([], [], [], [], [])
    for param in params_for(resource.get("resourceType", "")).values():
        if param.name == "_id" or param.stored != param.name:
            continue
        for path in param.paths:
            for value in walk(resource, path):
                _collect(out, param, path, value)
    return out


def walk(node: object, path: str) -> Iterator[object]:
    """Every value at a dotted ``path`` below ``node``, walking lists."""
    if isinstance(node, list):
        for item in node:
            yield from walk(item, path)
        return
    if not path:
        if node is not None:
            yield node
        return
    if not isinstance(node, dict):
        return
    head, _, rest = path.partition(".")
    if head in node:
        yield from walk(node[head], rest)


def _collect(out: Extracted, param: SearchParam, path: str, value: object) -> None:
    if param.type == "token":
        out.tokens.extend((param.name, s, c) for s, c in _tokens(value))
    elif param.type == "string" and isinstance(value, str):
        out.strings.append((param.name, normalise(value)[:255], value[:255]))
    elif param.type == "date":
        interval = _interval(value, path)
        if interval is not None:
            out.dates.append((param.name, interval))
    elif param.type == "reference" and isinstance(value, dict):
        _reference(out, param, value)


def _tokens(value: object) -> Iterator[tuple[str, str]]:
    if isinstance(value, str | bool):
        yield "", str(value).lower() if isinstance(value, bool) else value
    elif isinstance(value, dict):
        if "coding" in value:
            for coding in value.get("coding") or []:
                yield from _tokens(coding)
        elif "code" in value and isinstance(value["code"], str):
            yield value.get("system") or "", value["code"]
        elif "value" in value and isinstance(value["value"], str):
            yield value.get("system") or "", value["value"]


def _interval(value: object, path: str) -> Interval | None:
    try:
        if isinstance(value, dict):
            return period_interval(value)
        if isinstance(value, str):
            return parse_interval(value)
    except Exception:  # noqa: BLE001 - an unparseable date is simply not indexed
        return None
    return None


def _reference(out: Extracted, param: SearchParam, value: dict) -> None:
    """A reference is indexed under ``param`` only when it points to one of the param's
    target types: an AuditEvent's ``patient`` is the ``entity.what`` that is a Patient."""
    ref = value.get("reference")
    if isinstance(ref, str) and "/" in ref and not ref.startswith(("urn:", "#")):
        target_type, target_id = _literal_target(ref)
        if _aims_at(param, target_type):
            out.references.append((param.name, target_type, target_id))
        return
    identifier = value.get("identifier")
    if isinstance(identifier, dict) and identifier.get("value"):
        target_type = value.get("type") or (param.targets[0] if param.targets else "")
        if _aims_at(param, target_type):
            out.logical_references.append(
                (param.name, target_type, identifier.get("system") or "", identifier["value"]))


def _literal_target(ref: str) -> tuple[str, str]:
    """(type, id) of a relative or absolute reference, versioned (``…/_history/2``) or not."""
    parts = ref.rstrip("/").split("/")
    if len(parts) >= 4 and parts[-2] == "_history":
        parts = parts[:-2]
    return parts[-2], parts[-1]


def _aims_at(param: SearchParam, target_type: str) -> bool:
    return not param.targets or target_type in param.targets


def normalise(text: str) -> str:
    """Case- and accent-insensitive form used by string search: 'Nguyễn Đức' → 'nguyen duc'."""
    text = text.replace("đ", "d").replace("Đ", "D")
    stripped = "".join(ch for ch in unicodedata.normalize("NFD", text) if not unicodedata.combining(ch))
    return " ".join(stripped.lower().split())
