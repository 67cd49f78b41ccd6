"""The simulated clock: what time it is in the run, and what happens next.

Everything in a run happens at a simulated instant: visits, results becoming ready,
an outbox retrying, a delayed packet arriving. Actions are kept in a heap by time and,
for equal times, by the order they were scheduled in, so a run replays identically.
Nothing here reads the wall clock.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

Action = Callable[[], None]


@dataclass
class SimClock:
    now: datetime
    _queue: list[tuple[datetime, int, Action]] = field(default_factory=list)
    _sequence: int = 0

    def schedule(self, at: datetime, action: Action) -> None:
        """Run ``action`` at ``at`` (never earlier than now: the past cannot be scheduled)."""
        self._sequence += 1
        heapq.heappush(self._queue, (max(at, self.now), self._sequence, action))

    def pending(self) -> int:
        return len(self._queue)

    def run(self, progress: Callable[[int, int], None] | None = None, *, every: int = 50) -> int:
        """Play every scheduled action in time order (actions may schedule more); returns how many ran."""
        done = 0
        while self._queue:
            at, _, action = heapq.heappop(self._queue)
            self.now = at
            action()
            done += 1
            if progress and done % every == 0:
                progress(done, done + len(self._queue))
        return done
