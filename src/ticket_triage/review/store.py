"""The human review queue: items waiting for a reviewer, their corrections, export watermark.

One SQLAlchemy engine on SQLite (a file, WAL mode, busy timeout) or PostgreSQL
(``postgresql+psycopg://...``; several service replicas share one queue). The tables and their
migrations are in :mod:`ticket_triage.storage`; this module is the queue's logic.

Enqueueing is keyed on (ticket id, content hash): a second ticket with a known id and other
content is queued as its own item (two different tickets that a caller sent with one id are
both reviewed, never dropped), the same ticket sent again while its item is open is not
queued twice. A partial unique index enforces it and the insert is ``ON CONFLICT DO
NOTHING``, so concurrent enqueues (16 replicas or requests at once) are idempotent.

Claiming is atomic: ``UPDATE ... WHERE id = :id AND (claimed_by IS NULL OR claim expired OR
claimed_by = me)`` and the row count tells whether this reviewer won, so two reviewers never
hold the same item at once. Queue order: urgency (P0 first), then age, then id.

The helpdesk outbox and its bookkeeping tables (``helpdesk_*``) live in the same database;
their logic is in :mod:`ticket_triage.helpdesk`.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ticket_triage.config import ReviewConfig
from ticket_triage.schema import URGENCIES, Decision, Ticket

# The tables and migrations live in ticket_triage.storage; re-exported for older imports.
from ticket_triage.storage import (MIGRATIONS, OPEN_ITEM, SCHEMA_VERSION,  # noqa: F401
                                   Migration, anchored_sqlite_url, content_hash, corrections,
                                   export_watermark, helpdesk_drafts, helpdesk_events,
                                   helpdesk_outbox, helpdesk_state, insert_ignore, make_engine,
                                   metadata, migrate, review_items, schema_version, upsert)

if TYPE_CHECKING:
    from ticket_triage.text.clean import CleanConfig

STATUSES = ("pending", "claimed", "done")
ACTIONS = ("confirm", "correct")
_URGENCY_RANK = {u: i for i, u in enumerate(URGENCIES)}

class ReviewError(RuntimeError):
    """A review action cannot be done (item not claimed by you, nothing to undo, ...)."""


@dataclass
class QueueItem:
    """One ticket waiting for (or claimed by) a reviewer."""

    id: int
    ticket_id: str
    text: str
    decision: Decision
    band: str
    reason: str
    urgency: str
    topic: str | None
    confidence: float
    created_at: float
    status: str
    claimed_by: str | None = None
    claimed_at: float | None = None
    is_audit_sample: bool = False
    model_version: str | None = None


@dataclass
class Correction:
    """One reviewer (or helpdesk agent) verdict on a ticket."""

    id: int
    ticket_id: str
    predicted_topic: str | None
    predicted_urgency: str | None
    corrected_topic: str
    corrected_urgency: str | None
    reviewer: str
    created_at: float
    model_version: str | None
    seconds_spent: float | None
    action: str
    undone: bool
    source: str
    text: str
    item_id: int | None = None


@dataclass
class QueueStats:
    """What the review page shows: queue size, cleared today, median seconds per item."""

    queue_size: int
    claimed: int
    cleared_today: int
    median_seconds: float | None
    cleared_per_day: dict[str, int] = field(default_factory=dict)


def _decision_of(d: Decision | dict[str, Any]) -> Decision:
    return d if isinstance(d, Decision) else Decision.from_dict(d)


def redacted_text(ticket: Ticket, clean: "CleanConfig | Callable[[str, str], str] | None" = None) -> str:
    """The text shown in the queue: ``ticket.text`` when cleaned, else the ticket cleaned with
    ``clean`` (the model's :class:`~ticket_triage.text.clean.CleanConfig`; defaults when None)."""
    if ticket.text:
        return ticket.text
    from ticket_triage.text.clean import CleanConfig  # lazy: another module

    clean = CleanConfig() if clean is None else clean
    return clean.apply(ticket.subject, ticket.body) if isinstance(clean, CleanConfig) \
        else clean(ticket.subject, ticket.body)


def _day_start(ts: float) -> float:
    d = datetime.fromtimestamp(ts, tz=timezone.utc)
    return d.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()


class ReviewStore:
    """The review queue on one database.

    Args:
        db_url: SQLAlchemy URL (``sqlite:///var/review.sqlite`` by default in config).
        claim_ttl_s: a claim older than this may be taken by another reviewer.
        max_seconds_per_item: time-on-item is capped here (an idle tab is not work).
        clock: ``() -> float`` seconds since the epoch (tests pass a fake clock).
    """

    def __init__(self, db_url: str = "sqlite:///:memory:", *, claim_ttl_s: float = 600.0,
                 max_seconds_per_item: float = 600.0, busy_timeout_ms: int = 5000,
                 clock: Callable[[], float] = time.time, engine: Engine | None = None,
                 clean: "CleanConfig | Callable[[str, str], str] | None" = None):
        self.db_url = db_url
        self.clean = clean  # how a ticket without ``text`` is cleaned for the queue
        self.engine = engine or make_engine(db_url, busy_timeout_ms=busy_timeout_ms)
        self.claim_ttl_s = float(claim_ttl_s)
        self.max_seconds_per_item = float(max_seconds_per_item)
        self.clock = clock
        self.schema_version = migrate(self.engine)

    @classmethod
    def from_config(cls, cfg: "Mapping[str, Any] | ReviewConfig | None") -> "ReviewStore":
        """Build from the ``review`` section of params.yaml (see conf/review/default.yaml). A
        relative SQLite path there is relative to the project root (:func:`anchored_sqlite_url`)."""
        c = ReviewConfig.from_dict(cfg)
        return cls(anchored_sqlite_url(c.db_url), claim_ttl_s=c.claim_ttl_s,
                   max_seconds_per_item=c.max_seconds_per_item, busy_timeout_ms=c.busy_timeout_ms)

    # ---- enqueue -------------------------------------------------------------------------
    def _item_row(self, ticket: Ticket, decision: Decision | dict[str, Any], is_audit_sample: bool,
                  now: float) -> dict[str, Any]:
        d = _decision_of(decision)
        urgency = d.urgency if d.urgency in _URGENCY_RANK else (ticket.urgency or "P3")
        if urgency not in _URGENCY_RANK:
            urgency = "P3"
        created = ticket.created_at.timestamp() if ticket.created_at else now
        text = redacted_text(ticket, self.clean)
        return dict(ticket_id=str(ticket.id), text=text, content_hash=content_hash(text),
                    decision_json=json.dumps(d.to_dict(), default=str), band=d.band,
                    reason=d.reason or "", urgency=urgency, urgency_rank=_URGENCY_RANK[urgency],
                    topic=d.topic, confidence=float(d.confidence), model_version=d.model_version,
                    created_at=created, status="pending", is_audit_sample=bool(is_audit_sample))

    def enqueue(self, ticket: Ticket, decision: Decision | dict[str, Any], *,
                is_audit_sample: bool = False) -> int | None:
        """Add one ticket; returns the item id, or ``None`` if the same ticket (id and content)
        is already waiting."""
        ids = self.enqueue_many([(ticket, decision)], is_audit_sample=is_audit_sample)
        return ids[0] if ids else None

    def enqueue_many(self, pairs: Iterable[tuple[Ticket, Decision | dict[str, Any]]], *,
                     is_audit_sample: bool = False) -> list[int]:
        """Add many tickets in one transaction; returns the ids of the new items.

        A ticket whose (id, content hash) already has an open item is not queued again (it is
        that item); a known id with other content is a new item. Idempotent under concurrency:
        the unique index decides, not a read before the write."""
        now = self.clock()
        rows = [self._item_row(t, d, is_audit_sample, now) for t, d in pairs]
        if not rows:
            return []
        ids: list[int] = []
        with self.engine.begin() as conn:
            for r in rows:
                new_id = insert_ignore(conn, review_items, r,
                                       index_elements=["ticket_id", "content_hash"],
                                       index_where=OPEN_ITEM)
                if new_id is not None:
                    ids.append(int(new_id))
        return ids

    # ---- claim ---------------------------------------------------------------------------
    def _claimable(self, reviewer: str, now: float) -> sa.ColumnElement[bool]:
        c = review_items.c
        # A literal 'done' (not a bound parameter) lets SQLite use the partial index.
        return sa.and_(c.status != sa.literal_column("'done'"),
                       sa.or_(c.claimed_by.is_(None), c.claimed_at < now - self.claim_ttl_s,
                              c.claimed_by == reviewer))

    def current(self, reviewer: str) -> QueueItem | None:
        """The item this reviewer holds an unexpired claim on, if any."""
        c = review_items.c
        now = self.clock()
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(review_items).where(
                c.status == "claimed", c.claimed_by == reviewer,
                c.claimed_at >= now - self.claim_ttl_s).order_by(c.claimed_at.desc()).limit(1)
            ).mappings().first()
        return self._to_item(row) if row else None

    def claim_next(self, reviewer: str) -> QueueItem | None:
        """Atomically claim the next item in queue order (or return the one already held)."""
        if not reviewer:
            raise ReviewError("a reviewer name is required to claim an item")
        held = self.current(reviewer)
        if held is not None:
            return held
        c = review_items.c
        for _ in range(20):  # lost races retry with the next candidates
            now = self.clock()
            with self.engine.begin() as conn:
                cands = [r[0] for r in conn.execute(
                    sa.select(c.id).where(self._claimable(reviewer, now))
                    .order_by(c.urgency_rank, c.created_at, c.id).limit(5))]
                if not cands:
                    return None
                for item_id in cands:
                    res = conn.execute(review_items.update().where(
                        c.id == item_id, self._claimable(reviewer, now)
                    ).values(claimed_by=reviewer, claimed_at=now, status="claimed"))
                    if res.rowcount == 1:
                        row = conn.execute(sa.select(review_items).where(c.id == item_id)
                                           ).mappings().first()
                        return self._to_item(row)
        return None

    def release(self, item_id: int, reviewer: str) -> bool:
        """Give a claimed item back to the queue."""
        c = review_items.c
        with self.engine.begin() as conn:
            res = conn.execute(review_items.update().where(
                c.id == item_id, c.claimed_by == reviewer, c.status == "claimed"
            ).values(claimed_by=None, claimed_at=None, status="pending"))
        return res.rowcount == 1

    def get(self, item_id: int) -> QueueItem | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(review_items).where(review_items.c.id == item_id)
                               ).mappings().first()
        return self._to_item(row) if row else None

    # ---- act -----------------------------------------------------------------------------
    def resolve(self, item_id: int, reviewer: str, topic: str, urgency: str | None = None,
                *, seconds_spent: float | None = None) -> Correction:
        """Confirm (same topic) or correct (another topic) a claimed item; returns the record.

        The item must be claimed by ``reviewer`` (an expired claim still counts if nobody
        took it over). Seconds spent default to now - claimed_at, capped.
        """
        if not topic:
            raise ReviewError("a topic is required: pick the proposed topic or another one")
        if urgency is not None and urgency not in _URGENCY_RANK:
            raise ReviewError(f"urgency {urgency!r} is not one of {', '.join(URGENCIES)}")
        c = review_items.c
        now = self.clock()
        with self.engine.begin() as conn:
            row = conn.execute(sa.select(review_items).where(c.id == item_id)).mappings().first()
            if row is None:
                raise ReviewError(f"review item {item_id} does not exist")
            if row["status"] == "done":
                raise ReviewError(f"review item {item_id} is already done; use undo to change it")
            if row["claimed_by"] != reviewer:
                raise ReviewError(f"review item {item_id} is claimed by someone else; "
                                  "reload the page to get your next item")
            res = conn.execute(review_items.update().where(
                c.id == item_id, c.claimed_by == reviewer, c.status != "done"
            ).values(status="done", done_at=now))
            if res.rowcount != 1:
                raise ReviewError(f"review item {item_id} changed while saving; reload the page")
            if seconds_spent is None:
                seconds_spent = now - (row["claimed_at"] or now)
            seconds_spent = max(0.0, min(float(seconds_spent), self.max_seconds_per_item))
            corrected_urgency = urgency or row["urgency"]
            action = ("confirm" if topic == row["topic"] and corrected_urgency == row["urgency"]
                      else "correct")
            values = dict(item_id=item_id, ticket_id=row["ticket_id"],
                          predicted_topic=row["topic"], predicted_urgency=row["urgency"],
                          corrected_topic=topic, corrected_urgency=corrected_urgency,
                          reviewer=reviewer, created_at=now, model_version=row["model_version"],
                          seconds_spent=seconds_spent, action=action, undone=False,
                          source="audit" if row["is_audit_sample"] else "review",
                          text=row["text"])
            cid = conn.execute(corrections.insert().values(**values)).inserted_primary_key[0]
        return Correction(id=cid, **values)

    def record_feedback(self, *, ticket_id: str, predicted_topic: str | None,
                        predicted_urgency: str | None, corrected_topic: str,
                        corrected_urgency: str | None, reviewer: str, source: str,
                        model_version: str | None = None, text: str = "") -> Correction:
        """Record a verdict that did not come through the queue (a helpdesk agent's tag)."""
        now = self.clock()
        action = "confirm" if corrected_topic == predicted_topic else "correct"
        values = dict(item_id=None, ticket_id=str(ticket_id), predicted_topic=predicted_topic,
                      predicted_urgency=predicted_urgency, corrected_topic=corrected_topic,
                      corrected_urgency=corrected_urgency, reviewer=reviewer, created_at=now,
                      model_version=model_version, seconds_spent=None, action=action,
                      undone=False, source=source, text=text)
        with self.engine.begin() as conn:
            cid = conn.execute(corrections.insert().values(**values)).inserted_primary_key[0]
        return Correction(id=cid, **values)

    def undo(self, reviewer: str) -> QueueItem:
        """Undo this reviewer's last queue action: the item comes back, claimed by them.

        Refuses when the correction was already exported to training data (the export is
        append-only; correct the item again instead).
        """
        c, k = review_items.c, corrections.c
        now = self.clock()
        with self.engine.begin() as conn:
            last = conn.execute(sa.select(corrections).where(
                k.reviewer == reviewer, k.undone.is_(False), k.item_id.is_not(None)
            ).order_by(k.id.desc()).limit(1)).mappings().first()
            if last is None:
                raise ReviewError(f"nothing to undo for reviewer {reviewer!r}")
            wm = conn.execute(sa.select(export_watermark.c.last_correction_id).where(
                export_watermark.c.name == "corrections")).scalar() or 0
            if last["id"] <= wm:
                raise ReviewError("the last action was already exported to training data and "
                                  "cannot be undone; correct the ticket again instead")
            conn.execute(corrections.update().where(k.id == last["id"]).values(undone=True))
            # Put the item back in this reviewer's hands (they asked for it back).
            conn.execute(review_items.update().where(c.id == last["item_id"]).values(
                status="claimed", claimed_by=reviewer, claimed_at=now, done_at=None))
            row = conn.execute(sa.select(review_items).where(c.id == last["item_id"])
                               ).mappings().first()
        return self._to_item(row)

    # ---- read ----------------------------------------------------------------------------
    def stats(self, *, days: int = 7, median_window: int = 200) -> QueueStats:
        """Queue size, items cleared today and per day (UTC), median seconds per item."""
        c, k = review_items.c, corrections.c
        now = self.clock()
        today = _day_start(now)
        since = today - (days - 1) * 86400
        with self.engine.connect() as conn:
            open_n = conn.execute(sa.select(sa.func.count()).select_from(review_items).where(
                c.status != sa.literal_column("'done'"))).scalar() or 0
            claimed_n = conn.execute(sa.select(sa.func.count()).select_from(review_items).where(
                c.status == "claimed")).scalar() or 0
            done_rows = conn.execute(sa.select(k.created_at).where(
                k.undone.is_(False), k.item_id.is_not(None), k.created_at >= since)).all()
            secs = [r[0] for r in conn.execute(sa.select(k.seconds_spent).where(
                k.undone.is_(False), k.item_id.is_not(None), k.seconds_spent.is_not(None)
            ).order_by(k.id.desc()).limit(median_window))]
        per_day: dict[str, int] = {}
        for i in range(days):
            per_day[datetime.fromtimestamp(since + i * 86400, tz=timezone.utc).date().isoformat()] = 0
        for (ts,) in done_rows:
            key = datetime.fromtimestamp(ts, tz=timezone.utc).date().isoformat()
            if key in per_day:
                per_day[key] += 1
        today_key = datetime.fromtimestamp(today, tz=timezone.utc).date().isoformat()
        return QueueStats(
            queue_size=int(open_n),
            claimed=int(claimed_n),
            cleared_today=per_day.get(today_key, 0),
            median_seconds=float(statistics.median(secs)) if secs else None,
            cleared_per_day=per_day,
        )

    def corrections_since(self, after_id: int = 0, *, include_undone: bool = False
                          ) -> list[Correction]:
        """Corrections with id > ``after_id`` in id order."""
        k = corrections.c
        q = sa.select(corrections).where(k.id > after_id).order_by(k.id)
        if not include_undone:
            q = q.where(k.undone.is_(False))
        with self.engine.connect() as conn:
            return [Correction(**dict(r)) for r in conn.execute(q).mappings()]

    def audited(self) -> list[tuple[QueueItem, Correction]]:
        """Audit-sample items with their (not undone) verdict."""
        c, k = review_items.c, corrections.c
        q = (sa.select(review_items, corrections.c.id.label("correction_id"))
             .join(corrections, k.item_id == c.id)
             .where(c.is_audit_sample.is_(True), k.undone.is_(False)).order_by(k.id))
        out = []
        with self.engine.connect() as conn:
            for r in conn.execute(q).mappings():
                item = self._to_item(r)
                corr = conn.execute(sa.select(corrections).where(k.id == r["correction_id"])
                                    ).mappings().first()
                out.append((item, Correction(**dict(corr))))
        return out

    def watermark(self, name: str = "corrections") -> int:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(export_watermark.c.last_correction_id).where(
                export_watermark.c.name == name)).scalar() or 0

    def set_watermark(self, last_id: int, name: str = "corrections") -> None:
        now = self.clock()
        with self.engine.begin() as conn:
            upsert(conn, export_watermark,
                   dict(name=name, last_correction_id=last_id, exported_at=now),
                   index_elements=["name"], update=["last_correction_id", "exported_at"])

    @staticmethod
    def _to_item(row: Any) -> QueueItem:
        return QueueItem(
            id=row["id"], ticket_id=row["ticket_id"], text=row["text"],
            decision=Decision.from_dict(json.loads(row["decision_json"] or "{}")
                                        or {"topic": row["topic"], "confidence": 0.0,
                                            "band": row["band"], "urgency": row["urgency"]}),
            band=row["band"], reason=row["reason"], urgency=row["urgency"], topic=row["topic"],
            confidence=row["confidence"], created_at=row["created_at"], status=row["status"],
            claimed_by=row["claimed_by"], claimed_at=row["claimed_at"],
            is_audit_sample=bool(row["is_audit_sample"]), model_version=row["model_version"])
