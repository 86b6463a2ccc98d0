"""Rules that fit the data (issue 13): platform names need an intent cue (``near``), and the
train stage reports each rule's hits, share, agreement with the labels and examples."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest

from ticket_triage.decision.rules import RuleError, RuleSet
from ticket_triage.decision.rules.report import rule_report, summary_lines

ROOT = Path(__file__).resolve().parents[3]
GITHUB = ROOT.parent / "shared" / "datasets" / "github-issues" / "train.csv"


@pytest.fixture(scope="module", params=["generic", "banking"])
def shipped(request) -> RuleSet:
    return RuleSet.from_config(ROOT / "conf" / "rules" / f"{request.param}.yaml")


@pytest.mark.parametrize("text", [
    "I will post this on Facebook if you don't refund me",
    "Ich werde das auf Facebook posten, wenn nichts passiert!",
    "I will tell everyone on Reddit how bad your service is",
    "I'll share this on social media",
])
def test_platform_with_intent_cue_is_an_escalation(shipped: RuleSet, text: str) -> None:
    out = shipped.apply(text)
    assert out.pinned_band == "review" and "public_escalation" in out.secondary_tags


@pytest.mark.parametrize("text", [
    "Bug in facebook/react: useEffect fires twice in StrictMode",
    "import React from 'react' (see https://facebook.github.io/react/docs)",
    "The Twitter API returns 429 since the update. I posted the logs below.",
    "Facebook login is broken on Android",
    "the crash reporter shows nothing",
    "our social media team cannot log in",
    "I will not post this on Facebook, just fix it please",
])
def test_platform_names_without_intent_do_not_fire(shipped: RuleSet, text: str) -> None:
    assert not [h for h in shipped.match(text) if h.kind == "public_escalation"]


def test_near_is_validated() -> None:
    base = {"id": "p", "kind": "public_escalation", "patterns": ["facebook"], "pin_band": "review"}
    with pytest.raises(RuleError, match="unknown set 'nope'"):
        RuleSet.from_config({"rules": [{**base, "near": "nope"}]})
    with pytest.raises(RuleError, match="near_window must be a positive integer"):
        RuleSet.from_config({"rules": [{**base, "near": ["post"], "near_window": 0}]})
    with pytest.raises(RuleError, match="max_fire_share"):
        RuleSet.from_config({"max_fire_share": 2, "rules": [base]})
    rs = RuleSet.from_config({"cue_sets": {"i": ["post"]}, "rules": [{**base, "near": "i", "near_window": 3}]})
    assert rs.match("post it on facebook") and not rs.match("post it right now on the facebook")
    assert rs.match("facebook, I post") and not rs.match("facebook. Later I post")


def _rows() -> list[dict]:
    return [
        {"id": "1", "text": "My card was stolen, block it", "topic": "fraud", "urgency": "P1"},
        {"id": "2", "text": "card stolen at the station", "topic": "fraud", "urgency": "P2"},
        {"id": "3", "text": "stolen goods? no, my parcel is late", "topic": "delivery", "urgency": "P3"},
        {"id": "4", "text": "where is my parcel", "topic": "delivery", "urgency": "P3"},
    ] + [{"id": str(i), "text": f"question number {i}", "topic": "other"} for i in range(5, 21)]


def test_report_counts_agreement_examples_and_flags() -> None:
    rs = RuleSet.from_config({"max_fire_share": 0.1, "rules": [
        {"id": "stolen", "kind": "topic", "patterns": ["stolen"], "set_topic": "fraud", "raise_urgency": "P1"},
        {"id": "parcel", "kind": "topic", "patterns": ["parcel"], "pin_band": "review", "secondary_tag": "p"},
        {"id": "never", "kind": "topic", "patterns": ["zebra"], "secondary_tag": "z"},
    ]})
    rep = rule_report(rs, _rows())
    by = {r["rule"]: r for r in rep["rules"]}
    assert rep["tickets"] == 20 and rep["pinned_to_review"] == 2 and rep["pinned_to_review_share"] == 0.1
    s = by["stolen"]
    assert s["tickets"] == 3 and s["share"] == 0.15 and s["flagged"]
    assert s["topic_agreement"] == round(2 / 3, 4)
    assert s["urgency_agreement"] == round(1 / 3, 4)  # P1 only on ticket 1
    assert s["label_mix"] == {"fraud": 2, "delivery": 1}
    assert [e["id"] for e in s["examples"]] == ["1", "2", "3"] and "[[stolen]]" in s["examples"][0]["context"]
    assert by["parcel"]["tickets"] == 2 and not by["parcel"]["flagged"] and by["parcel"]["topic_agreement"] is None
    assert by["never"]["tickets"] == 0 and by["never"]["examples"] == []
    assert len(rep["warnings"]) == 1 and "'stolen'" in rep["warnings"][0] and "15.0%" in rep["warnings"][0]
    text = "\n".join(summary_lines(rep))
    assert "WARNING" in text and "stolen: 3 (15.0%)" in text
    json.dumps(rep)


@pytest.mark.skipif(not GITHUB.exists() and not os.environ.get("CI"), reason="shared datasets not present")
def test_generic_rules_fit_github_issues() -> None:
    """The generic rules no longer pin react issues to review for naming facebook."""
    from ticket_triage.text.clean import clean_text

    with GITHUB.open(encoding="utf-8", newline="") as f:
        rows = [{"id": str(i), "text": clean_text(r["title"], r["body"]), "topic": r["label"]}
                for i, r in enumerate(csv.DictReader(f)) if r["repo"].endswith("react")]
    rep = rule_report(RuleSet.from_config(ROOT / "conf" / "rules" / "generic.yaml"), rows)
    by = {r["rule"]: r for r in rep["rules"]}
    assert by["public_escalation_platform"]["tickets"] == 0
    assert rep["pinned_to_review_share"] <= 0.05, rep["warnings"]
