"""FHIR R4B for the project: the only package that imports ``fhir.resources`` (R4B).

Resources are plain JSON dicts everywhere else. ``check_structure`` asks the R4B model;
``check_profile`` adds the project's value checks; ``validate_resource`` runs both.
"""

from __future__ import annotations

from typing import Any

from emr.errors import InvalidInput, ProfileViolation
from emr.fhir.narrative import narrative_problems
from emr.fhir.profiles import LOINC_SYSTEM, UCUM_SYSTEM, check_profile
from emr.fhir.structure import (
    bundle,
    check_structure,
    model_class,
    operation_outcome,
    parameters,
    resource_types,
    to_model,
    type_problem,
)


def __getattr__(name: str) -> Any:
    # Computed on first use (it imports every R4B model); see structure.resource_types.
    if name == "RESOURCE_TYPES":
        return resource_types()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def validate_resource(resource: dict) -> None:
    """Raise unless ``resource`` is a well-formed R4B resource that meets the project's profiles.

    ``InvalidInput`` when ``resourceType`` is missing or unknown; ``ProfileViolation``
    carrying every structure and profile problem otherwise. A profile problem at a
    location the structure check already reported is left out as a duplicate.
    """
    problem = type_problem(resource)
    if problem is not None:
        raise InvalidInput(problem.message, problems=[problem])
    problems = check_structure(resource)
    seen = {p.location for p in problems}
    problems += [p for p in check_profile(resource) if p.location not in seen]
    problems += narrative_problems(resource)
    if problems:
        raise ProfileViolation(f"{resource['resourceType']} does not meet the profile", problems=problems)


__all__ = [
    "LOINC_SYSTEM",
    "RESOURCE_TYPES",
    "UCUM_SYSTEM",
    "bundle",
    "check_profile",
    "check_structure",
    "model_class",
    "operation_outcome",
    "parameters",
    "resource_types",
    "to_model",
    "validate_resource",
]
