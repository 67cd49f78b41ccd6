"""FHIR search: parse the query, turn each parameter into SQL over the index tables, page.

Each filter becomes ``resource.pk IN (subquery on one index table)``; several values
of one parameter (``code=a,b``) are OR-ed, several parameters AND-ed. Chained
parameters (``patient.identifier=…``) nest the target type's filter inside a
reference lookup, which is how one query finds every facility's results for a
national ID.

Paging is keyset paging over (sort key, pk) within a snapshot: the first page fixes
the highest pk it may see, so resources created while a client walks the pages do
not shift the pages it has not read yet, and every match appears exactly once.
"""

from __future__ import annotations

import base64
import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

import orjson
from sqlalchemy import Select, and_, bindparam, func, literal, not_, or_, select
from sqlalchemy.engine import Connection
from sqlalchemy.sql import ColumnElement

from emr.errors import InvalidInput, UnsupportedSearch
from emr.fhir.dates import MAX_MS, Interval, parse_interval, split_prefix
from emr.hub import access, audit
from emr.hub.db import DateIndex, ReferenceIndex, ResourceRow, StringIndex, TokenIndex
from emr.hub.limits import Limits, check_search, check_text
from emr.hub.searchparams import SearchParam, normalise, params_for

R = ResourceRow.__table__
TK = TokenIndex.__table__
ST = StringIndex.__table__
DT = DateIndex.__table__
RF = ReferenceIndex.__table__

# Accepted and ignored: _total (total is always counted), _totalMethod (sent by fhirpy), _format, _pretty.
CONTROL = {"_count", "_sort", "_include", "_total", "_totalMethod", "_format", "_cursor", "_summary", "_pretty"}
MODIFIERS = {"token": {"", "not", "identifier"}, "string": {"", "exact", "contains"},
             "date": {""}, "reference": {"", "identifier"}}
SORTABLE = {"date", "_lastUpdated", "_id", "birthdate", "authored", "identified"}


@dataclass(frozen=True)
class Filter:
    name: str
    modifier: str
    chain: str | None
    values: tuple[str, ...]


@dataclass
class Query:
    resource_type: str
    filters: list[Filter] = field(default_factory=list)
    count: int = 50
    sort: list[tuple[str, bool]] = field(default_factory=list)  # (param, descending)
    includes: list[tuple[str, str]] = field(default_factory=list)  # (source type, param)
    cursor: dict | None = None
    summary_count: bool = False
    echo: list[tuple[str, str]] = field(default_factory=list)  # what to repeat in links


@dataclass(frozen=True)
class Page:
    rows: list[tuple[str, str, str]]  # (type, id, content)
    total: int
    next_cursor: str | None
    included: list[tuple[str, str, str]]


# ---------------------------------------------------------------- parsing

def parse_criteria(criteria: str) -> list[tuple[str, str]]:
    pairs = parse_qsl(criteria.lstrip("?"), keep_blank_values=True)
    if not pairs:
        raise InvalidInput(f"conditional criteria '{criteria}' are empty", location="If-None-Exist")
    check_pairs(pairs, None)  # before anything (the conditional claim) stores the criteria
    return pairs


def criteria_key(pairs: list[tuple[str, str]]) -> str:
    return "&".join(f"{k}={v}" for k, v in sorted(pairs))


def parse_query(resource_type: str, pairs: list[tuple[str, str]], *, default_count: int,
                max_count: int, lenient: bool = False, limits: Limits | None = None) -> Query:
    check_pairs(pairs, limits)
    query = Query(resource_type, count=default_count)
    known = params_for(resource_type)
    for name, value in pairs:
        if name in CONTROL:
            _control(query, name, value, max_count=max_count)
            continue
        parsed = _filter(resource_type, known, name, value, lenient=lenient)
        if parsed is not None:
            query.filters.append(parsed)
            query.echo.append((name, value))
    return query


def check_pairs(pairs: list[tuple[str, str]], limits: Limits | None) -> None:
    """Control characters never reach the database; with ``limits``, neither does an oversized search."""
    if limits is not None:
        check_search(pairs, limits)
    for name, value in pairs:
        check_text(name, "search")
        check_text(value, name[:40])


def _control(query: Query, name: str, value: str, *, max_count: int) -> None:
    if name == "_count":
        if not (value.isascii() and value.isdigit()):
            raise InvalidInput(f"_count must be a whole number, not '{value[:40]}'", location="_count")
        query.count = min(int(value), max_count) if len(value) <= 9 else max_count
        query.echo.append((name, str(query.count)))
    elif name == "_sort":
        query.sort = [_sort_key(query.resource_type, part) for part in value.split(",") if part]
        query.echo.append((name, value))
    elif name == "_include":
        query.includes.append(_include(query.resource_type, value))
        query.echo.append((name, value))
    elif name == "_cursor":
        query.cursor = _decode_cursor(value)
    elif name == "_summary":
        if value != "count":
            raise UnsupportedSearch(f"_summary={value} is not supported (only _summary=count)", location="_summary")
        query.summary_count = True


def _sort_key(resource_type: str, part: str) -> tuple[str, bool]:
    name = part.removeprefix("-")
    if name not in SORTABLE or (name not in params_for(resource_type)):
        raise UnsupportedSearch(f"cannot sort {resource_type} by '{name}'", location="_sort")
    return name, part.startswith("-")


def _include(resource_type: str, value: str) -> tuple[str, str]:
    source, _, param = value.partition(":")
    spec = params_for(source).get(param) if source == resource_type else None
    if spec is None or spec.type != "reference":
        raise UnsupportedSearch(f"_include={value} is not supported for {resource_type}", location="_include")
    return source, spec.stored


def _filter(resource_type: str, known: Mapping[str, SearchParam], name: str, value: str, *,
            lenient: bool) -> Filter | None:
    head, _, chain = name.partition(".")
    base, _, modifier = head.partition(":")
    spec = known.get(base)
    problem = None
    if spec is None:
        problem = f"{resource_type} has no search parameter '{base}'"
    elif chain and spec.type != "reference":
        problem = f"'{base}' is not a reference, so it cannot be chained"
    elif modifier and modifier not in MODIFIERS[spec.type] and not (spec.type == "reference" and modifier in spec.targets):
        problem = f"modifier ':{modifier}' is not supported on '{base}'"
    if problem:
        if lenient:
            return None
        raise UnsupportedSearch(problem, location=name)
    values = tuple(_split_values(value))
    if "" in values:  # "a,,b" or a lone "\\": an empty prefix would match everything
        raise InvalidInput(f"search parameter '{name[:40]}' has an empty value", location=name[:40])
    return Filter(base, modifier, chain or None, values)


def _split_values(value: str) -> list[str]:
    """Split on commas that are not escaped with a backslash."""
    parts, current, escaped = [], "", False
    for ch in value:
        if escaped:
            current += ch
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == ",":
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    return parts


# ---------------------------------------------------------------- SQL

def _where(table, resource_type: str, filters: list[Filter]) -> ColumnElement[bool]:
    conditions = [table.c.resource_type == resource_type, table.c.deleted.is_(False)]
    for f in filters:
        conditions.append(_condition(table, resource_type, f))
    return and_(*conditions)


def _condition(table, resource_type: str, f: Filter) -> ColumnElement[bool]:
    spec = params_for(resource_type)[f.name]
    if f.chain:
        return _chained(table, resource_type, spec, f)
    if f.name == "_id":
        return table.c.id.in_(f.values)
    build = {"token": _token, "string": _string, "date": _date, "reference": _reference}[spec.type]
    return build(table, resource_type, spec, f)


def _token(table, resource_type: str, spec: SearchParam, f: Filter) -> ColumnElement[bool]:
    param = spec.stored + (":identifier" if f.modifier == "identifier" else "")
    options = [_token_match(value) for value in f.values]
    sub = select(TK.c.resource_pk).where(TK.c.resource_type == resource_type, TK.c.param == param, or_(*options))
    return not_(table.c.pk.in_(sub)) if f.modifier == "not" else table.c.pk.in_(sub)


def _token_match(value: str) -> ColumnElement[bool]:
    if "|" not in value:
        return TK.c.code == value
    system, _, code = value.partition("|")
    if not system and not code:
        raise InvalidInput("a token needs a system, a code or both, not a lone '|'")
    if code == "":
        return TK.c.system == system
    return and_(TK.c.system == system, TK.c.code == code)


def _string(table, resource_type: str, spec: SearchParam, f: Filter) -> ColumnElement[bool]:
    options = []
    for value in f.values:
        if f.modifier == "exact":
            options.append(ST.c.raw == value)
        elif f.modifier == "contains":
            options.append(ST.c.value.like(f"%{_escape_like(normalise(value))}%", escape="\\"))
        else:
            options.append(ST.c.value.like(f"{_escape_like(normalise(value))}%", escape="\\"))
    sub = select(ST.c.resource_pk).where(ST.c.resource_type == resource_type, ST.c.param == spec.stored, or_(*options))
    return table.c.pk.in_(sub)


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _date(table, resource_type: str, spec: SearchParam, f: Filter) -> ColumnElement[bool]:
    options = []
    for value in f.values:
        prefix, text = split_prefix(value)
        options.append(date_rule(prefix, parse_interval(text)))
    sub = select(DT.c.resource_pk).where(DT.c.resource_type == resource_type, DT.c.param == spec.stored, or_(*options))
    return table.c.pk.in_(sub)


def date_rule(prefix: str, s: Interval) -> ColumnElement[bool]:
    """The SQL twin of ``emr.fhir.dates.matches`` (a test keeps the two in step)."""
    contained = and_(DT.c.low >= s.low, DT.c.high <= s.high)
    return {
        "eq": contained,
        "ne": not_(contained),
        "gt": DT.c.high > s.high,
        "lt": DT.c.low < s.low,
        "ge": or_(DT.c.high > s.high, contained),
        "le": or_(DT.c.low < s.low, contained),
        "sa": DT.c.low >= s.high,
        "eb": DT.c.high <= s.low,
    }[prefix]


def _reference(table, resource_type: str, spec: SearchParam, f: Filter) -> ColumnElement[bool]:
    if f.modifier == "identifier":
        return _token(table, resource_type, spec, f)
    options = [_reference_match(spec, f.modifier, value) for value in f.values]
    sub = select(RF.c.resource_pk).where(RF.c.resource_type == resource_type, RF.c.param == spec.stored, or_(*options))
    return table.c.pk.in_(sub)


def _reference_match(spec: SearchParam, modifier: str, value: str) -> ColumnElement[bool]:
    parts = value.rstrip("/").split("/")
    target_id = parts[-1]
    target_type = parts[-2] if len(parts) >= 2 else (modifier or None)
    if target_type is None and len(spec.targets) == 1:
        target_type = spec.targets[0]
    condition = RF.c.target_id == target_id
    return and_(condition, RF.c.target_type == target_type) if target_type else condition


def _chained(table, resource_type: str, spec: SearchParam, f: Filter) -> ColumnElement[bool]:
    target_type = f.modifier or (spec.targets[0] if len(spec.targets) == 1 else None)
    if target_type is None:
        raise UnsupportedSearch(f"say which type '{spec.name}' points to, e.g. {spec.name}:{spec.targets[0]}.…",
                                location=f.name)
    child_name, _, child_mod = f.chain.partition(":")
    if child_name not in params_for(target_type):
        raise UnsupportedSearch(f"{target_type} has no search parameter '{child_name}'", location=f"{f.name}.{f.chain}")
    inner = R.alias("chained")
    inner_filter = Filter(child_name, child_mod, None, f.values)
    targets = select(inner.c.id).where(_where(inner, target_type, [inner_filter]))
    sub = select(RF.c.resource_pk).where(
        RF.c.resource_type == resource_type, RF.c.param == spec.stored,
        RF.c.target_type == target_type, RF.c.target_id.in_(targets))
    return table.c.pk.in_(sub)


# ---------------------------------------------------------------- running

def find_pks(conn: Connection, resource_type: str, pairs: list[tuple[str, str]], *, limit: int,
             limits: Limits | None = None) -> list[int]:
    """The pks matching conditional criteria (strict parsing, no paging)."""
    check_pairs(pairs, limits)
    identifier = one_identifier(resource_type, pairs)
    if identifier is not None:
        return list(conn.execute(_identifier_lookup(), {"rtype": resource_type, "system": identifier[0],
                                                         "code": identifier[1], "limit": limit}).scalars())
    query = parse_query(resource_type, pairs, default_count=limit, max_count=limit, limits=limits)
    stmt = select(R.c.pk).where(_where(R, resource_type, query.filters)).order_by(R.c.pk).limit(limit)
    return list(conn.execute(stmt).scalars())


def one_identifier(resource_type: str, pairs: list[tuple[str, str]]) -> tuple[str, str] | None:
    """(system, value) when the criteria are exactly ``identifier=system|value`` — what nearly
    every conditional create and update sends — else None (the general path decides)."""
    if len(pairs) != 1 or pairs[0][0] != "identifier" or "identifier" not in params_for(resource_type):
        return None
    system, bar, code = pairs[0][1].partition("|")
    if not (bar and system and code) or any(c in pairs[0][1] for c in ",\\$"):
        return None
    return system, code


def pks_by_identifier(conn: Connection, wanted: Iterable[tuple[str, str, str]]) -> dict[tuple[str, str, str], list[int]]:
    """For each (type, system, value): the pks of the live resources carrying that identifier,
    found with one query per type for all of them (a Bundle's conditional creates)."""
    found: dict[tuple[str, str, str], list[int]] = {key: [] for key in wanted}
    by_type: dict[str, set[str]] = {}
    for rtype, _, code in found:
        by_type.setdefault(rtype, set()).add(code)
    for rtype, codes in sorted(by_type.items()):
        for system, code, pk in conn.execute(_identifiers_lookup(), {"rtype": rtype, "codes": sorted(codes)}):
            if (rtype, system, code) in found:
                found[(rtype, system, code)].append(pk)
    return found


@functools.cache
def _identifiers_lookup() -> Select:
    """``pks_by_identifier``'s statement, built once: a Bundle asks it for each type it names."""
    return (select(TK.c.system, TK.c.code, R.c.pk).distinct().join(R, TK.c.resource_pk == R.c.pk)
            .where(TK.c.resource_type == bindparam("rtype"), TK.c.param == "identifier",
                   TK.c.code.in_(bindparam("codes", expanding=True)), R.c.deleted.is_(False)).order_by(R.c.pk))


@functools.cache
def _identifier_lookup() -> Select:
    """One statement, built and compiled once: the resources carrying one identifier.

    It starts from the identifier index whatever the planner's statistics say, so a
    conditional create costs the same with a thousand resources or ten million.
    """
    return (select(R.c.pk).distinct().join(TK, TK.c.resource_pk == R.c.pk)
            .where(TK.c.resource_type == bindparam("rtype"), TK.c.param == "identifier",
                   TK.c.system == bindparam("system"), TK.c.code == bindparam("code"), R.c.deleted.is_(False))
            .order_by(R.c.pk).limit(bindparam("limit")))


def run(conn: Connection, query: Query) -> Page:
    """One page of matches the caller may see; ``total`` counts only those (the access rule is
    part of the SQL condition, so paging and counting stay exact)."""
    access.require_scope(query.resource_type, "s")
    _check_cursor_fits(query)
    where = access.restrict(_where(R, query.resource_type, query.filters))
    snapshot = query.cursor["s"] if query.cursor else conn.execute(select(func.max(R.c.pk))).scalar() or 0
    where = and_(where, R.c.pk <= snapshot)
    total = conn.execute(select(func.count()).select_from(R).where(where)).scalar_one()
    if query.summary_count or query.count == 0:
        return Page([], total, None, [])
    key, descending = _sort_expression(query)
    stmt = select(R.c.pk, R.c.resource_type, R.c.id, R.c.content, key.label("k")).where(where)
    if query.cursor:
        stmt = stmt.where(_after(key, descending, query.cursor))
    order = [key.desc(), R.c.pk.desc()] if descending else [key.asc(), R.c.pk.asc()]
    rows = conn.execute(stmt.order_by(*order).limit(query.count + 1)).all()
    more = len(rows) > query.count
    rows = rows[: query.count]
    cursor = _encode_cursor({"k": rows[-1].k, "p": rows[-1].pk, "s": snapshot}) if more else None
    audit.touched_rows(conn, [(r.pk, f"{r.resource_type}/{r.id}") for r in rows])
    included = _included(conn, query, [r.pk for r in rows])
    return Page([(r.resource_type, r.id, r.content) for r in rows], total, cursor, included)


def _sort_expression(query: Query):
    if not query.sort:
        return R.c.pk, False
    name, descending = query.sort[0]  # one sort key, then pk; more keys are accepted, not used
    if name == "_lastUpdated":
        return R.c.last_updated, descending
    if name == "_id":
        return R.c.id, descending
    stored = params_for(query.resource_type)[name].stored
    low = select(func.min(DT.c.low)).where(DT.c.resource_pk == R.c.pk, DT.c.param == stored).scalar_subquery()
    return func.coalesce(low, literal(MAX_MS)), descending


def _after(key, descending: bool, cursor: dict) -> ColumnElement[bool]:
    k, p = cursor["k"], cursor["p"]
    if descending:
        return or_(key < k, and_(key == k, R.c.pk < p))
    return or_(key > k, and_(key == k, R.c.pk > p))


def _included(conn: Connection, query: Query, pks: list[int]) -> list[tuple[str, str, str]]:
    if not query.includes or not pks:
        return []
    params = [param for _, param in query.includes]
    targets = select(RF.c.target_type, RF.c.target_id).where(RF.c.resource_pk.in_(pks), RF.c.param.in_(params))
    found = {(t, i) for t, i in conn.execute(targets).all()}
    out = []
    for target_type, target_id in sorted(found):
        row = conn.execute(select(R.c.pk, R.c.content).where(access.restrict(and_(
            R.c.resource_type == target_type, R.c.id == target_id, R.c.deleted.is_(False))))).first()
        if row:
            out.append((target_type, target_id, row.content))
            audit.touched_rows(conn, [(row.pk, f"{target_type}/{target_id}")])
    return out


def _encode_cursor(data: dict) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(data)).decode().rstrip("=")


def _decode_cursor(text: str) -> dict:
    try:
        data = orjson.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        if not isinstance(data, dict) or not {"k", "p", "s"} <= data.keys():
            raise ValueError("incomplete cursor")
        if not (_is_row_number(data["p"]) and _is_row_number(data["s"])
                and (_is_row_number(data["k"]) or (isinstance(data["k"], str) and len(data["k"]) <= 255))):
            raise ValueError("a cursor value of the wrong kind")
        return data
    except Exception as exc:  # noqa: BLE001 - any garbage in a cursor is the client's error
        raise InvalidInput("the paging cursor is not one this hub issued", location="_cursor") from exc


def _is_row_number(value: object) -> bool:
    """An integer a BIGINT column can hold (sort keys are pks or epoch milliseconds)."""
    return isinstance(value, int) and not isinstance(value, bool) and -(2 ** 63) <= value < 2 ** 63


def _check_cursor_fits(query: Query) -> None:
    """A cursor's sort key must be of the kind the query sorts by (text for _id and _lastUpdated)."""
    if query.cursor is None:
        return
    textual = bool(query.sort) and query.sort[0][0] in ("_id", "_lastUpdated")
    if isinstance(query.cursor["k"], str) != textual:
        raise InvalidInput("the paging cursor does not belong to this search", location="_cursor")
