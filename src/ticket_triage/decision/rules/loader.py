"""Rule files: YAML / params section -> validated ``Rule`` objects, every problem reported at once
(``RuleError`` lists them all, with the rule and field).
"""

from __future__ import annotations

import re
from typing import Any, Mapping

from ticket_triage.decision.rules.patterns import keyword_to_regex
from ticket_triage.decision.rules.types import (
    DEFAULT_MAX_CHARS,
    DEFAULT_MAX_FIRE_SHARE,
    DEFAULT_NEAR_WINDOW,
    DEFAULT_NEGATION_WINDOW,
    KINDS,
    PIN_BANDS,
    Rule,
    RuleError,
    URGENCY_ORDER,
    _RULE_KEYS,
)


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


def _named_sets(cfg: dict[str, Any], key: str, what: str, problems: list[str]) -> dict[str, list[str]]:
    raw = cfg.get(key) or {}
    out: dict[str, list[str]] = {}
    if not isinstance(raw, dict):
        problems.append(f"{key} must be a mapping name -> list of cues")
        return out
    for name, cues in raw.items():
        lst = _str_list(cues)
        if lst is None:
            problems.append(f"{what} '{name}' must be a list of strings")
            continue
        _check_regex(lst, f"{what} '{name}'", "cues", problems)
        out[str(name)] = lst
    return out


def _list_or_set(raw: Any, sets: dict[str, list[str]], where: str, field_name: str, sets_key: str,
                 problems: list[str]) -> list[str]:
    """A rule field that is a list of cues or the name of a named set."""
    if isinstance(raw, str) and raw in sets:
        return sets[raw]
    if isinstance(raw, str):
        problems.append(f"{where}: field '{field_name}' names unknown set {raw!r} (known {sets_key}: "
                        f"{', '.join(sets) or 'none'}); write single cues as a list")
        return []
    lst = _str_list(raw)
    if lst is None:
        problems.append(f"{where}: field '{field_name}' must be a list of cues or the name of one of {sets_key}")
        return []
    _check_regex(lst, where, field_name, problems)
    return lst


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
    share = cfg.get("max_fire_share", DEFAULT_MAX_FIRE_SHARE)
    if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 < share <= 1:
        problems.append(f"max_fire_share must be a number in (0, 1], got {share!r}")
    neg_sets = _named_sets(cfg, "negation_sets", "negation set", problems)
    cue_sets = _named_sets(cfg, "cue_sets", "cue set", problems)
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
        near = _list_or_set(r.get("near"), cue_sets, where, "near", "cue_sets", problems)
        near_window = r.get("near_window", DEFAULT_NEAR_WINDOW)
        if not isinstance(near_window, int) or isinstance(near_window, bool) or near_window < 1:
            problems.append(f"{where}: near_window must be a positive integer, got {near_window!r}")
            near_window = DEFAULT_NEAR_WINDOW
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
                          str(r.get("description") or ""), order=i, near=tuple(near),
                          near_window=int(near_window)))
    if problems:
        raise RuleError(source, problems)
    return rules, int(window), int(max_chars)
