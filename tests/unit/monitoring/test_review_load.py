"""The review band against the reviewers' capacity, by reason (monitoring.review_load)."""

from __future__ import annotations

from ticket_triage.monitoring.review_load import planned_shares, reason_group, review_load


def _d(band: str, reason: str) -> dict:
    return {"band": band, "reason": reason}


def test_reason_groups() -> None:
    assert reason_group("unsupported_language") == "language"
    assert reason_group("out_of_scope") == "out_of_scope"
    assert reason_group("rule_pinned:public_escalation") == "rules"
    assert reason_group("rule_topic:lost+below_review_threshold") == "rules"
    assert reason_group("below_review_threshold") == "confidence"
    assert reason_group("label_pinned:fraud") == "label_pinned"
    assert reason_group("llm_abstained") == "other"


def test_within_capacity() -> None:
    ds = [_d("auto_route", "above_auto_threshold")] * 998 + [_d("review", "below_review_threshold")] * 2
    load = review_load(ds, review_capacity=20, tickets_per_day=10000)
    assert load["within_capacity"] and load["overflow_per_day"] == 0
    assert load["review"] == 2 and "within capacity" in load["message"]


def test_overflow_names_the_reasons_and_amounts() -> None:
    ds = ([_d("auto_route", "above_auto_threshold")] * 900 + [_d("draft", "between_thresholds")] * 40
          + [_d("review", "unsupported_language")] * 30 + [_d("review", "out_of_scope")] * 20
          + [_d("review", "rule_pinned:public_escalation")] * 8 + [_d("review", "below_review_threshold")] * 2)
    th = {"info": {"review_budget_share": 0.001, "reserved_review": {"out_of_scope": 0.001, "rule_pinned": 0.0}}}
    load = review_load(ds, review_capacity=20, tickets_per_day=10000, planned=planned_shares(th))
    assert not load["within_capacity"]
    assert load["review_share"] == 0.06 and load["review_per_day"] == 600.0
    assert load["overflow_per_day"] == 580.0 and load["overflow_factor"] == 30.0
    by = {e["reason"]: e for e in load["by_reason"]}
    assert by["language"]["per_day"] == 300.0 and by["language"]["over_plan_per_day"] == 300.0
    assert by["out_of_scope"]["planned_share"] == 0.001 and by["out_of_scope"]["over_plan_per_day"] == 190.0
    assert by["rules"]["over_plan_per_day"] == 80.0 and by["confidence"]["over_plan_per_day"] == 10.0
    assert [e["reason"] for e in load["by_reason"]][:2] == ["language", "out_of_scope"]  # biggest first
    msg = load["message"]
    assert "OVER capacity by 580 a day" in msg and "language 300 a day, planned 0" in msg


def test_empty_and_object_decisions() -> None:
    class D:
        band, reason = "review", "out_of_scope"

    assert review_load([], review_capacity=20, tickets_per_day=10000)["within_capacity"]
    load = review_load([D()], review_capacity=20, tickets_per_day=10000)
    assert load["review"] == 1 and not load["within_capacity"]
