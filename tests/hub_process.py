"""The hub as a process of its own (``emr serve`` on 127.0.0.1), so a test can kill it.

Used by the durability test (SIGKILL under write load, then restart on the same
database) and the concurrency test (a second hub process on the same PostgreSQL).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from tests.serving import free_port

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class HubProcess:
    """``emr serve --db URL`` on a free port of 127.0.0.1; start, kill and restart it."""

    def __init__(self, database_url: str, *, port: int | None = None, env: dict[str, str] | None = None) -> None:
        self.database_url = database_url
        self.port = port or free_port()
        self.base = f"http://127.0.0.1:{self.port}/fhir"
        self.env = env or {}
        self.process: subprocess.Popen | None = None
        self._log = tempfile.TemporaryFile()

    def start(self, *, timeout: float = 90) -> str:
        command = [sys.executable, "-m", "emr.cli", "serve", "--db", self.database_url,
                   "--host", "127.0.0.1", "--port", str(self.port)]
        self.process = subprocess.Popen(command, cwd=PROJECT_ROOT, stdout=self._log, stderr=subprocess.STDOUT,
                                        env={**os.environ, **self.env})
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"emr serve exited with {self.process.returncode}: {self.output()}")
            try:
                if httpx.get(f"{self.base}/metadata", timeout=2).status_code == 200:
                    return self.base
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"emr serve did not answer within {timeout} s: {self.output()}")

    def kill(self) -> None:
        """SIGKILL: no shutdown handler, no flush, no goodbye."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()

    def output(self) -> str:
        self._log.seek(0)
        return self._log.read().decode(errors="replace")[-2000:]

    def __enter__(self) -> HubProcess:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()
        self._log.close()
