"""The facility registry and test catalogue: shipped data, loaders, validation rules."""

from __future__ import annotations

import importlib.util
import shutil
from datetime import date
from pathlib import Path

import pytest
import yaml

from emr.catalog import (
    DEFAULT_HOSPITALS_DIR,
    DEFAULT_TESTS_PATH,
    Facility,
    LabTest,
    load_facilities,
    load_tests,
    loinc_check_digit,
    loinc_problem,
    validate_data,
)
from emr.errors import DataFileError

CATEGORIES = {"haematology", "biochemistry", "immunology", "microbiology", "urinalysis", "imaging"}
BACH_MAI, CHO_RAY, THAI_NGUYEN_CENTRAL = "01001", "79001", "19001"


@pytest.fixture(scope="module")
def tests() -> dict[str, LabTest]:
    return load_tests(DEFAULT_TESTS_PATH)


@pytest.fixture(scope="module")
def facilities() -> dict[str, Facility]:
    return load_facilities(DEFAULT_HOSPITALS_DIR)


def _by_kind(facilities: dict[str, Facility], kind: str) -> list[Facility]:
    return [facility for facility in facilities.values() if facility.kind == kind]


# --- shipped data -------------------------------------------------------------------
def test_every_shipped_data_file_validates() -> None:
    assert validate_data(hospitals_dir=DEFAULT_HOSPITALS_DIR, tests_path=DEFAULT_TESTS_PATH) == []


def test_no_number_in_the_data_files_is_bare() -> None:
    """Every number sits under a Sourced ``value`` (whose mapping carries the note)."""

    def bare_numbers(node: object, path: str, inside_value: bool) -> list[str]:
        if isinstance(node, dict):
            if "value" in node and not (node.get("source") or node.get("assumption")):
                return [f"{path}: value without a note"]
            return [p for k, v in node.items() for p in bare_numbers(v, f"{path}.{k}", inside_value or k == "value")]
        if isinstance(node, list):
            return [p for i, v in enumerate(node) for p in bare_numbers(v, f"{path}[{i}]", inside_value)]
        is_number = isinstance(node, (int, float, date)) and not isinstance(node, bool)
        return [f"{path}: bare {node!r}"] if is_number and not inside_value else []

    files = [DEFAULT_TESTS_PATH, *sorted(DEFAULT_HOSPITALS_DIR.glob("*.yaml"))]
    found = [p for f in files for p in bare_numbers(yaml.safe_load(f.read_text(encoding="utf-8")), f.name, False)]
    assert found == []


def test_the_catalogue_has_thirty_orderable_tests_in_every_category(tests: dict[str, LabTest]) -> None:
    orderable = [test for test in tests.values() if test.orderable]
    assert len(orderable) >= 30
    assert {test.category for test in orderable} == CATEGORIES
    assert {"2345-7", "4548-4", "2160-0", "1742-6", "1920-8", "58410-2", "5196-1", "36643-5"} <= set(tests)


def test_catalogue_rules_named_in_the_draft_circular(tests: dict[str, LabTest]) -> None:
    assert tests["4548-4"].validity_hours.value == 60 * 24  # HbA1c 60 days
    assert tests["3084-1"].validity_hours.value <= 168 and tests["2093-3"].validity_hours.value <= 168
    assert tests["3091-6"].validity_hours.value <= 24 and tests["1975-2"].validity_hours.value <= 24
    microbiology = [test for test in tests.values() if test.category == "microbiology"]
    assert len(microbiology) >= 2 and all(test.positive_only for test in microbiology)
    assert all(48 <= test.validity_hours.value <= 30 * 24 for test in microbiology)
    assert tests["67151-1"].shareable.value is False  # troponin is time-critical
    assert all(test.radiation == test.loinc_display.startswith(("XR", "CT")) for test in tests.values())


def test_cited_prices_match_the_domain_notes(tests: dict[str, LabTest]) -> None:
    cited = {"2345-7": 22400, "4548-4": 100900, "2093-3": 28000, "24357-6": 28600, "36643-5": 73300,
             "24558-9": 58600, "30799-1": 550100, "36813-4": 1732400, "5196-1": 81700}
    for code, price in cited.items():
        assert tests[code].price_vnd.value == price and not tests[code].price_vnd.is_assumption, code


def test_bach_mai_is_01001_a_real_code_with_a_level_5_lab(facilities: dict[str, Facility]) -> None:
    bach_mai = facilities[BACH_MAI]
    assert bach_mai.name_vi == "Bệnh viện Bạch Mai" and not bach_mai.code_illustrative
    assert (bach_mai.kind, bach_mai.technical_level, bach_mai.province_code) == ("central", "specialised", "001")
    assert bach_mai.lab.quality_level.value == 5 and bach_mai.lab.iso15189.value is True
    assert all(f.code_illustrative for code, f in facilities.items() if code != BACH_MAI)


def test_the_registry_covers_the_pilot(facilities: dict[str, Facility]) -> None:
    assert facilities[CHO_RAY].name_vi == "Bệnh viện Chợ Rẫy"
    assert facilities[THAI_NGUYEN_CENTRAL].kind == "central"
    provincial = {f.province_code for f in _by_kind(facilities, "provincial")}
    assert {"027", "024", "019", "074", "089", "091"} <= provincial
    for province in ("027", "019", "074", "089"):
        assert sum(f.province_code == province for f in _by_kind(facilities, "regional")) >= 2, province


def test_lab_levels_spread_from_unranked_to_5(facilities: dict[str, Facility]) -> None:
    def levels(kind: str) -> set[int]:
        return {f.lab.quality_level.value for f in _by_kind(facilities, kind)}

    assert levels("central") == {5}
    assert levels("provincial") <= {3, 4, 5} and {3, 4} <= levels("provincial")
    assert levels("regional") <= {0, 1, 2} and 0 in levels("regional")


def test_emr_dates_follow_circular_13(facilities: dict[str, Facility]) -> None:
    for facility in facilities.values():
        go_live = facility.emr.go_live.value if facility.emr.go_live else None
        assert go_live is None or date(2024, 1, 1) <= go_live <= date(2026, 12, 31), facility.code
        if facility.kind != "regional":
            assert facility.emr.live and go_live <= date(2025, 9, 30), facility.code


def test_tests_offered_match_the_tier(facilities: dict[str, Facility], tests: dict[str, LabTest]) -> None:
    every_orderable = {code for code, test in tests.items() if test.orderable}
    for central in _by_kind(facilities, "central"):
        assert set(central.tests) == every_orderable
    basic = {"haematology", "biochemistry", "urinalysis", "imaging"}
    for regional in _by_kind(facilities, "regional"):
        offered = [tests[code] for code in regional.tests]
        assert {test.category for test in offered} <= basic, regional.code
        assert all(test.loinc_display.startswith(("XR", "US")) for test in offered if test.category == "imaging")


def test_referrals_go_to_the_pilot_hubs(facilities: dict[str, Facility]) -> None:
    for facility in _by_kind(facilities, "provincial"):
        hubs = {BACH_MAI, THAI_NGUYEN_CENTRAL} if facility.province_code in {"027", "024", "019"} else {CHO_RAY}
        assert set(facility.referral_targets) & hubs, facility.code
    for facility in _by_kind(facilities, "regional"):
        first = facilities[facility.referral_targets[0]]
        assert (first.kind, first.province_code) == ("provincial", facility.province_code), facility.code


def test_facility_provinces_are_known_to_the_identity_module(facilities: dict[str, Facility]) -> None:
    if importlib.util.find_spec("emr.identity") is None:
        pytest.skip("emr.identity is not written yet")
    from emr.identity import load_provinces

    provinces = load_provinces()
    for facility in facilities.values():
        assert facility.province_code in provinces, facility.code
        assert provinces[facility.province_code].post_2025_name_vi == facility.province_2025, facility.code
    assert validate_data(hospitals_dir=DEFAULT_HOSPITALS_DIR, tests_path=DEFAULT_TESTS_PATH, provinces=provinces) == []


# --- LOINC check digits ---------------------------------------------------------------
@pytest.mark.parametrize(
    ("number", "check"),
    [("12345", 5), ("2345", 7), ("4548", 4), ("2160", 0), ("1742", 6), ("1920", 8), ("58410", 2),
     ("5196", 1), ("36643", 5), ("600", 7), ("718", 7), ("67151", 1)],
)
def test_loinc_check_digit(number: str, check: int) -> None:
    assert loinc_check_digit(number) == check


def test_every_catalogue_code_passes_the_check(tests: dict[str, LabTest]) -> None:
    assert [code for code in tests if loinc_problem(code)] == []


@pytest.mark.parametrize("code", ["2345-8", "2345", "2345-77", "12345678-9", "A345-7", "٢٣٤٥-7"])
def test_malformed_loinc_codes_are_named(code: str) -> None:
    assert loinc_problem(code)


# --- broken data ---------------------------------------------------------------------
def _copy_data(tmp_path: Path) -> tuple[Path, Path]:
    hospitals = tmp_path / "hospitals"
    shutil.copytree(DEFAULT_HOSPITALS_DIR, hospitals)
    tests_path = tmp_path / "data" / "tests.yaml"
    tests_path.parent.mkdir()
    shutil.copy(DEFAULT_TESTS_PATH, tests_path)
    return hospitals, tests_path


def _unknown_loinc() -> str:
    return f"99999-{loinc_check_digit('99999')}"


def test_a_broken_facility_file_reports_all_its_problems_at_once(tmp_path: Path) -> None:
    hospitals, tests_path = _copy_data(tmp_path)
    document = yaml.safe_load((hospitals / "dk-binh-duong.yaml").read_text(encoding="utf-8"))
    document["beds"] = 1500  # a bare number without a source
    document["tests"] = [*document["tests"], _unknown_loinc()]
    document["code"] = BACH_MAI  # a duplicate code (and a prefix that no longer matches 074)
    (hospitals / "broken.yaml").write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")

    problems = validate_data(hospitals_dir=hospitals, tests_path=tests_path)

    assert {p.location for p in problems} == {
        "hospitals/broken.yaml:beds",
        "hospitals/broken.yaml:code",
        f"hospitals/broken.yaml:tests[{len(document['tests']) - 1}]",
    }
    messages = " | ".join(p.message for p in problems)
    assert "bare value 1500" in messages and _unknown_loinc() in messages
    assert "also used by hospitals/bach-mai.yaml" in messages and "does not match province 074" in messages
    with pytest.raises(DataFileError) as raised:
        load_facilities(hospitals)
    assert "broken.yaml" in str(raised.value) and len(raised.value.problems) == 3  # all but the catalogue check


def test_notes_ranges_and_referrals_are_checked(tmp_path: Path) -> None:
    hospitals, tests_path = _copy_data(tmp_path)
    path = hospitals / "ttyt-gia-binh.yaml"
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    document["lab"]["quality_level"] = {"value": 3}
    document["daily_outpatients"] = {"value": 0, "assumption": "nobody comes"}
    document["referral_targets"] = ["27001", "27012", "00000"]
    path.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")

    problems = validate_data(hospitals_dir=hospitals, tests_path=tests_path)

    locations = {p.location: p.message for p in problems}
    assert "needs a 'source' or an 'assumption'" in locations["hospitals/ttyt-gia-binh.yaml:lab.quality_level"]
    assert "greater than 0" in locations["hospitals/ttyt-gia-binh.yaml:daily_outpatients.value"]
    assert "refer to itself" in locations["hospitals/ttyt-gia-binh.yaml:referral_targets[1]"]
    assert "not a known facility" in locations["hospitals/ttyt-gia-binh.yaml:referral_targets[2]"]


def test_a_broken_catalogue_reports_every_row(tmp_path: Path) -> None:
    hospitals, tests_path = _copy_data(tmp_path)
    document = yaml.safe_load(tests_path.read_text(encoding="utf-8"))
    rows = document["tests"]
    rows[0]["members"] = [*rows[0]["members"], "2345-8"]  # fails the check digit
    rows[1]["validity_hours"] = {"value": 0, "source": "zero is not a window"}
    rows.append(dict(rows[-1]))  # the same LOINC twice
    tests_path.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")

    problems = validate_data(hospitals_dir=hospitals, tests_path=tests_path)

    locations = {p.location: p.message for p in problems}
    assert "mod-10" in locations[f"data/tests.yaml:tests[0].members[{len(rows[0]['members']) - 1}]"]
    assert "greater than 0" in locations["data/tests.yaml:tests[1].validity_hours.value"]
    duplicate = locations[f"data/tests.yaml:tests[{len(rows) - 1}].loinc"]
    assert f"also used by data/tests.yaml:tests[{len(rows) - 2}]" in duplicate
    assert len(problems) == 3
    with pytest.raises(DataFileError):
        load_tests(tests_path)


def test_a_facility_may_not_list_a_panel_component(tmp_path: Path) -> None:
    hospitals, tests_path = _copy_data(tmp_path)
    path = hospitals / "ttyt-dai-tu.yaml"
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    document["tests"] = [*document["tests"], "718-7"]  # haemoglobin is reported inside the CBC panel
    path.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")

    problems = validate_data(hospitals_dir=hospitals, tests_path=tests_path)

    assert [p.message for p in problems] == ["test 718-7 is a panel component; list its panel"]
