"""One check over every data file: the registry, the catalogues, the population tables, the scenarios.

It collects every problem from every file before reporting, so a person fixing data
sees the whole list at once instead of one error per run.
"""

from __future__ import annotations

from emr.catalog import load_facilities, load_tests, validate_data
from emr.config import Settings
from emr.errors import DataFileError, Problem
from emr.identity import load_provinces
from emr.reuse import OVERRIDE_REASONS
from emr.sim.population import load_population_tables
from emr.sim.scenario import cross_check, read_scenario, scenario_paths


def validate_all(settings: Settings) -> list[Problem]:
    tests_path = settings.data_dir / "tests.yaml"
    problems: list[Problem] = []
    try:
        provinces = load_provinces(settings.data_dir / "provinces.yaml")
    except DataFileError as error:
        problems += error.problems
        provinces = None
    problems += validate_data(hospitals_dir=settings.hospitals_dir, tests_path=tests_path, provinces=provinces)
    for load in (_population, _national_adoption):
        try:
            load(settings)
        except DataFileError as error:
            problems += error.problems or [Problem(str(error), "data")]
    return problems + _scenario_problems(settings)


def _population(settings: Settings) -> None:
    load_population_tables(settings.data_dir / "population.yaml")


def _national_adoption(settings: Settings) -> None:
    from emr.reports import load_reference

    load_reference(settings)


def _scenario_problems(settings: Settings) -> list[Problem]:
    try:
        facilities = load_facilities(settings.hospitals_dir)
        tests = load_tests(settings.data_dir / "tests.yaml")
    except DataFileError:
        facilities, tests = {}, {}  # already reported by validate_data
    problems: list[Problem] = []
    paths = scenario_paths(settings.scenarios_dir)
    if not paths:
        problems.append(Problem("no scenario files (*.yaml) found", str(settings.scenarios_dir)))
    for name, path in paths.items():
        scenario, found = read_scenario(path)
        problems += found
        if scenario is None:
            continue
        label = f"scenarios/{path.name}"
        if scenario.name != name:
            problems.append(Problem(f"name '{scenario.name}' differs from the file name", f"{label}:name"))
        if facilities and tests:
            problems += cross_check(scenario, label=label, facilities=facilities, tests=tests,
                                    override_codes=set(OVERRIDE_REASONS))
    return problems
