"""The report as FHIR R4B ``Measure`` definitions and ``MeasureReport`` results, in one Bundle.

Three measures, each reported once for the run's period and stratified by facility
and by province (pre-2025 code and post-merger code):

- ``emr-adoption`` (proportion): facilities of the run with EMR live on the last day
  of the period, of all the run's facilities;
- ``referral-shared-results`` (proportion): referral visits where the receiving
  hospital could see an earlier result at the hub, of all referral visits;
- ``avoided-tests`` (cohort): tests avoided by reusing a result.

Every count is read from the report document, so the Bundle and ``report.json``
agree. The Bundle is checked against the R4B model before it is written.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import orjson

from emr.fhir import bundle, to_model
from emr.identity import FACILITY_CODE_SYSTEM
from emr.reports.labels import DEFINITIONS, pick as _pick

POPULATION_SYSTEM = "http://terminology.hl7.org/CodeSystem/measure-population"
SCORING_SYSTEM = "http://terminology.hl7.org/CodeSystem/measure-scoring"
IMPROVEMENT_SYSTEM = "http://terminology.hl7.org/CodeSystem/measure-improvement-notation"
MEASURE_BASE = "urn:emr:measure:"  # project-local canonical URLs (no national measure registry exists)
STRATIFIER_SYSTEM = "urn:emr:code:report-stratifier"
STRATUM_SYSTEMS = {
    "facility": FACILITY_CODE_SYSTEM,
    "province_pre_2025": "urn:emr:code:province-pre-2025",  # three-digit codes, data/provinces.yaml
    "province_2025": "urn:emr:code:province-2025",  # two-digit codes since 1 Jul 2025, Decision 19/2025/QĐ-TTg
}
STRATIFIERS = {
    "facility": ("Theo cơ sở", "By facility"),
    "province_pre_2025": ("Theo tỉnh trước sáp nhập 2025", "By province before the 2025 merger"),
    "province_2025": ("Theo tỉnh sau sáp nhập 2025", "By province after the 2025 merger"),
}
MEASURES = {
    "emr-adoption": {
        "name": "EmrAdoption", "scoring": "proportion", "definition": "adoption",
        "title": ("Tỷ lệ cơ sở có bệnh án điện tử", "Facilities with EMR live"),
        "populations": {"initial-population": "Facilities of the run",
                        "denominator": "Facilities of the run",
                        "numerator": "Facilities whose EMR go-live date is on or before the last day of the period"},
    },
    "referral-shared-results": {
        "name": "ReferralSharedResults", "scoring": "proportion", "definition": "referrals",
        "title": ("Ca chuyển tuyến xem được kết quả trước", "Referrals with an earlier result visible"),
        "populations": {"initial-population": "Referral visits with at least one ordered test",
                        "denominator": "Referral visits with at least one ordered test",
                        "numerator": "Referral visits where an ordered test had an earlier result at the hub"},
    },
    "avoided-tests": {
        "name": "AvoidedTests", "scoring": "cohort", "definition": "avoided",
        "title": ("Xét nghiệm tránh được nhờ dùng lại kết quả", "Tests avoided by reusing a result"),
        "populations": {"initial-population": "Ordered tests whose doctor accepted a result from elsewhere"},
    },
}


def write_measure_bundle(path: Path, document: dict[str, Any], *, lang: str) -> Path:
    result = measure_bundle(document, lang=lang)
    to_model(result)  # raises if the Bundle is not valid R4B
    path.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n")
    return path


def measure_bundle(document: dict[str, Any], *, lang: str) -> dict[str, Any]:
    """The collection Bundle: the three Measures, then their three MeasureReports."""
    run = document["run"]
    salt = f"{run['scenario']}:{run.get('scenario_version')}:{run['seed']}:{run['patients']}"
    resources = [measure(key, lang=lang) for key in MEASURES]
    resources += [measure_report(key, counts, document, lang=lang) for key, counts in _counts(document).items()]
    entries = [{"fullUrl": _urn(salt, f"{r['resourceType']}/{r['id']}"), "resource": r} for r in resources]
    result = bundle("collection", entries)
    result["id"] = _urn(salt, "Bundle").removeprefix("urn:uuid:")
    return result


def _urn(salt: str, name: str) -> str:
    """A stable ``urn:uuid`` for a resource of this run's report."""
    return f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, f'emr-report:{salt}:{name}')}"


def _counts(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """For each measure: the overall share or count, and the rows of each stratifier."""
    adoption = document["adoption"]
    avoided = document["avoided_by"]
    return {
        "emr-adoption": {"total": adoption["facilities_live_at_end"],
                         "strata": adoption["strata"]["facilities_live_at_end"]},
        "referral-shared-results": {"total": adoption["referrals_with_shared_results"],
                                    "strata": adoption["strata"]["referrals_with_shared_results"]},
        "avoided-tests": {"total": {"count": document["totals"]["avoided"]},
                          "strata": {name: [{**row, "count": row["avoided"]} for row in avoided[name]]
                                     for name in STRATIFIERS}},
    }


def measure(key: str, *, lang: str) -> dict[str, Any]:
    """The Measure definition; its criteria are narrative (the computation is emr.reports)."""
    spec = MEASURES[key]
    result = {
        "resourceType": "Measure", "id": key, "url": MEASURE_BASE + key, "version": "1", "name": spec["name"],
        "title": _pick(spec["title"], lang), "status": "active", "experimental": True,
        "description": _pick(DEFINITIONS[spec["definition"]], lang),
        "scoring": _concept(SCORING_SYSTEM, spec["scoring"]),
        "group": [{
            "population": [{"code": _concept(POPULATION_SYSTEM, code), "description": text,
                            "criteria": _criteria(text)} for code, text in spec["populations"].items()],
            "stratifier": [{"code": _stratifier_code(name, lang),
                            "criteria": _criteria(f"{STRATIFIERS[name][1]} (code system {STRATUM_SYSTEMS[name]})")}
                           for name in STRATIFIERS],
        }],
    }
    if spec["scoring"] == "proportion":
        result["improvementNotation"] = _concept(IMPROVEMENT_SYSTEM, "increase")
    return result


def _criteria(text: str) -> dict[str, str]:
    return {"language": "text/plain", "expression": text}


def measure_report(key: str, counts: dict[str, Any], document: dict[str, Any], *, lang: str) -> dict[str, Any]:
    period = document["run"]["period"]
    group = {"population": _populations(key, counts["total"]), **_score(counts["total"])}
    group["stratifier"] = [{"code": [_stratifier_code(name, lang)],
                            "stratum": [_stratum(key, name, row, lang) for row in counts["strata"][name]]}
                           for name in STRATIFIERS]
    return {"resourceType": "MeasureReport", "id": f"{key}-report", "status": "complete", "type": "summary",
            "measure": MEASURE_BASE + key, "period": {"start": period["start"], "end": period["end"]},
            "group": [group]}


def _stratum(key: str, name: str, row: dict[str, Any], lang: str) -> dict[str, Any]:
    value = {"coding": [{"system": STRATUM_SYSTEMS[name], "code": row["key"]}], "text": row[f"name_{lang}"]}
    return {"value": value, "population": _populations(key, row), **_score(row)}


def _populations(key: str, counts: dict[str, Any]) -> list[dict[str, Any]]:
    if MEASURES[key]["scoring"] == "cohort":
        values = {"initial-population": counts["count"]}
    else:
        values = {"initial-population": counts["denominator"], "denominator": counts["denominator"],
                  "numerator": counts["numerator"]}
    return [{"code": _concept(POPULATION_SYSTEM, code), "count": count} for code, count in values.items()]


def _score(counts: dict[str, Any]) -> dict[str, Any]:
    share = counts.get("share")
    return {} if share is None else {"measureScore": {"value": share}}


def _stratifier_code(name: str, lang: str) -> dict[str, Any]:
    return {"coding": [{"system": STRATIFIER_SYSTEM, "code": name}], "text": _pick(STRATIFIERS[name], lang)}


def _concept(system: str, code: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code}]}
