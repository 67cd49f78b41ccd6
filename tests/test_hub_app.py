"""The app's lifespan: while it serves, start-up's objects are out of the cyclic collector's sight."""

from __future__ import annotations

import gc

from fastapi.testclient import TestClient

from emr.config import Settings
from emr.hub.app import create_app


def test_start_up_objects_are_frozen_while_serving_and_thawed_after(sqlite_url):
    app = create_app(Settings(database_url=sqlite_url, auth_required=False))
    assert gc.get_freeze_count() == 0
    with TestClient(app) as client:
        assert gc.get_freeze_count() > 10_000
        assert client.get("/fhir/metadata").status_code == 200
    assert gc.get_freeze_count() == 0
    app.state.hub.engine.dispose()
