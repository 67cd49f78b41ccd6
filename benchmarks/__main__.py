"""``python -m benchmarks`` (``./scripts/bench``): run the benchmarks, write results/latest.{json,md}.

    ./scripts/bench [--size smoke|small|medium|full, or several: small,medium] [--only B1,B3] [--db sqlite,postgres]

Each benchmark measures its own ceiling in the same run on the same data and reports
achieved ÷ ceiling. PostgreSQL is skipped, with the reason in the notes, when no
server answers at ``EMR_BENCH_POSTGRES`` (default postgresql://postgres@127.0.0.1:5432/test).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks.harness import SIZES, Outcome, postgres_problem
from benchmarks.report import write

BENCHMARKS = {  # name: (module, databases it runs on)
    "B1": ("benchmarks.b1_ingest", ("sqlite", "postgres")),
    "B2": ("benchmarks.b2_check", ("sqlite", "postgres")),
    "B3": ("benchmarks.b3_backfill", ("sqlite", "postgres")),
    "B4": ("benchmarks.b4_simulation", ("sqlite",)),
}
RESULTS = Path(__file__).resolve().parent / "results"


def run_all(size: str, only: list[str], databases: list[str], workdir: Path,
            say: Callable[[str], None] = print) -> list[Outcome]:
    outcomes = []
    pg_problem = postgres_problem() if "postgres" in databases else None
    for name in only:
        module_name, supported = BENCHMARKS[name]
        module = importlib.import_module(module_name)
        for kind in [d for d in databases if d in supported]:
            if kind == "postgres" and pg_problem:
                say(f"{name} on PostgreSQL skipped: {pg_problem}")
                continue
            say(f"{name} {size} on {kind} …")
            started = time.perf_counter()
            try:
                outcome = module.run(size, kind, workdir)
            except Exception as exc:  # noqa: BLE001 - one broken run must not lose the others' figures
                outcome = Outcome(module.TITLE, size, kind,
                                  notes=[f"did not complete: {type(exc).__name__}: {str(exc)[:300]}"])
                say(outcome.notes[0])
            outcome.seconds = time.perf_counter() - started
            outcomes.append(outcome)
    return outcomes


def _names(text: str, allowed: tuple[str, ...] | list[str], what: str) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [n for n in names if n not in allowed]
    if unknown or not names:
        raise SystemExit(f"error: {what} must be a comma-separated list of {', '.join(allowed)}, not '{text}'")
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="small", help="smoke, small, medium or full, or several: small,medium")
    parser.add_argument("--only", default=",".join(BENCHMARKS), help="e.g. B1,B3")
    parser.add_argument("--db", default="sqlite,postgres", help="sqlite, postgres or both")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where latest.json and latest.md go")
    args = parser.parse_args(argv)
    only = _names(args.only.upper(), tuple(BENCHMARKS), "--only")
    databases = _names(args.db.lower(), ("sqlite", "postgres"), "--db")
    sizes = _names(args.size.lower(), SIZES, "--size")
    load_at_start = list(os.getloadavg())
    with tempfile.TemporaryDirectory(prefix="emr-bench-") as tmp:
        outcomes = [o for size in sizes for o in run_all(size, only, databases, Path(tmp))]
    command = "./scripts/bench " + " ".join(argv if argv is not None else sys.argv[1:])
    json_path, md_path = write(args.out, outcomes, command=command.strip(), started_load=load_at_start)
    print(md_path.read_text(encoding="utf-8"))
    print(f"written: {json_path}, {md_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
