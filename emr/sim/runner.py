"""``emr simulate``: load a scenario and its world, start or reach a hub, run, write the record.

Each facility gets its own simulated network link to the hub (with the scenario's
outages and faults) and its own outbox, a SQLite file under ``<out>/outbox/``. Each
authenticates as a SMART Backend Services client, ``sim-<code>``, with a key pair
derived from the run's seed: the in-process hub registers exactly those clients and
runs on the simulated clock, so tokens expire and are renewed in simulated time and
the same seed still gives the same run. A hub reached with ``--hub`` must have the
run's clients registered (``sim-<code>``, keys from ``seeded_key(seed, code)``), or run
``--no-auth``.
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
from emr.credentials import ClientKey, SmartAuth, seeded_key, token_url_for
from emr.errors import DataFileError
from emr.hub.clients import facility_client, registry_of
from emr.reuse import OVERRIDE_REASONS
from emr.sim.clock import SimClock
from emr.sim.engine import Arrivals, World, build_population, run, start_of
from emr.sim.hospital import FacilityClient
from emr.sim.loopback import Loopback
from emr.sim.network import Forward, Link, LinkTransport
from emr.sim.outbox import Courier, Outbox
from emr.sim.population import load_population_tables
from emr.sim.record import orders_path, summarise, write_run
from emr.sim.registry import PopulationRegistry
from emr.sim.scenario import cross_check, find_scenario, load_scenario

SIM_SCOPES = "system/*.cruds"  # the hub grants what a facility's registration allows


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
    delivered = Arrivals()
    keys = {code: seeded_key(world.seed, code) for code in world.scenario.facilities}
    with _hub_client(settings, request, registry, clock=clock, keys=keys) as (http, auth_for):
        clients = {code: _facility(world, code, forward=http.send, base_url=str(http.base_url), clock=clock,
                                   delivered=delivered, outbox_dir=request.out / "outbox", auth=auth_for(code))
                   for code in world.scenario.facilities}
        try:
            request.out.mkdir(parents=True, exist_ok=True)
            with orders_path(request.out).open("wb") as orders:
                record = run(world, clients=clients, citizens=citizens, clock=clock, delivered=delivered,
                             orders=orders, progress=progress)
        finally:
            for client in clients.values():
                client.http.close()
                if client.courier:
                    client.courier.outbox.close()
    summary = summarise(record)
    write_run(request.out, summary)
    return summary


def _facility(world: World, code: str, *, forward: Forward, base_url: str, clock: SimClock,
              delivered: dict[str, datetime], outbox_dir: Path, auth: SmartAuth | None) -> FacilityClient:
    """A facility's EMR: its network link to the hub, its credentials and its outbox (a fresh file per run)."""
    link = Link(code, forward, clock, random.Random(f"{world.seed}:network:{code}"),
                outages=world.scenario.hub_outages, faults=world.scenario.network, delivered=delivered)
    http = httpx.Client(base_url=base_url, transport=LinkTransport(link), auth=auth)
    client = FacilityClient(world.facilities[code], http, link=link)
    client.courier = Courier(Outbox(_fresh_file(outbox_dir / f"{code}.db")), send=client.deliver, clock=clock,
                             rng=random.Random(f"{world.seed}:outbox:{code}"))
    return client


AuthFor = Callable[[str], SmartAuth | None]


@contextmanager
def _hub_client(settings: Settings, request: SimulationRequest, registry: PopulationRegistry, *,
                clock: SimClock, keys: dict[str, ClientKey]) -> Iterator[tuple[httpx.Client, AuthFor]]:
    """The connection to the hub, and each facility's credentials for it (None: the hub asks for none)."""
    if request.hub:
        base = request.hub.rstrip("/")
        with httpx.Client(base_url=base + "/", timeout=60) as http:
            open_hub = http.get(".well-known/smart-configuration").status_code == 404
            yield http, lambda code: None if open_hub else _auth(code, keys[code], base, _wall_clock())
        return
    from emr.hub.app import create_app

    request.out.mkdir(parents=True, exist_ok=True)
    url = request.db or _fresh_sqlite(request.out / "hub.db")
    base = "http://hub.local/fhir"
    hub_settings = settings.model_copy(update={"database_url": url, "base_url": base})
    clients = registry_of(facility_client(client_id(code), code, key.jwks()) for code, key in keys.items())
    hub_clock = _reading(clock)
    app = create_app(hub_settings, registry=registry, clients=clients, clock=hub_clock)
    try:
        with httpx.Client(base_url=base + "/", transport=Loopback(app), follow_redirects=True) as http:
            yield http, lambda code: _auth(code, keys[code], base, hub_clock)
    finally:
        app.state.hub.engine.dispose()


def client_id(code: str) -> str:
    """The SMART client id of a simulated facility's EMR."""
    return f"sim-{code}"


def _auth(code: str, key: ClientKey, base: str, clock: Callable[[], datetime]) -> SmartAuth:
    return SmartAuth(client_id=client_id(code), key=key, token_url=token_url_for(base), scope=SIM_SCOPES,
                     clock=clock)


def _reading(clock: SimClock) -> Callable[[], datetime]:
    return lambda: clock.now


def _wall_clock() -> Callable[[], datetime]:
    from emr.hub.app import wall_clock  # a hub elsewhere runs on real time

    return wall_clock


def _fresh_sqlite(path: Path) -> str:
    return f"sqlite:///{_fresh_file(path)}"


def _fresh_file(path: Path) -> Path:
    for leftover in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        leftover.unlink(missing_ok=True)
    return path

