"""Where a simulated person's time goes: B4's run sampled by py-spy, every thread at once.

The in-process hub answers in AnyIO's worker threads and writes its audit trail and WAL
checkpoints from threads of its own, all out of pyinstrument's sight, so this runs
``national-pilot-2025`` in a child process under ``py-spy record`` (the ``bench``
extra) and sorts every sample into one of the kinds of work below, by the first rule
its stack matches. The shares are of samples taken while a thread was busy; a thread
waiting on a socket or a lock is not sampled (py-spy's default).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from benchmarks import b4_simulation

RATE = 250  # samples a second

# (kind of work, where it shows in a stack, and whether the leaf frame alone decides)
KINDS: tuple[tuple[str, re.Pattern[str], bool], ...] = (
    ("checking (R4B models and profiles)", re.compile(r"validate_resource"), False),
    ("tokens (assertions signed and verified)", re.compile(r"emr/hub/tokens\.py|emr/credentials\.py"), False),
    ("audit trail", re.compile(r"emr/hub/audit"), False),
    ("WAL checkpoints", re.compile(r"emr/hub/walcheckpoint\.py"), False),
    ("SQLite itself (statements, commits)", re.compile(r"do_execute|do_commit|sqlite3"), True),
    ("SQLAlchemy (Python)", re.compile(r"sqlalchemy/"), True),
    ("HTTP and ASGI (client, loopback, middleware)",
     re.compile(r"httpx/|starlette/|fastapi/|anyio/|asyncio/|selectors|emr/sim/(loopback|network)\.py"
                r"|emr/hub/(limits|security|http)\.py"), True),
    ("threads handing over", re.compile(r"threading\.py"), True),
    ("hub (its own Python)", re.compile(r"emr/hub/"), True),
    ("simulator", re.compile(r"emr/sim/|emr/fhir/builders"), True),
)


def profile_b4(size: str, kind: str, workdir: Path, out: Path) -> float:
    """Seconds per simulated person under py-spy; the shares of each kind of work go to ``out``."""
    if kind != "sqlite":
        raise SystemExit("B4 runs its hub on SQLite only")
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        raise SystemExit("py-spy is not installed: ./scripts/bootstrap bench")
    people = b4_simulation.SIZES[size]
    raw = workdir / "b4.raw"
    child = [sys.executable, "-c", f"from benchmarks.simprofile import simulate; simulate({people}, {str(workdir)!r})"]
    started = time.perf_counter()
    subprocess.run([spy, "record", "--rate", str(RATE), "--format", "raw", "--output", str(raw), "--", *child],
                   check=True, capture_output=True, cwd=Path(__file__).resolve().parent.parent)
    seconds = (time.perf_counter() - started) / people
    shares = sort_samples(raw.read_text(encoding="utf-8").splitlines())
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(shares, people, seconds), encoding="utf-8")
    return seconds


def simulate(people: int, workdir: str) -> None:
    """In the profiled child: B4's run, authentication off as in the benchmark."""
    from emr.config import Settings
    from emr.sim.runner import SimulationRequest, simulate as run

    request = SimulationRequest(scenario=b4_simulation.SCENARIO, seed=b4_simulation.SEED, patients=people,
                                out=Path(workdir) / "run")
    run(Settings(auth_required=False), request)


def sort_samples(lines: list[str]) -> Counter[str]:
    """py-spy's raw lines ("frame;frame;… count") counted by kind of work."""
    shares: Counter[str] = Counter()
    for line in lines:
        stack, _, count = line.rstrip().rpartition(" ")
        if stack and count.isdigit():
            shares[kind_of(stack)] += int(count)
    return shares


def kind_of(stack: str) -> str:
    leaf = stack.rsplit(";", 1)[-1]
    for name, pattern, leaf_only in KINDS:
        if pattern.search(leaf if leaf_only else stack):
            return name
    return "other (start-up, imports, the rest)"


def render(shares: Counter[str], people: int, seconds: float) -> str:
    total = sum(shares.values()) or 1
    lines = [f"B4 under py-spy: {people:,} people, {seconds * 1000:.1f} ms a person "
             f"(wall time under the sampler), {total:,} busy samples at {RATE}/s", ""]
    lines += [f"{100 * n / total:5.1f}%  {name}" for name, n in shares.most_common()]
    return "\n".join(lines) + "\n"
