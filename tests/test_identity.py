"""Tests for emr.identity: the personal identification number and the province table."""

from __future__ import annotations

import random
from datetime import date
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from emr.errors import DataFileError, InvalidInput, InvalidNationalId
from emr.identity import (
    FACILITY_CODE_SYSTEM,
    INSURANCE_SYSTEM,
    NATIONAL_ID_SYSTEM,
    OLD_ID_SYSTEM,
    PASSPORT_SYSTEM,
    TEMPORARY_ID_SYSTEM,
    NationalId,
    demographic_conflicts,
    generate_national_id,
    is_valid_national_id,
    load_provinces,
    mrn_system,
    parse_national_id,
)

EXAMPLE = "001085012345"  # DOMAIN.md: registered in Hanoi, male, born 1985


def unused_codes() -> list[str]:
    return sorted({f"{n:03d}" for n in range(1000)} - set(load_provinces()))


province_codes = st.deferred(lambda: st.sampled_from(sorted(load_provinces())))
unused_province_codes = st.deferred(lambda: st.sampled_from(unused_codes()))
birth_years = st.integers(min_value=1900, max_value=2399)
sexes = st.sampled_from(["male", "female"])
seeds = st.integers(min_value=0, max_value=2**32 - 1)
tails = st.text(alphabet="0123456789", min_size=9, max_size=9)


# --- the province table --------------------------------------------------------------
def test_the_table_has_the_63_pre_2025_provinces_with_unique_three_digit_codes():
    provinces = load_provinces()
    assert len(provinces) == 63
    assert all(code == p.code and len(code) == 3 and code.isdigit() for code, p in provinces.items())
    assert len({p.name_vi for p in provinces.values()}) == 63
    assert all(p.name_en.isascii() for p in provinces.values())


def test_the_2025_merger_leaves_34_provinces_each_with_one_code():
    provinces = load_provinces().values()
    names_to_codes = {(p.post_2025_name_vi, p.post_2025_code) for p in provinces}
    assert len({name for name, _ in names_to_codes}) == 34
    assert len({code for _, code in names_to_codes}) == 34
    assert len(names_to_codes) == 34


def test_every_new_province_takes_the_old_code_of_one_of_its_members():
    groups: dict[str, set[str]] = {}
    for p in load_provinces().values():
        groups.setdefault(p.post_2025_code, set()).add(p.code[1:])
    assert all(new_code in old_codes for new_code, old_codes in groups.items())


@pytest.mark.parametrize(
    ("code", "name_vi"),
    [
        ("001", "Hà Nội"),
        ("019", "Thái Nguyên"),
        ("024", "Bắc Giang"),
        ("027", "Bắc Ninh"),
        ("074", "Bình Dương"),
        ("079", "Hồ Chí Minh"),
        ("089", "An Giang"),
        ("091", "Kiên Giang"),
    ],
)
def test_the_province_codes_named_in_the_domain_notes(code, name_vi):
    assert load_provinces()[code].name_vi == name_vi


@pytest.mark.parametrize(
    ("code", "post_name", "post_code"),
    [
        ("024", "Bắc Ninh", "24"),  # Bắc Giang → Bắc Ninh
        ("027", "Bắc Ninh", "24"),
        ("006", "Thái Nguyên", "19"),  # Bắc Kạn → Thái Nguyên
        ("019", "Thái Nguyên", "19"),
        ("074", "Hồ Chí Minh", "79"),  # Bình Dương → TP. Hồ Chí Minh
        ("077", "Hồ Chí Minh", "79"),  # Bà Rịa - Vũng Tàu → TP. Hồ Chí Minh
        ("079", "Hồ Chí Minh", "79"),
        ("091", "An Giang", "91"),  # Kiên Giang → An Giang
        ("089", "An Giang", "91"),
        ("001", "Hà Nội", "01"),
    ],
)
def test_the_merges_named_in_the_domain_notes(code, post_name, post_code):
    province = load_provinces()[code]
    assert (province.post_2025_name_vi, province.post_2025_code) == (post_name, post_code)


def test_the_table_is_read_once_and_cannot_be_changed():
    assert load_provinces() is load_provinces()
    with pytest.raises(TypeError):
        load_provinces()["000"] = load_provinces()["001"]  # type: ignore[index]


def test_a_broken_table_reports_every_problem_at_once(tmp_path: Path):
    path = tmp_path / "provinces.yaml"
    path.write_text(
        "provinces:\n"
        "  - {code: '1', name_vi: 'Hà Nội', name_en: 'Hà Nội', post_2025_name_vi: 'Hà Nội', post_2025_code: '01'}\n"
        "  - {code: '002', name_vi: 'Hà Giang'}\n",
        encoding="utf-8",
    )
    with pytest.raises(DataFileError) as caught:
        load_provinces(path)
    locations = {p.location for p in caught.value.problems}
    assert locations == {"source", "provinces[0].code", "provinces[0].name_en", "provinces[1]"}


def test_a_table_with_a_repeated_code_or_two_codes_for_one_new_province_is_rejected(tmp_path: Path):
    row = "  - {{code: '{0}', name_vi: 'X{0}', name_en: 'X', post_2025_name_vi: 'Y', post_2025_code: '{1}'}}\n"
    path = tmp_path / "provinces.yaml"
    path.write_text("source: test\nprovinces:\n" + row.format("001", "01") + row.format("001", "02"), encoding="utf-8")
    with pytest.raises(DataFileError) as caught:
        load_provinces(path)
    assert {p.location for p in caught.value.problems} == {"provinces[1].code", "provinces[1].post_2025_code"}


# --- parsing -------------------------------------------------------------------------
def test_the_domain_example_decodes_to_hanoi_male_1985():
    nid = parse_national_id(EXAMPLE)
    assert nid.province.name_vi == "Hà Nội"
    assert (nid.value, nid.sex, nid.century, nid.birth_year) == (EXAMPLE, "male", 1900, 1985)


@pytest.mark.parametrize(
    ("digit", "sex", "century"),
    [("0", "male", 1900), ("1", "female", 1900), ("2", "male", 2000), ("3", "female", 2000),
     ("4", "male", 2100), ("5", "female", 2100), ("6", "male", 2200), ("7", "female", 2200),
     ("8", "male", 2300), ("9", "female", 2300)],
)
def test_digit_four_gives_century_and_sex(digit, sex, century):
    nid = parse_national_id(f"079{digit}07123456")
    assert (nid.sex, nid.century, nid.birth_year) == (sex, century, century + 7)


@pytest.mark.parametrize(
    ("value", "rule"),
    [
        (1085012345, "type"),
        (None, "type"),
        (b"001085012345", "type"),
        ("", "length"),
        ("00108501234", "length"),
        ("0010850123456", "length"),
        ("00108501234a", "digits"),
        (" 00108501234", "digits"),
        ("00108501234 ", "digits"),
        ("001085012345\n", "digits"),
        ("001-085-0123", "digits"),
        ("００１０８５０１２３４５", "digits"),  # full-width digits are not 0-9
        ("٠٠١٠٨٥٠١٢٣٤٥", "digits"),  # nor are Arabic-Indic ones
        ("000085012345", "province"),
        ("003085012345", "province"),
        ("099085012345", "province"),
        ("999085012345", "province"),
    ],
)
def test_broken_numbers_name_the_rule_they_break(value, rule):
    with pytest.raises(InvalidNationalId) as caught:
        parse_national_id(value)
    assert caught.value.rule == rule
    assert f"'{rule}'" in str(caught.value)
    assert not is_valid_national_id(value)


def test_the_error_message_names_the_value():
    with pytest.raises(InvalidNationalId, match="099085012345"):
        parse_national_id("099085012345")


def test_a_huge_input_does_not_flood_the_message():
    with pytest.raises(InvalidNationalId) as caught:
        parse_national_id("1" * 100_000)
    assert caught.value.rule == "length"
    assert len(str(caught.value)) < 200


def test_the_unused_codes_include_the_gaps_in_the_table():
    assert {"000", "003", "099", "999"} <= set(unused_codes())
    assert len(unused_codes()) == 1000 - 63


@given(code=unused_province_codes, tail=tails)
def test_a_number_with_an_unused_province_code_is_rejected(code, tail):
    with pytest.raises(InvalidNationalId) as caught:
        parse_national_id(code + tail)
    assert caught.value.rule == "province"


# --- generation ----------------------------------------------------------------------
@given(seed=seeds, code=province_codes, birth_year=birth_years, sex=sexes)
def test_a_generated_number_decodes_back_to_what_it_was_made_from(seed, code, birth_year, sex):
    value = generate_national_id(random.Random(seed), province_code=code, birth_year=birth_year, sex=sex)
    assert is_valid_national_id(value)
    nid = parse_national_id(value)
    assert nid == NationalId(value, load_provinces()[code], sex, birth_year // 100 * 100, birth_year)


@given(seed=seeds, code=province_codes, birth_year=birth_years, sex=sexes, unused=unused_province_codes)
def test_replacing_the_province_of_a_valid_number_with_an_unused_code_breaks_it(seed, code, birth_year, sex, unused):
    value = generate_national_id(random.Random(seed), province_code=code, birth_year=birth_year, sex=sex)
    with pytest.raises(InvalidNationalId) as caught:
        parse_national_id(unused + value[3:])
    assert caught.value.rule == "province"


def test_generation_is_reproducible_from_the_seed():
    def make(seed: int) -> list[str]:
        rng = random.Random(seed)
        return [generate_national_id(rng, province_code="079", birth_year=1990, sex="female") for _ in range(5)]

    assert make(7) == make(7)
    assert len(set(make(7))) > 1


@pytest.mark.parametrize(
    ("arguments", "rule"),
    [
        ({"province_code": "000", "birth_year": 1985, "sex": "male"}, "province"),
        ({"province_code": 1, "birth_year": 1985, "sex": "male"}, "province"),
        ({"province_code": "001", "birth_year": 1899, "sex": "male"}, "birth-year"),
        ({"province_code": "001", "birth_year": 2400, "sex": "male"}, "birth-year"),
        ({"province_code": "001", "birth_year": 1985.0, "sex": "male"}, "birth-year"),
        ({"province_code": "001", "birth_year": True, "sex": "male"}, "birth-year"),
        ({"province_code": "001", "birth_year": 1985, "sex": "other"}, "sex"),
        ({"province_code": "001", "birth_year": 1985, "sex": "M"}, "sex"),
    ],
)
def test_generation_rejects_what_the_number_cannot_encode(arguments, rule):
    with pytest.raises(InvalidNationalId) as caught:
        generate_national_id(random.Random(0), **arguments)
    assert caught.value.rule == rule


# --- demographic cross-checks ----------------------------------------------------------
@pytest.mark.parametrize(
    ("birth_date", "gender"),
    [
        ("1985", "male"),
        ("1985-07", "male"),
        ("1985-07-14", "male"),
        (date(1985, 7, 14), "male"),
        (None, None),
        ("1985-01-01", "other"),
        ("1985-12-31", "unknown"),
    ],
)
def test_a_matching_or_silent_patient_has_no_conflicts(birth_date, gender):
    assert demographic_conflicts(parse_national_id(EXAMPLE), birth_date=birth_date, gender=gender) == []


def test_a_different_birth_year_is_a_birth_year_conflict():
    conflicts = demographic_conflicts(parse_national_id(EXAMPLE), birth_date="1986-01-01", gender="male")
    assert len(conflicts) == 1
    assert conflicts[0].startswith("birth-year: ")
    assert "1985" in conflicts[0] and "1986-01-01" in conflicts[0]


def test_a_different_gender_is_a_sex_conflict():
    conflicts = demographic_conflicts(parse_national_id(EXAMPLE), birth_date=None, gender="female")
    assert [c.split(":")[0] for c in conflicts] == ["sex"]


def test_both_conflicts_are_reported_together():
    conflicts = demographic_conflicts(parse_national_id(EXAMPLE), birth_date=date(2085, 1, 1), gender="female")
    assert [c.split(":")[0] for c in conflicts] == ["birth-year", "sex"]


def test_the_same_two_year_digits_in_another_century_conflict():
    nid = parse_national_id("001285012345")  # male, 2085
    assert demographic_conflicts(nid, birth_date="1985", gender="male")[0].startswith("birth-year: ")


@pytest.mark.parametrize(
    ("birth_date", "gender"),
    [("85", None), ("1985-7-1", None), ("1985-07-14T00:00:00", None), (None, "Male"), (None, "M")],
)
def test_values_that_are_not_fhir_codes_are_invalid_input(birth_date, gender):
    with pytest.raises(InvalidInput):
        demographic_conflicts(parse_national_id(EXAMPLE), birth_date=birth_date, gender=gender)


@given(seed=seeds, code=province_codes, birth_year=birth_years, sex=sexes)
def test_a_patient_built_from_its_own_number_never_conflicts(seed, code, birth_year, sex):
    value = generate_national_id(random.Random(seed), province_code=code, birth_year=birth_year, sex=sex)
    assert demographic_conflicts(parse_national_id(value), birth_date=f"{birth_year}-06-30", gender=sex) == []


# --- identifier systems ----------------------------------------------------------------
def test_identifier_systems_are_distinct_and_mrn_systems_are_per_facility():
    systems = [NATIONAL_ID_SYSTEM, FACILITY_CODE_SYSTEM, INSURANCE_SYSTEM, PASSPORT_SYSTEM, OLD_ID_SYSTEM,
               TEMPORARY_ID_SYSTEM, mrn_system("01001"), mrn_system("79001")]
    assert len(set(systems)) == len(systems)
    assert mrn_system("01001") == "urn:emr:facility:01001:mrn"
