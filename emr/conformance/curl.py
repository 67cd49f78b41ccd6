"""A failing example as a bash script of curl lines that a person can paste and replay.

The script starts with variables: ``B`` the server's base URL (set ``B`` in the
environment to replay against another server), ``EX`` a fresh
prefix for the example's run-specific identifiers, ``NID1``… fresh personal
identification numbers of the same province, sex and birth year, so a replay against
the same server does not meet the data of the run it came from. Ids and ``next``
links the server handed out are caught in variables (``ID1``…) where a later request
uses them. Requests that were sent at once are sent at once again (``&`` … ``wait``).
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from emr.conformance.client import Exchange

PICK = ("pick() { python3 -c 'import json, sys\n"
        "d = json.load(sys.stdin)\n"
        "print(d[\"id\"] if sys.argv[1] == \"id\" else "
        "next(l[\"url\"] for l in d.get(\"link\", []) if l[\"relation\"] == \"next\"))' \"$1\"; }")
SHOWN_ANSWER = 160  # characters of the last answer quoted in the script


@dataclass(frozen=True)
class Replay:
    """What a failing example made that a replay must make afresh."""

    base_url: str
    example: str  # the prefix of the example's run-specific identifiers
    national_ids: tuple[str, ...]


def render(exchanges: list[Exchange], replay: Replay) -> str:
    subs = {replay.base_url: "B", **({replay.example: "EX"} if replay.example else {})}
    subs |= {nid: f"NID{i}" for i, nid in enumerate(replay.national_ids, 1)}
    header = [f'B="${{B:-{_double(replay.base_url)}}}"']
    if replay.example:
        header.append(f'EX="{replay.example}r$RANDOM"')
    header += [f"NID{i}=$(printf '%s%06d' {nid[:6]} $(( (RANDOM << 15 | RANDOM) % 1000000 )))"
               for i, nid in enumerate(replay.national_ids, 1)]
    captures = _captures(exchanges)
    lines = _lines(exchanges, subs, captures)
    if captures:
        header.append(PICK)
    return "\n".join(header + lines)


def _captures(exchanges: list[Exchange]) -> dict[int, tuple[str, str, str]]:
    """index → (variable, what to pick, value) for answers whose id or next link a later request uses."""
    found: dict[int, tuple[str, str, str]] = {}
    for index, exchange in enumerate(exchanges):
        if exchange.batch is not None:
            continue
        for what, value in _handed_out(exchange):
            if any(value in _request_text(later) for later in exchanges[index + 1:]):
                name = "NEXT" if what == "next" else "ID"
                found[index] = (f"{name}{len(found) + 1}", what, value)
                break
    return found


def _handed_out(exchange: Exchange) -> list[tuple[str, str]]:
    try:
        body = orjson.loads(exchange.response) if exchange.response else None
    except orjson.JSONDecodeError:
        return []
    if not isinstance(body, dict):
        return []
    out = []
    links = [link.get("url") for link in body.get("link") or [] if isinstance(link, dict) and link.get("relation") == "next"]
    if links and isinstance(links[0], str):
        out.append(("next", links[0]))
    if isinstance(body.get("id"), str) and len(body["id"]) >= 4:  # short ids would match by accident
        out.append(("id", body["id"]))
    return out


def _request_text(exchange: Exchange) -> str:
    return exchange.url + (exchange.body or b"").decode("utf-8", "replace")


def _lines(exchanges: list[Exchange], subs: dict[str, str], captures: dict[int, tuple[str, str, str]]) -> list[str]:
    lines: list[str] = []
    index = 0
    while index < len(exchanges):
        exchange = exchanges[index]
        if exchange.batch is None:
            lines += _single_request(exchange, subs, captures.get(index), last=index == len(exchanges) - 1)
            if index in captures:
                variable, _, value = captures[index]
                subs = {**subs, value: variable}
            index += 1
            continue
        group = [e for e in exchanges[index:] if e.batch == exchange.batch]
        lines += _batch(group, subs)
        index += len(group)
    return lines


def _single_request(exchange: Exchange, subs: dict[str, str], capture: tuple[str, str, str] | None, *,
                    last: bool) -> list[str]:
    command = _curl(exchange, subs)
    line = f"{capture[0]}=$({command} | pick {capture[1]})" if capture else f"{command}; echo"
    note = f"# → {_status(exchange)}"
    if last and exchange.response:
        note += " " + exchange.response[:SHOWN_ANSWER].decode("utf-8", "replace").replace("\n", " ")
        note += "…" if len(exchange.response) > SHOWN_ANSWER else ""
    return [line, note]


def _batch(group: list[Exchange], subs: dict[str, str]) -> list[str]:
    statuses = ", ".join(_status(e) for e in group)
    requests = {(e.method, e.url, e.headers, e.body) for e in group}
    if len(requests) == 1:
        return [f"for i in $(seq {len(group)}); do {_curl(group[0], subs)} & done; wait; echo",
                f"# → {statuses} (sent at once)"]
    return [f"{_curl(e, subs)} &" for e in group] + ["wait; echo", f"# → {statuses} (sent at once)"]


def _status(exchange: Exchange) -> str:
    return str(exchange.status) if exchange.status else "no answer"


def _curl(exchange: Exchange, subs: dict[str, str]) -> str:
    parts = ["curl -sS", f"-X {exchange.method}", _word(exchange.url, subs)]
    for name, value in exchange.headers:
        parts.append("-H " + (f'"{name}: {value}"' if "$FHIR_TOKEN" in value else _word(f"{name}: {value}", subs)))
    if exchange.body is not None:
        parts.append("--data-binary " + _word(exchange.body.decode("utf-8", "replace"), subs))
    return " ".join(parts)


def _word(text: str, subs: dict[str, str]) -> str:
    """``text`` as one shell word: single-quoted literals spliced with ``"$VAR"`` where a value is substituted."""
    pieces = [(text, None)]
    for value, variable in sorted(subs.items(), key=lambda kv: -len(kv[0])):
        pieces = [part for chunk in pieces for part in _split(chunk, value, variable)]
    return "".join(_single(chunk) if variable is None else f'"${{{variable}}}"' for chunk, variable in pieces if chunk)


def _split(piece: tuple[str, str | None], value: str, variable: str) -> list[tuple[str, str | None]]:
    text, already = piece
    if already is not None or not value or value not in text:
        return [piece]
    out: list[tuple[str, str | None]] = []
    for index, chunk in enumerate(text.split(value)):
        if index:
            out.append((value, variable))
        out.append((chunk, None))
    return out


def _double(text: str) -> str:
    return "".join("\\" + ch if ch in '"$`\\' else ch for ch in text)


def _single(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"
