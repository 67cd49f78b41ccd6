"""B2 order-time check: ``$check-reuse`` against a hub holding every patient's results.

Probes are seeded (a preloaded citizen, one to three tests, a moment in the period),
asked of the hub served by uvicorn: one client for latency, several for throughput at
saturation. Every sampled answer is compared with a direct SQL answer over
``result_fact``: "no prior result" exactly when SQL finds none, and an offered result
only if SQL finds it for that person and test, collected before the order.

Ceiling: the raw indexed lookup (the driver alone, the same probes) added to a bare
ASGI app's round trip under the same uvicorn and the same clients.

``python -m benchmarks.b2_check [--size small] [--db sqlite]`` profiles the checks instead:
the route's own work (the answer, then its audit entry committed) under pyinstrument,
without uvicorn, FastAPI or the thread hop; the profile goes to ``results/profile-b2.txt``.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import httpx
import orjson

from benchmarks.data import SPAN_DAYS, START, TESTS, people
from benchmarks.harness import PG_DSN, SIZES as ALL_SIZES, Outcome, database, percentile, preload, schema_of, served
from benchmarks.load import HEADERS, drive, warm_up
from emr.identity import FACILITY_CODE_SYSTEM, NATIONAL_ID_SYSTEM

TITLE = "B2 $check-reuse"
SEED = 2025
SOURCE = "27001"  # Bắc Ninh provincial hospital: a level-5 lab, so Bạch Mai may reuse its results
ORDERING = "01001"  # Bạch Mai
# size: (patients preloaded with 9 results each, probes)
# full: 112,000 Patients, 1,008,000 Observations
SIZES = {"smoke": (20, 30), "small": (2_000, 600), "medium": (20_000, 1_500), "full": (112_000, 3_000)}
SATURATION_CLIENTS = 8
AGREEMENT_SAMPLE = 200
LOOKUP = ("SELECT observation_id FROM result_fact WHERE national_id = {p} AND loinc = {p} AND collected_ms <= {p} "
          "ORDER BY collected_ms DESC LIMIT 10")


def run(size: str, kind: str, workdir: Path) -> Outcome:
    outcome = Outcome(TITLE, size, kind)
    patients, count = SIZES[size]
    probes = make_probes(patients, count)
    bodies = [orjson.dumps(parameters(*p)) for p in probes]
    with database(kind, workdir, "b2") as url:
        _, stored = preload(url, workdir / f"b2-{size}.ndjson", patients, source=SOURCE, seed=SEED)
        sql_seconds = lookup_seconds(url, probes)
        with served(url) as base:
            warm_up(base, "/$check-reuse", bodies[0])
            single = drive(base, "/$check-reuse", bodies, clients=1)
            busy = drive(base, "/$check-reuse", bodies, clients=SATURATION_CLIENTS)
            agreed, sampled = agreement(url, base, probes[:AGREEMENT_SAMPLE])
    with served(None, bare=True) as bare_base:
        warm_up(bare_base, "/$check-reuse", bodies[0])
        bare_single = drive(bare_base, "/$check-reuse", bodies, clients=1)
        bare_busy = drive(bare_base, "/$check-reuse", bodies, clients=SATURATION_CLIENTS)
    per_probe = sql_seconds / len(probes)
    outcome.add("latency p50, one client", percentile(single.latencies, 50) * 1000, "ms",
                (percentile(bare_single.latencies, 50) + per_probe) * 1000, higher_is_better=False)
    outcome.add("latency p99, one client", percentile(single.latencies, 99) * 1000, "ms",
                (percentile(bare_single.latencies, 99) + per_probe) * 1000, higher_is_better=False,
                target="<= 10 ms")
    outcome.add("checks/s at saturation", busy.per_second, "checks/s", 1 / (1 / bare_busy.per_second + per_probe),
                target=">= 5,000/s")
    outcome.add(f"latency p99, {SATURATION_CLIENTS} clients", percentile(busy.latencies, 99) * 1000, "ms",
                (percentile(bare_busy.latencies, 99) + per_probe) * 1000, higher_is_better=False)
    outcome.add("agreement with direct SQL", 100 * agreed / sampled, "%", 100.0, target="100%")
    failures = single.failures + busy.failures
    if failures:
        outcome.notes.append(f"{failures} checks failed; first: {single.first_failure or busy.first_failure}")
    outcome.notes.append(f"{stored:,} resources preloaded ({patients:,} Patients, 9 results each); {len(probes):,} "
                         f"probes of 1-3 tests; raw lookup {per_probe * 1e6:.0f} µs per probe")
    return outcome


def make_probes(patients: int, count: int) -> list[tuple[str, list[str], str]]:
    rng = random.Random(SEED)
    citizens = people(SEED, patients)
    codes = [t[0] for t in TESTS]
    probes = []
    for _ in range(count):
        at = START + timedelta(days=30, minutes=rng.randrange((SPAN_DAYS - 30) * 24 * 60))
        probes.append((rng.choice(citizens).national_id, sorted(rng.sample(codes, rng.randint(1, 3))), at.isoformat()))
    return probes


def parameters(national_id: str, loincs: list[str], at: str) -> dict:
    params = [{"name": "patient", "valueIdentifier": {"system": NATIONAL_ID_SYSTEM, "value": national_id}},
              {"name": "facility", "valueIdentifier": {"system": FACILITY_CODE_SYSTEM, "value": ORDERING}},
              {"name": "at", "valueDateTime": at}]
    params += [{"name": "code", "valueCoding": {"system": "http://loinc.org", "code": c}} for c in loincs]
    return {"resourceType": "Parameters", "parameter": params}


def _millis(at: str) -> int:
    from datetime import datetime

    return int(datetime.fromisoformat(at).timestamp() * 1000)


class DirectSql:
    """The raw driver, no SQLAlchemy: the floor of one indexed lookup."""

    def __init__(self, url: str) -> None:
        if url.startswith("sqlite"):
            import sqlite3

            self.conn = sqlite3.connect(url.removeprefix("sqlite:///"))
            self.sql = LOOKUP.format(p="?")
        else:
            import psycopg

            self.conn = psycopg.connect(PG_DSN, options=f"-csearch_path={schema_of(url)}", autocommit=True)
            self.sql = LOOKUP.format(p="%s")

    def results(self, national_id: str, loinc: str, at_ms: int) -> list[str]:
        return [row[0] for row in self.conn.execute(self.sql, (national_id, loinc, at_ms)).fetchall()]

    def close(self) -> None:
        self.conn.close()


def lookup_seconds(url: str, probes: list[tuple[str, list[str], str]]) -> float:
    sql = DirectSql(url)
    started = time.perf_counter()
    for national_id, loincs, at in probes:
        for loinc in loincs:
            sql.results(national_id, loinc, _millis(at))
    seconds = time.perf_counter() - started
    sql.close()
    return seconds


def agreement(url: str, base: str, probes: list[tuple[str, list[str], str]]) -> tuple[int, int]:
    """(answers that agree with direct SQL, answers compared), one per test of each probe."""
    sql = DirectSql(url)
    agreed = total = 0
    with httpx.Client(timeout=60) as http:
        for national_id, loincs, at in probes:
            answer = http.post(base + "/$check-reuse", content=orjson.dumps(parameters(national_id, loincs, at)),
                               headers=HEADERS).json()
            for result in answer.get("parameter", []):
                parts = {p["name"]: p for p in result["part"]}
                loinc = parts["code"]["valueCoding"]["code"]
                found = sql.results(national_id, loinc, _millis(at))
                reason = parts.get("reason", {}).get("valueCode")
                offered = parts.get("observation", {}).get("valueReference", {}).get("reference", "")
                ok = (reason == "no-prior-result") == (not found)
                if parts["decision"]["valueCode"] == "reuse":
                    ok = ok and offered.split("/")[-1] in found
                agreed += ok
                total += 1
    sql.close()
    return agreed, total


# ---------------------------------------------------------------- profile

def profile(size: str, kind: str, workdir: Path, out: Path) -> float:
    """Seconds per check through ``answer_check`` and ``settled``, as the route runs them; the
    pyinstrument profile goes to ``out``."""
    from pyinstrument import Profiler

    from emr.config import Settings
    from emr.hub import audit
    from emr.hub.app import build_hub
    from emr.hub.routes.operations import answer_check
    from emr.hub.security import settled

    patients, count = SIZES[size]
    bodies = [parameters(*p) for p in make_probes(patients, count)]
    with database(kind, workdir, "b2-profile") as url:
        preload(url, workdir / f"b2-{size}.ndjson", patients, source=SOURCE, seed=SEED)
        hub = build_hub(Settings(database_url=url, auth_required=False))

        def check(body: dict) -> None:
            token = audit.start(audit.AuditTrail(principal=None, interaction="operation", operation="check-reuse"))
            try:
                settled(hub, lambda: answer_check(hub, body))
            finally:
                audit.stop(token)

        for body in bodies[:20]:  # warm: statements compiled, pool filled
            check(body)
        profiler = Profiler(interval=0.0002)
        started = time.perf_counter()
        with profiler:
            for body in bodies:
                check(body)
        seconds = (time.perf_counter() - started) / len(bodies)
        hub.engine.dispose()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(profiler.output_text(unicode=True, color=False, show_all=False), encoding="utf-8")
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.b2_check", description="Profile B2's checks.")
    parser.add_argument("--size", choices=ALL_SIZES, default="small")
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "profile-b2.txt")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="emr-profile-") as tmp:
        seconds = profile(args.size, args.db, Path(tmp), args.out)
    print(f"{seconds * 1000:.2f} ms per check under the profiler; profile in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
