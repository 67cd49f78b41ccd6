"""An HTTP client for the server under test that remembers every exchange, so a failure can be replayed.

Each example of a property starts a fresh log; when the property fails, the log of
the failing example is the counterexample, rendered as curl lines by
``emr.conformance.curl``. Requests sent at once (the concurrency properties) share a
batch number so the replay sends them at once too.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from urllib.parse import quote, urlencode

import httpx
import orjson

FHIR_JSON = "application/fhir+json"
Params = Sequence[tuple[str, str]]


@dataclass(frozen=True)
class Exchange:
    """One request as sent and the status and body that came back."""

    method: str
    url: str
    headers: tuple[tuple[str, str], ...]
    body: bytes | None
    status: int  # 0 when no answer came
    response: bytes
    batch: int | None = None


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)

    def json(self) -> object | None:
        try:
            return orjson.loads(self.body) if self.body else None
        except orjson.JSONDecodeError:
            return None

    def resource(self) -> dict:
        """The body as a JSON object, or an empty dict when it is not one."""
        found = self.json()
        return found if isinstance(found, dict) else {}


class NoAnswer(Exception):
    """The server did not answer (refused, reset or timed out)."""


class FhirClient:
    """Talks FHIR JSON to ``base_url``; a ``token`` is sent as ``Authorization: Bearer``."""

    def __init__(self, base_url: str, *, token: str | None = None, timeout: float = 30.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self._auth = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(timeout=timeout, transport=transport, follow_redirects=False)
        self._log: list[Exchange] = []
        self._lock = threading.Lock()
        self._batches = itertools.count(1)

    def close(self) -> None:
        self._http.close()

    def begin_example(self) -> None:
        with self._lock:
            self._log = []

    @property
    def exchanges(self) -> list[Exchange]:
        with self._lock:
            return list(self._log)

    def url(self, path: str, params: Params = ()) -> str:
        """An absolute URL: ``path`` relative to the base (a full URL, e.g. a next link, is kept)."""
        url = path if path.startswith(("http://", "https://")) else f"{self.base_url}/{path}".rstrip("/")
        if params:
            url += ("&" if "?" in url else "?") + urlencode(list(params), quote_via=quote, safe=":/,$")
        return url

    def request(self, method: str, path: str, *, params: Params = (), body: dict | bytes | None = None,
                headers: Mapping[str, str] | None = None, batch: int | None = None) -> Answer:
        sent = dict(headers or {})
        content = None
        if body is not None:
            content = body if isinstance(body, bytes) else orjson.dumps(body)
            sent.setdefault("Content-Type", FHIR_JSON)
        sent.setdefault("Accept", FHIR_JSON)
        url = self.url(path, params)
        try:
            response = self._http.request(method, url, content=content, headers={**sent, **self._auth})
        except httpx.HTTPError as exc:
            self._record(Exchange(method, url, self._shown(sent), content, 0, str(exc).encode(), batch))
            raise NoAnswer(f"{method} {url}: {type(exc).__name__} {exc}") from exc
        answer = Answer(response.status_code, response.content, dict(response.headers))
        self._record(Exchange(method, url, self._shown(sent), content, answer.status, answer.body, batch))
        return answer

    def at_once(self, count: int, method: str, path: str, **kwargs: object) -> list[Answer]:
        """``count`` identical requests released together (a barrier), answers in sending order."""
        batch = next(self._batches)
        barrier = threading.Barrier(count)

        def send(_: int) -> Answer:
            barrier.wait()
            return self.request(method, path, batch=batch, **kwargs)  # type: ignore[arg-type]

        with ThreadPoolExecutor(max_workers=count) as pool:
            return list(pool.map(send, range(count)))

    def _shown(self, headers: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
        auth = (("Authorization", "Bearer $FHIR_TOKEN"),) if self._auth else ()
        return tuple(sorted(headers.items())) + auth

    def _record(self, exchange: Exchange) -> None:
        with self._lock:
            self._log.append(exchange)
