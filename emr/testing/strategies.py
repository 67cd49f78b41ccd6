"""Hypothesis strategies for well-formed data of this project: citizens, Patients, results, Bundles.

Every resource is made by the builders of ``emr.fhir.builders`` from values drawn
out of the project's own tables (provinces, population names, the facility registry,
the test catalogue), so everything drawn here passes ``emr.fhir.validate_resource``.
Strategies are built when called, never at import time; the tables are read then.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from functools import cache

from hypothesis import strategies as st

from emr.catalog import DEFAULT_HOSPITALS_DIR, DEFAULT_TESTS_PATH, Facility, LabTest, load_facilities, load_tests
from emr.fhir.builders import lab_observation, patient, results_report, test_order
from emr.fhir.dates import VIETNAM_TZ
from emr.identity import generate_national_id, load_provinces, local_system
from emr.sim.tables import PopulationTables, load_population_tables

EARLIEST_BIRTH = date(1920, 1, 1)
LATEST_BIRTH = date(2025, 6, 30)
# Collection times the strategies draw by default: the pilot's years.
FIRST_COLLECTION = datetime(2024, 1, 1)
LAST_COLLECTION = datetime(2026, 12, 31, 23, 59, 59)
ZONES = (VIETNAM_TZ, timezone.utc)


@dataclass(frozen=True)
class Citizen:
    """A person as the National Population Database knows them; the number agrees with sex and birth year."""

    national_id: str
    family: str
    given: str  # middle and given names, as spoken: "Văn An"
    gender: str  # male | female
    birth_date: str  # YYYY-MM-DD
    province_code: str  # where the birth was registered (the number's prefix)


@cache
def _tables() -> PopulationTables:
    return load_population_tables()


@cache
def _registry() -> dict[str, Facility]:
    return load_facilities(DEFAULT_HOSPITALS_DIR)


@cache
def _catalogue() -> dict[str, LabTest]:
    return load_tests(DEFAULT_TESTS_PATH)


def citizens(*, province_codes: list[str] | None = None, born_after: date = EARLIEST_BIRTH,
             born_before: date = LATEST_BIRTH) -> st.SearchStrategy[Citizen]:
    """Citizens with a valid 12-digit number that encodes their province, sex and birth year."""
    return _citizens(province_codes or sorted(load_provinces()), born_after, born_before)


@st.composite
def _citizens(draw: st.DrawFn, province_codes: list[str], born_after: date, born_before: date) -> Citizen:
    tables = _tables()
    gender = draw(st.sampled_from(["male", "female"]))
    born = draw(st.dates(born_after, born_before))
    province = draw(st.sampled_from(province_codes))
    number = generate_national_id(draw(st.randoms(use_true_random=False)), province_code=province,
                                  birth_year=born.year, sex=gender)
    middle = draw(st.sampled_from(tables.middle_names[gender].values))
    given = draw(st.sampled_from(tables.given_names[gender].values).filter(lambda name: name != middle))
    family = draw(st.sampled_from(tables.surnames.values))
    return Citizen(number, family, f"{middle} {given}", gender, born.isoformat(), province)


def national_ids(**kwargs: object) -> st.SearchStrategy[str]:
    """Valid personal identification numbers (takes the arguments of :func:`citizens`)."""
    return citizens(**kwargs).map(lambda citizen: citizen.national_id)


def facility_codes(*, emr_live_only: bool = False) -> st.SearchStrategy[str]:
    """Codes of the facility registry (``hospitals/``): the Organizations the hub serves."""
    return st.sampled_from(sorted(code for code, f in _registry().items() if f.emr.live or not emr_live_only))


def lab_tests(*, value_types: tuple[str, ...] = ("quantity", "coded")) -> st.SearchStrategy[LabTest]:
    """Orderable tests of the catalogue (``data/tests.yaml``) that report a value of these types."""
    return st.sampled_from([t for _, t in sorted(_catalogue().items()) if t.orderable and t.value_type in value_types])


def collection_times(*, first: datetime = FIRST_COLLECTION, last: datetime = LAST_COLLECTION) -> st.SearchStrategy[str]:
    """Specimen-collection times as the profile wants them: to the second, with a time zone."""
    moments = st.datetimes(min_value=first, max_value=last, timezones=st.sampled_from(ZONES))
    return moments.map(lambda moment: moment.replace(microsecond=0).isoformat())


def mrns() -> st.SearchStrategy[str]:
    return st.integers(1, 999_999_999).map(lambda n: f"MRN-{n:09d}")


def patient_of(citizen: Citizen, *, facility_code: str, mrn: str, other_identifiers: list[dict] | None = None) -> dict:
    """The Patient a facility registers for ``citizen`` under its own ``mrn``."""
    return patient(facility_code=facility_code, mrn=mrn, national_id=citizen.national_id, family=citizen.family,
                   given=citizen.given, gender=citizen.gender, birth_date=citizen.birth_date,
                   other_identifiers=other_identifiers)


def patients(*, citizen: st.SearchStrategy[Citizen] | None = None,
             facility_code: st.SearchStrategy[str] | None = None,
             mrn: st.SearchStrategy[str] | None = None) -> st.SearchStrategy[dict]:
    """Patients a facility registers: its MRN plus the citizen's national ID."""
    return st.builds(lambda who, code, number: patient_of(who, facility_code=code, mrn=number),
                     _or(citizen, citizens), _or(facility_code, facility_codes), _or(mrn, mrns))


def _or(given: st.SearchStrategy | None, default) -> st.SearchStrategy:
    return given if given is not None else default()


def result_value(test: LabTest) -> st.SearchStrategy[dict]:
    """The ``value[x]`` of a result of ``test``: a Quantity in its unit, or one of its coded answers."""
    if test.value_type == "quantity":
        amounts = st.integers(0, 100_000).map(lambda n: n / 100)
        unit = {"unit": test.unit} if test.unit else {}
        return amounts.map(lambda v: {"valueQuantity": {"value": v, **unit}})
    if test.value_type == "coded" and test.answers:
        return st.sampled_from(test.answers).map(lambda a: {"valueCodeableConcept": {"text": a}})
    return st.just({})


def lab_observations(*, patient_ref: str = "Patient/example", facility_code: st.SearchStrategy[str] | None = None,
                     test: st.SearchStrategy[LabTest] | None = None, collected: st.SearchStrategy[str] | None = None,
                     status: st.SearchStrategy[str] | None = None) -> st.SearchStrategy[dict]:
    """Lab results of ``patient_ref``, coded with LOINC, with a performing facility and a collection time."""
    return _lab_observations(patient_ref, _or(facility_code, facility_codes), _or(test, lab_tests),
                             _or(collected, collection_times), _or(status, lambda: st.sampled_from(["final", "preliminary"])))


@st.composite
def _lab_observations(draw: st.DrawFn, patient_ref: str, facility_code: st.SearchStrategy[str],
                      test: st.SearchStrategy[LabTest], collected: st.SearchStrategy[str],
                      status: st.SearchStrategy[str]) -> dict:
    chosen = draw(test)
    code = draw(facility_code)
    return lab_observation(
        patient_ref=patient_ref, facility_code=code, loinc=chosen.loinc, display=chosen.loinc_display,
        collected=draw(collected), status=draw(status), value=draw(result_value(chosen)),
        identifier={"system": local_system(code, "result"), "value": str(draw(st.uuids()))})


def diagnostic_reports(*, patient_ref: str = "Patient/example", result_refs: list[str] | None = None,
                       facility_code: st.SearchStrategy[str] | None = None) -> st.SearchStrategy[dict]:
    """Lab reports of ``patient_ref`` grouping ``result_refs`` (Observation references)."""
    return _diagnostic_reports(patient_ref, result_refs, _or(facility_code, facility_codes))


@st.composite
def _diagnostic_reports(draw: st.DrawFn, patient_ref: str, result_refs: list[str] | None,
                        facility_code: st.SearchStrategy[str]) -> dict:
    code = draw(facility_code)
    collected = draw(collection_times())
    issued = (datetime.fromisoformat(collected) + timedelta(hours=draw(st.integers(1, 72)))).isoformat()
    refs = result_refs if result_refs is not None else [f"Observation/{draw(st.uuids())}"]
    return results_report(patient_ref=patient_ref, facility_code=code, issued=issued, collected=collected,
                          identifier={"system": local_system(code, "report"), "value": str(draw(st.uuids()))},
                          result_refs=refs)


def service_requests(*, patient_ref: str = "Patient/example",
                     facility_code: st.SearchStrategy[str] | None = None) -> st.SearchStrategy[dict]:
    """Orders for a catalogue test, placed by a facility for ``patient_ref``."""
    orderable = lab_tests(value_types=("quantity", "coded", "panel", "imaging"))
    return st.builds(lambda code, chosen, authored, key: test_order(
        patient_ref=patient_ref, facility_code=code, loinc=chosen.loinc, display=chosen.loinc_display,
        authored=authored, identifier={"system": local_system(code, "order"), "value": str(key)}),
        _or(facility_code, facility_codes), orderable, collection_times(), st.uuids())


def transaction_bundles(*, max_results: int = 4) -> st.SearchStrategy[dict]:
    """A transaction that registers a patient and publishes results with their report.

    Entries refer to each other by ``urn:uuid:`` fullUrls, as a hospital's interface
    engine sends them; the server must give them ids and rewrite the references.
    """
    return _transaction_bundles(patients(), max_results)


@st.composite
def _transaction_bundles(draw: st.DrawFn, registrations: st.SearchStrategy[dict], max_results: int) -> dict:
    who = draw(registrations)
    facility = who["managingOrganization"]["identifier"]["value"]
    patient_url = f"urn:uuid:{draw(st.uuids())}"
    results = draw(st.lists(lab_observations(patient_ref=patient_url, facility_code=st.just(facility)),
                            min_size=1, max_size=max_results))
    result_urls = [f"urn:uuid:{draw(st.uuids())}" for _ in results]
    report = draw(diagnostic_reports(patient_ref=patient_url, result_refs=result_urls, facility_code=st.just(facility)))
    entries = [_post(patient_url, who)] + [_post(u, r) for u, r in zip(result_urls, results)]
    entries.append(_post(f"urn:uuid:{draw(st.uuids())}", report))
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def _post(full_url: str, resource: dict) -> dict:
    return {"fullUrl": full_url, "resource": resource, "request": {"method": "POST", "url": resource["resourceType"]}}
