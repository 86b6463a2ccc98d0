"""THE cleaning function: one normaliser for training, serving, the LLM call and review.

``clean_text(subject, body)`` turns a raw ticket (plain text or HTML e-mail, possibly with
literal ``\\n`` escapes left by an export) into the text every model sees::

    coerce -> literal escapes -> HTML to text -> control/zero-width chars -> quoted replies
    -> sign-offs, signatures, legal footers -> PII redaction -> whitespace -> truncation

``redact_pii(text)`` (``ticket_triage.text.pii``, re-exported here) replaces personal data with
typed placeholders (``[EMAIL]``, ``[SECRET]``, ``[IBAN]``, ``[CARD]``, ``[PHONE]``, ...).

Everything here is stdlib regexes compiled at import (no other work at import time) and is on
the serving hot path: every expensive rule is guarded by a cheap substring test. Bump
``CLEANING_VERSION`` whenever the output of ``clean_text`` changes for some input; it is
recorded with every model so training and serving can be checked to agree.
"""

from __future__ import annotations

import html
import logging
import re
import unicodedata
from typing import Any

__all__ = [
    "CLEANING_VERSION",
    "PLACEHOLDERS",
    "clean_text",
    "clean_subject",
    "html_to_text",
    "looks_like_html",
    "luhn_valid",
    "iban_valid",
    "normalize_whitespace",
    "redact_pii",
    "strip_quoted_reply",
    "strip_signature",
    "unescape_literals",
]

CLEANING_VERSION = "2"  # 2: PII redaction of issue 14 (text/pii.py)

_log = logging.getLogger(__name__)


# Raw input beyond this many times ``max_chars`` is cut before any processing (bounds the
# cost of pathological inputs; HTML and quotes usually shrink text by less than this).
_RAW_FACTOR = 10

# --------------------------------------------------------------------------------------
# Coercion, literal escapes, control characters, whitespace
# --------------------------------------------------------------------------------------

# "\n", "\r\n", "\r", "\t" written out as two characters (not preceded by another backslash,
# so an escaped backslash "\\n" stays as it is).
_LITERAL_ESCAPE = re.compile(r"(?<!\\)\\(?:r\\n|n|r|t)")
_LITERAL_MAP = {"\\r\\n": "\n", "\\n": "\n", "\\r": "\n", "\\t": "\t"}

# C0/C1 controls except \t \n, zero-width and bidi marks, BOM, soft hyphen.
_CONTROL = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u00ad\u200b-\u200f\u202a-\u202e\u2060-\u2064\ufeff\ufffe\uffff]"
)
_LINE_SEP = re.compile("\r\n?|[\u2028\u2029\x85]")
# Horizontal whitespace other than the plain space (tabs, NBSP, en/em spaces, ...); explicit
# classes are much faster in ``re`` than the negated category [^\S\n].
_OTHER_SPACE = re.compile("[\t\x0b\x0c\x1c-\x1f\xa0\u1680\u2000-\u200a\u202f\u205f\u3000]")
_MULTI_SPACE = re.compile(" {2,}")
_SPACE_AROUND_NL = re.compile(r" ?\n ?")
_MANY_NL = re.compile(r"\n{3,}")
_SURROGATE = re.compile("[\ud800-\udfff]")


def _coerce(value: Any) -> str:
    """Any value to ``str``: None -> "", bytes decoded as UTF-8 (bad bytes replaced)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", errors="replace")
    if isinstance(value, float) and value != value:  # NaN from pandas
        return ""
    if type(value).__name__ in ("NAType", "NaTType"):  # pandas.NA / pandas.NaT
        return ""
    try:
        return str(value)
    except Exception:  # noqa: BLE001 - a broken __str__ must not break cleaning
        return ""


def unescape_literals(text: str) -> str:
    """Turn literal ``\\n``, ``\\r\\n``, ``\\r``, ``\\t`` sequences (left by exports) into real ones."""
    if "\\" not in text:
        return text
    return _LITERAL_ESCAPE.sub(lambda m: _LITERAL_MAP[m.group(0)], text)


def normalize_whitespace(text: str) -> str:
    """Unify line breaks, collapse runs of spaces/tabs, strip lines, keep at most one blank line."""
    if not text:
        return ""
    if "\r" in text or "\u2028" in text or "\u2029" in text or "\x85" in text:
        text = _LINE_SEP.sub("\n", text)
    if "\t" in text or not text.isascii() or "\x0b" in text or "\x0c" in text:
        text = _OTHER_SPACE.sub(" ", text)
    if "  " in text:
        text = _MULTI_SPACE.sub(" ", text)
    if " \n" in text or "\n " in text:
        text = _SPACE_AROUND_NL.sub("\n", text)
        if "\n\n\n" in text:
            text = _MANY_NL.sub("\n\n", text)
    return text.strip()


def _remove_controls(text: str) -> str:
    text = _CONTROL.sub("", text)
    if not text.isascii():
        # Lone surrogates (from bad decoding) cannot be encoded later: drop them.
        text = _SURROGATE.sub("", text)
        if not unicodedata.is_normalized("NFC", text):
            text = unicodedata.normalize("NFC", text)
    return text


# --------------------------------------------------------------------------------------
# HTML
# --------------------------------------------------------------------------------------

_HTML_TAGS = (
    "a|abbr|address|article|aside|b|base|bdi|bdo|big|blockquote|body|br|button|caption|center|"
    "cite|code|col|colgroup|dd|del|details|dfn|div|dl|dt|em|fieldset|figcaption|figure|font|"
    "footer|form|h[1-6]|head|header|hr|html|i|img|input|ins|kbd|label|legend|li|link|main|mark|"
    "meta|nav|o:p|ol|option|p|pre|q|s|samp|section|select|small|span|strike|strong|sub|summary|"
    "sup|table|tbody|td|textarea|tfoot|th|thead|time|title|tr|tt|u|ul|var|wbr"
)
_HTML_HINT = re.compile(r"<(?:/?(?:" + _HTML_TAGS + r")\b[^<>]*>|!--|!doctype)", re.I)
_HTML_COMMENT = re.compile(r"<!--.*?(?:-->|$)|<!doctype[^>]*>", re.I | re.S)
_HTML_DROP = re.compile(r"<(script|style|head|title)\b[^>]*>.*?(?:</\1\s*>|$)", re.I | re.S)
_HTML_BLOCKQUOTE = re.compile(r"<blockquote\b.*(?:</blockquote\s*>|$)", re.I | re.S)
_HTML_BLOCK = re.compile(
    r"<(?:br|/?(?:p|div|li|tr|h[1-6]|table|ul|ol|dl|dt|dd|blockquote|pre|section|article|header|"
    r"footer|hr|address|center|form|fieldset|main|nav|aside|figure|details|summary|caption))\b[^<>]*>",
    re.I,
)
_HTML_CELL = re.compile(r"</?(?:td|th)\b[^<>]*>", re.I)
_HTML_ANY_TAG = re.compile(r"</?(?:" + _HTML_TAGS + r")\b[^<>]*>", re.I)
_ENTITY_HINT = re.compile(r"&(?:#\d{1,7}|#x[0-9a-f]{1,6}|[a-z][a-z0-9]{1,31});", re.I)
_LINE_WS = re.compile(r"[ \t]*\n[ \t]*")
_HTML_DOCUMENT = re.compile(r"<(?:html|body|p|div|table|ul|ol|li|td|h[1-6])\b", re.I)


def looks_like_html(text: str) -> bool:
    """True when the text contains a known HTML tag, comment or doctype."""
    return "<" in text and _HTML_HINT.search(text) is not None


def html_to_text(text: str, *, drop_quotes: bool = False) -> str:
    """HTML to plain text: block tags become line breaks, script/style dropped, entities unescaped.

    In a real HTML document (with <p>, <div>, <table>, ... tags) source line breaks are layout
    and become spaces; text that only uses ``<br>`` keeps its own line breaks. With ``drop_quotes`` the ``<blockquote>`` (quoted reply) and everything after it is dropped.
    """
    text = _HTML_COMMENT.sub(" ", text)
    text = _HTML_DROP.sub(" ", text)
    if drop_quotes and "blockquote" in text.lower():
        head = _HTML_BLOCKQUOTE.sub(" ", text)
        if head.strip():
            text = head
    if _HTML_DOCUMENT.search(text):
        text = _LINE_WS.sub(" ", text)
    text = _HTML_BLOCK.sub("\n", text)
    text = _HTML_CELL.sub(" ", text)
    text = _HTML_ANY_TAG.sub("", text)
    return html.unescape(text)


# --------------------------------------------------------------------------------------
# Quoted replies
# --------------------------------------------------------------------------------------

_QUOTE_HEADER = re.compile(
    r"^[ \t]*(?:"
    # English: "On Mon, 3 Jun 2024 at 10:00, John <j@x.com> wrote:" (may wrap once)
    r"On\b[^\n]{0,250}(?:\n[^\n]{0,250})?\bwrote:"
    # German: "Am 03.06.2024 um 10:00 schrieb John Doe <j@x.com>:"
    r"|Am\b[^\n]{0,250}(?:\n[^\n]{0,250})?\bschrieb\b[^\n]{0,250}:"
    # French: "Le 3 juin 2024 à 10:00, Jean a écrit :"
    r"|Le\b[^\n]{0,250}(?:\n[^\n]{0,250})?\ba écrit ?:"
    # Spanish: "El 3 jun 2024, Juan escribió:"
    r"|El\b[^\n]{0,250}(?:\n[^\n]{0,250})?\bescribió ?:"
    r")[ \t]*$",
    re.M,
)
_ORIGINAL_MESSAGE = re.compile(
    r"^[ \t]*-{2,}[ \t]*(?:Original Message|Ursprüngliche Nachricht|Originalnachricht|"
    r"Message d'origine|Mensaje original|Messaggio originale)[ \t]*-{2,}",
    re.M | re.I,
)
# Outlook header block: "From: ..." followed within a few lines by "Sent:"/"Date:"
_HEADER_BLOCK = re.compile(
    r"^[ \t]*(?:\*\s*)?(?:From|Von|De|Da)[ \t]*:[^\n]*\n(?:[^\n]*\n){0,3}?[ \t]*(?:\*\s*)?"
    r"(?:Sent|Date|Gesendet|Datum|Envoyé|Enviado|Inviato)[ \t]*:",
    re.M | re.I,
)
_UNDERSCORE_RULE = re.compile(r"^[ \t]*_{10,}[ \t]*$", re.M)
_QUOTED_LINE = re.compile(r"^[ \t]*>[^\n]*(?:\n|$)", re.M)
_QUOTE_MARK = re.compile(r"^[ \t]*(?:>[ \t]?)+", re.M)
_QUOTE_LINE_HINT = re.compile(r"\n[ \t]*>")


def _cut_at(text: str, pattern: re.Pattern[str]) -> str:
    """Cut ``text`` at the first match of ``pattern`` that has real content before it."""
    for m in pattern.finditer(text):
        head = text[: m.start()]
        if head.strip():
            return head
    return text


def strip_quoted_reply(text: str) -> str:
    """Remove quoted earlier messages: "On … wrote:" / "Am … schrieb …:" and all after it,
    "-----Original Message-----", Outlook "From: … Sent: …" blocks, and ``>`` lines.

    A header at the very top (a forward with nothing written above it) is left in place so the
    ticket keeps its content; ``>`` markers are then removed instead of the lines.
    """
    if "wrote" in text or "schrieb" in text or "écrit" in text or "escribió" in text:
        text = _cut_at(text, _QUOTE_HEADER)
    if "--" in text:
        text = _cut_at(text, _ORIGINAL_MESSAGE)
    if ":" in text:
        text = _cut_at(text, _HEADER_BLOCK)
    if "__________" in text:
        text = _cut_at(text, _UNDERSCORE_RULE)
    if ">" in text and (text.lstrip(" \t").startswith(">") or _QUOTE_LINE_HINT.search(text)):
        stripped = _QUOTED_LINE.sub("", text)
        text = stripped if stripped.strip() else _QUOTE_MARK.sub("", text)
    return text


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


# --------------------------------------------------------------------------------------
# PII (ticket_triage.text.pii imports this module's sign-off patterns, hence the late imports)
# --------------------------------------------------------------------------------------


def redact_pii(text: str) -> str:
    """``ticket_triage.text.pii.redact_pii``: personal data to typed placeholders."""
    from ticket_triage.text.pii import redact_pii as _redact

    return _redact(text)


def __getattr__(name: str) -> Any:
    if name in ("PLACEHOLDERS", "luhn_valid", "iban_valid"):
        from ticket_triage.text import pii

        return getattr(pii, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# --------------------------------------------------------------------------------------
# The cleaning function
# --------------------------------------------------------------------------------------

_SUBJECT_PREFIX = re.compile(
    r"^(?:\s*(?:re|fw|fwd|aw|wg|antw|tr|rv|r|sv|vs|ref)\s*(?:\[\d+\])?\s*:\s*)+", re.I
)


def clean_subject(subject: Any) -> str:
    """One-line subject without reply/forward prefixes (Re:, Fwd:, AW:, WG:, …)."""
    s = _coerce(subject)
    if not s:
        return ""
    s = unescape_literals(s)
    if "<" in s and looks_like_html(s):
        s = html_to_text(s)
    s = _remove_controls(s)
    if ":" in s:
        s = _SUBJECT_PREFIX.sub("", s)
    return normalize_whitespace(s.replace("\n", " "))


def clean_text(
    subject: Any,
    body: Any,
    *,
    redact: bool = True,
    strip_quotes: bool = True,
    strip_signatures: bool = True,
    max_chars: int | None = 20000,
) -> str:
    """Return the cleaned ticket text: ``"subject\\n\\nbody"`` (just the body when there is no
    subject, just one copy when the body already starts with the subject).

    Never raises on ``str`` (or None/bytes/other) input; see the module docstring for the steps.
    Should a rule ever fail, a minimal cleaning (controls, whitespace, redaction) is returned
    and a warning logged. Raises ``ValueError`` only for a negative ``max_chars``.
    """
    if max_chars is not None and max_chars < 0:
        raise ValueError(f"max_chars must be a non-negative int or None, got {max_chars!r}")
    try:
        return _clean(subject, body, redact, strip_quotes, strip_signatures, max_chars)
    except Exception:  # noqa: BLE001 - a cleaning bug must not drop a ticket or crash serving
        _log.warning(
            "clean_text failed; using minimal cleaning (report this input as a bug)", exc_info=True
        )
        return _fallback(subject, body, redact, max_chars)


def _fallback(subject: Any, body: Any, redact: bool, max_chars: int | None) -> str:
    """Minimal cleaning; returns "" rather than unredacted text if even redaction fails."""
    try:
        text = _remove_controls(_coerce(subject) + "\n\n" + unescape_literals(_coerce(body)))
        if max_chars is not None:
            text = text[: max_chars * _RAW_FACTOR + 1000]
        if redact:
            text = redact_pii(text)
        text = normalize_whitespace(text)
        return text[:max_chars].rstrip() if max_chars is not None else text
    except Exception:  # noqa: BLE001
        _log.error("clean_text fallback failed; returning an empty text", exc_info=True)
        return ""


def _clean(
    subject: Any,
    body: Any,
    redact: bool,
    strip_quotes: bool,
    strip_signatures: bool,
    max_chars: int | None,
) -> str:
    subj = clean_subject(subject)
    text = _coerce(body)
    if max_chars is not None and len(text) > max_chars * _RAW_FACTOR + 1000:
        text = text[: max_chars * _RAW_FACTOR + 1000]
    text = unescape_literals(text)
    if "\r" in text:
        text = _LINE_SEP.sub("\n", text)
    if "<" in text and looks_like_html(text):
        text = html_to_text(text, drop_quotes=strip_quotes)
    elif "&" in text and _ENTITY_HINT.search(text):
        text = html.unescape(text)
    text = _remove_controls(text)
    if strip_quotes:
        text = strip_quoted_reply(text)
    if strip_signatures:
        text = strip_signature(text)
    if redact:
        text = redact_pii(text)
        subj = redact_pii(subj) if subj else subj
    text = normalize_whitespace(text)
    if subj:
        if not text:
            text = subj
        elif not text[: len(subj)].lower() == subj.lower():
            text = subj + "\n\n" + text
    if max_chars is not None and len(text) > max_chars:
        text = text[:max_chars].rstrip()
    return text
