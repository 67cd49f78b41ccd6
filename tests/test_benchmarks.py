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


def test_bad_options_are_refused():
    with pytest.raises(SystemExit, match="--only"):
        main(["--only", "B9"])


def test_percentile_is_nearest_rank():
    assert percentile([5.0, 1.0, 3.0, 2.0, 4.0], 50) == 3.0
    assert percentile(list(range(1, 101)), 99) == 99
    assert percentile([], 99) == 0.0
