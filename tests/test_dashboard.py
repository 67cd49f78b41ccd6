"""The hub's live dashboard: its figures against a small hand-counted hub, and against the FHIR API.

Two facilities publish what a hospital EMR would: registrations, visits, orders,
results and the doctor's reuse decisions. Bắc Ninh (27001) does an HbA1c and a blood
count; Bạch Mai (01001) is offered both, reuses the HbA1c and repeats the blood count
for a clinical change. Everything else in the registry has published nothing.
"""

from __future__ import annotations

import re

import orjson
import pytest

from emr.catalog import load_tests
from emr.config import Settings
from emr.fhir import builders
from emr.fhir.builders import OVERRIDE_REASON_SYSTEM, REUSE_DECISION_SYSTEM, encounter, lab_observation, reuse_decision
from emr.identity import local_system
from tests.test_hub_reuse import HDR, register

HBA1C, CBC = "4548-4", "58410-2"
NID = "027085000777"
PRICES = {code: test.price_vnd.value for code, test in load_tests(Settings().data_dir / "tests.yaml").items()}


def post(client, resource: dict) -> str:
    r = client.post(f"/fhir/{resource['resourceType']}", content=orjson.dumps(resource), headers=HDR)
    assert r.status_code == 201, r.text
    return r.json()["id"]


def ident(facility: str, kind: str, value: str) -> dict:
    return {"system": local_system(facility, kind), "value": value}


def visit(client, pid: str, facility: str, at: str, tests: list[str]) -> list[str]:
    """A visit with a performed order and a result per test; returns the results' ids."""
    post(client, encounter(patient_ref=f"Patient/{pid}", facility_code=facility, start=at,
                           identifier=ident(facility, "encounter", at)))
    results = []
    for loinc in tests:
        post(client, builders.test_order(patient_ref=f"Patient/{pid}", facility_code=facility, loinc=loinc, display=loinc,
                                authored=at, identifier=ident(facility, "order", f"{at}-{loinc}")))
        results.append(post(client, lab_observation(patient_ref=f"Patient/{pid}", facility_code=facility,
                                                    loinc=loinc, display=loinc, collected=at)))
    return results


def decide(client, pid: str, facility: str, observation: str, at: str, *, reason: str | None = None) -> None:
    post(client, reuse_decision(patient_ref=f"Patient/{pid}", facility_code=facility, order_ref=None,
                                observation_ref=f"Observation/{observation}", identified=at,
                                reused=reason is None, override_reason=reason))


@pytest.fixture
def pilot(client):
    """The two-facility story of the module docstring, published through the FHIR API."""
    bac_ninh, bach_mai = register(client, "27001", NID), register(client, "01001", NID)
    hba1c, cbc = visit(client, bac_ninh, "27001", "2025-09-20T08:00:00+07:00", [HBA1C, CBC])
    visit(client, bach_mai, "01001", "2025-10-05T09:00:00+07:00", [CBC])
    decide(client, bach_mai, "01001", hba1c, "2025-10-05T09:00:00+07:00")
    decide(client, bach_mai, "01001", cbc, "2025-10-05T09:00:00+07:00", reason="clinical-change")
    return client


def count(client, path: str, **params: str) -> int:
    r = client.get(f"/fhir/{path}", params={**params, "_summary": "count"})
    assert r.status_code == 200, r.text
    return r.json()["total"]


def figures(client) -> dict:
    r = client.get("/dashboard/metrics.json")
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    return r.json()


def test_figures_are_the_hand_counted_ones(pilot):
    m = figures(pilot)
    assert m["avoided"] == {"tests": 1, "vnd": PRICES[HBA1C], "radiation_exposures": 0}
    assert m["decisions"] == {"offered": 2, "reused": 1, "repeated": 1, "reuse_rate": 0.5,
                              "override_reasons": [{"code": "clinical-change", "count": 1}]}
    assert m["adoption"]["publishing"] == 2 and m["adoption"]["registry"] == 17
    assert m["performed"] == 3 and m["as_of"] == "2025-10-05"
    rows = {row["code"]: row for row in m["facilities"]}
    assert (rows["27001"]["first_visit"], rows["27001"]["results"], rows["27001"]["performed"]) == ("2025-09-20", 2, 2)
    assert (rows["01001"]["reused"], rows["01001"]["repeated"], rows["01001"]["vnd"]) == (1, 1, PRICES[HBA1C])
    assert not rows["74001"]["publishing"] and rows["74001"]["first_visit"] is None
    assert m["tests"][0]["loinc"] == HBA1C and m["tests"][0]["reused"] == 1
    assert {p["province"]: p["publishing"] for p in m["provinces"]}["Hà Nội"] == 1


def test_figures_equal_the_fhir_api_answers(pilot):
    m = figures(pilot)
    for rtype, n in m["records"].items():
        assert n == count(pilot, rtype), rtype
    decisions = m["decisions"]
    assert decisions["reused"] == count(pilot, "DetectedIssue", mitigation=f"{REUSE_DECISION_SYSTEM}|reused")
    assert decisions["repeated"] == count(pilot, "DetectedIssue", mitigation=f"{REUSE_DECISION_SYSTEM}|repeated")
    assert decisions["offered"] == count(pilot, "DetectedIssue", code=f"{REUSE_DECISION_SYSTEM}|duplicate-test")
    assert decisions["override_reasons"][0]["count"] == count(
        pilot, "DetectedIssue", mitigation=f"{OVERRIDE_REASON_SYSTEM}|clinical-change")
    assert m["performed"] == count(pilot, "ServiceRequest", code="http://loinc.org|")
    for row in m["facilities"]:
        org = f"Organization/{row['code']}"
        assert row["patients"] == count(pilot, "Patient", organization=org)
        assert row["results"] == count(pilot, "Observation", performer=org)
        assert row["performed"] == count(pilot, "ServiceRequest", requester=org, code="http://loinc.org|")


def test_the_version_changes_when_a_figure_does(pilot):
    before = figures(pilot)
    assert figures(pilot)["version"] == before["version"]
    pid = register(pilot, "89001", "089090000001")
    visit(pilot, pid, "89001", "2025-11-02T10:00:00+07:00", [HBA1C])
    after = figures(pilot)
    assert after["version"] != before["version"] and after["adoption"]["publishing"] == 3


def test_page_shows_the_figures_in_vietnamese_and_english(pilot):
    vi = pilot.get("/").text
    assert pilot.get("/dashboard").text.count('data-metric="avoided.vnd"') == 1
    assert '<html lang="vi">' in vi and "Xét nghiệm tránh được" in vi and "Bệnh viện Bạch Mai" in vi
    assert _metric(vi, "avoided.vnd") == f"{PRICES[HBA1C]:,}".replace(",", ".")
    assert _metric(vi, "adoption.publishing") == "2/17"
    en = pilot.get("/dashboard", params={"lang": "en"}).text
    assert '<html lang="en">' in en and "Tests avoided" in en and "Bach Mai Hospital" in en
    assert _metric(en, "avoided.vnd") == f"{PRICES[HBA1C]:,}"
    assert "Doctor: clinical change" in en


def test_page_holds_no_personal_data_and_needs_no_network(pilot):
    for lang in ("vi", "en"):
        html = pilot.get("/dashboard", params={"lang": lang}).text
        assert NID not in html and not re.search(r"\b\d{12}\b", html)
        assert "Nguyễn" not in html and "Văn An" not in html
        assert not re.search(r"(src|href)=\"(https?:)?//", html)  # nothing loaded from elsewhere


def test_an_empty_hub_shows_zeros_and_the_registry(client):
    html = client.get("/dashboard").text
    assert _metric(html, "avoided.tests") == "0" and _metric(html, "adoption.publishing") == "0/17"
    assert "Chưa có quyết định nào được gửi lên." in html
    assert client.get("/dashboard/live", params={"lang": "en"}).text.startswith('<div id="live"')


def test_a_bad_language_is_refused_with_an_operation_outcome(client):
    r = client.get("/dashboard", params={"lang": "fr"})
    assert r.status_code == 400 and r.json()["resourceType"] == "OperationOutcome"


def _metric(html: str, name: str) -> str:
    found = re.search(rf'data-metric="{re.escape(name)}">([^<]*)<', html)
    assert found, name
    return found.group(1)


def test_every_province_has_its_own_tile_on_the_schematic():
    from emr.identity import load_provinces
    from emr.reports.province_tiles import LAYOUT

    provinces = load_provinces(Settings().data_dir / "provinces.yaml")
    assert set(LAYOUT) == {p.post_2025_name_vi for p in provinces.values()}
    assert len(set(LAYOUT.values())) == len(LAYOUT) == 34


def test_the_schematic_colours_provinces_by_facilities_publishing(pilot):
    from emr.reports.province_tiles import ALL_PUBLISHING, NO_FACILITY, NONE_PUBLISHING, SOME_PUBLISHING, province_tiles

    assert 'aria-label="Cơ sở đã gửi dữ liệu theo tỉnh/thành"' in pilot.get("/dashboard").text
    tiles = {t.label: t for t in province_tiles(figures(pilot)["provinces"])}
    assert (tiles["Hà Nội"].fill, tiles["Hà Nội"].note) == (ALL_PUBLISHING[0], "1/1")
    assert (tiles["Bắc Ninh"].fill, tiles["Bắc Ninh"].note) == (SOME_PUBLISHING[0], "1/4")
    assert (tiles["An Giang"].fill, tiles["An Giang"].note) == (NONE_PUBLISHING[0], "0/4")
    assert (tiles["Cà Mau"].fill, tiles["Cà Mau"].note) == (NO_FACILITY[0], "")
