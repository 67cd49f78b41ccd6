"""Tests for emr.sim.population (the synthetic population) and emr.sim.registry (its identity registry)."""

from __future__ import annotations

import random
import tracemalloc
import unicodedata
from collections import Counter
from dataclasses import replace
from datetime import date
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from emr.errors import DataFileError, InvalidInput
from emr.identity import NATIONAL_ID_SYSTEM, PASSPORT_SYSTEM, generate_national_id, parse_national_id
from emr.sim.population import (
    DEFAULT_TABLES_PATH,
    REGISTRATION_ERROR_KINDS,
    Citizen,
    PopulationTables,
    Roster,
    corrupt_registration,
    generate_population,
    load_population_tables,
)
from emr.sim.registry import IdentityRegistry, PopulationRegistry

SIMULATED = ("001", "019", "024", "027", "074", "079", "089", "091")
ON = date(2025, 10, 1)


@pytest.fixture(scope="module")
def tables() -> PopulationTables:
    return load_population_tables(DEFAULT_TABLES_PATH)


@pytest.fixture(scope="module")
def sample(tables: PopulationTables) -> list[Citizen]:
    """20,000 citizens, 2,500 in each simulated province."""
    return generate_population(random.Random(2025), tables=tables, residents={c: 2500 for c in SIMULATED}, on=ON)


@pytest.fixture(scope="module")
def registry(sample: list[Citizen]) -> PopulationRegistry:
    return PopulationRegistry(sample)


def raw_file() -> dict:
    return yaml.safe_load(DEFAULT_TABLES_PATH.read_text(encoding="utf-8"))


def problems_of(tmp_path: Path, document: dict) -> dict[str, str]:
    """Load a modified copy; return its problems as {location: messages joined by " | "}."""
    path = tmp_path / "data" / "population.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(yaml.safe_dump(document, allow_unicode=True, sort_keys=False), encoding="utf-8")
    with pytest.raises(DataFileError) as caught:
        load_population_tables(path)
    found: dict[str, list[str]] = {}
    for problem in caught.value.problems:
        found.setdefault(problem.location, []).append(problem.message)
    return {location: " | ".join(messages) for location, messages in found.items()}


def has_diacritics(text: str) -> bool:
    return any(unicodedata.combining(c) for c in unicodedata.normalize("NFD", text)) or "đ" in text.casefold()


def answer_for(registry: PopulationRegistry, national_id: str, c: Citizen) -> str:
    """The registry's answer for ``national_id`` with ``c``'s demographics."""
    return registry.verify(national_id, family=c.family, given=c.given_names, birth_date=c.birth_date, sex=c.sex)


def fhir_patient(citizen: Citizen) -> dict:
    return {
        "resourceType": "Patient",
        "identifier": [{"system": NATIONAL_ID_SYSTEM, "value": citizen.national_id}],
        "name": [{"family": citizen.family, "given": [citizen.middle, citizen.given]}],
        "birthDate": citizen.birth_date.isoformat(),
        "gender": citizen.sex,
    }


# --- The data file ---------------------------------------------------------------------
def test_the_data_file_validates(tables: PopulationTables) -> None:
    assert sorted(tables.residences) == sorted(SIMULATED)
    assert all(len(r.communes) >= 6 for r in tables.residences.values())
    assert {tables.regions[c] for c in ("001", "019", "024", "027")} == {"north"}
    assert {tables.regions[c] for c in ("074", "079", "089", "091")} == {"south"}
    assert tables.south_variants == {"Hoàng": "Huỳnh", "Vũ": "Võ"}
    assert set(tables.registration_errors) == set(REGISTRATION_ERROR_KINDS)
    assert all(len(tables.given_names[sex].values) >= 15 for sex in ("male", "female"))


def test_a_broken_copy_reports_every_problem_at_once(tmp_path: Path) -> None:
    document = raw_file()
    document["surnames"][3]["share"] = 0.071  # bare number
    document["surnames"][0]["share"]["value"] = 1.5
    document["male_share"] = {"value": 0.5}  # neither source nor assumption
    document["given_names"]["female"] = document["given_names"]["female"][:3]
    document["age_structure"]["bands"][2]["ages"] = "11-14"
    document["provinces"][0]["code"] = "999"
    document["registration_errors"][0]["kind"] = "smudge"
    problems = problems_of(tmp_path, document)
    label = "data/population.yaml"
    assert "bare value" in problems[f"{label}:surnames[3].share"]
    assert f"{label}:surnames[0].share.value" in problems
    assert "source" in problems[f"{label}:male_share"]
    assert f"{label}:given_names.female" in problems
    assert "should start at 10" in problems[f"{label}:age_structure"]
    assert "999 is not in the province table" in problems[f"{label}:provinces[0]"]
    assert f"{label}:registration_errors[0].kind" in problems


def test_rules_across_sections_are_reported_together(tmp_path: Path) -> None:
    document = raw_file()
    document["surnames"][0]["share"]["value"] = 0.2
    document["provinces"] = [p for p in document["provinces"] if p["code"] != "006"]  # Thái Nguyên's origin
    document["registration_errors"] = document["registration_errors"][:2]
    problems = problems_of(tmp_path, document)
    assert "add up to" in problems["data/population.yaml:surnames"]
    assert "006" in problems["data/population.yaml:provinces"]
    assert "ascii-folded is missing" in problems["data/population.yaml:registration_errors"]


def test_a_migrant_origin_and_duplicates_are_checked(tmp_path: Path) -> None:
    document = raw_file()
    document["provinces"][0]["residence"]["migrant_origins"][0]["province"] = "001"  # Hà Nội from Hà Nội
    document["provinces"][1]["residence"]["communes"].append(document["provinces"][1]["residence"]["communes"][0])
    document["provinces"][2]["name"] = "Bắc Ninh"  # 024 is Bắc Giang
    problems = problems_of(tmp_path, document)
    assert "own migrant origin" in problems["data/population.yaml:provinces[0]"]
    assert "listed 2 times" in problems["data/population.yaml:provinces[1].residence"]
    assert "Bắc Giang" in problems["data/population.yaml:provinces[2]"]


# --- Generation --------------------------------------------------------------------------
def check_population(citizens: list[Citizen], tables: PopulationTables, on: date) -> None:
    assert len({c.national_id for c in citizens}) == len(citizens)
    for citizen in citizens:
        number = parse_national_id(citizen.national_id)
        assert (number.birth_year, number.sex) == (citizen.birth_date.year, citizen.sex)
        residence = tables.residences[citizen.home_province]
        assert number.province.code in {residence.code, *residence.migrant_origins.values}
        assert citizen.commune in residence.communes
        assert citizen.birth_date <= on
        assert 0 <= citizen.age_on(on) <= tables.document.age_structure.oldest_age.value


@given(
    seed=st.integers(min_value=0, max_value=2**64),
    residents=st.dictionaries(st.sampled_from(SIMULATED), st.integers(min_value=0, max_value=40), max_size=4),
    on=st.dates(min_value=date(2000, 1, 1), max_value=date(2100, 12, 31)),
)
def test_any_seed_gives_valid_unique_consistent_numbers(tables, seed, residents, on) -> None:
    citizens = generate_population(random.Random(seed), tables=tables, residents=residents, on=on)
    assert len(citizens) == sum(residents.values())
    assert Counter(c.home_province for c in citizens) == +Counter(residents)
    check_population(citizens, tables, on)


def test_the_sample_is_consistent_and_ages_respect_the_simulated_date(tables, sample) -> None:
    check_population(sample, tables, ON)
    children = sum(c.age_on(ON) < 15 for c in sample) / len(sample)
    assert children == pytest.approx(0.243, abs=0.02)  # 2019 census: 0-14 is 24.3%


def test_an_open_band_on_29_february_still_respects_the_date(tables) -> None:
    leap_day = date(2024, 2, 29)
    citizens = generate_population(random.Random(7), tables=tables, residents={"001": 2000}, on=leap_day)
    check_population(citizens, tables, leap_day)


def test_same_seed_same_population_different_seed_different(tables) -> None:
    residents = {"027": 300, "001": 200}
    first = generate_population(random.Random(42), tables=tables, residents=residents, on=ON)
    again = generate_population(random.Random(42), tables=tables, residents=dict(reversed(residents.items())), on=ON)
    other = generate_population(random.Random(43), tables=tables, residents=residents, on=ON)
    assert first == again
    assert first != other


def test_surname_shares_follow_the_table(tables, sample) -> None:
    northern = {"Huỳnh": "Hoàng", "Võ": "Vũ"}
    counts = Counter(northern.get(c.family, c.family) for c in sample)
    expected = {row.name: row.share.value for row in tables.document.surnames}
    assert counts["Nguyễn"] / len(sample) == pytest.approx(expected["Nguyễn"], abs=0.03)
    for name, share in expected.items():
        assert counts[name] / len(sample) == pytest.approx(share, abs=0.015), name


def test_southern_spellings_follow_the_province_of_registration(tables, sample) -> None:
    def region(citizen: Citizen) -> str:
        return tables.regions[citizen.national_id[:3]]

    assert not any(c.family in ("Huỳnh", "Võ") for c in sample if region(c) != "south")
    south = Counter(c.family for c in sample if region(c) == "south")
    assert south["Huỳnh"] > south["Hoàng"] and south["Võ"] > south["Vũ"]


def test_migrants_carry_the_number_of_their_home_province(tables, sample) -> None:
    for code in ("074", "089"):
        residents = [c for c in sample if c.home_province == code]
        migrants = sum(c.national_id[:3] != code for c in residents) / len(residents)
        assert migrants == pytest.approx(tables.residences[code].born_elsewhere, abs=0.04)


def test_sex_ratio_follows_the_census(tables, sample) -> None:
    assert sum(c.sex == "male" for c in sample) / len(sample) == pytest.approx(tables.male_share, abs=0.015)


class FewTails(random.Random):
    """A seeded rng that offers only ``tails`` random number endings, so numbers collide."""

    def __init__(self, seed: int, *, tails: int) -> None:
        super().__init__(seed)
        self.tails = tails

    def randrange(self, start, stop=None, step=1):  # type: ignore[override]
        if stop is None and start == 10**6:
            return super().randrange(self.tails)
        return super().randrange(start, stop, step) if stop is not None else super().randrange(start)


def test_colliding_numbers_are_drawn_again(tables) -> None:
    citizens = generate_population(FewTails(5, tails=40), tables=tables, residents={"019": 1500}, on=ON)
    check_population(citizens, tables, ON)
    with pytest.raises(InvalidInput, match="no free national number"):
        generate_population(FewTails(5, tails=1), tables=tables, residents={"019": 1500}, on=ON)


def test_unknown_provinces_and_negative_counts_are_refused(tables) -> None:
    with pytest.raises(InvalidInput, match="048"):
        generate_population(random.Random(1), tables=tables, residents={"048": 10}, on=ON)
    with pytest.raises(InvalidInput, match="negative"):
        generate_population(random.Random(1), tables=tables, residents={"001": -1}, on=ON)


def test_names_read_family_name_first() -> None:
    citizen = Citizen("001085012345", "Nguyễn", "Văn", "An", "male", date(1985, 5, 1), "001", "Phường Kim Liên")
    assert citizen.full_name == "Nguyễn Văn An"
    assert citizen.given_names == "Văn An"
    assert citizen.age_on(date(2025, 4, 30)) == 39 and citizen.age_on(date(2025, 5, 1)) == 40



# --- The roster: the population held as columns -----------------------------------------
@given(seed=st.integers(min_value=0, max_value=2**32), size=st.integers(min_value=0, max_value=60),
       index=st.integers(min_value=-80, max_value=80))
def test_a_roster_gives_back_what_was_appended_as_a_list_would(tables, seed, size, index) -> None:
    rng = random.Random(seed)
    drawn = list(generate_population(rng, tables=tables, residents={"079": size}, on=ON))
    # as a clerk typed them too: names and dates the tables never produce, numbers held twice
    people = drawn + [corrupt_registration(rng, c, rng.choice(REGISTRATION_ERROR_KINDS)) for c in drawn[:5]]
    roster = Roster(people)
    assert len(roster) == len(people) and list(roster) == people and roster == people
    assert roster[index // 3: index] == people[index // 3: index]
    if -len(people) <= index < len(people):
        assert roster[index] == people[index]
    else:
        with pytest.raises(IndexError):
            roster[index]
    assert (roster.duplicate() is None) == (len(drawn) == 0)
    unique = Roster(drawn)
    assert all(unique.find(c.national_id) == c for c in drawn) and unique.duplicate() is None


def test_a_roster_finds_only_whole_twelve_digit_numbers_it_holds(sample) -> None:
    assert isinstance(sample, Roster)
    number = sample[7].national_id
    assert sample.find(number) == sample[7]
    for asked in (number[:-1], number + "0", f"{number[:-1]}x", "٠" * 12, "", str(int(number) + 1)):
        assert sample.find(asked) is None or sample.find(asked).national_id == asked
    assert sample.duplicate() is None
    with pytest.raises(InvalidInput, match="12-digit"):
        Roster([replace(sample[0], national_id="00108501234")])


def test_a_roster_holds_a_person_in_under_a_quarter_of_the_memory_of_a_citizen(sample) -> None:
    """A run keeps its whole population: at a million people, 222 MB as Citizen objects."""
    tracemalloc.start()
    try:
        people = list(sample)  # fresh Citizens, numbers and dates; names shared, as when drawn
        as_objects = tracemalloc.get_traced_memory()[0]
        roster = Roster(people)
        as_columns = tracemalloc.get_traced_memory()[0] - as_objects
    finally:
        tracemalloc.stop()
    assert len(roster) == len(people)
    assert as_columns / len(people) < 50 and as_columns < as_objects / 4  # 38 and 197 bytes a person


# --- Registration errors and the registry ------------------------------------------------
def test_the_registry_verifies_every_clean_citizen(sample, registry) -> None:
    assert len(registry) == len(sample)
    assert {answer_for(registry, c.national_id, c) for c in sample} == {"verified"}


@given(seed=st.integers(min_value=0, max_value=2**32), index=st.integers(min_value=0, max_value=19_999))
def test_every_kind_of_registration_error_is_a_mismatch(sample, registry, seed, index) -> None:
    citizen = sample[index]
    for kind in REGISTRATION_ERROR_KINDS:
        typed = corrupt_registration(random.Random(seed), citizen, kind)
        assert typed.national_id == citizen.national_id
        answer = registry.verify_patient(fhir_patient(typed))
        if kind == "ascii-folded" and not has_diacritics(citizen.full_name):
            assert (typed, answer) == (citizen, "verified")
        else:
            assert typed != citizen and answer == "mismatch", (kind, citizen, typed)


def test_the_kinds_do_what_they_say() -> None:
    citizen = Citizen("001085012345", "Nguyễn", "Văn", "Đức", "male", date(1985, 3, 12), "001", "Phường Kim Liên")
    rng = random.Random(3)
    assert corrupt_registration(rng, citizen, "ascii-folded").full_name == "Nguyen Van Duc"
    for _ in range(50):
        wrong = corrupt_registration(rng, citizen, "wrong-birth-date").birth_date
        assert wrong in {date(1985, 12, 3), date(1985, 3, 11), date(1985, 3, 13)}
        typo = corrupt_registration(rng, citizen, "typo")
        lengths = [len(typo.family) - 6, len(typo.middle) - 3, len(typo.given) - 3]
        assert sorted(lengths) in ([0, 0, 0], [-1, 0, 0]) and typo.birth_date == citizen.birth_date
    with pytest.raises(InvalidInput, match="smudge"):
        corrupt_registration(rng, citizen, "smudge")


def test_names_match_across_case_spacing_and_unicode_form_but_not_without_diacritics() -> None:
    citizen = Citizen("079190012345", "Huỳnh", "Thị", "Hương", "female", date(1990, 7, 2), "079", "Phường Bến Nghé")
    registry = PopulationRegistry([citizen])

    def check(family: str, given: str, birth_date: date | str = "1990-07-02", sex: str = "female") -> str:
        return registry.verify(citizen.national_id, family=family, given=given, birth_date=birth_date, sex=sex)

    assert check("HUỲNH", "  thị \u00a0 HƯƠNG ") == "verified"
    assert check(unicodedata.normalize("NFD", "Huỳnh"), unicodedata.normalize("NFD", "Thị Hương")) == "verified"
    assert check("Huỳnh", "Thị Hương", date(1990, 7, 2)) == "verified"
    assert check("Huynh", "Thi Huong") == "mismatch"
    assert check("Huỳnh", "Hương") == "mismatch"
    assert check("Huỳnh", "Thị Hương", "1990-02-07") == "mismatch"
    assert check("Huỳnh", "Thị Hương", "1990") == "mismatch"
    assert check("Huỳnh", "Thị Hương", "not a date") == "mismatch"
    assert check("Huỳnh", "Thị Hương", sex="male") == "mismatch"


def test_numbers_nobody_holds_are_unknown(sample, registry) -> None:
    issued = {c.national_id for c in sample}
    rng = random.Random(9)
    free = generate_national_id(rng, province_code="001", birth_year=1985, sex="male")
    while free in issued:
        free = generate_national_id(rng, province_code="001", birth_year=1985, sex="male")
    for number in (free, "not-a-number", ""):
        assert answer_for(registry, number, sample[0]) == "unknown"
    assert free not in registry and sample[0].national_id in registry


def test_the_fhir_patient_path(sample, registry) -> None:
    citizen = sample[123]
    patient = fhir_patient(citizen)
    assert registry.verify_patient(patient) == "verified"
    joined = {**patient, "name": [{"family": citizen.family, "given": [citizen.given_names]}]}
    assert registry.verify_patient(joined) == "verified"
    other_sex = "female" if citizen.sex == "male" else "male"
    assert registry.verify_patient({**patient, "gender": other_sex}) == "mismatch"
    assert registry.verify_patient({**patient, "name": []}) == "mismatch"
    assert registry.verify_patient({**patient, "birthDate": None}) == "mismatch"
    passport_only = {**patient, "identifier": [{"system": PASSPORT_SYSTEM, "value": "B1234567"}]}
    assert registry.verify_patient(passport_only) == "unknown"
    assert registry.verify_patient({"resourceType": "Patient"}) == "unknown"
    mrn_first = [{"system": "urn:emr:facility:01001:mrn", "value": "42"}, *patient["identifier"]]
    assert registry.verify_patient({**patient, "identifier": mrn_first}) == "verified"


def test_the_registry_fits_the_hub_interface_and_refuses_duplicates(sample) -> None:
    assert isinstance(PopulationRegistry([]), IdentityRegistry)
    with pytest.raises(InvalidInput, match="twice"):
        PopulationRegistry([sample[0], replace(sample[1], national_id=sample[0].national_id)])
