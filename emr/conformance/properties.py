"""The properties the kit checks, in the order they run and are reported."""

from __future__ import annotations

from emr.conformance.session import Property


def all_properties() -> list[Property]:
    from emr.conformance import refusals, searches, writes

    by_key = {p.key: p for p in writes.PROPERTIES + searches.PROPERTIES + refusals.PROPERTIES}
    order = ("create-read", "search-identifier", "conditional-create", "transaction-atomic", "date-search",
             "paging", "bad-input", "national-id-search")
    return [by_key[key] for key in order]
