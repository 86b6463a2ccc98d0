"""Deterministic keyword / regex rules that run before the model.

A rule file is YAML (``conf/rules/banking.yaml``; Hydra group ``rules``, composed into
``params.yaml`` under ``rules``)::

    version: 1
    negation_window: 3                  # tokens before a match searched for a negation cue
    max_chars: 50000                    # only the start of longer texts is scanned
    negation_sets:                      # named cue lists rules can refer to
      default: ["not", "never", "re:\\w+n['’]t", "nicht", "kein*"]
    rules:
      - id: lost_or_stolen
        kind: topic                     # security_incident | legal_privacy | refund |
                                        # public_escalation | topic
        patterns: ["stolen", "gestohlen", "lost my card", "re:card (was|got) lost"]
        negations: default              # a list of cues, or the name of a negation set
        unless: ["found"]               # the rule does not fire if any of these occur anywhere
        set_topic: fraud_and_security   # a taxonomy topic id
        raise_urgency: P1               # P0..P3
        pin_band: review                # review | draft (a pinned ticket never auto-routes)
        secondary_tag: fraud
        priority: 100

Patterns are keywords by default: case-insensitive, matched on word boundaries (a keyword never
matches inside a longer word), any run of whitespace in the keyword matches any whitespace in
the text, an apostrophe matches ``'`` or ``’``, and a trailing ``*`` matches the rest of the word
(``verklag*`` matches "verklagen", "verklage"). A pattern that starts with ``re:`` is a raw
regular expression (case-insensitive; add your own ``\\b``). Each rule compiles its patterns into
one alternation regex, so matching costs one scan of the text per rule.

Negation (cheap on purpose): a hit is suppressed when one of the rule's negation cues starts in
the ``negation_window`` tokens before the match (within the same clause: the window stops at
``. ; ! ?`` and at "but" / "aber"), or starts before the match and runs into it ("not stolen").
``unless`` patterns veto the whole rule for that text (e.g. "found" for lost cards: a card that
was lost and is found again is a card-linking question).

Precedence (how :meth:`RuleSet.resolve` combines hits):

* rules run before the model; a rule's decisions override the model's;
* ``set_topic``: among hits that set a topic, the highest ``priority`` wins; ties go to the
  rule that comes first in the file;
* ``pin_band``: the most conservative band of all hits wins (``review`` over ``draft``);
* ``raise_urgency``: the most urgent level of all hits (P0 > P1 > P2 > P3), and the caller
  combines it with the model / taxonomy urgency by taking the more urgent one;
* ``secondary_tag``: every tag of every hit, in file order, without duplicates;
* every hit is kept in ``RuleOutcome.hits`` (rule id, kind, matched text and span, actions)
  so a decision can explain itself.

Modules: ``types`` (the records and precedence helpers), ``patterns`` (keywords to regexes),
``loader`` (rule files, validation) and ``ruleset`` (matching and resolving). This package
re-exports their public names.
"""

from __future__ import annotations

from ticket_triage.decision.rules.patterns import keyword_to_regex
from ticket_triage.decision.rules.ruleset import RuleSet
from ticket_triage.decision.rules.types import (
    KINDS,
    Rule,
    RuleError,
    RuleHit,
    RuleOutcome,
    more_conservative,
    more_urgent,
)

__all__ = ["KINDS", "Rule", "RuleError", "RuleHit", "RuleOutcome", "RuleSet", "keyword_to_regex",
           "more_conservative", "more_urgent"]
