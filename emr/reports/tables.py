"""The report document (``report.json``) and the CSV tables cut from it.

``report_document`` is the one place metrics are computed for the files: the HTML,
the CSVs and the MeasureReports all read this document, so they agree by construction.
It holds both Vietnamese and English names, so only report.html and the FHIR text
depend on the language. Shares are rounded to four decimals; JSON keys are sorted.
"""

from __future__ import annotations

import csv
import io
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from emr import adoption
from emr.reports import labels, metrics

if TYPE_CHECKING:
    from emr.reports import Reference, Run

BREAKDOWNS = ("facility", "province_pre_2025", "province_2025", "test", "category", "month")
TALLY_COLUMNS = ("ordered", "performed", "avoided", "vnd_saved", "blood_draws_avoided",
                 "radiation_exposures_avoided", "turnaround_hours_saved")
CSV_FILES = {
    "avoided_by_facility.csv": ("facility", ("key", "name_vi", "name_en", "kind", "province_code", "province_2025")),
    "avoided_by_province.csv": ("province", ("merger", "key", "name_vi", "name_en")),
    "avoided_by_test.csv": ("test", ("key", "name_vi", "name_en", "category")),
    "avoided_by_category.csv": ("category", ("key", "name_vi", "name_en")),
    "avoided_by_month.csv": ("month", ("key",)),
}
STRATA = ("facility", "province_pre_2025", "province_2025")


def share(value: adoption.Share) -> dict[str, Any]:
    ratio = value.value
    return {"numerator": value.numerator, "denominator": value.denominator,
            "share": None if ratio is None else round(ratio, 4)}


def report_document(run: Run, reference: Reference) -> dict[str, Any]:
    """Every metric of the run, JSON-ready."""
    return {
        "run": _run_facts(run),
        "totals": _totals(run, reference),
        "avoided_by": _breakdowns(run, reference),
        "repeats": _repeats(run),
        "adoption": _adoption(run, reference),
        "definitions": {key: {"vi": vi, "en": en} for key, (vi, en) in labels.DEFINITIONS.items()},
    }


def _run_facts(run: Run) -> dict[str, Any]:
    summary = run.summary
    return {"scenario": summary["scenario"], "scenario_version": summary.get("scenario_version"),
            "seed": summary["seed"], "patients": summary["patients"],
            "period": {"start": run.period[0].isoformat(), "end": run.period[1].isoformat()},
            "doctor_accepts_reuse": summary["doctor_accepts_reuse"], "visits": summary.get("visits"),
            "referrals": summary.get("referrals")}


def _totals(run: Run, reference: Reference) -> dict[str, Any]:
    totals = metrics.tally(run.orders, tests=reference.tests).as_dict()
    totals["repeats_performed"] = len(metrics.repeats(run.orders))
    return totals


def _breakdowns(run: Run, reference: Reference) -> dict[str, list[dict]]:
    keys = metrics.dimensions(tests=reference.tests, facilities=reference.facilities, provinces=reference.provinces)
    names = _namers(reference)
    result = {}
    for dimension in BREAKDOWNS:
        tallies = metrics.breakdown(run.orders, tests=reference.tests, key=keys[dimension])
        result[dimension] = [{"key": key, **names[dimension](key), **t.as_dict()} for key, t in tallies.items()]
    return result


def _namers(reference: Reference) -> dict[str, Any]:
    """For each breakdown, the descriptive columns of a key."""
    facilities, tests, provinces = reference.facilities, reference.tests, reference.provinces

    def facility(code: str) -> dict:
        f = facilities[code]
        return {"name_vi": f.name_vi, "name_en": f.name_en, "kind": f.kind,
                "province_code": f.province_code, "province_2025": f.province_2025}

    def pre_2025(code: str) -> dict:
        return {"name_vi": provinces[code].name_vi, "name_en": provinces[code].name_en}

    def post_2025(code: str) -> dict:
        name_vi = next(p.post_2025_name_vi for p in provinces.values() if p.post_2025_code == code)
        same = [p.name_en for p in provinces.values() if p.name_vi == name_vi]  # the province kept its name
        return {"name_vi": name_vi, "name_en": same[0] if same else name_vi}

    def test(code: str) -> dict:
        return {"name_vi": tests[code].name_vi, "name_en": tests[code].name_en, "category": tests[code].category}

    def category(code: str) -> dict:
        vi, en = labels.CATEGORIES.get(code, (code, code))
        return {"name_vi": vi, "name_en": en}

    return {"facility": facility, "province_pre_2025": pre_2025, "province_2025": post_2025, "test": test,
            "category": category, "month": lambda key: {}}


def _repeats(run: Run) -> dict[str, Any]:
    accept = float(run.summary["doctor_accepts_reuse"])
    counts = metrics.repeats_by_reason(run.orders)
    total = sum(counts.values())
    what_ifs = {"all_labs_recognised": metrics.LAB_RECOGNITION_REASONS,
                "all_facilities_on_emr": metrics.NO_EMR_REASONS}
    return {
        "total": total,
        "by_reason": [{"reason": reason, "label_vi": labels.reason_label(reason, "vi"),
                       "label_en": labels.reason_label(reason, "en"), "count": count,
                       "share": round(count / total, 4)} for reason, count in counts.items()],
        "what_if": {name: _what_if(metrics.what_if(run.orders, reasons=reasons, doctor_accepts_reuse=accept), reasons)
                    for name, reasons in what_ifs.items()},
    }


def _what_if(result: metrics.WhatIf, reasons: frozenset[str]) -> dict[str, Any]:
    return {"reasons": sorted(reasons), "repeats": result.repeats,
            "doctor_accepts_reuse": result.doctor_accepts_reuse, "more_avoided": result.more_avoided}


def _adoption(run: Run, reference: Reference) -> dict[str, Any]:
    start, end = run.period
    national = reference.national
    kinds = {code: reference.facilities[code].kind for code in run.go_live}
    chart_end = max(end, *(d.due for d in national.deadlines))
    in_run = adoption.adoption_by_month(run.go_live, start=start, end=end)
    return {
        "facilities_live_at_end": share(adoption.live_share(run.go_live, on=end)),
        "by_month": _monthly(run.go_live, kinds, national, start=start, end=end, basis="run")
        + _monthly(run.go_live, kinds, national, start=end + timedelta(days=1), end=chart_end, basis="planned"),
        "deadlines": [_deadline(run.go_live, kinds, deadline, end) for deadline in national.deadlines],
        "projected_full_adoption": adoption.projected_full_adoption(in_run),
        "results_electronic": share(adoption.electronic_results(run.orders, go_live=run.go_live)),
        "referrals_with_shared_results": share(adoption.referrals_with_shared_results(run.orders)),
        "strata": _strata(run, reference),
        "national_reference": [{"date": p.date.isoformat(), "hospitals_with_emr": p.hospitals_with_emr, "of": p.of,
                                "share": round(p.share, 4), "source": p.source, "note": p.note}
                               for p in national.points],
    }


def _monthly(go_live: dict[str, date | None], kinds: dict[str, str], national: adoption.NationalReference, *,
             start: date, end: date, basis: str) -> list[dict]:
    if start > end:
        return []
    groups = {"all": go_live} | {d.group: adoption.of_kinds(go_live, kinds=kinds, wanted=d.kinds)
                                 for d in national.deadlines}
    series = {name: adoption.adoption_by_month(subset, start=start, end=end) for name, subset in groups.items()}
    rows = []
    for index, month in enumerate(series["all"]):
        row = {"month": month.month, "on": month.end.isoformat(), "basis": basis}
        rows.append(row | {name: share(values[index].live) for name, values in series.items()})
    return rows


def _deadline(go_live: dict[str, date | None], kinds: dict[str, str], deadline: adoption.Deadline,
              end: date) -> dict[str, Any]:
    return {"group": deadline.group, "kinds": list(deadline.kinds), "due": deadline.due.isoformat(),
            "source": deadline.source, "within_run": deadline.due <= end,
            **share(adoption.deadline_share(go_live, kinds=kinds, deadline=deadline))}


def _strata(run: Run, reference: Reference) -> dict[str, Any]:
    """Facilities live at the end and referrals with shared results, per facility and province."""
    facilities, provinces = reference.facilities, reference.provinces
    keys = {"facility": lambda code: code,
            "province_pre_2025": lambda code: facilities[code].province_code,
            "province_2025": lambda code: provinces[facilities[code].province_code].post_2025_code}
    names = _namers(reference)
    end = run.period[1]
    result: dict[str, Any] = {"facilities_live_at_end": {}, "referrals_with_shared_results": {}}
    for dimension, key in keys.items():
        live = adoption.live_share_by(run.go_live, on=end, key=key)
        referrals = adoption.referrals_with_shared_results_by(run.orders, key=key)
        result["facilities_live_at_end"][dimension] = _stratum_rows(live, names[dimension])
        result["referrals_with_shared_results"][dimension] = _stratum_rows(referrals, names[dimension])
    return result


def _stratum_rows(shares: dict[str, adoption.Share], namer: Any) -> list[dict]:
    return [{"key": key, "name_vi": namer(key)["name_vi"], "name_en": namer(key)["name_en"], **share(value)}
            for key, value in shares.items()]


# --- Files ----------------------------------------------------------------------------
def write_json(path: Path, document: dict[str, Any]) -> Path:
    path.write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n")
    return path


def write_csvs(directory: Path, document: dict[str, Any]) -> list[Path]:
    """One UTF-8 CSV per breakdown, each with a header row; returns the paths in order."""
    paths = []
    for name, (dimension, columns) in CSV_FILES.items():
        paths.append(_write_csv(directory / name, columns + TALLY_COLUMNS, _breakdown_rows(document, dimension)))
    reasons = document["repeats"]["by_reason"]
    paths.append(_write_csv(directory / "repeats_by_reason.csv", ("reason", "label_vi", "label_en", "count", "share"),
                            reasons))
    paths.append(_write_csv(directory / "adoption_by_month.csv", _ADOPTION_COLUMNS, _adoption_rows(document)))
    return paths


def _breakdown_rows(document: dict[str, Any], dimension: str) -> list[dict]:
    if dimension != "province":
        return document["avoided_by"][dimension]
    return [{"merger": merger, **row} for merger, key in (("pre-2025", "province_pre_2025"),
                                                          ("2025", "province_2025"))
            for row in document["avoided_by"][key]]


_GROUPS = ("all", "hospitals", "other")
_ADOPTION_COLUMNS = ("month", "on", "basis") + tuple(f"{g}_{c}" for g in _GROUPS for c in ("live", "of", "share"))


def _adoption_rows(document: dict[str, Any]) -> list[dict]:
    rows = []
    for month in document["adoption"]["by_month"]:
        row = {"month": month["month"], "on": month["on"], "basis": month["basis"]}
        for group in _GROUPS:
            value = month.get(group, {"numerator": 0, "denominator": 0, "share": None})
            row |= {f"{group}_live": value["numerator"], f"{group}_of": value["denominator"],
                    f"{group}_share": value["share"]}
        rows.append(row)
    return rows


def _write_csv(path: Path, columns: tuple[str, ...], rows: list[dict]) -> Path:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: "" if v is None else v for k, v in row.items()} for row in rows)
    path.write_text(buffer.getvalue(), encoding="utf-8", newline="")
    return path
