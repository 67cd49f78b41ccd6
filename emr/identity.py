"""The 12-digit personal identification number (CCCD / VNeID): parse, validate, generate.

The number is the one clinical key that links a patient's records across facilities,
so the hub must reject a malformed one at the door rather than index it. Layout
(Decree 137/2015/ND-CP Art. 13, Circular 59/2021/TT-BCA):

    digits 1-3   province where the birth was registered (``data/provinces.yaml``)
    digit  4     century and sex: 1900s male 0 / female 1, 2000s 2 / 3, 2100s 4 / 5,
                 2200s 6 / 7, 2300s 8 / 9
    digits 5-6   last two digits of the birth year
    digits 7-12  random; there is no check digit

So a well-formed number can only be checked for shape and a known province prefix.
The number does not say whether a person was born yet; that needs a clock, which
domain code never reads, so "birth year in the future" is the caller's check.

This module is also the one place in the project that names identifier systems.
"""

from __future__ import annotations

import functools
import random
import re
import reprlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from types import MappingProxyType
from typing import Literal

import yaml

from emr.errors import DataFileError, InvalidInput, InvalidNationalId, Problem

# --- Identifier systems -------------------------------------------------------------
# The VN Core FHIR IG draft (canonical http://fhir.ehealth.gov.vn/core) defines the
# ``insurance_number`` and ``provider-code`` naming systems. It names no URI for the
# CCCD yet, so the one below (and the passport, CMND and temporary ones) are
# assumptions made in the IG's style, to be replaced when the IG settles them.
NATIONAL_ID_SYSTEM = "http://fhir.ehealth.gov.vn/core/NamingSystem/cccd"  # assumption
FACILITY_CODE_SYSTEM = "http://fhir.ehealth.gov.vn/core/NamingSystem/provider-code"
INSURANCE_SYSTEM = "http://fhir.ehealth.gov.vn/core/NamingSystem/insurance_number"
PASSPORT_SYSTEM = "http://fhir.ehealth.gov.vn/core/NamingSystem/passport"  # assumption
# The old 9-digit identity card number (CMND), still printed on older records.
OLD_ID_SYSTEM = "http://fhir.ehealth.gov.vn/core/NamingSystem/cmnd"  # assumption
# Placeholder identifiers for unidentified emergency patients, linked to a national
# number later; a project-local system because no national one exists (assumption).
TEMPORARY_ID_SYSTEM = "urn:emr:temporary-id"


def mrn_system(facility_code: str) -> str:
    """The system of one facility's local medical record numbers.

    MRNs are only unique inside the facility that issued them, so each facility
    gets its own system and two hospitals' MRN 12345 never collide in the hub.
    """
    return local_system(facility_code, "mrn")


def local_system(facility_code: str, kind: str) -> str:
    """The system of one facility's own identifiers of a kind (``mrn``, ``encounter``, ``result`` …)."""
    return f"urn:emr:facility:{facility_code}:{kind}"


# --- Provinces ----------------------------------------------------------------------
DEFAULT_PROVINCES_PATH = Path(__file__).resolve().parent.parent / "data" / "provinces.yaml"
_PROVINCE_FIELDS = ("code", "name_vi", "name_en", "post_2025_name_vi", "post_2025_code")
_FIELD_PATTERNS = {"code": re.compile(r"[0-9]{3}"), "post_2025_code": re.compile(r"[0-9]{2}")}


@dataclass(frozen=True)
class Province:
    """A pre-2025 province, the unit the number's prefix names, and where it went in 2025.

    Issued numbers kept their prefix through the 1 July 2025 merger, so decoding
    needs the old 63-province table; reports that group by today's map use the
    ``post_2025_*`` fields.
    """

    code: str
    name_vi: str
    name_en: str
    post_2025_name_vi: str
    post_2025_code: str


@functools.cache
def load_provinces(path: Path | None = None) -> Mapping[str, Province]:
    """Read the province table, keyed by three-digit code; every problem is reported at once.

    Cached because the table is read on every parse; the result is read-only so a
    caller cannot corrupt the shared copy.
    """
    source = path or DEFAULT_PROVINCES_PATH
    try:
        document = yaml.safe_load(source.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise DataFileError(f"{source}: cannot read the province table: {error}") from error
    rows = document.get("provinces") if isinstance(document, dict) else None
    if not isinstance(rows, list):
        raise DataFileError(f"{source}: expected a mapping with a 'provinces' list")
    problems = _document_problems(document) + [p for i, row in enumerate(rows) for p in _row_problems(i, row)]
    if not problems:
        problems = _table_problems(rows)
    if problems:
        raise DataFileError(f"{source}: the province table is invalid", problems=problems)
    return MappingProxyType({row["code"]: Province(**row) for row in rows})


def _document_problems(document: dict) -> list[Problem]:
    """The table is law-derived data, so it must say which law (house rule for data files)."""
    if isinstance(document.get("source"), str) and document["source"].strip():
        return []
    return [Problem("needs a non-empty 'source' note citing the legal documents", "source")]


def _row_problems(index: int, row: object) -> list[Problem]:
    where = f"provinces[{index}]"
    if not isinstance(row, dict) or set(row) != set(_PROVINCE_FIELDS):
        return [Problem(f"needs exactly the fields {', '.join(_PROVINCE_FIELDS)}", where)]
    problems = [
        Problem("must be a non-empty string", f"{where}.{field}")
        for field in _PROVINCE_FIELDS
        if not isinstance(row[field], str) or not row[field].strip()
    ]
    problems += [
        Problem(f"{row[field]!r} must be {pattern.pattern}", f"{where}.{field}")
        for field, pattern in _FIELD_PATTERNS.items()
        if isinstance(row[field], str) and not pattern.fullmatch(row[field])
    ]
    if isinstance(row["name_en"], str) and not row["name_en"].isascii():
        problems.append(Problem("must be plain ASCII", f"{where}.name_en"))
    return problems


def _table_problems(rows: list[dict]) -> list[Problem]:
    """Codes must be unique, and each post-2025 province must have exactly one code."""
    problems: list[Problem] = []
    seen: dict[str, str] = {}
    new_codes: dict[str, str] = {}
    for index, row in enumerate(rows):
        where = f"provinces[{index}]"
        if row["code"] in seen:
            problems.append(Problem(f"code {row['code']} is also used by {seen[row['code']]}", f"{where}.code"))
        seen.setdefault(row["code"], row["name_vi"])
        known = new_codes.setdefault(row["post_2025_name_vi"], row["post_2025_code"])
        if known != row["post_2025_code"]:
            message = f"{row['post_2025_name_vi']} already has post-2025 code {known}"
            problems.append(Problem(message, f"{where}.post_2025_code"))
    return problems


# --- Parsing ------------------------------------------------------------------------
NATIONAL_ID_LENGTH = 12
_DIGITS = re.compile(r"[0-9]*")
_SEXES = ("male", "female")
FIRST_CENTURY = 1900
LAST_BIRTH_YEAR = 2399  # digit 4 runs out after the 2300s


@dataclass(frozen=True)
class NationalId:
    """What a valid number says about its holder; ``value`` is the number itself."""

    value: str
    province: Province
    sex: Literal["male", "female"]
    century: int
    birth_year: int


def parse_national_id(value: str) -> NationalId:
    """Decode a number, or raise InvalidNationalId naming the first rule it breaks.

    Nothing is stripped or normalised: the number is a key, and a key that only
    matches after clean-up would let two spellings of one patient into the index.
    """
    _check_shape(value)
    province = _province_of(value)
    century_sex = int(value[3])
    century = FIRST_CENTURY + 100 * (century_sex // 2)
    return NationalId(
        value=value,
        province=province,
        sex=_SEXES[century_sex % 2],
        century=century,
        birth_year=century + int(value[4:6]),
    )


def is_valid_national_id(value: object) -> bool:
    """True when ``value`` is a well-formed number with a known province prefix."""
    try:
        parse_national_id(value)  # type: ignore[arg-type]
    except InvalidNationalId:
        return False
    return True


def _check_shape(value: object) -> None:
    """Type first, then characters, then length, so stray whitespace is always a 'digits' error."""
    if not isinstance(value, str):
        raise _invalid("type", value, f"is of type {type(value).__name__}, not a string")
    if not _DIGITS.fullmatch(value):
        raise _invalid("digits", value, "contains characters other than the digits 0-9")
    if len(value) != NATIONAL_ID_LENGTH:
        raise _invalid("length", value, f"has {len(value)} digits, not {NATIONAL_ID_LENGTH}")


def _province_of(value: str) -> Province:
    province = load_provinces().get(value[:3])
    if province is None:
        raise _invalid("province", value, f"starts with {value[:3]}, which is not a province code")
    return province


def _invalid(rule: str, value: object, problem: str) -> InvalidNationalId:
    # reprlib keeps an absurdly long input from flooding logs and OperationOutcomes.
    return InvalidNationalId(rule, f"Personal identification number {reprlib.repr(value)} {problem} (rule '{rule}').")


# --- Cross-checks against a FHIR Patient ----------------------------------------------
_FHIR_DATE = re.compile(r"([0-9]{4})(-[0-9]{2}(-[0-9]{2})?)?")
_FHIR_GENDERS = frozenset({"male", "female", "other", "unknown"})


def demographic_conflicts(nid: NationalId, *, birth_date: str | date | None, gender: str | None) -> list[str]:
    """Ways a Patient's birthDate and gender contradict what its number encodes.

    A contradiction usually means the number was typed into the wrong record, which
    would merge two people's histories, so the hub reports it rather than guessing.
    Each entry starts with its rule name (``birth-year`` or ``sex``). Missing values,
    and the genders ``other`` and ``unknown``, cannot conflict.
    """
    conflicts = []
    year = _birth_year(birth_date)
    if year is not None and year != nid.birth_year:
        conflicts.append(
            f"birth-year: number {nid.value} encodes birth year {nid.birth_year}, "
            f"but the patient's birthDate is {birth_date}."
        )
    if _checked_gender(gender) in _SEXES and gender != nid.sex:
        conflicts.append(f"sex: number {nid.value} encodes sex {nid.sex}, but the patient's gender is {gender}.")
    return conflicts


def _birth_year(birth_date: str | date | None) -> int | None:
    if birth_date is None:
        return None
    if isinstance(birth_date, date):
        return birth_date.year
    match = _FHIR_DATE.fullmatch(birth_date) if isinstance(birth_date, str) else None
    if match is None:
        raise InvalidInput(f"birthDate {reprlib.repr(birth_date)} is not a FHIR date (YYYY, YYYY-MM or YYYY-MM-DD).")
    return int(match.group(1))


def _checked_gender(gender: str | None) -> str | None:
    if gender is not None and gender not in _FHIR_GENDERS:
        raise InvalidInput(f"gender {reprlib.repr(gender)} is not a FHIR administrative gender code.")
    return gender


# --- Generation ---------------------------------------------------------------------
def generate_national_id(rng: random.Random, *, province_code: str, birth_year: int, sex: str) -> str:
    """A valid number for a simulated person; the random tail comes from ``rng`` for reproducibility.

    Numbers are not guaranteed unique: the simulator's population must de-duplicate,
    as the real registry does.
    """
    if not isinstance(province_code, str) or province_code not in load_provinces():
        message = f"Province code {reprlib.repr(province_code)} is not in the province table."
        raise InvalidNationalId("province", message)
    if type(birth_year) is not int or not FIRST_CENTURY <= birth_year <= LAST_BIRTH_YEAR:
        message = f"Birth year {birth_year!r} cannot be encoded; the number covers {FIRST_CENTURY}-{LAST_BIRTH_YEAR}."
        raise InvalidNationalId("birth-year", message)
    if sex not in _SEXES:
        raise InvalidNationalId("sex", f"Sex {reprlib.repr(sex)} cannot be encoded; use 'male' or 'female'.")
    century_sex = 2 * ((birth_year - FIRST_CENTURY) // 100) + _SEXES.index(sex)
    return f"{province_code}{century_sex}{birth_year % 100:02d}{rng.randrange(10**6):06d}"


__all__ = [
    "FACILITY_CODE_SYSTEM",
    "INSURANCE_SYSTEM",
    "NATIONAL_ID_SYSTEM",
    "OLD_ID_SYSTEM",
    "PASSPORT_SYSTEM",
    "TEMPORARY_ID_SYSTEM",
    "NationalId",
    "Province",
    "demographic_conflicts",
    "generate_national_id",
    "is_valid_national_id",
    "load_provinces",
    "mrn_system",
    "parse_national_id",
]
