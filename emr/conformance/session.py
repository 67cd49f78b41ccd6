"""What every property works with: the client, the run's own identifiers, and the usual FHIR steps.

Every resource the kit writes carries the run's tag (``meta.tag`` with system
:data:`TAG_SYSTEM` and the run id as code) and identifiers in the run's own system
(``urn:emr:conformance:<run id>``), and every personal identification number and
MRN is fresh for the run. So searches made by one run never see another run's data,
and a run's leftovers on a shared server can be found by tag or identifier system.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from hypothesis import strategies as st

from emr.conformance.client import Answer, FhirClient, Params
from emr.fhir.dates import parse_interval
from emr.identity import generate_national_id, parse_national_id
from emr.testing import Citizen

TAG_SYSTEM = "urn:emr:conformance-run"
IDENTIFIER_SYSTEM_PREFIX = "urn:emr:conformance:"
MAX_SHOWN = 5  # ids quoted in a message


class Violation(AssertionError):
    """The server broke a property; the message is kept in English and in Vietnamese."""

    def __init__(self, en: str, vi: str) -> None:
        super().__init__(en)
        self.en = en
        self.vi = vi

    def text(self, lang: str) -> str:
        return self.vi if lang == "vi" else self.en


@dataclass(frozen=True)
class Property:
    """One invariant: a name, its title in both languages, and a check that draws what it needs."""

    key: str
    title_vi: str
    title_en: str
    check: Callable[[Session, st.DataObject], None]

    def title(self, lang: str) -> str:
        return self.title_vi if lang == "vi" else self.title_en


@dataclass
class RunScope:
    """Identifiers that belong to one run: its tag, its identifier system, fresh numbers."""

    run_id: str
    example: str = ""
    national_ids: list[str] = field(default_factory=list)  # issued in the current example
    _examples: int = 0
    _tokens: int = 0
    _issued: set[str] = field(default_factory=set)
    _rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.run_id)

    @property
    def system(self) -> str:
        return IDENTIFIER_SYSTEM_PREFIX + self.run_id

    @property
    def tag(self) -> dict:
        return {"system": TAG_SYSTEM, "code": self.run_id}

    def begin_example(self) -> None:
        self._examples += 1
        self.example = f"{self.run_id}-{self._examples}"
        self.national_ids = []

    def token(self) -> str:
        """A value no other example or run uses; all of one example's share its prefix."""
        self._tokens += 1
        return f"{self.example}-{self._tokens}"

    def rekey(self, citizen: Citizen) -> Citizen:
        """The citizen with a number of the same province, sex and birth year that this run alone uses."""
        holder = parse_national_id(citizen.national_id)
        while True:
            number = generate_national_id(self._rng, province_code=holder.province.code,
                                          birth_year=holder.birth_year, sex=holder.sex)
            if number not in self._issued:
                break
        self._issued.add(number)
        self.national_ids.append(number)
        return replace(citizen, national_id=number)

    def tagged(self, resource: dict, *values: str) -> dict:
        """A copy with the run's tag and one identifier in the run's system per value."""
        out = copy.deepcopy(resource)
        meta = out.setdefault("meta", {})
        meta["tag"] = [*meta.get("tag", []), self.tag]
        out["identifier"] = [*out.get("identifier", []), *({"system": self.system, "value": v} for v in values)]
        return out


@dataclass(frozen=True)
class Found:
    """What a search returned over all its pages."""

    ids: list[str]  # in the order served, repeats kept
    resources: dict[str, dict]
    totals: list[int]  # ``total`` of every page that had one
    pages: int


@dataclass
class Session:
    client: FhirClient
    scope: RunScope
    concurrency: int = 8

    def create(self, resource: dict, *, headers: dict[str, str] | None = None) -> dict:
        """POST a resource; it must come back 201 with an id."""
        rtype = resource["resourceType"]
        answer = self.client.request("POST", rtype, body=resource,
                                     headers={"Prefer": "return=representation", **(headers or {})})
        created = answer.resource()
        if answer.status == 201 and "id" not in created:  # a server that ignores Prefer: return=representation
            created = self._located(answer, rtype)
        if answer.status != 201 or not isinstance(created.get("id"), str):
            raise Violation(f"POST {rtype} answered {answer.status}, not 201 with the new {rtype}: {outcome_text(answer)}",
                            f"POST {rtype} trả về {answer.status}, không phải 201 kèm {rtype} mới: {outcome_text(answer)}")
        return created

    def _located(self, answer: Answer, rtype: str) -> dict:
        location = answer.headers.get("location", "").split("/_history")[0]
        rid = location.rstrip("/").rsplit("/", 1)[-1] if f"{rtype}/" in location else ""
        return self.read(rtype, rid) if rid else {}

    def read(self, rtype: str, rid: str) -> dict:
        answer = self.client.request("GET", f"{rtype}/{rid}")
        if answer.status != 200:
            raise Violation(f"GET {rtype}/{rid} answered {answer.status} just after it was created",
                            f"GET {rtype}/{rid} trả về {answer.status} ngay sau khi vừa tạo")
        return answer.resource()

    def search(self, rtype: str, params: Params, *, max_pages: int = 50) -> Found:
        """Every page of a search, following ``next`` links."""
        ids, resources, totals = [], {}, []
        answer = self.client.request("GET", rtype, params=params)
        for page in range(1, max_pages + 1):
            bundle = self._page(answer, rtype)
            if isinstance(bundle.get("total"), int):
                totals.append(bundle["total"])
            for entry in bundle.get("entry") or []:
                found = entry.get("resource") or {}
                if (entry.get("search") or {}).get("mode", "match") == "match" and found.get("resourceType") == rtype:
                    ids.append(found.get("id"))
                    resources[found.get("id")] = found
            following = next_link(bundle)
            if following is None:
                return Found(ids, resources, totals, page)
            answer = self.client.request("GET", following)
        raise Violation(f"the search of {rtype} still had a next link after {max_pages} pages",
                        f"tìm kiếm {rtype} vẫn còn liên kết next sau {max_pages} trang")

    def _page(self, answer: Answer, rtype: str) -> dict:
        bundle = answer.resource()
        if answer.status != 200 or bundle.get("resourceType") != "Bundle":
            raise Violation(f"a search of {rtype} answered {answer.status}, not 200 with a Bundle: {outcome_text(answer)}",
                            f"tìm kiếm {rtype} trả về {answer.status}, không phải 200 kèm Bundle: {outcome_text(answer)}")
        return bundle

    def identifier(self, value: str) -> tuple[str, str]:
        return ("identifier", f"{self.scope.system}|{value}")


def next_link(bundle: dict) -> str | None:
    for link in bundle.get("link") or []:
        if isinstance(link, dict) and link.get("relation") == "next" and link.get("url"):
            return link["url"]
    return None


def outcome_text(answer: Answer) -> str:
    """The diagnostics of an OperationOutcome answer, briefly, or the start of the body."""
    body = answer.resource()
    if body.get("resourceType") == "OperationOutcome":
        texts = [i.get("diagnostics") or i.get("code", "") for i in body.get("issue") or [] if isinstance(i, dict)]
        return "; ".join(str(t) for t in texts)[:300] or "(OperationOutcome without diagnostics)"
    return answer.body[:200].decode("utf-8", "replace") or "(empty body)"


def expect_same_ids(found: Sequence[str], wanted: set[str], *, what_en: str, what_vi: str) -> None:
    """The search returned each wanted id exactly once, and nothing else."""
    repeated = sorted({i for i in found if found.count(i) > 1})
    extra = sorted(set(found) - wanted)
    missing = sorted(wanted - set(found))
    if not (repeated or extra or missing):
        return
    en = f"{what_en} returned {len(found)} resources, {len(wanted)} expected"
    vi = f"{what_vi} trả về {len(found)} tài nguyên, mong đợi {len(wanted)}"
    for ids, label_en, label_vi in ((missing, "missing", "thiếu"), (extra, "not created by this example", "không do ví dụ này tạo"),
                                    (repeated, "returned twice", "lặp lại")):
        if ids:
            en += f"; {label_en}: {_ids(ids)}"
            vi += f"; {label_vi}: {_ids(ids)}"
    raise Violation(en, vi)


def _ids(ids: list[str]) -> str:
    shown = ", ".join(ids[:MAX_SHOWN])
    return shown + (f" (+{len(ids) - MAX_SHOWN})" if len(ids) > MAX_SHOWN else "")


def collected_ms(resource: dict) -> int:
    return parse_interval(resource["effectiveDateTime"]).low


def without_meta(resource: dict) -> dict[str, Any]:
    return {k: v for k, v in resource.items() if k not in ("meta", "id")}
