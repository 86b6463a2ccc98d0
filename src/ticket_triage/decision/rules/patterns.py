"""Rule patterns to regexes: keywords on word boundaries (whitespace, apostrophes, trailing
``*``), raw ``re:`` patterns, one alternation per rule with a first-character guard.
"""

from __future__ import annotations

import re
from typing import Any


def keyword_to_regex(pattern: str, bounded: bool = True) -> str:
    """Translate one pattern (keyword or ``re:`` regex) into regex source; ``bounded=False``
    leaves off a keyword's word-boundary guards (the caller adds them once for a group)."""
    if pattern.startswith("re:"):
        return pattern[3:]
    kw = pattern.strip()
    wildcard = kw.endswith("*")
    if wildcard:
        kw = kw[:-1]
    parts = []
    for ch in kw:
        if ch.isspace():
            if not parts or parts[-1] != r"\s+":
                parts.append(r"\s+")
        elif ch in "'’":
            parts.append("['’]")
        elif ch == "-":
            parts.append(r"[-\s]?")
        else:
            parts.append(re.escape(ch))
    body = "".join(parts)
    if wildcard:
        body += r"\w*"
    # word boundaries that also work for keywords starting/ending with a non-word character
    return rf"(?<!\w){body}(?!\w)" if bounded else body


def _first_chars(source: str) -> set[str] | None:
    """The characters a match of ``source`` can start with, or None when any character can
    (or the pattern is too complex to tell). Used to put a ``(?=[...])`` guard in front of a
    rule's alternation so the regex engine skips most positions of a long text quickly."""
    try:
        from re import _constants as C, _parser as P  # CPython >= 3.11
    except ImportError:  # pragma: no cover - older Pythons: no guard, still correct
        return None
    try:
        tree = P.parse(source, re.IGNORECASE)
    except Exception:  # pragma: no cover - compile() reports bad regexes
        return None

    def seq(items: Any) -> tuple[set[str] | None, bool]:
        acc: set[str] = set()
        for op, av in items:
            f, nullable = item(op, av)
            if f is None:
                return None, False
            acc |= f
            if not nullable:
                return acc, False
        return acc, True

    def item(op: Any, av: Any) -> tuple[set[str] | None, bool]:
        if op is C.LITERAL:
            return {chr(av)}, False
        if op in (C.AT, C.ASSERT, C.ASSERT_NOT):
            return set(), True  # zero width
        if op is C.IN:
            out: set[str] = set()
            for iop, iav in av:
                if iop is C.LITERAL:
                    out.add(chr(iav))
                elif iop is C.RANGE and iav[1] - iav[0] < 512:
                    out |= {chr(c) for c in range(iav[0], iav[1] + 1)}
                else:
                    return None, False
            return out, False
        if op is C.SUBPATTERN:
            return seq(av[-1])
        if op is C.BRANCH:
            acc: set[str] = set()
            nullable = False
            for branch in av[1]:
                f, n = seq(branch)
                if f is None:
                    return None, False
                acc |= f
                nullable = nullable or n
            return acc, nullable
        if op in (C.MAX_REPEAT, C.MIN_REPEAT) or getattr(C, "POSSESSIVE_REPEAT", None) is op:
            f, n = seq(av[2])
            return f, (n or av[0] == 0)
        return None, False

    first, nullable = seq(tree)
    if first is None or nullable or not first:
        return None
    out: set[str] = set()
    for ch in first:
        out |= {ch, ch.lower(), ch.upper()}
    return {c for c in out if len(c) == 1}


def _compile(patterns: list[str], what: str = "") -> re.Pattern[str]:
    """One alternation for a rule: keywords share one pair of word-boundary guards, raw
    regexes follow as they are, and a first-character guard skips hopeless positions."""
    kws = [keyword_to_regex(p, bounded=False) for p in patterns if not p.startswith("re:")]
    raws = [p[3:] for p in patterns if p.startswith("re:")]
    alts = []
    if kws:
        alts.append(r"(?<!\w)(?:" + "|".join(kws) + r")(?!\w)")
    alts += [f"(?:{r})" for r in raws]
    source = "|".join(alts)
    first = _first_chars(source)
    if first:
        cls = "".join(sorted(re.escape(c) for c in first))
        source = f"(?=[{cls}])(?:{source})"
    return re.compile(source, re.IGNORECASE)
