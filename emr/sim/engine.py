"""Run a scenario: plan every journey, then play visits and results in time order against the hub.

At each visit a facility whose EMR is live registers the patient and asks
``$check-reuse`` for every ordered test; when the hub cannot be reached the tests are
performed (reason ``hub-unavailable``). A reusable result is accepted by the simulated
doctor with the scenario's probability (the decision is recorded at the hub as a
DetectedIssue); everything else is performed. The visit, and later its results, go
through the facility's outbox, which delivers them once the hub can be reached. Every ordered test becomes one ``OrderOutcome`` in the run record,
with the ground truth beside it (did this patient really have a result of this test
within its window?), so the reports can say why each repeat happened.

All randomness comes from streams seeded by (seed, purpose, citizen, visit): the
journeys, the values and the doctor's choices are the same with or without a hub.
"""

from __future__ import annotations

import random
from collections import Counter
from array import array
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from datetime import date, datetime, time, timedelta
from typing import BinaryIO

from emr.catalog import Facility, LabTest
from emr.fhir.dates import VIETNAM_TZ, to_fhir_instant
from emr.sim.clock import SimClock
from emr.sim.hospital import FacilityClient, HubAnswer, HubUnavailable
from emr.sim.journeys import Visit, plan_journey
from emr.sim.population import Citizen, PopulationTables, Roster, corrupt_registration, generate_population
from emr.sim.publishing import (
    PerformedTest, consent_entry, decision_entry, patient_entry, result_entries, visit_entries,
)
from emr.sim.record import OrderOutcome, OrderTally, RunRecord
from emr.sim.scenario import Scenario

SPECIMEN_DELAY = timedelta(minutes=20)  # order to specimen collection (assumption)


@dataclass
class World:
    """Everything a run needs, built by the caller."""

    scenario: Scenario
    facilities: dict[str, Facility]
    tests: dict[str, LabTest]
    tables: PopulationTables
    seed: int
    patients: int


class Arrivals(dict[str, datetime]):
    """Idempotency-Key → when the hub first had that message, as the network fills it in.

    Only keys being ``watch``-ed are kept: the results a later visit of the same citizen
    may ask about. Every other message (visits, a journey's last results) is let through
    unrecorded, so the ledger holds the people still on their way, not the whole run.
    """

    def __init__(self) -> None:
        super().__init__()
        self.watched: set[str] = set()

    def setdefault(self, key: str, default: datetime) -> datetime:  # type: ignore[override]
        return super().setdefault(key, default) if key in self.watched else default

    def watch(self, key: str) -> None:
        self.watched.add(key)

    def forget(self, key: str) -> None:
        self.watched.discard(key)
        self.pop(key, None)


@dataclass
class _State:
    world: World
    citizens: Sequence[Citizen]
    clients: dict[str, FacilityClient]
    record: RunRecord
    clock: SimClock
    delivered: Arrivals  # Idempotency-Key → when the hub first had it (from the network)
    # citizen → test → what was performed; dropped after the citizen's last visit, when
    # nothing can ask about it any more
    history: dict[int, dict[str, list[PerformedTest]]] = field(default_factory=dict)


def build_population(world: World) -> Roster:
    shares = {code: s.value for code, s in world.scenario.residents.items()}
    counts = apportion(world.patients, shares)
    return generate_population(random.Random(f"{world.seed}:population"), tables=world.tables,
                               residents=counts, on=world.scenario.period.start)


def apportion(total: int, shares: dict[str, float]) -> dict[str, int]:
    """Split ``total`` by ``shares`` with the largest-remainder method (sums exactly to total)."""
    weight = sum(shares.values())
    exact = {k: total * v / weight for k, v in sorted(shares.items())}
    counts = {k: int(v) for k, v in exact.items()}
    for k in sorted(exact, key=lambda k: (counts[k] - exact[k], k))[: total - sum(counts.values())]:
        counts[k] += 1
    return counts


def journey(world: World, citizens: Sequence[Citizen], index: int) -> list[Visit]:
    """One citizen's visits, from that citizen's own stream: the same whenever it is asked."""
    rng = random.Random(f"{world.seed}:journey:{index}")
    return plan_journey(rng, index=index, citizen=citizens[index], scenario=world.scenario,
                        facilities=world.facilities)


def visit_order(world: World, citizens: Sequence[Citizen]) -> array:
    """The run's visits as sorted 64-bit keys (minute, citizen, visit number), 8 bytes a visit.

    Visits are at whole minutes of clinic time (``journeys._clinic_time``), so the key
    sorts exactly as (time, citizen, number) and the visits themselves can be planned
    again one at a time when their turn comes, instead of being held for the whole run.
    """
    start = start_of(world)
    keys = [_pack(_minutes(v.at - start), v.citizen, v.number)
            for index in range(len(citizens)) for v in journey(world, citizens, index)]
    keys.sort()
    return array("q", keys)


def visits_in_order(world: World, citizens: Sequence[Citizen], order: array) -> Iterator[tuple[Visit, bool]]:
    """Each visit in ``order``, and whether it is the last of its citizen's journey to be played:
    the latest by (time, number), which is the highest number, as a journey's visits
    follow one another in time (``journeys._clinic_time_after``).
    """
    for key in order:
        citizen, number = (key >> _NUMBER_BITS) & _CITIZEN_MASK, key & _NUMBER_MASK
        visits = journey(world, citizens, citizen)
        yield visits[number], max(visits, key=lambda v: (v.at, v.number)).number == number


_NUMBER_BITS, _CITIZEN_BITS = 2, 30  # up to four visits a journey, a billion citizens
_NUMBER_MASK, _CITIZEN_MASK = (1 << _NUMBER_BITS) - 1, (1 << _CITIZEN_BITS) - 1


def _pack(minute: int, citizen: int, number: int) -> int:
    if not (0 <= minute < 1 << 31 and 0 <= citizen <= _CITIZEN_MASK and 0 <= number <= _NUMBER_MASK):
        raise ValueError(f"visit {citizen}:{number} at minute {minute} does not fit a visit key")
    return (minute << (_CITIZEN_BITS + _NUMBER_BITS)) | (citizen << _NUMBER_BITS) | number


def _minutes(span: timedelta) -> int:
    minutes, rest = divmod(span, timedelta(minutes=1))
    if rest:
        raise ValueError(f"a visit {span} after the start is not at a whole minute")
    return minutes


def start_of(world: World) -> datetime:
    """The simulated instant a run starts: midnight, Vietnam time, of the scenario's first day."""
    return datetime.combine(world.scenario.period.start, time(0), tzinfo=VIETNAM_TZ)


def run(world: World, *, clients: dict[str, FacilityClient], citizens: Sequence[Citizen], clock: SimClock,
        delivered: Arrivals, orders: BinaryIO,
        progress: Callable[[int, int], None] | None = None) -> RunRecord:
    """Play the run on ``clock``, writing each ordered test to ``orders`` as it happens.
    ``delivered`` is filled by the network as the hub receives Bundles; the run reads it
    as the ground truth of what had reached the hub."""
    record = RunRecord(world.scenario, world.seed, world.patients, tally=OrderTally(world.tests), sink=orders)
    state = _State(world, citizens, clients, record, clock, delivered)
    order = visit_order(world, citizens)
    visits = visits_in_order(world, citizens, order)
    clock.run(progress, arrivals=((v.at, partial(_visit, state, v, last)) for v, last in visits),
              expected=len(order))
    state.record.finish(facilities=world.facilities, emr_live=lambda code, day: emr_live(world, code, day),
                        go_live=lambda code: go_live(world, code), requests=sum(c.requests for c in clients.values()),
                        delivery=delivery_totals(clients))
    return state.record


def delivery_totals(clients: dict[str, FacilityClient]) -> dict:
    """What the outboxes sent and what the network did to it, summed over facilities."""
    totals: Counter = Counter()
    faults: Counter = Counter()
    backlog = 0
    for client in clients.values():
        if client.courier is not None:
            totals.update(client.courier.outbox.counts())
            backlog = max(backlog, client.courier.max_backlog)
        if client.link is not None:
            faults.update(client.link.counts)
    return {**{k: totals[k] for k in ("messages", "delivered", "pending", "dead", "attempts")},
            "max_backlog": backlog, "faults": dict(sorted(faults.items()))}


# ---------------------------------------------------------------- the rules of the world

def go_live(world: World, code: str) -> date | None:
    """The day the facility's EMR goes live in this scenario (None: not in its period or never)."""
    timeline = world.scenario.emr
    if timeline.mode == "none":
        return None
    if code in timeline.go_live:
        return timeline.go_live[code].value
    status = world.facilities[code].emr
    return status.go_live.value if status.go_live else None


def refuses_sharing(world: World, citizen: int) -> bool:
    """Whether this citizen refused cross-facility sharing (the scenario's opt-out rate, one draw each)."""
    opt_out = world.scenario.sharing_opt_out
    return opt_out is not None and random.Random(f"{world.seed}:consent:{citizen}").random() < opt_out.value


def emr_live(world: World, code: str, day: date) -> bool:
    started = go_live(world, code)
    return started is not None and started <= day


# ---------------------------------------------------------------- a visit

def _visit(state: _State, visit: Visit, last: bool = False) -> None:
    _play(state, visit)
    if last:
        _forget(state, visit.citizen)


def _forget(state: _State, citizen: int) -> None:
    """After a citizen's last visit: drop what only later visits of theirs could need."""
    for performed in state.history.pop(citizen, {}).values():
        for p in performed:
            if p.message:
                state.delivered.forget(p.message)
    for client in state.clients.values():
        client.forget(citizen)


def _play(state: _State, visit: Visit) -> None:
    world = state.world
    rng = random.Random(f"{world.seed}:visit:{visit.citizen}:{visit.number}")
    draws = {test: (rng.random(), rng.random(), rng.random(), rng.random()) for test in visit.tests}
    live = emr_live(world, visit.facility, visit.at.date())
    client = state.clients[visit.facility]
    citizen = state.citizens[visit.citizen]
    patient_ref, patient = patient_entry(client.patient(visit.citizen, _as_recorded(state, visit, citizen)))
    answers = _ask_hub(state, visit, citizen) if live else None
    performed: list[PerformedTest] = []
    decisions: list[dict] = []
    for test in visit.tests:
        answer = answers.get(test) if answers is not None else None
        outcome, entry = _order(state, visit, test, answer, draws[test], patient_ref)
        state.record.add(outcome)
        if entry:
            decisions.append(entry)
        if outcome.outcome == "performed":
            performed.append(_perform(state, visit, test, draws[test]))
    if live:
        consent = [consent_entry(visit, patient_ref)] if refuses_sharing(world, visit.citizen) else []
        client.publish(f"visit:{visit.citizen}:{visit.number}",
                       [patient] + consent + visit_entries(visit, patient_ref, performed, world.tests) + decisions)
    state.record.visit(visit)
    if performed:
        ready = max(p.ready for p in performed)
        state.clock.schedule(ready, lambda: _results_ready(state, visit, performed))


def _ask_hub(state: _State, visit: Visit, citizen: Citizen) -> dict[str, HubAnswer] | None:
    """Register the patient and ask about every ordered test; None when the hub cannot answer.
    A registration that fails is not lost: the visit's Bundle carries the Patient too."""
    client = state.clients[visit.facility]
    try:
        client.register(visit.citizen, _as_recorded(state, visit, citizen))
    except HubUnavailable:
        pass
    try:
        return client.check(citizen.national_id, list(visit.tests), visit.at) if visit.tests else {}
    except HubUnavailable:
        return None


def _as_recorded(state: _State, visit: Visit, citizen: Citizen) -> Citizen:
    """The citizen as this facility's clerk registered them (sometimes with a mistake)."""
    errors = state.world.scenario.registration_errors
    rng = random.Random(f"{state.world.seed}:registration:{visit.citizen}:{visit.facility}")
    if rng.random() >= errors.rate.value:
        return citizen
    kinds = sorted(errors.kinds.items())
    kind = rng.choices([k for k, _ in kinds], weights=[s.value for _, s in kinds], k=1)[0]
    return corrupt_registration(rng, citizen, kind)


def _order(state: _State, visit: Visit, test: str, answer: HubAnswer | None, draw: tuple[float, ...],
           patient_ref: str) -> tuple[OrderOutcome, dict | None]:
    world = state.world
    truth = _prior_truth(state, visit, test)
    base = dict(at=visit.at, citizen=visit.citizen, facility=visit.facility, visit_kind=visit.kind,
                test=test, prior_existed=truth[0], prior_published=truth[1])
    if answer is None:
        online = emr_live(world, visit.facility, visit.at.date())
        return OrderOutcome(**base, outcome="performed", hub_reason=None,
                            why="no-emr" if not online else "hub-unavailable"), None
    if answer.decision == "reuse":
        reused = draw[0] < world.scenario.doctor_accepts_reuse.value
        reason = None if reused else _override_reason(world.scenario, draw[1])
        entry = decision_entry(visit, patient_ref, answer.observation, test, reused=reused, reason=reason)
        why = None if reused else f"override:{reason}"
        return OrderOutcome(**base, outcome="reused" if reused else "performed", hub_reason=None, why=why), entry
    why = answer.reason
    if answer.reason == "no-prior-result" and truth[0]:
        why = "source-on-paper" if not truth[1] else "not-yet-published"
    return OrderOutcome(**base, outcome="performed", hub_reason=answer.reason, why=why), None


def _override_reason(scenario: Scenario, draw: float) -> str:
    reasons = sorted(scenario.override_reasons.items())
    total = sum(s.value for _, s in reasons)
    point = draw * total
    for code, share in reasons:
        point -= share.value
        if point < 0:
            return code
    return reasons[-1][0]


def _prior_truth(state: _State, visit: Visit, test: str) -> tuple[bool, bool]:
    """(a final result of this test existed within its window, and one of them was published)."""
    window = timedelta(hours=state.world.tests[test].validity_hours.value)
    prior = [p for p in state.history.get(visit.citizen, {}).get(test, [])
             if p.status == "final" and p.collected <= visit.at < p.collected + window]
    return bool(prior), any(_reached_hub_by(state, p, visit.at) for p in prior)


def _reached_hub_by(state: _State, performed: PerformedTest, at: datetime) -> bool:
    arrived = state.delivered.get(performed.message) if performed.message else None
    return arrived is not None and arrived <= at


def _perform(state: _State, visit: Visit, test: str, draw: tuple[float, ...]) -> PerformedTest:
    world = state.world
    spec = world.tests[test]
    collected = visit.at + SPECIMEN_DELAY
    ready = collected + timedelta(hours=spec.turnaround_hours.value)
    status = "preliminary" if draw[2] < world.scenario.preliminary_rate.value else "final"
    positive = spec.positive_rate is not None and draw[3] < spec.positive_rate.value
    done = PerformedTest(test=test, collected=collected, ready=ready, status=status, positive=positive,
                         value_draw=draw[3], facility=visit.facility)
    state.history.setdefault(visit.citizen, {}).setdefault(test, []).append(done)
    return done


def _results_ready(state: _State, visit: Visit, performed: list[PerformedTest]) -> None:
    """Publish a visit's results, through the outbox, when they are ready."""
    world = state.world
    at = state.clock.now
    if not emr_live(world, visit.facility, at.date()):
        return  # on paper: the results never reach the hub
    client = state.clients[visit.facility]
    recorded = _as_recorded(state, visit, state.citizens[visit.citizen])
    patient_ref, patient = patient_entry(client.patient(visit.citizen, recorded))
    key = f"results:{visit.citizen}:{visit.number}"
    message = client.idempotency_key(key)
    for p in performed:
        p.message = message
    if visit.citizen in state.history:
        state.delivered.watch(message)  # a later visit of theirs may ask whether it arrived
    client.publish(key, [patient] + result_entries(visit, patient_ref, performed, world.tests,
                                                   issued=to_fhir_instant(at)))
