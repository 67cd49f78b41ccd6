"""EMR adoption, as pure functions: who was live when, against the deadlines, and what it enabled.

A facility counts as *live* on a day when its EMR go-live date (the run record's
``emr_go_live``) is on or before that day; a facility with no date never goes live.
Circular 13/2025/TT-BYT gives two deadlines — hospitals (the registry's central and
provincial kinds) by 30 Sep 2025, other facilities (regional health centres) by
31 Dec 2026 — which, like the national reference line, are read from
``data/adoption-national.yaml`` and passed in. Nothing here reads a file or a clock.
"""

from __future__ import annotations

import calendar
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from emr.errors import DataFileError, Problem
from emr.fhir.dates import VIETNAM_TZ

if TYPE_CHECKING:
    from emr.sim.record import OrderOutcome

Group = Literal["hospitals", "other"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class NationalPoint(_Frozen):
    """Hospitals with EMR nationally on a date, as reported by ``source``."""

    date: date
    hospitals_with_emr: Annotated[int, Field(ge=0)]
    of: Annotated[int, Field(gt=0)]
    source: str = Field(min_length=1)
    note: str | None = None

    @model_validator(mode="after")
    def _not_more_than_all(self) -> NationalPoint:
        if self.hospitals_with_emr > self.of:
            raise ValueError(f"hospitals_with_emr {self.hospitals_with_emr} exceeds of {self.of}")
        return self

    @property
    def share(self) -> float:
        return self.hospitals_with_emr / self.of


class Deadline(_Frozen):
    """The date by which the facilities of ``kinds`` must run EMR."""

    group: Group
    kinds: tuple[Literal["central", "provincial", "regional"], ...] = Field(min_length=1)
    due: date
    source: str = Field(min_length=1)


class NationalReference(_Frozen):
    note: str = Field(min_length=1)
    deadlines: tuple[Deadline, ...] = Field(min_length=1)
    points: tuple[NationalPoint, ...] = Field(min_length=1)


@dataclass(frozen=True)
class Share:
    """``numerator`` of ``denominator``; ``value`` is None when there is nothing to count."""

    numerator: int
    denominator: int

    @property
    def value(self) -> float | None:
        return self.numerator / self.denominator if self.denominator else None


@dataclass(frozen=True)
class MonthShare:
    month: str  # YYYY-MM
    end: date  # the month's last day, when the share is taken
    live: Share


def parse_national(document: object, *, where: str) -> NationalReference:
    """The national reference line and deadlines; DataFileError lists every problem."""
    try:
        return NationalReference.model_validate(document)
    except ValidationError as error:
        problems = [Problem(item["msg"], f"{where}:" + ".".join(str(p) for p in item["loc"]))
                    for item in error.errors()]
        raise DataFileError(f"{where} is invalid ({len(problems)} problems)", problems=problems) from error


def month_ends(start: date, end: date) -> list[tuple[str, date]]:
    """``(YYYY-MM, last day)`` of every month from ``start``'s to ``end``'s, inclusive; the
    last month of a period that ends mid-month ends on ``end``."""
    months = []
    year, month = start.year, start.month
    while (year, month) <= (end.year, end.month):
        last = min(date(year, month, calendar.monthrange(year, month)[1]), end)
        months.append((f"{year:04d}-{month:02d}", last))
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return months


def last_day(month: str) -> date:
    """The last day of a ``YYYY-MM`` month."""
    year, number = (int(part) for part in month.split("-"))
    return date(year, number, calendar.monthrange(year, number)[1])


def is_live(go_live: date | None, *, on: date) -> bool:
    return go_live is not None and go_live <= on


def live_share(go_live: Mapping[str, date | None], *, on: date) -> Share:
    """How many of the facilities had EMR live on ``on``."""
    return Share(sum(1 for d in go_live.values() if is_live(d, on=on)), len(go_live))


def adoption_by_month(go_live: Mapping[str, date | None], *, start: date, end: date) -> list[MonthShare]:
    """The live share at the end of each month from ``start`` to ``end``."""
    return [MonthShare(month, last, live_share(go_live, on=last)) for month, last in month_ends(start, end)]


def of_kinds(go_live: Mapping[str, date | None], *, kinds: Mapping[str, str],
             wanted: Iterable[str]) -> dict[str, date | None]:
    """The go-live dates of the facilities whose kind is one of ``wanted``."""
    wanted = set(wanted)
    return {code: d for code, d in go_live.items() if kinds[code] in wanted}


def live_share_by(go_live: Mapping[str, date | None], *, on: date, key: Callable[[str], str]) -> dict[str, Share]:
    """The live share on ``on`` within each group of facilities (``key`` of a facility code)."""
    groups: dict[str, dict[str, date | None]] = {}
    for code, started in go_live.items():
        groups.setdefault(key(code), {})[code] = started
    return {name: live_share(group, on=on) for name, group in sorted(groups.items())}


def deadline_share(go_live: Mapping[str, date | None], *, kinds: Mapping[str, str], deadline: Deadline) -> Share:
    """How many of the deadline's facilities are live (or planned live) by its due date."""
    return live_share(of_kinds(go_live, kinds=kinds, wanted=deadline.kinds), on=deadline.due)


def electronic_results(orders: Iterable[OrderOutcome], *, go_live: Mapping[str, date | None]) -> Share:
    """Performed tests done at a facility whose EMR was live on the order day (Vietnam
    time), of all performed tests: the results that reach the hub electronically."""
    performed = [o for o in orders if o.outcome == "performed"]
    electronic = sum(1 for o in performed if is_live(go_live.get(o.facility), on=_local_day(o)))
    return Share(electronic, len(performed))


def _local_day(order: OrderOutcome) -> date:
    return order.at.astimezone(VIETNAM_TZ).date()


def referral_visits(orders: Iterable[OrderOutcome]) -> dict[tuple[int, str], list[OrderOutcome]]:
    """The orders of each referral visit, keyed by citizen and visit time (ISO)."""
    visits: dict[tuple[int, str], list[OrderOutcome]] = {}
    for order in orders:
        if order.visit_kind == "referral":
            visits.setdefault((order.citizen, order.at.isoformat()), []).append(order)
    return visits


def referrals_with_shared_results(orders: Iterable[OrderOutcome]) -> Share:
    """Referral visits (with at least one ordered test) where the receiving hospital could
    see at least one earlier result at the hub (any order of the visit with
    ``prior_published``), of all referral visits."""
    visits = referral_visits(orders).values()
    return Share(sum(1 for v in visits if _shared(v)), len(visits))


def referrals_with_shared_results_by(orders: Iterable[OrderOutcome], *,
                                     key: Callable[[str], str]) -> dict[str, Share]:
    """The same share within each group of receiving facilities (``key`` of a facility code)."""
    groups: dict[str, list[list[OrderOutcome]]] = {}
    for visit in referral_visits(orders).values():
        groups.setdefault(key(visit[0].facility), []).append(visit)
    return {name: Share(sum(1 for v in visits if _shared(v)), len(visits)) for name, visits in sorted(groups.items())}


def _shared(visit: list[OrderOutcome]) -> bool:
    return any(o.prior_published for o in visit)


def projected_full_adoption(monthly: list[MonthShare]) -> str | None:
    """The month all facilities would be live at the run's pace, or None without progress.

    The pace is the least-squares slope of the monthly shares; the projection starts
    from the last month's share. A run already at 100% gives its first month at 100%.
    """
    points = [(i, m.live.value) for i, m in enumerate(monthly) if m.live.value is not None]
    if not points:
        return None
    done = next((monthly[i].month for i, v in points if v >= 1), None)
    if done is not None:
        return done
    slope = _slope(points)
    if slope <= 0:
        return None
    last_index, last_share = points[-1]
    return _add_months(monthly[last_index].month, math.ceil((1 - last_share) / slope - 1e-9))


def _slope(points: list[tuple[int, float]]) -> float:
    if len(points) < 2:
        return 0.0
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    spread = sum((x - mean_x) ** 2 for x, _ in points)
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / spread


def _add_months(month: str, count: int) -> str:
    year, number = (int(part) for part in month.split("-"))
    index = year * 12 + number - 1 + count
    return f"{index // 12:04d}-{index % 12 + 1:02d}"
