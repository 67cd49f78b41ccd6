"""The simulation end to end: every shipped scenario runs, totals add up, runs are reproducible."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import orjson
import pytest

from emr.config import Settings
from emr.identity import parse_national_id
from emr.sim.engine import apportion, build_population
from emr.sim.runner import SimulationRequest, load_world, simulate
from emr.sim.scenario import scenario_paths
from emr.validation import validate_all

SETTINGS = Settings()
SCENARIOS = sorted(scenario_paths(SETTINGS.scenarios_dir))


def run(tmp_path: Path, scenario: str, *, seed: int = 11, patients: int = 60, db: str | None = None) -> dict:
    out = tmp_path / f"{scenario}-{seed}"
    return simulate(SETTINGS, SimulationRequest(scenario=scenario, seed=seed, patients=patients, out=out, db=db))


def orders(tmp_path: Path, scenario: str, seed: int = 11) -> list[dict]:
    lines = (tmp_path / f"{scenario}-{seed}" / "orders.ndjson").read_bytes().splitlines()
    return [orjson.loads(line) for line in lines]


def test_every_data_file_validates():
    assert validate_all(SETTINGS) == []


def test_the_required_scenarios_ship():
    assert {"bac-ninh-thai-nguyen-to-bach-mai", "binh-duong-an-giang-to-cho-ray", "national-pilot-2025",
            "paper-baseline", "cross-region"} <= set(SCENARIOS)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_each_scenario_runs_and_its_totals_add_up(tmp_path, scenario):
    summary = run(tmp_path, scenario)
    assert summary["tests_ordered"] == summary["tests_performed"] + summary["tests_reused"] > 0
    assert summary["counterfactual_no_hub"]["tests_performed"] == summary["tests_ordered"]
    for row in summary["by_facility_test"]:
        assert row["ordered"] == row["performed"] + row["reused"]
    assert sum(summary["performed_by_reason"].values()) == summary["tests_performed"]
    assert sum(summary["repeats_by_reason"].values()) == summary["repeats_performed"]
    rows = orders(tmp_path, scenario)
    assert len(rows) == summary["tests_ordered"]
    assert Counter(r["outcome"] for r in rows)["reused"] == summary["tests_reused"]


def test_paper_baseline_avoids_nothing(tmp_path):
    summary = run(tmp_path, "paper-baseline", patients=80)
    assert summary["tests_reused"] == 0 and summary["vnd_saved"] == 0
    assert summary["hub_requests"] == 0 and summary["emr_live_at_end"]["facilities"] == 0


def test_the_pilot_avoids_tests_the_baseline_repeats(tmp_path):
    pilot = run(tmp_path, "bac-ninh-thai-nguyen-to-bach-mai", patients=250, seed=3)
    assert pilot["tests_reused"] > 0 and pilot["vnd_saved"] > 0
    reused = [r for r in orders(tmp_path, "bac-ninh-thai-nguyen-to-bach-mai", 3) if r["outcome"] == "reused"]
    assert all(r["prior_published"] for r in reused)


def test_same_seed_same_bytes_and_different_seed_differs(tmp_path):
    first = run(tmp_path / "a", "national-pilot-2025", seed=5, patients=70)
    second = run(tmp_path / "b", "national-pilot-2025", seed=5, patients=70)
    other = run(tmp_path / "c", "national-pilot-2025", seed=6, patients=70)
    path = Path("national-pilot-2025-5") / "summary.json"
    assert (tmp_path / "a" / path).read_bytes() == (tmp_path / "b" / path).read_bytes()
    assert first == second and first != other
    ndjson = Path("national-pilot-2025-5") / "orders.ndjson"
    assert (tmp_path / "a" / ndjson).read_bytes() == (tmp_path / "b" / ndjson).read_bytes()


def test_generated_national_ids_match_their_citizens():
    world = load_world(SETTINGS, SimulationRequest("national-pilot-2025", seed=9, patients=400, out=Path("unused")))
    for citizen in build_population(world):
        number = parse_national_id(citizen.national_id)
        assert number.birth_year == citizen.birth_date.year and number.sex == citizen.sex


def test_apportion_sums_exactly():
    assert sum(apportion(101, {"a": 0.3, "b": 0.3, "c": 0.4}).values()) == 101
    assert apportion(3, {"a": 0.5, "b": 0.5}) in ({"a": 2, "b": 1}, {"a": 1, "b": 2})


def test_registration_errors_make_unverified_identities(tmp_path):
    scenario = (SETTINGS.scenarios_dir / "bac-ninh-thai-nguyen-to-bach-mai.yaml").read_text(encoding="utf-8")
    careless = scenario.replace("name: bac-ninh-thai-nguyen-to-bach-mai", "name: careless-clerks")
    start = careless.index("registration_errors:")
    careless = careless[:start] + careless[start:].replace("rate: {value: 0.03", "rate: {value: 1.0", 1)
    path = tmp_path / "careless-clerks.yaml"
    path.write_text(careless, encoding="utf-8")
    summary = simulate(SETTINGS, SimulationRequest(scenario=str(path), seed=3, patients=250, out=tmp_path / "c"))
    assert summary["repeats_by_reason"].get("identity-unverified", 0) > 0
    assert summary["tests_reused"] < summary["repeats_performed"]


@pytest.mark.postgres
def test_the_simulation_runs_against_postgresql(tmp_path, postgres_url):
    summary = run(tmp_path, "bac-ninh-thai-nguyen-to-bach-mai", patients=40, db=postgres_url)
    assert summary["tests_ordered"] == summary["tests_performed"] + summary["tests_reused"]
