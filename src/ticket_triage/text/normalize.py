"""Text normalisation shared by every cleaning step: coercion of any value to ``str``, literal
``\\n`` escapes left by exports, control / zero-width characters and whitespace.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any


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
