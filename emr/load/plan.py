"""What a load test is asked to do, checked before anything is sent."""

from __future__ import annotations

import math
from dataclasses import dataclass
from urllib.parse import urlsplit

from emr.errors import InvalidInput

KINDS = ("publish", "search", "check")
ALLOWED_HOST = "127.0.0.1"
MAX_RATE = 2000.0  # requests per second; far beyond what the hub takes on one machine
MAX_DURATION = 3600.0  # seconds
MAX_REQUESTS = 1_000_000
DEFAULT_MIX = "publish=1,search=2,check=2"


@dataclass(frozen=True)
class LoadPlan:
    hub: str  # FHIR base URL, e.g. http://127.0.0.1:8080/fhir
    rate: float  # requests started per second
    duration: float  # seconds during which requests are started
    mix: dict[str, float]  # kind → weight
    max_requests: int
    workers: int
    seed: int
    timeout: float = 10.0  # seconds one request may take before it counts as an error

    @property
    def planned(self) -> int:
        return min(self.max_requests, math.ceil(self.rate * self.duration))


def make_plan(*, hub: str, rate: float, duration: float, mix: str = DEFAULT_MIX, max_requests: int | None = None,
              workers: int = 16, seed: int = 2025, timeout: float = 10.0) -> LoadPlan:
    """A plan, or ``InvalidInput`` saying in one line what is wrong with the request."""
    check_hub_url(hub)
    if not 0 < rate <= MAX_RATE:
        raise InvalidInput(f"--rate must be above 0 and at most {MAX_RATE:g} requests per second, not {rate:g}")
    if not 0 < duration <= MAX_DURATION:
        raise InvalidInput(f"--duration must be above 0 and at most {MAX_DURATION:g} seconds, not {duration:g}")
    limit = MAX_REQUESTS if max_requests is None else max_requests
    if not 0 < limit <= MAX_REQUESTS:
        raise InvalidInput(f"--max-requests must be between 1 and {MAX_REQUESTS}, not {limit}")
    if not 1 <= workers <= 256:
        raise InvalidInput(f"--workers must be between 1 and 256, not {workers}")
    if not 0 < timeout <= 120:
        raise InvalidInput(f"the request timeout must be above 0 and at most 120 seconds, not {timeout:g}")
    return LoadPlan(hub.rstrip("/"), rate, duration, parse_mix(mix), limit, workers, seed, timeout)


def check_hub_url(hub: str) -> None:
    """Load is only ever driven at a hub on this machine."""
    parts = urlsplit(hub)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput(f"--hub must be a URL such as http://127.0.0.1:8080/fhir, not '{hub}'")
    if parts.hostname != ALLOWED_HOST:
        raise InvalidInput(f"loadtest drives only a hub on {ALLOWED_HOST}, not '{parts.hostname}'")


def parse_mix(text: str) -> dict[str, float]:
    """``publish=1,search=3,check=2`` → weights; every kind named at most once, weights ≥ 0, some > 0."""
    mix: dict[str, float] = {}
    for part in (p.strip() for p in text.split(",") if p.strip()):
        name, _, weight = part.partition("=")
        name = name.strip()
        if name not in KINDS:
            raise InvalidInput(f"--mix: unknown kind '{name}'; use {', '.join(KINDS)} (e.g. {DEFAULT_MIX})")
        if name in mix:
            raise InvalidInput(f"--mix names '{name}' twice")
        try:
            mix[name] = float(weight) if weight.strip() else 1.0
        except ValueError:
            raise InvalidInput(f"--mix: the weight of '{name}' must be a number, not '{weight}'") from None
        if not math.isfinite(mix[name]) or mix[name] < 0:
            raise InvalidInput(f"--mix: the weight of '{name}' must be zero or more, not '{weight}'")
    if not mix or sum(mix.values()) <= 0:
        raise InvalidInput(f"--mix needs at least one kind with a weight above 0, e.g. {DEFAULT_MIX}")
    return mix
