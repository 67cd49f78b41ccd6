"""The hub served for real: uvicorn on 127.0.0.1, a free port, a background thread.

Used by the tests that talk to the hub over real HTTP (concurrency, the browser test)
and by ``scripts/screenshots``.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn

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
    yields its FHIR base URL (``http://127.0.0.1:PORT/fhir``). ``settings`` override
    the hub's other ``Settings`` fields."""
    port = free_port()
    base = f"http://127.0.0.1:{port}/fhir"
    app = create_app(Settings(database_url=database_url, base_url=base, **settings), clients=test_clients())
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 15
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.05)
        yield HubURL(base)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        app.state.hub.engine.dispose()
