"""Properties of searching: date prefixes against a model, paging, and the national-ID chain search."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from hypothesis import strategies as st

from emr.conformance.session import Property, Session, Violation, collected_ms, expect_same_ids
from emr.conformance.writes import expect_total, register
from emr.fhir.dates import VIETNAM_TZ, matches, parse_interval
from emr.identity import NATIONAL_ID_SYSTEM, mrn_system
from emr.testing import collection_times, facility_codes, lab_observations

PREFIXES = ("eq", "ge", "le", "gt", "lt")
PRECISIONS = ("year", "month", "day", "second")
# Close to one another, so that prefixes and precisions have something to tell apart.
NEAR = (timedelta(0), timedelta(seconds=1), timedelta(minutes=30), timedelta(hours=5), timedelta(days=1),
        timedelta(days=31), timedelta(days=366))


# ---------------------------------------------------------------- 5. date prefixes

def date_search(session: Session, data: st.DataObject) -> None:
    group = session.scope.token()
    _, created = register(session, data, group)
    times = _times(data)
    made = _publish(session, data, created["id"], times, group)
    constraints = data.draw(st.lists(_constraint(times), min_size=1, max_size=2), label="date")
    found = session.search("Observation", [session.identifier(group)] + [("date", c) for c in constraints])
    wanted = {rid for rid, obs in made.items() if all(_model(c, obs) for c in constraints)}
    expect_same_ids(found.ids, wanted, what_en="Observation?date=" + "&date=".join(constraints),
                    what_vi="Observation?date=" + "&date=".join(constraints))


def _times(data: st.DataObject) -> list[datetime]:
    first = datetime.fromisoformat(data.draw(collection_times(), label="first collection"))
    steps = data.draw(st.lists(st.tuples(st.sampled_from(NEAR), st.sampled_from([1, -1])), min_size=0, max_size=5),
                      label="later collections")
    return [first] + [first + sign * step for step, sign in steps]


def _publish(session: Session, data: st.DataObject, pid: str, times: list[datetime], group: str) -> dict[str, dict]:
    made = {}
    for moment in times:
        sent = data.draw(lab_observations(patient_ref=f"Patient/{pid}", collected=st.just(moment.isoformat())))
        created = session.create(session.scope.tagged(sent, group))
        made[created["id"]] = sent
    return made


@st.composite
def _constraint(draw: st.DrawFn, times: list[datetime]) -> str:
    moment = draw(st.sampled_from(times)) + draw(st.sampled_from([-1, 0, 1])) * draw(st.sampled_from(NEAR))
    return draw(st.sampled_from(PREFIXES)) + _search_value(moment, draw(st.sampled_from(PRECISIONS)),
                                                           draw(st.sampled_from([VIETNAM_TZ, timezone.utc])))


def _search_value(moment: datetime, precision: str, zone: timezone) -> str:
    """A date search value; a value without a time is a day (month, year) in Vietnam's time zone."""
    if precision == "second":
        return moment.astimezone(zone).isoformat(timespec="seconds").replace("+00:00", "Z")
    local = moment.astimezone(VIETNAM_TZ)
    return {"year": f"{local:%Y}", "month": f"{local:%Y-%m}", "day": f"{local:%Y-%m-%d}"}[precision]


def _model(constraint: str, observation: dict) -> bool:
    prefix, text = constraint[:2], constraint[2:]
    return matches(prefix, parse_interval(observation["effectiveDateTime"]), parse_interval(text))


# ---------------------------------------------------------------- 6. paging

def paging(session: Session, data: st.DataObject) -> None:
    group = session.scope.token()
    _, created = register(session, data, group)
    first = datetime.fromisoformat(data.draw(collection_times(), label="collected"))
    # Few distinct times, so sorting meets ties that a careless cursor gets wrong.
    times = data.draw(st.lists(st.sampled_from([first, first + timedelta(hours=1), first + timedelta(days=2)]),
                               max_size=12), label="collections")
    made = _publish(session, data, created["id"], times, group)
    count = data.draw(st.integers(1, 5), label="_count")
    sort = data.draw(st.sampled_from([None, "date", "-date"]), label="_sort")
    params = [session.identifier(group), ("_count", str(count))] + ([("_sort", sort)] if sort else [])
    found = session.search("Observation", params, max_pages=len(made) + 3)
    expect_same_ids(found.ids, set(made), what_en=f"following next links with _count={count}",
                    what_vi=f"đi theo liên kết next với _count={count}")
    expect_total(found.totals, len(made))
    if sort:
        _expect_sorted(found.ids, made, descending=sort.startswith("-"))


def _expect_sorted(ids: list[str], made: dict[str, dict], *, descending: bool) -> None:
    keys = [collected_ms(made[i]) for i in ids]
    if keys != sorted(keys, reverse=descending):
        raise Violation("the pages are not in date order across next links",
                        "các trang không theo thứ tự ngày khi đi theo liên kết next")


# ---------------------------------------------------------------- 8. national ID chain search

def national_id_search(session: Session, data: st.DataObject) -> None:
    group = session.scope.token()
    codes = data.draw(st.lists(facility_codes(), min_size=1, max_size=4, unique=True), label="facilities")
    first, created = register(session, data, group, facility=codes[0])
    number = next(i["value"] for i in first["identifier"] if i["system"] == NATIONAL_ID_SYSTEM)
    registrations = {codes[0]: created["id"]} | {code: _register_again(session, first, code) for code in codes[1:]}
    wanted: set[str] = set()
    for code, pid in registrations.items():
        count = data.draw(st.integers(0, 3), label=f"results at {code}")
        wanted |= _results(session, data, pid, code, count, group)
    _, decoy = register(session, data, group)  # another citizen: none of theirs may appear
    _results(session, data, decoy["id"], codes[0], 1, group)
    found = session.search("Observation", [("patient.identifier", f"{NATIONAL_ID_SYSTEM}|{number}"), ("_count", "5")])
    expect_same_ids(found.ids, wanted, what_en="Observation?patient.identifier=<national ID>",
                    what_vi="Observation?patient.identifier=<số định danh>")
    found = session.search("Patient", [("identifier", f"{NATIONAL_ID_SYSTEM}|{number}")])
    expect_same_ids(found.ids, set(registrations.values()), what_en="Patient?identifier=<national ID>",
                    what_vi="Patient?identifier=<số định danh>")


def _register_again(session: Session, first: dict, code: str) -> str:
    """The same citizen registered at facility ``code`` under its own MRN."""
    again = dict(first)
    again["identifier"] = [{"use": "usual", "system": mrn_system(code), "value": session.scope.token()},
                           *first["identifier"][1:]]
    again["managingOrganization"] = {**first["managingOrganization"],
                                     "identifier": {**first["managingOrganization"]["identifier"], "value": code}}
    return session.create(again)["id"]


def _results(session: Session, data: st.DataObject, pid: str, code: str, count: int, group: str) -> set[str]:
    results = data.draw(st.lists(lab_observations(patient_ref=f"Patient/{pid}", facility_code=st.just(code)),
                                 min_size=count, max_size=count), label="results")
    return {session.create(session.scope.tagged(r, group))["id"] for r in results}


PROPERTIES = [
    Property("date-search", "Tìm theo ngày với ge/le/gt/lt khớp với mô hình", "date-prefix searches (ge/le/gt/lt) "
             "agree with a model evaluated in Python", date_search),
    Property("paging", "Đi theo liên kết next trả về mỗi kết quả đúng một lần, total khớp",
             "following next links returns every match exactly once, and total agrees", paging),
    Property("national-id-search", "Tìm chuỗi theo số định danh trả về hợp của mọi cơ sở",
             "the national-ID chain search returns the union of all facilities' records", national_id_search),
]
