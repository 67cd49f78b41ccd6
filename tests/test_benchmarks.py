"""A smoke run of every benchmark, so the suite cannot rot. Not a timed test: no figure is judged."""

from __future__ import annotations

import importlib

import orjson
import pytest

from benchmarks.__main__ import BENCHMARKS, main
from benchmarks.harness import percentile


@pytest.mark.parametrize("name", sorted(BENCHMARKS))
def test_each_benchmark_runs_at_smoke_size_and_measures_its_ceiling(name, tmp_path):
    module = importlib.import_module(BENCHMARKS[name][0])
    outcome = module.run("smoke", "sqlite", tmp_path)
    assert outcome.figures and all(f.value > 0 for f in outcome.figures)
    assert any(f.ceiling and f.ratio for f in outcome.figures)
    assert not any("failed" in note for note in outcome.notes), outcome.notes
    assert all(f.value == 100.0 for f in outcome.figures if f.name.startswith("agreement"))  # B2 vs direct SQL


def test_the_command_writes_json_and_a_markdown_table(tmp_path):
    assert main(["--size", "smoke", "--only", "B3", "--db", "sqlite", "--out", str(tmp_path)]) == 0
    record = orjson.loads((tmp_path / "latest.json").read_bytes())
    assert record["machine"]["cpus"] and record["outcomes"][0]["benchmark"] == "B3 bulk backfill"
    table = (tmp_path / "latest.md").read_text(encoding="utf-8")
    assert "| B3 bulk backfill | smoke | sqlite | backfill |" in table
    figures = {f["name"]: f["value"] for f in record["outcomes"][0]["figures"]}
    # the loading process cannot use more CPU than the import's wall time: its bound is never below the rate
    assert figures["the loading process alone, one core"] >= figures["backfill"]


def test_bad_options_are_refused():
    with pytest.raises(SystemExit, match="--only"):
        main(["--only", "B9"])


def test_percentile_is_nearest_rank():
    assert percentile([5.0, 1.0, 3.0, 2.0, 4.0], 50) == 3.0
    assert percentile(list(range(1, 101)), 99) == 99
    assert percentile([], 99) == 0.0


def test_b3_bounds_the_backfill_by_checking_and_writing_shared_over_the_cores():
    from benchmarks.harness import shared_bound

    assert shared_bound([6_000.0, 12_000.0], 2) == pytest.approx(8_000.0)  # 1/6000 + 1/12000 = 1/4000 a core
    assert shared_bound([5_000.0], 1) == pytest.approx(5_000.0)


def test_the_b4_profile_sorts_each_sample_by_the_first_kind_of_work_its_stack_shows():
    from benchmarks.simprofile import sort_samples

    lines = [
        "run (emr/sim/engine.py:1);handle (httpx/_client.py:2);create (emr/hub/store.py:3);"
        "validate_resource (emr/fhir/__init__.py:4);__init__ (pydantic/main.py:5) 7",
        "run (emr/sim/engine.py:1);handle (httpx/_client.py:2);issue (emr/hub/tokens.py:9);"
        "execute (sqlalchemy/engine/base.py:3) 2",
        "run (emr/sim/engine.py:1);handle (httpx/_client.py:2);write (emr/hub/store.py:3);"
        "do_commit (sqlalchemy/engine/default.py:7) 3",
        "run (emr/sim/engine.py:1);send (httpx/_client.py:2) 4",
        "run (emr/sim/engine.py:1);_play (emr/sim/engine.py:240) 1",
        "<module> (<frozen importlib._bootstrap>:1) 5",
        "not a sample line",
    ]
    shares = sort_samples(lines)
    assert shares == {"checking (R4B models and profiles)": 7, "tokens (assertions signed and verified)": 2,
                      "SQLite itself (statements, commits)": 3, "HTTP and ASGI (client, loopback, middleware)": 4,
                      "simulator": 1, "other (start-up, imports, the rest)": 5}
