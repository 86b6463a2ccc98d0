"""The canonical records every stage, the service and the review queue share.

``Ticket`` is what ingest produces from any export (CSV, JSONL, Parquet, Zendesk, Intercom,
Front). ``Decision`` is what the decision policy (``ticket_triage.decision.triage.Triage``) returns
for a ticket, and what the service, the review queue, the helpdesk adapters and the evaluator
consume. Both serialise to plain JSON dicts (``to_dict`` / ``from_dict``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Literal

Band = Literal["auto_route", "draft", "review"]
Source = Literal["rules", "model", "llm", "human"]
BANDS: tuple[str, ...] = ("auto_route", "draft", "review")
URGENCIES: tuple[str, ...] = ("P0", "P1", "P2", "P3")


@dataclass
class Ticket:
    """One support ticket in canonical form.

    ``created_at`` is timezone-aware (UTC when the source gave no zone) or ``None`` when the
    export has no timestamps. ``tags`` are the helpdesk's own tags (source tags); ``topic`` is
    the taxonomy topic they map to (filled by the clean stage, or given directly).
    ``text`` is the cleaned, PII-redacted text (filled by the clean stage; empty before).
    """

    id: str
    subject: str = ""
    body: str = ""
    created_at: datetime | None = None
    tags: list[str] = field(default_factory=list)
    topic: str | None = None
    urgency: str | None = None
    language: str | None = None
    channel: str | None = None
    requester: str | None = None
    text: str = ""
    source: str | None = None  # which export/file the ticket came from

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["created_at"] = self.created_at.isoformat() if self.created_at else None
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Ticket":
        kw = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        ca = kw.get("created_at")
        if isinstance(ca, str) and ca:
            kw["created_at"] = datetime.fromisoformat(ca)
        elif not isinstance(ca, datetime):
            kw["created_at"] = None
        kw["id"] = str(kw.get("id", ""))
        kw["tags"] = list(kw.get("tags") or [])
        for k in ("subject", "body", "text"):
            kw[k] = kw.get(k) or ""
        return cls(**kw)


@dataclass
class Decision:
    """A routing decision for one ticket.

    band: ``auto_route`` (tag applied, ticket routed), ``draft`` (tag proposed, an agent
    confirms), ``review`` (human review queue). ``reason`` says why the band was chosen
    (e.g. ``above_auto_threshold``, ``rule_pinned:security_incident``, ``out_of_scope``,
    ``unsupported_language``, ``below_review_threshold``, ``llm_disagrees``).
    """

    topic: str | None
    confidence: float
    band: str
    urgency: str
    reason: str = ""
    source: str = "model"
    ticket_id: str | None = None
    alternatives: list[dict[str, float]] = field(default_factory=list)  # [{"topic":..,"p":..}]
    secondary_tags: list[str] = field(default_factory=list)
    rule_hits: list[dict[str, Any]] = field(default_factory=list)
    out_of_scope_score: float = 0.0
    language: str | None = None
    explanation: dict[str, Any] = field(default_factory=dict)
    model_version: str | None = None
    taxonomy_version: str | None = None
    llm: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Decision":
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in d.items() if k in known})
