"""The dashboard in a real browser: served by uvicorn, fed by a simulation, read by headless Chromium.

The page is opened on an empty hub, a short simulation runs against the hub over
HTTP, and the page must catch up by itself; then every number it shows is checked
against the hub's FHIR API, and the language toggle is clicked. The dashboard is public;
the hub runs with authentication off (``emr serve --no-auth``) so that the simulated
hospitals and the checks can reach its FHIR API without tokens.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator

import httpx
import pytest

from emr.catalog import load_facilities, load_tests
from emr.config import Settings
from emr.fhir.builders import REUSE_DECISION_SYSTEM
from emr.sim.runner import SimulationRequest, simulate
from tests.browser import chromium, chromium_problem
from tests.serving import served_hub

REUSED = f"{REUSE_DECISION_SYSTEM}|reused"
REPEATED = f"{REUSE_DECISION_SYSTEM}|repeated"
LOINC_ANY = "http://loinc.org|"


@pytest.fixture(scope="module")
def browser() -> Iterator:
    problem = chromium_problem()
    if problem:
        if os.environ.get("CI"):
            pytest.fail(f"CI needs the browser: {problem}")
        pytest.skip(problem)
    with chromium() as launched:
        yield launched


@pytest.fixture
def hub(tmp_path) -> Iterator[str]:
    with served_hub(f"sqlite:///{tmp_path / 'hub.db'}", auth_required=False) as base:
        yield base


def count(base: str, rtype: str, **params: str) -> int:
    r = httpx.get(f"{base}/{rtype}", params={**params, "_summary": "count"}, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()["total"]


def vnd_of_reused(base: str) -> int:
    """The catalogue price of every reused result's test, read through the FHIR API."""
    prices = {code: t.price_vnd.value for code, t in load_tests(Settings().data_dir / "tests.yaml").items()}
    url, params, total = f"{base}/DetectedIssue", {"mitigation": REUSED, "_include": "DetectedIssue:implicated",
                                                   "_count": "200"}, 0
    while url:
        bundle = httpx.get(url, params=params, timeout=30).json()
        results = {e["resource"]["id"]: e["resource"] for e in bundle.get("entry", [])
                   if e["resource"]["resourceType"] == "Observation"}
        for entry in bundle.get("entry", []):
            issue = entry["resource"]
            if issue["resourceType"] == "DetectedIssue":
                observation = next(i["reference"] for i in issue["implicated"] if i["reference"].startswith("Obs"))
                total += prices[results[observation.split("/")[1]]["code"]["coding"][0]["code"]]
        url, params = next((link["url"] for link in bundle.get("link", []) if link["relation"] == "next"), None), None
    return total


def shown(page, metric: str) -> str:
    return page.locator(f'[data-metric="{metric}"]').inner_text().strip()


def number(text: str, lang: str) -> int:
    return int(text.replace("." if lang == "vi" else ",", ""))


def test_page_follows_a_simulation_and_shows_the_hubs_answers(hub: str, browser, tmp_path):
    root = hub.removesuffix("/fhir")
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.goto(f"{root}/?refresh=1")
    assert shown(page, "avoided.tests") == "0" and shown(page, "adoption.publishing") == "0/17"

    simulate(Settings(), SimulationRequest(scenario="national-pilot-2025", seed=7, patients=80,
                                           out=tmp_path / "run", hub=hub))
    observations = count(hub, "Observation")
    page.wait_for_function(
        "n => document.querySelector('[data-metric=\"records.Observation\"]').textContent.replace(/\\./g, '') == n",
        arg=str(observations), timeout=20_000)

    reused = count(hub, "DetectedIssue", mitigation=REUSED)
    assert reused > 0, "the simulation should reuse at least one result"
    assert number(shown(page, "avoided.tests"), "vi") == reused
    assert number(shown(page, "decisions.repeated"), "vi") == count(hub, "DetectedIssue", mitigation=REPEATED)
    assert number(shown(page, "avoided.vnd"), "vi") == vnd_of_reused(hub)
    assert number(shown(page, "performed"), "vi") == count(hub, "ServiceRequest", code=LOINC_ANY)
    assert number(shown(page, "records.Person"), "vi") == count(hub, "Person")
    publishing = 0
    for code in load_facilities(Settings().hospitals_dir):
        org = f"Organization/{code}"
        results = count(hub, "Observation", performer=org)
        patients = count(hub, "Patient", organization=org)
        publishing += bool(results or patients)
        assert number(shown(page, f"facilities.{code}.results"), "vi") == results, code
        assert number(shown(page, f"facilities.{code}.patients"), "vi") == patients, code
    assert shown(page, "adoption.publishing") == f"{publishing}/17"
    assert not re.search(r"\b\d{12}\b", page.inner_text("body")), "a national ID is on the page"

    page.click("#lang-toggle")
    page.wait_for_selector("html[lang=en]")
    assert page.locator(".card .label").first.inner_text() == "Tests avoided"
    assert number(shown(page, "avoided.vnd"), "en") == vnd_of_reused(hub)
    assert "What the hub knows and does not know" in page.inner_text("body")
    assert errors == []
