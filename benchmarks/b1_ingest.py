"""B1 ingest: visit transaction Bundles posted over HTTP into a hub that already holds results.

The hub is preloaded through the bulk path (``emr import``), then served by uvicorn on
127.0.0.1 in its own process; client threads post 20-entry visit Bundles (encounter,
nine orders, nine results, a report — each a conditional create on the facility's
identifier, as the simulator sends them). Achieved: resources committed per second,
and the latency of one Bundle. Ceiling: the same Bundles parsed with orjson, their
references resolved, their index fields extracted and inserted with multi-row
statements into the same database (each rolled back, so the HTTP run finds the
database as it was).
"""

from __future__ import annotations

import random
import time
import uuid
from pathlib import Path

import orjson

from benchmarks.data import visit_bundle
from benchmarks.harness import Outcome, checking_rate, database, percentile, preload, served, shared_bound
from benchmarks.load import drive, warm_up

TITLE = "B1 ingest over HTTP"
SEED = 2025
SOURCE = "27001"
# size: (patients preloaded, with 9 results each; Bundles posted)
# full: 112,000 Patients, 1,008,000 Observations
SIZES = {"smoke": (20, 6), "small": (2_000, 120), "medium": (20_000, 200), "full": (112_000, 300)}
CLIENTS = 2


def run(size: str, kind: str, workdir: Path) -> Outcome:
    outcome = Outcome(TITLE, size, kind)
    patients, count = SIZES[size]
    with database(kind, workdir, "b1") as url:
        preload_seconds, stored = preload(url, workdir / f"b1-{size}.ndjson", patients, source=SOURCE, seed=SEED)
        bodies = bundles(patients, count + 1)
        ceiling = ceiling_seconds(url, bodies[1:])
        with served(url) as base:
            warm_up(base, "", bodies[0], times=1)
            http = drive(base, "", bodies[1:], clients=CLIENTS)
    entries = sum(len(orjson.loads(b)["entry"]) for b in bodies[1:])
    if http.failures:
        outcome.notes.append(f"{http.failures} Bundles failed; first: {http.first_failure}")
    ceiling_rate = entries / sum(ceiling)
    outcome.add("ingest", entries / http.elapsed, "resources/s", ceiling_rate,
                target=">= 5,000/s (SQLite)")
    outcome.add("Bundle latency p99", percentile(http.latencies, 99) * 1000, "ms", percentile(ceiling, 99) * 1000,
                higher_is_better=False, target="<= 250 ms per 20-entry Bundle")
    outcome.add("Bundle latency p50", percentile(http.latencies, 50) * 1000, "ms", percentile(ceiling, 50) * 1000,
                higher_is_better=False)
    resources = [e["resource"] for b in bodies[1:] for e in orjson.loads(b)["entry"]]
    checking = checking_rate(resources)
    outcome.add("checking alone, one core", checking, "resources/s", target="bounds ingest: every resource is checked")
    outcome.add("checking + the ceiling's work, one core", shared_bound([checking, ceiling_rate], 1),
                "resources/s", target="the most one hub process that checks and stores each resource can reach")
    outcome.notes.append(f"hub preloaded with {stored:,} resources ({patients:,} Patients, 9 results each) through "
                         f"the bulk path in {preload_seconds:.0f} s; {count} Bundles of {entries // count} entries "
                         f"from {CLIENTS} client threads")
    return outcome


def bundles(patients: int, count: int) -> list[bytes]:
    """``count`` visit Bundles for randomly chosen preloaded Patients, as the bytes a client sends."""
    from emr.hub.bulk import hub_id

    rng = random.Random(SEED)
    return [orjson.dumps(visit_bundle(rng, SOURCE, hub_id(SOURCE, "Patient", f"p{rng.randrange(patients)}"),
                                      f"bench-visit-{n}"))
            for n in range(count)]


def ceiling_seconds(url: str, bodies: list[bytes]) -> list[float]:
    """Per Bundle: parse, resolve references, extract index fields, pack, insert with multi-row statements."""
    from datetime import datetime, timezone

    from emr.hub.batchwrite import CachedResolver, insert_resources, ready
    from emr.hub.bundles import rewrite_references
    from emr.hub.db import make_engine
    from emr.hub.store import stamp

    engine = make_engine(url)
    now = datetime.now(timezone.utc)
    seconds = []
    for body in bodies:
        started = time.perf_counter()
        entries = orjson.loads(body)["entry"]
        mapping = {e["fullUrl"]: f"{e['resource']['resourceType']}/{uuid.uuid4()}" for e in entries}
        resources = []
        for entry in entries:
            resource = rewrite_references(entry["resource"], mapping)
            resource["id"] = mapping[entry["fullUrl"]].split("/")[1]
            stamp(resource, version=1, now=now)
            resources.append(ready(resource))
        with engine.connect() as conn:
            transaction = conn.begin()
            insert_resources(conn, resources, resolve=CachedResolver(conn))
            transaction.rollback()
        seconds.append(time.perf_counter() - started)
    engine.dispose()
    return seconds
