"""``summary.md`` for support leads: the status, why, the headline metrics against the previous
run, drift, the top confusions, label noise and cost of one continuous-evaluation run.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any, Mapping

from ticket_triage.monitoring.history import HEADLINE


def run_label(stamp: Any) -> str:
    """``20250131T120000123456Z`` -> ``2025-01-31 12:00:00`` (sorts like the stamp)."""
    try:
        return datetime.strptime(str(stamp), "%Y%m%dT%H%M%S%fZ").strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return str(stamp)


# -- summary.md -------------------------------------------------------------------------------
def _md(s: Any) -> str:
    import re

    return re.sub(r"([\\`*_{}\[\]<>|#])", r"\\\1", " ".join(str(s).split()))


def _pct(v: Any) -> str:
    return "n/a" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{float(v):.1%}"


def _num(v: Any, fmt: str = ".3f") -> str:
    return "n/a" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(float(v), fmt)


def render_summary(result: Mapping[str, Any], *, target: float = 0.99) -> str:
    """The support-lead summary (Markdown) of a :func:`run_continuous_eval` result."""
    m = result["metrics"]
    d = result["data"]
    lines = [f"# Continuous evaluation, {run_label(result['run'])} UTC", "",
             f"**Status: {result['status'].upper()}**", ""]
    lines += [f"- {_md(r)}" for r in result["reasons"]]
    lines += ["", f"Model `{result['model_version']}` ({result['family']}, {_md(result['bundle_source'])}). "
              f"Held-out tickets: {d['heldout']}; recent labelled tickets (reviewer corrections and audits): "
              f"{d['recent_labelled']}; recent traffic: {d['recent']} tickets from `{d['recent_path']}`.", ""]

    lines += ["## Headline metrics (frozen held-out set)", ""]
    comp = result.get("comparison")
    if comp is None:
        lines += ["First run: there is no previous run to compare with; the next run will show deltas.", "",
                  "| metric | now |", "|---|---:|"]
        for key, name, _ in HEADLINE:
            v = m.get(f"heldout/{key}")
            lines.append(f"| {name} | {_num(v)} |")
    else:
        level = round(100 * float(comp.get("level", 0.95)))
        lines += [f"Compared with the previous run of {run_label(result['previous_run'])} UTC "
                  f"({'same tickets, paired' if comp['paired'] else 'different tickets, unpaired'} bootstrap, "
                  f"{level}% intervals).", "",
                  f"| metric | now | previous | change | {level}% interval |", "|---|---:|---:|---:|---|"]
        for key, name, higher in HEADLINE:
            x = comp["deltas"].get(key) or {}
            ci = (f"{_num(x.get('ci_low'), '+.3f')} .. {_num(x.get('ci_high'), '+.3f')}"
                  if x.get("ci_low") is not None else "n/a")
            lines.append(f"| {name}{'' if higher else ' (lower is better)'} | {_num(x.get('current'))} | "
                         f"{_num(x.get('previous'))} | {_num(x.get('delta'), '+.3f')} | {ci} |")
        drops = [r for r in comp["per_label"] if r["delta"] < 0][:5]
        if drops:
            lines += ["", "Largest per-label F1 drops:", "", "| label | previous F1 | now | change | 95% interval |",
                      "|---|---:|---:|---:|---|"]
            lines += [f"| {_md(r['label'])} | {r['previous_f1']:.3f} | {r['current_f1']:.3f} | {r['delta']:+.3f} | "
                      + (f"{r['ci_low']:+.3f} .. {r['ci_high']:+.3f}" if "ci_low" in r else "n/a") + " |"
                      for r in drops]
    lines += ["", f"Auto-routed share {_pct(m.get('heldout/coverage'))} at precision "
              f"{_pct(m.get('heldout/auto_precision'))} (target {target:.0%}); draft {_pct(m.get('heldout/draft_share'))}, "
              f"review queue {_pct(m.get('heldout/review_share'))}.", ""]

    loads = result.get("review_load") or {}
    if loads:
        lines += ["## Review band against capacity", ""]
        for name, load in loads.items():
            lines.append(f"- {name}: {_md(load['message'])}")
        worst = loads.get("recent") or next(iter(loads.values()))
        if worst.get("by_reason"):
            lines += ["", "| reason | tickets | share | a day | planned a day | over plan a day |",
                      "|---|---:|---:|---:|---:|---:|"]
            for e in worst["by_reason"]:
                plan = e.get("planned_share")
                plan_day = "n/a" if plan is None else f"{plan * worst['tickets_per_day']:,.0f}"
                lines.append(f"| {e['reason']} | {e['tickets']} | {_pct(e['share'])} | {e['per_day']:,.0f} | "
                             f"{plan_day} | {e.get('over_plan_per_day', 'n/a')} |")
        lines.append("")

    lines += ["## Recent labelled traffic", ""]
    if d["recent_labelled"]:
        lines.append(f"{d['recent_labelled']} tickets with a reviewer verdict: the current model gets "
                     f"{_pct(m.get('recent_labelled/accuracy'))} right (macro-F1 {_num(m.get('recent_labelled/macro_f1'))}); "
                     f"reviewers overrode {d['overridden']} tags. These tickets come mostly from the review queue, "
                     "so they are harder than average.")
        if d["audited"]:
            lines.append(f"Audit samples of auto-routed tickets: {d['audited_correct']}/{d['audited']} were right.")
        rc = result.get("recent_comparison")
        if rc:
            lines.append(f"Against the previous run: {_md(rc['reason'])}.")
    else:
        lines.append("No reviewer corrections or audit samples with text in the feedback folder: skipped.")

    dr = result["drift"]
    lines += ["", "## Drift: recent traffic vs training tickets", "",
              f"Drift status **{dr['status']}**: {_md(dr['reason'])}. Reference: {d['reference']} "
              f"{_md(d['reference_source'])}.", "",
              "| signal | value | threshold | fired |", "|---|---:|---:|---|"]
    for s in dr["signals"]:
        skipped = (s.get("detail") or {}).get("skipped")
        lines.append(f"| {s['name']} | {_num(s['value'])} | {_num(s['threshold'])} | "
                     f"{'skipped: ' + _md(skipped) if skipped else ('yes' if s['fired'] else 'no')} |")
    for c in dr["new_term_clusters"][:3]:
        lines.append(f"\nCandidate new category ({c['size']} tickets): {_md(', '.join(c['terms']))}; e.g. "
                     f"\"{_md(c['examples'][0]['text'][:120]) if c['examples'] else ''}\"")

    f = result["failures"]
    lines += ["", "## Where the model goes wrong", "",
              f"{f['n_failures']} failing tickets (held-out misclassifications and reviewer overrides) out of "
              f"{f['n_rows']}; see `failure_catalog.md`.", ""]
    if f["pairs"]:
        lines += ["| true topic | predicted | tickets | share |", "|---|---|---:|---:|"]
        lines += [f"| {_md(p['true_label'])} | {_md(p['predicted'])} | {p['count']} | {p['share']:.0%} |"
                  for p in f["pairs"]]

    nz = result["noise"]
    lines += ["", "## Suspected mislabelled training tickets", "",
              f"{nz['n_flagged']} of {nz['n']} audited training tickets look mislabelled "
              f"(estimated noise {nz['estimated_rate']:.1%}); the ranked list is in `noise_audit.csv`.", ""]
    if nz["top"]:
        lines += ["| ticket | labelled | suggested | confidence | text |", "|---|---|---|---:|---|"]
        lines += [f"| {_md(r['id'])} | {_md(r['given_label'])} | {_md(r['suggested_label'])} | "
                  f"{r['confidence']:.2f} | {_md(str(r['text'])[:100])} |" for r in nz["top"]]
    if nz["overlapping_pairs"]:
        pairs = ", ".join(f"{_md(p['label_a'])} / {_md(p['label_b'])} ({p['count']})" for p in nz["overlapping_pairs"][:5])
        lines += ["", f"Topics often confused with each other: {pairs}."]

    c = result["cost"]
    lines += ["", "## Cost", "", f"Over {c['n']} recent tickets (LLM fallback not consulted during evaluation):", "",
              "| path | share | cost per ticket | per month |", "|---|---:|---:|---:|"]
    lines += [f"| {r['path']} | {r['share']:.1%} | ${r['cost_per_ticket']:.4f} | ${r['monthly_cost']:,.0f} |"
              for r in c["per_path"]]
    saving = c["monthly_all_llm"] - c["monthly_cost_without_people"]
    lines += ["", f"Projected at {c['tickets_per_month']:,} tickets a month: ${c['monthly_cost']:,.0f} in total "
              f"(${c['monthly_cost_without_people']:,.0f} without reviewer time), against "
              f"${c['monthly_all_llm']:,.0f} for sending every ticket to the LLM "
              f"({'saves' if saving >= 0 else 'costs'} ${abs(saving):,.0f} a month in machine cost).",
              "", "## Files", "",
              "`summary.md`, `result.json`, `metrics.json`, `drift.json`, `failure_catalog.md`/`.html`, "
              "`noise_audit.csv`, `cost_per_path.csv`, `cost.png`, `plots/` (confusion, reliability, "
              "coverage vs precision, confidence over time, per-label F1 over time); this run's history "
              f"entry: `{result['history_path']}`.", ""]
    return "\n".join(lines)
