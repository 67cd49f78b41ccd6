"""The simulated clock: what time it is in the run, and what happens next.

Everything in a run happens at a simulated instant: visits, results becoming ready,
an outbox retrying, a delayed packet arriving. Actions are kept in a heap by time and,
for equal times, by the order they were scheduled in, so a run replays identically.
Actions known in advance and already in time order (a run's visits) can instead be fed
in as ``arrivals`` while the clock runs: they are taken as if scheduled before anything
else, without holding them all in the heap. Nothing here reads the wall clock.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable
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

    def run(self, progress: Callable[[int, int], None] | None = None, *, every: int = 50,
            arrivals: Iterable[tuple[datetime, Action]] = (), expected: int = 0) -> int:
        """Play every scheduled action in time order (actions may schedule more); returns how many ran.

        ``arrivals`` must come in time order; each runs as if it had been scheduled before
        ``run`` started and before anything in the queue: at an equal time it goes first.
        ``expected`` is how many arrivals there are, for ``progress`` only.
        """
        feed = iter(arrivals)
        upcoming = next(feed, None)
        done = taken = 0
        while upcoming is not None or self._queue:
            if upcoming is not None and (not self._queue or upcoming[0] <= self._queue[0][0]):
                at, action = upcoming
                upcoming = next(feed, None)
                taken += 1
            else:
                at, _, action = heapq.heappop(self._queue)
            self.now = max(at, self.now)
            action()
            done += 1
            if progress and done % every == 0:
                progress(done, done + len(self._queue) + max(expected - taken, 0))
        return done
