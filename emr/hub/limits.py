"""What the hub refuses before it does any work: oversized, over-deep or malformed input.

The hub is exposed to every facility's software, some of it old, some of it hostile.
Input that could exhaust the hub or reach the database in a form it cannot take is
refused here with a 4xx OperationOutcome, so nothing is written and nothing fails
deeper down with a 500:

- a request line (path and query) that is not UTF-8 or carries control characters
  (``InputGuard``, for every route);
- a JSON body nested deeper than ``max_json_depth``, with a string longer than
  ``max_string_chars``, or with control characters other than tab, CR and LF (which
  FHIR strings may not contain, and PostgreSQL text cannot hold as NUL);
- a search with more than ``max_search_params`` parameters, more than
  ``max_search_values`` comma-separated values in one, or a value longer than
  ``max_search_value_chars``.

The numbers come from ``Settings``; none of them is a FHIR rule except the 1 MiB
string limit, which the FHIR specification sets for ``string``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

import orjson

from emr.config import Settings
from emr.errors import InvalidInput, PayloadTooLarge, Problem
from emr.fhir import operation_outcome

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_CONTROL_BYTES = re.compile(rb"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class Limits:
    max_json_depth: int
    max_string_chars: int
    max_search_params: int
    max_search_values: int
    max_search_value_chars: int

    @classmethod
    def of(cls, settings: Settings) -> Limits:
        return cls(settings.max_json_depth, settings.max_string_chars, settings.max_search_params,
                   settings.max_search_values, settings.max_search_value_chars)


# JSON writes a control character as \u00XX, or as \b or \f (tab, CR and LF are allowed).
_MAY_HOLD_CONTROL = re.compile(rb"\\u00|\\b|\\f|\x7f")


def check_json(value: object, limits: Limits, raw: bytes | None = None) -> None:
    """Raise at the first string or level too many in a parsed body.

    With the ``raw`` bytes it was parsed from, a body shorter than the string limit and
    without a ``\\u00``, ``\\b`` or ``\\f`` escape or a DEL byte cannot hold a long string or
    a control character, so only its nesting is walked; any problem is located by the full walk."""
    if raw is not None and len(raw) <= limits.max_string_chars and not _MAY_HOLD_CONTROL.search(raw):
        if _depth(value) <= limits.max_json_depth:
            return
    _walk_json(value, limits)


def _depth(value: object) -> int:
    """The deepest level of ``value``, counted as ``_walk_json`` counts it (the body is level
    one, each object member or array item one more), without recursion."""
    if not isinstance(value, dict | list):
        return 1
    deepest = 1
    stack: list[tuple[dict | list, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node
        if children and depth >= deepest:
            deepest = depth + 1
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return deepest


def _walk_json(value: object, limits: Limits) -> None:
    """Walk a parsed body without recursion; raise at the first string or level too many."""
    stack: list[tuple[object, str, int]] = [(value, "$", 1)]
    while stack:
        node, where, depth = stack.pop()
        if depth > limits.max_json_depth:
            raise InvalidInput(f"the body nests deeper than {limits.max_json_depth} levels", location=where)
        if isinstance(node, dict):
            for key, child in node.items():
                check_text(key, where)
                stack.append((child, f"{where}.{key[:40]}", depth + 1))
        elif isinstance(node, list):
            stack.extend((child, f"{where}[{i}]", depth + 1) for i, child in enumerate(node))
        elif isinstance(node, str):
            if len(node) > limits.max_string_chars:
                raise PayloadTooLarge(f"a string of {len(node)} characters is longer than this hub's limit of "
                                      f"{limits.max_string_chars}", location=where)
            check_text(node, where)


def check_text(text: str, where: str) -> None:
    """FHIR strings hold no control characters except tab, CR and LF."""
    found = _CONTROL.search(text)
    if found:
        raise InvalidInput(f"control character U+{ord(found.group()):04X} is not allowed", location=where)


def check_search(pairs: list[tuple[str, str]], limits: Limits) -> None:
    """A search small enough to answer with one bounded query."""
    if len(pairs) > limits.max_search_params:
        raise InvalidInput(f"{len(pairs)} search parameters; this hub takes at most {limits.max_search_params}")
    for name, value in pairs:
        if len(name) > limits.max_search_value_chars or len(value) > limits.max_search_value_chars:
            raise InvalidInput(f"a search parameter longer than {limits.max_search_value_chars} characters",
                               location=name[:40])
        if value.count(",") >= limits.max_search_values:
            raise InvalidInput(f"more than {limits.max_search_values} values in one search parameter",
                               location=name[:40])


class InputGuard:
    """ASGI middleware: a request line that is not UTF-8 or holds control characters is a 400."""

    def __init__(self, app) -> None:  # type: ignore[no-untyped-def]
        self.app = app

    async def __call__(self, scope, receive, send) -> None:  # type: ignore[no-untyped-def]
        if scope["type"] == "http":
            problem = request_line_problem(scope.get("raw_path") or scope["path"].encode("utf-8", "surrogateescape"),
                                           scope.get("query_string", b""))
            if problem:
                await _refuse(send, problem)
                return
        await self.app(scope, receive, send)


def request_line_problem(raw_path: bytes, query: bytes) -> str | None:
    for part, label in ((raw_path, "path"), (query.replace(b"+", b" "), "query")):
        decoded = unquote_to_bytes(part)
        try:
            decoded.decode("utf-8")
        except UnicodeDecodeError:
            return f"the {label} is not valid UTF-8 once percent-decoded"
        if _CONTROL_BYTES.search(decoded.replace(b"\t", b" ")):
            return f"the {label} holds a control character"
    return None


async def _refuse(send, message: str) -> None:  # type: ignore[no-untyped-def]
    body = orjson.dumps(operation_outcome([Problem(message, None, "invalid")]))
    await send({"type": "http.response.start", "status": 400,
                "headers": [(b"content-type", b"application/fhir+json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
