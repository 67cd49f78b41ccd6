"""HTTP load from client threads: every request timed, failures counted, not hidden."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import httpx

HEADERS = {"Content-Type": "application/fhir+json"}


@dataclass
class Run:
    latencies: list[float] = field(default_factory=list)  # seconds, one per request
    elapsed: float = 0.0
    failures: int = 0
    first_failure: str = ""

    @property
    def per_second(self) -> float:
        return len(self.latencies) / self.elapsed if self.elapsed else 0.0


def drive(base: str, path: str, bodies: list[bytes], *, clients: int) -> Run:
    """POST every body to ``base + path`` from ``clients`` threads (one open connection each).

    Connections are opened before the clock starts, so the figure is requests, not set-up.
    """
    run = Run()
    lock = threading.Lock()
    shares = [share for share in (bodies[i::clients] for i in range(clients)) if share]
    https = [httpx.Client(timeout=120) for _ in shares]
    for http in https:
        http.get(base + "/metadata")  # open the connection
    start = threading.Barrier(len(shares) + 1)

    def client(http: httpx.Client, share: list[bytes]) -> None:
        mine: list[float] = []
        start.wait()
        for body in share:
            started = time.perf_counter()
            response = http.post(base + path, content=body, headers=HEADERS)
            mine.append(time.perf_counter() - started)
            if response.status_code >= 400:
                with lock:
                    run.failures += 1
                    run.first_failure = run.first_failure or f"{response.status_code}: {response.text[:300]}"
        with lock:
            run.latencies.extend(mine)

    threads = [threading.Thread(target=client, args=pair) for pair in zip(https, shares)]
    for thread in threads:
        thread.start()
    start.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    run.elapsed = time.perf_counter() - started
    for http in https:
        http.close()
    return run


def warm_up(base: str, path: str, body: bytes, times: int = 3) -> None:
    with httpx.Client(timeout=120) as http:
        for _ in range(times):
            http.post(base + path, content=body, headers=HEADERS)
