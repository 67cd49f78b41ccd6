"""Bulk backfill: loading a facility's history from FHIR bulk NDJSON until it is searchable.

``emr import FILE.ndjson … --source 27001`` reads one resource per line, checks every
line against the structure and the project's profiles, and loads nothing unless every
line passes: the error lists every bad line with its file and line number.

The files are streamed, never held: a first pass reads each line's type and id (to
give every resource its hub id and refuse duplicates) and cuts the files into
segments. Each segment is then checked and its good lines prepared — ids and
references mapped, the resource stamped, serialised, packed and its index entries
extracted: everything that needs no database — in a process pool for a large file,
a few segments ahead of the load. This process writes each segment, once all its
lines have passed, into one open transaction, a batch at a time. After a refused line
nothing more is written and the rest is only checked, so the refusal names every bad
line; the transaction commits only once every line has passed, and rolls back
otherwise. Memory grows with the number of resources (about a hundred bytes each), not
with the size of the files.

Each resource gets a stable hub id, ``uuid5(source | type | source id)``, and every
reference to another resource of the import (``Patient/p1``) — or to one an earlier
import of the same source stored — is rewritten to that id. Importing the same file
again therefore stores nothing new; a resource whose content changed becomes a new
version through the ordinary update path.

New resources are written through ``batchwrite`` (multi-row statements, hooks
batched), Patients and Organizations first so that the results written after them
find their national ID and facility.
"""

from __future__ import annotations

import gc
import multiprocessing
import re
import uuid
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from itertools import islice
from pathlib import Path

import orjson
from sqlalchemy import select
from sqlalchemy.engine import Connection

from emr.errors import EmrError, InvalidInput, Problem
from emr.fhir import validate_resource
from emr.hub.batchwrite import IN_CHUNK, BatchWriter, Ready, chunks, ready
from emr.hub.bundles import rewrite_references
from emr.hub.db import write_transaction
from emr.hub.http import Hub
from emr.hub.plannerstats import PlannerStatistics, analyze
from emr.hub.store import ID_RE, R, stamp

IMPORT_NAMESPACE = uuid.UUID("8c701f47-1ab9-5e29-a9d4-aa6da7914687")  # uuid5(URL, "urn:emr:bulk-import")
PARALLEL_FROM = 2000  # lines; below this a process pool costs more than it saves
SEGMENT = 1000  # lines per checking task
WRITE_BATCH = 2000  # resources per multi-row insert
LOAD_FIRST = {"Organization": 0, "Practitioner": 0, "Patient": 1}  # then everything else, in file order
FACILITY_CODE_RE = re.compile(r"^\d{5}$")
_LITERAL = re.compile(r"^([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})$")
_LINE_BITS = 40  # a line's place is packed into one int: file index above, line number below


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
    found = scan(list(paths), source)
    preparing = Preparing(source, found.places, hub.clock())
    with Preparation(found, preparing, workers=workers, check_only=bool(found.problems)) as preparation:
        if found.problems:
            raise refusal(found.problems + [p for work in preparation.works() for p in work.problems], found)
        return load(hub, found, preparation)


class Refused(InvalidInput):
    """The import's answer when any line is bad: every bad line, in file order."""


def refusal(problems: list[Problem], found: Scan) -> Refused:
    bad = len({p.location for p in problems})
    message = f"{bad} of {found.total} lines are bad; nothing was loaded"
    if len(problems) == 1:  # the error shows a lone problem only through its message
        message += f": {problems[0].location}: {problems[0].message}"
    return Refused(message, problems=_in_file_order(problems, found.paths))


def check_source(hub: Hub, source: str) -> None:
    if not FACILITY_CODE_RE.match(source):
        raise InvalidInput(f"--source '{source}' is not a 5-digit facility code", location="source")
    if source not in hub.catalogue.facilities:
        raise InvalidInput(f"--source {source} is not in the facility registry (see `emr hospitals`)",
                           location="source")


def hub_id(source: str, resource_type: str, source_id: str) -> str:
    """The stable hub id of one source resource: the same file always maps to the same ids."""
    return str(uuid.uuid5(IMPORT_NAMESPACE, f"{source}|{resource_type}|{source_id}"))


# ---------------------------------------------------------------- the first pass

@dataclass
class Segment:
    """Consecutive lines of one file (blank ones included), checked as one task."""

    path: Path
    offset: int  # byte offset of the first line
    first: int  # its line number
    count: int = 0
    skip: set[int] = field(default_factory=set)  # line numbers the first pass already refused


@dataclass
class Scan:
    """What the first pass learns: every resource's key and place, the problems it can
    see without a model (not JSON, no id, a duplicate), and the segments to check."""

    paths: list[Path]
    source: str
    total: int = 0  # non-blank lines
    good: int = 0
    problems: list[Problem] = field(default_factory=list)
    places: dict[str, int] = field(default_factory=dict)  # "Type/source id" -> packed place of its line
    ranks: set[int] = field(default_factory=set)
    in_load_order: bool = True  # no line loads before a line above it (Patients before results…)
    samples: dict[str, dict] = field(default_factory=dict)  # the first resource of each type
    segments: list[Segment] = field(default_factory=list)
    stamps: list[tuple[int, int]] = field(default_factory=list)  # each file's size and mtime at the scan

    def where(self, place: int) -> str:
        return f"{self.paths[place >> _LINE_BITS].name} line {place & ((1 << _LINE_BITS) - 1)}"

    def unchanged_on_disk(self) -> None:
        """Refuse the import if a file changed while it ran: its checks and load may disagree."""
        for path, stamp_then in zip(self.paths, self.stamps):
            if _stamp_of(path) != stamp_then:
                raise Refused(f"{path} changed while it was being imported; nothing was loaded",
                              location=str(path))


def scan(paths: list[Path], source: str) -> Scan:
    """Read every line once, keeping only its hub id and place."""
    found = Scan(paths=paths, source=source)
    for index, path in enumerate(paths):
        found.stamps.append(_stamp_of(path))
        segment: Segment | None = None
        for number, offset, raw in _lines_of(path):
            if segment is None or number - segment.first >= SEGMENT:
                segment = Segment(path, offset, number)
                found.segments.append(segment)
            segment.count = number - segment.first + 1
            if raw.strip():
                _scan_line(found, segment, (index << _LINE_BITS) | number, raw)
    return found


def _scan_line(found: Scan, segment: Segment, place: int, raw: bytes) -> None:
    found.total += 1
    resource, problem = _parse(raw)
    if problem is None:
        key = f"{resource['resourceType']}/{resource['id']}"
        if key in found.places:
            problem = f"{resource['resourceType']}/{resource['id']} is also on {found.where(found.places[key])}"
        else:
            found.places[key] = place
    if problem is not None:
        found.problems.append(Problem(problem, found.where(place), "invalid"))
        segment.skip.add(place & ((1 << _LINE_BITS) - 1))
        return
    found.good += 1
    rank = _rank(resource)
    found.in_load_order = found.in_load_order and rank >= max(found.ranks, default=rank)
    found.ranks.add(rank)
    found.samples.setdefault(resource["resourceType"], resource)


def _stamp_of(path: Path) -> tuple[int, int]:
    try:
        status = path.stat()
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc.strerror}", location=str(path)) from exc
    return status.st_size, status.st_mtime_ns


def _lines_of(path: Path, offset: int = 0, first: int = 1) -> Iterator[tuple[int, int, bytes]]:
    """(line number, byte offset, bytes) of each line from ``offset``, blank lines included."""
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc.strerror}", location=str(path)) from exc
    with handle:
        handle.seek(offset)
        for number, raw in enumerate(handle, start=first):
            yield number, offset, raw
            offset += len(raw)


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


def _rank(resource: dict) -> int:
    return LOAD_FIRST.get(resource["resourceType"], 2)


def _in_file_order(problems: list[Problem], paths: list[Path]) -> list[Problem]:
    rank = {path.name: index for index, path in reversed(list(enumerate(paths)))}

    def order(problem: Problem) -> tuple[int, int]:
        name, _, number = (problem.location or "").rpartition(" line ")
        return rank.get(name, len(rank)), int(number) if number.isdigit() else 0
    return sorted(problems, key=order)


# ---------------------------------------------------------------- checking and preparing

@dataclass(frozen=True)
class Preparing:
    """What preparing any line needs to know of the whole import."""

    source: str
    places: dict[str, int]  # Scan.places: every "Type/source id" of the import
    now: datetime  # the import's time, stamped on every new resource


@dataclass
class Work:
    """One segment's lines of one load group, checked: their problems, and each good line
    made ready to write (``batchwrite.Ready``), or left as its bytes when it refers to a
    resource outside the import, which only the database can map."""

    problems: list[Problem] = field(default_factory=list)
    lines: list[Ready | bytes] = field(default_factory=list)


class Preparation:
    """Every line checked and, if good, prepared, a segment at a time in load order.

    With several workers and a large file the segments go to a process pool, a few ahead
    of the load, so the pool's memory stays flat. The pool is forked as this is entered,
    before the caller opens a database transaction, so no worker holds one; each worker
    reads its segments from the file itself and is given the import's ``Preparing`` once.
    Otherwise each segment is prepared here when the load asks for it.
    """

    def __init__(self, found: Scan, preparing: Preparing, *, workers: int, check_only: bool = False) -> None:
        self.found = found
        self.preparing = preparing
        self.check_only = check_only  # once a line is refused nothing is written: the rest is only checked
        self.parallel = workers > 1 and found.total >= PARALLEL_FROM
        self.workers = workers
        ranks = [None] if found.in_load_order else sorted(found.ranks)
        self.tasks = deque((segment, rank) for rank in ranks for segment in found.segments)
        self.pool: ProcessPoolExecutor | None = None
        self.pending: deque[Future] = deque()

    def __enter__(self) -> Preparation:
        if self.parallel:
            for resource in self.found.samples.values():  # load each type's model before the fork
                line_problems("", resource)
            context = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else None)
            # Everything alive now (the scan's places, the models) is left out of garbage
            # collections until the import ends: the workers' collections then leave the pages
            # they share with this process alone, and the load's stop walking it.
            gc.freeze()
            self.pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=context,
                                            initializer=_adopt, initargs=(self.preparing,))
            self._submit(AHEAD * self.workers)  # a fork pool starts every worker at the first task
        return self

    def works(self) -> Iterator[Work]:
        """Each segment's work, in load order."""
        while self.tasks or self.pending:
            if self.pool is None:
                segment, rank = self.tasks.popleft()
                yield prepare_segment(segment, rank, self.preparing, self.check_only)
            else:
                self._submit(AHEAD * self.workers - len(self.pending) + 1)
                yield self.pending.popleft().result()

    def _submit(self, count: int) -> None:
        for _ in range(min(count, len(self.tasks))):
            segment, rank = self.tasks.popleft()
            self.pending.append(self.pool.submit(_prepare_in_worker, segment, rank, self.check_only))

    def __exit__(self, *_: object) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            gc.unfreeze()


AHEAD = 2  # segments in flight per worker


_PREPARING: Preparing | None = None  # a pool worker's copy of its import's Preparing (``_adopt``)


def _adopt(preparing: Preparing) -> None:
    global _PREPARING
    _PREPARING = preparing


def _prepare_in_worker(segment: Segment, rank: int | None, check_only: bool) -> Work:
    return prepare_segment(segment, rank, _PREPARING, check_only)


def prepare_segment(segment: Segment, rank: int | None, preparing: Preparing, check_only: bool = False) -> Work:
    """Check the segment's lines of load group ``rank`` (all when None), read from its file;
    unless ``check_only`` or a line is refused, prepare the good ones."""
    work = Work()
    end = segment.first + segment.count
    for number, _, raw in _lines_of(segment.path, segment.offset, segment.first):
        if number >= end:
            break
        if not raw.strip() or number in segment.skip:
            continue
        resource = orjson.loads(raw)
        if rank is not None and _rank(resource) != rank:
            continue
        work.problems.extend(line_problems(f"{segment.path.name} line {number}", resource))
        if not (work.problems or check_only):
            work.lines.append(_ready_within(resource, preparing) or raw)
    if work.problems:
        work.lines = []
    return work


def _ready_within(resource: dict, preparing: Preparing) -> Ready | None:
    """The resource made ready to write, if every literal reference it makes is to a resource
    of the import itself; None if one may be to a resource the hub already holds."""
    mapping: dict[str, str] = {}
    for ref in _references(resource):
        match = _LITERAL.match(ref)
        if match is None:
            continue
        if ref not in preparing.places:
            return None
        mapping[ref] = f"{match[1]}/{hub_id(preparing.source, match[1], match[2])}"
    return _made_ready(resource, mapping, preparing.source, preparing.now)


def _made_ready(resource: dict, mapping: dict[str, str], source: str, now: datetime) -> Ready:
    """The source resource under its hub id, references mapped, stamped as a new resource, ready to write."""
    prepared = _prepared(resource, mapping, source)
    stamp(prepared, version=1, now=now)
    return ready(prepared)


def line_problems(where: str, resource: dict) -> list[Problem]:
    try:
        validate_resource(resource)
    except EmrError as exc:
        return [Problem(f"{p.location}: {p.message}" if p.location else p.message, where, p.code)
                for p in exc.problems]
    return []


# ---------------------------------------------------------------- loading

def load(hub: Hub, found: Scan, preparation: Preparation) -> ImportResult:
    """Write each segment's prepared lines (new resources in batches, changed ones as new
    versions) into one transaction, which commits only if no line was refused and no file
    changed meanwhile. A segment is written only once all its lines have passed; after a
    refused line the rest are only checked, so that the refusal names every bad line."""
    result = ImportResult(lines=found.good)
    problems: list[Problem] = []
    try:
        with write_transaction(hub.engine) as conn:
            batches = Batches(hub, BatchWriter(conn, hub.store, preparation.preparing.now),
                              References(conn, found), result)
            planner = PlannerStatistics(conn)
            lines = _good_lines(preparation, problems)
            for batch in iter(lambda: list(islice(lines, WRITE_BATCH)), []):
                batches.load(batch)
                planner.keep_up(result.created + result.updated)
            if problems:
                raise refusal(problems, found)
            found.unchanged_on_disk()
    except Refused:
        raise
    except Exception as exc:  # a line that passed its checks broke the writing: is a later line bad?
        preparation.check_only = True
        problems += [p for work in preparation.works() for p in work.problems]
        if problems:
            raise refusal(problems, found) from exc
        raise
    analyze(hub.engine)
    return result


def _good_lines(preparation: Preparation, problems: list[Problem]) -> Iterator[Ready | bytes]:
    """Every prepared line while no line is refused; the refused lines' problems go to ``problems``."""
    for work in preparation.works():
        problems.extend(work.problems)
        if problems:
            preparation.check_only = True
            continue
        yield from work.lines


@dataclass
class Batches:
    """Writes the import a batch at a time: new resources through ``batchwrite``, changed
    ones through the ordinary update, unchanged ones not at all."""

    hub: Hub
    writer: BatchWriter
    references: References
    result: ImportResult

    def load(self, batch: list[Ready | bytes]) -> None:
        conn, now = self.writer.conn, self.writer.now
        items = self._all_ready(batch)
        stored = _stored_contents(conn, [item.resource for item in items])
        fresh = [item for item in items if _key(item.resource) not in stored]
        self.writer.write(fresh)
        self.result.created += len(fresh)
        for item in items:
            resource = item.resource
            self.result.types[resource["resourceType"]] = self.result.types.get(resource["resourceType"], 0) + 1
            before = stored.get(_key(resource))
            if before is None:
                continue
            if _same(before, resource):
                self.result.unchanged += 1
            else:
                self.hub.store.update(conn, resource["resourceType"], resource["id"], resource, now=now)
                self.result.updated += 1

    def _all_ready(self, batch: list[Ready | bytes]) -> list[Ready]:
        """The batch's lines all made ready: those left as bytes have their references mapped here."""
        parsed = {i: orjson.loads(line) for i, line in enumerate(batch) if isinstance(line, bytes)}
        mapping = self.references.mapping(list(parsed.values())) if parsed else {}
        source, now = self.references.found.source, self.writer.now
        return [_made_ready(parsed[i], mapping, source, now) if i in parsed else line
                for i, line in enumerate(batch)]


class References:
    """Where each literal reference of the import points in the hub: to a resource of the
    import itself, or to one an earlier import of the same source stored."""

    def __init__(self, conn: Connection, found: Scan) -> None:
        self.conn = conn
        self.found = found
        self.stored: dict[str, str | None] = {}  # outside references already looked up

    def mapping(self, batch: list[dict]) -> dict[str, str]:
        """Source reference -> hub reference, for every reference of ``batch`` that has one."""
        mapping: dict[str, str] = {}
        outside: dict[str, dict[str, str]] = {}
        for ref in {ref for resource in batch for ref in _references(resource)}:
            match = _LITERAL.match(ref)
            if not match:
                continue
            if ref in self.found.places:
                mapping[ref] = f"{match[1]}/{hub_id(self.found.source, match[1], match[2])}"
            elif ref in self.stored:
                if self.stored[ref] is not None:
                    mapping[ref] = self.stored[ref]
            else:
                outside.setdefault(match[1], {})[hub_id(self.found.source, match[1], match[2])] = ref
        for ref in self._look_up(outside):
            mapping[ref] = self.stored[ref]
        return mapping

    def _look_up(self, outside: dict[str, dict[str, str]]) -> list[str]:
        """Look ``outside`` references up in the hub, remembering the answers; those found."""
        found: list[str] = []
        for rtype, by_hub_id in outside.items():
            self.stored.update(dict.fromkeys(by_hub_id.values()))
            for part in chunks(sorted(by_hub_id), IN_CHUNK):
                for hid in self.conn.execute(select(R.c.id).where(R.c.resource_type == rtype, R.c.id.in_(part))).scalars():
                    self.stored[by_hub_id[hid]] = f"{rtype}/{hid}"
                    found.append(by_hub_id[hid])
        return found


def _key(resource: dict) -> tuple[str, str]:
    return resource["resourceType"], resource["id"]


def _prepared(resource: dict, mapping: dict[str, str], source: str) -> dict:
    prepared = rewrite_references(resource, mapping)
    prepared["id"] = hub_id(source, *_key(resource))
    prepared["meta"] = {**(resource.get("meta") or {}), "source": f"urn:emr:facility:{source}"}
    return prepared


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
    """The stored content of every resource of the batch that the hub already holds ({} if deleted)."""
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
