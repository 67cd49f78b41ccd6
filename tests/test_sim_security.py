"""The simulated hospitals authenticate like real clients, and their patients' refusals of sharing count.

One run with a scenario whose opt-out rate is raised (a copy of a shipped scenario), so
the effect is large enough to see in 120 patients.
"""

from __future__ import annotations

import re
from pathlib import Path

import orjson
import pytest
from sqlalchemy import select

from emr.config import Settings
from emr.hub.db import ResourceRow, make_engine
from emr.reports import write_reports
from emr.reports.labels import REASONS
from emr.sim.engine import refuses_sharing
from emr.sim.runner import SimulationRequest, load_world, simulate

SETTINGS = Settings()
SCENARIO = "bac-ninh-thai-nguyen-to-bach-mai"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("opt-out")
    source = (SETTINGS.scenarios_dir / f"{SCENARIO}.yaml").read_text(encoding="utf-8")
    raised = re.sub(r"^sharing_opt_out: \{value: [0-9.]+", "sharing_opt_out: {value: 0.6", source, flags=re.M)
    assert raised != source
    path = out / "opt-out.yaml"
    path.write_text(raised, encoding="utf-8")
    simulate(SETTINGS, SimulationRequest(scenario=str(path), seed=7, patients=120, out=out / "run"))
    return out / "run"


def test_refusals_of_sharing_are_repeats_for_consent(run_dir: Path):
    orders = [orjson.loads(line) for line in (run_dir / "orders.ndjson").read_bytes().splitlines()]
    refused = [o for o in orders if o["why"] == "consent"]
    assert refused and all(o["outcome"] == "performed" and o["hub_reason"] == "consent" for o in refused)
    world = load_world(SETTINGS, SimulationRequest(scenario=str(run_dir.parent / "opt-out.yaml"), seed=7,
                                                   patients=120, out=run_dir))
    assert all(refuses_sharing(world, o["citizen"]) for o in refused)
    write_reports(run_dir, formats={"html"}, lang="en", settings=SETTINGS)
    assert REASONS["consent"][1] in (run_dir / "report.html").read_text(encoding="utf-8")


def test_the_simulated_hospitals_authenticated(run_dir: Path):
    engine = make_engine(f"sqlite:///{run_dir / 'hub.db'}")
    R = ResourceRow.__table__
    with engine.connect() as conn:
        events = [orjson.loads(c) for c in conn.execute(
            select(R.c.content).where(R.c.resource_type == "AuditEvent")).scalars()]
        consents = conn.execute(select(R.c.pk).where(R.c.resource_type == "Consent")).all()
    engine.dispose()
    clients = {e["agent"][0]["who"].get("display") for e in events}
    assert clients and all(c.startswith("sim-") for c in clients)
    assert all(e["outcome"] == "0" for e in events)  # no simulated hospital ever overstepped
    assert consents
