"""``emr simulate``: load a scenario and its world, start or reach a hub, run, write the record.

Each facility gets its own simulated network link to the hub (with the scenario's
outages and faults) and its own outbox, a SQLite file under ``<out>/outbox/``.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import httpx

from emr.catalog import load_facilities, load_tests
from emr.config import Settings
from emr.errors import DataFileError
from emr.reuse import OVERRIDE_REASONS
from emr.sim.clock import SimClock
from emr.sim.engine import World, build_population, run, start_of
from emr.sim.hospital import FacilityClient
from emr.sim.network import Forward, Link, LinkTransport
from emr.sim.outbox import Courier, Outbox
from emr.sim.population import load_population_tables
from emr.sim.record import summarise, write_run
from emr.sim.registry import PopulationRegistry
from emr.sim.scenario import cross_check, find_scenario, load_scenario


@dataclass(frozen=True)
class SimulationRequest:
    scenario: str
    seed: int
    patients: int | None
    out: Path
    db: str | None = None
    hub: str | None = None


def load_world(settings: Settings, request: SimulationRequest) -> World:
    path = find_scenario(request.scenario, settings.scenarios_dir)
    scenario = load_scenario(path)
    facilities = load_facilities(settings.hospitals_dir)
    tests = load_tests(settings.data_dir / "tests.yaml")
    problems = cross_check(scenario, label=f"scenarios/{path.name}", facilities=facilities, tests=tests,
                           override_codes=set(OVERRIDE_REASONS))
    if problems:
        raise DataFileError(f"{path.name} does not fit the registry and catalogue", problems=problems)
    tables = load_population_tables(settings.data_dir / "population.yaml")
    return World(scenario, facilities, tests, tables, request.seed, request.patients or scenario.default_patients)


def simulate(settings: Settings, request: SimulationRequest,
             progress: Callable[[int, int], None] | None = None) -> dict:
    """Run one scenario end to end; returns the summary (also written to ``request.out``)."""
    world = load_world(settings, request)
    citizens = build_population(world)
    registry = PopulationRegistry(citizens)
    clock = SimClock(start_of(world))
    delivered: dict[str, datetime] = {}
    with _hub_client(settings, request, registry) as http:
        clients = {code: _facility(world, code, forward=http.send, base_url=str(http.base_url), clock=clock,
                                   delivered=delivered, outbox_dir=request.out / "outbox")
                   for code in world.scenario.facilities}
        try:
            record = run(world, clients=clients, citizens=citizens, clock=clock, delivered=delivered,
                         progress=progress)
        finally:
            for client in clients.values():
                client.http.close()
                if client.courier:
                    client.courier.outbox.close()
    summary = summarise(record, world.tests)
    write_run(request.out, record, summary)
    return summary


def _facility(world: World, code: str, *, forward: Forward, base_url: str, clock: SimClock,
              delivered: dict[str, datetime], outbox_dir: Path) -> FacilityClient:
    """A facility's EMR: its network link to the hub and its outbox (a fresh file per run)."""
    link = Link(code, forward, clock, random.Random(f"{world.seed}:network:{code}"),
                outages=world.scenario.hub_outages, faults=world.scenario.network, delivered=delivered)
    client = FacilityClient(world.facilities[code], httpx.Client(base_url=base_url, transport=LinkTransport(link)),
                            link=link)
    client.courier = Courier(Outbox(_fresh_file(outbox_dir / f"{code}.db")), send=client.deliver, clock=clock,
                             rng=random.Random(f"{world.seed}:outbox:{code}"))
    return client


@contextmanager
def _hub_client(settings: Settings, request: SimulationRequest, registry: PopulationRegistry) -> Iterator[httpx.Client]:
    if request.hub:
        with httpx.Client(base_url=request.hub.rstrip("/") + "/", timeout=60) as http:
            yield http
        return
    from fastapi.testclient import TestClient

    from emr.hub.app import create_app

    request.out.mkdir(parents=True, exist_ok=True)
    url = request.db or _fresh_sqlite(request.out / "hub.db")
    hub_settings = settings.model_copy(update={"database_url": url, "base_url": "http://hub.local/fhir"})
    app = create_app(hub_settings, registry=registry)
    try:
        with TestClient(app, base_url="http://hub.local/fhir/") as http:
            yield http
    finally:
        app.state.hub.engine.dispose()


def _fresh_sqlite(path: Path) -> str:
    return f"sqlite:///{_fresh_file(path)}"


def _fresh_file(path: Path) -> Path:
    for leftover in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        leftover.unlink(missing_ok=True)
    return path

