"""The run record: one row per ordered test, the visits, and the summary built from them.

``summary.json`` and ``orders.ndjson`` in the run directory are the machine-readable
record the reports read. Both are written with sorted keys and no wall-clock time,
so the same scenario, seed and size give byte-identical files.

A run of a million people orders tens of millions of tests, so the record keeps none
of them: each ``OrderOutcome`` is written to ``orders.ndjson`` as it happens (under a
``.partial`` name until the run is written out) and counted into an ``OrderTally``,
whose totals are all the summary needs. Memory stays flat as the run grows.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import BinaryIO

import orjson

from emr.catalog import Facility, LabTest
from emr.sim.journeys import Visit
from emr.sim.scenario import Scenario


@dataclass(frozen=True)
class OrderOutcome:
    at: datetime
    citizen: int
    facility: str
    visit_kind: str
    test: str
    prior_existed: bool  # ground truth: a final result of this test was within its window
    prior_published: bool  # ... and one of them had reached the hub
    outcome: str  # "reused" | "performed"
    hub_reason: str | None  # what $check-reuse said, when asked and it said repeat
    why: str | None  # why it was performed: a hub reason, an override, no-emr, hub-unavailable …


@dataclass
class OrderTally:
    """Running totals over the ordered tests, in the order they are added.

    Sums are added one order at a time, as ``sum`` over the list would, so the totals
    are the same floats. Orders arrive in simulated-time order (the clock plays them
    so), which lets "blood draws avoided" count distinct (citizen, instant) pairs by
    remembering only the pairs of the current instant.
    """

    tests: dict[str, LabTest]
    ordered: int = 0
    performed: int = 0
    reused: int = 0
    repeats: int = 0
    repeats_by_reason: Counter = field(default_factory=Counter)
    performed_by_reason: Counter = field(default_factory=Counter)
    vnd_saved: int = 0
    blood_draws_avoided: int = 0
    radiation_exposures_avoided: int = 0
    turnaround_hours_saved: float = 0
    by_facility_test: dict[tuple[str, str], Counter] = field(default_factory=dict)
    _instant: datetime | None = None
    _draws_now: set[int] = field(default_factory=set)

    def add(self, o: OrderOutcome) -> None:
        self.ordered += 1
        self.by_facility_test.setdefault((o.facility, o.test), Counter())[o.outcome] += 1
        if o.outcome == "performed":
            self._performed(o)
        elif o.outcome == "reused":
            self._reused(o)

    def _performed(self, o: OrderOutcome) -> None:
        self.performed += 1
        why = o.why or "unknown"
        self.performed_by_reason[why] += 1
        if o.prior_existed:
            self.repeats += 1
            self.repeats_by_reason[why] += 1

    def _reused(self, o: OrderOutcome) -> None:
        spec = self.tests[o.test]
        self.reused += 1
        self.vnd_saved += spec.price_vnd.value
        self.radiation_exposures_avoided += 1 if spec.radiation else 0
        self.turnaround_hours_saved += spec.turnaround_hours.value
        if spec.blood_draw:
            self._blood_draw(o.citizen, o.at)

    def _blood_draw(self, citizen: int, at: datetime) -> None:
        if at != self._instant:
            self._instant, self._draws_now = at, set()
        if citizen not in self._draws_now:
            self._draws_now.add(citizen)
            self.blood_draws_avoided += 1

    def facility_tests(self) -> list[dict]:
        return [{"facility": f, "test": t, "ordered": c["reused"] + c["performed"], "performed": c["performed"],
                 "reused": c["reused"]} for (f, t), c in sorted(self.by_facility_test.items())]


@dataclass
class RunRecord:
    """What a run did. Orders go to ``sink`` (one JSON line each) and into ``tally``."""

    scenario: Scenario
    seed: int
    patients: int
    tally: OrderTally
    sink: BinaryIO
    visits: Counter = field(default_factory=Counter)
    citizens_seen: bytearray = field(default_factory=bytearray)  # one flag per citizen index
    adoption: dict[str, bool] = field(default_factory=dict)
    go_live: dict[str, str | None] = field(default_factory=dict)
    requests: int = 0
    delivery: dict = field(default_factory=dict)

    def add(self, outcome: OrderOutcome) -> None:
        self.sink.write(orjson.dumps(vars(outcome), option=orjson.OPT_SORT_KEYS) + b"\n")  # fields are flat: as asdict
        self.tally.add(outcome)

    def visit(self, visit: Visit) -> None:
        self.visits[visit.kind] += 1
        if visit.citizen >= len(self.citizens_seen):
            self.citizens_seen.extend(bytes(visit.citizen + 1 - len(self.citizens_seen)))
        self.citizens_seen[visit.citizen] = 1

    def finish(self, *, facilities: dict[str, Facility], emr_live: Callable[[str, date], bool],
               go_live: Callable[[str], date | None], requests: int, delivery: dict) -> None:
        end = self.scenario.period.end
        codes = [code for code in self.scenario.facilities if code in facilities]
        self.adoption = {code: emr_live(code, end) for code in codes}
        self.go_live = {code: (d.isoformat() if (d := go_live(code)) else None) for code in codes}
        self.requests = requests
        self.delivery = delivery


def summarise(record: RunRecord) -> dict:
    """The run's totals, as plain JSON-ready data."""
    tally = record.tally
    return {
        "scenario": record.scenario.name,
        "scenario_version": record.scenario.version,
        "seed": record.seed,
        "patients": record.patients,
        "period": {"start": record.scenario.period.start.isoformat(), "end": record.scenario.period.end.isoformat()},
        "people_with_visits": sum(record.citizens_seen),
        "visits": sum(record.visits.values()),
        "referrals": record.visits["referral"],
        "back_referrals": record.visits["back-referral"],
        "tests_ordered": tally.ordered,
        "tests_performed": tally.performed,
        "tests_reused": tally.reused,
        "repeats_performed": tally.repeats,
        "repeats_by_reason": dict(sorted(tally.repeats_by_reason.items())),
        "performed_by_reason": dict(sorted(tally.performed_by_reason.items())),
        "vnd_saved": tally.vnd_saved,
        "blood_draws_avoided": tally.blood_draws_avoided,
        "radiation_exposures_avoided": tally.radiation_exposures_avoided,
        "turnaround_hours_saved": round(tally.turnaround_hours_saved, 1),
        "counterfactual_no_hub": {"tests_performed": tally.ordered},
        "emr_live_at_end": {"facilities": sum(record.adoption.values()), "of": len(record.adoption)},
        "emr_go_live": dict(sorted(record.go_live.items())),
        "doctor_accepts_reuse": record.scenario.doctor_accepts_reuse.value,
        "hub_requests": record.requests,
        "delivery": record.delivery,
        "by_facility_test": tally.facility_tests(),
    }


def orders_path(directory: Path) -> Path:
    """Where a run streams its orders while it plays; ``write_run`` gives the file its final name."""
    return directory / "orders.ndjson.partial"


def write_run(directory: Path, summary: dict) -> None:
    """Write ``summary.json`` and move the streamed orders (closed by now) to ``orders.ndjson``."""
    directory.mkdir(parents=True, exist_ok=True)
    options = orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS
    (directory / "summary.json").write_bytes(orjson.dumps(summary, option=options) + b"\n")
    orders_path(directory).replace(directory / "orders.ndjson")
