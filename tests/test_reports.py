"""Reports: metrics against a hand-computed run, invariants as properties, and the files.

The small run below is written by hand (three facilities, four visits, nine ordered
tests) and every expected number is worked out in the comments, not by the code under
test. Prices, turnaround and blood/radiation flags are those of data/tests.yaml.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from emr import adoption
from emr.catalog import load_tests
from emr.config import Settings
from emr.errors import DataFileError, InvalidInput
from emr.fhir import to_model
from emr.reports import load_reference, write_reports
from emr.reports import metrics
from emr.sim.record import OrderOutcome

SETTINGS = Settings()
TESTS = load_tests(SETTINGS.data_dir / "tests.yaml")
ALL_FORMATS = {"html", "csv", "json", "fhir"}
GO_LIVE = {"01001": "2024-06-30", "24001": "2025-02-15", "27011": None}  # central, provincial, regional


def _order(at: str, citizen: int, facility: str, kind: str, test: str, outcome: str, why: str | None = None,
           *, prior: bool = False, published: bool = False) -> dict:
    return {"at": at, "citizen": citizen, "facility": facility, "visit_kind": kind, "test": test,
            "prior_existed": prior, "prior_published": published, "outcome": outcome,
            "hub_reason": None, "why": why}


A, B = "2025-01-10T02:00:00+00:00", "2025-01-31T18:30:00+00:00"  # B is 1 Feb 01:30 in Vietnam
C, D = "2025-03-05T03:00:00+00:00", "2025-03-10T01:00:00+00:00"
ORDERS = [
    # A: local visit at 24001 before its go-live: both tests on paper, no earlier result.
    _order(A, 1, "24001", "local", "2345-7", "performed", "no-emr"),
    _order(A, 1, "24001", "local", "58410-2", "performed", "no-emr"),
    # B: referral to 01001; glucose 22,400 (2 h), CBC 46,200 (1 h) and chest X-ray 73,300 (1 h) reused.
    _order(B, 1, "01001", "referral", "2345-7", "reused", prior=True, published=True),
    _order(B, 1, "01001", "referral", "58410-2", "reused", prior=True, published=True),
    _order(B, 1, "01001", "referral", "36643-5", "reused", prior=True, published=True),
    _order(B, 1, "01001", "referral", "4548-4", "performed", "lab-not-recognised", prior=True, published=True),
    # C: referral to 01001; the earlier creatinine is on paper, glucose has none.
    _order(C, 2, "01001", "referral", "2160-0", "performed", "source-on-paper", prior=True),
    _order(C, 2, "01001", "referral", "2345-7", "performed", "no-prior-result"),
    # D: local visit at 27011 (never on EMR), an earlier glucose existed elsewhere.
    _order(D, 3, "27011", "local", "2345-7", "performed", "no-emr", prior=True),
]


def write_run(directory: Path, orders: list[dict] = ORDERS, **summary: object) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    document = {"scenario": "hand-built", "scenario_version": 1, "seed": 1, "patients": 3,
                "period": {"start": "2025-01-01", "end": "2025-03-31"}, "emr_go_live": GO_LIVE,
                "doctor_accepts_reuse": 0.75, "visits": 4, "referrals": 2} | summary
    (directory / "summary.json").write_text(json.dumps(document), encoding="utf-8")
    (directory / "orders.ndjson").write_text("".join(json.dumps(o) + "\n" for o in orders), encoding="utf-8")
    return directory


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return write_run(tmp_path / "run")


@pytest.fixture
def report(run_dir: Path) -> dict:
    write_reports(run_dir, formats={"json"}, lang="vi", settings=SETTINGS)
    return json.loads((run_dir / "report.json").read_text(encoding="utf-8"))


def _rows(report: dict, dimension: str) -> dict[str, dict]:
    return {row["key"]: row for row in report["avoided_by"][dimension]}


# --- Metrics against the hand-computed run -----------------------------------------
def test_totals_match_hand_computation(report: dict) -> None:
    assert report["totals"] == {
        "ordered": 9, "performed": 6, "avoided": 3,
        "vnd_saved": 22_400 + 46_200 + 73_300,
        "blood_draws_avoided": 1,  # glucose and CBC of visit B: one draw
        "radiation_exposures_avoided": 1,  # the chest X-ray
        "turnaround_hours_saved": 4.0,  # 2 + 1 + 1
        "repeats_performed": 3,  # HbA1c (B), creatinine (C), glucose (D)
    }


def test_breakdowns_match_hand_computation(report: dict) -> None:
    facility = _rows(report, "facility")
    assert {k: (r["ordered"], r["performed"], r["avoided"]) for k, r in facility.items()} == {
        "01001": (6, 3, 3), "24001": (2, 2, 0), "27011": (1, 1, 0)}
    assert {k: r["ordered"] for k, r in _rows(report, "province_pre_2025").items()} == {"001": 6, "024": 2, "027": 1}
    post = _rows(report, "province_2025")
    assert {k: r["ordered"] for k, r in post.items()} == {"01": 6, "24": 3}  # Bắc Giang + Bắc Ninh → Bắc Ninh
    assert post["24"]["name_vi"] == "Bắc Ninh"
    month = _rows(report, "month")  # visit B falls in February, Vietnam time
    assert {k: (r["ordered"], r["avoided"]) for k, r in month.items()} == {
        "2025-01": (2, 0), "2025-02": (4, 3), "2025-03": (3, 0)}
    category = _rows(report, "category")
    assert {k: (r["ordered"], r["avoided"]) for k, r in category.items()} == {
        "biochemistry": (6, 1), "haematology": (2, 1), "imaging": (1, 1)}
    assert _rows(report, "test")["2345-7"]["vnd_saved"] == 22_400


def test_repeats_and_what_ifs(report: dict) -> None:
    repeats = report["repeats"]
    assert {r["reason"]: r["count"] for r in repeats["by_reason"]} == {
        "lab-not-recognised": 1, "no-emr": 1, "source-on-paper": 1}
    assert repeats["what_if"]["all_labs_recognised"]["more_avoided"] == 1  # 1 × 0.75 = 0.75
    assert repeats["what_if"]["all_facilities_on_emr"]["repeats"] == 2  # no-emr D + source-on-paper C
    assert repeats["what_if"]["all_facilities_on_emr"]["more_avoided"] == 2  # 2 × 0.75 = 1.5, half up


def test_adoption_matches_hand_computation(report: dict) -> None:
    section = report["adoption"]
    run_months = [m for m in section["by_month"] if m["basis"] == "run"]
    assert [(m["month"], m["all"]["numerator"], m["all"]["denominator"]) for m in run_months] == [
        ("2025-01", 1, 3), ("2025-02", 2, 3), ("2025-03", 2, 3)]
    assert [m["hospitals"]["share"] for m in run_months] == [0.5, 1.0, 1.0]
    assert section["by_month"][-1]["month"] == "2026-12"  # drawn up to the later deadline
    assert section["facilities_live_at_end"] == {"numerator": 2, "denominator": 3, "share": 0.6667}
    # Shares 1/3, 2/3, 2/3: least-squares slope 1/6 a month; 1/3 left → two months after March.
    assert section["projected_full_adoption"] == "2025-05"
    # Performed: A×2 at 24001 before go-live, HbA1c and C×2 at 01001 (live), D at 27011 (never).
    assert section["results_electronic"] == {"numerator": 3, "denominator": 6, "share": 0.5}
    assert section["referrals_with_shared_results"] == {"numerator": 1, "denominator": 2, "share": 0.5}
    assert [(d["group"], d["numerator"], d["denominator"]) for d in section["deadlines"]] == [
        ("hospitals", 2, 2), ("other", 0, 1)]


def test_projection_is_none_without_progress() -> None:
    flat = adoption.adoption_by_month({"a": None, "b": date(2024, 1, 1)}, start=date(2025, 1, 1),
                                      end=date(2025, 6, 30))
    assert adoption.projected_full_adoption(flat) is None
    done = adoption.adoption_by_month({"a": date(2025, 2, 3)}, start=date(2025, 1, 1), end=date(2025, 6, 30))
    assert adoption.projected_full_adoption(done) == "2025-02"


# --- Invariants, as properties over generated runs ---------------------------------
FACILITIES = ("01001", "24001", "27011", "79001", "89011")
ORDERABLE = sorted(code for code, test in TESTS.items() if test.orderable)
REASONS = ("no-emr", "source-on-paper", "lab-not-recognised", "expired", "override:clinical-change", None)
START = datetime(2025, 1, 1, tzinfo=timezone.utc)


@st.composite
def order_lists(draw: st.DrawFn) -> list[OrderOutcome]:
    orders = []
    for _ in range(draw(st.integers(0, 40))):
        outcome = draw(st.sampled_from(("reused", "performed")))
        prior = True if outcome == "reused" else draw(st.booleans())
        orders.append(OrderOutcome(
            at=START + timedelta(hours=draw(st.integers(0, 24 * 365))), citizen=draw(st.integers(0, 5)),
            facility=draw(st.sampled_from(FACILITIES)), visit_kind=draw(st.sampled_from(("local", "referral"))),
            test=draw(st.sampled_from(ORDERABLE)), prior_existed=prior,
            prior_published=prior and draw(st.booleans()), outcome=outcome, hub_reason=None,
            why=None if outcome == "reused" else draw(st.sampled_from(REASONS))))
    return orders


go_live_dates = st.dictionaries(st.sampled_from(FACILITIES),
                                st.none() | st.dates(date(2024, 1, 1), date(2026, 12, 31)), max_size=5)


@given(order_lists())
def test_avoided_plus_performed_is_ordered(orders: list[OrderOutcome]) -> None:
    total = metrics.tally(orders, tests=TESTS)
    assert total.avoided + total.performed == total.ordered == len(orders)
    for key in (lambda o: o.facility, lambda o: o.test, lambda o: (o.facility, o.test)):
        groups = metrics.breakdown(orders, tests=TESTS, key=key)
        assert all(t.avoided + t.performed == t.ordered for t in groups.values())
        assert sum(t.avoided for t in groups.values()) == total.avoided
        assert sum(t.vnd_saved for t in groups.values()) == total.vnd_saved


@given(order_lists(), go_live_dates)
def test_shares_stay_between_zero_and_one(orders: list[OrderOutcome], go_live: dict) -> None:
    shares = [adoption.electronic_results(orders, go_live=go_live), adoption.referrals_with_shared_results(orders)]
    shares += [m.live for m in adoption.adoption_by_month(go_live, start=date(2025, 1, 1), end=date(2025, 12, 31))]
    assert all(s.value is None or 0 <= s.value <= 1 for s in shares)
    assert all(0 <= s.numerator <= s.denominator for s in shares)
    what_if = metrics.what_if(orders, reasons=metrics.NO_EMR_REASONS, doctor_accepts_reuse=0.69)
    assert 0 <= what_if.more_avoided <= what_if.repeats <= len(metrics.repeats(orders))


@given(go_live_dates, st.dates(date(2024, 1, 1), date(2026, 12, 31)), st.dates(date(2024, 1, 1), date(2026, 12, 31)))
def test_adding_a_live_facility_never_lowers_adoption(go_live: dict, went_live: date, on: date) -> None:
    before = adoption.live_share(go_live, on=on).value or 0.0
    after = adoption.live_share(go_live | {"new": min(went_live, on)}, on=on).value
    assert after >= before


@given(go_live_dates)
def test_adoption_never_falls_from_month_to_month(go_live: dict) -> None:
    months = adoption.adoption_by_month(go_live, start=date(2024, 6, 1), end=date(2026, 12, 31))
    counts = [m.live.numerator for m in months]
    assert counts == sorted(counts)


# --- Files ---------------------------------------------------------------------------
def test_measure_bundle_validates_and_agrees_with_report_json(run_dir: Path) -> None:
    write_reports(run_dir, formats={"json", "fhir"}, lang="vi", settings=SETTINGS)
    report = json.loads((run_dir / "report.json").read_text(encoding="utf-8"))
    bundle = json.loads((run_dir / "measure-report-bundle.json").read_text(encoding="utf-8"))
    to_model(bundle)
    assert bundle["type"] == "collection"
    resources = {r["resource"]["id"]: r["resource"] for r in bundle["entry"]}
    assert {r["resourceType"] for r in resources.values()} == {"Measure", "MeasureReport"}

    def counts(group: dict) -> dict[str, int]:
        return {p["code"]["coding"][0]["code"]: p["count"] for p in group["population"]}

    adoption_group = resources["emr-adoption-report"]["group"][0]
    live = report["adoption"]["facilities_live_at_end"]
    assert counts(adoption_group) == {"initial-population": 3, "denominator": live["denominator"],
                                      "numerator": live["numerator"]}
    assert adoption_group["measureScore"]["value"] == live["share"]
    referral = report["adoption"]["referrals_with_shared_results"]
    assert counts(resources["referral-shared-results-report"]["group"][0])["numerator"] == referral["numerator"]
    avoided_group = resources["avoided-tests-report"]["group"][0]
    assert counts(avoided_group) == {"initial-population": report["totals"]["avoided"]}
    strata = {s["code"][0]["coding"][0]["code"]: s["stratum"] for s in avoided_group["stratifier"]}
    by_facility = {s["value"]["coding"][0]["code"]: counts(s)["initial-population"] for s in strata["facility"]}
    assert by_facility == {k: r["avoided"] for k, r in _rows(report, "facility").items()}
    by_province = {s["value"]["coding"][0]["code"]: counts(s)["initial-population"] for s in strata["province_2025"]}
    assert by_province == {"01": 3, "24": 0}


def test_html_is_self_contained_and_in_the_chosen_language(run_dir: Path) -> None:
    write_reports(run_dir, formats={"html"}, lang="vi", settings=SETTINGS)
    page = (run_dir / "report.html").read_text(encoding="utf-8")
    assert '<html lang="vi">' in page and "Xét nghiệm tránh được" in page
    assert not re.search(r"https?://|//[a-z0-9.-]+\.[a-z]{2,}/", page, flags=re.IGNORECASE)
    assert "<script" not in page.lower() and " src=" not in page.lower() and "@import" not in page
    assert not re.search(r"url\((?!#)", page)  # only references to ids inside the page
    assert page.count("<svg") == 2
    write_reports(run_dir, formats={"html"}, lang="en", settings=SETTINGS)
    assert '<html lang="en">' in (run_dir / "report.html").read_text(encoding="utf-8")


def test_html_escapes_names(tmp_path: Path) -> None:
    hospitals = tmp_path / "hospitals"
    shutil.copytree(SETTINGS.hospitals_dir, hospitals)
    path = hospitals / "bach-mai.yaml"
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    document["name_vi"] = "<b>Bạch Mai</b> & co"
    path.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
    run = write_run(tmp_path / "run")
    write_reports(run, formats={"html"}, lang="vi", settings=SETTINGS.model_copy(update={"hospitals_dir": hospitals}))
    page = (run / "report.html").read_text(encoding="utf-8")
    assert "&lt;b&gt;Bạch Mai&lt;/b&gt; &amp; co" in page and "<b>Bạch Mai</b>" not in page


def test_report_files_are_byte_identical_across_calls_and_directories(run_dir: Path, tmp_path: Path) -> None:
    def files(directory: Path) -> dict[str, bytes]:
        paths = write_reports(directory, formats=ALL_FORMATS, lang="vi", settings=SETTINGS)
        return {path.name: path.read_bytes() for path in paths}

    first, second, elsewhere = files(run_dir), files(run_dir), files(write_run(tmp_path / "copy"))
    assert first == second == elsewhere
    assert set(first) == {"report.html", "report.json", "measure-report-bundle.json", "avoided_by_facility.csv",
                          "avoided_by_province.csv", "avoided_by_test.csv", "avoided_by_category.csv",
                          "avoided_by_month.csv", "repeats_by_reason.csv", "adoption_by_month.csv"}


def test_csv_tables_have_a_header_and_utf8_names(run_dir: Path) -> None:
    write_reports(run_dir, formats={"csv"}, lang="vi", settings=SETTINGS)
    lines = (run_dir / "avoided_by_province.csv").read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith("merger,key,name_vi,name_en,ordered,performed,avoided,vnd_saved")
    assert "2025,24,Bắc Ninh,Bac Ninh,3,3,0,0,0,0,0.0" in lines
    reasons = (run_dir / "repeats_by_reason.csv").read_text(encoding="utf-8").splitlines()
    assert reasons[0] == "reason,label_vi,label_en,count,share" and len(reasons) == 4


@pytest.mark.parametrize(("formats", "lang"), [({"pdf"}, "vi"), (set(), "vi"), ({"html"}, "fr"), ({"json"}, "")])
def test_bad_format_or_language_is_invalid_input(run_dir: Path, formats: set[str], lang: str) -> None:
    with pytest.raises(InvalidInput):
        write_reports(run_dir, formats=formats, lang=lang, settings=SETTINGS)


def test_missing_or_corrupt_run_dir_is_a_data_file_error(tmp_path: Path) -> None:
    with pytest.raises(DataFileError, match="does not exist"):
        write_reports(tmp_path / "nowhere", formats={"json"}, lang="vi", settings=SETTINGS)
    run = write_run(tmp_path / "run")
    (run / "orders.ndjson").write_text('{"at": "yesterday"}\n', encoding="utf-8")
    with pytest.raises(DataFileError, match="line 1") as caught:
        write_reports(run, formats={"json"}, lang="vi", settings=SETTINGS)
    assert "\n" not in str(caught.value)
    (run / "summary.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(DataFileError, match="summary.json"):
        write_reports(run, formats={"json"}, lang="vi", settings=SETTINGS)
    unknown = write_run(tmp_path / "unknown", emr_go_live={"99999": None})
    with pytest.raises(DataFileError, match="99999"):
        write_reports(unknown, formats={"json"}, lang="vi", settings=SETTINGS)


def test_national_reference_file_is_valid_and_sourced() -> None:
    national = load_reference(SETTINGS).national
    assert all(point.source.strip() and 0 < point.share <= 1 for point in national.points)
    assert [(d.group, d.due) for d in national.deadlines] == [("hospitals", date(2025, 9, 30)),
                                                              ("other", date(2026, 12, 31))]
    with pytest.raises(DataFileError):
        adoption.parse_national({"note": "x", "deadlines": [], "points": [{"date": "2025-01-01"}]}, where="test")


def test_cli_labels_do_not_load_the_renderers() -> None:
    code = "import sys, emr.sim.console; print('matplotlib' in sys.modules or 'jinja2' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
