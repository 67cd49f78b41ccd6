"""When may a result from another facility be reused instead of repeating the test?

The rules follow the MoH draft circular on recognising paraclinical results (Nov 2025,
revised Aug 2026; see DOMAIN.md): the result must be final, collected within the
test's validity window counted from specimen collection, of a test that may be
shared at all (microbiology: positive results only), and from a lab the ordering
facility recognises — a lab of at least level 1 (Decision 2429/QĐ-BYT) and at least
the ordering facility's own level. The newest result that passes every rule wins.
The treating doctor still decides; these rules only say what may be offered.

Each rule is a small pure function that returns the reason it refuses, or ``None``.
Nothing here reads a clock or a database: the caller passes the order time and the
candidate results (the hub fetches them with one indexed query).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

Reason = Literal[
    "no-prior-result", "expired", "lab-not-recognised", "not-final", "not-shareable",
    "negative-result", "identity-unverified", "consent", "hub-unavailable",
]
REASONS: tuple[str, ...] = Reason.__args__  # type: ignore[attr-defined]
# Why a doctor repeats a test that could have been reused: (Vietnamese, English).
OVERRIDE_REASONS: dict[str, tuple[str, str]] = {
    "clinical-change": ("Tình trạng lâm sàng thay đổi", "Clinical change since the result"),
    "result-not-trusted": ("Không tin cậy kết quả", "Result not trusted"),
    "patient-request": ("Người bệnh yêu cầu", "Patient request"),
    "needs-own-baseline": ("Cần kết quả gốc tại cơ sở", "Needs a baseline from this facility's lab"),
}
REUSABLE_STATUSES = frozenset({"final", "amended", "corrected"})
MINIMUM_RECOGNISED_LEVEL = 1


@dataclass(frozen=True)
class ReusePolicy:
    """What the catalogue says about one test, as far as reuse is concerned."""

    loinc: str
    validity: timedelta
    shareable: bool
    positive_only: bool
    price_vnd: int


@dataclass(frozen=True)
class PriorResult:
    observation_id: str
    loinc: str
    status: str
    collected: datetime
    performer_code: str | None
    lab_level: int  # of the performing facility's lab; 0 when unranked or unknown
    positive: bool | None  # None when the result says neither
    identity_verified: bool = True  # the source registration matched the population register
    sharing_refused: bool = False  # another facility's result, and the patient refused sharing (a Consent)


@dataclass(frozen=True)
class Order:
    loinc: str
    at: datetime
    facility_code: str
    lab_level: int  # of the ordering facility's lab


@dataclass(frozen=True)
class Decision:
    loinc: str
    decision: Literal["reuse", "repeat"]
    reason: Reason | None = None
    result: PriorResult | None = None
    expires: datetime | None = None
    price_vnd: int = 0


# ---------------------------------------------------------------- the rules

def rule_consent(result: PriorResult, order: Order, policy: ReusePolicy) -> Reason | None:
    """The patient refused sharing with other facilities: their results stay where they were made."""
    return "consent" if result.sharing_refused else None


def rule_identity_unverified(result: PriorResult, order: Order, policy: ReusePolicy) -> Reason | None:
    """A result filed under a registration the population register did not confirm may be someone else's."""
    return None if result.identity_verified else "identity-unverified"


def rule_not_final(result: PriorResult, order: Order, policy: ReusePolicy) -> Reason | None:
    """A preliminary or cancelled result may still change; only a final (or amended) one is evidence."""
    return None if result.status in REUSABLE_STATUSES else "not-final"


def rule_expired(result: PriorResult, order: Order, policy: ReusePolicy) -> Reason | None:
    """The window runs from specimen collection: an older specimen no longer describes the patient."""
    return None if order.at < result.collected + policy.validity else "expired"


def rule_negative(result: PriorResult, order: Order, policy: ReusePolicy) -> Reason | None:
    """For cultures only a positive result is recognised: a negative may turn positive later."""
    if not policy.positive_only:
        return None
    return None if result.positive is True else "negative-result"


def rule_lab_not_recognised(result: PriorResult, order: Order, policy: ReusePolicy) -> Reason | None:
    """Labs recognise labs of their own level or higher, and nobody recognises an unranked lab."""
    if result.lab_level < MINIMUM_RECOGNISED_LEVEL or result.lab_level < order.lab_level:
        return "lab-not-recognised"
    return None


RULES: tuple[Callable[[PriorResult, Order, ReusePolicy], Reason | None], ...] = (
    rule_consent, rule_identity_unverified, rule_not_final, rule_expired, rule_negative, rule_lab_not_recognised,
)


def refusal(result: PriorResult, order: Order, policy: ReusePolicy) -> Reason | None:
    """The first rule that refuses ``result`` for ``order``, or None when it may be reused."""
    for rule in RULES:
        reason = rule(result, order, policy)
        if reason:
            return reason
    return None


def decide(order: Order, policy: ReusePolicy, candidates: Iterable[PriorResult]) -> Decision:
    """Reuse the newest acceptable prior result, or say why the test must be repeated.

    ``candidates`` are the patient's results for this test, the most recently published
    first; results collected after the order time are not prior and are ignored. When
    none is acceptable, the reason is the one that refused the newest candidate. Results
    collected at the same moment keep the order given: the later published (or amended)
    counts as newer, so the answer never hangs on how random ids happen to sort.
    """
    if not policy.shareable:
        return Decision(order.loinc, "repeat", "not-shareable", price_vnd=policy.price_vnd)
    prior = sorted((c for c in candidates if c.loinc == order.loinc and c.collected <= order.at),
                   key=lambda c: c.collected, reverse=True)  # stable: ties keep the order given
    if not prior:
        return Decision(order.loinc, "repeat", "no-prior-result", price_vnd=policy.price_vnd)
    for result in prior:
        if refusal(result, order, policy) is None:
            return Decision(order.loinc, "reuse", None, result, result.collected + policy.validity,
                            policy.price_vnd)
    return Decision(order.loinc, "repeat", refusal(prior[0], order, policy), price_vnd=policy.price_vnd)


def lookback(policies: Iterable[ReusePolicy]) -> timedelta:
    """How far back the hub must look to answer for these tests (the longest window)."""
    return max((p.validity for p in policies), default=timedelta(0))
