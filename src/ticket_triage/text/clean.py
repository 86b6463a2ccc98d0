"""THE cleaning function: one normaliser for training, serving, the LLM call and review.

``clean_text(subject, body)`` turns a raw ticket (plain text or HTML e-mail, possibly with
literal ``\\n`` escapes left by an export) into the text every model sees::

    coerce -> literal escapes -> HTML to text -> control/zero-width chars -> quoted replies
    -> sign-offs, signatures, legal footers -> opening greeting, closing thanks
    -> PII redaction -> whitespace -> truncation

The steps live beside it: ``html`` (HTML to text), ``quotes`` (quoted replies), ``signatures``
(sign-offs, signatures, legal footers), ``greetings`` ("Hi team," at the start, "Thanks." at
the end) and ``pii`` (``redact_pii``: typed placeholders such as
``[EMAIL]``, ``[SECRET]``, ``[IBAN]``; idempotent; re-exported here). ``normalize`` holds coercion, literal escapes, control characters and whitespace.
This module owns the order of the steps and ``CLEANING_VERSION``.

Everything here is stdlib regexes compiled at import (no other work at import time) and is on
the serving hot path: every expensive rule is guarded by a cheap substring test. Bump
``CLEANING_VERSION`` whenever the output of ``clean_text`` changes for some input; it is
recorded with every model so training and serving can be checked to agree.
"""

from __future__ import annotations

import html
import logging
import re
from dataclasses import asdict, dataclass
from typing import Any, Mapping

from ticket_triage.text.greetings import strip_greeting
from ticket_triage.text.html import _ENTITY_HINT, html_to_text, looks_like_html
from ticket_triage.text.normalize import (
    _LINE_SEP,
    _coerce,
    _remove_controls,
    normalize_whitespace,
    unescape_literals,
)
from ticket_triage.text.pii import PLACEHOLDERS, iban_valid, luhn_valid, redact_pii
from ticket_triage.text.quotes import strip_quoted_reply
from ticket_triage.text.signatures import strip_signature


__all__ = [
    "CLEANING_VERSION",
    "CleanConfig",
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
    "strip_greeting",
    "strip_signature",
    "unescape_literals",
]

CLEANING_VERSION = "4"  # 2: PII redaction of issue 14 (text/pii.py); 3: greetings (text/greetings.py);
# 4: version / build numbers and log fields are no longer [PHONE] (text/pii.py)

_log = logging.getLogger(__name__)


# Raw input beyond this many times ``max_chars`` is cut before any processing (bounds the
# cost of pathological inputs; HTML and quotes usually shrink text by less than this).
_RAW_FACTOR = 10


# --------------------------------------------------------------------------------------
# The cleaning function
# --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CleanConfig:
    """The cleaning options: the ``clean`` params section, saved in every bundle as ``clean.json``.

    Built once and passed to every caller (the clean stage, ``Triage.clean`` from the bundle's
    ``clean.json``, the review store, the helpdesk adapters), so a ticket is cleaned the same
    way at training and at serving time. ``dedupe`` is the clean stage's de-duplication and
    ``max_unmapped_share`` the share of set-aside tickets above which it fails (not text
    options); unknown keys are refused (``ticket_triage.config.strict_section``)."""

    redact_pii: bool = True
    strip_quotes: bool = True
    strip_signatures: bool = True
    strip_greetings: bool = True
    dedupe: bool = True
    max_chars: int | None = 20000
    max_unmapped_share: float = 0.05

    @classmethod
    def from_dict(cls, d: "Mapping[str, Any] | CleanConfig | None") -> "CleanConfig":
        if isinstance(d, CleanConfig):
            return d
        from ticket_triage.config import strict_section

        return strict_section(cls, d, "clean")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def apply(self, subject: Any, body: Any) -> str:
        """``clean_text(subject, body)`` with these options."""
        return clean_text(subject, body, redact=self.redact_pii, strip_quotes=self.strip_quotes,
                          strip_signatures=self.strip_signatures, strip_greetings=self.strip_greetings,
                          max_chars=self.max_chars)


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
    strip_greetings: bool = True,
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
        return _clean(subject, body, redact, strip_quotes, strip_signatures, max_chars, strip_greetings)
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
    strip_greetings: bool = True,
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
    if strip_greetings:
        text = strip_greeting(text)
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
