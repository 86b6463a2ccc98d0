"""Rule records and their ordering: ``Rule``, ``RuleHit``, ``RuleOutcome``, ``RuleError``, the
rule kinds, and the precedence helpers (``more_urgent``, ``more_conservative``).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any


KINDS: tuple[str, ...] = ("security_incident", "legal_privacy", "refund", "public_escalation", "topic")
URGENCY_ORDER: tuple[str, ...] = ("P0", "P1", "P2", "P3")  # most urgent first
PIN_BANDS: tuple[str, ...] = ("review", "draft")  # most conservative first
DEFAULT_NEGATION_WINDOW = 3
MAX_HITS_PER_RULE = 5  # hits kept per rule and text (explanations stay small on huge texts)
DEFAULT_MAX_CHARS = 50_000  # only the first max_chars characters are scanned (see match)
DEFAULT_NEAR_WINDOW = 6  # tokens either side of a match searched for a ``near`` cue
DEFAULT_MAX_FIRE_SHARE = 0.05  # the rule report flags a rule firing on more training tickets

_RULE_KEYS = {"id", "kind", "patterns", "negations", "unless", "set_topic", "raise_urgency",
              "pin_band", "secondary_tag", "priority", "description", "near", "near_window"}
_TOKEN_RE = re.compile(r"\S+")
_CLAUSE_BREAK_RE = re.compile(r"[.;!?\n]|\bbut\b|\baber\b|\bhowever\b|\bjedoch\b", re.IGNORECASE)
_SENTENCE_BREAK_RE = re.compile(r"[.;!?](?:\s|$)|\n")


class RuleError(ValueError):
    """The rule configuration is not usable; ``problems`` lists every problem found."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        super().__init__(f"invalid rules {source}:\n  - " + "\n  - ".join(problems)
                         + "\nFix the rule file (see the header of conf/rules/banking.yaml).")


def more_urgent(a: str | None, b: str | None) -> str | None:
    """The more urgent of two urgency levels (None counts as 'no opinion')."""
    if a is None:
        return b
    if b is None:
        return a
    return a if URGENCY_ORDER.index(a) <= URGENCY_ORDER.index(b) else b


def more_conservative(a: str | None, b: str | None) -> str | None:
    """The more conservative of two pinned bands (``review`` beats ``draft``)."""
    if a is None:
        return b
    if b is None:
        return a
    return a if PIN_BANDS.index(a) <= PIN_BANDS.index(b) else b


@dataclass(frozen=True)
class Rule:
    """One validated rule (see the module docstring for the fields)."""

    id: str
    kind: str
    patterns: tuple[str, ...]
    negations: tuple[str, ...] = ()
    unless: tuple[str, ...] = ()
    set_topic: str | None = None
    raise_urgency: str | None = None
    pin_band: str | None = None
    secondary_tag: str | None = None
    priority: int = 0
    description: str = ""
    order: int = 0
    near: tuple[str, ...] = ()  # a match counts only with one of these cues close by
    near_window: int = DEFAULT_NEAR_WINDOW

    @property
    def actions(self) -> dict[str, Any]:
        acts = {"set_topic": self.set_topic, "raise_urgency": self.raise_urgency,
                "pin_band": self.pin_band, "secondary_tag": self.secondary_tag}
        return {k: v for k, v in acts.items() if v is not None}


@dataclass
class RuleHit:
    """One match of one rule in one text."""

    rule_id: str
    kind: str
    text: str
    start: int
    end: int
    actions: dict[str, Any]
    priority: int = 0
    order: int = 0

    @property
    def span(self) -> tuple[int, int]:
        return (self.start, self.end)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class RuleOutcome:
    """What the rules decided for one text (see the precedence in the module docstring)."""

    topic: str | None = None
    urgency: str | None = None
    pinned_band: str | None = None
    secondary_tags: list[str] = field(default_factory=list)
    hits: list[RuleHit] = field(default_factory=list)
    topic_rule: str | None = None  # the rule whose set_topic won
    pin_rule: str | None = None  # the first rule that pinned the winning band

    @property
    def fired(self) -> bool:
        return bool(self.hits)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["hits"] = [h.to_dict() for h in self.hits]
        return d
