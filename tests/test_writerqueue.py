"""The hub's SQLite writers take turns in arrival order, so none waits behind a stream of later ones."""

from __future__ import annotations

import threading
import time

from emr.hub.writerqueue import WriterQueue


def _queued(queue: WriterQueue, tickets: int) -> None:
    deadline = time.monotonic() + 5
    while queue._issued < tickets and time.monotonic() < deadline:  # noqa: SLF001 - waiting for arrivals
        time.sleep(0.001)


def test_writers_are_served_in_the_order_they_arrived():
    queue, order = WriterQueue(), []
    threads = []
    with queue.turn():
        for name in "BCDE":
            thread = threading.Thread(target=lambda n=name: _write(queue, order, n))
            thread.start()
            threads.append(thread)
            _queued(queue, len(threads) + 1)
    for thread in threads:
        thread.join(5)
    assert order == list("BCDE")


def _write(queue: WriterQueue, order: list[str], name: str) -> None:
    with queue.turn():
        order.append(name)


def test_a_writer_that_gave_up_does_not_hold_the_ones_behind_it():
    queue, order = WriterQueue(), []
    with queue.turn():
        waited = threading.Thread(target=lambda: _give_up(queue, order))
        waited.start()
        _queued(queue, 2)
        later = threading.Thread(target=lambda: _write(queue, order, "later"))
        later.start()
        _queued(queue, 3)
        waited.join(5)
    later.join(5)
    assert order == ["went on without its turn", "later"]
    with queue.turn(timeout=1):  # the queue is free again
        pass


def _give_up(queue: WriterQueue, order: list[str]) -> None:
    with queue.turn(timeout=0.05):
        order.append("went on without its turn")


def test_a_thread_that_holds_its_turn_may_take_it_again():
    queue, order = WriterQueue(), []
    with queue.turn(timeout=1), queue.turn(timeout=1):  # taken again at once, not waiting for itself
        order.append("nested")
        other = threading.Thread(target=lambda: _give_up(queue, order))
        other.start()
        other.join(5)
    assert order == ["nested", "went on without its turn"]  # the other waited for the outer turn to end
    _write(queue, order, "after")  # both levels given back: free again at once
    assert order[-1] == "after"
