"""Work that follows an engine's commits on a thread of its own: every ``n`` commits, one at a time."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class EveryNCommits:
    """Starts ``work`` on a daemon thread after every ``n`` calls to ``committed``, unless
    the previous run is still going; the count starts again at each start. An exception
    from ``work`` ends that run only: the next one tries again."""

    n: int
    work: Callable[[], None]
    name: str
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _count: int = 0
    _busy: bool = False

    def committed(self) -> None:
        with self._lock:
            self._count += 1
            if self._count < self.n or self._busy:
                return
            self._count, self._busy = 0, True
        threading.Thread(target=self._run, name=self.name, daemon=True).start()

    def _run(self) -> None:
        try:
            self.work()
        except Exception:  # noqa: BLE001, S110 - background upkeep; the next run catches up
            pass
        finally:
            with self._lock:
                self._busy = False
