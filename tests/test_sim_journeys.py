"""Journeys: a citizen's visits follow one another in time, at clinic hours, whatever the seed."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import datetime, time, timedelta
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from emr.config import Settings
from emr.fhir.dates import VIETNAM_TZ
from emr.sim.engine import World, build_population, journey
from emr.sim.journeys import OPENING_HOURS, _clinic_time_after
from emr.sim.runner import SimulationRequest, load_world
from emr.sim.scenario import Delay

WORLD = load_world(Settings(), SimulationRequest("national-pilot-2025", seed=0, patients=200, out=Path("unused")))
OPEN_MINUTES = (OPENING_HOURS[1] - OPENING_HOURS[0]) * 60


def _delay(low: float, high: float) -> Delay:
    note = "test: short delays, so that many referrals fall on the day of the visit that made them"
    return Delay.model_validate({k: {"value": v, "assumption": note}
                                 for k, v in (("low", low), ("mode", low), ("high", high))})


def _hasty(world: World, seed: int, high: float) -> World:
    scenario = world.scenario.model_copy(update={"referral_delay_days": _delay(0, high),
                                                 "back_referral_delay_days": _delay(0, high)})
    return replace(world, seed=seed, scenario=scenario)


def _in_opening_hours(moment: datetime) -> bool:
    local = moment.astimezone(VIETNAM_TZ)
    return time(OPENING_HOURS[0]) <= local.time() < time(OPENING_HOURS[1])


@given(seed=st.integers(0, 2 ** 32), high=st.sampled_from([0.0, 0.3, 1.0, 2.0]))
def test_each_persons_visits_are_in_strictly_increasing_time_order(seed, high):
    world = _hasty(WORLD, seed, high)
    citizens = build_population(world)
    journeys = [journey(world, citizens, index) for index in range(len(citizens))]
    assert any(len(visits) > 1 for visits in journeys)
    for visits in journeys:
        assert [v.number for v in visits] == list(range(len(visits)))
        assert all(earlier.at < later.at for earlier, later in zip(visits, visits[1:])), visits
        assert all(_in_opening_hours(v.at) for v in visits)


@given(day=st.integers(0, 365), minute=st.integers(0, OPEN_MINUTES - 1),
       delay=st.floats(0, 3), seed=st.integers(0, 2 ** 32))
def test_a_later_visit_is_on_the_day_of_its_delay_or_the_next_when_the_clinic_has_closed(day, minute, delay, seed):
    opens = datetime.combine(datetime(2025, 1, 1).date() + timedelta(days=day), time(OPENING_HOURS[0]),
                             tzinfo=VIETNAM_TZ)
    previous = opens + timedelta(minutes=minute)
    later = _clinic_time_after(random.Random(seed), previous, timedelta(days=delay))
    assert later > previous and _in_opening_hours(later)
    due = (previous + timedelta(days=delay)).date()
    closed = due == previous.date() and minute == OPEN_MINUTES - 1
    assert later.astimezone(VIETNAM_TZ).date() == due + timedelta(days=1 if closed else 0)

