"""The simulator's streaming parts against simple models: fed-in visits, running totals, the loopback."""

from __future__ import annotations

import threading
from collections import Counter
from contextlib import asynccontextmanager
from datetime import datetime, timedelta, timezone

import httpx
from fastapi import FastAPI
from hypothesis import given
from hypothesis import strategies as st

from emr.catalog import load_tests
from emr.config import Settings
from emr.sim.clock import SimClock
from emr.sim.loopback import Loopback
from emr.sim.record import OrderOutcome, OrderTally

START = datetime(2025, 1, 1, tzinfo=timezone.utc)
# (minute of an arrival, delays after which it schedules follow-ups)
PLANS = st.lists(st.tuples(st.integers(0, 30), st.lists(st.integers(0, 10), max_size=3)), max_size=25)


def _play(plans: list[tuple[int, list[int]]], *, fed: bool) -> list[tuple[int, str]]:
    """The order things happen in, with the arrivals fed in or all scheduled up front."""
    clock = SimClock(START)
    log: list[tuple[int, str]] = []

    def arrival(i: int) -> None:
        log.append((_minute(clock), f"arrival {i}"))
        for j, delay in enumerate(plans[i][1]):
            clock.schedule(clock.now + timedelta(minutes=delay),
                           lambda i=i, j=j: log.append((_minute(clock), f"follow-up {i}.{j}")))

    ordered = sorted(range(len(plans)), key=lambda i: (plans[i][0], i))
    timed = [(START + timedelta(minutes=plans[i][0]), lambda i=i: arrival(i)) for i in ordered]
    if fed:
        clock.run(arrivals=timed, expected=len(timed))
    else:
        for at, action in timed:
            clock.schedule(at, action)
        clock.run()
    return log


def _minute(clock: SimClock) -> int:
    return int((clock.now - START).total_seconds() // 60)


@given(PLANS)
def test_fed_arrivals_play_exactly_as_if_scheduled_first(plans: list[tuple[int, list[int]]]) -> None:
    assert _play(plans, fed=True) == _play(plans, fed=False)


def _orders(draw: st.DrawFn) -> list[OrderOutcome]:
    tests = sorted(load_tests(Settings().data_dir / "tests.yaml"))
    rows = draw(st.lists(st.tuples(st.integers(0, 2), st.integers(0, 2), st.sampled_from(tests),
                                   st.sampled_from(["reused", "performed"]), st.booleans(),
                                   st.sampled_from([None, "expired", "no-emr"])), max_size=40))
    return [OrderOutcome(at=START + timedelta(minutes=m), citizen=c, facility="27001", visit_kind="local", test=t,
                         prior_existed=prior, prior_published=False, outcome=outcome, hub_reason=None, why=why)
            for m, c, t, outcome, prior, why in sorted(rows, key=lambda r: r[0])]


@given(st.composite(_orders)())
def test_running_totals_agree_with_counting_the_whole_list(orders: list[OrderOutcome]) -> None:
    _check_tally(orders)


def test_one_visit_avoids_one_blood_draw_however_many_tests_it_reuses() -> None:
    both = [OrderOutcome(at=START, citizen=7, facility="27001", visit_kind="local", test=test, prior_existed=True,
                         prior_published=True, outcome="reused", hub_reason=None, why=None)
            for test in ("2345-7", "4548-4")]  # glucose and HbA1c: two blood tests, one needle
    assert _check_tally(both).blood_draws_avoided == 1


def _check_tally(orders: list[OrderOutcome]) -> OrderTally:
    catalogue = load_tests(Settings().data_dir / "tests.yaml")
    tally = OrderTally(catalogue)
    for order in orders:
        tally.add(order)
    reused = [o for o in orders if o.outcome == "reused"]
    performed = [o for o in orders if o.outcome == "performed"]
    assert (tally.ordered, tally.reused, tally.performed) == (len(orders), len(reused), len(performed))
    assert tally.repeats_by_reason == Counter(o.why or "unknown" for o in performed if o.prior_existed)
    assert tally.blood_draws_avoided == len({(o.citizen, o.at) for o in reused if catalogue[o.test].blood_draw})
    assert tally.turnaround_hours_saved == sum(catalogue[o.test].turnaround_hours.value for o in reused)
    assert tally.vnd_saved == sum(catalogue[o.test].price_vnd.value for o in reused)
    return tally


def _app(events: list[str]) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_app: FastAPI):  # type: ignore[no-untyped-def]
        events.append("startup")
        yield
        events.append("shutdown")

    app = FastAPI(lifespan=lifespan)

    @app.post("/echo")
    def echo(body: dict) -> dict:  # a sync route: runs on a worker thread
        return {"echo": body, "thread": threading.get_ident()}

    @app.get("/fail")
    def fail() -> None:
        raise RuntimeError("boom")

    return app


def test_loopback_runs_the_lifespan_and_keeps_one_worker_thread() -> None:
    events: list[str] = []
    with httpx.Client(base_url="http://hub.local/", transport=Loopback(_app(events))) as http:
        assert events == ["startup"]
        answers = [http.post("echo", json={"n": n}).json() for n in range(5)]
        assert [a["echo"] for a in answers] == [{"n": n} for n in range(5)]
        assert len({a["thread"] for a in answers}) == 1
        try:
            http.get("fail")
            raise AssertionError("the app's exception should reach the caller")
        except RuntimeError as error:
            assert str(error) == "boom"
        assert http.post("echo", json={}).status_code == 200  # still serving after a failure
    assert events == ["startup", "shutdown"]


def test_a_journey_is_forgotten_only_after_its_last_visit_to_be_played(tmp_path) -> None:
    from emr.sim.engine import build_population, visit_order, visits_in_order
    from emr.sim.runner import SimulationRequest, load_world

    world = load_world(Settings(), SimulationRequest("national-pilot-2025", seed=2025, patients=2000, out=tmp_path))
    citizens = build_population(world)
    played = list(visits_in_order(world, citizens, visit_order(world, citizens)))
    last_played = {visit.citizen: visit for visit, _ in played}
    assert [visit for visit, last in played if last] == sorted(last_played.values(),
                                                               key=lambda v: (v.at, v.citizen, v.number))
    # a later visit is always after the one that made it, so the last played is the highest number
    assert all(v.number == max(o.number for o, _ in played if o.citizen == v.citizen) for v in last_played.values())
