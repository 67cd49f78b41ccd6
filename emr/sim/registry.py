"""The simulated National Population Database: the identity registry health data authenticates against.

Project 06 has specialised databases, health among them, check the people they hold
against the national database. :class:`PopulationRegistry` answers the one question
the hub asks of it: does this personal identification number belong to a person with
this name, birth date and sex? Names are compared after Unicode NFC normalisation,
whitespace folding and case folding, but diacritics must match: "Nguyen Van Duc" is
not "Nguyễn Văn Đức", and telling the two apart is the point of asking.

:class:`IdentityRegistry` is the interface the hub depends on, so an HTTP client for a
registry served elsewhere can stand in for the in-process one.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from datetime import date
from typing import Any, Literal, Protocol, runtime_checkable

from emr.errors import InvalidInput
from emr.identity import NATIONAL_ID_SYSTEM
from emr.sim.population import Citizen, Roster

Verification = Literal["verified", "mismatch", "unknown"]
_FULL_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


@runtime_checkable
class IdentityRegistry(Protocol):
    """Anything that can check a FHIR Patient's demographics against the national database.

    ``verify_patient`` answers "verified", "mismatch" or "unknown" (see
    :meth:`PopulationRegistry.verify_patient`).
    """

    def verify_patient(self, patient: dict) -> str: ...


class PopulationRegistry:
    """The registry of a simulated population, keyed by personal identification number."""

    def __init__(self, citizens: Iterable[Citizen]) -> None:
        self._citizens = citizens if isinstance(citizens, Roster) else Roster(citizens)
        twice = self._citizens.duplicate()
        if twice is not None:
            raise InvalidInput(f"national number {twice} is registered twice")

    def __len__(self) -> int:
        return len(self._citizens)

    def __contains__(self, national_id: object) -> bool:
        return isinstance(national_id, str) and self._citizens.find(national_id) is not None

    def verify(self, national_id: str, *, family: str, given: str, birth_date: date | str, sex: str) -> Verification:
        """"unknown" for a number nobody holds; "verified" when every field agrees; else "mismatch".

        ``given`` is the middle and given names together ("Văn An"); ``birth_date`` may
        be a FHIR date string, and only a full "YYYY-MM-DD" date can agree.
        """
        citizen = self._citizens.find(national_id) if isinstance(national_id, str) else None
        if citizen is None:
            return "unknown"
        agrees = (
            _name_key(family) == _name_key(citizen.family)
            and _name_key(given) == _name_key(citizen.given_names)
            and _as_date(birth_date) == citizen.birth_date
            and sex == citizen.sex
        )
        return "verified" if agrees else "mismatch"

    def verify_patient(self, patient: Mapping[str, Any]) -> Verification:
        """Check a FHIR Patient (JSON dict) by its national-ID identifier; "unknown" when it has none.

        Reads ``name[0].family``, ``name[0].given`` (joined by spaces), ``birthDate`` and
        ``gender``; a missing or malformed field cannot agree, so it gives "mismatch".
        """
        national_id = _national_id(patient)
        if national_id is None:
            return "unknown"
        names = patient.get("name")
        name = names[0] if isinstance(names, list) and names and isinstance(names[0], dict) else {}
        given = name.get("given")
        return self.verify(
            national_id,
            family=_text(name.get("family")),
            given=" ".join(_text(part) for part in given) if isinstance(given, list) else "",
            birth_date=_text(patient.get("birthDate")),
            sex=_text(patient.get("gender")),
        )


def _national_id(patient: Mapping[str, Any]) -> str | None:
    identifiers = patient.get("identifier")
    for identifier in identifiers if isinstance(identifiers, list) else []:
        if isinstance(identifier, dict) and identifier.get("system") == NATIONAL_ID_SYSTEM:
            value = identifier.get("value")
            if isinstance(value, str) and value:
                return value
    return None


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _name_key(name: str) -> str:
    """What must agree between two spellings of a name: all but case, spacing and Unicode form."""
    folded = " ".join(unicodedata.normalize("NFC", name).split()).casefold()
    return unicodedata.normalize("NFC", folded)


def _as_date(value: date | str) -> date | None:
    if isinstance(value, date):
        return value
    if isinstance(value, str) and _FULL_DATE.fullmatch(value):
        try:
            return date.fromisoformat(value)
        except ValueError:
            return None
    return None


__all__ = ["IdentityRegistry", "PopulationRegistry", "Verification"]
