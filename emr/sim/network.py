"""The network between a simulated hospital and the hub, with the faults a scenario asks for.

Each facility talks to the hub over its own ``Link``, plugged into httpx as a
transport, so the hospital's code sees exactly what a real client would: a refused
connection while the hub is down, timeouts, ``429``/``503`` answers — and never
knows whether a request that timed out was acted on. Which fault hits which request
is drawn from the link's own seeded stream; delayed packets arrive later on the
simulated clock, so the same seed gives the same run.

Every request that reaches the hub and is answered 2xx is logged under its
``Idempotency-Key`` (when it has one) with the simulated time it first arrived: the
ground truth of "had this result reached the hub" that the run record keeps.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import httpx
import orjson

from emr.errors import Problem
from emr.fhir import operation_outcome
from emr.sim.clock import SimClock
from emr.sim.scenario import NetworkFaults, Outage

IDEMPOTENCY_KEY = "Idempotency-Key"
_HOP_HEADERS = frozenset({"content-encoding", "content-length", "transfer-encoding"})

Forward = Callable[[httpx.Request], httpx.Response]


def hub_back_at(outages: tuple[Outage, ...], at: datetime) -> datetime | None:
    """When the outage that covers ``at`` ends, or None when the hub is up at ``at``."""
    return next((o.end for o in outages if o.start <= at < o.end), None)


@dataclass
class Link:
    """One facility's connection to the hub."""

    facility: str
    forward: Forward
    clock: SimClock
    rng: random.Random
    outages: tuple[Outage, ...] = ()
    faults: NetworkFaults | None = None
    delivered: dict[str, datetime] = field(default_factory=dict)
    counts: Counter = field(default_factory=Counter)
    _held: list[httpx.Request] = field(default_factory=list)

    def carry(self, request: httpx.Request) -> httpx.Response:
        """Take one request to the hub and bring back its answer — or fail the way networks fail."""
        if hub_back_at(self.outages, self.clock.now) is not None:
            self.counts["outage"] += 1
            raise httpx.ConnectError("the hub cannot be reached (outage)", request=request)
        fault = self._draw()
        if fault:
            self.counts[fault] += 1
        if fault == "lost_request":
            raise _timeout(request)
        if fault in ("throttled", "server_error"):
            return self._refusal(fault)
        if fault == "delayed":
            self.clock.schedule(self.clock.now + self._delay(), lambda: self._arrive_late(request))
            raise _timeout(request)
        if fault == "reordered":
            self._held.append(request)
            raise _timeout(request)
        response = self._deliver(request)
        if fault == "duplicated":
            self._deliver(request)
        self._release_held()
        if fault == "lost_answer":
            raise _timeout(request)
        return response

    def _draw(self) -> str | None:
        if self.faults is None:
            return None
        point = self.rng.random()
        for kind, rate in self.faults.rates().items():
            if point < rate:
                return kind
            point -= rate
        return None

    def _delay(self) -> timedelta:
        spread = self.faults.delay_minutes  # type: ignore[union-attr]
        return timedelta(minutes=self.rng.triangular(spread.low.value, spread.high.value, spread.mode.value))

    def _deliver(self, request: httpx.Request) -> httpx.Response:
        response = self.forward(request)
        key = request.headers.get(IDEMPOTENCY_KEY)
        if key and 200 <= response.status_code < 300:
            self.delivered.setdefault(key, self.clock.now)
        return response

    def _arrive_late(self, request: httpx.Request) -> None:
        if hub_back_at(self.outages, self.clock.now) is None:
            self._deliver(request)  # nobody waits for this answer any more

    def _release_held(self) -> None:
        held, self._held = self._held, []
        for request in held:
            self._deliver(request)

    def _refusal(self, fault: str) -> httpx.Response:
        if fault == "throttled":
            seconds = self.faults.retry_after_seconds.value  # type: ignore[union-attr]
            body = operation_outcome([Problem("too many requests; retry later", None, "throttled")])
            return httpx.Response(429, headers={"Retry-After": str(seconds)}, content=orjson.dumps(body))
        body = operation_outcome([Problem("the hub is temporarily unavailable", None, "transient")])
        return httpx.Response(503, content=orjson.dumps(body))


class LinkTransport(httpx.BaseTransport):
    """An httpx transport that sends every request over a ``Link``."""

    def __init__(self, link: Link) -> None:
        self.link = link

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.read()
        answer = self.link.carry(request)
        headers = [(k, v) for k, v in answer.headers.multi_items() if k.lower() not in _HOP_HEADERS]
        return httpx.Response(answer.status_code, headers=headers, content=answer.content)


def _timeout(request: httpx.Request) -> httpx.ReadTimeout:
    return httpx.ReadTimeout("no answer from the hub in time", request=request)
