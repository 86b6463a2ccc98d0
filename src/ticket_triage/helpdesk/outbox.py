"""A persisted outbox: helpdesk writes are queued in the database and a worker delivers them.

Nothing is lost on a 5xx, a timeout or a crash: an operation is written in the same
transaction that marks its webhook event processed, and stays ``pending`` until the helpdesk
accepted it. ``drain`` takes due rows with a short lease (an atomic UPDATE on
``next_attempt_at``), calls the adapter, and then marks them ``sent``; retryable failures
back off exponentially (429 waits for ``Retry-After`` and pauses that adapter for the rest
of the pass); permanent failures (4xx) and rows past ``max_attempts`` become ``dead``, are
kept, and can be put back with :meth:`Outbox.requeue_dead`.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ticket_triage.review.store import ReviewStore
from ticket_triage.storage import helpdesk_outbox, insert_ignore

log = logging.getLogger(__name__)


class RetryableError(RuntimeError):
    """The helpdesk may accept the operation later (429, 5xx, timeout, connection error)."""

    def __init__(self, message: str, retry_after: float | None = None, status: int | None = None):
        super().__init__(message)
        self.retry_after = retry_after
        self.status = status


class PermanentError(RuntimeError):
    """The helpdesk refused the operation for good (4xx other than 408/409/429)."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class SkippedError(PermanentError):
    """The operation no longer applies (e.g. the ticket was closed); kept as ``skipped``."""


class Performer(Protocol):
    name: str

    def perform(self, op: dict[str, Any]) -> None: ...


@dataclass
class OutboxRow:
    id: int
    adapter: str
    ticket_id: str
    op: dict[str, Any]
    status: str
    attempts: int
    next_attempt_at: float
    last_error: str | None


@dataclass
class DrainReport:
    """What one drain pass did."""

    sent: int = 0
    retried: int = 0
    dead: int = 0
    paused: dict[str, float] = field(default_factory=dict)  # adapter -> resume time (429)
    skipped: int = 0

    def __add__(self, o: "DrainReport") -> "DrainReport":
        return DrainReport(self.sent + o.sent, self.retried + o.retried, self.dead + o.dead,
                           {**self.paused, **o.paused}, self.skipped + o.skipped)


class Outbox:
    """The ``helpdesk_outbox`` table of a :class:`ReviewStore` database."""

    def __init__(self, store: ReviewStore, *, max_attempts: int = 20, backoff_base_s: float = 2.0,
                 backoff_max_s: float = 900.0, lease_s: float = 60.0,
                 clock: Callable[[], float] | None = None):
        self.store = store
        self.max_attempts = int(max_attempts)
        self.backoff_base_s = float(backoff_base_s)
        self.backoff_max_s = float(backoff_max_s)
        self.lease_s = float(lease_s)
        self.clock = clock or store.clock

    def put(self, adapter: str, ticket_id: str, op: dict[str, Any], key: str,
            conn: Connection | None = None) -> bool:
        """Queue one operation; False when ``key`` was queued before (idempotent)."""
        values = dict(adapter=adapter, ticket_id=str(ticket_id), op_json=json.dumps(op),
                      idempotency_key=key, status="pending", attempts=0,
                      next_attempt_at=self.clock(), created_at=self.clock())
        if conn is not None:  # ON CONFLICT DO NOTHING: concurrent puts of one key queue it once
            return insert_ignore(conn, helpdesk_outbox, values,
                                 index_elements=["idempotency_key"]) is not None
        with self.store.engine.begin() as c:
            return self.put(adapter, ticket_id, op, key, conn=c)

    def rows(self, status: str | None = None, adapter: str | None = None) -> list[OutboxRow]:
        o = helpdesk_outbox.c
        q = sa.select(helpdesk_outbox).order_by(o.id)
        if status:
            q = q.where(o.status == status)
        if adapter:
            q = q.where(o.adapter == adapter)
        with self.store.engine.connect() as conn:
            return [OutboxRow(r["id"], r["adapter"], r["ticket_id"], json.loads(r["op_json"]),
                              r["status"], r["attempts"], r["next_attempt_at"], r["last_error"])
                    for r in conn.execute(q).mappings()]

    def counts(self) -> dict[str, int]:
        o = helpdesk_outbox.c
        with self.store.engine.connect() as conn:
            return {s: int(n) for s, n in conn.execute(
                sa.select(o.status, sa.func.count()).group_by(o.status))}

    def _backoff(self, attempts: int) -> float:
        return min(self.backoff_base_s * 2 ** max(0, attempts - 1), self.backoff_max_s)

    def drain(self, performers: Mapping[str, Performer] | Performer, *, max_items: int = 100,
              now: float | None = None) -> DrainReport:
        """Deliver due operations once (synchronous; tests call it directly)."""
        if not isinstance(performers, Mapping):
            performers = {performers.name: performers}
        o = helpdesk_outbox.c
        now = self.clock() if now is None else now
        report = DrainReport()
        with self.store.engine.connect() as conn:
            due = conn.execute(sa.select(helpdesk_outbox).where(
                o.status == "pending", o.next_attempt_at <= now,
                o.adapter.in_(list(performers))).order_by(o.id).limit(max_items)).mappings().all()
        for r in due:
            if r["adapter"] in report.paused:
                continue
            with self.store.engine.begin() as conn:  # lease: no other drainer takes it now
                # The attempt is counted when leased: after a crash mid-call, the next
                # attempt knows an earlier one may have landed (adapters check first).
                got = conn.execute(helpdesk_outbox.update().where(
                    o.id == r["id"], o.status == "pending", o.next_attempt_at <= now,
                    o.attempts == r["attempts"]
                ).values(next_attempt_at=now + self.lease_s, attempts=o.attempts + 1)).rowcount
            if got != 1:
                continue
            attempts = r["attempts"] + 1
            op = json.loads(r["op_json"])
            op["_attempt"] = attempts
            try:
                performers[r["adapter"]].perform(op)
            except RetryableError as exc:
                if exc.retry_after is not None:
                    nxt = now + max(0.0, exc.retry_after)
                    report.paused[r["adapter"]] = nxt
                    self._pause(r["adapter"], nxt)  # the limit is per account, not per op
                else:
                    nxt = now + self._backoff(attempts)
                status = "dead" if attempts >= self.max_attempts else "pending"
                self._update(r["id"], status=status, attempts=attempts, next_attempt_at=nxt,
                             last_error=str(exc)[:2000])
                if status == "dead":
                    report.dead += 1
                    log.error("outbox %s: giving up after %d attempts: %s", r["id"], attempts, exc)
                else:
                    report.retried += 1
                continue
            except SkippedError as exc:
                self._update(r["id"], status="skipped", attempts=attempts, next_attempt_at=now,
                             last_error=str(exc)[:2000])
                report.skipped += 1
                log.info("outbox %s: skipped: %s", r["id"], exc)
                continue
            except PermanentError as exc:
                self._update(r["id"], status="dead", attempts=attempts, next_attempt_at=now,
                             last_error=str(exc)[:2000])
                report.dead += 1
                log.error("outbox %s: refused by the helpdesk: %s", r["id"], exc)
                continue
            except Exception as exc:  # a bug in an adapter: keep the op, retry later
                self._update(r["id"], status="pending", attempts=attempts,
                             next_attempt_at=now + self._backoff(attempts),
                             last_error=f"{type(exc).__name__}: {exc}"[:2000])
                report.retried += 1
                log.exception("outbox %s: unexpected error", r["id"])
                continue
            self._update(r["id"], status="sent", attempts=attempts, sent_at=self.clock(),
                         last_error=None)
            report.sent += 1
        return report

    def _pause(self, adapter: str, until: float) -> None:
        o = helpdesk_outbox.c
        with self.store.engine.begin() as conn:
            conn.execute(helpdesk_outbox.update().where(
                o.adapter == adapter, o.status == "pending", o.next_attempt_at < until
            ).values(next_attempt_at=until))

    def _update(self, row_id: int, **values: Any) -> None:
        with self.store.engine.begin() as conn:
            conn.execute(helpdesk_outbox.update().where(helpdesk_outbox.c.id == row_id)
                         .values(**values))

    def requeue_dead(self, adapter: str | None = None) -> int:
        """Put dead operations back (after fixing the cause); returns how many."""
        o = helpdesk_outbox.c
        q = helpdesk_outbox.update().where(o.status == "dead")
        if adapter:
            q = q.where(o.adapter == adapter)
        with self.store.engine.begin() as conn:
            return conn.execute(q.values(status="pending", attempts=0,
                                         next_attempt_at=self.clock())).rowcount


class OutboxWorker:
    """A background thread that drains the outbox every ``interval_s`` or when woken."""

    def __init__(self, outbox: Outbox, performers: Mapping[str, Performer], *,
                 interval_s: float = 5.0):
        self.outbox = outbox
        self.performers = dict(performers)
        self.interval_s = interval_s
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> "OutboxWorker":
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="helpdesk-outbox", daemon=True)
            self._thread.start()
        return self

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                rep = self.outbox.drain(self.performers)
                if rep.sent == 100:  # a full batch: more may be due right away
                    continue
            except Exception:  # keep the worker alive; the rows stay pending
                log.exception("outbox worker: drain failed")
            self._wake.wait(self.interval_s)
            self._wake.clear()


def sleep_until(t: float) -> None:  # small helper for scripts that drain in a loop
    time.sleep(max(0.0, t - time.time()))
