"""The reuse rules, from the policy text's own examples, and their properties."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from emr.reuse import Order, PriorResult, ReusePolicy, decide, refusal

T0 = datetime(2025, 9, 1, 8, 0, tzinfo=timezone.utc)
HBA1C = ReusePolicy("4548-4", timedelta(days=60), shareable=True, positive_only=False, price_vnd=100_900)
CULTURE = ReusePolicy("600-7", timedelta(days=30), shareable=True, positive_only=True, price_vnd=250_000)
TROPONIN = ReusePolicy("89579-7", timedelta(hours=24), shareable=False, positive_only=False, price_vnd=80_000)


def result(*, loinc="4548-4", status="final", collected=T0, level=3, positive=None, oid="o1", performer="27001"):
    return PriorResult(oid, loinc, status, collected, performer, level, positive)


def order(*, loinc="4548-4", at=T0 + timedelta(days=1), level=3, facility="01001"):
    return Order(loinc, at, facility, level)


def test_of_two_results_collected_at_once_the_one_given_first_decides():
    """The hub gives the later published first; ids (random uuids) no longer break the tie."""
    not_final, unrecognised = result(oid="b", status="preliminary"), result(oid="a", level=1)
    assert decide(order(level=3), HBA1C, [not_final, unrecognised]).reason == "not-final"
    assert decide(order(level=3), HBA1C, [unrecognised, not_final]).reason == "lab-not-recognised"


def test_hba1c_at_59_days_is_reused_and_at_61_days_is_expired():
    prior = result()
    assert decide(order(at=T0 + timedelta(days=59)), HBA1C, [prior]).decision == "reuse"
    late = decide(order(at=T0 + timedelta(days=61)), HBA1C, [prior])
    assert (late.decision, late.reason) == ("repeat", "expired")


def test_lower_level_lab_is_not_recognised_by_a_higher_level_hospital():
    refused = decide(order(level=5), HBA1C, [result(level=3)])
    assert (refused.decision, refused.reason) == ("repeat", "lab-not-recognised")
    assert decide(order(level=3), HBA1C, [result(level=5)]).decision == "reuse"


def test_same_level_labs_recognise_each_other_and_unranked_labs_nobody():
    assert decide(order(level=3), HBA1C, [result(level=3)]).decision == "reuse"
    assert decide(order(level=0), HBA1C, [result(level=0)]).reason == "lab-not-recognised"


def test_negative_culture_is_refused_and_positive_reused():
    culture = dict(loinc="600-7")
    assert decide(order(**culture), CULTURE, [result(**culture, positive=False)]).reason == "negative-result"
    assert decide(order(**culture), CULTURE, [result(**culture, positive=True)]).decision == "reuse"


def test_preliminary_result_is_refused():
    assert decide(order(), HBA1C, [result(status="preliminary")]).reason == "not-final"


def test_unshareable_test_is_always_repeated():
    assert decide(order(loinc="89579-7"), TROPONIN, [result(loinc="89579-7")]).reason == "not-shareable"


def test_no_prior_result_and_results_after_the_order_are_not_prior():
    assert decide(order(), HBA1C, []).reason == "no-prior-result"
    assert decide(order(at=T0 - timedelta(hours=1)), HBA1C, [result()]).reason == "no-prior-result"


def test_newest_acceptable_result_wins_over_a_newer_unacceptable_one():
    older = result(oid="old", collected=T0)
    newer_prelim = result(oid="new", collected=T0 + timedelta(days=2), status="preliminary")
    chosen = decide(order(at=T0 + timedelta(days=3)), HBA1C, [older, newer_prelim])
    assert chosen.decision == "reuse" and chosen.result.observation_id == "old"
    assert chosen.expires == T0 + timedelta(days=60)


@given(offset=st.integers(min_value=0, max_value=60 * 24 * 60 - 1),
       earlier=st.integers(min_value=0, max_value=60 * 24 * 60 - 1))
def test_reusable_at_t_stays_reusable_earlier_and_never_after_window(offset, earlier):
    prior = result()
    at = T0 + timedelta(minutes=offset)
    assert refusal(prior, order(at=at), HBA1C) is None
    before = T0 + timedelta(minutes=min(earlier, offset))
    assert refusal(prior, order(at=before), HBA1C) is None
    assert refusal(prior, order(at=T0 + HBA1C.validity + timedelta(minutes=earlier)), HBA1C) == "expired"
