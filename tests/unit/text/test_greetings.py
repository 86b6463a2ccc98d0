"""Opening greetings and closing thanks (text/greetings.py) inside ``clean_text``."""

from __future__ import annotations

import json
import shutil

import pytest

from ticket_triage.text.clean import CleanConfig, clean_text
from ticket_triage.text.greetings import strip_greeting

BODY = "How do I top up my card?"


@pytest.mark.parametrize("prefix", ["Hi, ", "Hello team, ", "Good morning. ", "Hey! ", "Dear Sir or Madam,\n\n",
                                    "Hi John,\n", "Hi team\n", "Good day sir, ", "Hello there! "])
@pytest.mark.parametrize("suffix", ["", " Thanks.", " Thank you in advance.", " (sent from my phone)",
                                    " Thanks, Anna", " Many thanks!"])
def test_greeting_and_thanks_are_removed(prefix, suffix):
    assert clean_text("", prefix + BODY + suffix) == BODY


@pytest.mark.parametrize("text, expected", [
    ("Sehr geehrte Damen und Herren,\nmeine Karte ist weg. Vielen Dank im Voraus.", "meine Karte ist weg."),
    ("Sehr geehrtes Support-Team,\n\nich möchte einen Vorfall melden.", "ich möchte einen Vorfall melden."),
    ("Hola a todos, mi tarjeta no funciona. Gracias!", "mi tarjeta no funciona."),
    ("Bonjour, ma carte est bloquée. Merci d'avance.", "ma carte est bloquée."),
    ("Guten Tag Herr Müller,\ndie Überweisung fehlt.", "die Überweisung fehlt."),
])
def test_other_languages(text, expected):
    assert clean_text("", text) == expected


@pytest.mark.parametrize("text", [
    "Hey there is a bug in the parser",          # no addressee, no punctuation: a sentence
    "Hello world example crashes on start",
    "Hi",                                        # nothing would be left
    "Thanks!",
    "Thanks, it works now",                      # thanks as the content, not after a sentence
    "Dear customer service I want a refund",
    "Quick question: how do I top up?",          # not a greeting
    "How do I top up my card? Please help!",
    "The thanks button does nothing.",
])
def test_content_is_kept(text):
    assert clean_text("", text) == text


def test_subject_is_kept_and_only_the_body_start_counts():
    out = clean_text("Card blocked", "Hi team,\n\nmy card is blocked. Hi again from the app.\n\nThanks")
    assert out == "Card blocked\n\nmy card is blocked. Hi again from the app."


def test_option_off_keeps_them():
    text = "Hi, " + BODY + " Thanks."
    assert clean_text("", text, strip_greetings=False) == text
    assert CleanConfig(strip_greetings=False).apply("", text) == text
    assert CleanConfig().apply("", text) == BODY


def test_strip_greeting_alone_is_idempotent():
    once = strip_greeting("Hello team, " + BODY + " Thank you in advance.")
    assert once == BODY and strip_greeting(once) == once


def test_a_bundle_built_before_the_option_keeps_the_greetings(tiny_bundle, tmp_path):
    """A bundle's clean.json without ``strip_greetings`` was trained without it: serving must
    not start stripping (the same preprocessing at train and serve time)."""
    from ticket_triage.decision.triage import Triage
    from ticket_triage.schema import Ticket

    ticket = Ticket(id="g1", subject="", body="Hi, " + BODY + " Thanks.")
    assert json.loads((tiny_bundle / "clean.json").read_text())["strip_greetings"] is True
    assert Triage.load(tiny_bundle).clean(ticket) == BODY
    old = tmp_path / "old"
    shutil.copytree(tiny_bundle, old)
    cfg = json.loads((old / "clean.json").read_text())
    del cfg["strip_greetings"]
    (old / "clean.json").write_text(json.dumps(cfg))
    assert Triage.load(old).clean(ticket) == "Hi, " + BODY + " Thanks."
