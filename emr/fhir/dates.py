"""FHIR date search semantics: every date is a range, and prefixes compare ranges.

A FHIR ``date``, ``dateTime``, ``instant`` or ``Period`` stands for an interval: "2025"
is the whole year, "2025-03-02T08:00:00+07:00" one second. Search values are
intervals too, and the prefixes (``eq``, ``ne``, ``gt``, ``lt``, ``ge``, ``le``,
``sa``, ``eb``) are rules between the two intervals (FHIR R4B §3.1.1.4.2 "date").

This module is the single definition of those rules: the hub turns them into SQL,
and the conformance kit evaluates them in Python as its model. Intervals are
half-open ``[low, high)`` in epoch milliseconds, UTC. A value without a time zone is
read in Vietnam's time zone (UTC+07:00), which is what a Vietnamese hospital means.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from emr.errors import InvalidInput

VIETNAM_TZ = timezone(timedelta(hours=7))
PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb")
MIN_MS = -(2**62)
MAX_MS = 2**62

_DATE_RE = re.compile(
    r"^(?P<y>\d{4})(-(?P<m>\d{2})(-(?P<d>\d{2})"
    r"(T(?P<H>\d{2}):(?P<M>\d{2})(:(?P<S>\d{2})(?P<frac>\.\d+)?)?"
    r"(?P<tz>Z|[+-]\d{2}:\d{2})?)?)?)?$"
)


@dataclass(frozen=True, order=True)
class Interval:
    low: int
    high: int


def parse_interval(text: str) -> Interval:
    """The interval a FHIR date/dateTime/instant string stands for."""
    if not isinstance(text, str):
        raise InvalidInput(f"'{text}' is not a FHIR date, dateTime or instant")
    return _parse_interval(text)


@functools.lru_cache(maxsize=1 << 16)
def _parse_interval(text: str) -> Interval:
    """Remembered: a bulk load reads each result's date twice, for its index row and its reuse fact."""
    match = _DATE_RE.match(text)
    if not match:
        raise InvalidInput(f"'{text}' is not a FHIR date, dateTime or instant")
    try:
        start, step = _start_and_step(match)
    except ValueError as exc:
        raise InvalidInput(f"'{text}' is not a real date: {exc}") from exc
    end = _add_step(start, step)
    return Interval(_ms(start), _ms(end))


def _start_and_step(match: re.Match[str]) -> tuple[datetime, str]:
    g = match.groupdict()
    tz = _zone(g["tz"])
    year = int(g["y"])
    if g["m"] is None:
        return datetime(year, 1, 1, tzinfo=tz), "year"
    month = int(g["m"])
    if g["d"] is None:
        return datetime(year, month, 1, tzinfo=tz), "month"
    day = int(g["d"])
    if g["H"] is None:
        return datetime(year, month, day, tzinfo=tz), "day"
    hour, minute = int(g["H"]), int(g["M"])
    if g["S"] is None:
        return datetime(year, month, day, hour, minute, tzinfo=tz), "minute"
    micros = int(round(float(g["frac"]) * 1_000_000)) if g["frac"] else 0
    start = datetime(year, month, day, hour, minute, int(g["S"]), tzinfo=tz) + timedelta(microseconds=micros)
    return start, ("milli" if g["frac"] else "second")


def _zone(text: str | None) -> timezone:
    if text is None:
        return VIETNAM_TZ
    if text == "Z":
        return timezone.utc
    sign = 1 if text[0] == "+" else -1
    hours, minutes = int(text[1:3]), int(text[4:6])
    return timezone(sign * timedelta(hours=hours, minutes=minutes))


def _add_step(start: datetime, step: str) -> datetime:
    if step == "year":
        return start.replace(year=start.year + 1)
    if step == "month":
        return start.replace(year=start.year + start.month // 12, month=start.month % 12 + 1)
    size = {"day": timedelta(days=1), "minute": timedelta(minutes=1),
            "second": timedelta(seconds=1), "milli": timedelta(milliseconds=1)}[step]
    return start + size


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def period_interval(period: dict) -> Interval:
    """A Period: open ends stretch to the beginning or end of time."""
    low = parse_interval(period["start"]).low if period.get("start") else MIN_MS
    high = parse_interval(period["end"]).high if period.get("end") else MAX_MS
    return Interval(low, high)


def split_prefix(value: str) -> tuple[str, str]:
    """``"ge2025-01-01"`` → ``("ge", "2025-01-01")``; no prefix means ``eq``."""
    if len(value) > 2 and value[:2] in PREFIXES and value[2].isdigit():
        return value[:2], value[2:]
    return "eq", value


def matches(prefix: str, target: Interval, search: Interval) -> bool:
    """Whether a resource's interval ``target`` satisfies ``prefix`` + ``search``."""
    contained = target.low >= search.low and target.high <= search.high
    rules = {
        "eq": contained,
        "ne": not contained,
        "gt": target.high > search.high,
        "lt": target.low < search.low,
        "ge": target.high > search.high or contained,
        "le": target.low < search.low or contained,
        "sa": target.low >= search.high,
        "eb": target.high <= search.low,
    }
    return rules[prefix]


def to_fhir_instant(moment: datetime) -> str:
    """An aware datetime as a FHIR instant with milliseconds, in UTC."""
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
