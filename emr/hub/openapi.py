"""What the hub's OpenAPI document says about its routes: FHIR JSON in, FHIR JSON out.

The routes read and write raw JSON (``Request`` in, ``Response`` out), so FastAPI
cannot infer their bodies or answers. The fragments below declare them, so a client
generator or a schema-driven tester (the test suite runs Schemathesis against this
document) sees the media type, the body each route takes and the OperationOutcome
every 4xx carries. They describe the JSON envelope only; the R4B models and the
project's profiles are the full rules.
"""

from __future__ import annotations

from typing import Any

from fastapi.responses import Response

from emr.hub.searchparams import REGISTRY

FHIR_JSON = "application/fhir+json"
FORM = "application/x-www-form-urlencoded"

RESOURCE = {"type": "object", "required": ["resourceType"],
            "properties": {"resourceType": {"type": "string"}, "id": {"type": "string"}}}
OPERATION_OUTCOME = {
    "type": "object", "required": ["resourceType", "issue"],
    "properties": {
        "resourceType": {"const": "OperationOutcome"},
        "issue": {"type": "array", "minItems": 1, "items": {
            "type": "object", "required": ["severity", "code"],
            "properties": {"severity": {"type": "string"}, "code": {"type": "string"},
                           "diagnostics": {"type": "string"}}}},
    },
}
BUNDLE = {"type": "object", "required": ["resourceType", "type"],
          "properties": {"resourceType": {"const": "Bundle"}, "type": {"type": "string"},
                         "total": {"type": "integer", "minimum": 0},
                         "entry": {"type": "array", "items": {"type": "object"}},
                         "link": {"type": "array", "items": {"type": "object"}}}}
CDS_CARDS = {"type": "object", "required": ["cards"], "properties": {"cards": {"type": "array"}}}
CDS_DISCOVERY = {"type": "object", "required": ["services"], "properties": {"services": {"type": "array"}}}
CDS_REQUEST = {"type": "object", "required": ["hook", "hookInstance", "context"],
               "properties": {"hook": {"type": "string"}, "hookInstance": {"type": "string"},
                              "context": {"type": "object"}}}
PARAMETERS = {"type": "object", "required": ["resourceType"],
              "properties": {"resourceType": {"const": "Parameters"},
                             "parameter": {"type": "array", "items": {"type": "object"}}}}


class FhirJSONResponse(Response):
    """Declares ``application/fhir+json`` as the routes' media type (they build their own Response)."""

    media_type = FHIR_JSON


def resource_types() -> list[str]:
    """The types the hub indexes for search, offered as examples of ``{resource_type}``."""
    return sorted(REGISTRY)


def fhir_body(schema: dict, *, media: str = FHIR_JSON) -> dict[str, Any]:
    """``openapi_extra`` for a route that reads a required body of ``schema``."""
    return {"requestBody": {"required": True, "content": {media: {"schema": schema}}}}


def answers(ok: dict | None, *, status: int = 200, created: bool = False,
            media: str = FHIR_JSON) -> dict[int | str, dict]:
    """The ``responses`` of a route: ``ok`` (or no body) on success, an OperationOutcome on any 4xx."""
    declared: dict[int | str, dict] = {status: _answer("Success", ok, media)}
    if created:
        declared[201] = _answer("Created", ok, media)
    declared["4XX"] = _answer("The request was refused; the OperationOutcome says why", OPERATION_OUTCOME, FHIR_JSON)
    return declared


def _answer(description: str, schema: dict | None, media: str) -> dict:
    if schema is None:
        return {"description": description}
    return {"description": description, "content": {media: {"schema": schema}}}


SEARCH_QUERY = [
    {"name": "_count", "in": "query", "required": False, "schema": {"type": "integer", "minimum": 0}},
    {"name": "identifier", "in": "query", "required": False, "schema": {"type": "string"},
     "description": "system|value"},
    {"name": "date", "in": "query", "required": False, "schema": {"type": "string"},
     "description": "A FHIR date with an optional prefix (ge, le, gt, lt, eq, ne, sa, eb)"},
    {"name": "patient.identifier", "in": "query", "required": False, "schema": {"type": "string"},
     "description": "Chain search: every facility's records of one national ID"},
]
