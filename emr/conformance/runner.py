"""Runs each property with Hypothesis against a server and keeps the shrunk counterexample's requests.

Every example starts a fresh request log. When a property fails, Hypothesis shrinks
the failing example and runs the smallest one last; its log is the counterexample.
Hypothesis keeps no database here (nothing is written where the kit is run) and
prints nothing; ``seed`` makes a run repeatable.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
from hypothesis import HealthCheck, Phase, Verbosity, given, seed, settings
from hypothesis import strategies as st
from hypothesis.errors import FlakyFailure
from hypothesis.reporting import with_reporter

from emr.conformance.client import Exchange, FhirClient, NoAnswer
from emr.conformance.curl import Replay, render
from emr.conformance.properties import all_properties
from emr.conformance.session import Property, RunScope, Session, Violation
from emr.errors import InvalidInput


@dataclass(frozen=True)
class Options:
    base_url: str
    run_id: str
    seed: int
    max_examples: int = 25
    token: str | None = None
    only: tuple[str, ...] = ()
    concurrency: int = 8
    timeout: float = 30.0
    max_shrinks: int = 100  # examples run to shrink a failure before the smallest so far is reported


@dataclass(frozen=True)
class Outcome:
    key: str
    title_vi: str
    title_en: str
    examples: int
    seconds: float
    message_en: str | None = None
    message_vi: str | None = None
    counterexample: list[Exchange] = field(default_factory=list)
    replay: str = ""  # the counterexample as a bash script of curl lines

    @property
    def passed(self) -> bool:
        return self.message_en is None

    def title(self, lang: str) -> str:
        return self.title_vi if lang == "vi" else self.title_en

    def message(self, lang: str) -> str | None:
        return self.message_vi if lang == "vi" else self.message_en


@dataclass(frozen=True)
class Report:
    options: Options
    outcomes: list[Outcome]
    seconds: float

    @property
    def passed(self) -> bool:
        return all(o.passed for o in self.outcomes)


def run_conformance(options: Options, *, transport: httpx.BaseTransport | None = None,
                    on_outcome: Callable[[Outcome], None] | None = None) -> Report:
    """Every chosen property against ``options.base_url``; raises InvalidInput when no FHIR server answers there."""
    chosen = _chosen(options.only)
    client = FhirClient(options.base_url, token=options.token, timeout=options.timeout, transport=transport)
    started = time.monotonic()
    try:
        _preflight(client)
        session = Session(client, RunScope(options.run_id), concurrency=options.concurrency)
        outcomes = []
        for prop in chosen:
            outcomes.append(run_property(prop, session, options))
            if on_outcome:
                on_outcome(outcomes[-1])
    finally:
        client.close()
    return Report(options, outcomes, time.monotonic() - started)


def _chosen(only: tuple[str, ...]) -> list[Property]:
    known = all_properties()
    unknown = sorted(set(only) - {p.key for p in known})
    if unknown:
        raise InvalidInput(f"no property {', '.join(unknown)}; the properties are {', '.join(p.key for p in known)}")
    return [p for p in known if not only or p.key in only]


def _preflight(client: FhirClient) -> None:
    try:
        answer = client.request("GET", "metadata")
    except NoAnswer as exc:
        raise InvalidInput(f"no server answers at {client.base_url} ({exc})") from exc
    kind = answer.resource().get("resourceType")
    if answer.status != 200 or kind != "CapabilityStatement":
        raise InvalidInput(f"{client.base_url}/metadata answered {answer.status} "
                           f"{kind or 'without a FHIR resource'}, not a CapabilityStatement: is it a FHIR base URL?")


@dataclass
class _Trace:
    """What the runner saw of a property's examples."""

    examples: int = 0
    since_failure: int = 0
    failures: list[tuple[BaseException, list[Exchange], Replay]] = field(default_factory=list)


def run_property(prop: Property, session: Session, options: Options) -> Outcome:
    trace = _Trace()

    def example(data: st.DataObject) -> None:
        if trace.failures:
            trace.since_failure += 1
            if trace.since_failure > options.max_shrinks:
                raise trace.failures[-1][0]  # shrinking is over: the smallest failure seen stands
        trace.examples += 1
        session.client.begin_example()
        session.scope.begin_example()
        try:
            prop.check(session, data)
        except Exception as exc:
            replay = Replay(session.client.base_url, session.scope.example, tuple(session.scope.national_ids))
            trace.failures.append((exc, session.client.exchanges, replay))
            raise

    test = seed(options.seed)(_settings(options)(given(st.data())(example)))
    started = time.monotonic()
    try:
        with with_reporter(lambda _message: None):
            test()
    except Exception as exc:  # noqa: BLE001 - whatever the property raised is its failure
        return _failed(prop, exc, trace, time.monotonic() - started)
    return Outcome(prop.key, prop.title_vi, prop.title_en, trace.examples, time.monotonic() - started)


def _settings(options: Options) -> settings:
    return settings(max_examples=options.max_examples, deadline=None, database=None, derandomize=False,
                    phases=(Phase.explicit, Phase.generate, Phase.shrink), suppress_health_check=list(HealthCheck),
                    report_multiple_bugs=False, print_blob=False, verbosity=Verbosity.quiet)


def _failed(prop: Property, raised: BaseException, trace: _Trace, seconds: float) -> Outcome:
    cause, exchanges, replay = _cause(raised, trace)
    en, vi = _messages(cause)
    if isinstance(raised, FlakyFailure):
        en = f"{en} (failed, then passed when the same example ran again: a race?)"
        vi = f"{vi} (thất bại rồi lại đạt khi chạy lại cùng ví dụ: có thể do tranh chấp đồng thời?)"
    return Outcome(prop.key, prop.title_vi, prop.title_en, trace.examples, seconds, en, vi, exchanges,
                   render(exchanges, replay) if exchanges else "")


def _cause(raised: BaseException, trace: _Trace) -> tuple[BaseException, list[Exchange], Replay]:
    """The failure to report: the one Hypothesis raised if it is known, else the last one seen."""
    for exc, exchanges, replay in reversed(trace.failures):
        if exc is raised:
            return exc, exchanges, replay
    if trace.failures:
        return trace.failures[-1]
    return raised, [], Replay("", "", ())


def _messages(exc: BaseException) -> tuple[str, str]:
    if isinstance(exc, Violation):
        return exc.en, exc.vi
    if isinstance(exc, NoAnswer):
        return f"the server did not answer: {exc}", f"máy chủ không trả lời: {exc}"
    text = f"{type(exc).__name__}: {exc}"
    return (f"the kit could not read the server's answer ({text})",
            f"không đọc được câu trả lời của máy chủ ({text})")
