"""B4 simulation: ``national-pilot-2025`` end to end through an in-process hub.

Achieved: ``emr.sim.runner.simulate`` in a fresh process (so its peak memory is its
own): simulated patients per second and hub resources written per second. Ceiling:
serialising the same resources — read back from the run's hub database and parsed
beforehand — with orjson, the least any run that produces them must spend. Beside it,
checking alone: the facilities' resources of the run checked on one core, as the
run's hub (one process) must check each, turned into patients per second.
"""

from __future__ import annotations

import time
from pathlib import Path

import orjson
from sqlalchemy import select

from benchmarks.harness import Outcome, checking_rate, in_fresh_process, peak_rss_mb

SCENARIO = "national-pilot-2025"
TITLE = "B4 simulation"
SEED = 2025
HUB_BUILT = {"AuditEvent", "Person"}  # written by the hub itself, not checked like what facilities send
SIZES = {"smoke": 20, "small": 1_000, "medium": 10_000, "full": 100_000}  # simulated patients


def run(size: str, kind: str, workdir: Path) -> Outcome:
    outcome = Outcome(TITLE, size, kind)
    out = workdir / f"b4-{size}"
    child = in_fresh_process(simulate_once, str(out), SIZES[size], kind)
    contents = stored_resources(child["db"])
    ceiling = serialise_seconds(contents)
    resources = len(contents)
    outcome.add("patients/s", SIZES[size] / child["seconds"], "patients/s", SIZES[size] / ceiling)
    outcome.add("resources/s", resources / child["seconds"], "resources/s", resources / ceiling)
    outcome.add("peak memory", child["peak_mb"], "MB", target="<= 1 GB at 1 M people, flat as size grows")
    checked = [r for r in contents if r["resourceType"] not in HUB_BUILT]
    outcome.add("checking alone, one core", checking_rate(checked) * SIZES[size] / len(checked), "patients/s",
                target="bounds the run: its one hub process checks every resource the facilities send")
    outcome.notes.append(f"{SIZES[size]:,} patients, {resources:,} resources in the hub, "
                         f"{child['orders']:,} ordered tests, {child['seconds']:.0f} s")
    return outcome


def simulate_once(out: str, patients: int, kind: str) -> dict:
    """In a fresh process: run the scenario into a fresh SQLite hub in ``out``."""
    from emr.config import Settings
    from emr.sim.runner import SimulationRequest, simulate

    request = SimulationRequest(scenario=SCENARIO, seed=SEED, patients=patients, out=Path(out))
    started = time.perf_counter()
    summary = simulate(Settings(auth_required=False), request)  # a local measurement, as B1 and B2
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "peak_mb": peak_rss_mb(), "db": f"sqlite:///{Path(out) / 'hub.db'}",
            "orders": int(summary.get("tests_ordered", 0))}


def stored_resources(url: str) -> list[dict]:
    from emr.hub.db import ResourceRow, make_engine

    engine = make_engine(url)
    table = ResourceRow.__table__
    with engine.connect() as conn:
        contents = [orjson.loads(c) for c in conn.execute(select(table.c.content)).scalars()]
    engine.dispose()
    return contents


def serialise_seconds(resources: list[dict]) -> float:
    started = time.perf_counter()
    for resource in resources:
        orjson.dumps(resource)
    return time.perf_counter() - started
