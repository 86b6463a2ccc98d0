"""``RuleSet``: match every rule against a text (with negation and ``unless`` vetoes) and resolve
the hits into one ``RuleOutcome`` by the precedence documented in the package docstring.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from ticket_triage.decision.rules.loader import _parse, _to_plain
from ticket_triage.decision.rules.patterns import _compile
from ticket_triage.decision.rules.types import (
    DEFAULT_MAX_CHARS,
    DEFAULT_MAX_FIRE_SHARE,
    DEFAULT_NEGATION_WINDOW,
    MAX_HITS_PER_RULE,
    Rule,
    RuleError,
    RuleHit,
    RuleOutcome,
    _CLAUSE_BREAK_RE,
    _SENTENCE_BREAK_RE,
    _TOKEN_RE,
    more_conservative,
    more_urgent,
)


class RuleSet:
    """A validated, compiled list of rules. Build it with :meth:`from_config`."""

    def __init__(self, rules: list[Rule], *, negation_window: int = DEFAULT_NEGATION_WINDOW,
                 max_chars: int = DEFAULT_MAX_CHARS, config: dict[str, Any] | None = None):
        self.rules = list(rules)
        self.negation_window = int(negation_window)
        self.max_chars = int(max_chars)
        self.config = config or {}
        #: the rule report (``rules.report``) flags a rule that fires on a larger share of tickets
        self.max_fire_share = float(self.config.get("max_fire_share", DEFAULT_MAX_FIRE_SHARE))
        self._compiled = [
            (r, _compile(list(r.patterns), r.id),
             _compile(list(r.negations), r.id) if r.negations else None,
             _compile(list(r.unless), r.id) if r.unless else None)
            for r in self.rules
        ]
        self._near = {r.id: _compile(list(r.near), r.id) for r in self.rules if r.near}

    # -- construction --------------------------------------------------------------------------
    @classmethod
    def from_config(cls, cfg: Mapping[str, Any] | str | Path | None,
                    taxonomy: Any = None) -> "RuleSet":
        """Build from a parsed config dict (or OmegaConf node) or a YAML file path.

        ``taxonomy`` (a :class:`~ticket_triage.taxonomy.Taxonomy` or a list of topic ids), when
        given, checks every ``set_topic`` against it. Raises :class:`RuleError` listing every
        problem (unknown kind, bad regex naming the rule id, unknown topic, ...).
        """
        source = "<dict>"
        if cfg is None:
            cfg = {}
        if isinstance(cfg, (str, Path)):
            path = Path(cfg)
            source = str(path)
            if not path.is_file():
                raise RuleError(source, [f"file not found: {path}"])
            try:
                cfg = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
            except yaml.YAMLError as exc:
                raise RuleError(source, [f"not valid YAML: {exc}"]) from exc
        else:
            cfg = _to_plain(cfg)
        if not isinstance(cfg, dict):
            raise RuleError(source, ["the rules config must be a mapping with a 'rules' list"])
        topic_ids: set[str] | None = None
        if taxonomy is not None:
            topic_ids = set(getattr(taxonomy, "topic_ids", taxonomy))
        rules, window, max_chars = _parse(cfg, source, topic_ids)
        return cls(rules, negation_window=window, max_chars=max_chars, config=cfg)

    load = from_config  # the name docs/CONTRACTS.md uses

    def to_dict(self) -> dict[str, Any]:
        """The config this rule set was built from (JSON/YAML-serialisable)."""
        return _to_plain(self.config)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], taxonomy: Any = None) -> "RuleSet":
        return cls.from_config(d, taxonomy=taxonomy)

    def __len__(self) -> int:
        return len(self.rules)

    def rule(self, rule_id: str) -> Rule:
        for r in self.rules:
            if r.id == rule_id:
                return r
        raise KeyError(f"unknown rule {rule_id!r}; known: {', '.join(r.id for r in self.rules)}")

    # -- matching ------------------------------------------------------------------------------
    def match(self, text: str | bytes | None) -> list[RuleHit]:
        """Every (non-negated) hit of every rule in ``text``, in rule order then text order.

        Accepts ``None`` / empty text (no hits) and bytes (decoded as UTF-8, bad bytes replaced).
        Only the first ``max_chars`` characters (config key, default 50,000; the cleaned text is
        already cut at ``clean.max_chars``) are scanned, which bounds the time a huge or junk
        text can take (~0.5 s per 100k characters for the banking rules on one busy core).
        """
        if text is None:
            return []
        if isinstance(text, (bytes, bytearray)):
            text = bytes(text).decode("utf-8", errors="replace")
        if not isinstance(text, str):
            raise TypeError(f"RuleSet.match expects a str, got {type(text).__name__}; "
                            "pass the cleaned ticket text (ticket_triage.text.clean.clean_text)")
        if len(text) > self.max_chars:
            text = text[: self.max_chars]
        if not text.strip():
            return []
        hits: list[RuleHit] = []
        for rule, rx, neg_rx, unless_rx in self._compiled:
            if unless_rx is not None and unless_rx.search(text):
                continue
            n = 0
            for m in rx.finditer(text):
                if m.end() == m.start():
                    continue
                if neg_rx is not None and self._negated(text, m.start(), m.end(), neg_rx):
                    continue
                near_rx = self._near.get(rule.id)
                if near_rx is not None and not self._has_cue(text, m.start(), m.end(), near_rx, rule.near_window,
                                                                  neg_rx):
                    continue
                hits.append(RuleHit(rule.id, rule.kind, m.group(0), m.start(), m.end(),
                                    dict(rule.actions), rule.priority, rule.order))
                n += 1
                if n >= MAX_HITS_PER_RULE:
                    break
        return hits

    def _negated(self, text: str, start: int, end: int, neg_rx: re.Pattern[str]) -> bool:
        """A negation cue starts within ``negation_window`` tokens before the match, in the
        same clause (and may run into the match, e.g. "not stolen")."""
        lo = max(0, start - 40 * max(self.negation_window, 1))
        before = text[lo:start]
        breaks = list(_CLAUSE_BREAK_RE.finditer(before))
        if breaks:
            lo += breaks[-1].end()
            before = text[lo:start]
        tokens = list(_TOKEN_RE.finditer(before))
        if not tokens:
            return False
        win_lo = lo + tokens[max(0, len(tokens) - self.negation_window)].start()
        for nm in neg_rx.finditer(text, win_lo, end):
            if nm.start() < start:
                return True
        return False

    def _has_cue(self, text: str, start: int, end: int, cue_rx: re.Pattern[str], window: int,
                 neg_rx: re.Pattern[str] | None) -> bool:
        """A (non-negated) ``near`` cue within ``window`` tokens before or after the match, in
        the same sentence ("I will post this on Facebook"; not "facebook/react" in a bug
        report, nor "I will not post this on Facebook")."""
        span = 40 * max(window, 1)
        lo, hi = max(0, start - span), min(len(text), end + span)
        breaks = list(_SENTENCE_BREAK_RE.finditer(text, lo, start))
        if breaks:
            lo = breaks[-1].end()
        stop = _SENTENCE_BREAK_RE.search(text, end, hi)
        if stop:
            hi = stop.start()
        toks_before = list(_TOKEN_RE.finditer(text, lo, start))
        toks_after = list(_TOKEN_RE.finditer(text, end, hi))
        ranges = []
        if toks_before:
            ranges.append((toks_before[max(0, len(toks_before) - window)].start(), start))
        if toks_after:
            ranges.append((end, toks_after[min(len(toks_after), window) - 1].end()))
        for a, b in ranges:
            for cm in cue_rx.finditer(text, a, b):
                if neg_rx is None or not self._negated(text, cm.start(), cm.end(), neg_rx):
                    return True
        return False

    def resolve(self, hits: Iterable[RuleHit]) -> RuleOutcome:
        """Combine hits by the precedence in the module docstring."""
        hits = list(hits)
        out = RuleOutcome(hits=hits)
        best: RuleHit | None = None
        for h in hits:
            a = h.actions
            if a.get("set_topic") is not None:
                if best is None or (h.priority, -h.order) > (best.priority, -best.order):
                    best = h
            if a.get("raise_urgency") is not None:
                out.urgency = more_urgent(out.urgency, a["raise_urgency"])
            if a.get("pin_band") is not None:
                new = more_conservative(out.pinned_band, a["pin_band"])
                if new != out.pinned_band:
                    out.pinned_band, out.pin_rule = new, h.rule_id
            tag = a.get("secondary_tag")
            if tag is not None and tag not in out.secondary_tags:
                out.secondary_tags.append(tag)
        if best is not None:
            out.topic, out.topic_rule = best.actions["set_topic"], best.rule_id
        return out

    def apply(self, text: str | bytes | None) -> RuleOutcome:
        """``resolve(match(text))``."""
        return self.resolve(self.match(text))
