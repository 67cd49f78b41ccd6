"""Structural validation against the FHIR R4B models, and small builders of resources.

This module (with the rest of ``emr.fhir``) is the only place that imports
``fhir.resources``, and always the R4B release. Resources travel through the project
as plain JSON dicts; :func:`check_structure` asks the R4B model class whether a dict
is a well-formed resource of its ``resourceType`` and turns every pydantic finding
into a :class:`~emr.errors.Problem` with a FHIRPath-like location
(``Observation.code.coding[0].system``). It never raises on JSON-shaped input.

Model classes are looked up once per resource type and kept; importing this module
imports no model.
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache
from typing import Any

from emr.errors import InvalidInput, Problem, ProfileViolation
from emr.fhir.primitives import json_type_problems

_ABSTRACT = frozenset({"Resource", "DomainResource"})
_MAX_SHOWN = 80  # characters of an offending value quoted back in a message


def __getattr__(name: str) -> Any:
    # ``RESOURCE_TYPES`` is computed on first use: it imports every R4B model (~2 s).
    if name == "RESOURCE_TYPES":
        return resource_types()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@cache
def resource_types() -> frozenset[str]:
    """Every concrete R4B resource type name, read from ``fhir.resources.R4B``.

    Imports every model module on the first call (about two seconds); use
    :func:`model_class` to ask about one name cheaply.
    """
    import fhir.resources.R4B as r4b

    names = set()
    for info in pkgutil.iter_modules(r4b.__path__):
        module = importlib.import_module(f"{r4b.__name__}.{info.name}")
        for attr, value in vars(module).items():
            if attr.lower() == info.name and _is_concrete_resource(value):
                names.add(attr)
    return frozenset(names)


_classes: dict[str, type] = {}


def model_class(resource_type: object) -> type | None:
    """The R4B model class of a concrete resource type, or None for anything else."""
    if not isinstance(resource_type, str):
        return None
    found = _classes.get(resource_type)
    if found is not None:
        return found
    if not resource_type.isidentifier() or resource_type in _ABSTRACT:
        return None
    from fhir.resources.R4B import get_fhir_model_class

    try:
        klass = get_fhir_model_class(resource_type)
    except (ValueError, KeyError, AttributeError, ImportError):
        return None
    if not _is_concrete_resource(klass):
        return None
    _classes[resource_type] = klass  # only real resource types are kept: the dict stays bounded
    return klass


def _is_concrete_resource(value: object) -> bool:
    from fhir.resources.R4B.resource import Resource

    return isinstance(value, type) and issubclass(value, Resource) and value.__name__ not in _ABSTRACT


def type_problem(resource: object) -> Problem | None:
    """The one problem with a resource's ``resourceType``, if it has one."""
    if not isinstance(resource, dict):
        return Problem("a resource must be a JSON object", None, "invalid")
    resource_type = resource.get("resourceType")
    if resource_type is None:
        return Problem("resourceType is missing", "resourceType", "invalid")
    if not isinstance(resource_type, str):
        return Problem("resourceType must be a string", "resourceType", "invalid")
    if model_class(resource_type) is None:
        shown = _shorten(resource_type)
        return Problem(f"'{shown}' is not a FHIR R4B resource type", "resourceType", "not-supported")
    return None


def check_structure(resource: dict) -> list[Problem]:
    """Every structural problem the R4B model finds; an empty list when there is none."""
    problem = type_problem(resource)
    if problem is not None:
        return [problem]
    _, problems = _validate(resource)
    return problems


def _embedded_problems(resource: dict) -> list[Problem]:
    """Type problems of resources nested inside this one, which the models let through
    (``contained: [{}]`` validates) or trip over (an unknown type raises KeyError)."""
    problems = []
    stack = [(resource, resource["resourceType"])]
    while stack:
        current, path = stack.pop()
        for key, item_path in _embedded_items(current, path):
            problem = type_problem(key)
            if problem is not None:
                where = item_path if problem.location is None else f"{item_path}.{problem.location}"
                problems.append(Problem(problem.message, where, problem.code))
            else:
                stack.append((key, item_path))
    return problems


def _embedded_items(node: dict, path: str):
    """(resource, location) of each resource held directly by ``node`` (or by its parameters)."""
    for i, item in _enumerate(node.get("contained")):
        yield item, f"{path}.contained[{i}]"
    for i, entry in _enumerate(node.get("entry")):
        if isinstance(entry, dict):
            if "resource" in entry:
                yield entry["resource"], f"{path}.entry[{i}].resource"
            response = entry.get("response")
            if isinstance(response, dict) and "outcome" in response:
                yield response["outcome"], f"{path}.entry[{i}].response.outcome"
    params = [(f"{path}.parameter[{i}]", p) for i, p in _enumerate(node.get("parameter"))]
    while params:
        where, param = params.pop()
        if isinstance(param, dict):
            if "resource" in param:
                yield param["resource"], f"{where}.resource"
            params += [(f"{where}.part[{i}]", p) for i, p in _enumerate(param.get("part"))]


def _enumerate(value: object):
    return enumerate(value) if isinstance(value, list) else ()


def to_model(resource: dict) -> Any:
    """The ``fhir.resources`` R4B object for a resource dict.

    Raises :class:`InvalidInput` for a missing or unknown ``resourceType`` and
    :class:`ProfileViolation` (carrying every problem) when the model rejects it.
    Only structure is checked here; ``emr.fhir.validate_resource`` adds the profiles.
    """
    problem = type_problem(resource)
    if problem is not None:
        raise InvalidInput(problem.message, problems=[problem])
    model, problems = _validate(resource)
    if problems:
        raise ProfileViolation(f"{resource['resourceType']} is not a valid FHIR R4B resource", problems=problems)
    return model


def _validate(resource: dict) -> tuple[Any, list[Problem]]:
    """The model, or None and every problem found."""
    from pydantic import ValidationError

    resource_type = resource["resourceType"]
    klass = model_class(resource_type)
    try:
        embedded = _embedded_problems(resource)
    except RecursionError:
        return None, [_too_deep(resource_type)]
    try:
        model = klass.model_validate(resource)
    except ValidationError as exc:
        try:
            details = exc.errors(include_url=False, include_input=False)
        except Exception:  # noqa: BLE001 - a broken error report must not escape either
            details = []
        found = [_problem(resource_type, d) for d in details]
        return None, embedded + (found or [Problem(f"not a valid {resource_type}", resource_type, "structure")])
    except RecursionError:
        return None, embedded + [_too_deep(resource_type)]
    except Exception as exc:  # noqa: BLE001 - any JSON input must come back as problems
        # e.g. KeyError('R4.FooType') for an embedded resource of unknown type: already reported
        reason = Problem(f"not a readable {resource_type} ({type(exc).__name__})", resource_type, "structure")
        return None, embedded or [reason]
    if embedded:  # the models let ``contained: [{}]`` through
        return None, embedded
    coerced = json_type_problems(resource, klass)  # the models accept 0 for a date, "true" for a boolean
    if coerced:
        return None, coerced
    return model, []


def _too_deep(resource_type: str) -> Problem:
    return Problem("the resource is nested too deeply to read", resource_type, "structure")


_ISSUE_CODES = {
    "missing": "required",
    "model_field_validation.missing": "required",
    "extra_forbidden": "structure",
    "value_error": "value",
    "string_pattern_mismatch": "value",
    "string_too_long": "too-long",
}


def _problem(resource_type: str, detail: dict) -> Problem:
    message = " ".join(str(detail.get("msg", "invalid value")).split())
    message = message.removeprefix("Value error, ")
    code = _ISSUE_CODES.get(detail.get("type", ""), "structure")
    return Problem(message, fhir_path(resource_type, detail.get("loc", ())), code)


def fhir_path(root: str, loc: tuple) -> str:
    """``("code", "coding", 0, "system")`` → ``Observation.code.coding[0].system``."""
    path = root
    parts = list(loc)
    if parts and parts[-1] == "root":  # pydantic's name for a whole-value (root) validator
        parts.pop()
    for part in parts:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += "." + ("resourceType" if part == "resource_type" else str(part))
    return path


def _shorten(text: str) -> str:
    return text if len(text) <= _MAX_SHOWN else text[:_MAX_SHOWN] + "…"


# --- builders: small, valid resources as plain dicts -----------------------------------

_SEVERITIES = frozenset({"fatal", "error", "warning", "information"})


def operation_outcome(problems: list[Problem], *, severity: str = "error") -> dict:
    """An OperationOutcome with one issue per problem (an ``informational`` issue if none)."""
    if severity not in _SEVERITIES:
        raise ValueError(f"severity must be one of {sorted(_SEVERITIES)}")
    if not problems:
        issues = [{"severity": "information", "code": "informational", "diagnostics": "no problems found"}]
    else:
        issues = [_issue(p, severity) for p in problems]
    return {"resourceType": "OperationOutcome", "issue": issues}


def _issue(problem: Problem, severity: str) -> dict:
    issue: dict[str, Any] = {"severity": severity, "code": problem.code or "invalid"}
    if problem.message:
        issue["diagnostics"] = problem.message
    if problem.location:
        issue["expression"] = [problem.location]
    return issue


def bundle(
    type_: str,
    entries: list[dict],
    *,
    total: int | None = None,
    links: list[tuple[str, str]] | None = None,
) -> dict:
    """A Bundle of ``type_``. Each of ``entries`` is either a resource (it has a
    ``resourceType``; it is wrapped as ``{"resource": ...}``) or a ready entry dict
    (``fullUrl``, ``resource``, ``search``, ``request``, ``response``)."""
    result: dict[str, Any] = {"resourceType": "Bundle", "type": type_}
    if total is not None:
        result["total"] = total
    if links:
        result["link"] = [{"relation": relation, "url": url} for relation, url in links]
    if entries:
        result["entry"] = [{"resource": e} if "resourceType" in e else e for e in entries]
    return result


def parameters(parts: list[dict]) -> dict:
    """A Parameters resource; each part is a ready ``{"name": ..., "value[x]": ...}`` dict."""
    result: dict[str, Any] = {"resourceType": "Parameters"}
    if parts:
        result["parameter"] = list(parts)
    return result
