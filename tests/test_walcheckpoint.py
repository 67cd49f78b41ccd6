"""Background WAL checkpoints: data writes keep the log bounded without checkpointing inside a request."""

from __future__ import annotations

import threading
from pathlib import Path

import orjson

from emr.fhir.builders import patient
from emr.hub.walcheckpoint import CHECKPOINT_EVERY
from emr.identity import mrn_system
from tests.conftest import make_client

HDR = {"Content-Type": "application/fhir+json"}


def _register(client, n: int) -> str:
    body = patient(facility_code="27001", mrn=f"WAL-{n}", national_id=None, family="Lê", given="Văn Tư",
                   gender="male", birth_date="1980-01-01")
    response = client.put(f"/fhir/Patient?identifier={mrn_system('27001')}|WAL-{n}", content=orjson.dumps(body),
                          headers=HDR)
    assert response.status_code == 201, response.text
    return response.json()["id"]


def test_many_writes_keep_the_wal_bounded_and_every_write_readable(sqlite_url):
    wal = Path(sqlite_url.removeprefix("sqlite:///") + "-wal")
    with make_client(sqlite_url, auth=False) as client:
        ids = [_register(client, n) for n in range(CHECKPOINT_EVERY * 30)]
        with client.app.state.hub.engine.connect() as conn:
            assert conn.connection.driver_connection.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
        for thread in [t for t in threading.enumerate() if t.name == "emr-wal-checkpoint"]:
            thread.join(timeout=30)
        # 300 write transactions of ~40 pages would leave a log of ~45 MiB without checkpoints.
        assert wal.stat().st_size < 12 * 1024 * 1024
    with make_client(sqlite_url, auth=False) as reopened:
        assert all(reopened.get(f"/fhir/Patient/{rid}").status_code == 200 for rid in ids[::37])
        assert reopened.get("/fhir/Patient?_summary=count").json()["total"] == len(ids)
