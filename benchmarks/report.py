"""The benchmark record: ``latest.json`` (every figure) and ``latest.md`` (the table for the README)."""

from __future__ import annotations

import os
import platform
from datetime import datetime, timezone
from pathlib import Path

import orjson

from benchmarks.harness import Outcome


def machine() -> dict:
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    return {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
            "load_average_1_5_15": [round(x, 2) for x in load]}


def write(out: Path, outcomes: list[Outcome], *, command: str, started_load: list[float]) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    info = machine()
    info["load_average_at_start"] = [round(x, 2) for x in started_load]
    record = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "command": command,
              "machine": info, "outcomes": [o.as_json() for o in outcomes]}
    json_path = out / "latest.json"
    json_path.write_bytes(orjson.dumps(record, option=orjson.OPT_INDENT_2) + b"\n")
    md_path = out / "latest.md"
    md_path.write_text(markdown(record, outcomes), encoding="utf-8")
    return json_path, md_path


def markdown(record: dict, outcomes: list[Outcome]) -> str:
    info = record["machine"]
    lines = [f"Run {record['date']} on {info['cpus']} CPUs ({info['platform']}, Python {info['python']}), "
             f"load average {info['load_average_at_start'][0]} at the start and "
             f"{info['load_average_1_5_15'][0]} at the end; `{record['command']}`.", "",
             "| benchmark | size | database | figure | achieved | ceiling | ratio | target |",
             "|---|---|---|---|---:|---:|---:|---|"]
    for outcome in outcomes:
        for f in outcome.figures:
            ceiling = f"{number(f.ceiling)} {f.unit}" if f.ceiling else "—"
            ratio = percent(f.ratio) if f.ratio is not None else "—"
            lines.append(f"| {outcome.benchmark} | {outcome.size} | {outcome.database} | {f.name} | "
                         f"{number(f.value)} {f.unit} | {ceiling} | {ratio} | {f.target or '—'} |")
    notes = [f"- {o.benchmark} ({o.database}): {note}" for o in outcomes for note in o.notes]
    return "\n".join(lines + ([""] + notes if notes else [])) + "\n"


def number(value: float | None) -> str:
    if value is None:
        return "—"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.1f}" if abs(value) >= 10 else f"{value:.2f}"


def percent(ratio: float) -> str:
    """One decimal for ordinary ratios, two significant digits for tiny ones (0.046%)."""
    return f"{ratio:.1%}" if ratio >= 0.01 else f"{ratio * 100:.2g}%"
