"""A number from a data file together with where it comes from.

Every rate, price, window, count or probability in `hospitals/`, `scenarios/` and
`data/` is written as ``{value: ..., source: "..."}`` or ``{value: ..., assumption: "..."}``
so that a reader can always tell a cited figure from an invented one. The loaders
reject a bare number where a ``Sourced`` is expected.
"""

from __future__ import annotations

from typing import Generic, TypeVar

from pydantic import BaseModel, ConfigDict, model_validator

T = TypeVar("T")


class Sourced(BaseModel, Generic[T]):
    model_config = ConfigDict(frozen=True, extra="forbid")

    value: T
    source: str | None = None
    assumption: str | None = None

    @model_validator(mode="after")
    def _says_where_it_comes_from(self) -> "Sourced[T]":
        if not (self.source or "").strip() and not (self.assumption or "").strip():
            raise ValueError("needs a 'source' or an 'assumption' note beside the value")
        return self

    @property
    def is_assumption(self) -> bool:
        return not (self.source or "").strip()
