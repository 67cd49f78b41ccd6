"""Facility registry and paraclinical test catalogue, read from data files.

``hospitals/<slug>.yaml`` holds one facility each; ``data/tests.yaml`` holds the test
catalogue keyed by LOINC (the wire code; the MoH shared code rides beside it). Every
figure in those files is a :class:`~emr.sourced.Sourced` value. The loaders check each
file against the models below, then the rules between fields and between files, and
report every problem at once, each located as ``<folder>/<file>:<field path>``.

Facility code and province: an insurance facility code is the two-digit province code
of the national administrative-unit list plus a three-digit sequence (Decision
384/QĐ-BYT). For the pre-2025 provinces the three-digit personal-ID prefix is that same
two-digit code with a leading zero (Hà Nội 01 / 001, Bắc Ninh 27 / 027), so the rule
checked is ``code[:2] == province_code[1:]``. Facilities keep their pre-2025 code after
the 2025 merger; the post-merger province is carried in ``province_2025``.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from emr.errors import DataFileError, Problem
from emr.sourced import Sourced

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_HOSPITALS_DIR = PROJECT_ROOT / "hospitals"
DEFAULT_TESTS_PATH = PROJECT_ROOT / "data" / "tests.yaml"

Category = Literal["haematology", "biochemistry", "immunology", "microbiology", "urinalysis", "imaging"]
ValueType = Literal["quantity", "coded", "panel", "imaging"]
Kind = Literal["central", "provincial", "regional"]
TechnicalLevel = Literal["initial", "basic", "specialised"]  # Law 15/2023/QH15 Art. 104
# Referrals go up: a lower rank number is a higher tier.
KIND_RANK: Mapping[str, int] = {"central": 0, "provincial": 1, "regional": 2}


# --- LOINC codes ---------------------------------------------------------------------
def loinc_check_digit(number: str) -> int:
    """The mod-10 check digit of the part of a LOINC code before the hyphen.

    The LOINC Users' Guide recipe: from the right, take the digits in odd positions as
    one number and double it; append the even-position digits in front; sum all the
    digits; the check digit is what brings that sum up to the next multiple of ten.
    """
    if not re.fullmatch(r"[0-9]+", number):
        raise ValueError(f"{number!r} is not a string of digits")
    from_right = number[::-1]
    odd = from_right[0::2][::-1]
    even = from_right[1::2][::-1]
    total = sum(int(digit) for digit in even + str(int(odd) * 2))
    return (10 - total % 10) % 10


def loinc_problem(code: str) -> str | None:
    """Why ``code`` is not a well-formed LOINC code, or None when it is."""
    if not re.fullmatch(r"[0-9]{1,7}-[0-9]", code):
        return f"{code!r} is not a LOINC code (1-7 digits, a hyphen, one check digit)"
    number, _, check = code.partition("-")
    expected = loinc_check_digit(number)
    if int(check) != expected:
        return f"{code!r} fails the LOINC mod-10 check (check digit should be {expected})"
    return None


def _well_formed_loinc(code: str) -> str:
    if problem := loinc_problem(code):
        raise ValueError(problem)
    return code


LoincCode = Annotated[str, AfterValidator(_well_formed_loinc)]
FacilityCode = Annotated[str, Field(pattern=r"^[0-9]{5}$")]
Probability = Annotated[float, Field(ge=0, le=1)]


# --- Models --------------------------------------------------------------------------
class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Range(_Frozen):
    """A reference interval in the test's unit."""

    low: float
    high: float


class LabTest(_Frozen):
    """One orderable test, panel or panel component of the catalogue.

    ``validity_hours`` counts from specimen collection; ``shareable`` false means a
    result from elsewhere is never reused, whatever its age. Components of a panel are
    not orderable alone and carry price 0 (the panel is billed).
    """

    loinc: LoincCode
    loinc_display: str = Field(min_length=1)
    moh_code: str | None = None
    moh_code_note: str | None = None
    name_vi: str = Field(min_length=1)
    name_en: str = Field(min_length=1)
    category: Category
    value_type: ValueType
    orderable: bool = True
    members: tuple[LoincCode, ...] = ()
    validity_hours: Sourced[Annotated[int, Field(gt=0)]]
    positive_only: bool
    shareable: Sourced[bool]
    price_vnd: Sourced[Annotated[int, Field(ge=0)]]
    turnaround_hours: Sourced[Annotated[float, Field(gt=0)]]
    blood_draw: bool
    radiation: bool
    unit: str | None = None
    reference_range: Sourced[Range] | None = None
    normal_mean: Sourced[float] | None = None
    normal_sd: Sourced[Annotated[float, Field(gt=0)]] | None = None
    answers: tuple[str, ...] = ()
    negative_answer: str | None = None
    positive_rate: Sourced[Probability] | None = None


class _CatalogueFile(_Frozen):
    """The shape of ``data/tests.yaml``; its rows are checked one by one as LabTest."""

    note: str = Field(min_length=1)
    tests: list[Any]


class LabQuality(_Frozen):
    quality_level: Sourced[Annotated[int, Field(ge=0, le=5)]]  # Decision 2429/QĐ-BYT; 0 = unranked
    iso15189: Sourced[bool]


class EmrStatus(_Frozen):
    """``live``: the EMR is in production in the registry's snapshot (end of 2025);
    ``go_live``: the date it went live, or the planned date, or null when none is known."""

    live: bool
    go_live: Sourced[date] | None = None


class Facility(_Frozen):
    code: FacilityCode
    code_illustrative: bool
    name_vi: str = Field(min_length=1)
    name_en: str = Field(min_length=1)
    kind: Kind
    province_code: str = Field(pattern=r"^[0-9]{3}$")
    province_2025: str = Field(min_length=1)
    technical_level: TechnicalLevel
    beds: Sourced[Annotated[int, Field(gt=0)]]
    daily_outpatients: Sourced[Annotated[int, Field(gt=0)]]
    lab: LabQuality
    emr: EmrStatus
    tests: tuple[LoincCode, ...]
    referral_targets: tuple[FacilityCode, ...] = ()
    note: str | None = None


# --- Loading -------------------------------------------------------------------------
@dataclass(frozen=True)
class _Entry:
    """A facility file or catalogue row: where, its raw mapping, and its model if it parsed.
    Checks between entries read the raw mapping, so a bad field hides no other problem."""

    where: str
    raw: Mapping[str, Any]
    model: Any | None


def load_tests(path: Path) -> dict[str, LabTest]:
    """The test catalogue keyed by LOINC code; raises DataFileError listing every problem."""
    entries, problems = _read_tests(path)
    _raise_if_any(problems, f"{path} is invalid")
    return {entry.model.loinc: entry.model for entry in entries}


def load_facilities(directory: Path) -> dict[str, Facility]:
    """Every ``*.yaml`` facility in ``directory`` keyed by code; raises DataFileError listing
    every problem (the cross-check against the test catalogue is in validate_data)."""
    entries, problems = _read_facilities(directory)
    _raise_if_any(problems, f"the facility registry in {directory} is invalid")
    return {entry.model.code: entry.model for entry in entries}


def validate_data(
    *, hospitals_dir: Path, tests_path: Path, provinces: Mapping[str, Any] | None = None
) -> list[Problem]:
    """Every problem in the facility files and the test catalogue, and between them.

    ``provinces`` (``emr.identity.load_provinces()``), when given, also checks each
    facility's province code and post-2025 province against the province table.
    """
    test_entries, problems = _read_tests(tests_path)
    facility_entries, facility_problems = _read_facilities(hospitals_dir)
    problems += facility_problems
    known_tests = _by_key(test_entries, "loinc")
    for entry in facility_entries:
        problems += _facility_test_problems(entry, known_tests)
        if provinces is not None:
            problems += _province_problems(entry, provinces)
    return problems


def _raise_if_any(problems: list[Problem], message: str) -> None:
    if problems:
        raise DataFileError(f"{message} ({len(problems)} problems)", problems=problems)


def _label(path: Path) -> str:
    return f"{path.parent.name}/{path.name}"


def _at(where: str, field: str) -> str:
    """A location inside ``where``: ``file:field`` for a file, ``file:row.field`` for a row."""
    return f"{where}.{field}" if ":" in where else f"{where}:{field}"


def _read_yaml(path: Path) -> tuple[Any, list[Problem]]:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8")), []
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        return None, [Problem(f"cannot read: {' '.join(str(error).split())}", _label(path))]


def _entry(model: type[BaseModel], document: Any, where: str) -> tuple[_Entry, list[Problem]]:
    raw = document if isinstance(document, dict) else {}
    try:
        return _Entry(where, raw, model.model_validate(document)), []
    except ValidationError as error:
        return _Entry(where, raw, None), [_pydantic_problem(item, where) for item in error.errors()]


def _pydantic_problem(item: Mapping[str, Any], where: str) -> Problem:
    message = item["msg"].removeprefix("Value error, ")
    if item["type"] == "model_type" and "Sourced" in message and not isinstance(item["input"], dict):
        message = f"bare value {item['input']}: write {{value: ..., source: ...}} or {{value: ..., assumption: ...}}"
    path = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in item["loc"]).lstrip(".")
    return Problem(message, _at(where, path) if path else where)


def _strings(raw: Mapping[str, Any], key: str) -> list[tuple[int, str]]:
    values = raw.get(key)
    return [(i, v) for i, v in enumerate(values) if isinstance(v, str)] if isinstance(values, list) else []


def _by_key(entries: list[_Entry], key: str) -> dict[str, _Entry]:
    """Entries by a raw string field; on duplicates the first entry wins."""
    return {entry.raw[key]: entry for entry in reversed(entries) if isinstance(entry.raw.get(key), str)}


def _duplicate_problems(entries: list[_Entry], key: str, what: str) -> list[Problem]:
    first = _by_key(entries, key)
    return [
        Problem(f"{what} {entry.raw[key]} is also used by {first[entry.raw[key]].where}", _at(entry.where, key))
        for entry in entries
        if isinstance(entry.raw.get(key), str) and first[entry.raw[key]] is not entry
    ]


# --- The test catalogue --------------------------------------------------------------
def _read_tests(path: Path) -> tuple[list[_Entry], list[Problem]]:
    document, problems = _read_yaml(path)
    if problems:
        return [], problems
    header, problems = _entry(_CatalogueFile, document, _label(path))
    rows = header.raw.get("tests")
    entries: list[_Entry] = []
    for index, row in enumerate(rows if isinstance(rows, list) else []):
        entry, row_problems = _entry(LabTest, row, f"{_label(path)}:tests[{index}]")
        entries.append(entry)
        problems += row_problems + (_test_problems(entry.model, entry.where) if entry.model else [])
    return entries, problems + _duplicate_problems(entries, "loinc", "LOINC") + _panel_problems(entries)


def _test_problems(test: LabTest, where: str) -> list[Problem]:
    """Rules between the fields of one test."""
    coded, panel, imaging = test.value_type == "coded", test.value_type == "panel", test.category == "imaging"
    checks = [
        (test.moh_code is None and not (test.moh_code_note or "").strip(), "moh_code_note",
         "a null moh_code needs a note saying why"),
        ((test.value_type == "imaging") != imaging, "value_type", "imaging, and only imaging, has value_type imaging"),
        (test.radiation and not imaging, "radiation", "only imaging can involve radiation"),
        (test.positive_only != (test.category == "microbiology"), "positive_only",
         "microbiology results, and only they, are shared when positive only"),
        (test.orderable and test.price_vnd.value == 0, "price_vnd", "an orderable test needs a price"),
        (panel != bool(test.members), "members", "panels, and only panels, list members"),
        (coded != bool(test.answers), "answers", "coded tests, and only they, list answers"),
        (test.positive_rate is not None and not coded, "positive_rate", "only coded tests have a positive rate"),
        (test.positive_rate is not None and test.negative_answer is None, "negative_answer",
         "a positive_rate needs the negative answer"),
        (test.negative_answer is not None and test.negative_answer not in test.answers, "negative_answer",
         "must be one of answers"),
    ]
    problems = [Problem(message, _at(where, field)) for failed, field, message in checks if failed]
    return problems + _quantity_problems(test, where)


def _quantity_problems(test: LabTest, where: str) -> list[Problem]:
    hints = {name: getattr(test, name) for name in ("unit", "reference_range", "normal_mean", "normal_sd")}
    if test.value_type != "quantity":
        return [Problem(f"only quantity tests have a {name}", _at(where, name)) for name, v in hints.items() if v]
    problems = [Problem("a quantity test needs this", _at(where, name)) for name, v in hints.items() if v is None]
    if test.reference_range is not None:
        low, high = test.reference_range.value.low, test.reference_range.value.high
        if low >= high:
            problems.append(Problem(f"low {low} must be below high {high}", _at(where, "reference_range")))
        elif test.normal_mean is not None and not low <= test.normal_mean.value <= high:
            problems.append(Problem("the normal mean lies outside the reference range", _at(where, "normal_mean")))
    return problems


def _panel_problems(entries: list[_Entry]) -> list[Problem]:
    """Members exist and are plain components; every non-orderable test belongs to a panel."""
    by_code = _by_key(entries, "loinc")
    in_a_panel = {member for entry in entries for _, member in _strings(entry.raw, "members")}
    problems: list[Problem] = []
    for entry in entries:
        for index, member in _strings(entry.raw, "members"):
            found = by_code.get(member)
            where = _at(entry.where, f"members[{index}]")
            if found is None and not loinc_problem(member):  # a malformed code is already reported
                problems.append(Problem(f"member {member} is not in the catalogue", where))
            elif found is not None and found.model and (found.model.value_type == "panel" or found.model.orderable):
                problems.append(Problem(f"member {member} must be a non-orderable, non-panel test", where))
        if entry.model and not entry.model.orderable and entry.model.loinc not in in_a_panel:
            message = "a test that cannot be ordered alone must belong to a panel"
            problems.append(Problem(message, _at(entry.where, "orderable")))
    return problems


# --- The facility registry -----------------------------------------------------------
def _read_facilities(directory: Path) -> tuple[list[_Entry], list[Problem]]:
    paths = sorted(directory.glob("*.yaml"))
    if not paths:
        return [], [Problem("no facility files (*.yaml) found", str(directory))]
    entries: list[_Entry] = []
    problems: list[Problem] = []
    for path in paths:
        document, read_problems = _read_yaml(path)
        entry, parse_problems = _entry(Facility, document, _label(path))
        entries.append(entry)
        problems += read_problems or parse_problems
        problems += _facility_problems(entry)
    problems += _duplicate_problems(entries, "code", "facility code")
    kinds = {code: entry.raw.get("kind") for code, entry in _by_key(entries, "code").items()}
    for entry in entries:
        problems += _referral_problems(entry, kinds)
    return entries, problems


def _facility_problems(entry: _Entry) -> list[Problem]:
    """Rules inside one facility file, read from the raw mapping."""
    raw, where, problems = entry.raw, entry.where, []
    code, province = raw.get("code"), raw.get("province_code")
    if _digits(code, 5) and _digits(province, 3) and code[:2] != province[1:]:
        message = f"code prefix {code[:2]} does not match province {province} (expected {province[1:]})"
        problems.append(Problem(message, _at(where, "code")))
    emr = raw.get("emr")
    if isinstance(emr, dict) and emr.get("live") is True and emr.get("go_live") is None:
        problems.append(Problem("a live EMR needs its go-live date", _at(where, "emr.go_live")))
    for key in ("tests", "referral_targets"):
        counts = Counter(value for _, value in _strings(raw, key))
        problems += [Problem(f"{value} is listed {n} times", _at(where, key)) for value, n in counts.items() if n > 1]
    return problems


def _digits(value: Any, count: int) -> bool:
    return isinstance(value, str) and re.fullmatch(f"[0-9]{{{count}}}", value) is not None


def _referral_problems(entry: _Entry, kinds: Mapping[str, Any]) -> list[Problem]:
    """Targets exist, are not the facility itself, and sit higher (central may refer to central)."""
    problems: list[Problem] = []
    kind = entry.raw.get("kind")
    for index, code in _strings(entry.raw, "referral_targets"):
        where = _at(entry.where, f"referral_targets[{index}]")
        target_kind = kinds.get(code)
        if code not in kinds:
            problems.append(Problem(f"referral target {code} is not a known facility", where))
        elif code == entry.raw.get("code"):
            problems.append(Problem("a facility cannot refer to itself", where))
        elif kind in KIND_RANK and target_kind in KIND_RANK and (
            KIND_RANK[target_kind] > KIND_RANK[kind] or target_kind == kind != "central"
        ):
            problems.append(Problem(f"refers sideways or down, to {target_kind} facility {code}", where))
    return problems


def _facility_test_problems(entry: _Entry, known: Mapping[str, _Entry]) -> list[Problem]:
    """Listed tests exist and can be ordered (malformed codes are already reported)."""
    problems: list[Problem] = []
    for index, code in _strings(entry.raw, "tests"):
        where = _at(entry.where, f"tests[{index}]")
        if code not in known and not loinc_problem(code):
            problems.append(Problem(f"test {code} is not in the catalogue", where))
        elif code in known and known[code].model and not known[code].model.orderable:
            problems.append(Problem(f"test {code} is a panel component; list its panel", where))
    return problems


def _province_problems(entry: _Entry, provinces: Mapping[str, Any]) -> list[Problem]:
    code, after_2025 = entry.raw.get("province_code"), entry.raw.get("province_2025")
    if not _digits(code, 3):
        return []  # already reported by the model
    province = provinces.get(code)
    if province is None:
        return [Problem(f"unknown province code {code}", _at(entry.where, "province_code"))]
    if isinstance(after_2025, str) and province.post_2025_name_vi != after_2025:
        message = f"{province.name_vi} belongs to {province.post_2025_name_vi} after 2025, not {after_2025}"
        return [Problem(message, _at(entry.where, "province_2025"))]
    return []
