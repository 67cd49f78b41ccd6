"""The synthetic population: who lives where, what they are called, and their national numbers.

``data/population.yaml`` (read by :mod:`emr.sim.tables`) holds the tables (surnames, middle and given names, age and
sex structure, the provinces, registration errors), every figure with its source or
assumption. :func:`generate_population` draws citizens from them with a seeded
``random.Random`` against a simulated date; :func:`corrupt_registration` returns a
citizen as a careless registration clerk would type them in, which the registry
(:mod:`emr.sim.registry`) must then refuse to verify.
"""

from __future__ import annotations

import bisect
import random
import unicodedata
from array import array
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, timedelta
from typing import overload

from emr.errors import InvalidInput
from emr.identity import generate_national_id
from emr.sim.tables import (
    DEFAULT_TABLES_PATH,
    REGISTRATION_ERROR_KINDS,
    PopulationTables,
    ResidenceTables,
    Sex,
    load_population_tables,
)
_MAX_ID_DRAWS = 1000  # random tails tried before a birth cohort counts as full
_ALPHABET = "aăâbcdđeêghiklmnoôơpqrstuưvxy"  # the Vietnamese letters, without tone marks


@dataclass(frozen=True, slots=True)
class Citizen:
    """One simulated person as the National Population Database records them.

    ``home_province`` is where they live (three-digit pre-2025 code); the prefix of
    ``national_id`` is where their birth was registered, which differs for migrants.
    """

    national_id: str
    family: str
    middle: str
    given: str
    sex: Sex
    birth_date: date
    home_province: str
    commune: str

    @property
    def given_names(self) -> str:
        """Middle and given name as FHIR ``HumanName.given`` joins them: "Văn An"."""
        return " ".join(part for part in (self.middle, self.given) if part)

    @property
    def full_name(self) -> str:
        """Family name first, as Vietnamese write it: "Nguyễn Văn An"."""
        return " ".join(part for part in (self.family, self.given_names) if part)

    def age_on(self, day: date) -> int:
        """Age in completed years on ``day``."""
        birthday_passed = (day.month, day.day) >= (self.birth_date.month, self.birth_date.day)
        return day.year - self.birth_date.year - (0 if birthday_passed else 1)


_TEXTS = ("family", "middle", "given", "sex", "home_province", "commune")  # a Citizen's text fields


class Roster(Sequence[Citizen]):
    """A population held as columns: about 40 bytes a person, where Citizen objects take about 200.

    A run keeps its whole population for as long as it lasts (it is the national
    database the hub checks identities against, and the people whose visits are still
    to come). As objects, a million people took 222 MB. Here each text field is the
    position of the text in one list of the distinct texts seen (the name and place
    tables hold a few thousand), the national number is an integer and the birth date
    a day number; ``roster[i]`` makes that Citizen again, equal to the one appended.
    ``find`` looks a national number up through a sorted copy of the numbers, made when
    first needed; ``duplicate`` says whether any number is held twice.
    """

    def __init__(self, citizens: Iterable[Citizen] = ()) -> None:
        self._texts: list[str] = []
        self._text_at: dict[str, int] = {}
        self._numbers = array("q")
        self._fields = array("I")  # len(_TEXTS) positions in _texts a person
        self._born = array("i")  # date.toordinal()
        self._by_number: tuple[array, array] | None = None
        for citizen in citizens:
            self.append(citizen)

    def append(self, citizen: Citizen) -> None:
        number = citizen.national_id
        if not _twelve_digits(number):
            raise InvalidInput(f"{number!r} is not a 12-digit personal identification number")
        self._numbers.append(int(number))
        self._fields.extend(self._position(getattr(citizen, name)) for name in _TEXTS)
        self._born.append(citizen.birth_date.toordinal())
        self._by_number = None

    def _position(self, text: str) -> int:
        at = self._text_at.get(text)
        if at is None:
            at = self._text_at[text] = len(self._texts)
            self._texts.append(text)
        return at

    def __len__(self) -> int:
        return len(self._numbers)

    @overload
    def __getitem__(self, index: int) -> Citizen: ...
    @overload
    def __getitem__(self, index: slice) -> list[Citizen]: ...
    def __getitem__(self, index: int | slice) -> Citizen | list[Citizen]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        number = self._numbers[index]  # IndexError, and negative indexes, as a list's
        at = (index % len(self)) * len(_TEXTS)
        texts = [self._texts[p] for p in self._fields[at:at + len(_TEXTS)]]
        family, middle, given, sex, home, commune = texts
        return Citizen(f"{number:012d}", family, middle, given, sex, date.fromordinal(self._born[index]),  # type: ignore[arg-type]
                       home, commune)

    def __iter__(self) -> Iterator[Citizen]:
        return (self[i] for i in range(len(self)))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Roster):
            return list(self) == list(other)
        return list(self) == other if isinstance(other, list) else NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable, as a list

    def find(self, national_id: str) -> Citizen | None:
        """The citizen holding ``national_id``, or None."""
        if not _twelve_digits(national_id):
            return None
        numbers, order = self._sorted()
        wanted = int(national_id)
        at = bisect.bisect_left(numbers, wanted)
        return self[order[at]] if at < len(numbers) and numbers[at] == wanted else None

    def duplicate(self) -> str | None:
        """A national number held by more than one citizen, or None."""
        numbers, _ = self._sorted()
        for at in range(1, len(numbers)):
            if numbers[at] == numbers[at - 1]:
                return f"{numbers[at]:012d}"
        return None

    def _sorted(self) -> tuple[array, array]:
        if self._by_number is None:
            order = array("I", sorted(range(len(self)), key=self._numbers.__getitem__))
            self._by_number = (array("q", (self._numbers[i] for i in order)), order)
        return self._by_number


def _twelve_digits(text: str) -> bool:
    """What a number must be to be kept as an integer and given back the same: ASCII only,
    as ``int`` also reads other scripts' digits."""
    return len(text) == 12 and text.isascii() and text.isdigit()


# --- Generation ------------------------------------------------------------------------
def generate_population(
    rng: random.Random, *, tables: PopulationTables, residents: Mapping[str, int], on: date
) -> Roster:
    """Draw ``residents[code]`` citizens living in each province, as of the simulated date ``on``.

    Provinces are filled in code order, so the result depends only on the rng's state
    and the arguments. Nobody is born after ``on``. National numbers are unique across
    the population and encode each citizen's birth year, sex and province of birth
    registration (another province for the ``born_elsewhere`` share of residents).
    """
    unknown = sorted(set(residents) - set(tables.residences))
    if unknown:
        known = ", ".join(sorted(tables.residences))
        raise InvalidInput(f"no residence tables for province(s) {', '.join(unknown)}; the population file has {known}")
    negative = sorted(code for code, count in residents.items() if count < 0)
    if negative:
        raise InvalidInput(f"negative head count for province(s) {', '.join(negative)}")
    issued: set[int] = set()
    return Roster(
        _draw_citizen(rng, tables=tables, residence=tables.residences[code], on=on, issued=issued)
        for code in sorted(residents)
        for _ in range(residents[code])
    )


def _draw_citizen(
    rng: random.Random, *, tables: PopulationTables, residence: ResidenceTables, on: date, issued: set[int]
) -> Citizen:
    sex: Sex = "male" if rng.random() < tables.male_share else "female"
    birth_date = _birth_date(rng, on=on, ages=tables.age_bands.draw(rng))
    registered_in = residence.code
    if rng.random() < residence.born_elsewhere:
        registered_in = residence.migrant_origins.draw(rng)
    family = tables.surnames.draw(rng)
    variant = tables.south_variants.get(family)
    if variant and tables.regions[registered_in] == "south" and rng.random() < tables.south_variant_share:
        family = variant
    middle = tables.middle_names[sex].draw(rng)
    given = tables.given_names[sex].draw(rng)
    while given == middle:  # "Minh Minh" is not a name anyone is given
        given = tables.given_names[sex].draw(rng)
    return Citizen(
        national_id=_unique_id(rng, province_code=registered_in, birth_year=birth_date.year, sex=sex, issued=issued),
        family=family,
        middle=middle,
        given=given,
        sex=sex,
        birth_date=birth_date,
        home_province=residence.code,
        commune=rng.choice(residence.communes),
    )


def _birth_date(rng: random.Random, *, on: date, ages: tuple[int, int]) -> date:
    """A day, uniformly, on which someone would be between ``ages`` years old (inclusive) on ``on``."""
    youngest, oldest = ages
    earliest = _years_before(on, oldest + 1) + timedelta(days=1)
    latest = _years_before(on, youngest)
    return earliest + timedelta(days=rng.randrange((latest - earliest).days + 1))


def _years_before(day: date, years: int) -> date:
    try:
        return day.replace(year=day.year - years)
    except ValueError:  # 29 February in a year that has none
        return day.replace(year=day.year - years, day=28)


def _unique_id(rng: random.Random, *, province_code: str, birth_year: int, sex: str, issued: set[int]) -> str:
    for _ in range(_MAX_ID_DRAWS):
        number = generate_national_id(rng, province_code=province_code, birth_year=birth_year, sex=sex)
        key = int(number)  # kept as integers: 32 bytes each, where the strings take 61
        if key not in issued:
            issued.add(key)
            return number
    raise InvalidInput(f"no free national number left for {sex}s born {birth_year} in province {province_code}")


# --- Registration errors ----------------------------------------------------------------
def corrupt_registration(rng: random.Random, citizen: Citizen, kind: str) -> Citizen:
    """``citizen`` as a careless registration clerk would record them; the national number is kept.

    ``typo``: one letter of the family, middle or given name changed or dropped.
    ``wrong-birth-date``: day and month swapped, or the date one day off, in the same year.
    ``ascii-folded``: diacritics stripped ("Nguyễn Văn Đức" -> "Nguyen Van Duc"); a name
    already in plain letters comes back unchanged.
    """
    if kind == "typo":
        return _typo(rng, citizen)
    if kind == "wrong-birth-date":
        return replace(citizen, birth_date=_wrong_birth_date(rng, citizen.birth_date))
    if kind == "ascii-folded":
        parts = ("family", "middle", "given")
        return replace(citizen, **{part: _ascii_fold(getattr(citizen, part)) for part in parts})
    expected = ", ".join(REGISTRATION_ERROR_KINDS)
    raise InvalidInput(f"unknown registration error kind {kind!r}; expected one of {expected}")


def _typo(rng: random.Random, citizen: Citizen) -> Citizen:
    field = rng.choice([name for name in ("family", "middle", "given") if getattr(citizen, name)])
    text: str = getattr(citizen, field)
    at = rng.randrange(1, len(text)) if len(text) > 1 else 0  # clerks rarely miss the capital
    if len(text) > 1 and rng.choice(("drop", "change")) == "drop":
        return replace(citizen, **{field: text[:at] + text[at + 1 :]})
    letter = rng.choice([c for c in _ALPHABET if c != text[at].casefold()])
    return replace(citizen, **{field: text[:at] + (letter.upper() if text[at].isupper() else letter) + text[at + 1 :]})


def _wrong_birth_date(rng: random.Random, day: date) -> date:
    options = [] if day.day > 12 or day.day == day.month else [day.replace(month=day.day, day=day.month)]
    if (day.month, day.day) != (1, 1):
        options.append(day - timedelta(days=1))
    if (day.month, day.day) != (12, 31):
        options.append(day + timedelta(days=1))
    return rng.choice(options)


def _ascii_fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFD", text.replace("Đ", "D").replace("đ", "d"))
    return "".join(c for c in decomposed if not unicodedata.combining(c))


__all__ = [
    "DEFAULT_TABLES_PATH",
    "REGISTRATION_ERROR_KINDS",
    "Citizen",
    "PopulationTables",
    "Roster",
    "corrupt_registration",
    "generate_population",
    "load_population_tables",
]
