"""Unit tests for ticket_triage.decision.rules (inline configs plus the shipped banking rules)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from ticket_triage.decision.rules import RuleError, RuleSet, keyword_to_regex
from ticket_triage.taxonomy import load_taxonomy

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def banking() -> RuleSet:
    tax = load_taxonomy(ROOT / "conf/taxonomy/banking77.yaml")
    return RuleSet.from_config(ROOT / "conf/rules/banking.yaml", taxonomy=tax)


@pytest.mark.parametrize("text", ["My card was stolen yesterday", "Meine Karte wurde gestohlen!",
                                  "I lost my card at the station", "Someone used my card in Paris",
                                  "There is a payment I don't recognise", "Betrug auf meinem Konto"])
def test_fraud_topic_rules_en_de(banking: RuleSet, text: str) -> None:
    out = banking.apply(text)
    assert out.topic == "fraud_and_security"
    assert out.urgency == "P1"
    assert out.pinned_band is None  # fraud topics are not pinned (the model still gets scored)


@pytest.mark.parametrize("text", ["My card was not stolen, I just want a new PIN",
                                  "Meine Karte wurde nicht gestohlen",
                                  "I haven't lost my card, it just doesn't work",
                                  "I found my lost card, can I reactivate it?"])
def test_negation_and_unless_suppress(banking: RuleSet, text: str) -> None:
    assert banking.apply(text).topic is None


def test_negation_stops_at_clause(banking: RuleSet) -> None:
    out = banking.apply("It was not my fault. My card was stolen on the bus.")
    assert out.topic == "fraud_and_security"


@pytest.mark.parametrize("text,urg", [("Our account was hacked last night", "P1"),
                                      ("Mein Konto wurde gehackt", "P1"),
                                      ("We had a data breach, customer data leaked", "P0"),
                                      ("Wir melden einen Sicherheitsvorfall (Datenleck)", "P0")])
def test_security_incident_pins_review(banking: RuleSet, text: str, urg: str) -> None:
    out = banking.apply(text)
    assert out.pinned_band == "review"
    assert out.urgency == urg
    assert "security_incident" in out.secondary_tags


@pytest.mark.parametrize("text", ["Please delete my personal data under GDPR",
                                  "I want to exercise my right to be forgotten",
                                  "I will complain to the FCA and the ombudsman",
                                  "Bitte löschen Sie gemäß DSGVO, meine Daten löschen",
                                  "Ich wende mich an die BaFin wegen Datenschutz"])
def test_legal_privacy_pins_review(banking: RuleSet, text: str) -> None:
    out = banking.apply(text)
    assert out.pinned_band == "review"
    assert "legal_privacy" in out.secondary_tags
    assert out.topic is None


def test_delete_account_is_not_privacy(banking: RuleSet) -> None:
    assert banking.apply("Please delete my account now.").pinned_band is None


@pytest.mark.parametrize("text,topic", [("I want a refund for this item", "refunds"),
                                        ("Ich möchte eine Rückerstattung", "refunds"),
                                        ("Can I get a refund of the transfer fee?", None),
                                        ("I was charged twice, I want my money back", None),
                                        ("Ich will mein Geld zurück", None)])
def test_refund_tag_and_topic_boundary(banking: RuleSet, text: str, topic: str | None) -> None:
    out = banking.apply(text)
    assert "refund" in out.secondary_tags
    assert out.topic == topic


@pytest.mark.parametrize("text", ["I will contact my lawyer and sue you",
                                  "I'm going to the press about this and post it on Twitter",
                                  "Ich werde Sie verklagen und gehe zur Presse",
                                  "Mein Anwalt meldet sich", "I'll take you to court"])
def test_public_escalation(banking: RuleSet, text: str) -> None:
    out = banking.apply(text)
    assert out.urgency == "P1"
    assert out.pinned_band == "review"
    assert "public_escalation" in out.secondary_tags


def test_press_button_is_not_escalation(banking: RuleSet) -> None:
    assert banking.apply("I press the button but nothing happens").hits == []


def test_precedence_priority_pin_urgency(banking: RuleSet) -> None:
    # refund (priority 50) vs fraud (100): fraud wins the topic; escalation pins review;
    # the data breach raises P0 over P1; every hit is explained
    out = banking.apply("Refund the payment I didn't make or my lawyer will sue. Also a data breach?")
    assert out.topic == "fraud_and_security" and out.topic_rule == "unrecognised_transaction"
    assert out.pinned_band == "review"
    assert out.urgency == "P0"
    ids = {h.rule_id for h in out.hits}
    assert {"unrecognised_transaction", "refund_tag", "public_escalation", "security_breach"} <= ids
    assert [h["rule_id"] for h in out.to_dict()["hits"]] == [h.rule_id for h in out.hits]


def test_hit_span_points_at_text(banking: RuleSet) -> None:
    text = "Hello, my phone was stolen today."
    (hit,) = [h for h in banking.match(text) if h.rule_id == "lost_or_stolen"]
    assert text[hit.start:hit.end] == hit.text == "stolen"
    assert hit.actions["set_topic"] == "fraud_and_security"


def _cfg(*rules: dict) -> dict:
    return {"rules": list(rules)}


def test_tie_goes_to_file_order_and_draft_pin() -> None:
    rs = RuleSet.from_config(_cfg(
        {"id": "a", "kind": "topic", "patterns": ["alpha"], "set_topic": "t1", "priority": 5, "pin_band": "draft"},
        {"id": "b", "kind": "topic", "patterns": ["beta"], "set_topic": "t2", "priority": 5},
        {"id": "c", "kind": "topic", "patterns": ["gamma"], "set_topic": "t3", "priority": 1, "pin_band": "review"}))
    assert rs.apply("beta alpha").topic == "t1"
    assert rs.apply("beta alpha").pinned_band == "draft"
    out = rs.apply("gamma alpha")
    assert out.topic == "t1" and out.pinned_band == "review" and out.pin_rule == "c"


def test_keyword_word_boundaries_and_wildcard() -> None:
    rs = RuleSet.from_config(_cfg({"id": "s", "kind": "public_escalation", "patterns": ["sue", "verklag*"],
                                   "secondary_tag": "x"}))
    assert rs.match("I will sue") and rs.match("Ich verklage euch")
    assert rs.match("a pursued issue") == [] and rs.match("Suez canal") == []


def test_validation_errors_name_the_rule() -> None:
    with pytest.raises(RuleError) as exc:
        RuleSet.from_config(_cfg(
            {"id": "k", "kind": "nonsense", "patterns": ["x"], "secondary_tag": "t"},
            {"id": "r", "kind": "topic", "patterns": ["re:(unclosed"], "secondary_tag": "t"},
            {"id": "t", "kind": "topic", "patterns": ["x"], "set_topic": "nope"},
            {"id": "e", "kind": "topic", "patterns": ["re:a*"], "secondary_tag": "t"},
            {"id": "n", "kind": "topic", "patterns": ["x"]}), taxonomy=["fraud_and_security"])
    msg = str(exc.value)
    assert "rule 'k': unknown kind 'nonsense'" in msg
    assert "rule 'r'" in msg and "bad regex" in msg
    assert "rule 't': set_topic 'nope' is not a topic" in msg
    assert "rule 'e'" in msg and "empty string" in msg
    assert "rule 'n': has no action" in msg
    with pytest.raises(RuleError, match="file not found"):
        RuleSet.from_config("/nonexistent/rules.yaml")


def test_bad_input(banking: RuleSet) -> None:
    assert banking.match("") == [] and banking.match("   ") == [] and banking.match(None) == []
    junk = bytes(range(256)) * 50
    assert isinstance(banking.match(junk), list)
    assert banking.match("stolen".encode() + b"\xff\xfe")[0].rule_id == "lost_or_stolen"
    with pytest.raises(TypeError, match="expects a str"):
        banking.match(12345)  # type: ignore[arg-type]
    filler = ("lorem ipsum dolor sit amet " * 40000)[:1_000_000]
    t0 = time.perf_counter()
    hits = banking.match("my card was stolen. " + filler + " I will sue you")
    assert time.perf_counter() - t0 < 30.0  # generous bound on a busy machine; the hit list shows the cut
    assert [h.rule_id for h in hits] == ["lost_or_stolen"]  # the threat beyond max_chars is not seen


def test_roundtrip_and_generic_rules() -> None:
    generic = RuleSet.from_config(ROOT / "conf/rules/generic.yaml", taxonomy=["anything"])
    assert all(r.set_topic is None for r in generic.rules)
    assert generic.apply("My account was hacked").pinned_band == "review"
    again = RuleSet.from_dict(generic.to_dict())
    assert [r.id for r in again.rules] == [r.id for r in generic.rules]


def test_keyword_regex_apostrophes() -> None:
    import re
    rx = re.compile(keyword_to_regex("don't recognise"), re.I)
    assert rx.search("I DON’T   recognise it") and not rx.search("dont recognise")
