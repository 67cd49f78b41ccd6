"""`emr conformance` passes against the hub, and catches the bugs of a deliberately broken toy server."""

from __future__ import annotations

import shutil
import subprocess
import xml.etree.ElementTree as ET

import pytest
from typer.testing import CliRunner

from emr.cli import app
from emr.conformance import Options, Report, run_conformance
from emr.conformance.properties import all_properties
from tests.serving import free_port, served_app, served_hub
from tests.toy_fhir_server import ToyServer

runner = CliRunner()
TOY_PROPERTIES = ("create-read", "search-identifier", "conditional-create", "transaction-atomic", "date-search",
                  "paging", "bad-input", "national-id-search")


def _failures(report: Report) -> str:
    return "\n\n".join(f"{o.key}: {o.message_en}\n{o.replay}" for o in report.outcomes if not o.passed)


def _run(base: str, *, only: tuple[str, ...] = (), examples: int = 2, token: str | None = None) -> Report:
    return run_conformance(Options(base_url=base, run_id="pytest", seed=7, max_examples=examples,
                                   only=only, token=token, max_shrinks=15))


def test_the_kit_passes_against_the_hub_on_postgresql(postgres_url):
    with served_hub(postgres_url, auth_required=False) as base:
        report = _run(base)
    assert [o.key for o in report.outcomes] == [p.key for p in all_properties()]
    assert report.passed, _failures(report)


def test_emr_conformance_passes_against_the_hub_and_writes_junit(sqlite_url, tmp_path):
    junit = tmp_path / "conformance.xml"
    with served_hub(sqlite_url, auth_required=False) as base:
        result = runner.invoke(app, ["conformance", "--base-url", base, "--max-examples", "2", "--seed", "3",
                                     "--junit", str(junit), "--lang", "en"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "8/8 properties passed" in result.output and "--seed 3" in result.output
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite.get("tests") == "8" and suite.get("failures") == "0"
    assert [case.get("name") for case in suite.iter("testcase")] == [p.key for p in all_properties()]


@pytest.mark.parametrize("minimal", [False, True], ids=["full-answers", "location-only"])
def test_the_correct_toy_server_passes(minimal):
    """The toy server without bugs passes, so the failures below are the bugs' doing; also when
    it answers a create with only a Location header."""
    with served_app(lambda base: ToyServer(base, minimal=minimal).app()) as base:
        report = _run(base, only=TOY_PROPERTIES, examples=5)
    assert report.passed, _failures(report)


@pytest.mark.parametrize("bug, prop, words", [
    ("racy-conditional-create", "conditional-create", "concurrent conditional creates"),
    ("paging-off-by-one", "paging", "next link"),
    ("half-applied-transaction", "transaction-atomic", "left"),
    ("crash-on-bad-date", "bad-input", "answered 500"),
])
def test_a_broken_server_fails_the_matching_property_with_a_curl_counterexample(bug, prop, words):
    with served_app(lambda base: ToyServer(base, bugs=frozenset({bug})).app()) as base:
        report = _run(base, only=(prop,), examples=10)
    outcome = report.outcomes[0]
    assert not outcome.passed
    assert words in outcome.message_en, outcome.message_en
    assert outcome.replay.startswith('B="${B:-') and "curl -sS" in outcome.replay
    assert outcome.message_vi and outcome.message_vi != outcome.message_en


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
@pytest.mark.parametrize("bug, prop", [
    ("racy-conditional-create", "conditional-create"),
    ("half-applied-transaction", "transaction-atomic"),
])
def test_the_counterexample_replays_the_bug_on_a_fresh_server(bug, prop):
    with served_app(lambda base: ToyServer(base, bugs=frozenset({bug})).app()) as base:
        script = _run(base, only=(prop,), examples=10).outcomes[0].replay
    fresh: list[ToyServer] = []

    def make(base: str):
        fresh.append(ToyServer(base, bugs=frozenset({bug})))
        return fresh[0].app()

    with served_app(make) as base:
        done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60,
                              env={"B": base, "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    patients = [r for (rtype, _), r in fresh[0].store.items() if rtype == "Patient"]
    if bug == "racy-conditional-create":
        mrns = [r["identifier"][0]["value"] for r in patients]
        assert len(mrns) > len(set(mrns)), "the replay should make the duplicate again"
    else:
        assert patients, "the refused transaction's Patient should be left behind again"


def test_the_token_is_sent_and_never_printed():
    secret = "s3cret-token"
    bugs = frozenset({"racy-conditional-create"})
    with served_app(lambda base: ToyServer(base, bugs=bugs, token=secret).app()) as base:
        report = _run(base, only=("create-read", "conditional-create"), token=secret, examples=10)
    passed, failed = report.outcomes
    assert passed.passed, passed.message_en
    assert not failed.passed and "401" not in failed.message_en
    assert secret not in failed.replay and '"Authorization: Bearer $FHIR_TOKEN"' in failed.replay


def test_an_address_where_nothing_answers_is_one_line_and_exit_2():
    result = runner.invoke(app, ["conformance", "--base-url", f"http://127.0.0.1:{free_port()}/fhir"])
    assert result.exit_code == 2
    assert "no server answers" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_an_unknown_property_is_refused():
    result = runner.invoke(app, ["conformance", "--base-url", "http://127.0.0.1:1/fhir", "--only", "speed"])
    assert result.exit_code == 2 and "no property speed" in result.output
