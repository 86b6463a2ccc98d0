"""Quoted replies: cut a ticket at the quoted earlier message ("On ... wrote:", "-----Original
Message-----", header blocks, ``>`` lines) in English, German, French, Spanish and more.
"""

from __future__ import annotations

import re


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
