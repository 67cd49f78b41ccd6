"""Avoided tests and why the rest were repeated, as pure functions over the run record.

An *avoided* test is an ordered test whose outcome is ``reused``: the doctor accepted a
result from elsewhere instead of repeating it. What it saves is read from the test
catalogue: the insurance price, the turnaround time, a blood draw (counted once per
patient visit, however many blood tests of that visit were reused) and, for imaging
with ionising radiation, one exposure per avoided study.

A *repeat* is a performed test whose earlier result really existed within its validity
window (``prior_existed``); its ``why`` says what stopped the reuse. Nothing here reads
a file or a clock: the caller passes the orders and the catalogue.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from emr.catalog import Facility, LabTest
from emr.fhir.dates import VIETNAM_TZ
from emr.identity import Province
from emr.sim.record import OrderOutcome

# What-if groups: the reasons a change of policy would have removed.
LAB_RECOGNITION_REASONS = frozenset({"lab-not-recognised"})
NO_EMR_REASONS = frozenset({"source-on-paper", "no-emr"})


@dataclass(frozen=True)
class Tally:
    """Ordered, performed and avoided tests of one group, and what the avoided ones saved."""

    ordered: int = 0
    performed: int = 0
    avoided: int = 0
    vnd_saved: int = 0
    blood_draws_avoided: int = 0
    radiation_exposures_avoided: int = 0
    turnaround_hours_saved: float = 0.0

    def as_dict(self) -> dict:
        return {
            "ordered": self.ordered,
            "performed": self.performed,
            "avoided": self.avoided,
            "vnd_saved": self.vnd_saved,
            "blood_draws_avoided": self.blood_draws_avoided,
            "radiation_exposures_avoided": self.radiation_exposures_avoided,
            "turnaround_hours_saved": self.turnaround_hours_saved,
        }


@dataclass(frozen=True)
class WhatIf:
    """How many more tests a change would have avoided: the repeats it removes, times the
    share of offered results doctors accept, rounded half up to a whole test.

    An estimate, not a re-simulation: it assumes the removed obstacle was the only one
    (the result was otherwise reusable) and that doctors accept as often as in the run."""

    repeats: int
    doctor_accepts_reuse: float

    @property
    def more_avoided(self) -> int:
        return math.floor(self.repeats * self.doctor_accepts_reuse + 0.5)


def month_of(at: datetime) -> str:
    """``YYYY-MM`` of an order time, in Vietnam time (UTC+7)."""
    return at.astimezone(VIETNAM_TZ).strftime("%Y-%m")


def visit_of(order: OrderOutcome) -> tuple[int, str, datetime]:
    """The patient visit an order belongs to: the citizen, the facility and the visit time."""
    return order.citizen, order.facility, order.at


def is_avoided(order: OrderOutcome) -> bool:
    return order.outcome == "reused"


def tally(orders: Iterable[OrderOutcome], *, tests: Mapping[str, LabTest]) -> Tally:
    """The counts and savings of a group of orders."""
    orders = list(orders)
    avoided = [o for o in orders if is_avoided(o)]
    return Tally(
        ordered=len(orders),
        performed=sum(1 for o in orders if o.outcome == "performed"),
        avoided=len(avoided),
        vnd_saved=sum(tests[o.test].price_vnd.value for o in avoided),
        blood_draws_avoided=len({visit_of(o) for o in avoided if tests[o.test].blood_draw}),
        radiation_exposures_avoided=sum(1 for o in avoided if tests[o.test].radiation),
        turnaround_hours_saved=round(float(sum(tests[o.test].turnaround_hours.value for o in avoided)), 1),
    )


def breakdown(orders: Iterable[OrderOutcome], *, tests: Mapping[str, LabTest],
              key: Callable[[OrderOutcome], str]) -> dict[str, Tally]:
    """One tally per value of ``key``, in key order."""
    groups: dict[str, list[OrderOutcome]] = {}
    for order in orders:
        groups.setdefault(key(order), []).append(order)
    return {name: tally(group, tests=tests) for name, group in sorted(groups.items())}


def dimensions(*, tests: Mapping[str, LabTest], facilities: Mapping[str, Facility],
               provinces: Mapping[str, Province]) -> dict[str, Callable[[OrderOutcome], str]]:
    """The report's breakdowns: how each order is keyed in each of them.

    Provinces are keyed by code: the pre-2025 three-digit code of the facility, and the
    two-digit code of the province it belongs to since the 1 July 2025 merger.
    """
    return {
        "facility": lambda o: o.facility,
        "province_pre_2025": lambda o: facilities[o.facility].province_code,
        "province_2025": lambda o: provinces[facilities[o.facility].province_code].post_2025_code,
        "test": lambda o: o.test,
        "category": lambda o: tests[o.test].category,
        "month": lambda o: month_of(o.at),
    }


def repeats(orders: Iterable[OrderOutcome]) -> list[OrderOutcome]:
    """Performed tests whose earlier result existed and was still valid."""
    return [o for o in orders if o.outcome == "performed" and o.prior_existed]


def repeats_by_reason(orders: Iterable[OrderOutcome]) -> dict[str, int]:
    """Repeats counted by ``why``, most frequent first (ties by reason)."""
    counts = Counter(o.why or "unknown" for o in repeats(orders))
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def what_if(orders: Iterable[OrderOutcome], *, reasons: frozenset[str], doctor_accepts_reuse: float) -> WhatIf:
    """The repeats a change would remove (those whose ``why`` is in ``reasons``)."""
    removed = sum(1 for o in repeats(orders) if o.why in reasons)
    return WhatIf(repeats=removed, doctor_accepts_reuse=doctor_accepts_reuse)
