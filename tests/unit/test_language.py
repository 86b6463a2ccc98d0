"""Tests for ticket_triage.text.language.detect_language."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from ticket_triage.text.language import LANGUAGES, UNDETERMINED, detect_language
from ticket_triage.text.clean import clean_text

HELPDESK_CSV = Path("/work/shared/datasets/helpdesk-synthetic/tickets.csv")

SAMPLES = {
    "en": "Hi, I have not received my card yet and would like to know where it is.",
    "de": "Hallo, ich habe meine Karte noch nicht erhalten und möchte wissen, wo sie ist.",
    "fr": "Bonjour, je n'ai pas encore reçu ma carte et je voudrais savoir où elle est.",
    "es": "Hola, todavía no he recibido mi tarjeta y quiero saber dónde está.",
    "it": "Buongiorno, non ho ancora ricevuto la mia carta e vorrei sapere dove si trova.",
    "nl": "Hallo, ik heb mijn kaart nog niet ontvangen en wil graag weten waar hij is.",
    "pt": "Olá, ainda não recebi o meu cartão e gostaria de saber onde está.",
}


@pytest.mark.parametrize(("lang", "text"), sorted(SAMPLES.items()))
def test_each_supported_language(lang, text):
    assert detect_language(text) == lang


def test_supported_languages_listed():
    assert set(SAMPLES) <= set(LANGUAGES)


@pytest.mark.parametrize(
    ("lang", "text"),
    [
        ("en", "I am still waiting on my card?"),  # BANKING77 style, short
        ("en", "What can I do if my card still hasn't arrived after 2 weeks?"),
        ("de", "Fehler beim Absturz beheben"),  # short German, no classic stopword besides 'beim'
        ("de", "Sehr geehrte Damen und Herren, die Überweisung ist nicht angekommen."),
        ("fr", "Le paiement a été refusé par la banque, pouvez-vous vérifier ?"),
        ("es", "El pago fue rechazado por el banco, ¿pueden revisarlo?"),
        ("it", "Il pagamento è stato rifiutato dalla banca, potete controllare?"),
        ("nl", "De betaling is geweigerd door de bank, kunt u dat controleren?"),
        ("pt", "O pagamento foi recusado pelo banco, podem verificar isso?"),
    ],
)
def test_short_ticket_texts(lang, text):
    assert detect_language(text) == lang


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "card lost",  # fewer than three words
        "[EMAIL] [PHONE] [NAME]",  # placeholders only
        "[NAME], [PHONE] 12345 67890",
        "1234 5678 9012 3456",
        "!!! ??? ...",
        "xkcd qwrtz plmbb",  # words, but no signal
    ],
)
def test_undetermined(text):
    assert detect_language(text) == UNDETERMINED == "und"


def test_non_string_input_is_undetermined():
    assert detect_language(None) == "und"  # type: ignore[arg-type]
    assert detect_language(123) == "und"  # type: ignore[arg-type]


def test_placeholders_do_not_count_as_words():
    assert detect_language("Hi [NAME], [PHONE]") == "und"
    assert detect_language("Hi [NAME], my card [CARD] was declined") == "en"


def test_long_text_only_reads_a_prefix():
    text = " ".join([SAMPLES["de"]] * 10) + " " + "the and of " * 100_000  # German first 800 chars
    assert detect_language(text) == "de"


def test_mixed_text_goes_to_the_dominant_language():
    text = "Ich habe das Update installiert, aber die App zeigt immer noch 'Login failed'."
    assert detect_language(text) == "de"


@pytest.mark.skipif(not HELPDESK_CSV.exists(), reason=f"{HELPDESK_CSV} not present on this machine")
def test_helpdesk_synthetic_accuracy():
    with HELPDESK_CSV.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    # Every English-labelled row, and every German-labelled row that really contains German
    # (umlaut/ß): 165 rows labelled "de" are entirely English (subject, body and answer).
    checked = correct = 0
    for row in rows:
        text = clean_text(row["subject"], row["body"])
        if row["language"] == "de" and not any(c in text for c in "äöüÄÖÜß"):
            continue
        checked += 1
        correct += detect_language(text) == row["language"]
    assert checked > 1500
    assert correct / checked >= 0.99
