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
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

KINDS: tuple[str, ...] = ("security_incident", "legal_privacy", "refund", "public_escalation", "topic")
URGENCY_ORDER: tuple[str, ...] = ("P0", "P1", "P2", "P3")  # most urgent first
PIN_BANDS: tuple[str, ...] = ("review", "draft")  # most conservative first
DEFAULT_NEGATION_WINDOW = 3
MAX_HITS_PER_RULE = 5  # hits kept per rule and text (explanations stay small on huge texts)
DEFAULT_MAX_CHARS = 50_000  # only the first max_chars characters are scanned (see match)

_RULE_KEYS = {"id", "kind", "patterns", "negations", "unless", "set_topic", "raise_urgency",
              "pin_band", "secondary_tag", "priority", "description"}
_TOKEN_RE = re.compile(r"\S+")
_CLAUSE_BREAK_RE = re.compile(r"[.;!?\n]|\bbut\b|\baber\b|\bhowever\b|\bjedoch\b", re.IGNORECASE)


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


class RuleSet:
    """A validated, compiled list of rules. Build it with :meth:`from_config`."""

    def __init__(self, rules: list[Rule], *, negation_window: int = DEFAULT_NEGATION_WINDOW,
                 max_chars: int = DEFAULT_MAX_CHARS, config: dict[str, Any] | None = None):
        self.rules = list(rules)
        self.negation_window = int(negation_window)
        self.max_chars = int(max_chars)
        self.config = config or {}
        self._compiled = [
            (r, _compile(list(r.patterns), r.id),
             _compile(list(r.negations), r.id) if r.negations else None,
             _compile(list(r.unless), r.id) if r.unless else None)
            for r in self.rules
        ]

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


# -- parsing / validation ------------------------------------------------------------------------
def _to_plain(cfg: Any) -> Any:
    try:
        from omegaconf import OmegaConf
        if OmegaConf.is_config(cfg):
            return OmegaConf.to_container(cfg, resolve=True)
    except ImportError:  # pragma: no cover - omegaconf ships with hydra
        pass
    if isinstance(cfg, Mapping):
        return {k: _to_plain(v) for k, v in cfg.items()}
    if isinstance(cfg, (list, tuple)):
        return [_to_plain(v) for v in cfg]
    return cfg


def _str_list(value: Any) -> list[str] | None:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return list(value)
    return None


def _check_regex(patterns: list[str], where: str, field_name: str, problems: list[str]) -> None:
    for p in patterns:
        if not p.strip() or p.strip() in ("re:", "*"):
            problems.append(f"{where}: field '{field_name}' has an empty pattern")
            continue
        try:
            rx = re.compile(keyword_to_regex(p), re.IGNORECASE)
        except re.error as exc:
            problems.append(f"{where}: field '{field_name}': bad regex {p!r}: {exc}")
            continue
        if rx.search("") is not None:
            problems.append(f"{where}: field '{field_name}': pattern {p!r} matches the empty string")


def _parse(cfg: dict[str, Any], source: str, topic_ids: set[str] | None) -> tuple[list[Rule], int, int]:
    problems: list[str] = []
    max_chars = cfg.get("max_chars", DEFAULT_MAX_CHARS)
    if not isinstance(max_chars, int) or isinstance(max_chars, bool) or max_chars < 1:
        problems.append(f"max_chars must be a positive integer, got {max_chars!r}")
        max_chars = DEFAULT_MAX_CHARS
    window = cfg.get("negation_window", DEFAULT_NEGATION_WINDOW)
    if not isinstance(window, int) or isinstance(window, bool) or window < 0:
        problems.append(f"negation_window must be a non-negative integer, got {window!r}")
        window = DEFAULT_NEGATION_WINDOW
    neg_sets_raw = cfg.get("negation_sets") or {}
    neg_sets: dict[str, list[str]] = {}
    if not isinstance(neg_sets_raw, dict):
        problems.append("negation_sets must be a mapping name -> list of cues")
    else:
        for name, cues in neg_sets_raw.items():
            lst = _str_list(cues)
            if lst is None:
                problems.append(f"negation set '{name}' must be a list of strings")
                continue
            _check_regex(lst, f"negation set '{name}'", "cues", problems)
            neg_sets[str(name)] = lst
    rules_raw = cfg.get("rules")
    if rules_raw is None:
        rules_raw = []
    if not isinstance(rules_raw, list):
        raise RuleError(source, ["'rules' must be a list of rule mappings"])

    rules: list[Rule] = []
    seen: set[str] = set()
    for i, r in enumerate(rules_raw):
        where = f"rule #{i + 1}"
        if not isinstance(r, dict):
            problems.append(f"{where}: must be a mapping")
            continue
        rid = r.get("id")
        if not isinstance(rid, str) or not rid.strip():
            problems.append(f"{where}: field 'id' is missing or empty")
            continue
        where = f"rule '{rid}'"
        if rid in seen:
            problems.append(f"{where}: duplicate id")
        seen.add(rid)
        unknown = sorted(set(r) - _RULE_KEYS)
        if unknown:
            problems.append(f"{where}: unknown field(s) {', '.join(unknown)}; "
                            f"allowed: {', '.join(sorted(_RULE_KEYS))}")
        kind = r.get("kind")
        if kind not in KINDS:
            problems.append(f"{where}: unknown kind {kind!r}, expected one of {', '.join(KINDS)}")
        patterns = _str_list(r.get("patterns"))
        if not patterns:
            problems.append(f"{where}: field 'patterns' must be a non-empty list of keywords or 're:' regexes")
            patterns = []
        _check_regex(patterns, where, "patterns", problems)
        neg_raw = r.get("negations")
        if isinstance(neg_raw, str):
            if neg_raw not in neg_sets:
                problems.append(f"{where}: field 'negations' names unknown negation set {neg_raw!r} "
                                f"(known: {', '.join(neg_sets) or 'none'}); write single cues as a list")
            negations = neg_sets.get(neg_raw, [])
        else:
            negations = _str_list(neg_raw)
            if negations is None:
                problems.append(f"{where}: field 'negations' must be a list of cues or a negation set name")
                negations = []
            _check_regex(negations, where, "negations", problems)
        unless = _str_list(r.get("unless"))
        if unless is None:
            problems.append(f"{where}: field 'unless' must be a list of keywords or regexes")
            unless = []
        _check_regex(unless, where, "unless", problems)
        set_topic = r.get("set_topic")
        if set_topic is not None:
            if not isinstance(set_topic, str):
                problems.append(f"{where}: field 'set_topic' must be a topic id string")
            elif topic_ids is not None and set_topic not in topic_ids:
                problems.append(f"{where}: set_topic {set_topic!r} is not a topic of the taxonomy "
                                f"({', '.join(sorted(topic_ids))})")
        urg = r.get("raise_urgency")
        if urg is not None and urg not in URGENCY_ORDER:
            problems.append(f"{where}: raise_urgency {urg!r} is not one of {', '.join(URGENCY_ORDER)}")
        pin = r.get("pin_band")
        if pin is not None and pin not in PIN_BANDS:
            problems.append(f"{where}: pin_band {pin!r} is not one of {', '.join(PIN_BANDS)} "
                            "(rules never pin auto_route)")
        tag = r.get("secondary_tag")
        if tag is not None and not isinstance(tag, str):
            problems.append(f"{where}: secondary_tag must be a string")
        prio = r.get("priority", 0)
        if not isinstance(prio, int) or isinstance(prio, bool):
            problems.append(f"{where}: priority must be an integer, got {prio!r}")
            prio = 0
        if set_topic is None and urg is None and pin is None and tag is None:
            problems.append(f"{where}: has no action (set_topic, raise_urgency, pin_band or secondary_tag)")
        rules.append(Rule(rid, str(kind), tuple(patterns), tuple(negations), tuple(unless),
                          set_topic if isinstance(set_topic, str) else None, urg, pin,
                          tag if isinstance(tag, str) else None, int(prio),
                          str(r.get("description") or ""), order=i))
    if problems:
        raise RuleError(source, problems)
    return rules, int(window), int(max_chars)
