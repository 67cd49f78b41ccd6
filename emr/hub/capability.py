"""The hub's CapabilityStatement, built from the same tables the hub runs on.

Search parameters come from ``searchparams.REGISTRY`` and operations from
``OPERATIONS``, so the statement cannot claim a parameter the hub does not index.
"""

from __future__ import annotations

from emr.hub.searchparams import REGISTRY, params_for

INTERACTIONS = ["read", "vread", "update", "delete", "history-instance", "create", "search-type"]

# (name, definition canonical, resource type it is invoked on)
OPERATIONS: list[tuple[str, str, str]] = [
    ("ihe-pix", "https://profiles.ihe.net/ITI/PIXm/OperationDefinition/IHE.PIXm.pix", "Patient"),
]


def capability_statement(*, base_url: str, software_version: str, release_date: str) -> dict:
    return {
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


def _resource(resource_type: str) -> dict:
    entry = {
        "type": resource_type,
        "interaction": [{"code": code} for code in INTERACTIONS],
        "versioning": "versioned-update",
        "readHistory": True,
        "updateCreate": True,
        "conditionalCreate": True,
        "conditionalUpdate": True,
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
