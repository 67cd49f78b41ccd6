"""``emr loadtest``: it refuses anything but a hub on 127.0.0.1, stays within its bounds, and
reports throughput, latency percentiles and errors for a real hub."""

from __future__ import annotations

import json

import pytest
from rich.console import Console
from typer.testing import CliRunner

from emr.cli import app
from emr.config import Settings
from emr.errors import InvalidInput
from emr.load.driver import LoadResult, Sample, run_load
from emr.load.plan import make_plan, parse_mix
from emr.load.report import as_json, percentile, print_report, rows, sustained
from emr.load.workload import build_workload
from tests.serving import served_hub

runner = CliRunner()


@pytest.mark.parametrize("hub", ["http://localhost:8080/fhir", "http://10.0.0.5:8080/fhir", "https://example.org/fhir",
                                 "http://127.0.0.2/fhir", "127.0.0.1:8080", "ftp://127.0.0.1/fhir"])
def test_only_a_hub_on_this_machine_is_driven(hub):
    result = runner.invoke(app, ["loadtest", "--hub", hub, "--duration", "1"])
    assert result.exit_code == 2
    assert len(result.output.strip().splitlines()) == 1 and "error:" in result.output


@pytest.mark.parametrize("options", [{"rate": 0}, {"rate": 1e9}, {"duration": -1}, {"duration": 1e6},
                                     {"max_requests": 0}, {"workers": 0}, {"mix": "publish=x"},
                                     {"mix": "search=-1"}, {"mix": "delete=1"}, {"mix": "check=0"},
                                     {"mix": "check=1,check=2"}])
def test_bad_plans_are_refused_in_one_line(options):
    arguments = {"hub": "http://127.0.0.1:8080/fhir", "rate": 10, "duration": 5, **options}
    with pytest.raises(InvalidInput) as caught:
        make_plan(**arguments)
    assert "\n" not in str(caught.value)


def test_the_plan_is_bounded_by_rate_duration_and_count():
    assert make_plan(hub="http://127.0.0.1:1/fhir", rate=20, duration=3).planned == 60
    assert make_plan(hub="http://127.0.0.1:1/fhir", rate=20, duration=3, max_requests=7).planned == 7
    assert parse_mix("publish=1, search=3,check") == {"publish": 1.0, "search": 3.0, "check": 1.0}


def test_percentiles_are_nearest_rank():
    values = [float(v) for v in range(1, 101)]
    assert (percentile(values, 50), percentile(values, 95), percentile(values, 99)) == (50.0, 95.0, 99.0)
    assert percentile([], 99) == 0.0 and percentile([7.0], 50) == 7.0


def test_errors_count_against_the_verdict():
    plan = make_plan(hub="http://127.0.0.1:1/fhir", rate=10, duration=1)
    good = [Sample("search", i / 10, 0.02, 200, None) for i in range(9)]
    assert sustained(LoadResult(plan, good, 1.0, False))
    failed = LoadResult(plan, good + [Sample("publish", 0.9, 0.5, 503, "503")], 1.0, False)
    assert not sustained(failed)
    assert rows(failed)[-1].errors == 1 and as_json(failed)["errors"] == [{"kind": "publish", "error": "503", "count": 1}]


def test_a_short_run_against_a_real_hub(tmp_path):
    with served_hub(f"sqlite:///{tmp_path / 'hub.db'}", auth_required=False) as base:
        plan = make_plan(hub=base, rate=25, duration=1.6, workers=8, seed=3)
        result = run_load(plan, build_workload(Settings(), seed=3, citizens=60))
        cli = runner.invoke(app, ["loadtest", "--hub", base, "--rate", "10", "--duration", "1", "--lang", "en",
                                  "--json", str(tmp_path / "load.json")])
    assert [s.error for s in result.samples if s.error] == []
    assert len(result.samples) == plan.planned == 40
    assert [s.due for s in result.samples] == [i / 25 for i in range(40)]  # open loop: due on the rate's grid
    table = rows(result)
    assert {r.kind for r in table} == {"publish", "search", "check", "all"}
    assert table[-1].requests == sum(r.requests for r in table[:-1]) == 40
    assert 0 < table[-1].p50_ms <= table[-1].p95_ms <= table[-1].p99_ms <= table[-1].max_ms
    console = Console(record=True, width=120)
    print_report(result, console=console, lang="vi")
    shown = console.export_text()
    assert "Kiểm tra tải" in shown and "p99" in shown
    assert cli.exit_code == 0, cli.output
    assert "Hub load test" in cli.output
    saved = json.loads((tmp_path / "load.json").read_text(encoding="utf-8"))
    assert saved["rows"][-1]["kind"] == "all" and saved["plan"]["rate"] == 10
