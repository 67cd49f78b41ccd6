"""The population tables: ``data/population.yaml``, checked and turned into ready-to-draw distributions.

Every figure in the file is a :class:`~emr.sourced.Sourced` value. The loader checks the
file against the models below and the rules between sections, and reports every
problem at once, each located as ``data/population.yaml:<field path>``.
"""

from __future__ import annotations

import random
import unicodedata
from bisect import bisect
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from itertools import accumulate
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any, Generic, Literal, TypeVar, get_args

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from emr.errors import DataFileError, Problem
from emr.identity import load_provinces
from emr.sourced import Sourced

DEFAULT_TABLES_PATH = Path(__file__).resolve().parents[2] / "data" / "population.yaml"
Sex = Literal["male", "female"]
Region = Literal["north", "central", "south"]
ErrorKind = Literal["typo", "wrong-birth-date", "ascii-folded"]
REGISTRATION_ERROR_KINDS: tuple[str, ...] = get_args(ErrorKind)
SHARE_TOLERANCE = 0.01  # a distribution's shares must add up to 1 within this


# --- The file ---------------------------------------------------------------------------
def _nfc(text: str) -> str:
    if not text or text != text.strip() or unicodedata.normalize("NFC", text) != text:
        raise ValueError("must be non-empty NFC text (precomposed letters) without surrounding spaces")
    return text


Text = Annotated[str, AfterValidator(_nfc)]
Name = Annotated[Text, Field(pattern=r"^\S+$")]
Share = Sourced[Annotated[float, Field(ge=0, le=1)]]
ProvinceCode = Annotated[str, Field(pattern=r"^[0-9]{3}$")]


def _check(problems: list[str]) -> None:
    """Raise what a model validator found, all of it in one message."""
    if problems:
        raise ValueError("; ".join(problems))


def _sum_problem(shares: Iterable[float], what: str) -> list[str]:
    total = sum(shares)
    return [] if abs(total - 1) <= SHARE_TOLERANCE else [f"{what} add up to {total:.4f}, not 1 (± {SHARE_TOLERANCE})"]


def _twice(values: Iterable[str]) -> list[str]:
    return [f"{value} is listed {n} times" for value, n in Counter(values).items() if n > 1]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SurnameRow(_Frozen):
    name: Name
    south_variant: Name | None = None
    share: Share


class OtherSurnames(_Frozen):
    share: Share
    names: tuple[Name, ...] = Field(min_length=1)


class NameRow(_Frozen):
    name: Name
    weight: Sourced[Annotated[float, Field(gt=0)]]


class NamesBySex(_Frozen):
    male: tuple[NameRow, ...] = Field(min_length=1)
    female: tuple[NameRow, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _distinct(self) -> NamesBySex:
        found = [(sex, problem) for sex in ("male", "female") for problem in _twice(r.name for r in getattr(self, sex))]
        _check([f"{sex}: {problem}" for sex, problem in found])
        return self


class GivenNamesBySex(NamesBySex):
    male: tuple[NameRow, ...] = Field(min_length=15)
    female: tuple[NameRow, ...] = Field(min_length=15)


class AgeBandRow(_Frozen):
    ages: str = Field(pattern=r"^[0-9]+(-[0-9]+|\+)$")
    share: Share


class AgeStructure(_Frozen):
    note: Text
    bands: tuple[AgeBandRow, ...] = Field(min_length=1)
    oldest_age: Sourced[Annotated[int, Field(gt=0)]]

    def ranges(self) -> list[tuple[int, int]]:
        """Each band as inclusive (youngest, oldest) ages; the open band ends at ``oldest_age``."""
        parts = [row.ages.rstrip("+").partition("-") for row in self.bands]
        return [(int(low), int(high) if high else self.oldest_age.value) for low, _, high in parts]

    @model_validator(mode="after")
    def _contiguous(self) -> AgeStructure:
        problems = _sum_problem((row.share.value for row in self.bands), "band shares")
        if [row.ages.endswith("+") for row in self.bands] != [False] * (len(self.bands) - 1) + [True]:
            problems.append("the last band, and only it, must be open (like '80+')")
        expected = 0
        for row, (low, high) in zip(self.bands, self.ranges()):
            problems += [f"band {row.ages} should start at {expected}"] if low != expected else []
            problems += [f"band {row.ages} ends at {high}, before it starts"] if high < low else []
            expected = high + 1
        _check(problems)
        return self


class OriginRow(_Frozen):
    province: ProvinceCode
    share: Share


class ResidenceBlock(_Frozen):
    communes: tuple[Text, ...] = Field(min_length=6)
    born_elsewhere: Share
    migrant_origins: tuple[OriginRow, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> ResidenceBlock:
        origins = self.migrant_origins
        shares = _sum_problem((origin.share.value for origin in origins), "migrant origin shares")
        _check(_twice(self.communes) + _twice(origin.province for origin in origins) + shares)
        return self


class ProvinceRow(_Frozen):
    code: ProvinceCode
    name: Text
    region: Region
    residence: ResidenceBlock | None = None

    @model_validator(mode="after")
    def _known(self) -> ProvinceRow:
        known = load_provinces().get(self.code)
        problems = [f"{self.code} is not in the province table"] if known is None else []
        if known is not None and known.name_vi != self.name:
            problems.append(f"{self.code} is {known.name_vi} in the province table, not {self.name}")
        if self.residence and self.code in {origin.province for origin in self.residence.migrant_origins}:
            problems.append("a province cannot be its own migrant origin")
        _check(problems)
        return self


class RegistrationErrorRow(_Frozen):
    kind: ErrorKind
    description: Text


class PopulationFile(_Frozen):
    """The whole of ``data/population.yaml``."""

    note: Text
    surnames: tuple[SurnameRow, ...] = Field(min_length=1)
    other_surnames: OtherSurnames
    south_variant_share: Share
    middle_names: NamesBySex
    given_names: GivenNamesBySex
    male_share: Share
    age_structure: AgeStructure
    provinces: tuple[ProvinceRow, ...] = Field(min_length=1)
    registration_errors: tuple[RegistrationErrorRow, ...] = Field(min_length=1)


def _file_problems(doc: PopulationFile) -> list[Problem]:
    """Rules across sections, checked once every section is well-formed."""
    surname_shares = [row.share.value for row in doc.surnames] + [doc.other_surnames.share.value]
    spellings = [row.name for row in doc.surnames] + [row.south_variant for row in doc.surnames if row.south_variant]
    listed = {row.code for row in doc.provinces}
    origins = {o.province for row in doc.provinces if row.residence for o in row.residence.migrant_origins}
    kinds = [row.kind for row in doc.registration_errors]
    found = {
        "surnames": _sum_problem(surname_shares, "surname shares with other_surnames")
        + _twice(spellings + list(doc.other_surnames.names)),
        "provinces": _twice(row.code for row in doc.provinces)
        + [f"migrant origin {code} is not listed here (its region is needed)" for code in sorted(origins - listed)],
        "registration_errors": _twice(kinds)
        + [f"kind {kind} is missing" for kind in REGISTRATION_ERROR_KINDS if kind not in kinds],
    }
    return [Problem(message, where) for where, messages in found.items() for message in messages]


def _pydantic_problem(item: Mapping[str, Any]) -> Problem:
    message = item["msg"].removeprefix("Value error, ")
    if item["type"] == "model_type" and "Sourced" in message and not isinstance(item["input"], dict):
        message = f"bare value {item['input']!r}: write {{value: ..., source: ...}} or {{value: ..., assumption: ...}}"
    where = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in item["loc"]).lstrip(".")
    return Problem(message, where or "(document)")


# --- Ready-to-draw tables ---------------------------------------------------------------
T = TypeVar("T")


@dataclass(frozen=True)
class Distribution(Generic[T]):
    """A finite distribution, drawn from with the caller's seeded rng."""

    values: tuple[T, ...]
    cum_weights: tuple[float, ...]

    @classmethod
    def of(cls, pairs: Iterable[tuple[T, float]]) -> Distribution[T]:
        values, weights = zip(*pairs)
        return cls(tuple(values), tuple(accumulate(weights)))

    def draw(self, rng: random.Random) -> T:
        # What random.choices does for one value, without building a list.
        return self.values[bisect(self.cum_weights, rng.random() * self.cum_weights[-1], 0, len(self.values) - 1)]


@dataclass(frozen=True)
class ResidenceTables:
    code: str
    communes: tuple[str, ...]
    born_elsewhere: float
    migrant_origins: Distribution[str]


@dataclass(frozen=True)
class PopulationTables:
    """The population file, checked, with its lists turned into distributions.

    Surnames are drawn in their northern spelling; ``south_variants`` maps each to its
    southern one. ``age_bands`` yields inclusive (youngest, oldest) ages in years.
    ``registration_errors`` describes each kind of registration error the simulator injects.
    ``document`` keeps the file itself, sources and all, for reports that quote it.
    """

    document: PopulationFile
    surnames: Distribution[str]
    south_variants: Mapping[str, str]
    south_variant_share: float
    middle_names: Mapping[str, Distribution[str]]
    given_names: Mapping[str, Distribution[str]]
    male_share: float
    age_bands: Distribution[tuple[int, int]]
    regions: Mapping[str, str]
    residences: Mapping[str, ResidenceTables]
    registration_errors: Mapping[str, str]


def load_population_tables(path: Path = DEFAULT_TABLES_PATH) -> PopulationTables:
    """Read and check the population file; raises DataFileError listing every problem at once.

    Each problem is located as ``<folder>/<file>:<field path>``, e.g.
    ``data/population.yaml:surnames[3].share``.
    """
    label = f"{path.parent.name}/{path.name}"
    try:
        doc = PopulationFile.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise DataFileError(f"{label}: cannot read: {error}", location=label) from error
    except ValidationError as error:
        problems = [_pydantic_problem(item) for item in error.errors()]
    else:
        problems = _file_problems(doc)
    if problems:
        located = [replace(problem, location=f"{label}:{problem.location}") for problem in problems]
        raise DataFileError(f"{label} is invalid ({len(located)} problems)", problems=located)
    return _tables(doc)


def _tables(doc: PopulationFile) -> PopulationTables:
    def by_sex(rows: NamesBySex) -> Mapping[str, Distribution[str]]:
        pairs = {sex: [(row.name, row.weight.value) for row in getattr(rows, sex)] for sex in get_args(Sex)}
        return MappingProxyType({sex: Distribution.of(weighted) for sex, weighted in pairs.items()})

    others = doc.other_surnames
    surnames = [(row.name, row.share.value) for row in doc.surnames]
    surnames += [(name, others.share.value / len(others.names)) for name in others.names]
    residences = {
        row.code: ResidenceTables(
            code=row.code,
            communes=row.residence.communes,
            born_elsewhere=row.residence.born_elsewhere.value,
            migrant_origins=Distribution.of((o.province, o.share.value) for o in row.residence.migrant_origins),
        )
        for row in doc.provinces
        if row.residence is not None
    }
    bands = zip(doc.age_structure.ranges(), (row.share.value for row in doc.age_structure.bands))
    return PopulationTables(
        document=doc,
        surnames=Distribution.of(surnames),
        south_variants=MappingProxyType({row.name: row.south_variant for row in doc.surnames if row.south_variant}),
        south_variant_share=doc.south_variant_share.value,
        middle_names=by_sex(doc.middle_names),
        given_names=by_sex(doc.given_names),
        male_share=doc.male_share.value,
        age_bands=Distribution.of(bands),
        regions=MappingProxyType({row.code: row.region for row in doc.provinces}),
        residences=MappingProxyType(residences),
        registration_errors=MappingProxyType({row.kind: row.description for row in doc.registration_errors}),
    )


__all__ = [
    "DEFAULT_TABLES_PATH",
    "REGISTRATION_ERROR_KINDS",
    "Distribution",
    "PopulationTables",
    "ResidenceTables",
    "load_population_tables",
]
