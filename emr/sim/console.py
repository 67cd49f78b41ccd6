"""What the CLI shows a person: the progress bar, the run summary and the listings, in Vietnamese or English."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from emr.catalog import load_facilities
from emr.config import Settings
from emr.reports.labels import REASONS
from emr.sim.runner import SimulationRequest, simulate
from emr.sim.scenario import read_scenario, scenario_paths

LABELS = {
    "title": ("Kết quả mô phỏng", "Simulation summary"),
    "people_with_visits": ("Người bệnh có lượt khám", "Patients with visits"),
    "visits": ("Lượt khám", "Visits"),
    "referrals": ("Chuyển tuyến lên", "Referrals up"),
    "back_referrals": ("Chuyển tuyến về", "Referrals back"),
    "tests_ordered": ("Chỉ định cận lâm sàng", "Tests ordered"),
    "tests_performed": ("Đã thực hiện", "Tests performed"),
    "tests_reused": ("Dùng lại kết quả (tránh lặp)", "Results reused (tests avoided)"),
    "repeats_performed": ("Xét nghiệm lặp lại vẫn thực hiện", "Repeats still performed"),
    "vnd_saved": ("Tiết kiệm (VND)", "Saved (VND)"),
    "blood_draws_avoided": ("Lần lấy máu tránh được", "Blood draws avoided"),
    "radiation_exposures_avoided": ("Lần chiếu xạ tránh được", "Radiation exposures avoided"),
    "emr": ("Cơ sở có bệnh án điện tử (cuối kỳ)", "Facilities with EMR live (end)"),
    "reasons": ("Lý do vẫn làm lại", "Why repeats were still performed"),
    "reason": ("Lý do", "Reason"),
    "count": ("Số lượng", "Count"),
    "running": ("Đang mô phỏng", "Simulating"),
    "delivery": ("Gửi lên hệ thống điều phối", "Delivery to the hub"),
    "messages": ("Gói dữ liệu đã ghi", "Bundles written"),
    "resends": ("Lần gửi lại", "Resends"),
    "max_backlog": ("Hàng đợi dài nhất", "Longest backlog"),
    "undelivered": ("Chưa gửi được", "Not delivered"),
}


def label(key: str, lang: str, table: dict[str, tuple[str, str]] = LABELS) -> str:
    vi, en = table.get(key, (key, key))
    return vi if lang == "vi" else en


def run_with_progress(settings: Settings, request: SimulationRequest, *, console: Console) -> dict:
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task(f"{label('running', 'vi')} {request.scenario}", total=None)

        def report(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        return simulate(settings, request, progress=report)


def print_summary(summary: dict, *, console: Console, lang: str) -> None:
    table = Table(title=f"{label('title', lang)}: {summary['scenario']} (seed {summary['seed']})", show_header=False)
    table.add_column(justify="left")
    table.add_column(justify="right")
    for key in ("people_with_visits", "visits", "referrals", "back_referrals", "tests_ordered",
                "tests_performed", "tests_reused", "repeats_performed", "vnd_saved", "blood_draws_avoided",
                "radiation_exposures_avoided"):
        table.add_row(label(key, lang), f"{summary[key]:,}")
    emr = summary["emr_live_at_end"]
    table.add_row(label("emr", lang), f"{emr['facilities']}/{emr['of']}")
    console.print(table)
    reasons = Table(title=label("reasons", lang))
    reasons.add_column(label("reason", lang))
    reasons.add_column(label("count", lang), justify="right")
    for reason, count in sorted(summary["repeats_by_reason"].items(), key=lambda kv: (-kv[1], kv[0])):
        reasons.add_row(label(reason, lang, REASONS), f"{count:,}")
    console.print(reasons)
    _print_delivery(summary.get("delivery"), console=console, lang=lang)


def _print_delivery(delivery: dict | None, *, console: Console, lang: str) -> None:
    """Only when something went wrong on the way: resends, or Bundles still waiting."""
    if not delivery or delivery["attempts"] == delivery["messages"]:
        return
    table = Table(title=label("delivery", lang), show_header=False)
    table.add_column(justify="left")
    table.add_column(justify="right")
    rows = {"messages": delivery["messages"], "resends": delivery["attempts"] - delivery["messages"],
            "max_backlog": delivery["max_backlog"], "undelivered": delivery["pending"] + delivery["dead"]}
    for key, value in rows.items():
        table.add_row(label(key, lang), f"{value:,}")
    console.print(table)


def print_scenarios(settings: Settings, *, console: Console) -> None:
    table = Table(title="Scenarios")
    table.add_column("name", no_wrap=True)
    for column in ("version", "period", "patients", "title"):
        table.add_column(column)
    for name, path in scenario_paths(settings.scenarios_dir).items():
        scenario, problems = read_scenario(path)
        if scenario is None:
            table.add_row(name, "-", "-", "-", f"[red]invalid: {problems[0].message}[/]")
            continue
        table.add_row(name, str(scenario.version), f"{scenario.period.start} → {scenario.period.end}",
                      str(scenario.default_patients), scenario.title_vi)
    console.print(table)


def print_hospitals(settings: Settings, *, console: Console) -> None:
    table = Table(title="Facilities (hospitals/)")
    table.add_column("code", no_wrap=True)
    for column in ("name", "kind", "province", "lab level", "ISO 15189"):
        table.add_column(column)
    table.add_column("EMR go-live", no_wrap=True)
    for code, f in sorted(load_facilities(settings.hospitals_dir).items()):
        go_live = str(f.emr.go_live.value) if f.emr.go_live and f.emr.go_live.value else "—"
        table.add_row(code + ("*" if f.code_illustrative else ""), f.name_vi, f.kind,
                      f"{f.province_code} → {f.province_2025}", str(f.lab.quality_level.value),
                      "✓" if f.lab.iso15189.value else "", go_live)
    console.print(table)
    console.print("[dim]* illustrative facility code[/]")
