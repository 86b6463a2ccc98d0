"""All tables and schema migrations of the project's shared database, and how to open it.

One SQLAlchemy Core :data:`metadata` holds every table: the review queue (``review_items``),
reviewer and helpdesk-agent verdicts (``corrections``), the training-export watermark, and the
helpdesk bookkeeping (``helpdesk_outbox``, ``helpdesk_events``, ``helpdesk_drafts``,
``helpdesk_state``, ``helpdesk_trust``). The stores (:mod:`ticket_triage.review.store`,
:mod:`ticket_triage.helpdesk.outbox`, :mod:`ticket_triage.helpdesk.base`) import the tables from
here and never write DDL themselves.

Two databases are supported and tested: SQLite (a file, WAL mode and a busy timeout on every
connection; one machine) and PostgreSQL (``postgresql+psycopg://user:pw@host/db``; several
machines / service replicas sharing one queue).

Migrations: :data:`MIGRATIONS` is an ordered list of steps, each applied once in its own
transaction and recorded in ``schema_version``. New columns or tables are *new steps* at the end
of the list; never edit a step that has shipped. On PostgreSQL the whole upgrade runs under a
transaction-level advisory lock, so replicas that start together migrate once.

Idempotent writes: :func:`insert_ignore` (``INSERT ... ON CONFLICT DO NOTHING``) and
:func:`upsert` (``... DO UPDATE``) speak both dialects, so concurrent writers rely on the
database's unique constraints instead of check-then-insert.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

metadata = sa.MetaData()

# An open review item is one not done; at most one open item per (ticket id, content hash).
OPEN_ITEM = sa.text("status != 'done'")

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
    # sha256 of the queued text (migration 3): a second ticket with a known id and other
    # content is another item, the same content twice is one.
    sa.Column("content_hash", sa.String(64), nullable=False, default=""),
    # Queue order over open items only (partial index: done items never slow the queue).
    sa.Index("ix_review_items_open", "urgency_rank", "created_at", "id",
             sqlite_where=OPEN_ITEM, postgresql_where=OPEN_ITEM),
    sa.Index("ix_review_items_status", "status", "claimed_by"),
    sa.Index("ix_review_items_ticket", "ticket_id"),
)

# Part of the table (new databases get it with migration 1); migration 3 adds it to old ones.
ux_review_items_open_key = sa.Index(
    "ux_review_items_open_key", review_items.c.ticket_id, review_items.c.content_hash,
    unique=True, sqlite_where=OPEN_ITEM, postgresql_where=OPEN_ITEM)

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

# --- helpdesk bookkeeping (logic in ticket_triage.helpdesk) --------------------------------
helpdesk_outbox = sa.Table(
    "helpdesk_outbox", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("adapter", sa.String(40), nullable=False),
    sa.Column("ticket_id", sa.String(200), nullable=False),
    sa.Column("op_json", sa.Text, nullable=False),
    sa.Column("idempotency_key", sa.String(400), nullable=False, unique=True),
    sa.Column("status", sa.String(10), nullable=False, default="pending"),  # pending/sent/dead/skipped
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


helpdesk_trust = sa.Table(  # `triage helpdesk trust --apply`: who switched which label when
    "helpdesk_trust", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("adapter", sa.String(40), nullable=False),
    sa.Column("label", sa.String(200), nullable=False),
    sa.Column("mode", sa.String(10), nullable=False),          # auto | draft
    sa.Column("changed_by", sa.String(200), nullable=False),
    sa.Column("changed_at", sa.Float, nullable=False),
    sa.Column("verdicts", sa.Integer, nullable=False),
    sa.Column("confirmations", sa.Integer, nullable=False),
    sa.Column("lower_bound", sa.Float, nullable=False),
    sa.Column("reason", sa.String(400), nullable=False, default=""),
    sa.Index("ix_helpdesk_trust_label", "adapter", "label", "id"),
)


def content_hash(text: str) -> str:
    """The key of a queued text (sha256 hex of its UTF-8 bytes)."""
    return hashlib.sha256((text or "").encode("utf-8")).hexdigest()


# --- migrations ---------------------------------------------------------------------------
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


def _review_item_key(conn: Connection) -> None:
    """Migration 3: ``content_hash`` filled from the stored text, then one open item per
    (ticket id, content hash) enforced by a partial unique index. Open duplicates that the old
    check-then-insert let in are kept (nothing is lost): each extra gets ``<hash>:dup<id>``."""
    if "content_hash" not in {c["name"] for c in sa.inspect(conn).get_columns("review_items")}:
        conn.execute(sa.text("ALTER TABLE review_items ADD COLUMN content_hash VARCHAR(64) "
                             "NOT NULL DEFAULT ''"))
    t = review_items.c
    rows = conn.execute(sa.select(t.id, t.text, t.ticket_id, t.status).order_by(t.id)).all()
    seen: set[tuple[str, str]] = set()
    updates = []
    for rid, text, tid, status in rows:
        h = content_hash(text)
        if status != "done":
            if (tid, h) in seen:
                h = f"{h[:50]}:dup{rid}"
            seen.add((tid, h))
        updates.append({"rid": rid, "h": h})
    if updates:
        conn.execute(sa.update(review_items).where(t.id == sa.bindparam("rid"))
                     .values(content_hash=sa.bindparam("h")), updates)
    ux_review_items_open_key.create(conn, checkfirst=True)


MIGRATIONS: list[Migration] = [
    Migration(1, "review queue, corrections, export watermark",
              _create(review_items, corrections, export_watermark)),
    Migration(2, "helpdesk outbox, processed events, drafts, state",
              _create(helpdesk_outbox, helpdesk_events, helpdesk_drafts, helpdesk_state)),
    Migration(3, "review items keyed on ticket id + content hash (unique among open items)",
              _review_item_key),
    Migration(4, "helpdesk per-label trust changes (who switched a label to auto / back, when)",
              _create(helpdesk_trust)),
]
SCHEMA_VERSION = MIGRATIONS[-1].version
_PG_LOCK_KEY = 0x7471_6967  # "triage": pg_advisory_xact_lock key for migrations
_LOCKED_RETRY_S = 30.0  # how long migrate() retries a SQLite "database is locked"


def migrate(engine: Engine, *, locked_retry_s: float = _LOCKED_RETRY_S) -> int:
    """Apply the migrations the database has not seen yet; return the schema version.

    Safe to call from several processes at once: each step runs under a lock (PostgreSQL: a
    transaction-level advisory lock; SQLite: ``BEGIN IMMEDIATE``) after re-reading which
    steps are done, so a step is applied exactly once. SQLite can still answer "database is
    locked" without waiting out its busy timeout (switching a fresh file to WAL while another
    process does the same, or a lock held longer than the timeout): such a step is retried with
    back-off for up to ``locked_retry_s`` seconds, then the error is raised."""
    dialect = engine.dialect.name
    deadline = time.monotonic() + locked_retry_s
    pause = 0.05
    while True:
        try:
            version = _migrate_one_step(engine, dialect)
        except sa.exc.OperationalError as e:
            if dialect != "sqlite" or not _sqlite_locked(e) or time.monotonic() >= deadline:
                raise
            time.sleep(pause)
            pause = min(pause * 2, 1.0)
            continue
        if version is not None:
            return version


def _sqlite_locked(e: Exception) -> bool:
    text = str(getattr(e, "orig", e)).lower()
    return "database is locked" in text or "database is busy" in text


def _migrate_one_step(engine: Engine, dialect: str) -> int | None:
    """Apply the next pending migration under the lock; the schema version when none is left."""
    with engine.begin() as conn:
        if dialect == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY})
        elif dialect == "sqlite":  # the write lock now, so DDL and its record are atomic
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        schema_version.create(conn, checkfirst=True)
        done = {r[0] for r in conn.execute(sa.select(schema_version.c.version))}
        current = max(done, default=0)
        if current > SCHEMA_VERSION:
            raise RuntimeError(
                f"the database is at schema version {current} but this code knows only up "
                f"to {SCHEMA_VERSION}; upgrade ticket-triage or point review.db_url at "
                "another database")
        todo = [m for m in MIGRATIONS if m.version not in done]
        if not todo:
            return SCHEMA_VERSION
        m = todo[0]
        m.apply(conn)
        conn.execute(schema_version.insert().values(
            version=m.version, description=m.description, applied_at=time.time()))
    return None


# --- engines ------------------------------------------------------------------------------
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

    ``postgresql://`` URLs use the psycopg (3) driver. A relative ``sqlite:///path`` has its
    parent folder created (at call time, not import).
    """
    url = sa.engine.make_url(db_url)
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    kwargs: dict[str, Any] = {}
    backend = url.get_backend_name()
    if backend == "sqlite":
        db = url.database
        if db and db != ":memory:" and not db.startswith("file:"):
            Path(db).expanduser().resolve().parent.mkdir(parents=True, exist_ok=True)
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": busy_timeout_ms / 1000}
        if not db or db == ":memory:":
            kwargs["poolclass"] = sa.pool.StaticPool  # one shared in-memory database
    elif backend == "postgresql":
        kwargs["pool_pre_ping"] = True  # a restarted server does not fail the next request
    engine = sa.create_engine(url, **kwargs)
    if backend == "sqlite":
        sa.event.listen(engine, "connect", _set_sqlite_pragmas(busy_timeout_ms))
    return engine


ENV_HOME = "TRIAGE_HOME"


def data_home(env: Mapping[str, str] | None = None) -> Path:
    """Where a served Bento keeps its review queue and outbox when no project root is given:
    ``$XDG_DATA_HOME/ticket-triage`` (default ``~/.local/share/ticket-triage``). Never inside
    the Bento store, which a rebuild or ``bentoml delete`` removes."""
    env = os.environ if env is None else env
    base = env.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "ticket-triage"


def _inside_bento(root: Path) -> bool:
    """A built Bento: ``<bento>/bento.yaml`` with the project copied under ``<bento>/src``."""
    return (root / "bento.yaml").is_file() or (root.parent / "bento.yaml").is_file()


def anchored_sqlite_url(url: str, root: str | Path | None = None,
                        env: Mapping[str, str] | None = None) -> str:
    """``sqlite:///var/review.sqlite`` (a relative path) made absolute under the project root.

    The service runs from ``serving/`` (``make serve``) and the review page, the helpdesk
    worker and the feedback stage from the root; relative to the working directory they would
    open different queues. The root is, in order: ``root``; ``$TRIAGE_HOME``; the folder with
    ``conf/config.yaml`` above the working directory -- unless that is a Bento's copy of the
    project (a served Bento) or there is none: then :func:`data_home`. So a served Bento never
    writes inside the Bento store; run it with ``TRIAGE_HOME=<project root>`` (``make
    serve-bento`` does) and its corrections land in the project's queue, where ``triage
    feedback export`` reads them. Absolute paths, ``:memory:`` and other databases are returned
    unchanged."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or url.startswith(prefix + "/"):
        return url
    path, sep, query = url[len(prefix):].partition("?")
    if not path or path == ":memory:" or path.startswith("file:"):
        return url
    env = os.environ if env is None else env
    if root is None and env.get(ENV_HOME):
        root = Path(env[ENV_HOME]).expanduser()
    if root is None:
        from ticket_triage.config import ConfigError, find_root

        try:
            found = find_root()
            root = data_home(env) if _inside_bento(found) else found
        except ConfigError:
            root = data_home(env)
    return prefix + str((Path(root) / path).resolve()) + sep + query


# --- idempotent writes --------------------------------------------------------------------
def _insert(conn: Connection, table: sa.Table) -> Any:
    name = conn.dialect.name
    if name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:  # pragma: no cover - only the two tested databases
        raise RuntimeError(f"database {name!r} is not supported; use SQLite or PostgreSQL")
    return insert(table)


def insert_ignore(conn: Connection, table: sa.Table, values: Mapping[str, Any], *,
                  index_elements: Iterable[str], index_where: Any = None) -> Any | None:
    """``INSERT ... ON CONFLICT (index_elements) [WHERE index_where] DO NOTHING``.

    Returns the new row's primary key, or ``None`` when the unique key was already there
    (inserted by anyone, including a concurrent transaction that committed first)."""
    stmt = _insert(conn, table).values(**values).on_conflict_do_nothing(
        index_elements=list(index_elements), index_where=index_where)
    pk = list(table.primary_key.columns)[0]
    return conn.execute(stmt.returning(pk)).scalar()


def upsert(conn: Connection, table: sa.Table, values: Mapping[str, Any], *,
           index_elements: Iterable[str], update: Iterable[str]) -> None:
    """``INSERT ... ON CONFLICT (index_elements) DO UPDATE SET <update columns>``."""
    stmt = _insert(conn, table).values(**values)
    stmt = stmt.on_conflict_do_update(index_elements=list(index_elements),
                                      set_={c: stmt.excluded[c] for c in update})
    conn.execute(stmt)
