"""Referral scenarios, as data: the schema of ``scenarios/*.yaml`` and its loader.

A scenario says who lives where, why they go to a facility, which tests each visit
orders, how often and how soon they are referred up (and back down), how willing the
receiving doctor is to reuse a result, when each facility's EMR goes live, when the
hub is down, and what goes wrong on the network between the facilities and the hub.
Every rate, share, probability and delay is a ``Sourced`` value.
"""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from emr.catalog import Facility, LabTest
from emr.errors import DataFileError, Problem
from emr.sourced import Sourced

Probability = Annotated[float, Field(ge=0, le=1)]
Share = Annotated[float, Field(ge=0)]
Days = Annotated[float, Field(ge=0)]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Period(_Frozen):
    start: date
    end: date


class Delay(_Frozen):
    """A triangular distribution of days."""

    low: Sourced[Days]
    mode: Sourced[Days]
    high: Sourced[Days]


class Condition(_Frozen):
    id: str = Field(pattern=r"^[a-z0-9-]+$")
    name_vi: str
    name_en: str
    share: Sourced[Share]
    local_tests: tuple[str, ...]
    referral_probability: Sourced[Probability]
    refer_to: Literal["next", "central"] = "next"
    referral_tests: tuple[str, ...]
    back_referral_probability: Sourced[Probability]
    follow_up_tests: tuple[str, ...] = ()


class EmrTimeline(_Frozen):
    """``registry``: each facility's go-live date from ``hospitals/``; ``none``: paper everywhere.
    ``go_live`` overrides single facilities (null = never in this scenario)."""

    mode: Literal["registry", "none"] = "registry"
    go_live: dict[str, Sourced[date | None]] = {}


class RegistrationErrors(_Frozen):
    rate: Sourced[Probability]
    kinds: dict[str, Sourced[Share]]


class Outage(_Frozen):
    """A window in which the hub cannot be reached at all (connections are refused)."""

    start: datetime
    end: datetime
    note: str


class NetworkFaults(_Frozen):
    """What can go wrong with one request on a facility's link to the hub.

    One draw per request picks at most one fault, so the rates are shares of requests
    and must sum to at most 1. A sender that gets no answer (lost request, lost answer,
    a delayed or held-back request) sees a timeout and does not know whether the hub
    acted on it."""

    lost_request: Sourced[Probability]  # never reaches the hub
    lost_answer: Sourced[Probability]  # the hub acts on it; the answer never comes back
    delayed: Sourced[Probability]  # reaches the hub late, after the sender gave up waiting
    delay_minutes: Delay
    duplicated: Sourced[Probability]  # reaches the hub twice
    reordered: Sourced[Probability]  # held back, reaches the hub after the link's next request
    throttled: Sourced[Probability]  # answered 429 Too Many Requests with Retry-After, not acted on
    retry_after_seconds: Sourced[Annotated[int, Field(ge=0)]]
    server_error: Sourced[Probability]  # answered 503 by the hub's gateway, not acted on

    def rates(self) -> dict[str, float]:
        return {name: getattr(self, name).value for name in FAULT_KINDS}


FAULT_KINDS = ("lost_request", "lost_answer", "delayed", "duplicated", "reordered", "throttled", "server_error")


class Scenario(_Frozen):
    name: str = Field(pattern=r"^[a-z0-9-]+$")
    version: int = Field(ge=1)
    title_vi: str
    title_en: str
    description: str
    period: Period
    default_patients: int = Field(gt=0)
    facilities: tuple[str, ...]
    residents: dict[str, Sourced[Share]]
    referral_targets: dict[str, tuple[str, ...]] = {}
    conditions: tuple[Condition, ...]
    referral_delay_days: Delay
    back_referral_delay_days: Delay
    doctor_accepts_reuse: Sourced[Probability]
    override_reasons: dict[str, Sourced[Share]]
    preliminary_rate: Sourced[Probability]
    emr: EmrTimeline = EmrTimeline()
    registration_errors: RegistrationErrors
    hub_outages: tuple[Outage, ...] = ()
    network: NetworkFaults | None = None  # None: every request arrives once, in order
    # Share of citizens who refuse cross-facility sharing of their health data (a Consent with a
    # deny provision, recorded at each facility they visit); None: nobody refuses.
    sharing_opt_out: Sourced[Probability] | None = None


def load_scenario(path: Path) -> Scenario:
    scenario, problems = read_scenario(path)
    if problems:
        raise DataFileError(f"{path.name} is invalid ({len(problems)} problems)", problems=problems)
    return scenario


def read_scenario(path: Path) -> tuple[Scenario | None, list[Problem]]:
    label = f"{path.parent.name}/{path.name}"
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        return None, [Problem(f"cannot read: {error}", label)]
    try:
        scenario = Scenario.model_validate(document)
    except ValidationError as error:
        return None, [Problem(e["msg"], f"{label}:{'.'.join(str(p) for p in e['loc'])}") for e in error.errors()]
    return scenario, []


def scenario_paths(directory: Path) -> dict[str, Path]:
    return {path.stem: path for path in sorted(directory.glob("*.yaml"))}


def find_scenario(name_or_path: str, directory: Path) -> Path:
    path = Path(name_or_path)
    if path.suffix in {".yaml", ".yml"} and path.exists():
        return path
    known = scenario_paths(directory)
    if name_or_path not in known:
        raise DataFileError(f"no scenario '{name_or_path}'; known: {', '.join(sorted(known)) or 'none'}")
    return known[name_or_path]


def cross_check(scenario: Scenario, *, label: str, facilities: dict[str, Facility],
                tests: dict[str, LabTest], override_codes: set[str]) -> list[Problem]:
    """Rules between the scenario and the registry, catalogue and vocabularies."""
    problems = [Problem(f"facility {c} is not in hospitals/", f"{label}:facilities") for c in scenario.facilities
                if c not in facilities]
    for source, targets in scenario.referral_targets.items():
        problems += [Problem(f"facility {c} is not in the scenario", f"{label}:referral_targets.{source}")
                     for c in (source, *targets) if c not in scenario.facilities]
    for condition in scenario.conditions:
        for field in ("local_tests", "referral_tests", "follow_up_tests"):
            problems += [Problem(f"test {c} is not an orderable test of the catalogue",
                                 f"{label}:conditions.{condition.id}.{field}")
                         for c in getattr(condition, field) if c not in tests or not tests[c].orderable]
    problems += [Problem(f"unknown override reason '{r}'", f"{label}:override_reasons")
                 for r in scenario.override_reasons if r not in override_codes]
    if scenario.period.end <= scenario.period.start:
        problems.append(Problem("the period must end after it starts", f"{label}:period"))
    if abs(sum(c.share.value for c in scenario.conditions) - 1) > 0.01:
        problems.append(Problem("condition shares must sum to 1", f"{label}:conditions"))
    if abs(sum(s.value for s in scenario.residents.values()) - 1) > 0.01:
        problems.append(Problem("resident shares must sum to 1", f"{label}:residents"))
    return problems + _fault_problems(scenario, label)


def _fault_problems(scenario: Scenario, label: str) -> list[Problem]:
    problems = []
    for i, outage in enumerate(scenario.hub_outages):
        if outage.start.tzinfo is None or outage.end.tzinfo is None:
            problems.append(Problem("outage times need a time zone (e.g. +07:00)", f"{label}:hub_outages.{i}"))
        elif outage.end <= outage.start:
            problems.append(Problem("an outage must end after it starts", f"{label}:hub_outages.{i}"))
    if scenario.network and sum(scenario.network.rates().values()) > 1:
        problems.append(Problem("network fault rates are shares of requests and must sum to at most 1",
                                f"{label}:network"))
    return problems
