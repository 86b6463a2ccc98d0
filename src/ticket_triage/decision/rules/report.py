"""How the rules fit the data: each rule's hits on labelled tickets (the train split), their
share, their agreement with the labels and example matches; rules that fire on more than
``max_fire_share`` of the tickets are flagged (a rule that fires on a name, not an intent,
pins a large part of the data to review: 39 of 300 react issues for "facebook").

Agreement, per rule:

* ``set_topic`` rules: the share of hit tickets whose label is the rule's topic;
* ``raise_urgency`` rules, where tickets carry an urgency label: the share of hit tickets
  labelled at least as urgent as the rule's level;
* every rule: the labels of the tickets it hits (``label_mix``, the five commonest).

The train stage writes the report to ``<paths.train>/rule_report.json`` and prints a summary
(:func:`summary_lines`). Deterministic: it only runs the rules.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Mapping, Sequence

from ticket_triage.decision.rules.types import URGENCY_ORDER

EXAMPLES_PER_RULE = 3
CONTEXT_CHARS = 60


def _context(text: str, start: int, end: int) -> str:
    lo, hi = max(0, start - CONTEXT_CHARS), min(len(text), end + CONTEXT_CHARS)
    snippet = text[lo:start] + "[[" + text[start:end] + "]]" + text[end:hi]
    return ("…" if lo else "") + " ".join(snippet.split()) + ("…" if hi < len(text) else "")


def rule_report(ruleset: Any, rows: Sequence[Mapping[str, Any]], *, max_fire_share: float | None = None,
                examples: int = EXAMPLES_PER_RULE) -> dict[str, Any]:
    """The report for ``rows`` (dicts with ``text``, ``topic``, optionally ``urgency`` and ``id``)."""
    limit = float(ruleset.max_fire_share if max_fire_share is None else max_fire_share)
    n = len(rows)
    per: dict[str, dict[str, Any]] = {
        r.id: {"rule": r.id, "kind": r.kind, "actions": r.actions, "tickets": 0, "labels": Counter(),
               "topic_agree": 0, "urgency_known": 0, "urgency_agree": 0, "examples": []}
        for r in ruleset.rules}
    pinned = 0
    for row in rows:
        text = str(row.get("text") or "")
        hits = ruleset.match(text)
        if not hits:
            continue
        if ruleset.resolve(hits).pinned_band == "review":
            pinned += 1
        seen: set[str] = set()
        for h in hits:
            if h.rule_id in seen:
                continue
            seen.add(h.rule_id)
            p = per[h.rule_id]
            p["tickets"] += 1
            label = row.get("topic")
            p["labels"][str(label)] += 1
            if h.actions.get("set_topic") is not None and label == h.actions["set_topic"]:
                p["topic_agree"] += 1
            lvl, urg = h.actions.get("raise_urgency"), row.get("urgency")
            if lvl in URGENCY_ORDER and urg in URGENCY_ORDER:
                p["urgency_known"] += 1
                p["urgency_agree"] += URGENCY_ORDER.index(urg) <= URGENCY_ORDER.index(lvl)
            if len(p["examples"]) < examples:
                p["examples"].append({"id": row.get("id"), "label": label, "match": h.text,
                                      "context": _context(text, h.start, h.end)})
    rules = []
    flagged = []
    for p in per.values():
        k = p["tickets"]
        share = k / n if n else 0.0
        entry = {
            "rule": p["rule"], "kind": p["kind"], "actions": p["actions"], "tickets": k, "share": round(share, 4),
            "topic_agreement": (round(p["topic_agree"] / k, 4) if k and "set_topic" in p["actions"] else None),
            "urgency_agreement": (round(p["urgency_agree"] / p["urgency_known"], 4) if p["urgency_known"] else None),
            "label_mix": {lab: c for lab, c in p["labels"].most_common(5)},
            "examples": p["examples"],
            "flagged": share > limit,
        }
        if entry["flagged"]:
            flagged.append(f"rule {p['rule']!r} fires on {k:,} of {n:,} training tickets ({share:.1%} > "
                           f"max_fire_share {limit:.1%}): read its examples in rule_report.json; make its "
                           "patterns more specific, add a `near` cue or `unless`, or raise max_fire_share")
        rules.append(entry)
    rules.sort(key=lambda e: (-e["tickets"], e["rule"]))
    return {"tickets": n, "max_fire_share": limit, "pinned_to_review": pinned,
            "pinned_to_review_share": round(pinned / n, 4) if n else 0.0,
            "rules": rules, "warnings": flagged}


def summary_lines(report: Mapping[str, Any], top: int = 5) -> list[str]:
    """A console summary: the rules that fired most, and every warning."""
    n = report["tickets"]
    fired = [r for r in report["rules"] if r["tickets"]]
    lines = [f"rules on {n:,} training tickets: {len(fired)} of {len(report['rules'])} fired; "
             f"{report['pinned_to_review']:,} tickets ({report['pinned_to_review_share']:.1%}) pinned to review"]
    for r in fired[:top]:
        agree = r["topic_agreement"] if r["topic_agreement"] is not None else r["urgency_agreement"]
        ex = r["examples"][0]["context"] if r["examples"] else ""
        lines.append(f"  {r['rule']}: {r['tickets']:,} ({r['share']:.1%})"
                     + (f", agreement {agree:.0%}" if agree is not None else "")
                     + f", labels {dict(list(r['label_mix'].items())[:3])}; e.g. {ex[:110]!r}")
    lines += [f"  WARNING: {w}" for w in report["warnings"]]
    return lines
