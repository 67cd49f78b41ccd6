"""The audit queue: finished requests' entries committed together, each request after its own commit."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import orjson
import pytest
from sqlalchemy import event, func, select

from emr.config import Settings
from emr.hub.app import build_hub
from emr.hub.audit import OPERATION_SYSTEM, AuditTrail, Touched, audit_event
from emr.hub.db import ResourceRow
from emr.identity import FACILITY_CODE_SYSTEM, NATIONAL_ID_SYSTEM
from tests.conftest import FixedClock, make_client
from tests.test_hub_reuse import HBA1C, HDR, T0, fresh_nid, hook_request, publish, register

R = ResourceRow.__table__
NOW = datetime(2025, 10, 1, 8, 0, tzinfo=timezone.utc)
NID = "001085012345"


def hub_at(url: str):
    return build_hub(Settings(database_url=url, auth_required=False), clock=lambda: NOW)


@pytest.fixture
def hub(sqlite_url):
    hub = hub_at(sqlite_url)
    yield hub
    hub.engine.dispose()


def entry(n: int) -> dict:
    trail = AuditTrail(principal=None, interaction="operation", operation="check-reuse")
    return audit_event(trail, Touched(NID, {f"p{n}"}), interaction="operation", outcome="0", description=None,
                       now=NOW)


def stored_entries(hub) -> int:
    with hub.engine.connect() as conn:
        return conn.execute(select(func.count()).where(R.c.resource_type == "AuditEvent")).scalar_one()


def commits_seen(hub) -> list[int]:
    """The ``synchronous`` level of each commit from now on (2 FULL, 1 NORMAL)."""
    levels: list[int] = []

    @event.listens_for(hub.engine, "commit")
    def _level(conn) -> None:  # noqa: ANN001
        levels.append(conn.connection.driver_connection.execute("PRAGMA synchronous").fetchone()[0])

    return levels


def record_together(hub, batches: list[list[dict]], *, durable: bool = False) -> list[Exception | None]:
    """Record each batch from a thread of its own while a commit is under way, so they queue."""
    outcomes: list[Exception | None] = [None] * len(batches)
    queued = threading.Barrier(len(batches) + 1)

    def record(i: int) -> None:
        queued.wait()
        try:
            hub.audit_queue.record(batches[i], now=NOW, durable=durable)
        except Exception as exc:  # noqa: BLE001 - what the request would turn into a 500
            outcomes[i] = exc

    threads = [threading.Thread(target=record, args=(i,)) for i in range(len(batches))]
    with hub.audit_queue._writer:  # a commit under way
        for thread in threads:
            thread.start()
        queued.wait()
        while len(hub.audit_queue._queued) < len(batches):
            threading.Event().wait(0.001)
    for thread in threads:
        thread.join(timeout=30)
    return outcomes


def test_requests_finishing_together_share_one_commit(hub):
    levels = commits_seen(hub)
    outcomes = record_together(hub, [[entry(i)] for i in range(6)])
    assert outcomes == [None] * 6
    assert stored_entries(hub) == 6
    assert levels == [1]  # one commit for six requests, not fsynced


def test_a_refusals_entry_is_fsynced_and_shares_it_with_the_others(hub):
    levels = commits_seen(hub)
    hub.audit_queue.record([entry(0)], now=NOW, durable=True)
    assert record_together(hub, [[entry(1)], [entry(2)]], durable=True) == [None, None]
    assert levels == [2, 2]
    assert stored_entries(hub) == 3


def test_one_bad_entry_fails_its_own_request_only(hub):
    bad = {**entry(1), "entity": {"not", "json"}}  # a set: cannot be serialised
    outcomes = record_together(hub, [[entry(0)], [bad], [entry(2)]])
    assert outcomes[0] is None and outcomes[2] is None
    assert isinstance(outcomes[1], TypeError)
    assert stored_entries(hub) == 2


def test_pooled_connections_keep_full_sync_and_background_checkpoints(hub):
    for i in range(3):
        hub.audit_queue.record([entry(i)], now=NOW, durable=False)
    with hub.engine.connect() as conn:
        driver = conn.connection.driver_connection
        assert driver.execute("PRAGMA synchronous").fetchone()[0] == 2
        assert driver.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0  # emr.hub.walcheckpoint


def test_reads_alone_do_not_grow_the_wal_without_bound(hub, sqlite_url):
    wal = Path(sqlite_url.removeprefix("sqlite:///") + "-wal")
    for i in range(200):
        hub.audit_queue.record([entry(i)], now=NOW, durable=False)
    for thread in [t for t in threading.enumerate() if t.name == "emr-wal-checkpoint"]:
        thread.join(timeout=30)
    # Unchecked, 200 entries of ~40 pages each would leave a WAL of ~30 MiB; checked, about 6 MiB.
    assert wal.stat().st_size < 8 * 1024 * 1024


def test_postgres_commits_reads_entries_without_waiting_for_the_disk_in_that_transaction_only(postgres_url):
    hub = hub_at(postgres_url)
    settings: list[str] = []

    @event.listens_for(hub.engine, "commit")
    def _setting(conn) -> None:  # noqa: ANN001
        settings.append(conn.exec_driver_sql("SHOW synchronous_commit").scalar())

    hub.audit_queue.record([entry(0)], now=NOW, durable=False)
    hub.audit_queue.record([entry(1)], now=NOW, durable=True)
    assert settings == ["off", "on"]
    with hub.engine.connect() as conn:
        assert conn.exec_driver_sql("SHOW synchronous_commit").scalar() == "on"
    assert stored_entries(hub) == 2
    hub.engine.dispose()


def operations_audited(client) -> list[str]:
    hub = client.app.state.hub
    with hub.engine.connect() as conn:
        events = [orjson.loads(c) for c in conn.execute(
            select(R.c.content).where(R.c.resource_type == "AuditEvent").order_by(R.c.pk)).scalars()]
    return [s["code"] for e in events for s in e["subtype"] if s["system"] == OPERATION_SYSTEM]


def test_an_order_time_question_is_audited_once_by_the_thread_that_answered_it(sqlite_url):
    clock = FixedClock(T0 + timedelta(days=12))
    with make_client(sqlite_url, clock) as client:
        nid = fresh_nid()
        local = register(client, "27001", nid)
        central = register(client, "01001", nid)
        publish(client, local, "27001", HBA1C, T0)
        hook = client.post("/cds-services/reuse-check-order-select", headers={"Content-Type": "application/json"},
                           content=orjson.dumps(hook_request(central, [("sr-1", HBA1C)])))
        question = {"resourceType": "Parameters", "parameter": [
            {"name": "patient", "valueIdentifier": {"system": NATIONAL_ID_SYSTEM, "value": nid}},
            {"name": "facility", "valueIdentifier": {"system": FACILITY_CODE_SYSTEM, "value": "01001"}},
            {"name": "code", "valueCoding": {"system": "http://loinc.org", "code": HBA1C}}]}
        check = client.post("/fhir/$check-reuse", content=orjson.dumps(question), headers=HDR)
        assert hook.status_code == check.status_code == 200
        assert len(hook.json()["cards"]) == 1
        assert operations_audited(client) == ["cds-reuse-check-order-select", "check-reuse"]
