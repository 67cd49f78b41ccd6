"""Schemathesis against the hub's own OpenAPI document: no 5xx, and every answer is one the document declares.

Requests are generated from the document (valid and invalid ones) and sent to the real
app in-process. The hub runs open: with tokens on, every generated request would stop
at the 401. The dashboard's pages, and the SMART discovery and token endpoints (OAuth,
not FHIR), are left to their own tests.
"""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import make_client

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
API = ("/fhir", "/cds-services")


def test_generated_requests_get_declared_answers_and_never_a_5xx(sqlite_url):
    client = make_client(sqlite_url, auth=False)
    schema = schemathesis.openapi.from_asgi("/openapi.json", client.app)
    operations = [found.ok() for found in schema.get_all_operations()]
    operations = [op for op in operations if op.path.startswith(API) and ".well-known" not in op.path]
    assert len(operations) >= 12, [op.path for op in operations]
    cases = st.one_of([op.as_strategy(generation_mode=mode) for op in operations for mode in GenerationMode])

    @settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
    @given(case=cases)
    def check(case: schemathesis.Case) -> None:
        case.call_and_validate(checks=CHECKS)

    try:
        check()
    finally:
        client.app.state.hub.engine.dispose()
