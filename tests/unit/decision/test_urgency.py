"""Unit tests for ticket_triage.decision.urgency."""

from __future__ import annotations

import pytest

from ticket_triage.decision.urgency import UrgencyModel, resolve_urgency


@pytest.mark.parametrize("rule,model,default,expected", [
    ("P1", None, "P3", "P1"),        # rule raises the default
    ("P1", "P0", "P3", "P0"),        # a rule never lowers the model's level
    ("P2", "P3", "P1", "P2"),        # model replaces the default, rule raises it
    (None, "P2", "P3", "P2"),        # model before default
    (None, None, "P1", "P1"),        # taxonomy default
    (None, None, None, "P3"),        # nothing at all
    ("bogus", "P9", "P2", "P2"),     # invalid levels are ignored
])
def test_resolve_urgency(rule, model, default, expected) -> None:
    assert resolve_urgency(rule, model, default) == expected


TEXTS = (["server down, all customers affected, outage now"] * 6
         + ["urgent: cannot log in, account locked, blocked"] * 6
         + ["question about the invoice format, no rush"] * 6)
LABELS = ["critical"] * 6 + ["high"] * 6 + ["low"] * 6


def test_urgency_model_fit_predict_save_load(tmp_path) -> None:
    m = UrgencyModel().fit(TEXTS, LABELS)
    assert m.labels == ["P0", "P1", "P3"]
    assert m.predict(["the whole server is down, outage"]) == ["P0"]
    assert m.predict([]) == []
    again = UrgencyModel.load(m.save(tmp_path / "urg"))
    assert again.predict(["invoice format question"]) == m.predict(["invoice format question"])


def test_abstains_below_min_confidence_and_errors() -> None:
    m = UrgencyModel(min_confidence=0.99).fit(TEXTS, LABELS)
    assert m.predict(["something unrelated entirely"]) == [None]
    with pytest.raises(ValueError, match="label_map"):
        UrgencyModel().fit(["a", "b"], ["high", "weird"])
    with pytest.raises(ValueError, match="fewer than two"):
        UrgencyModel().fit(["a", "b"], ["high", "high"])
    with pytest.raises(RuntimeError, match="not fitted"):
        UrgencyModel().predict(["x"])
