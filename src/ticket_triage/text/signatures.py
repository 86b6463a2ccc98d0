"""Sign-offs, signatures and legal footers: drop the closing ("Best regards, Anna"), the
``-- `` signature block, "Sent from my iPhone" lines and confidentiality footers.
"""

from __future__ import annotations

import re

from ticket_triage.text.quotes import _cut_at


# --------------------------------------------------------------------------------------
# Sign-offs, signatures, legal footers
# --------------------------------------------------------------------------------------

# Sign-off words, matched case-insensitively inside ``(?i:...)``; names after them are matched
# case-sensitively (a capitalised token), which is what keeps "Thanks, i got it" a sentence.
_WEAK_SIGNOFFS = (
    r"best|best[ \t]+wishes|all[ \t]+the[ \t]+best|take[ \t]+care|respectfully|lg|vg|mfg"
    r"|gruß|gruss|grü(?:ß|ss)e"
)
_STRONG_SIGNOFFS = (
    r"(?:best|kind|warm|warmest|many|kindest|with[ \t]+kind|with[ \t]+best)?[ \t]*regards"
    r"|sincerely(?:[ \t]+yours)?|yours[ \t]+(?:sincerely|truly|faithfully)|cheers"
    r"|thanks?(?:[ \t]+(?:again|a[ \t]+lot|so[ \t]+much|in[ \t]+advance))?"
    r"|thank[ \t]+you(?:[ \t]+(?:again|very[ \t]+much|so[ \t]+much|in[ \t]+advance))?"
    r"|many[ \t]+thanks|thx"
    r"|mit[ \t]+(?:den[ \t]+)?(?:freundlichen|besten|herzlichen|lieben)[ \t]+grü(?:ß|ss)en"
    r"|(?:viele|beste|liebe|herzliche|freundliche|schöne|sonnige)[ \t]+grü(?:ß|ss)e"
    r"|vielen[ \t]+dank(?:[ \t]+im[ \t]+voraus)?|danke(?:[ \t]+schön)?"
    r"|cordialement|bien[ \t]+à[ \t]+vous|bien[ \t]+cordialement|merci(?:[ \t]+d'avance)?"
    r"|saludos(?:[ \t]+cordiales)?|atentamente|un[ \t]+saludo|gracias"
    r"|cordiali[ \t]+saluti|distinti[ \t]+saluti|un[ \t]+saluto|grazie"
    r"|met[ \t]+vriendelijke[ \t]+groet(?:en)?|groeten|bedankt"
    r"|atenciosamente|cumprimentos|obrigad[oa]"
)
_SIGNOFF_WORDS = r"(?i:" + _STRONG_SIGNOFFS + "|" + _WEAK_SIGNOFFS + r")"
_STRONG_WORDS = r"(?i:" + _STRONG_SIGNOFFS + r")"
_PUNCT = r"[,.!:;–—-]"
_NAME_TOKEN = r"(?:[A-ZÀ-ÖØ-Þ][\w'’.-]*|\[[^\]\n]{1,30}\])"
_NAME_TAIL = _NAME_TOKEN + r"(?:[ \t]+" + _NAME_TOKEN + r"){0,3}"
# A whole line that is a sign-off, optionally followed by a short name on the same line:
# "Best regards,", "Thanks!", "Best regards, John Doe", "Cheers John", "Best, Anna".
_SIGNOFF_LINE = re.compile(
    r"^[ \t]*(?:" + _SIGNOFF_WORDS + r"[ \t]*" + _PUNCT + r"*"
    r"|" + _SIGNOFF_WORDS + r"[ \t]*" + _PUNCT + r"+[ \t]*" + _NAME_TAIL
    + r"|" + _STRONG_WORDS + r"[ \t]+" + _NAME_TAIL + r")[ \t]*[,.!]?[ \t]*$",
    re.M,
)
# Strong sign-offs (not "thanks") ending a one-line text: "... Kind regards, John Smith"
_SIGNOFF_TAIL = re.compile(
    r"(?:(?<=[.!?])|^)[ \t]*(?i:(?:best|kind|warm|warmest|many|kindest)[ \t]+regards|regards"
    r"|sincerely|yours[ \t]+(?:sincerely|truly|faithfully)|cheers"
    r"|mit[ \t]+(?:den[ \t]+)?(?:freundlichen|besten|herzlichen|lieben)[ \t]+grü(?:ß|ss)en"
    r"|(?:viele|beste|liebe|herzliche|freundliche)[ \t]+grü(?:ß|ss)e|cordialement|atentamente"
    r"|cordiali[ \t]+saluti|met[ \t]+vriendelijke[ \t]+groet(?:en)?|atenciosamente)"
    r"[ \t]*" + _PUNCT + r"?(?:[ \t]*" + _NAME_TAIL + r")?[ \t]*[,.!]?[ \t]*$"
)
_SIG_DELIMITER = re.compile(r"^-- ?$", re.M)
_MOBILE = re.compile(
    r"^[ \t]*(?:Sent from my [^\n]{1,40}|Sent from (?:Mail|Outlook|Yahoo Mail|Gmail)[^\n]{0,40}"
    r"|Get Outlook for [^\n]{1,30}|Von meinem [^\n]{1,40} gesendet|Gesendet von meinem [^\n]{1,40}"
    r"|Envoyé de mon [^\n]{1,40}|Enviado desde mi [^\n]{1,40}|Inviato da [^\n]{1,40})[ \t]*$",
    re.M | re.I,
)
_MOBILE_HINTS = ("sent from", "get outlook", "gesendet", "envoyé de", "enviado desde", "inviato da")
# Legal / confidentiality / unsubscribe / imprint footers. Deliberately narrow: a customer
# writing "this message contains confidential data" or "I want to unsubscribe" keeps the text.
_FOOTER = re.compile(
    r"\bthis (?:e-?mail|message|communication),? (?:and|including|together with) (?:any|all)"
    r" (?:of its )?(?:files|attachments?|documents)"
    r"|\b(?:confidential|privileged)\b[^\n]{0,60}\bintended (?:solely|only|exclusively) for"
    r"|\bintended (?:solely|only|exclusively) for the (?:use|addressee|named|person|individual)"
    r"|\bif you (?:are not the intended recipient|have received this (?:e-?mail|message|"
    r"communication) in error)"
    r"|\bdiese (?:e-?mail|nachricht) (?:enthält|kann|könnte) (?:\w+ )?vertrauliche"
    r"|\bwenn sie nicht der (?:richtige|beabsichtigte|vorgesehene) (?:adressat|empfänger)"
    r"|\bfalls sie diese (?:e-?mail|nachricht) (?:irrtümlich|versehentlich|fälschlicherweise)"
    r"|(?:^|[.!?][ \t]+)(?:to unsubscribe|if you (?:no longer )?(?:wish|want|would like) to"
    r" (?:unsubscribe|stop receiving))"
    r"|\bclick here to unsubscribe|\bunsubscribe (?:here|now)\b"
    r"|^[ \t]*\[?unsubscribe\]?[ \t]*(?:\||$)"
    r"|\bmanage (?:your )?(?:subscription|e-?mail preferences)"
    r"|\bplease consider the environment before printing"
    r"|\b(?:Geschäftsführer(?:in)?|Amtsgericht|Registergericht|Sitz der Gesellschaft|USt-?IdNr)"
    r"\b[ \t]*[:.]|\bHRB[ \t]*\d",
    re.M | re.I,
)
_FOOTER_HINTS = (
    "confidential", "privileged", "intended recipient", "received this", "vertraulich",
    "adressat", "empfänger", "irrtümlich", "versehentlich", "fälschlicherweise", "unsubscribe",
    "manage your", "manage e", "environment before", "geschäftsführer", "amtsgericht",
    "registergericht", "sitz der gesellschaft", "ust-id", "ustid", "hrb",
)
_STRONG_TAIL_HINTS = (
    "regards", "sincerely", "yours", "cheers", "grü", "cordial", "atentamente", "saluti",
    "groet",
)


def _has_any(haystack: str, needles: tuple[str, ...]) -> bool:
    for needle in needles:
        if needle in haystack:
            return True
    return False


_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n")
_MAX_SIGNOFF_LINE = 120
_SHORT_LINE = 60  # lines after a sign-off at most this long are taken as name/title/company
_MAX_SIG_LINES = 6


def strip_signature(text: str) -> str:
    """Remove sign-offs and the short lines after them, "-- " signatures, "Sent from my …"
    lines and legal/confidentiality/unsubscribe footer paragraphs.

    Nothing is removed unless real content stays in front of it.
    """
    if "\n--" in text:
        text = _cut_at(text, _SIG_DELIMITER)
    low = text.lower()
    if _has_any(low, _MOBILE_HINTS):
        text = _cut_at(text, _MOBILE)
    if _has_any(low, _FOOTER_HINTS):
        text = _drop_footer_paragraphs(text)
    if "\n" in text:
        text = _drop_signoff_blocks(text)
    start = max(0, len(text) - 160)
    if _has_any(text[start:].lower(), _STRONG_TAIL_HINTS):
        m = _SIGNOFF_TAIL.search(text, start)
        if m is not None and text[: m.start()].strip():
            text = text[: m.start()]
    return text


def _drop_signoff_blocks(text: str) -> str:
    lines = text.split("\n")
    if not any(len(x) <= _MAX_SIGNOFF_LINE and _SIGNOFF_LINE.match(x) for x in lines[1:]):
        return text
    out: list[str] = []
    seen_content = False
    i, n = 0, len(lines)
    while i < n:
        line = lines[i]
        if seen_content and len(line) <= _MAX_SIGNOFF_LINE and _SIGNOFF_LINE.match(line):
            i += 1
            kept = 0
            while i < n:
                nxt = lines[i].strip()
                if not nxt:
                    i += 1
                    continue
                if len(nxt) <= _SHORT_LINE and kept < _MAX_SIG_LINES:
                    kept += 1
                    i += 1
                    continue
                break
            continue
        if line.strip():
            seen_content = True
        out.append(line)
        i += 1
    return "\n".join(out)


def _drop_footer_paragraphs(text: str) -> str:
    paragraphs = _PARAGRAPH_BREAK.split(text)
    if len(paragraphs) == 1:
        # One paragraph: cut at the footer sentence if something real precedes it.
        return _cut_at(text, _FOOTER)
    kept: list[str] = []
    for para in paragraphs:
        if kept and any(p.strip() for p in kept) and _FOOTER.search(para):
            continue
        kept.append(para)
    return "\n\n".join(kept)
