"""Is the review band within the reviewers' capacity on new tickets, and if not, why?

The decision policy sizes the review band at training time: ``thresholds.review_capacity``
tickets a day out of ``thresholds.tickets_per_day``; the out-of-scope cut-off and the
rule-pinned share it saw on validation are reserved first, the confidence cut takes the rest
(``reserved_review_share``, see ``decision.triage``). On new data each way into review can
grow: tickets in another language, out-of-scope tickets, rules that fire on the new wording,
low confidence. :func:`review_load` counts the review band by reason, sets each against the
share planned for it, and says which reason overflows the capacity and by how much (tickets a
day at the configured volume). The evaluate stage (``artifacts/evaluate/result.json``) and the
continuous evaluation (``summary.md``, the result) report it and print :func:`review_load_line`.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Iterable, Mapping

#: reason groups, in the order they are reported
REASONS: tuple[str, ...] = ("language", "out_of_scope", "rules", "confidence", "label_pinned", "empty_text", "other")


def reason_group(reason: str | None) -> str:
    """The reason group of a ``Decision.reason``."""
    r = str(reason or "")
    if r == "unsupported_language":
        return "language"
    if r == "out_of_scope":
        return "out_of_scope"
    if r.startswith(("rule_pinned", "rule_topic")):
        return "rules"
    if r in ("below_review_threshold", "unknown_label", "invalid_confidence"):
        return "confidence"
    if r.startswith("label_pinned"):
        return "label_pinned"
    if r == "empty_text":
        return "empty_text"
    return "other"


def planned_shares(policy_thresholds: Mapping[str, Any] | None) -> dict[str, float]:
    """The review share the bundle's tuning planned per reason (from its thresholds info):
    out-of-scope and rule-pinned as measured on validation, the confidence cut's budget, and
    nothing for other languages (the model's languages come from its training data)."""
    info = dict((policy_thresholds or {}).get("info") or {})
    reserved = dict(info.get("reserved_review") or {})
    out = {"language": 0.0}
    if "out_of_scope" in reserved:
        out["out_of_scope"] = float(reserved["out_of_scope"])
    if "rule_pinned" in reserved:
        out["rules"] = float(reserved["rule_pinned"])
    if "review_budget_share" in info:
        out["confidence"] = float(info["review_budget_share"])
    return out


def review_load(decisions: Iterable[Any], *, review_capacity: float, tickets_per_day: float,
                planned: Mapping[str, float] | None = None) -> dict[str, Any]:
    """The review band of ``decisions`` (``Decision`` objects or their dicts) by reason group,
    against the capacity ``review_capacity`` a day out of ``tickets_per_day``."""
    rows = [(d.get("band"), d.get("reason")) if isinstance(d, Mapping) else (d.band, d.reason) for d in decisions]
    n = len(rows)
    per_day = float(tickets_per_day)
    cap_share = float(review_capacity) / per_day if per_day > 0 else 0.0
    counts = Counter(reason_group(reason) for band, reason in rows if band == "review")
    k = sum(counts.values())
    share = k / n if n else 0.0
    planned = dict(planned or {})
    by_reason = []
    for g in REASONS:
        c = counts.get(g, 0)
        if not c and g not in planned:
            continue
        s = c / n if n else 0.0
        entry: dict[str, Any] = {"reason": g, "tickets": c, "share": round(s, 5), "per_day": round(s * per_day, 1)}
        if g in planned:
            entry["planned_share"] = round(planned[g], 5)
            entry["over_plan_per_day"] = round(max(0.0, s - planned[g]) * per_day, 1)
        by_reason.append(entry)
    by_reason.sort(key=lambda e: (-e.get("over_plan_per_day", e["per_day"]), -e["tickets"]))
    within = share <= cap_share + 1e-12
    over = max(0.0, share - cap_share) * per_day
    out = {"tickets": n, "review": k, "review_share": round(share, 5), "review_per_day": round(share * per_day, 1),
           "tickets_per_day": per_day, "capacity_per_day": float(review_capacity), "capacity_share": round(cap_share, 5),
           "within_capacity": within, "overflow_per_day": round(over, 1),
           "overflow_factor": round(share / cap_share, 2) if cap_share > 0 else None, "by_reason": by_reason}
    out["message"] = review_load_line(out)
    return out


def review_load_line(load: Mapping[str, Any]) -> str:
    """One line for the console: within capacity, or which reasons overflow it and by how much."""
    head = (f"review band {load['review_share']:.2%} of {load['tickets']:,} tickets = {load['review_per_day']:,.0f} "
            f"a day at {load['tickets_per_day']:,.0f} tickets a day; capacity {load['capacity_per_day']:,.0f} a day")
    if load["within_capacity"]:
        return head + ": within capacity"
    parts = []
    for e in load["by_reason"]:
        if not e["tickets"]:
            continue
        plan = e.get("planned_share")
        planned = f", planned {plan * load['tickets_per_day']:,.0f}" if plan is not None else ""
        parts.append(f"{e['reason']} {e['per_day']:,.0f} a day{planned}")
    return (head + f": OVER capacity by {load['overflow_per_day']:,.0f} a day ({load['overflow_factor']}x); "
            + "; ".join(parts) + ". Fix the biggest reason over its plan (see the README: review capacity)")
