"""The hub's CapabilityStatement, built from the same tables the hub runs on.

Search parameters come from ``searchparams.REGISTRY`` and operations from
``OPERATIONS``, so the statement cannot claim a parameter the hub does not index.
"""

from __future__ import annotations

from emr.hub.access import HUB_TYPES
from emr.hub.searchparams import REGISTRY, params_for

INTERACTIONS = ["read", "vread", "update", "delete", "history-instance", "create", "search-type"]
READ_INTERACTIONS = {"read", "vread", "history-instance", "search-type"}

# (name, definition canonical, resource type it is invoked on)
OPERATIONS: list[tuple[str, str, str]] = [
    ("ihe-pix", "https://profiles.ihe.net/ITI/PIXm/OperationDefinition/IHE.PIXm.pix", "Patient"),
]


def capability_statement(*, base_url: str, software_version: str, release_date: str,
                         token_url: str | None = None) -> dict:
    """``token_url`` when the hub requires SMART Backend Services tokens (declared as its security service)."""
    statement = {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": release_date,
        "kind": "instance",
        "software": {"name": "emr coordination hub", "version": software_version},
        "implementation": {"description": "Vietnam medical data coordination hub (simulated)", "url": base_url},
        "fhirVersion": "4.3.0",
        "format": ["application/fhir+json", "json"],
        "rest": [{
            "mode": "server",
            "documentation": "Patients are linked across facilities by the 12-digit personal identification number.",
            "interaction": [{"code": "transaction"}, {"code": "batch"}],
            "resource": [_resource(t) for t in sorted(REGISTRY)],
            "operation": [{"name": name, "definition": url} for name, url, _ in OPERATIONS],
        }],
    }
    if token_url:
        statement["rest"][0]["security"] = security(token_url)
    return statement


def security(token_url: str) -> dict:
    return {
        "cors": False,
        "service": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                                 "code": "SMART-on-FHIR", "display": "SMART-on-FHIR"}],
                     "text": "SMART Backend Services: OAuth 2.0 client credentials with a signed JWT assertion"}],
        "description": ("Every request needs a bearer token from the token endpoint (SMART Backend Services, "
                        "RS384 or ES384 client assertions, SMART v2 system scopes). A facility writes only what "
                        "it performed, authored or requested, and reads another facility's data about a patient "
                        "only with a treatment relationship and the patient's consent; X-Purpose-Of-Use: ETREAT "
                        "declares an emergency. Every access is recorded as an AuditEvent."),
        "extension": [{"url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
                       "extension": [{"url": "token", "valueUri": token_url}]}],
    }


def _resource(resource_type: str) -> dict:
    writable = resource_type not in HUB_TYPES  # the registry, person links, the audit trail
    entry = {
        "type": resource_type,
        "interaction": [{"code": code} for code in INTERACTIONS if writable or code in READ_INTERACTIONS],
        "versioning": "versioned-update",
        "readHistory": True,
        "updateCreate": writable,
        "conditionalCreate": writable,
        "conditionalUpdate": writable,
        "conditionalDelete": "not-supported",
        "searchParam": [
            {"name": p.name, "type": p.type, **({"documentation": p.doc} if p.doc else {})}
            for p in params_for(resource_type).values()
        ],
    }
    includes = [f"{resource_type}:{p.name}" for p in params_for(resource_type).values()
                if p.type == "reference"]
    if includes:
        entry["searchInclude"] = includes
    operations = [{"name": name, "definition": url} for name, url, on in OPERATIONS if on == resource_type]
    if operations:
        entry["operation"] = operations
    return entry
