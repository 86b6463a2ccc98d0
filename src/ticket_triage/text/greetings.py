"""Opening greetings and closing thanks: "Hi team," / "Dear Sir or Madam," / "Guten Tag,"
at the start of a ticket, "Thanks." / "Thank you in advance." / "(sent from my phone)" after
its last sentence.

They carry no topic, and they cost: a TF-IDF vector is l2-normalised, so every greeting word
takes weight from the words that say what the ticket is about, and a mean-pooled embedding
drifts towards "polite e-mail". On BANKING77 test tickets wrapped in greetings and sign-offs
(``benchmarks/bench_eval.py``) the cascade's cheap stage decided 68.9% of tickets instead of
81.4%.

Deliberately narrow, like the sign-off rules in :mod:`ticket_triage.text.signatures`:

* an opening greeting is removed only at the very start of the text, and only when a greeting
  word is followed by nothing but an addressee (capitalised names, "team", "all", "there",
  "Sir or Madam", "Damen und Herren", …) and then punctuation or the end of the line: "Hey
  there is a bug in the parser" and "Hello world example crashes" stay as they are;
* a closing "thanks" is removed only after a sentence end (``.``, ``!``, ``?``) and when
  nothing but a name follows it: "Thanks, it works now" as a whole ticket stays;
* nothing is removed when nothing would be left.
"""

from __future__ import annotations

import re

from ticket_triage.text.signatures import _NAME_TOKEN  # a capitalised name or a [NAME]-style placeholder

_GREETING = (
    r"hi|hello|hey|hiya|howdy|dear|greetings|good[ \t]+(?:morning|afternoon|evening|day)"
    r"|hallo|moin|servus|guten[ \t]+(?:tag|morgen|abend)|sehr[ \t]+geehrte[rs]?|liebe[rs]?"
    r"|bonjour|bonsoir|salut|hola|buen(?:os|as)[ \t]+(?:d[ií]as|tardes|noches)|estimad[oa]s?"
    r"|ciao|buongiorno|buonasera|salve|gentile|goedemorgen|goedemiddag|ol[áa]|bom[ \t]+dia|boa[ \t]+tarde"
    r"|prezad[oa]s?"
)
# Who is greeted: a capitalised token (a name, "Support", "Herr"), a redaction placeholder, or
# one of these lower-case address words. Anything else ("there is", "world example") ends the
# match, and without punctuation or a line end after it nothing is removed.
_ADDRESS_WORDS = (
    r"team|all|there|everyone|everybody|folks|guys|support|sir|madam|or|and|und|zusammen"
    r"|allerseits|leute|damen|herren|tous|todos|tutti|iedereen|pessoal|et|y|e|en|a|à|to"
)
_ADDRESS = r"(?:" + _NAME_TOKEN + r"|(?i:" + _ADDRESS_WORDS + r"))"
_OPENING = re.compile(
    r"[ \t]*(?i:" + _GREETING + r")(?:[ \t]+" + _ADDRESS + r"){0,5}"
    r"[ \t]*(?:[,:!.;–—-]+[ \t]*\n?|\n)\s*"
)
_OPENING_HINTS = tuple("hdgmsblceop")  # first letters of the greeting words (lower-case)

_THANKS = (
    r"thanks?|thank[ \t]+you|thx|many[ \t]+thanks|danke|vielen[ \t]+dank|merci|gracias|grazie"
    r"|bedankt|obrigad[oa]"
)
_THANKS_TAIL = (
    r"(?:[ \t]+(?:in[ \t]+advance|again|so[ \t]+much|very[ \t]+much|a[ \t]+lot|for[ \t]+your[ \t]+help"
    r"|im[ \t]+voraus|schön|d'avance|beaucoup))?"
)
_CLOSING = re.compile(
    r"(?<=[.!?)])[ \t]+(?:(?i:" + _THANKS + r")" + r"(?i:" + _THANKS_TAIL + r")"
    r"[ \t]*[.!,]*(?:[ \t]*" + _NAME_TOKEN + r"(?:[ \t]+" + _NAME_TOKEN + r"){0,2})?[ \t]*[.!]*"
    r"|\((?i:sent[ \t]+from[ \t]+my)[^\n()]{1,30}\)[ \t]*[.!]?)[ \t]*$"
)
_CLOSING_HINTS = ("than", "thx", "dank", "merci", "graci", "grazie", "bedankt", "obrigad", "sent from")
_TAIL_WINDOW = 80


def strip_greeting(text: str) -> str:
    """Remove an opening greeting and a closing "thanks" (see the module docstring)."""
    head = text.lstrip()[:1].lower()
    if head and head in _OPENING_HINTS:
        m = _OPENING.match(text)
        if m is not None and text[m.end():].strip():
            text = text[m.end():]
    start = max(0, len(text) - _TAIL_WINDOW)
    tail = text[start:].lower()
    for hint in _CLOSING_HINTS:
        if hint in tail:
            m = _CLOSING.search(text, start)
            if m is not None and text[: m.start()].strip():
                text = text[: m.start()]
            break
    return text
