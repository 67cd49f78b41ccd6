"""The `emr` command: every command has help and is in the README; errors are one line and exit non-zero."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from emr.cli import app
from emr.config import PROJECT_ROOT

README = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
runner = CliRunner()
COMMANDS = sorted(c.name or c.callback.__name__ for c in app.registered_commands)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_and_is_documented(command):
    result = runner.invoke(app, [command, "--help"])
    assert result.exit_code == 0 and "Usage" in result.output
    assert f"emr {command}" in README, f"README does not document `emr {command}`"


def test_unknown_scenario_is_one_line_and_exit_2(tmp_path):
    result = runner.invoke(app, ["simulate", "no-such-scenario", "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert "no scenario 'no-such-scenario'" in result.output


def test_bad_language_is_rejected(tmp_path):
    result = runner.invoke(app, ["simulate", "--lang", "fr", "--patients", "5", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "--lang" in result.output


def test_validate_passes_on_the_shipped_data():
    result = runner.invoke(app, ["validate"])
    assert result.exit_code == 0, result.output


def test_listings_show_the_pilot():
    wide = {"COLUMNS": "200"}
    assert "Bệnh viện Bạch Mai" in runner.invoke(app, ["hospitals"], env=wide).output
    assert "national-pilot-2025" in runner.invoke(app, ["scenarios"], env=wide).output


def test_simulate_prints_a_summary_in_vietnamese_and_english(tmp_path):
    vi = runner.invoke(app, ["simulate", "bac-ninh-thai-nguyen-to-bach-mai", "--patients", "30", "--out", str(tmp_path / "vi")])
    assert vi.exit_code == 0, vi.output
    assert "Chỉ định cận lâm sàng" in vi.output
    en = runner.invoke(app, ["simulate", "bac-ninh-thai-nguyen-to-bach-mai", "--patients", "30", "--lang", "en",
                             "--out", str(tmp_path / "en")])
    assert "Tests ordered" in en.output
    assert (tmp_path / "vi" / "summary.json").read_bytes() == (tmp_path / "en" / "summary.json").read_bytes()


def _readme_block(heading: str) -> str:
    section = README.split(f"## {heading}", 1)[1]
    return re.search(r"```bash\n(.*?)```", section, re.S).group(1)


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_readme_try_it_example_runs(sqlite_url):
    from tests.test_hub_concurrency import served_hub

    with served_hub(sqlite_url, auth_required=False) as base:  # the example runs the hub with --no-auth
        script = _readme_block("Try it").replace("http://127.0.0.1:8080/fhir", base)
        done = subprocess.run(["bash", "-c", "set -e\n" + script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    *_, person, observations, answer = [orjson.loads(line) for line in done.stdout.splitlines() if line.strip()]
    assert person["total"] == 1 and len(person["entry"][0]["resource"]["link"]) == 2
    assert observations["total"] == 1
    parts = {p["name"]: p for p in answer["parameter"][0]["part"]}
    assert parts["decision"]["valueCode"] == "reuse"


def test_quickstart_has_exactly_two_commands():
    block = _readme_block("Quickstart")
    commands = [line for line in block.splitlines() if line.strip() and not line.startswith("#")]
    assert len(commands) == 2
    assert Path(PROJECT_ROOT / commands[1].split()[0]).exists()


def test_simulate_writes_the_reports_and_report_rewrites_them_in_english(tmp_path):
    run_dir = tmp_path / "run"
    result = runner.invoke(app, ["simulate", "bac-ninh-thai-nguyen-to-bach-mai", "--patients", "20", "--out", str(run_dir)])
    assert result.exit_code == 0, result.output
    for name in ("report.html", "report.json", "measure-report-bundle.json", "repeats_by_reason.csv"):
        assert (run_dir / name).is_file(), name
    assert 'lang="vi"' in (run_dir / "report.html").read_text(encoding="utf-8")
    again = runner.invoke(app, ["report", str(run_dir), "--format", "html", "--lang", "en"])
    assert again.exit_code == 0, again.output
    assert 'lang="en"' in (run_dir / "report.html").read_text(encoding="utf-8")


@pytest.mark.parametrize("args, message", [
    (["report", "no-such-run"], "does not exist"),
    (["report", ".", "--format", "pdf"], "unknown report format pdf"),
])
def test_report_rejects_bad_input_in_one_line(args, message):
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert message in result.output and len(result.output.strip().splitlines()) == 1
