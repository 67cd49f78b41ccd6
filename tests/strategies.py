"""Hypothesis strategies for hostile input: what a broken or malicious client might send the hub."""

from __future__ import annotations

from hypothesis import strategies as st

# Fragments that have broken SQL builders, template engines, HTML pages and path handling elsewhere.
FRAGMENTS = (
    "' OR '1'='1", "1; DROP TABLE resource; --", "\" OR \"\"=\"", "') OR ('a'='a", "%' OR 1=1 --",
    "1 UNION SELECT content FROM resource --", "<script>alert(1)</script>", "\"><img src=x onerror=alert(1)>",
    "javascript:alert(1)", "{{7*7}}", "${7*7}", "../../etc/passwd", "%00", "%", "_", "\\", "*", "|", "||",
    ",", "$", "a|b|c", "null", "[]", "{}", "\u202e", "ﬁ", "Trần Thị Ý", "x" * 300,
)
RESOURCE_TYPES = ("Patient", "Observation", "Person", "Encounter", "DiagnosticReport", "ServiceRequest")
PARAMETER_NAMES = (
    "identifier", "family", "given", "name", "birthdate", "gender", "code", "date", "subject", "patient",
    "patient.identifier", "subject:Patient.identifier", "performer", "status", "category", "_id", "_lastUpdated",
    "_count", "_sort", "_include", "_summary", "_cursor", "_total", "link", "encounter", "family:exact",
    "family:contains", "identifier:not", "code:identifier", "nonsense", "_format", "",
)


def hostile_text(max_size: int = 60) -> st.SearchStrategy[str]:
    """A known-bad fragment, or any text (any code point but lone surrogates)."""
    anything = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=max_size)
    return st.one_of(st.sampled_from(FRAGMENTS), anything, st.builds(lambda a, b: a + b, st.sampled_from(FRAGMENTS),
                                                                     anything))


def search_pairs() -> st.SearchStrategy[list[tuple[str, str]]]:
    name = st.one_of(st.sampled_from(PARAMETER_NAMES), hostile_text(20))
    return st.lists(st.tuples(name, hostile_text()), min_size=1, max_size=6)


def json_values(max_leaves: int = 25) -> st.SearchStrategy[object]:
    """Any JSON, with hostile strings and numbers at the edges of what parsers take."""
    leaves = st.one_of(st.none(), st.booleans(), hostile_text(),
                       st.integers(min_value=-(2 ** 70), max_value=2 ** 70),
                       st.floats(allow_nan=False, allow_infinity=False))
    keys = st.one_of(hostile_text(12), st.sampled_from(
        ("resourceType", "id", "identifier", "subject", "reference", "valueQuantity", "entry", "request")))
    return st.recursive(leaves, lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=4)), max_leaves=max_leaves)


def resource_bodies() -> st.SearchStrategy[dict]:
    """Something shaped like a resource (or a Bundle of them), with hostile content."""
    fields = st.dictionaries(st.sampled_from(("id", "identifier", "name", "status", "code", "subject", "text",
                                              "effectiveDateTime", "valueQuantity", "entry", "type", "meta")),
                             json_values(), max_size=5)
    kind = st.one_of(st.sampled_from((*RESOURCE_TYPES, "Bundle", "Parameters")), hostile_text(20))
    return st.builds(lambda k, f: {**f, "resourceType": k}, kind, fields)


def raw_bodies() -> st.SearchStrategy[bytes]:
    """Bytes that are not (quite) JSON: invalid UTF-8, truncation, deep nesting, huge numbers."""
    return st.one_of(
        st.binary(max_size=200),
        st.sampled_from((b"\xff\xfe{}", b'{"resourceType": "Patient", "name": [{"family": "\xc3\x28"}]}',
                         b'{"resourceType": "Patient"', b"[" * 5000 + b"]" * 5000,
                         b'{"resourceType": "Observation", "valueQuantity": {"value": 1e999}}',
                         b'{"resourceType": "Patient", "multipleBirthInteger": 1' + b"0" * 400 + b"}",
                         b'{"resourceType": "Patient", "x": "\\ud800"}', b"", b"null", b"0")),
        st.integers(min_value=100, max_value=3000).map(lambda n: b'{"a":' * n + b"1" + b"}" * n))
