"""The hub served for real: uvicorn on 127.0.0.1, a free port, a background thread.

Used by the tests that talk to the hub over real HTTP (concurrency, the browser test,
the conformance kit and the toy servers it is tried on) and by ``scripts/screenshots``.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn
from fastapi import FastAPI

from emr.config import Settings
from emr.hub.app import create_app
from tests.facility_clients import HubURL, test_clients


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def served_hub(database_url: str, **settings: object) -> Iterator[str]:
    """The hub served by uvicorn on 127.0.0.1 (a free port) for the duration of the block;
    yields its FHIR base URL (``http://127.0.0.1:PORT/fhir``), whose ``.auth`` sends
    each request as the facility it speaks for (every facility is a registered client).
    ``settings`` override the hub's other ``Settings`` fields."""
    apps = []

    def make(base: str) -> FastAPI:
        apps.append(create_app(Settings(database_url=database_url, base_url=base, **settings),
                               clients=test_clients()))
        return apps[-1]

    try:
        with served_app(make) as base:
            yield HubURL(base)
    finally:
        for app in apps:
            app.state.hub.engine.dispose()


@contextmanager
def served_app(make_app: Callable[[str], Any]) -> Iterator[str]:
    """Any ASGI app served the same way; ``make_app`` gets the FHIR base URL it will answer at."""
    port = free_port()
    base = f"http://127.0.0.1:{port}/fhir"
    server = uvicorn.Server(uvicorn.Config(make_app(base), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 15
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.05)
        yield base
    finally:
        server.should_exit = True
        thread.join(timeout=10)
