"""The live dashboard's figures, computed from the hub's own database.

The hub knows only what facilities send it, so every figure here is about that:

- **Which registry facilities publish.** A facility counts as *publishing* once the
  hub holds a patient registration, a visit or a result from it. A registry facility
  that has sent nothing is either still on paper or not connected; the hub cannot
  tell which. The go-live dates shown beside it come from the registry (declared or
  planned), not from the hub. For each facility the hub also knows the clinical date
  of the first and the latest visit (Encounter) it published, which is when its
  records start, not when they arrived.
- **The doctors' reuse decisions.** An EMR records what the doctor did with a result
  the hub offered as a DetectedIssue whose ``mitigation.action`` says ``reused`` or
  ``repeated`` (``emr.fhir.builders.reuse_decision``) and, for a repeat, the override
  reason. A test counts as *avoided* only on a published ``reused`` decision; its VND
  is the test catalogue's insurance price of the offered result's test.
- **Tests performed** are the published test orders (ServiceRequest with a LOINC code).

It cannot know what was ordered at facilities that do not publish, results kept on
paper, offers a doctor never answered, or whether a repeat was clinically needed.

Each function below is one aggregate query over the index tables and equals a FHIR
search answer (see the docstrings), so the page can be checked against the API.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timezone

import orjson
from sqlalchemy import and_, func, or_, select
from sqlalchemy.engine import Connection

from emr.catalog import Facility, LabTest
from emr.fhir import LOINC_SYSTEM
from emr.fhir.builders import OVERRIDE_REASON_SYSTEM, REUSE_DECISION_SYSTEM
from emr.fhir.dates import VIETNAM_TZ
from emr.hub.db import DateIndex, ReferenceIndex, ResourceRow, TokenIndex

R = ResourceRow.__table__
TK = TokenIndex.__table__
DT = DateIndex.__table__
RF = ReferenceIndex.__table__

COUNTED_TYPES = ("Patient", "Person", "Encounter", "Observation", "DiagnosticReport", "ServiceRequest",
                 "DetectedIssue")
# (resource type, reference parameter to the facility) → what the facility published
PUBLISHED = {("Patient", "organization"): "patients", ("Encounter", "service-provider"): "visits",
             ("Observation", "performer"): "results"}


@dataclass(frozen=True, order=True)
class DecisionCount:
    """Published reuse decisions of one kind, by deciding facility and the offered result's test."""

    facility: str  # author facility code; "" when the author is not a registry facility
    decision: str  # reused | repeated
    loinc: str  # LOINC code of the implicated Observation; "" when unknown
    count: int


def resource_totals(conn: Connection) -> dict[str, int]:
    """Resources held, by type: ``GET /fhir/{type}?_summary=count``."""
    query = (select(R.c.resource_type, func.count()).where(R.c.resource_type.in_(COUNTED_TYPES), R.c.deleted.is_(False))
             .group_by(R.c.resource_type))
    found = dict(conn.execute(query).all())
    return {rtype: found.get(rtype, 0) for rtype in COUNTED_TYPES}


def published_counts(conn: Connection) -> dict[str, dict[str, int]]:
    """Per facility code: patients, visits and results it published, e.g.
    ``Observation?performer=Organization/{code}&_summary=count``."""
    wanted = or_(*(and_(RF.c.resource_type == rtype, RF.c.param == param) for rtype, param in PUBLISHED))
    query = (select(RF.c.resource_type, RF.c.param, RF.c.target_id, func.count(RF.c.resource_pk.distinct()))
             .where(RF.c.target_type == "Organization", wanted)
             .group_by(RF.c.resource_type, RF.c.param, RF.c.target_id))
    counts: dict[str, dict[str, int]] = defaultdict(dict)
    for rtype, param, code, n in conn.execute(query).all():
        counts[code][PUBLISHED[(rtype, param)]] = n
    return dict(counts)


def visit_spans(conn: Connection) -> dict[str, tuple[date, date]]:
    """Per facility code, the Vietnam dates of its first and latest published visit:
    ``Encounter?service-provider=Organization/{code}&_sort=date&_count=1`` (and ``-date``)."""
    query = (select(RF.c.target_id, func.min(DT.c.low), func.max(DT.c.low))
             .join(DT, and_(DT.c.resource_pk == RF.c.resource_pk, DT.c.param == "date"))
             .where(RF.c.resource_type == "Encounter", RF.c.param == "service-provider",
                    RF.c.target_type == "Organization")
             .group_by(RF.c.target_id))
    return {code: (_vietnam_day(low), _vietnam_day(high)) for code, low, high in conn.execute(query).all()}


def test_orders(conn: Connection) -> dict[tuple[str, str], int]:
    """Published test orders by (requesting facility, LOINC code):
    ``ServiceRequest?requester=Organization/{code}&code=http://loinc.org|{loinc}&_summary=count``."""
    query = (select(RF.c.target_id, TK.c.code, func.count(RF.c.resource_pk.distinct()))
             .join(TK, and_(TK.c.resource_pk == RF.c.resource_pk, TK.c.param == "code", TK.c.system == LOINC_SYSTEM))
             .where(RF.c.resource_type == "ServiceRequest", RF.c.param == "requester",
                    RF.c.target_type == "Organization")
             .group_by(RF.c.target_id, TK.c.code))
    return {(code, loinc): n for code, loinc, n in conn.execute(query).all()}


def decision_counts(conn: Connection) -> list[DecisionCount]:
    """Published reuse decisions by facility, decision and test. Their totals are
    ``DetectedIssue?mitigation=urn:emr:code:reuse-decision|reused&_summary=count`` (and ``|repeated``)."""
    action, author, implicated, result, code = TK.alias("action"), RF.alias("author"), RF.alias("implicated"), \
        R.alias("result"), TK.alias("result_code")
    per_issue = (
        select(func.min(action.c.code).label("decision"), func.min(author.c.target_id).label("facility"),
               func.min(code.c.code).label("loinc"))
        .select_from(action)
        .outerjoin(author, and_(author.c.resource_pk == action.c.resource_pk, author.c.param == "author",
                                author.c.target_type == "Organization"))
        .outerjoin(implicated, and_(implicated.c.resource_pk == action.c.resource_pk,
                                    implicated.c.param == "implicated", implicated.c.target_type == "Observation"))
        .outerjoin(result, and_(result.c.resource_type == "Observation", result.c.id == implicated.c.target_id))
        .outerjoin(code, and_(code.c.resource_pk == result.c.pk, code.c.param == "code",
                              code.c.system == LOINC_SYSTEM))
        .where(action.c.resource_type == "DetectedIssue", action.c.param == "mitigation",
               action.c.system == REUSE_DECISION_SYSTEM)
        .group_by(action.c.resource_pk)
    ).subquery()
    query = (select(per_issue.c.facility, per_issue.c.decision, per_issue.c.loinc, func.count())
             .group_by(per_issue.c.facility, per_issue.c.decision, per_issue.c.loinc))
    return sorted(DecisionCount(facility or "", decision, loinc or "", n)
                  for facility, decision, loinc, n in conn.execute(query).all())


def override_reasons(conn: Connection) -> dict[str, int]:
    """Repeats by the doctor's reason:
    ``DetectedIssue?mitigation=urn:emr:code:reuse-override|{reason}&_summary=count``."""
    query = (select(TK.c.code, func.count(TK.c.resource_pk.distinct()))
             .where(TK.c.resource_type == "DetectedIssue", TK.c.param == "mitigation",
                    TK.c.system == OVERRIDE_REASON_SYSTEM)
             .group_by(TK.c.code))
    return dict(conn.execute(query).all())


def metrics(conn: Connection, *, facilities: Mapping[str, Facility], tests: Mapping[str, LabTest]) -> dict:
    """Every figure of the dashboard as one JSON-ready document, with a ``version`` that
    changes exactly when a figure does."""
    counts, spans, orders = published_counts(conn), visit_spans(conn), test_orders(conn)
    decisions = decision_counts(conn)
    rows = _facility_rows(facilities, tests, counts=counts, spans=spans, orders=orders, decisions=decisions)
    document = {
        "as_of": max((row["last_visit"] for row in rows if row["last_visit"]), default=None),
        "records": resource_totals(conn),
        "performed": sum(orders.values()),
        "adoption": _adoption(rows),
        "decisions": _decisions(decisions, override_reasons(conn)),
        "avoided": _avoided(decisions, tests),
        "facilities": rows,
        "provinces": _provinces(rows),
        "tests": _test_rows(tests, orders=orders, decisions=decisions),
    }
    digest = hashlib.sha256(orjson.dumps(document, option=orjson.OPT_SORT_KEYS)).hexdigest()
    return {"version": digest[:16], **document}


def _vietnam_day(epoch_ms: int) -> date:
    return datetime.fromtimestamp(epoch_ms / 1000, tz=timezone.utc).astimezone(VIETNAM_TZ).date()


def _sum(decisions: Iterable[DecisionCount], **match: str) -> int:
    return sum(d.count for d in decisions if all(getattr(d, k) == v for k, v in match.items()))


def _vnd(decisions: Iterable[DecisionCount], tests: Mapping[str, LabTest]) -> int:
    return sum(d.count * tests[d.loinc].price_vnd.value for d in decisions
               if d.decision == "reused" and d.loinc in tests)


def _facility_rows(facilities: Mapping[str, Facility], tests: Mapping[str, LabTest], *,
                   counts: dict[str, dict[str, int]], spans: dict[str, tuple[date, date]],
                   orders: dict[tuple[str, str], int], decisions: list[DecisionCount]) -> list[dict]:
    rows = []
    for code, facility in sorted(facilities.items()):
        published = counts.get(code, {})
        span = spans.get(code)
        own = [d for d in decisions if d.facility == code]
        rows.append({
            "code": code, "name_vi": facility.name_vi, "name_en": facility.name_en, "kind": facility.kind,
            "province": facility.province_2025,
            "go_live": facility.emr.go_live.value.isoformat() if facility.emr.go_live else None,
            "publishing": any(published.values()),
            "first_visit": span[0].isoformat() if span else None,
            "last_visit": span[1].isoformat() if span else None,
            **{name: published.get(name, 0) for name in PUBLISHED.values()},
            "performed": sum(n for (who, _), n in orders.items() if who == code),
            "reused": _sum(own, decision="reused"), "repeated": _sum(own, decision="repeated"),
            "vnd": _vnd(own, tests),
        })
    return rows


def _adoption(rows: list[dict]) -> dict:
    publishing = sum(1 for row in rows if row["publishing"])
    return {"registry": len(rows), "publishing": publishing,
            "share": publishing / len(rows) if rows else None}


def _decisions(decisions: list[DecisionCount], reasons: dict[str, int]) -> dict:
    reused, repeated = _sum(decisions, decision="reused"), _sum(decisions, decision="repeated")
    offered = reused + repeated
    return {"offered": offered, "reused": reused, "repeated": repeated,
            "reuse_rate": reused / offered if offered else None,
            "override_reasons": [{"code": code, "count": n}
                                 for code, n in sorted(reasons.items(), key=lambda item: (-item[1], item[0]))]}


def _avoided(decisions: list[DecisionCount], tests: Mapping[str, LabTest]) -> dict:
    radiation = sum(d.count for d in decisions
                    if d.decision == "reused" and d.loinc in tests and tests[d.loinc].radiation)
    return {"tests": _sum(decisions, decision="reused"), "vnd": _vnd(decisions, tests),
            "radiation_exposures": radiation}


def _provinces(rows: list[dict]) -> list[dict]:
    by_province: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by_province[row["province"]].append(row)
    return [{"province": province, "registry": len(members),
             "publishing": sum(1 for m in members if m["publishing"]),
             **{key: sum(m[key] for m in members) for key in ("results", "performed", "reused", "vnd")}}
            for province, members in sorted(by_province.items())]


def _test_rows(tests: Mapping[str, LabTest], *, orders: dict[tuple[str, str], int],
               decisions: list[DecisionCount]) -> list[dict]:
    """Every test ordered or decided on, most avoided first."""
    codes = {loinc for _, loinc in orders} | {d.loinc for d in decisions if d.loinc}
    rows = []
    for loinc in codes:
        spec = tests.get(loinc)
        mine = [d for d in decisions if d.loinc == loinc]
        rows.append({"loinc": loinc, "name_vi": spec.name_vi if spec else loinc,
                     "name_en": spec.name_en if spec else loinc, "category": spec.category if spec else None,
                     "price_vnd": spec.price_vnd.value if spec else None,
                     "performed": sum(n for (_, code), n in orders.items() if code == loinc),
                     "reused": _sum(mine, decision="reused"), "repeated": _sum(mine, decision="repeated"),
                     "vnd": _vnd(mine, tests)})
    return sorted(rows, key=lambda r: (-r["reused"], -r["vnd"], -r["performed"], r["loinc"]))
