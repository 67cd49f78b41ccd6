"""``python -m benchmarks.profile [--bench B1|B3|B4] [--size small] [--db sqlite]``: where the time goes.

Uvicorn would run the hub in another process (and the TestClient in another thread),
out of a profiler's sight, so this calls the hub's own functions under pyinstrument
(the ``bench`` extra): for B1, ``bundles.process(hub, bundle)`` on B1's data and
Bundles; for B3, ``bulk.import_files`` on B3's file with one worker (a process pool
would hide the checking from the profiler). B4's hub works in threads of its own, so
it is sampled by py-spy instead (``benchmarks.simprofile``). Writes
``results/profile-<bench>.txt`` and prints the time per Bundle, resource or person.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import orjson

from benchmarks import b1_ingest
from benchmarks.harness import SIZES, database, preload
from benchmarks.simprofile import profile_b4

RESULTS = Path(__file__).resolve().parent / "results"


def profile_b1(size: str, kind: str, workdir: Path, out: Path) -> float:
    """Seconds per Bundle through ``bundles.process``; the profile goes to ``out``."""
    from pyinstrument import Profiler

    from emr.config import Settings
    from emr.hub import bundles
    from emr.hub.app import build_hub

    patients, count = b1_ingest.SIZES[size]
    with database(kind, workdir, "profile") as url:
        preload(url, workdir / "profile.ndjson", patients, source=b1_ingest.SOURCE, seed=b1_ingest.SEED)
        hub = build_hub(Settings(database_url=url, auth_required=False))
        bodies = [orjson.loads(b) for b in b1_ingest.bundles(patients, count + 1)]
        bundles.process(hub, bodies[0])  # warm: models loaded, statements compiled
        profiler = Profiler(interval=0.0005)
        started = time.perf_counter()
        with profiler:
            for body in bodies[1:]:
                bundles.process(hub, body)
        seconds = (time.perf_counter() - started) / count
        hub.engine.dispose()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(profiler.output_text(unicode=True, color=False, show_all=False), encoding="utf-8")
    return seconds


def profile_b3(size: str, kind: str, workdir: Path, out: Path) -> float:
    """Seconds per resource through ``bulk.import_files``; the profile goes to ``out``."""
    from pyinstrument import Profiler

    from benchmarks import b3_backfill
    from benchmarks.data import history, people, write_ndjson
    from emr.config import Settings
    from emr.hub.app import build_hub
    from emr.hub.bulk import import_files

    path = workdir / "profile-b3.ndjson"
    count = write_ndjson(path, history(b3_backfill.SEED, b3_backfill.SOURCE,
                                       people(b3_backfill.SEED, b3_backfill.SIZES[size]),
                                       b3_backfill.RESULTS_PER_PATIENT))
    with database(kind, workdir, "profile") as url:
        hub = build_hub(Settings(database_url=url, auth_required=False))
        profiler = Profiler(interval=0.001)
        started = time.perf_counter()
        with profiler:
            import_files(hub, [path], source=b3_backfill.SOURCE, workers=1)
        seconds = (time.perf_counter() - started) / count
        hub.engine.dispose()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(profiler.output_text(unicode=True, color=False, show_all=False), encoding="utf-8")
    return seconds


PROFILES = {"B1": (profile_b1, "Bundle"), "B3": (profile_b3, "resource"), "B4": (profile_b4, "person")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile", description=__doc__)
    parser.add_argument("--bench", choices=sorted(PROFILES), default="B1")
    parser.add_argument("--size", choices=SIZES, default="small")
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--out", type=Path, help="default: results/profile-<bench>.txt")
    args = parser.parse_args(argv)
    profile, unit = PROFILES[args.bench]
    out = args.out or RESULTS / f"profile-{args.bench.lower()}.txt"
    with tempfile.TemporaryDirectory(prefix="emr-profile-") as tmp:
        seconds = profile(args.size, args.db, Path(tmp), out)
    print(f"{seconds * 1000:.3f} ms per {unit} under the profiler; profile in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
