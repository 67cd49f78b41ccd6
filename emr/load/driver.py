"""Send a load plan's requests open-loop and time each one from the moment it was due.

Request ``i`` is due ``i / rate`` seconds after the start, whatever happened to the
ones before it: a slow hub does not slow the arrivals down, so its queueing shows in
the latencies instead of hiding (no "coordinated omission"). Requests are sent by a
pool of worker threads, each with its own HTTP connection. Starting stops at the
plan's duration or request count, and the run waits at most one request timeout for
the last answers. Before the clock starts, a few requests of each kind go out one by
one and are not counted: the hub loads a resource type's model on first use, and a
cold start is not what an operations team asks about. The caller passes the clock
and the sleep, so tests can drive it.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone

import httpx

from emr.credentials import SmartAuth, seeded_key, token_url_for
from emr.errors import InvalidInput
from emr.load.plan import LoadPlan
from emr.load.workload import Call, Workload

FHIR_JSON = {"Content-Type": "application/fhir+json"}
LOAD_SCOPES = "system/*.cruds"
WARM_UP_PER_KIND = 3


@dataclass(frozen=True)
class Sample:
    kind: str
    due: float  # seconds after the start
    latency: float  # seconds from due to answered (or failed)
    status: int  # HTTP status; 0 when there was no answer
    error: str | None  # None for a 2xx answer


@dataclass(frozen=True)
class LoadResult:
    plan: LoadPlan
    samples: list[Sample]
    elapsed: float  # seconds from the start to the last answer
    authenticated: bool


def run_load(plan: LoadPlan, workload: Workload, *, clock: Callable[[], float] = time.perf_counter,
             sleep: Callable[[float], None] = time.sleep) -> LoadResult:
    auth = _credentials(plan, workload)
    pick = random.Random(f"{plan.seed}:load:mix")
    kinds, weights = zip(*sorted(plan.mix.items()), strict=True)
    _warm_up(plan, workload, auth, [k for k, w in zip(kinds, weights, strict=True) if w > 0])
    local = threading.local()
    samples: list[Sample] = []
    opened: list[httpx.Client] = []
    lock = threading.Lock()

    def send(call: Call, due: float, start: float) -> None:
        if clock() - start - due > plan.timeout:  # waited in the queue longer than an answer may take
            sample = Sample(call.kind, due, clock() - start - due, 0, "queued too long")
        else:
            if not hasattr(local, "http"):
                local.http = httpx.Client(base_url=plan.hub + "/", timeout=plan.timeout, headers=FHIR_JSON)
                with lock:
                    opened.append(local.http)
            sample = _send(local.http, call, auth.get(call.facility), due=due, start=start, clock=clock)
        workload.completed(call, sample.error is None)
        with lock:
            samples.append(sample)

    with ThreadPoolExecutor(plan.workers, thread_name_prefix="load") as pool:
        start = clock()
        for i in range(plan.planned):
            due = i / plan.rate
            if due >= plan.duration:
                break
            call = workload.next_call(pick.choices(kinds, weights)[0])
            wait = start + due - clock()
            if wait > 0:
                sleep(wait)
            pool.submit(send, call, due, start)
    elapsed = clock() - start
    for http in opened:
        http.close()
    return LoadResult(plan, sorted(samples, key=lambda s: s.due), elapsed, bool(auth))


def _credentials(plan: LoadPlan, workload: Workload) -> dict[str, SmartAuth]:
    """Each facility's SMART client (``sim-<code>``, keys from the seed, as ``emr simulate --hub``
    uses), with its token fetched before the clock starts; none when the hub asks for no token."""
    with httpx.Client(timeout=plan.timeout) as http:
        try:
            if http.get(f"{plan.hub}/.well-known/smart-configuration").status_code == 404:
                return {}
        except httpx.HTTPError as error:
            raise InvalidInput(f"no hub answers at {plan.hub} ({type(error).__name__}); start one with emr serve") from None
        from emr.sim.runner import client_id

        auth = {code: SmartAuth(client_id=client_id(code), key=seeded_key(plan.seed, code),
                                token_url=token_url_for(plan.hub), scope=LOAD_SCOPES, clock=_utc_now)
                for code in workload.facilities}
        for code, credentials in auth.items():
            http.get(f"{plan.hub}/Organization/{code}", auth=credentials)
    return auth


def _warm_up(plan: LoadPlan, workload: Workload, auth: dict[str, SmartAuth], kinds: list[str]) -> None:
    with httpx.Client(base_url=plan.hub + "/", timeout=max(plan.timeout, 60), headers=FHIR_JSON) as http:
        for kind in ["publish"] * WARM_UP_PER_KIND + [k for k in kinds for _ in range(WARM_UP_PER_KIND)]:
            call = workload.next_call(kind)
            sample = _send(http, call, auth.get(call.facility), due=0, start=0, clock=lambda: 0.0)
            workload.completed(call, sample.error is None)


def _send(http: httpx.Client, call: Call, auth: SmartAuth | None, *, due: float, start: float,
          clock: Callable[[], float]) -> Sample:
    try:
        response = http.request(call.method, call.path, content=call.body, params=call.params,
                                auth=auth or httpx.USE_CLIENT_DEFAULT)
    except httpx.HTTPError as error:
        return Sample(call.kind, due, clock() - start - due, 0, type(error).__name__)
    latency = clock() - start - due
    if response.status_code >= 300:
        return Sample(call.kind, due, latency, response.status_code, str(response.status_code))
    return Sample(call.kind, due, latency, response.status_code, None)


def _utc_now() -> datetime:
    """Tokens are dated in real time: the hub checks them against its own clock."""
    return datetime.now(timezone.utc)
