"""Answers about stored resources, remembered for the rest of one transaction.

A transaction Bundle of twenty results asks twenty times which Organization carries
facility code 27001 and which national ID Patient/… has; each answer is one query
that cannot change unless a resource of that type is written. ``remembered`` keeps
such answers per transaction, by the resource type they are about, and the store
calls ``forget`` whenever it writes or deletes a resource of that type, so an answer
is never older than the data it was read from.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import TypeVar

from sqlalchemy.engine import Connection

T = TypeVar("T")
_KEY = "emr.memo"
_MISSING = object()


def _memo(conn: Connection) -> dict[str, dict[Hashable, object]]:
    """This transaction's answers (a new transaction starts empty)."""
    transaction = conn.get_transaction()
    held = conn.info.get(_KEY)
    if held is None or held[0] is not transaction:
        held = (transaction, {})
        conn.info[_KEY] = held
    return held[1]


def remembered(conn: Connection, about: str, key: Hashable, compute: Callable[[], T]) -> T:
    """``compute()``'s answer about resources of type ``about``, asked once per transaction."""
    if conn.get_transaction() is None:
        return compute()
    answers = _memo(conn).setdefault(about, {})
    found = answers.get(key, _MISSING)
    if found is _MISSING:
        found = answers[key] = compute()
    return found  # type: ignore[return-value]


def forget(conn: Connection, about: str) -> None:
    """A resource of type ``about`` was written: what was remembered about that type is stale."""
    held = conn.info.get(_KEY)
    if held is not None:
        held[1].pop(about, None)


def forget_all(conn: Connection) -> None:
    conn.info.pop(_KEY, None)
