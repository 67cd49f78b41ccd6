"""``scripts/screenshots``: PNG pictures of the live dashboard and of the HTML report, for the README.

Serves a fresh hub with uvicorn (authentication off, as ``emr serve --no-auth``), runs a
simulation against it over HTTP, opens the dashboard in headless Chromium and saves
``dashboard.png``; then writes the run's ``report.html`` and saves the top of it as
``report.png``. Both go to ``docs/`` unless ``--out`` says otherwise. The figures are
simulated, as the pages say.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from emr.catalog import PROJECT_ROOT
from emr.config import Settings
from emr.reports import write_reports
from emr.sim.runner import SimulationRequest, simulate
from tests.browser import chromium, chromium_problem
from tests.serving import served_hub

WIDTH = 1280


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    problem = chromium_problem()
    if problem:
        print(f"screenshots: {problem}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    settings = Settings()
    with tempfile.TemporaryDirectory() as work, served_hub(f"sqlite:///{Path(work) / 'hub.db'}",
                                                                 auth_required=False) as base:
        run_dir = Path(work) / "run"
        simulate(settings, SimulationRequest(scenario=args.scenario, seed=args.seed, patients=args.patients,
                                             out=run_dir, hub=base))
        report = write_reports(run_dir, formats={"html"}, lang=args.lang, settings=settings)[0]
        with chromium() as browser:
            page = browser.new_page(viewport={"width": WIDTH, "height": 900})
            page.goto(f"{base.removesuffix('/fhir')}/dashboard?lang={args.lang}")
            page.screenshot(path=args.out / "dashboard.png", full_page=True)
            page.goto(report.as_uri())
            # down to the adoption section's tables: key figures, reasons, the adoption chart and its facts
            height = page.locator("div.cols").first.bounding_box()["y"]
            page.screenshot(path=args.out / "report.png", full_page=True,
                            clip={"x": 0, "y": 0, "width": WIDTH, "height": height})
    for name in ("dashboard.png", "report.png"):
        print(args.out / name)
    return 0


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="scripts/screenshots", description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default="national-pilot-2025")
    parser.add_argument("--seed", type=int, default=2025)
    parser.add_argument("--patients", type=int, default=None, help="default: the scenario's")
    parser.add_argument("--lang", choices=("vi", "en"), default="vi")
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "docs")
    return parser.parse_args(argv)


if __name__ == "__main__":
    raise SystemExit(main())
