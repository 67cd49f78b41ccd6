"""``python -m benchmarks.profile [--size small] [--db sqlite]``: where the hub spends B1's time.

Uvicorn would run the hub in another process (and the TestClient in another thread),
out of a profiler's sight, so this calls the hub's own function for a transaction,
``bundles.process(hub, bundle)``, on B1's data and Bundles, under pyinstrument (the
``bench`` extra). Writes ``results/profile-b1.txt`` and prints the time per Bundle.
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile", description=__doc__)
    parser.add_argument("--size", choices=SIZES, default="small")
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--out", type=Path, default=RESULTS / "profile-b1.txt")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="emr-profile-") as tmp:
        seconds = profile_b1(args.size, args.db, Path(tmp), args.out)
    print(f"{seconds * 1000:.1f} ms per Bundle under the profiler; profile in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
