"""The ``emr`` command. Each command parses its options, calls one function and prints.

Errors from the project's error tree become one line on stderr and exit code 2.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from emr.config import Settings
from emr.errors import EmrError, InvalidInput
from emr.reports import FORMATS as REPORT_FORMATS

if TYPE_CHECKING:
    from emr.hub.reindex import ReindexResult

app = typer.Typer(help="Vietnam EMR interoperability simulator: coordination hub, result reuse, referral scenarios.",
                  no_args_is_help=True, add_completion=False)
err = Console(stderr=True, soft_wrap=True)  # an error stays one line, however long
out_console = Console()


def _fail(error: EmrError) -> None:
    err.print(f"[bold red]error:[/] {error}", highlight=False)
    raise typer.Exit(2)


@app.command()
def serve(
    db: Annotated[str | None, typer.Option(help="Database URL (default: EMR_DATABASE_URL or sqlite:///emr-hub.db)")] = None,
    host: Annotated[str, typer.Option(help="Address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on")] = 8080,
    clients: Annotated[Path | None, typer.Option(help="Registered SMART clients: a YAML/JSON file or a directory "
                                                      "(default: EMR_CLIENTS_PATH)")] = None,
    no_auth: Annotated[bool, typer.Option("--no-auth", help="Serve without authentication or access rules, "
                                                           "for local exploration only")] = False,
) -> None:
    """Start the coordination hub (FHIR R4B at /fhir) with the facility registry loaded."""
    import uvicorn

    from emr.hub.app import create_app

    settings = Settings()
    overrides: dict[str, object] = {"base_url": f"http://{host}:{port}/fhir"}
    if db:
        overrides["database_url"] = db
    if clients:
        overrides["clients_path"] = clients
    if no_auth:
        overrides["auth_required"] = False
    settings = settings.model_copy(update=overrides)
    try:
        application = create_app(settings)
    except EmrError as error:
        _fail(error)
    hub = application.state.hub
    if not hub.auth_required:
        err.print("[bold white on red] WARNING: authentication is OFF (--no-auth) [/] anyone who can reach "
                  f"{settings.base_url} can read and write every patient's data. Use it only on your own "
                  "machine, with synthetic data.", highlight=False)
    elif not len(hub.tokens.clients):
        err.print("[yellow]No clients are registered (EMR_CLIENTS_PATH or --clients): nobody can get a token.[/]")
    out_console.print(f"Hub listening on [bold]{settings.base_url}[/] (database {settings.database_url})")
    uvicorn.run(application, host=host, port=port, log_level="warning")


@app.command("import")
def import_(
    files: Annotated[list[Path], typer.Argument(help="FHIR bulk NDJSON files: one resource per line, each with its source id")],
    source: Annotated[str, typer.Option(help="Facility code of the system the files come from, e.g. 27001")],
    db: Annotated[str | None, typer.Option(help="Database URL (default: EMR_DATABASE_URL or sqlite:///emr-hub.db)")] = None,
    workers: Annotated[int, typer.Option(help="Processes that check lines in parallel", min=1)] = 2,
) -> None:
    """Backfill a facility's history from FHIR bulk NDJSON: every line checked first, then all or nothing."""
    import time

    from emr.hub.app import build_hub
    from emr.hub.bulk import import_files

    settings = Settings()
    if db:
        settings = settings.model_copy(update={"database_url": db})
    started = time.perf_counter()
    try:
        hub = build_hub(settings)
        try:
            result = import_files(hub, files, source=source, workers=workers)
        finally:
            hub.engine.dispose()
    except EmrError as error:
        _fail(error)
    seconds = time.perf_counter() - started
    kinds = ", ".join(f"{n} {t}" for t, n in sorted(result.types.items()))
    out_console.print(f"{result.lines} resources from {source} ({kinds}): {result.created} new, "
                      f"{result.updated} changed, {result.unchanged} already stored; {seconds:.1f} s", highlight=False)


@app.command()
def reindex(
    db: Annotated[str | None, typer.Option(help="Database URL of the hub (default: EMR_DATABASE_URL or sqlite:///emr-hub.db)")] = None,
    lang: Annotated[str, typer.Option(help="Language of the summary: vi or en")] = "vi",
) -> None:
    """Derive every search index row again from the stored resources (after an upgrade; on a quiet hub)."""
    import time

    from emr.hub.db import create_schema, open_existing
    from emr.hub.reindex import reindex as rebuild

    chosen = _lang(lang)
    started = time.perf_counter()
    try:
        engine = open_existing(db or Settings().database_url)
        try:
            create_schema(engine)
            result = rebuild(engine)
        finally:
            engine.dispose()
    except EmrError as error:
        _fail(error)
    out_console.print(_reindexed(result, time.perf_counter() - started, chosen), highlight=False)


def _reindexed(result: ReindexResult, seconds: float, lang: str) -> str:
    from emr.reports.labels import fmt_int, fmt_number

    rows = ", ".join(f"{kind.removeprefix('ix_')} {fmt_int(n, lang)}" for kind, n in sorted(result.rows.items()))
    resources, total = fmt_int(result.resources, lang), fmt_int(sum(result.rows.values()), lang)
    if lang == "vi":
        return (f"Đã dựng lại chỉ mục tìm kiếm của {resources} tài nguyên: {total} dòng ({rows}); "
                f"{fmt_number(seconds, lang)} giây")
    return f"Rebuilt the search index of {resources} resources: {total} rows ({rows}); {fmt_number(seconds, lang)} s"


@app.command()
def simulate(
    scenario: Annotated[str, typer.Argument(help="Scenario name (see `emr scenarios`) or path to a YAML file")] = "national-pilot-2025",
    seed: Annotated[int, typer.Option(help="Seed of every random choice; same seed, same run")] = 2025,
    patients: Annotated[int | None, typer.Option(help="Simulated patients (default: the scenario's)", min=1)] = None,
    out: Annotated[Path | None, typer.Option(help="Run directory (default: runs/<scenario>)")] = None,
    db: Annotated[str | None, typer.Option(help="Database URL of the in-process hub (default: a fresh SQLite file in the run directory)")] = None,
    hub: Annotated[str | None, typer.Option(help="Base URL of a running hub to use instead of an in-process one")] = None,
    lang: Annotated[str, typer.Option(help="Language of the summary: vi or en")] = "vi",
) -> None:
    """Run a referral scenario against the hub and print what the hub avoided."""
    from emr.sim.runner import SimulationRequest
    from emr.sim.console import print_summary, run_with_progress

    name = Path(scenario).stem
    request = SimulationRequest(scenario=scenario, seed=seed, patients=patients,
                                out=out or Path("runs") / name, db=db, hub=hub)
    try:
        summary = run_with_progress(Settings(), request, console=out_console)
    except EmrError as error:
        _fail(error)
    print_summary(summary, console=out_console, lang=_lang(lang))
    written = _write_reports(request.out, ",".join(sorted(REPORT_FORMATS)), lang)
    out_console.print(f"[dim]{request.out}/summary.json, {request.out}/orders.ndjson, "
                      f"{len(written)} report files ({request.out}/report.html)[/]")


@app.command()
def report(
    run_dir: Annotated[Path, typer.Argument(help="Run directory written by `emr simulate` (holds summary.json and orders.ndjson)")],
    format: Annotated[str, typer.Option("--format", help="Comma-separated: html, csv, json, fhir")] = "html,csv,json,fhir",
    lang: Annotated[str, typer.Option(help="Language of report.html and of the FHIR resources' text: vi or en")] = "vi",
) -> None:
    """Write the reports of a run: avoided tests, why the rest were repeated, EMR adoption."""
    for path in _write_reports(run_dir, format, lang):
        out_console.print(str(path), highlight=False)


@app.command()
def scenarios() -> None:
    """List the shipped scenarios."""
    from emr.sim.console import print_scenarios

    try:
        print_scenarios(Settings(), console=out_console)
    except EmrError as error:
        _fail(error)


@app.command()
def hospitals() -> None:
    """List the facility registry (hospitals/)."""
    from emr.sim.console import print_hospitals

    try:
        print_hospitals(Settings(), console=out_console)
    except EmrError as error:
        _fail(error)


@app.command()
def validate() -> None:
    """Check every data file (hospitals/, data/, scenarios/) and print every problem at once."""
    from emr.validation import validate_all

    problems = validate_all(Settings())
    for problem in problems:
        err.print(f"[red]✗[/] {problem.location}: {problem.message}", highlight=False)
    if problems:
        err.print(f"[bold red]{len(problems)} problems[/]")
        raise typer.Exit(1)
    out_console.print("[green]✓[/] every data file is valid")


@app.command()
def conformance(
    base_url: Annotated[str, typer.Option("--base-url", help="FHIR base URL of the server under test, e.g. http://127.0.0.1:8080/fhir")],
    max_examples: Annotated[int, typer.Option(help="Examples tried per property", min=1)] = 25,
    seed: Annotated[int | None, typer.Option(help="Seed of the generated data (default: a new one, printed at the end)")] = None,
    junit: Annotated[Path | None, typer.Option(help="Also write the results as JUnit XML to this file")] = None,
    token: Annotated[str | None, typer.Option(help="Bearer token sent with every request", envvar="FHIR_TOKEN")] = None,
    only: Annotated[str | None, typer.Option(help="Comma-separated properties to run (default: all eight)")] = None,
    lang: Annotated[str, typer.Option(help="Language of the output: vi or en")] = "vi",
) -> None:
    """Check a FHIR server against eight interoperability properties; exit 1 when any fails."""
    import secrets

    from emr.conformance import Options
    from emr.conformance.console import check_server

    chosen = tuple(part.strip() for part in (only or "").split(",") if part.strip())
    seed = secrets.randbelow(2**32) if seed is None else seed
    options = Options(base_url=base_url, run_id=secrets.token_hex(6), seed=seed, max_examples=max_examples,
                      token=token, only=chosen)
    try:
        report = check_server(options, console=out_console, lang=_lang(lang), junit=junit)
    except EmrError as error:
        _fail(error)
    if not report.passed:
        raise typer.Exit(1)


@app.command()
def audit(
    national_id: Annotated[str, typer.Option("--national-id", help="The person's 12-digit personal identification number")],
    db: Annotated[str | None, typer.Option(help="Database URL of the hub (default: EMR_DATABASE_URL or sqlite:///emr-hub.db)")] = None,
    lang: Annotated[str, typer.Option(help="Language of the table: vi or en")] = "vi",
) -> None:
    """Who accessed a person's data: every audit entry about one national ID, oldest first."""
    from emr.catalog import load_facilities
    from emr.hub.audit_log import entries_for, print_audit
    from emr.hub.db import open_existing
    from emr.identity import parse_national_id

    chosen = _lang(lang)
    settings = Settings()
    try:
        parse_national_id(national_id)
        engine = open_existing(db or settings.database_url)
        entries = entries_for(engine, national_id)
        names = {code: (f.name_vi, f.name_en) for code, f in load_facilities(settings.hospitals_dir).items()}
    except EmrError as error:
        _fail(error)
    print_audit(entries, national_id=national_id, facility_names=names, console=out_console, lang=chosen)


@app.command()
def loadtest(
    hub: Annotated[str, typer.Option(help="FHIR base URL of a hub on 127.0.0.1, e.g. http://127.0.0.1:8080/fhir")],
    rate: Annotated[float, typer.Option(help="Requests started per second")] = 20.0,
    duration: Annotated[float, typer.Option(help="Seconds during which requests are started")] = 10.0,
    mix: Annotated[str, typer.Option(help="Weights of the request kinds: publish, search, check")] = "publish=1,search=2,check=2",
    max_requests: Annotated[int | None, typer.Option(help="Start at most this many requests")] = None,
    workers: Annotated[int, typer.Option(help="Requests in flight at once (connections)")] = 16,
    seed: Annotated[int, typer.Option(help="Seed of the requests' contents and of the facilities' keys (sim-<code>)")] = 2025,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the figures to this JSON file")] = None,
    lang: Annotated[str, typer.Option(help="Language of the table: vi or en")] = "vi",
) -> None:
    """Drive visit Bundles, searches by national ID and $check-reuse at a hub on this machine; report
    throughput, latency percentiles and errors (exit 1 when any request failed)."""
    from emr.load.driver import run_load
    from emr.load.plan import make_plan
    from emr.load.report import as_json, errors, print_report
    from emr.load.workload import build_workload

    chosen = _lang(lang)
    try:
        plan = make_plan(hub=hub, rate=rate, duration=duration, mix=mix, max_requests=max_requests,
                         workers=workers, seed=seed)
        result = run_load(plan, build_workload(Settings(), seed=seed))
    except EmrError as error:
        _fail(error)
    print_report(result, console=out_console, lang=chosen)
    if json_out:
        json_out.write_text(json.dumps(as_json(result), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    if errors(result):
        raise typer.Exit(1)


def _write_reports(run_dir: Path, formats: str, lang: str) -> list[Path]:
    from emr.reports import write_reports

    chosen = {part.strip() for part in formats.split(",") if part.strip()}
    try:
        return write_reports(run_dir, formats=chosen, lang=_lang(lang), settings=Settings())
    except EmrError as error:
        _fail(error)


def _lang(value: str) -> str:
    if value not in ("vi", "en"):
        _fail(InvalidInput(f"--lang must be vi or en, not '{value}'"))
    return value


def main() -> None:  # pragma: no cover - console entry point
    app(prog_name="emr")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())



