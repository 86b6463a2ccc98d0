"""Per-label trust: drafts first, auto-route once the agents' verdicts say a label is right.

Every draft is a row of ``helpdesk_drafts``; when an agent confirms it (``triage_confirmed_*``
tag) or gives another topic (tag or Zendesk dropdown), its ``final_topic`` is set. Per adapter
and drafted label :func:`trust_report` counts drafts, verdicts (drafts with a final topic) and
confirmations (final topic == drafted topic), with the confirmation rate and its lower
confidence bound (Wilson or Clopper-Pearson, :mod:`ticket_triage.review.feedback`). A label
*meets* the target when it has at least ``trust.min_confirmations`` confirmations and its
lower bound is at least ``trust.target_precision``.

:func:`apply_trust` records, in ``helpdesk_trust`` (who, when, the numbers), a switch to
``auto`` for every label that meets the target and has a routing target, and a switch back to
``draft`` for an auto label whose lower bound fell below the target. The latest row per label
wins over ``helpdesk.auto_labels`` (the config's manual list); adapters read it through
:func:`apply_trusted_labels` (the worker every pass, the service when it builds webhooks).
Labels only auto-route in ``helpdesk.mode: auto``.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from ticket_triage.storage import helpdesk_drafts, helpdesk_trust

if TYPE_CHECKING:
    from ticket_triage.helpdesk.base import HelpdeskAdapter


@dataclass
class LabelTrust:
    label: str
    drafts: int
    verdicts: int
    confirmations: int
    rate: float | None
    lower: float
    meets: bool
    mode: str             # current: auto | draft
    routable: bool        # has a routing target
    action: str           # "" | "to auto" | "to draft"
    why: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def current_modes(store: Any, adapter: str) -> dict[str, dict[str, Any]]:
    """The latest trust change per label: ``{label: {mode, changed_by, changed_at, ...}}``."""
    t = helpdesk_trust.c
    out: dict[str, dict[str, Any]] = {}
    with store.engine.connect() as conn:
        for r in conn.execute(sa.select(helpdesk_trust).where(t.adapter == adapter)
                              .order_by(t.id)).mappings():
            out[r["label"]] = dict(r)
    return out


def effective_auto_labels(adapter: "HelpdeskAdapter") -> set[str]:
    labels = set(adapter.cfg.auto_labels)
    for label, row in current_modes(adapter.store, adapter.name).items():
        (labels.add if row["mode"] == "auto" else labels.discard)(label)
    return labels


def apply_trusted_labels(adapter: "HelpdeskAdapter") -> set[str]:
    """Make the adapter route the labels the trust table (over the config) allows."""
    adapter.auto_labels_override = effective_auto_labels(adapter)
    return adapter.auto_labels_override


def trust_report(adapter: "HelpdeskAdapter") -> list[LabelTrust]:
    from ticket_triage.review.feedback import clopper_pearson_interval, wilson_interval

    cfg = adapter.cfg
    interval = wilson_interval if cfg.trust_method == "wilson" else clopper_pearson_interval
    d = helpdesk_drafts.c
    with adapter.store.engine.connect() as conn:
        rows = conn.execute(sa.select(
            d.topic, sa.func.count(),
            sa.func.sum(sa.case((d.final_topic.is_not(None), 1), else_=0)),
            sa.func.sum(sa.case((d.final_topic == d.topic, 1), else_=0)),
        ).where(d.adapter == adapter.name, d.topic.is_not(None)).group_by(d.topic)).all()
    auto = effective_auto_labels(adapter)
    out = []
    for topic, drafts, verdicts, conf in sorted(rows, key=lambda r: (-int(r[1]), str(r[0]))):
        verdicts, conf = int(verdicts or 0), int(conf or 0)
        lo, _ = interval(conf, verdicts, cfg.trust_confidence)
        meets = conf >= cfg.trust_min_confirmations and lo >= cfg.trust_target_precision
        mode = "auto" if topic in auto else "draft"
        routable = topic in adapter.routing.targets
        action, why = "", ""
        if mode == "draft" and meets and routable:
            action, why = "to auto", "meets the target"
        elif mode == "draft" and meets:
            why = f"meets the target but has no helpdesk.routing.{topic} target"
        elif mode == "draft":
            why = (f"{conf} of {cfg.trust_min_confirmations} confirmations needed"
                   if conf < cfg.trust_min_confirmations else
                   f"lower bound {lo:.3f} < {cfg.trust_target_precision}")
        elif mode == "auto" and verdicts and lo < cfg.trust_target_precision:
            action, why = "to draft", (f"lower bound fell to {lo:.3f} < "
                                       f"{cfg.trust_target_precision}")
        out.append(LabelTrust(str(topic), int(drafts), verdicts, conf,
                              conf / verdicts if verdicts else None, lo, meets, mode, routable,
                              action, why))
    return out


def apply_trust(adapter: "HelpdeskAdapter", *, by: str,
                report: list[LabelTrust] | None = None) -> list[LabelTrust]:
    """Record the switches the report calls for; returns the labels switched."""
    report = trust_report(adapter) if report is None else report
    changed = [r for r in report if r.action]
    now = time.time()
    with adapter.store.engine.begin() as conn:
        for r in changed:
            conn.execute(helpdesk_trust.insert().values(
                adapter=adapter.name, label=r.label, mode="auto" if r.action == "to auto" else "draft",
                changed_by=by[:200], changed_at=now, verdicts=r.verdicts,
                confirmations=r.confirmations, lower_bound=float(r.lower), reason=r.why[:400]))
    apply_trusted_labels(adapter)
    return changed


def format_report(adapter: "HelpdeskAdapter", report: list[LabelTrust]) -> str:
    cfg = adapter.cfg
    lines = [f"{adapter.name}: per-label trust ({cfg.trust_method} {cfg.trust_confidence:.0%} lower "
             f"bound; target >= {cfg.trust_target_precision} with >= "
             f"{cfg.trust_min_confirmations} confirmations; mode {cfg.mode})",
             f"{'label':<32} {'drafts':>6} {'verdicts':>8} {'confirmed':>9} {'rate':>6} "
             f"{'lower':>6}  {'meets':<5} {'now':<5} next"]
    for r in report:
        rate = f"{r.rate:.3f}" if r.rate is not None else "-"
        lines.append(f"{r.label[:32]:<32} {r.drafts:>6} {r.verdicts:>8} {r.confirmations:>9} "
                     f"{rate:>6} {r.lower:>6.3f}  {'yes' if r.meets else 'no':<5} {r.mode:<5} "
                     f"{(r.action + ': ') if r.action else ''}{r.why}")
    if not report:
        lines.append("(no drafts yet: run `triage helpdesk sync --once` or the worker first)")
    if cfg.mode != "auto":
        lines.append("note: helpdesk.mode is 'draft': no label auto-routes until it is 'auto'")
    return "\n".join(lines)
