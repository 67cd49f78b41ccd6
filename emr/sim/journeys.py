"""Patient journeys: who goes where, when, for what, and which tests each visit orders.

A journey is planned once per citizen from that citizen's own random stream, before
any hub is asked anything, so the same journeys run in the world with the hub and in
the counterfactual world without it: "avoided" is measured on identical visits.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import Literal

from emr.catalog import Facility
from emr.fhir.dates import VIETNAM_TZ
from emr.sim.population import Citizen
from emr.sim.scenario import Condition, Delay, Scenario

VisitKind = Literal["local", "referral", "back-referral"]
OPENING_HOURS = (7, 16)  # outpatient clinics take patients 07:00–16:00 local time (assumption)


@dataclass(frozen=True)
class Visit:
    citizen: int  # index into the population
    number: int  # 0 for the first visit of the journey
    at: datetime
    facility: str
    kind: VisitKind
    condition: str
    tests: tuple[str, ...]
    refers_to: str | None  # the facility this visit refers the patient on to, if any


def plan_journey(rng: random.Random, *, index: int, citizen: Citizen, scenario: Scenario,
                 facilities: dict[str, Facility]) -> list[Visit]:
    """The visits of one citizen's journey, in time order (empty if no facility serves them)."""
    local = _local_facility(rng, citizen, scenario, facilities)
    if local is None:
        return []
    condition = _weighted(rng, [(c, c.share.value) for c in scenario.conditions])
    first_at = _first_visit(rng, scenario)
    target = _referral_target(local, condition, scenario, facilities)
    refer = target is not None and rng.random() < condition.referral_probability.value
    visits = [Visit(index, 0, first_at, local.code, "local", condition.id,
                    _available(condition.local_tests, local), target if refer else None)]
    if not refer:
        return visits
    up_at = _clinic_time_after(rng, first_at, timedelta(days=_triangular(rng, scenario.referral_delay_days)))
    visits.append(Visit(index, 1, up_at, target, "referral", condition.id,
                        _available(condition.referral_tests, facilities[target]), None))
    if condition.follow_up_tests and rng.random() < condition.back_referral_probability.value:
        back_at = _clinic_time_after(rng, up_at, timedelta(days=_triangular(rng, scenario.back_referral_delay_days)))
        visits.append(Visit(index, 2, back_at, local.code, "back-referral", condition.id,
                            _available(condition.follow_up_tests, local), None))
    return [v for v in visits if v.at.date() <= scenario.period.end]


def _local_facility(rng: random.Random, citizen: Citizen, scenario: Scenario,
                    facilities: dict[str, Facility]) -> Facility | None:
    """A non-central facility of the citizen's province, weighted by its outpatient volume."""
    options = [facilities[c] for c in scenario.facilities
               if facilities[c].province_code == citizen.home_province and facilities[c].kind != "central"]
    if not options:
        return None
    return _weighted(rng, [(f, f.daily_outpatients.value) for f in options])


def _referral_target(local: Facility, condition: Condition, scenario: Scenario,
                     facilities: dict[str, Facility]) -> str | None:
    """Follow the referral chain one step, or up to a central hospital when the condition needs one."""
    current = local
    for _ in range(3):
        targets = scenario.referral_targets.get(current.code) or current.referral_targets
        targets = [t for t in targets if t in scenario.facilities]
        if not targets:
            return None if current is local else current.code
        current = facilities[targets[0]]
        if condition.refer_to == "next" or current.kind == "central":
            return current.code
    return current.code


def _available(tests: tuple[str, ...], facility: Facility) -> tuple[str, ...]:
    return tuple(t for t in tests if t in facility.tests)


def _first_visit(rng: random.Random, scenario: Scenario) -> datetime:
    days = (scenario.period.end - scenario.period.start).days + 1
    day = scenario.period.start + timedelta(days=rng.randrange(days))
    return _clinic_time(rng, datetime.combine(day, time(0), tzinfo=VIETNAM_TZ))


def _clinic_time(rng: random.Random, moment: datetime) -> datetime:
    """The same day (Vietnam time) at a random minute of opening hours, in UTC."""
    return _clinic_minute(rng, moment.astimezone(VIETNAM_TZ).date(), first=0)


def _clinic_time_after(rng: random.Random, previous: datetime, delay: timedelta) -> datetime:
    """A visit ``delay`` after ``previous`` (a clinic time), always strictly later.

    The delay picks the day. On the same day the patient is seen later in that day's
    opening hours; when the clinic closes before a later minute is free, the next day.
    """
    previous_local = previous.astimezone(VIETNAM_TZ)
    day: date = (previous + delay).astimezone(VIETNAM_TZ).date()
    if day > previous_local.date():
        return _clinic_minute(rng, day, first=0)
    opens, closes = OPENING_HOURS
    first = (previous_local.hour - opens) * 60 + previous_local.minute + 1
    if first >= (closes - opens) * 60:
        return _clinic_minute(rng, day + timedelta(days=1), first=0)
    return _clinic_minute(rng, day, first=first)


def _clinic_minute(rng: random.Random, local_day: date, *, first: int) -> datetime:
    """A random minute of ``local_day``'s opening hours from minute ``first`` on, in UTC."""
    opens, closes = OPENING_HOURS
    minute = rng.randrange(first, (closes - opens) * 60)
    start = datetime.combine(local_day, time(opens), tzinfo=VIETNAM_TZ) + timedelta(minutes=minute)
    return start.astimezone(timezone.utc)


def _triangular(rng: random.Random, delay: Delay) -> float:
    return rng.triangular(delay.low.value, delay.high.value, delay.mode.value)


def _weighted(rng: random.Random, options):  # type: ignore[no-untyped-def]
    items, weights = zip(*options, strict=True)
    return rng.choices(items, weights=weights, k=1)[0]
