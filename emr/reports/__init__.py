"""Reports on a simulation run: tests avoided, why the rest were repeated, and EMR adoption.

``write_reports`` reads a run directory (``summary.json`` and ``orders.ndjson``, see
``emr.sim.record``) with the facility registry, the test catalogue, the province table
and the national adoption line, computes every metric once into the report document
(``report.json``), and renders the other files from that document, so every file tells
the same numbers:

    report.json                    every metric (tables.report_document)
    avoided_by_*.csv, repeats_by_reason.csv, adoption_by_month.csv
    measure-report-bundle.json     FHIR R4B Measures and MeasureReports (measures.py)
    report.html                    one self-contained page for a reviewer (html.py)

The renderers are imported when asked for, so the CLI can use ``emr.reports.labels``
without loading matplotlib or Jinja2. Same run directory, same files, byte for byte.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import yaml

from emr.errors import DataFileError, InvalidInput

if TYPE_CHECKING:  # imported lazily at run time: see the module docstring
    from emr.adoption import NationalReference
    from emr.catalog import Facility, LabTest
    from emr.config import Settings
    from emr.identity import Province
    from emr.sim.record import OrderOutcome

FORMATS = frozenset({"html", "csv", "json", "fhir"})
LANGUAGES = frozenset({"vi", "en"})
_SUMMARY_KEYS = ("scenario", "seed", "patients", "period", "emr_go_live", "doctor_accepts_reuse")


@dataclass(frozen=True)
class Run:
    """A run directory as read: its summary and one outcome per ordered test."""

    directory: Path
    summary: dict[str, Any]
    orders: list[OrderOutcome]
    go_live: dict[str, date | None]
    period: tuple[date, date]


@dataclass(frozen=True)
class Reference:
    """The data files a report interprets the run with."""

    facilities: Mapping[str, Facility]
    tests: Mapping[str, LabTest]
    provinces: Mapping[str, Province]
    national: NationalReference


def write_reports(run_dir: Path, *, formats: set[str], lang: str, settings: Settings) -> list[Path]:
    """Write the chosen report files into ``run_dir`` and return their paths, in order.

    ``formats`` is a non-empty subset of {"html", "csv", "json", "fhir"}; ``lang`` is
    "vi" or "en" (the language of report.html and of the FHIR resources' text).
    Raises InvalidInput for a bad format or language, DataFileError when the run
    directory or a data file is missing or unreadable.
    """
    _check_options(formats, lang)
    run = load_run(Path(run_dir))
    reference = load_reference(settings)
    _check_run_against(run, reference)
    from emr.reports.tables import report_document, write_csvs, write_json

    document = report_document(run, reference)
    paths: list[Path] = []
    if "json" in formats:
        paths.append(write_json(run.directory / "report.json", document))
    if "csv" in formats:
        paths += write_csvs(run.directory, document)
    if "fhir" in formats:
        from emr.reports.measures import write_measure_bundle

        paths.append(write_measure_bundle(run.directory / "measure-report-bundle.json", document, lang=lang))
    if "html" in formats:
        from emr.reports.html import write_html

        paths.append(write_html(run.directory / "report.html", document, lang=lang))
    return paths


def _check_options(formats: set[str], lang: str) -> None:
    if not isinstance(formats, (set, frozenset)) or not formats:
        raise InvalidInput(f"formats must be a non-empty set of {', '.join(sorted(FORMATS))}")
    unknown = sorted(str(f) for f in formats if f not in FORMATS)
    if unknown:
        raise InvalidInput(f"unknown report format {', '.join(unknown)} (choose from {', '.join(sorted(FORMATS))})")
    if lang not in LANGUAGES:
        raise InvalidInput(f"report language must be vi or en, not {lang!r}")


def load_run(run_dir: Path) -> Run:
    """Read ``summary.json`` and ``orders.ndjson``; DataFileError with a one-line message."""
    if not run_dir.is_dir():
        raise DataFileError(f"run directory {run_dir} does not exist (run `emr simulate --out {run_dir}` first)")
    summary = _read_summary(run_dir / "summary.json")
    orders = _read_orders(run_dir / "orders.ndjson")
    try:
        go_live = {code: date.fromisoformat(d) if d else None for code, d in sorted(summary["emr_go_live"].items())}
        period = (date.fromisoformat(summary["period"]["start"]), date.fromisoformat(summary["period"]["end"]))
        float(summary["doctor_accepts_reuse"])
    except (AttributeError, KeyError, TypeError, ValueError) as error:
        raise DataFileError(f"{run_dir / 'summary.json'}: bad period, emr_go_live or doctor_accepts_reuse "
                            f"({type(error).__name__}: {error})") from error
    return Run(run_dir, summary, orders, go_live, period)


def _read_summary(path: Path) -> dict[str, Any]:
    try:
        summary = orjson.loads(path.read_bytes())
    except FileNotFoundError as error:
        raise DataFileError(f"{path} is missing: not a run directory") from error
    except (OSError, orjson.JSONDecodeError) as error:
        raise DataFileError(f"{path} cannot be read: {' '.join(str(error).split())}") from error
    if not isinstance(summary, dict):
        raise DataFileError(f"{path} must hold a JSON object")
    missing = [key for key in _SUMMARY_KEYS if key not in summary]
    if missing:
        raise DataFileError(f"{path} lacks {', '.join(missing)}: not a run summary of this version")
    return summary


def _read_orders(path: Path) -> list[OrderOutcome]:
    from emr.sim.record import OrderOutcome

    try:
        lines = path.read_bytes().splitlines()
    except FileNotFoundError as error:
        raise DataFileError(f"{path} is missing: not a run directory") from error
    except OSError as error:
        raise DataFileError(f"{path} cannot be read: {error}") from error
    orders = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = orjson.loads(line)
            row["at"] = datetime.fromisoformat(row["at"])
            if row["at"].tzinfo is None:
                raise ValueError("order time without a time zone")
            orders.append(OrderOutcome(**row))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as error:
            detail = " ".join(str(error).split())
            raise DataFileError(f"{path} line {number}: not an order outcome ({detail})") from error
    return orders


def load_reference(settings: Settings) -> Reference:
    """The registry, catalogue, province table and national line the settings point at."""
    from emr.adoption import parse_national
    from emr.catalog import load_facilities, load_tests
    from emr.identity import load_provinces

    path = settings.data_dir / "adoption-national.yaml"
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise DataFileError(f"{path} cannot be read: {' '.join(str(error).split())}") from error
    return Reference(
        facilities=load_facilities(settings.hospitals_dir),
        tests=load_tests(settings.data_dir / "tests.yaml"),
        provinces=load_provinces(settings.data_dir / "provinces.yaml"),
        national=parse_national(document, where=f"data/{path.name}"),
    )


def _check_run_against(run: Run, reference: Reference) -> None:
    """Every facility and test of the run is in the registry and catalogue (and every
    facility's province in the province table), or DataFileError names the first one missing."""
    facilities = set(run.go_live) | {o.facility for o in run.orders}
    for code in sorted(facilities):
        if code not in reference.facilities:
            raise DataFileError(f"{run.directory}: facility {code} of the run is not in the facility registry")
        if reference.facilities[code].province_code not in reference.provinces:
            raise DataFileError(f"facility {code}: province {reference.facilities[code].province_code} is unknown")
    for test in sorted({o.test for o in run.orders}):
        if test not in reference.tests:
            raise DataFileError(f"{run.directory}: test {test} of the run is not in the test catalogue")


__all__ = ["FORMATS", "LANGUAGES", "Reference", "Run", "load_reference", "load_run", "write_reports"]
