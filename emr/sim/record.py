"""The run record: one row per ordered test, the visits, and the summary built from them.

``summary.json`` and ``orders.ndjson`` in the run directory are the machine-readable
record the reports read. Both are written with sorted keys and no wall-clock time,
so the same scenario, seed and size give byte-identical files.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from pathlib import Path

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
class RunRecord:
    scenario: Scenario
    seed: int
    patients: int
    orders: list[OrderOutcome] = field(default_factory=list)
    visits: Counter = field(default_factory=Counter)
    citizens_seen: set[int] = field(default_factory=set)
    adoption: dict[str, bool] = field(default_factory=dict)
    go_live: dict[str, str | None] = field(default_factory=dict)
    requests: int = 0
    delivery: dict = field(default_factory=dict)

    def add(self, outcome: OrderOutcome) -> None:
        self.orders.append(outcome)

    def visit(self, visit: Visit) -> None:
        self.visits[visit.kind] += 1
        self.citizens_seen.add(visit.citizen)

    def finish(self, *, facilities: dict[str, Facility], emr_live: Callable[[str, date], bool],
               go_live: Callable[[str], date | None], requests: int, delivery: dict) -> None:
        end = self.scenario.period.end
        codes = [code for code in self.scenario.facilities if code in facilities]
        self.adoption = {code: emr_live(code, end) for code in codes}
        self.go_live = {code: (d.isoformat() if (d := go_live(code)) else None) for code in codes}
        self.requests = requests
        self.delivery = delivery


def summarise(record: RunRecord, tests: dict[str, LabTest]) -> dict:
    """The run's totals, as plain JSON-ready data."""
    reused = [o for o in record.orders if o.outcome == "reused"]
    performed = [o for o in record.orders if o.outcome == "performed"]
    repeats = [o for o in performed if o.prior_existed]
    return {
        "scenario": record.scenario.name,
        "scenario_version": record.scenario.version,
        "seed": record.seed,
        "patients": record.patients,
        "period": {"start": record.scenario.period.start.isoformat(), "end": record.scenario.period.end.isoformat()},
        "people_with_visits": len(record.citizens_seen),
        "visits": sum(record.visits.values()),
        "referrals": record.visits["referral"],
        "back_referrals": record.visits["back-referral"],
        "tests_ordered": len(record.orders),
        "tests_performed": len(performed),
        "tests_reused": len(reused),
        "repeats_performed": len(repeats),
        "repeats_by_reason": dict(sorted(Counter(o.why or "unknown" for o in repeats).items())),
        "performed_by_reason": dict(sorted(Counter(o.why or "unknown" for o in performed).items())),
        "vnd_saved": sum(tests[o.test].price_vnd.value for o in reused),
        "blood_draws_avoided": len({(o.citizen, o.at) for o in reused if tests[o.test].blood_draw}),
        "radiation_exposures_avoided": sum(1 for o in reused if tests[o.test].radiation),
        "turnaround_hours_saved": round(sum(tests[o.test].turnaround_hours.value for o in reused), 1),
        "counterfactual_no_hub": {"tests_performed": len(record.orders)},
        "emr_live_at_end": {"facilities": sum(record.adoption.values()), "of": len(record.adoption)},
        "emr_go_live": dict(sorted(record.go_live.items())),
        "doctor_accepts_reuse": record.scenario.doctor_accepts_reuse.value,
        "hub_requests": record.requests,
        "delivery": record.delivery,
        "by_facility_test": _by_facility_test(record.orders),
    }


def _by_facility_test(orders: list[OrderOutcome]) -> list[dict]:
    table: dict[tuple[str, str], Counter] = {}
    for o in orders:
        table.setdefault((o.facility, o.test), Counter())[o.outcome] += 1
    return [{"facility": f, "test": t, "ordered": c["reused"] + c["performed"], "performed": c["performed"],
             "reused": c["reused"]} for (f, t), c in sorted(table.items())]


def write_run(directory: Path, record: RunRecord, summary: dict) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    options = orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS
    (directory / "summary.json").write_bytes(orjson.dumps(summary, option=options) + b"\n")
    with (directory / "orders.ndjson").open("wb") as out:
        for outcome in record.orders:
            out.write(orjson.dumps(asdict(outcome), option=orjson.OPT_SORT_KEYS) + b"\n")
