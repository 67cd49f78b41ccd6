"""Bulk backfill: loading a facility's history from FHIR bulk NDJSON until it is searchable.

``emr import FILE.ndjson … --source 27001`` reads one resource per line, checks every
line against the structure and the project's profiles, and loads nothing unless every
line passes: the error lists every bad line with its file and line number.

Checking is most of the work, so for a large file it runs in a process pool while this
process writes the lines into one open transaction; the transaction commits only once
every line has passed, and rolls back otherwise.

Each resource gets a stable hub id, ``uuid5(source | type | source id)``, and every
reference to another resource of the import (``Patient/p1``) — or to one an earlier
import of the same source stored — is rewritten to that id. Importing the same file
again therefore stores nothing new; a resource whose content changed becomes a new
version through the ordinary update path.

New resources are written through ``batchwrite`` (multi-row statements, hooks
batched) in one transaction, Patients and Organizations first so that the results
written after them find their national ID and facility.
"""

from __future__ import annotations

import multiprocessing
import re
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from sqlalchemy import select
from sqlalchemy.engine import Connection, Engine
from sqlmodel import SQLModel

from emr.errors import EmrError, InvalidInput, Problem
from emr.fhir import validate_resource
from emr.hub.batchwrite import IN_CHUNK, BatchWriter, chunks
from emr.hub.bundles import rewrite_references
from emr.hub.db import write_transaction
from emr.hub.http import Hub
from emr.hub.store import ID_RE, R, stamp

IMPORT_NAMESPACE = uuid.UUID("8c701f47-1ab9-5e29-a9d4-aa6da7914687")  # uuid5(URL, "urn:emr:bulk-import")
PARALLEL_FROM = 2000  # lines; below this a process pool costs more than it saves
WRITE_BATCH = 2000  # resources per multi-row insert
LOAD_FIRST = {"Organization": 0, "Practitioner": 0, "Patient": 1}  # then everything else, in file order
FACILITY_CODE_RE = re.compile(r"^\d{5}$")
_LITERAL = re.compile(r"^([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})$")


@dataclass(frozen=True)
class SourceLine:
    where: str  # "patients.ndjson line 12"
    raw: bytes
    resource: dict


@dataclass
class ImportResult:
    lines: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    types: dict[str, int] = field(default_factory=dict)


def import_files(hub: Hub, paths: Iterable[Path], *, source: str, workers: int = 2) -> ImportResult:
    """Check every line of every file while loading them in one transaction: all or nothing."""
    check_source(hub, source)
    paths = list(paths)
    lines, problems, total = read_lines(paths)
    with LineChecks(lines, workers=workers) as checks:
        if problems:
            raise refusal(problems + checks.problems(), total, paths)
        return load(hub, lines, source=source, approve=lambda: _approve(checks, total, paths))


def _approve(checks: LineChecks, total: int, paths: list[Path]) -> None:
    """Raise, so that the load rolls back, unless every line passed its checks."""
    problems = checks.problems()
    if problems:
        raise refusal(problems, total, paths)


class Refused(InvalidInput):
    """The import's answer when any line is bad: every bad line, in file order."""


def refusal(problems: list[Problem], total: int, paths: list[Path]) -> Refused:
    bad = len({p.location for p in problems})
    message = f"{bad} of {total} lines are bad; nothing was loaded"
    if len(problems) == 1:  # the error shows a lone problem only through its message
        message += f": {problems[0].location}: {problems[0].message}"
    return Refused(message, problems=_in_file_order(problems, paths))


def check_source(hub: Hub, source: str) -> None:
    if not FACILITY_CODE_RE.match(source):
        raise InvalidInput(f"--source '{source}' is not a 5-digit facility code", location="source")
    if source not in hub.catalogue.facilities:
        raise InvalidInput(f"--source {source} is not in the facility registry (see `emr hospitals`)",
                           location="source")


def hub_id(source: str, resource_type: str, source_id: str) -> str:
    """The stable hub id of one source resource: the same file always maps to the same ids."""
    return str(uuid.uuid5(IMPORT_NAMESPACE, f"{source}|{resource_type}|{source_id}"))


# ---------------------------------------------------------------- reading and checking

def read_lines(paths: Iterable[Path]) -> tuple[list[SourceLine], list[Problem], int]:
    """Every resource line of every file, a problem for each line that is not one, and the count."""
    lines: list[SourceLine] = []
    problems: list[Problem] = []
    seen: dict[tuple[str, str], str] = {}
    total = 0
    for path in paths:
        for where, raw in _raw_lines(path):
            total += 1
            resource, problem = _parse(raw)
            if problem is None:
                key = (resource["resourceType"], resource["id"])
                problem = f"{key[0]}/{key[1]} is also on {seen[key]}" if key in seen else None
                seen.setdefault(key, where)
            if problem is not None:
                problems.append(Problem(problem, where, "invalid"))
            else:
                lines.append(SourceLine(where, raw, resource))
    return lines, problems, total


def _raw_lines(path: Path) -> Iterator[tuple[str, bytes]]:
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc.strerror}", location=str(path)) from exc
    with handle:
        for number, raw in enumerate(handle, start=1):
            if raw.strip():
                yield f"{path.name} line {number}", raw


def _parse(raw: bytes) -> tuple[dict, str | None]:
    try:
        resource = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return {}, f"not JSON: {exc}"
    if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
        return {}, "each line must be one JSON resource with a resourceType"
    if not isinstance(resource.get("id"), str) or not ID_RE.match(resource["id"]):
        return {}, "each resource needs an id (the source system's id, 1-64 of A-Z a-z 0-9 - .)"
    return resource, None


def _in_file_order(problems: list[Problem], paths: list[Path]) -> list[Problem]:
    rank = {path.name: index for index, path in reversed(list(enumerate(paths)))}

    def order(problem: Problem) -> tuple[int, int]:
        name, _, number = (problem.location or "").rpartition(" line ")
        return rank.get(name, len(rank)), int(number) if number.isdigit() else 0
    return sorted(problems, key=order)


class LineChecks:
    """Structure and profile problems of every line, located by file and line.

    With several workers and a large file the checks start in a process pool as soon as
    this is entered (before the caller opens a database transaction, so no worker is
    forked holding one) and ``problems()`` waits for them; otherwise ``problems()``
    checks the lines itself.
    """

    def __init__(self, lines: list[SourceLine], *, workers: int) -> None:
        self.lines = lines
        self.parallel = workers > 1 and len(lines) >= PARALLEL_FROM
        self.workers = workers
        self.pool: ProcessPoolExecutor | None = None
        self.pending: list[Future] = []

    def __enter__(self) -> LineChecks:
        if self.parallel:
            _warm_models(self.lines)
            work = [(line.where, line.raw) for line in self.lines]
            context = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else None)
            self.pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=context)
            size = max(200, len(work) // (self.workers * 8))
            self.pending = [self.pool.submit(_check_chunk, part) for part in chunks(work, size)]
        return self

    def problems(self) -> list[Problem]:
        if not self.parallel:
            return [p for line in self.lines for p in line_problems(line.where, line.resource)]
        return [p for future in self.pending for p in future.result()]

    def __exit__(self, *_: object) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)


def line_problems(where: str, resource: dict) -> list[Problem]:
    try:
        validate_resource(resource)
    except EmrError as exc:
        return [Problem(f"{p.location}: {p.message}" if p.location else p.message, where, p.code)
                for p in exc.problems]
    return []


def _check_chunk(chunk: list[tuple[str, bytes]]) -> list[Problem]:
    return [p for where, raw in chunk for p in line_problems(where, orjson.loads(raw))]


def _warm_models(lines: list[SourceLine]) -> None:
    """Load each resource type's model before the pool forks, so no worker loads it again."""
    firsts = {line.resource["resourceType"]: line.resource for line in lines}
    for resource in firsts.values():
        line_problems("", resource)


# ---------------------------------------------------------------- loading

def load(hub: Hub, lines: list[SourceLine], *, source: str, approve: Callable[[], None]) -> ImportResult:
    """Write the lines (new resources in batches, changed ones as new versions) in one
    transaction that commits only if ``approve()`` returns, which waits for the lines'
    checks. A line the checks refuse may break the writing first: the refusal is raised."""
    try:
        return _load(hub, lines, source=source, approve=approve)
    except Refused:
        raise
    except Exception:
        approve()  # the checks' refusal explains a bad line's failure better than the failure
        raise


def _load(hub: Hub, lines: list[SourceLine], *, source: str, approve: Callable[[], None]) -> ImportResult:
    now = hub.clock()
    result = ImportResult(lines=len(lines))
    ids = {(ln.resource["resourceType"], ln.resource["id"]): hub_id(source, *_key(ln.resource)) for ln in lines}
    ordered = sorted(lines, key=lambda ln: LOAD_FIRST.get(ln.resource["resourceType"], 2))
    with write_transaction(hub.engine) as conn:
        mapping = {f"{t}/{sid}": f"{t}/{hid}" for (t, sid), hid in ids.items()}
        mapping.update(_stored_targets(conn, lines, ids, source))
        resources = [_prepared(ln.resource, ids, mapping, source) for ln in ordered]
        stored = _stored_contents(conn, resources)
        writer = BatchWriter(conn, hub.store, now)
        fresh = [r for r in resources if (r["resourceType"], r["id"]) not in stored]
        for part in chunks(fresh, WRITE_BATCH):
            for resource in part:
                stamp(resource, version=1, now=now)
            writer.write(part)
        for resource in resources:
            result.types[resource["resourceType"]] = result.types.get(resource["resourceType"], 0) + 1
            before = stored.get((resource["resourceType"], resource["id"]))
            if before is None:
                result.created += 1
            elif _same(before, resource):
                result.unchanged += 1
            else:
                hub.store.update(conn, resource["resourceType"], resource["id"], resource, now=now)
                result.updated += 1
        approve()
    analyze(hub.engine)
    return result


def analyze(engine: Engine) -> None:
    """Refresh the query planner's statistics after a bulk load.

    Without them SQLite answers a conditional create (``identifier=system|value``) by
    scanning every resource of the type instead of the identifier index: a cost that
    grows with the data. The statistics are kept in the database file.
    """
    tables = ", ".join(f'"{table.name}"' for table in SQLModel.metadata.sorted_tables)
    with engine.connect() as conn, conn.begin():
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql("PRAGMA analysis_limit=1000")
            conn.exec_driver_sql("ANALYZE")
        else:  # only the hub's own tables: a bare ANALYZE would wait on every schema's locks
            conn.exec_driver_sql(f"ANALYZE {tables}")


def _key(resource: dict) -> tuple[str, str]:
    return resource["resourceType"], resource["id"]


def _prepared(resource: dict, ids: dict[tuple[str, str], str], mapping: dict[str, str], source: str) -> dict:
    prepared = rewrite_references(resource, mapping)
    prepared["id"] = ids[_key(resource)]
    prepared["meta"] = {**(resource.get("meta") or {}), "source": f"urn:emr:facility:{source}"}
    return prepared


def _stored_targets(conn: Connection, lines: list[SourceLine], ids: dict, source: str) -> dict[str, str]:
    """References to resources outside the files that an earlier import of ``source`` stored."""
    wanted: dict[str, dict[str, str]] = {}
    for line in lines:
        for ref in _references(line.resource):
            match = _LITERAL.match(ref)
            if match and (match[1], match[2]) not in ids:
                wanted.setdefault(match[1], {})[hub_id(source, match[1], match[2])] = ref
    found: dict[str, str] = {}
    for rtype, by_hub_id in wanted.items():
        for part in chunks(sorted(by_hub_id), IN_CHUNK):
            query = select(R.c.id).where(R.c.resource_type == rtype, R.c.id.in_(part))
            found.update({by_hub_id[hid]: f"{rtype}/{hid}" for hid in conn.execute(query).scalars()})
    return found


def _references(node: object) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "reference" and isinstance(value, str):
                yield value
            elif isinstance(value, dict | list):
                yield from _references(value)
    elif isinstance(node, list):
        for item in node:
            yield from _references(item)


def _stored_contents(conn: Connection, resources: list[dict]) -> dict[tuple[str, str], dict]:
    """The stored content of every resource of the import that the hub already holds ({} if deleted)."""
    by_type: dict[str, list[str]] = {}
    for resource in resources:
        by_type.setdefault(resource["resourceType"], []).append(resource["id"])
    stored: dict[tuple[str, str], dict] = {}
    for rtype, rids in by_type.items():
        for part in chunks(rids, IN_CHUNK):
            query = select(R.c.id, R.c.deleted, R.c.content).where(R.c.resource_type == rtype, R.c.id.in_(part))
            stored.update({(rtype, rid): {} if deleted else orjson.loads(content)
                           for rid, deleted, content in conn.execute(query)})
    return stored


def _same(stored: dict, new: dict) -> bool:
    """Equal apart from the version and time the hub stamps."""
    def bare(resource: dict) -> dict:
        meta = {k: v for k, v in (resource.get("meta") or {}).items() if k not in ("versionId", "lastUpdated")}
        return {**resource, "meta": meta}
    return bare(stored) == bare(new)
