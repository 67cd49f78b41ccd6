"""What ``emr conformance`` shows a person, in Vietnamese or English: one line per property, then each counterexample."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.markup import escape

from emr.conformance.junit import write_junit
from emr.conformance.runner import Options, Outcome, Report, run_conformance
from emr.conformance.session import IDENTIFIER_SYSTEM_PREFIX, TAG_SYSTEM

LABELS = {
    "title": ("Kiểm thử tương hợp", "Conformance"),
    "passed": ("ĐẠT", "PASS"),
    "failed": ("LỖI", "FAIL"),
    "examples": ("ví dụ", "examples"),
    "replay": ("Chạy lại bằng (bash):", "Replay with (bash):"),
    "summary": ("{passed}/{total} thuộc tính đạt trong {seconds:.0f} giây", "{passed}/{total} properties passed in {seconds:.0f} s"),
    "seed": ("Chạy lại đúng lần này: --seed {seed}", "Repeat this run: --seed {seed}"),
    "tagged": ("Dữ liệu thử gắn thẻ {tag}|{run}, định danh hệ {system}{run}",
               "Test data is tagged {tag}|{run}, identifiers in system {system}{run}"),
    "token": ("Đặt FHIR_TOKEN trước khi chạy lại.", "Set FHIR_TOKEN before replaying."),
}


def label(key: str, lang: str) -> str:
    vi, en = LABELS[key]
    return vi if lang == "vi" else en


def print_start(base_url: str, *, console: Console, lang: str) -> None:
    console.print(f"[bold]{label('title', lang)}[/]: {escape(base_url)}")


def print_outcome(outcome: Outcome, *, console: Console, lang: str) -> None:
    mark = f"[green]✓ {label('passed', lang)}[/]" if outcome.passed else f"[red]✗ {label('failed', lang)}[/]"
    console.print(f"{mark} [bold]{outcome.key}[/] — {escape(outcome.title(lang))} "
                  f"[dim]({outcome.examples} {label('examples', lang)}, {outcome.seconds:.1f} s)[/]", highlight=False)


def print_report(report: Report, *, console: Console, lang: str) -> None:
    for outcome in report.outcomes:
        if outcome.passed:
            continue
        console.rule(f"[red]{outcome.key}[/]")
        console.print(escape(outcome.message(lang) or ""), highlight=False)
        if outcome.replay:
            console.print(f"[dim]{label('replay', lang)}[/]")
            if report.options.token:
                console.print(f"[dim]{label('token', lang)}[/]")
            console.print(escape(outcome.replay), highlight=False, soft_wrap=True)
    passed = sum(o.passed for o in report.outcomes)
    colour = "green" if report.passed else "red"
    console.print(f"[bold {colour}]" + label("summary", lang).format(
        passed=passed, total=len(report.outcomes), seconds=report.seconds) + "[/]")
    console.print("[dim]" + escape(label("tagged", lang).format(
        tag=TAG_SYSTEM, run=report.options.run_id, system=IDENTIFIER_SYSTEM_PREFIX)) + "[/]")
    console.print("[dim]" + label("seed", lang).format(seed=report.options.seed) + "[/]")


def check_server(options: Options, *, console: Console, lang: str, junit: Path | None = None) -> Report:
    """Run the kit, printing each property as it finishes, then the counterexamples; write JUnit XML if asked."""
    print_start(options.base_url, console=console, lang=lang)
    report = run_conformance(options, on_outcome=lambda o: print_outcome(o, console=console, lang=lang))
    print_report(report, console=console, lang=lang)
    if junit is not None:
        write_junit(report, junit, lang=lang)
    return report
