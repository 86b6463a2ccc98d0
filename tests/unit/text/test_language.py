"""Tests for ticket_triage.text.language.detect_language."""

from __future__ import annotations


import pytest

from ticket_triage.text.language import LANGUAGES, UNDETERMINED, detect_language, prose


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


# -- prose only, and the data set's language as a prior (issue 13) ---------------------------
CODE_HEAVY_EN = """pow() function not working in c++

#include <iostream>
#include <math.h>
using namespace std;
int main()
{
int n;
cin >> n;
int ans = 0;
while (n != 0) { int bit = n & 1; ans = (bit * pow(10, i)) + ans; n = n >> 1; i++; }
cout << ans << endl;
}"""

LOG_HEAVY_EN = """Can't launch VS Code from Linux terminal: symbol lookup error

1. ~$ : code
2. symbol lookup error: /usr/share/code-insiders/bin/../code-insiders: undefined symbol: gbm_bo_map
[2023-06-01 10:22:01.123] [main] [error] Error: ENOENT: no such file or directory, open '/home/u/.config/Code/le_fichier'
    at Object.openSync (node:fs:601:3)
    at tryReadFile (node:internal/fs/read_file_context:23:9)
It started after the last update, the window never opens."""


def test_code_logs_and_urls_are_not_prose():
    p = prose(CODE_HEAVY_EN)
    assert "#include" not in p and "cout" not in p and "pow() function not working" in p
    p = prose(LOG_HEAVY_EN + "\nsee https://github.com/facebook/react/issues/1 and /usr/lib/x_y.so")
    assert "node:fs" not in p and "ENOENT" not in p and "github.com" not in p and "/usr/lib" not in p
    assert "the window never opens" in p


@pytest.mark.parametrize("text", [CODE_HEAVY_EN, LOG_HEAVY_EN])
def test_english_with_code_or_logs_is_english(text):
    assert detect_language(text) in ("en", "und")
    assert detect_language(text, prior="en") == "en"


def test_prior_decides_weak_or_empty_signal_but_not_clear_evidence():
    assert detect_language("", prior="en") == "en"
    assert detect_language("error 0x80070005 #4711", prior="en") == "en"
    assert detect_language("error 0x80070005 #4711") == "und"
    # lower-cased, tokenised IT ticket: English, not flagged
    assert detect_language("cannot login to vpn , error 809 . please help asap", prior="en") == "en"
    # clear German stays German under an English prior, and the other way round
    assert detect_language(SAMPLES["de"], prior="en") == "de"
    assert detect_language("Hello, my laptop does not start since the update and I need it for work today.",
                           prior="de") == "en"
    assert detect_language(SAMPLES["de"], prior="xx") == "de"  # an unknown prior is ignored
