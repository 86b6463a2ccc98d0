"""The human review queue: items waiting for a reviewer, their corrections, export watermark.

One SQLAlchemy engine (SQLite file by default, in WAL mode with a busy timeout; any SQLAlchemy
URL such as ``postgresql+psycopg://...`` works). The schema is versioned by a small migration
table: :data:`MIGRATIONS` is an ordered list of steps, each applied once in its own
transaction and recorded in ``schema_version``. New columns or tables are *new steps* at the
end of the list; never edit a step that has shipped.

Claiming is atomic: ``UPDATE ... WHERE id = :id AND (claimed_by IS NULL OR claim expired OR
claimed_by = me)`` and the row count tells whether this reviewer won, so two reviewers never
hold the same item at once. Queue order: urgency (P0 first), then age, then id.

The helpdesk outbox and its bookkeeping tables (``helpdesk_*``) live in the same database
and are created by the same migrations; their logic is in :mod:`ticket_triage.helpdesk.outbox`.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from ticket_triage.schema import URGENCIES, Decision, Ticket

STATUSES = ("pending", "claimed", "done")
ACTIONS = ("confirm", "correct")
_URGENCY_RANK = {u: i for i, u in enumerate(URGENCIES)}

metadata = sa.MetaData()

schema_version = sa.Table(
    "schema_version", metadata,
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("description", sa.String(200), nullable=False),
    sa.Column("applied_at", sa.Float, nullable=False),
)

review_items = sa.Table(
    "review_items", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("ticket_id", sa.String(200), nullable=False),
    sa.Column("text", sa.Text, nullable=False, default=""),
    sa.Column("decision_json", sa.Text, nullable=False, default="{}"),
    sa.Column("band", sa.String(20), nullable=False),
    sa.Column("reason", sa.String(200), nullable=False, default=""),
    sa.Column("urgency", sa.String(4), nullable=False),
    sa.Column("urgency_rank", sa.Integer, nullable=False),
    sa.Column("topic", sa.String(200), nullable=True),
    sa.Column("confidence", sa.Float, nullable=False, default=0.0),
    sa.Column("model_version", sa.String(200), nullable=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("claimed_by", sa.String(200), nullable=True),
    sa.Column("claimed_at", sa.Float, nullable=True),
    sa.Column("status", sa.String(10), nullable=False, default="pending"),
    sa.Column("is_audit_sample", sa.Boolean, nullable=False, default=False),
    sa.Column("done_at", sa.Float, nullable=True),
    # Queue order over open items only (partial index: done items never slow the queue).
    sa.Index("ix_review_items_open", "urgency_rank", "created_at", "id",
             sqlite_where=sa.text("status != 'done'"),
             postgresql_where=sa.text("status != 'done'")),
    sa.Index("ix_review_items_status", "status", "claimed_by"),
    sa.Index("ix_review_items_ticket", "ticket_id"),
)

corrections = sa.Table(
    "corrections", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("item_id", sa.Integer, nullable=True),  # null for helpdesk-agent feedback
    sa.Column("ticket_id", sa.String(200), nullable=False),
    sa.Column("predicted_topic", sa.String(200), nullable=True),
    sa.Column("predicted_urgency", sa.String(4), nullable=True),
    sa.Column("corrected_topic", sa.String(200), nullable=False),
    sa.Column("corrected_urgency", sa.String(4), nullable=True),
    sa.Column("reviewer", sa.String(200), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("model_version", sa.String(200), nullable=True),
    sa.Column("seconds_spent", sa.Float, nullable=True),
    sa.Column("action", sa.String(10), nullable=False),
    sa.Column("undone", sa.Boolean, nullable=False, default=False),
    sa.Column("source", sa.String(40), nullable=False, default="review"),
    sa.Column("text", sa.Text, nullable=False, default=""),
    sa.Index("ix_corrections_created", "created_at"),
    sa.Index("ix_corrections_reviewer", "reviewer", "id"),
)

export_watermark = sa.Table(
    "export_watermark", metadata,
    sa.Column("name", sa.String(100), primary_key=True),
    sa.Column("last_correction_id", sa.Integer, nullable=False),
    sa.Column("exported_at", sa.Float, nullable=False),
)

# --- helpdesk bookkeeping (logic in ticket_triage.helpdesk.outbox) -------------------------
helpdesk_outbox = sa.Table(
    "helpdesk_outbox", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("adapter", sa.String(40), nullable=False),
    sa.Column("ticket_id", sa.String(200), nullable=False),
    sa.Column("op_json", sa.Text, nullable=False),
    sa.Column("idempotency_key", sa.String(400), nullable=False, unique=True),
    sa.Column("status", sa.String(10), nullable=False, default="pending"),  # pending/sent/dead
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("next_attempt_at", sa.Float, nullable=False),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("sent_at", sa.Float, nullable=True),
    sa.Index("ix_helpdesk_outbox_due", "status", "next_attempt_at", "id"),
)

helpdesk_events = sa.Table(  # processed webhook deliveries / polled versions (idempotency)
    "helpdesk_events", metadata,
    sa.Column("key", sa.String(400), primary_key=True),
    sa.Column("processed_at", sa.Float, nullable=False),
)

helpdesk_drafts = sa.Table(  # what we proposed per helpdesk ticket (to read agent feedback)
    "helpdesk_drafts", metadata,
    sa.Column("adapter", sa.String(40), primary_key=True),
    sa.Column("ticket_id", sa.String(200), primary_key=True),
    sa.Column("topic", sa.String(200), nullable=True),
    sa.Column("urgency", sa.String(4), nullable=True),
    sa.Column("band", sa.String(20), nullable=False),
    sa.Column("confidence", sa.Float, nullable=False),
    sa.Column("model_version", sa.String(200), nullable=True),
    sa.Column("text", sa.Text, nullable=False, default=""),
    sa.Column("decided_at", sa.Float, nullable=False),
    sa.Column("final_topic", sa.String(200), nullable=True),  # last agent-given topic seen
    sa.Column("tags_json", sa.Text, nullable=False, default="[]"),  # tags before our draft
)

helpdesk_state = sa.Table(  # polling cursors and other small adapter state
    "helpdesk_state", metadata,
    sa.Column("key", sa.String(200), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)


@dataclass(frozen=True)
class Migration:
    """One schema step: applied once, in order, inside a transaction."""

    version: int
    description: str
    apply: Callable[[Connection], None]


def _create(*tables: sa.Table) -> Callable[[Connection], None]:
    def run(conn: Connection) -> None:
        for t in tables:
            t.create(conn, checkfirst=True)
    return run


MIGRATIONS: list[Migration] = [
    Migration(1, "review queue, corrections, export watermark",
              _create(review_items, corrections, export_watermark)),
    Migration(2, "helpdesk outbox, processed events, drafts, state",
              _create(helpdesk_outbox, helpdesk_events, helpdesk_drafts, helpdesk_state)),
]
SCHEMA_VERSION = MIGRATIONS[-1].version


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


def _set_sqlite_pragmas(busy_timeout_ms: int) -> Callable[..., None]:
    def on_connect(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()
    return on_connect


def make_engine(db_url: str, *, busy_timeout_ms: int = 5000) -> Engine:
    """An engine for ``db_url``; SQLite gets WAL mode and a busy timeout on every connection.

    A relative ``sqlite:///path`` has its parent folder created (at call time, not import).
    """
    url = sa.engine.make_url(db_url)
    kwargs: dict[str, Any] = {}
    if url.get_backend_name() == "sqlite":
        db = url.database
        if db and db != ":memory:" and not db.startswith("file:"):
            from pathlib import Path

            Path(db).expanduser().resolve().parent.mkdir(parents=True, exist_ok=True)
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": busy_timeout_ms / 1000}
        if not db or db == ":memory:":
            kwargs["poolclass"] = sa.pool.StaticPool  # one shared in-memory database
    engine = sa.create_engine(url, **kwargs)
    if url.get_backend_name() == "sqlite":
        sa.event.listen(engine, "connect", _set_sqlite_pragmas(busy_timeout_ms))
    return engine


def migrate(engine: Engine) -> int:
    """Apply the migrations the database has not seen yet; return the schema version."""
    schema_version.create(engine, checkfirst=True)
    with engine.connect() as conn:
        done = {r[0] for r in conn.execute(sa.select(schema_version.c.version))}
    current = max(done, default=0)
    if current > SCHEMA_VERSION:
        raise RuntimeError(
            f"review database is at schema version {current} but this code knows only up to "
            f"{SCHEMA_VERSION}; upgrade ticket-triage or point review.db_url at another database")
    for m in MIGRATIONS:
        if m.version in done:
            continue
        with engine.begin() as conn:
            m.apply(conn)
            conn.execute(schema_version.insert().values(
                version=m.version, description=m.description, applied_at=time.time()))
    return SCHEMA_VERSION


def _decision_of(d: Decision | dict[str, Any]) -> Decision:
    return d if isinstance(d, Decision) else Decision.from_dict(d)


def redacted_text(ticket: Ticket) -> str:
    """The text shown in the queue: ``ticket.text`` when cleaned, else ``clean_text(...)``."""
    if ticket.text:
        return ticket.text
    from ticket_triage.text.clean import clean_text  # lazy: another module, may load resources

    return clean_text(ticket.subject, ticket.body, redact=True)


def _day_start(ts: float) -> float:
    d = datetime.fromtimestamp(ts, tz=timezone.utc)
    return d.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()


def anchored_sqlite_url(url: str, root: str | Path | None = None) -> str:
    """``sqlite:///var/review.sqlite`` (a relative path) made absolute under the project root.

    The service runs from ``serving/`` (``make serve``) and the review page and the feedback
    stage from the root; relative to the working directory they would open two different
    queues. ``root``: the project root (default: the folder with ``conf/config.yaml`` above the
    working directory; where there is none, e.g. inside a Bento, the URL is left as it is).
    Absolute paths, ``:memory:`` and other databases are returned unchanged."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or url.startswith(prefix + "/"):
        return url
    path, sep, query = url[len(prefix):].partition("?")
    if not path or path == ":memory:" or path.startswith("file:"):
        return url
    if root is None:
        from ticket_triage.config import ConfigError, find_root

        try:
            root = find_root()
        except ConfigError:
            return url
    return prefix + str((Path(root) / path).resolve()) + sep + query


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
                 clock: Callable[[], float] = time.time, engine: Engine | None = None):
        self.db_url = db_url
        self.engine = engine or make_engine(db_url, busy_timeout_ms=busy_timeout_ms)
        self.claim_ttl_s = float(claim_ttl_s)
        self.max_seconds_per_item = float(max_seconds_per_item)
        self.clock = clock
        self.schema_version = migrate(self.engine)

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> "ReviewStore":
        """Build from the ``review`` section of params.yaml (see conf/review/default.yaml). A
        relative SQLite path there is relative to the project root (:func:`anchored_sqlite_url`)."""
        return cls(anchored_sqlite_url(cfg.get("db_url", "sqlite:///var/review.sqlite")),
                   claim_ttl_s=cfg.get("claim_ttl_s", 600),
                   max_seconds_per_item=cfg.get("max_seconds_per_item", 600),
                   busy_timeout_ms=cfg.get("busy_timeout_ms", 5000))

    # ---- enqueue -------------------------------------------------------------------------
    def _item_row(self, ticket: Ticket, decision: Decision | dict[str, Any], is_audit_sample: bool,
                  now: float) -> dict[str, Any]:
        d = _decision_of(decision)
        urgency = d.urgency if d.urgency in _URGENCY_RANK else (ticket.urgency or "P3")
        if urgency not in _URGENCY_RANK:
            urgency = "P3"
        created = ticket.created_at.timestamp() if ticket.created_at else now
        return dict(ticket_id=str(ticket.id), text=redacted_text(ticket),
                    decision_json=json.dumps(d.to_dict(), default=str), band=d.band,
                    reason=d.reason or "", urgency=urgency, urgency_rank=_URGENCY_RANK[urgency],
                    topic=d.topic, confidence=float(d.confidence), model_version=d.model_version,
                    created_at=created, status="pending", is_audit_sample=bool(is_audit_sample))

    def enqueue(self, ticket: Ticket, decision: Decision | dict[str, Any], *,
                is_audit_sample: bool = False) -> int | None:
        """Add one ticket; returns the item id, or ``None`` if it is already waiting."""
        ids = self.enqueue_many([(ticket, decision)], is_audit_sample=is_audit_sample)
        return ids[0] if ids else None

    def enqueue_many(self, pairs: Iterable[tuple[Ticket, Decision | dict[str, Any]]], *,
                     is_audit_sample: bool = False) -> list[int]:
        """Add many tickets in one transaction; tickets already waiting (not done) are skipped."""
        now = self.clock()
        rows = [self._item_row(t, d, is_audit_sample, now) for t, d in pairs]
        if not rows:
            return []
        with self.engine.begin() as conn:
            waiting: set[str] = set()
            tids = [r["ticket_id"] for r in rows]
            for i in range(0, len(tids), 500):
                chunk = tids[i:i + 500]
                waiting |= {r[0] for r in conn.execute(
                    sa.select(review_items.c.ticket_id).where(
                        review_items.c.ticket_id.in_(chunk), review_items.c.status != "done"))}
            fresh, seen = [], set()
            for r in rows:
                if r["ticket_id"] in waiting or r["ticket_id"] in seen:
                    continue
                seen.add(r["ticket_id"])
                fresh.append(r)
            if not fresh:
                return []
            res = conn.execute(
                review_items.insert().returning(review_items.c.id, sort_by_parameter_order=True),
                fresh)
            return [r[0] for r in res]

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
        w = export_watermark.c
        with self.engine.begin() as conn:
            res = conn.execute(export_watermark.update().where(w.name == name).values(
                last_correction_id=last_id, exported_at=now))
            if res.rowcount == 0:
                conn.execute(export_watermark.insert().values(
                    name=name, last_correction_id=last_id, exported_at=now))

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
