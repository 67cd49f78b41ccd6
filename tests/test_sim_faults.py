"""The shipped fault scenarios: after a hub outage or over a flaky network, every Bundle a
hospital wrote reached the hub exactly once, and the reuse totals equal the fault-free
run's with the same seed, except for decisions taken while the hub was down."""

from __future__ import annotations

import sqlite3
from collections import Counter
from datetime import datetime
from pathlib import Path

import orjson
import pytest

from emr.config import Settings
from emr.sim.outbox import Outbox
from emr.sim.runner import SimulationRequest, load_world, simulate

SETTINGS = Settings()
BASE = "bac-ninh-thai-nguyen-to-bach-mai"
SEED, PATIENTS = 3, 40
PUBLISHED_TYPES = ("Observation", "DiagnosticReport", "Encounter", "ServiceRequest", "DetectedIssue", "Patient")


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, tuple[dict, Path]]:
    root = tmp_path_factory.mktemp("faults")
    out = {}
    for name in (BASE, "hub-outage", "flaky-network"):
        request = SimulationRequest(scenario=name, seed=SEED, patients=PATIENTS, out=root / name)
        out[name] = (simulate(SETTINGS, request), request.out)
    return out


def orders(run_dir: Path) -> list[dict]:
    return [orjson.loads(line) for line in (run_dir / "orders.ndjson").read_bytes().splitlines()]


def written(run_dir: Path) -> Counter:
    """(type, identifier) of every resource the hospitals' outboxes delivered, with how many
    messages carried it (a Patient rides along with each of its facility's Bundles)."""
    seen: Counter = Counter()
    for path in sorted((run_dir / "outbox").glob("*.db")):
        outbox = Outbox(path)
        assert outbox.counts()["pending"] == 0 and outbox.counts()["dead"] == 0, path.name
        for _key, bundle in outbox.bodies():
            for entry in bundle["entry"]:
                seen[(entry["resource"]["resourceType"], entry["request"]["ifNoneExist"])] += 1
        outbox.close()
    return seen


def stored(run_dir: Path) -> Counter:
    """(type, identifier criteria) → how many live resources at the hub carry it."""
    with sqlite3.connect(run_dir / "hub.db") as db:
        rows = db.execute(
            "SELECT r.resource_type, t.system, t.code, COUNT(DISTINCT r.pk) FROM resource r "
            "JOIN ix_token t ON t.resource_pk = r.pk WHERE t.param = 'identifier' AND r.deleted = 0 "
            "GROUP BY r.resource_type, t.system, t.code").fetchall()
    return Counter({(rtype, f"identifier={system}|{code}"): n for rtype, system, code, n in rows})


def live_count(run_dir: Path, rtype: str) -> int:
    with sqlite3.connect(run_dir / "hub.db") as db:
        return db.execute("SELECT COUNT(*) FROM resource WHERE resource_type = ? AND deleted = 0",
                          (rtype,)).fetchone()[0]


@pytest.mark.parametrize("name", ["hub-outage", "flaky-network"])
def test_every_published_resource_is_at_the_hub_exactly_once(runs, name):
    summary, run_dir = runs[name]
    sent = written(run_dir)
    at_hub = stored(run_dir)
    assert sent, "the run published nothing"
    assert {key: at_hub[key] for key in sent} == {key: 1 for key in sent}
    for rtype in PUBLISHED_TYPES:
        assert live_count(run_dir, rtype) == sum(1 for t, _ in sent if t == rtype), rtype
    delivery = summary["delivery"]
    assert delivery["delivered"] == delivery["messages"] > 0
    assert delivery["attempts"] > delivery["messages"]  # the faults really forced resends


def test_the_flaky_network_changes_no_decision(runs):
    base, base_dir = runs[BASE]
    flaky, flaky_dir = runs["flaky-network"]
    faults = flaky["delivery"]["faults"]
    assert {"lost_request", "lost_answer", "delayed", "duplicated", "reordered"} <= set(faults)
    assert orders(flaky_dir) == orders(base_dir)
    ignore = {"scenario", "delivery", "hub_requests"}
    assert {k: v for k, v in flaky.items() if k not in ignore} == {k: v for k, v in base.items() if k not in ignore}
    results = {key for key in written(flaky_dir) if key[0] == "Observation"}
    assert results == {key for key in written(base_dir) if key[0] == "Observation"}


def test_an_outage_changes_only_the_decisions_taken_while_the_hub_was_down(runs):
    base, base_dir = runs[BASE]
    outage, outage_dir = runs["hub-outage"]
    windows = [(o.start, o.end) for o in load_world(SETTINGS, SimulationRequest(
        "hub-outage", seed=SEED, patients=PATIENTS, out=outage_dir)).scenario.hub_outages]
    before, after = orders(base_dir), orders(outage_dir)
    assert len(before) == len(after) == outage["tests_ordered"] == base["tests_ordered"]
    unavailable = 0
    for fault_free, faulty in zip(before, after, strict=True):
        during = any(start <= datetime.fromisoformat(faulty["at"]) < end for start, end in windows)
        assert (fault_free["citizen"], fault_free["at"], fault_free["test"]) == \
               (faulty["citizen"], faulty["at"], faulty["test"])
        if faulty["why"] == "hub-unavailable":
            assert during, faulty
            unavailable += 1
        if not during:
            assert faulty == fault_free
    assert unavailable == outage["performed_by_reason"]["hub-unavailable"] > 0
    assert outage["tests_reused"] <= base["tests_reused"]
    assert outage["delivery"]["faults"]["outage"] > 0 and outage["delivery"]["max_backlog"] > 1
