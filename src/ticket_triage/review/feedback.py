"""The feedback loop: review-queue corrections become training labels; audits measure precision.

* :func:`export_corrections` writes the corrections made since the last export to
  ``data/feedback/corrections-<timestamp>.jsonl`` and advances the store's watermark.
* :func:`merge_feedback` applies those files to a list of tickets (the ingest stage calls it):
  a correction overrides the label of its ticket id, the newest correction wins, and
  corrections for unknown ids that carry text become new labelled tickets.
* :func:`should_audit` picks a deterministic, hash-based share of auto-routed tickets;
  :func:`queue_for_review` puts review-band tickets and audit picks into the queue;
  :func:`feedback_report` gives per-label production precision of audited auto-routes with a
  Wilson or Clopper-Pearson interval.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from ticket_triage.schema import Decision, Ticket

if TYPE_CHECKING:
    from ticket_triage.review.store import ReviewStore

EXPORT_GLOB = "corrections-*.jsonl"


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat()


def export_corrections(store: "ReviewStore", out_dir: str | Path = "data/feedback") -> Path | None:
    """Write corrections since the last export as JSONL; return the file, or None if none.

    Each line: ``ticket_id, topic, urgency, reviewer, corrected_at, model_version, text``
    (plus ``predicted_topic``, ``action``, ``source``). The watermark moves only after the
    file is fully written (written to a temp name, then renamed), so a crash re-exports
    rather than loses corrections. Undone corrections are not exported.
    """
    after = store.watermark()
    rows = store.corrections_since(after)
    if not rows:
        return None
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.fromtimestamp(store.clock(), tz=timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    path = out / f"corrections-{stamp}.jsonl"
    n = 1
    while path.exists():
        path = out / f"corrections-{stamp}-{n}.jsonl"
        n += 1
    tmp = path.with_suffix(".jsonl.tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for c in rows:
            f.write(json.dumps({
                "ticket_id": c.ticket_id, "topic": c.corrected_topic,
                "urgency": c.corrected_urgency, "reviewer": c.reviewer,
                "corrected_at": _iso(c.created_at), "model_version": c.model_version,
                "text": c.text, "predicted_topic": c.predicted_topic, "action": c.action,
                "source": c.source,
            }, ensure_ascii=False) + "\n")
    tmp.replace(path)
    # Undo is refused for ids at or below the watermark, so an exported line stays true.
    store.set_watermark(rows[-1].id)
    return path


def read_feedback(feedback_dir: str | Path) -> dict[str, dict[str, Any]]:
    """The newest correction per ticket id over every export file in ``feedback_dir``."""
    newest: dict[str, dict[str, Any]] = {}
    d = Path(feedback_dir)
    if not d.is_dir():
        return newest
    for path in sorted(d.glob(EXPORT_GLOB)):
        for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{lineno}: not valid JSON ({exc}); fix or remove the "
                                 "line, the export files are plain JSONL") from exc
            tid, topic = rec.get("ticket_id"), rec.get("topic")
            if tid is None or not topic:
                raise ValueError(f"{path}:{lineno}: a correction needs 'ticket_id' and 'topic'")
            tid = str(tid)
            old = newest.get(tid)
            if old is None or str(rec.get("corrected_at") or "") >= str(old.get("corrected_at") or ""):
                newest[tid] = rec
    return newest


def merge_feedback(tickets: Sequence[Ticket], feedback_dir: str | Path
                   ) -> tuple[list[Ticket], int, int]:
    """Apply review corrections to ``tickets``: returns ``(tickets, n_overridden, n_added)``.

    A correction replaces the topic (and urgency when given) of the ticket with its id; the
    newest correction per id wins. ``n_overridden`` counts tickets whose label changed.
    Corrections for ids not in ``tickets`` become new tickets (``source="feedback"``) when
    they carry text; those without text are dropped. Input tickets are not modified.
    """
    newest = read_feedback(feedback_dir)
    out: list[Ticket] = []
    seen: set[str] = set()
    n_over = 0
    for t in tickets:
        seen.add(str(t.id))
        rec = newest.get(str(t.id))
        if rec is None:
            out.append(t)
            continue
        new = dataclasses.replace(t, topic=rec["topic"], urgency=rec.get("urgency") or t.urgency)
        if (new.topic, new.urgency) != (t.topic, t.urgency):
            n_over += 1
        out.append(new)
    n_added = 0
    for tid, rec in newest.items():
        if tid in seen or not (rec.get("text") or "").strip():
            continue
        created = None
        if rec.get("corrected_at"):
            try:
                created = datetime.fromisoformat(rec["corrected_at"])
            except ValueError:
                created = None
        out.append(Ticket(id=tid, body=rec["text"], text=rec["text"], topic=rec["topic"],
                          urgency=rec.get("urgency"), created_at=created, source="feedback"))
        n_added += 1
    return out, n_over, n_added


def should_audit(ticket_id: str, share: float = 0.02, seed: int = 0) -> bool:
    """Deterministic audit pick: the same ticket id and seed always give the same answer."""
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"audit share must be within [0, 1], got {share}")
    h = hashlib.sha256(f"{seed}:{ticket_id}".encode("utf-8")).digest()
    return int.from_bytes(h[:8], "big") / 2.0 ** 64 < share


def queue_for_review(store: "ReviewStore", tickets: Sequence[Ticket], decisions: Sequence[Decision],
                     *, bands: Iterable[str] = ("review",), audit_share: float = 0.02,
                     audit_seed: int = 0) -> dict[str, int]:
    """Put review-band tickets, plus an audit sample of auto-routed ones, into the queue."""
    if len(tickets) != len(decisions):
        raise ValueError(f"{len(tickets)} tickets but {len(decisions)} decisions")
    bands = set(bands)
    review, audit = [], []
    for t, d in zip(tickets, decisions):
        if d.band in bands:
            review.append((t, d))
        elif d.band == "auto_route" and should_audit(str(t.id), audit_share, audit_seed):
            audit.append((t, d))
    n_r = len(store.enqueue_many(review)) if review else 0
    n_a = len(store.enqueue_many(audit, is_audit_sample=True)) if audit else 0
    return {"review": n_r, "audit": n_a}


def wilson_interval(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion k/n."""
    if n == 0:
        return (0.0, 1.0)
    from statistics import NormalDist

    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p = k / n
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return (max(0.0, centre - half), min(1.0, centre + half))


def clopper_pearson_interval(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper-Pearson) interval for k/n."""
    if n == 0:
        return (0.0, 1.0)
    from scipy.stats import beta

    a = 1 - confidence
    lo = 0.0 if k == 0 else float(beta.ppf(a / 2, k, n - k + 1))
    hi = 1.0 if k == n else float(beta.ppf(1 - a / 2, k + 1, n - k))
    return (lo, hi)


def feedback_report(store: "ReviewStore", *, confidence: float = 0.95,
                    method: str = "clopper_pearson") -> dict[str, Any]:
    """Production precision of audited auto-routes, per proposed label and overall.

    Returns ``{"labels": {topic: {n, correct, precision, low, high}}, "overall": {...},
    "method": ..., "confidence": ...}``. Only audit-sample items of band ``auto_route`` with a
    reviewer verdict count; a verdict equal to the proposed topic is a hit.
    """
    if method not in ("clopper_pearson", "wilson"):
        raise ValueError(f"method must be 'clopper_pearson' or 'wilson', got {method!r}")
    interval = clopper_pearson_interval if method == "clopper_pearson" else wilson_interval
    counts: dict[str, list[int]] = {}
    for item, corr in store.audited():
        if item.band != "auto_route":
            continue
        label = item.topic or "<none>"
        c = counts.setdefault(label, [0, 0])
        c[0] += 1
        c[1] += int(corr.corrected_topic == item.topic)

    def row(n: int, k: int) -> dict[str, Any]:
        lo, hi = interval(k, n, confidence)
        return {"n": n, "correct": k, "precision": (k / n) if n else None, "low": lo, "high": hi}

    labels = {lab: row(n, k) for lab, (n, k) in sorted(counts.items())}
    tot_n = sum(n for n, _ in counts.values())
    tot_k = sum(k for _, k in counts.values())
    return {"labels": labels, "overall": row(tot_n, tot_k), "method": method,
            "confidence": confidence}


def format_report(report: dict[str, Any]) -> str:
    """A plain-text table of :func:`feedback_report` for the CLI."""
    lines = [f"audited auto-routes ({report['method']}, {report['confidence']:.0%} interval)",
             f"{'label':<28} {'n':>5} {'correct':>7} {'precision':>9}  interval"]
    for lab, r in list(report["labels"].items()) + [("overall", report["overall"])]:
        p = "-" if r["precision"] is None else f"{r['precision']:.3f}"
        lines.append(f"{lab:<28} {r['n']:>5} {r['correct']:>7} {p:>9}  "
                     f"[{r['low']:.3f}, {r['high']:.3f}]")
    return "\n".join(lines)
