"""Background WAL checkpoints: data writes keep the log bounded without checkpointing inside a request."""

from __future__ import annotations

import threading
from datetime import datetime, timezone
from pathlib import Path

import orjson
import pytest

from emr.config import Settings
from emr.fhir.builders import patient
from emr.hub import access
from emr.hub.app import build_hub
from emr.hub.db import write_transaction
from emr.hub.walcheckpoint import CHECKPOINT_EVERY, WAL_SIZE_LIMIT, Checkpointer
from emr.identity import mrn_system
from tests.conftest import make_client

HDR = {"Content-Type": "application/fhir+json"}
NOW = datetime(2025, 10, 1, 8, 0, tzinfo=timezone.utc)


def _patient(mrn: str) -> dict:
    return patient(facility_code="27001", mrn=mrn, national_id=None, family="Lê", given="Văn Tư", gender="male",
                   birth_date="1980-01-01")


def _register(client, n: int) -> str:
    response = client.put(f"/fhir/Patient?identifier={mrn_system('27001')}|WAL-{n}",
                          content=orjson.dumps(_patient(f"WAL-{n}")), headers=HDR)
    assert response.status_code == 201, response.text
    return response.json()["id"]


def _create(hub, mrn: str) -> None:
    """One write transaction through the hub's own write path, as a create request makes it."""
    with write_transaction(hub.engine) as conn, access.as_hub():
        hub.store.create(conn, _patient(mrn), now=NOW)


def _wal(sqlite_url: str) -> Path:
    return Path(sqlite_url.removeprefix("sqlite:///") + "-wal")


def _join_checkpoints() -> None:
    for thread in [t for t in threading.enumerate() if t.name == "emr-wal-checkpoint"]:
        thread.join(timeout=30)


@pytest.fixture
def hub(sqlite_url):
    hub = build_hub(Settings(database_url=sqlite_url, auth_required=False))
    yield hub
    hub.engine.dispose()


def test_many_writes_keep_the_wal_bounded_and_every_write_readable(sqlite_url):
    with make_client(sqlite_url, auth=False) as client:
        ids = [_register(client, n) for n in range(CHECKPOINT_EVERY * 30)]
        with client.app.state.hub.engine.connect() as conn:
            assert conn.connection.driver_connection.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
        _join_checkpoints()
        # 300 write transactions of ~40 pages would leave a log of ~45 MiB without checkpoints.
        assert _wal(sqlite_url).stat().st_size < 8 * 1024 * 1024
    with make_client(sqlite_url, auth=False) as reopened:
        assert all(reopened.get(f"/fhir/Patient/{rid}").status_code == 200 for rid in ids[::37])
        assert reopened.get("/fhir/Patient?_summary=count").json()["total"] == len(ids)


def test_back_to_back_writes_keep_the_wal_bounded(hub, sqlite_url):
    """Writes with no pause between them never leave a PASSIVE checkpoint a moment when it has
    copied the whole log, so the log starts over only when the checkpointer makes it."""
    largest = 0
    for n in range(500):
        _create(hub, f"B2B-{n}")
        largest = max(largest, _wal(sqlite_url).stat().st_size)
    _join_checkpoints()
    # With PASSIVE checkpoints alone these 500 writes left a log of 76 MiB; now about 5.5 MiB.
    assert largest < 8 * 1024 * 1024


def test_a_log_file_left_large_is_cut_back_once_the_log_starts_over(hub, sqlite_url):
    with write_transaction(hub.engine) as conn:  # an import's worth of pages in one commit
        conn.exec_driver_sql("CREATE TABLE scratch (b BLOB)")
        conn.exec_driver_sql("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 24) "
                             "INSERT INTO scratch SELECT randomblob(1048576) FROM n")
    assert _wal(sqlite_url).stat().st_size > 3 * WAL_SIZE_LIMIT
    for n in range(CHECKPOINT_EVERY * 10):
        _create(hub, f"CUT-{n}")
    assert _wal(sqlite_url).stat().st_size <= WAL_SIZE_LIMIT


def test_a_reader_still_in_the_log_holds_no_writer_back(hub, monkeypatch):
    """The log cannot start over while a reader's snapshot is in it, so writers are not held back for it."""
    restarts = []
    monkeypatch.setattr(Checkpointer, "_restart", lambda self, conn: restarts.append(conn))
    _create(hub, "READER-0")
    with hub.engine.connect() as reader, reader.begin():
        reader.exec_driver_sql("SELECT count(*) FROM resource").scalar_one()  # its snapshot starts here
        for n in range(1, CHECKPOINT_EVERY * 8):
            _create(hub, f"READER-{n}")
        _join_checkpoints()
    assert restarts == []
