"""The hospital outbox and the simulated network, on their own: order, retries, backoff, faults."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from emr.sim.clock import SimClock
from emr.sim.network import IDEMPOTENCY_KEY, Link, LinkTransport
from emr.sim.outbox import Attempt, Backoff, Courier, Message, Outbox
from emr.sim.scenario import NetworkFaults, Outage

START = datetime(2025, 10, 1, 1, 0, tzinfo=timezone.utc)


class FlakyHub:
    """A send function that fails while ``down`` and remembers what it accepted, in order."""

    def __init__(self, clock: SimClock) -> None:
        self.clock = clock
        self.down_until: datetime | None = None
        self.accepted: list[str] = []
        self.tries: list[tuple[datetime, str]] = []
        self.refuse: set[str] = set()
        self.retry_after: timedelta | None = None

    def __call__(self, message: Message) -> Attempt:
        self.tries.append((self.clock.now, message.key))
        if message.key in self.refuse:
            return Attempt("rejected", "422: not a valid Bundle")
        if self.down_until and self.clock.now < self.down_until:
            return Attempt("retry", "ConnectError", self.retry_after)
        self.accepted.append(message.key)
        return Attempt("delivered")


def courier(tmp_path, clock: SimClock, hub: FlakyHub, seed: int = 1) -> Courier:
    return Courier(Outbox(tmp_path / "27001.db"), send=hub, clock=clock, rng=random.Random(seed))


def test_messages_wait_out_an_outage_and_drain_in_order(tmp_path):
    clock = SimClock(START)
    hub = FlakyHub(clock)
    hub.down_until = START + timedelta(hours=6)
    c = courier(tmp_path, clock, hub)
    for i in range(5):
        clock.schedule(START + timedelta(minutes=10 * i), lambda i=i: c.publish(f"m{i}", {"n": i}))
    clock.run()
    assert hub.accepted == ["m0", "m1", "m2", "m3", "m4"]
    drained = hub.tries[-5:]  # after recovery the whole backlog goes in one pass, oldest first
    assert [key for _, key in drained] == hub.accepted and all(at >= hub.down_until for at, _ in drained)
    assert c.outbox.counts() == {"messages": 5, "delivered": 5, "pending": 0, "dead": 0,
                                 "attempts": len(hub.tries)}
    assert c.max_backlog == 5
    tried_first = [at for at, key in hub.tries if key == "m0"]
    gaps = [b - a for a, b in zip(tried_first, tried_first[1:])]
    assert gaps and all(gap <= Backoff().cap for gap in gaps)
    assert tried_first[-1] - hub.down_until <= Backoff().cap  # back within one capped wait


def test_the_same_key_is_written_once(tmp_path):
    clock = SimClock(START)
    hub = FlakyHub(clock)
    c = courier(tmp_path, clock, hub)
    c.publish("results:1:0", {"a": 1})
    c.publish("results:1:0", {"a": 1})
    assert hub.accepted == ["results:1:0"]
    assert c.outbox.counts()["messages"] == 1


def test_a_refused_message_is_parked_and_the_next_goes_on(tmp_path):
    clock = SimClock(START)
    hub = FlakyHub(clock)
    hub.refuse = {"bad"}
    c = courier(tmp_path, clock, hub)
    for key in ("a", "bad", "b"):
        c.publish(key, {})
    assert hub.accepted == ["a", "b"]
    counts = c.outbox.counts()
    assert counts["dead"] == 1 and counts["delivered"] == 2
    assert [key for key, _ in c.outbox.bodies("dead")] == ["bad"]


def test_retry_after_is_honoured(tmp_path):
    clock = SimClock(START)
    hub = FlakyHub(clock)
    hub.down_until = START + timedelta(seconds=1)
    hub.retry_after = timedelta(minutes=20)
    c = courier(tmp_path, clock, hub)
    c.publish("a", {})
    clock.run()
    (first, _), (second, _) = hub.tries
    assert second - first == timedelta(minutes=20)


def test_pending_messages_survive_the_hospital_process(tmp_path):
    clock = SimClock(START)
    hub = FlakyHub(clock)
    hub.down_until = START + timedelta(days=1)
    c = courier(tmp_path, clock, hub)
    for key in ("a", "b", "c"):
        c.publish(key, {"key": key})
    c.outbox.close()  # the hospital's process ends with three messages unsent
    reopened = Outbox(tmp_path / "27001.db")
    assert reopened.counts()["pending"] == 3
    assert reopened.head().key == "a" and reopened.head().body == {"key": "a"}
    clock.now = START + timedelta(days=2)
    hub2 = FlakyHub(clock)
    Courier(reopened, send=hub2, clock=clock, rng=random.Random(1)).drain()
    assert hub2.accepted == ["a", "b", "c"]


def test_backoff_grows_is_capped_jittered_and_seeded():
    backoff = Backoff(first=timedelta(seconds=30), factor=2, cap=timedelta(minutes=30))
    waits = [backoff.delay(n, random.Random(7)) for n in range(1, 12)]
    assert waits == [backoff.delay(n, random.Random(7)) for n in range(1, 12)]
    for n, wait in enumerate(waits, start=1):
        step = min(30 * 2 ** (n - 1), 1800)
        assert step / 2 <= wait.total_seconds() <= step
    assert backoff.delay(10_000, random.Random(1)) <= timedelta(minutes=30)
    assert len({backoff.delay(3, random.Random(s)) for s in range(20)}) > 10  # jitter spreads senders


# ---------------------------------------------------------------- the simulated network

def faults(**rates: float) -> NetworkFaults:
    def sourced(value: float) -> dict:
        return {"value": value, "assumption": "test"}

    kinds = ("lost_request", "lost_answer", "delayed", "duplicated", "reordered", "throttled", "server_error")
    return NetworkFaults.model_validate({
        **{k: sourced(rates.get(k, 0.0)) for k in kinds},
        "delay_minutes": {"low": sourced(5), "mode": sourced(10), "high": sourced(15)},
        "retry_after_seconds": sourced(60)})


class RecordingHub:
    def __init__(self, clock: SimClock) -> None:
        self.clock = clock
        self.received: list[tuple[datetime, str]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.received.append((self.clock.now, request.url.path))
        return httpx.Response(201, json={"ok": True})


def client_over(link: Link) -> httpx.Client:
    return httpx.Client(base_url="http://hub.test/fhir/", transport=LinkTransport(link))


def test_an_outage_refuses_connections():
    clock = SimClock(START)
    hub = RecordingHub(clock)
    outage = Outage(start=START, end=START + timedelta(hours=1), note="test")
    http = client_over(Link("27001", hub, clock, random.Random(1), outages=(outage,)))
    with pytest.raises(httpx.ConnectError):
        http.post("a")
    clock.now = START + timedelta(hours=1)
    assert http.post("a").status_code == 201
    assert len(hub.received) == 1


def test_duplicates_arrive_twice_and_lost_answers_arrive_once():
    clock = SimClock(START)
    hub = RecordingHub(clock)
    http = client_over(Link("27001", hub, clock, random.Random(1), faults=faults(duplicated=1.0)))
    assert http.post("a").status_code == 201
    assert [p for _, p in hub.received] == ["/fhir/a", "/fhir/a"]
    hub.received.clear()
    http = client_over(Link("27001", hub, clock, random.Random(1), faults=faults(lost_answer=1.0)))
    with pytest.raises(httpx.ReadTimeout):
        http.post("b")
    assert [p for _, p in hub.received] == ["/fhir/b"]


def test_a_held_back_request_arrives_after_the_next_one():
    clock = SimClock(START)
    hub = RecordingHub(clock)
    link = Link("27001", hub, clock, random.Random(1), faults=faults(reordered=1.0))
    http = client_over(link)
    with pytest.raises(httpx.ReadTimeout):
        http.post("first")
    link.faults = None
    http.post("second")
    assert [p for _, p in hub.received] == ["/fhir/second", "/fhir/first"]


def test_a_delayed_request_arrives_later_on_the_simulated_clock():
    clock = SimClock(START)
    hub = RecordingHub(clock)
    link = Link("27001", hub, clock, random.Random(1), faults=faults(delayed=1.0))
    with pytest.raises(httpx.ReadTimeout):
        client_over(link).post("late", headers={IDEMPOTENCY_KEY: "27001/late"})
    assert hub.received == []
    clock.run()
    (arrived, path), = hub.received
    assert path == "/fhir/late" and timedelta(minutes=5) <= arrived - START <= timedelta(minutes=15)
    assert link.delivered == {"27001/late": arrived}


def test_throttling_says_when_to_come_back_and_faults_follow_the_seed():
    clock = SimClock(START)
    hub = RecordingHub(clock)
    answer = client_over(Link("27001", hub, clock, random.Random(1), faults=faults(throttled=1.0))).post("a")
    assert answer.status_code == 429 and answer.headers["Retry-After"] == "60"
    assert answer.json()["resourceType"] == "OperationOutcome" and hub.received == []

    def pattern(seed: int) -> list[str]:
        link = Link("27001", RecordingHub(clock), clock, random.Random(seed),
                    faults=faults(lost_request=0.2, server_error=0.2, duplicated=0.2))
        http = client_over(link)
        seen = []
        for _ in range(40):
            try:
                seen.append(str(http.post("x").status_code))
            except httpx.TransportError as error:
                seen.append(type(error).__name__)
        return seen

    assert pattern(5) == pattern(5) and pattern(5) != pattern(6)
