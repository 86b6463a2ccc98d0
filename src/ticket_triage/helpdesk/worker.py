"""The helpdesk worker: ``triage helpdesk run`` (long-running) and ``triage helpdesk sync --once``.

One *pass*, for every configured helpdesk (:func:`ticket_triage.helpdesk.helpdesk_configs`):

1. the labels the trust table allows to auto-route are loaded (:mod:`.trust`);
2. new and updated tickets are polled and handled (:meth:`HelpdeskAdapter.sync`): new ones are
   classified through ``Triage.decide`` and their drafts written to the outbox in the same
   transaction that records the ticket version; drafted ones are read for agent corrections;
   the cursor is stored only after that, so a crash re-polls and the versions deduplicate;
3. the outbox is drained: 429 answers pause that helpdesk until ``Retry-After``; 5xx and
   network errors back off; a write cut off by a crash is retried after its lease and the
   adapter first checks whether it landed (notes carry a reference), so nothing is lost and
   nothing applied twice.

``run`` repeats passes every ``helpdesk.worker.interval_s`` seconds until SIGTERM / SIGINT (the
pass in progress finishes; the outbox rows it did not reach stay pending). It writes a health
file (``helpdesk.worker.health_file``: JSON with status, pid, last pass, counts) after every
pass and logs one JSON line per event on stderr.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from ticket_triage.helpdesk.base import HandleReport, HelpdeskAdapter
from ticket_triage.helpdesk.outbox import DrainReport, PermanentError, RetryableError

log = logging.getLogger("ticket_triage.helpdesk.worker")


class JsonFormatter(logging.Formatter):
    """One JSON object per log record (``ts``, ``level``, ``logger``, ``msg`` + extras)."""

    def format(self, record: logging.LogRecord) -> str:
        d: dict[str, Any] = {"ts": round(record.created, 3), "level": record.levelname.lower(),
                             "logger": record.name, "msg": record.getMessage()}
        for k, v in (getattr(record, "fields", None) or {}).items():
            d[k] = v
        if record.exc_info:
            d["error"] = self.formatException(record.exc_info).splitlines()[-1]
        return json.dumps(d, default=str)


def setup_json_logging(stream: Any = None, level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger("ticket_triage")
    root.handlers = [handler]
    root.setLevel(level)
    root.propagate = False


def _event(msg: str, **fields: Any) -> None:
    log.info(msg, extra={"fields": fields})


@dataclass
class AdapterPass:
    name: str
    handled: HandleReport = field(default_factory=HandleReport)
    drained: DrainReport = field(default_factory=DrainReport)
    bad_items: int = 0
    error: str | None = None
    paused_until: float | None = None

    def to_dict(self) -> dict[str, Any]:
        h = self.handled.summary()
        return {"helpdesk": self.name, **{k: h[k] for k in (
            "received", "duplicates", "classified", "drafted", "routed", "queued_for_review",
            "feedback", "skipped", "skipped_reasons")},
            "written": self.drained.sent, "write_retries": self.drained.retried,
            "write_failed": self.drained.dead, "write_skipped": self.drained.skipped,
            "refused_items": self.bad_items, "error": self.error,
            "paused_until": self.paused_until}


class HelpdeskWorker:
    """Polls, classifies, drafts and delivers for a set of adapters (see the module doc)."""

    def __init__(self, adapters: Sequence[HelpdeskAdapter], *, interval_s: float = 60.0,
                 health_file: str | Path | None = None, max_wait_s: float = 120.0,
                 progress: Callable[[str], None] | None = None,
                 sleep: Callable[[float], None] | None = None):
        if not adapters:
            raise ValueError("no helpdesk configured")
        self.adapters = list(adapters)
        self.interval_s = float(interval_s)
        self.health_file = Path(health_file) if health_file else None
        self.max_wait_s = float(max_wait_s)
        self.stop_event = threading.Event()
        self.started_at = time.time()
        self.passes = 0
        self.errors = 0
        self.last: list[AdapterPass] = []
        self.total: dict[str, AdapterPass] = {a.name: AdapterPass(a.name) for a in self.adapters}
        self._progress = progress or (lambda m: None)
        self._sleep = sleep or (lambda s: self.stop_event.wait(s))
        self._paused: dict[str, float] = {}
        for a in self.adapters:
            a.on_progress = self._progress

    # ---- one pass --------------------------------------------------------------------------
    def _sync(self, a: HelpdeskAdapter, wait: bool) -> HandleReport:
        """Poll + handle; a 429 while polling waits (``wait``) or pauses the adapter."""
        for attempt in range(5):
            try:
                return a.sync()
            except RetryableError as exc:
                delay = exc.retry_after if exc.retry_after is not None else 2.0 * 2 ** attempt
                if not wait or delay > self.max_wait_s or self.stop_event.is_set():
                    self._paused[a.name] = time.time() + delay
                    raise
                self._progress(f"{a.name}: {exc}; waiting {delay:.0f} s")
                _event("poll retry", helpdesk=a.name, wait_s=delay, error=str(exc))
                self._sleep(delay)
        return a.sync()

    def _drain(self, a: HelpdeskAdapter, wait: bool) -> DrainReport:
        total = DrainReport()
        for _ in range(1000):
            rep = a.outbox.drain({a.name: a})
            total = total + rep
            if rep.sent or rep.skipped:
                self._progress(f"{a.name}: {total.sent} write(s) delivered")
            if a.name in rep.paused:
                delay = rep.paused[a.name] - time.time()
                if wait and delay <= self.max_wait_s and not self.stop_event.is_set():
                    self._progress(f"{a.name}: rate limited; waiting {max(0, delay):.0f} s")
                    self._sleep(max(0.0, delay))
                    continue
                self._paused[a.name] = rep.paused[a.name]
                break
            if not (rep.sent or rep.retried or rep.dead or rep.skipped) or \
                    self.stop_event.is_set():
                break
            if rep.retried and not rep.sent:  # only backoffs left: later
                break
        return total

    def run_pass(self, *, wait: bool = False) -> list[AdapterPass]:
        """One pass over every adapter. ``wait``: sit out short rate-limit pauses (``--once``)."""
        from ticket_triage.helpdesk.trust import apply_trusted_labels

        out = []
        for a in self.adapters:
            if self.stop_event.is_set():
                break
            p = AdapterPass(a.name)
            now = time.time()
            if self._paused.get(a.name, 0) > now and not wait:
                p.paused_until = self._paused[a.name]
                out.append(p)
                continue
            a.bad_items = []
            try:
                apply_trusted_labels(a)
                self._progress(f"{a.name}: polling")
                p.handled = self._sync(a, wait)
                p.bad_items = len(a.bad_items)
                self._progress(f"{a.name}: {p.handled.received} received, {p.handled.drafted} "
                               f"drafted, {p.handled.feedback} corrections, "
                               f"{p.handled.skipped} skipped")
            except (RetryableError, PermanentError) as exc:
                p.error = str(exc)[:500]
                p.paused_until = self._paused.get(a.name)
                self.errors += 1
                log.warning("poll failed", extra={"fields": {"helpdesk": a.name,
                                                             "error": p.error}})
            except Exception as exc:  # keep the worker alive; the cursor did not move
                p.error = f"{type(exc).__name__}: {exc}"[:500]
                self.errors += 1
                log.exception("poll failed", extra={"fields": {"helpdesk": a.name}})
            try:
                p.drained = self._drain(a, wait)
            except Exception as exc:
                p.error = (p.error or "") + f" drain: {type(exc).__name__}: {exc}"[:300]
                self.errors += 1
                log.exception("drain failed", extra={"fields": {"helpdesk": a.name}})
            out.append(p)
            t = self.total[a.name]
            t.handled = t.handled + p.handled
            t.drained = t.drained + p.drained
            t.bad_items += p.bad_items
            _event("pass", **p.to_dict(), outbox=a.outbox.counts())
        self.passes += 1
        self.last = out
        self.write_health("running" if not self.stop_event.is_set() else "stopping")
        return out

    # ---- health ----------------------------------------------------------------------------
    def write_health(self, status: str) -> None:
        if self.health_file is None:
            return
        outbox = {}
        for a in self.adapters:
            try:
                outbox[a.name] = a.outbox.counts() if a.outbox else {}
            except Exception as exc:  # the database is down: say so in the health file
                outbox[a.name] = {"error": f"{type(exc).__name__}: {exc}"[:200]}
                status = "degraded"
        doc = {"status": status, "pid": os.getpid(), "started_at": self.started_at,
               "updated_at": time.time(), "passes": self.passes, "errors": self.errors,
               "interval_s": self.interval_s,
               "last_pass": [p.to_dict() for p in self.last], "outbox": outbox}
        self.health_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.health_file.with_suffix(self.health_file.suffix + ".tmp")
        tmp.write_text(json.dumps(doc, indent=2, default=str))
        os.replace(tmp, self.health_file)

    # ---- loop ------------------------------------------------------------------------------
    def install_signal_handlers(self) -> None:
        def stop(signum: int, _frame: Any) -> None:
            _event("stopping", signal=signal.Signals(signum).name)
            self.stop_event.set()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)

    def run(self, *, max_passes: int | None = None) -> None:
        _event("worker started", helpdesks=[a.name for a in self.adapters],
               interval_s=self.interval_s, health_file=str(self.health_file))
        self.write_health("starting")
        while not self.stop_event.is_set():
            self.run_pass()
            if max_passes is not None and self.passes >= max_passes:
                break
            self.stop_event.wait(self.interval_s)
        self.write_health("stopped")
        _event("worker stopped", passes=self.passes, errors=self.errors)

    def summary(self) -> list[dict[str, Any]]:
        return [p.to_dict() for p in self.total.values()]


def format_summary(rows: Sequence[Mapping[str, Any]]) -> str:
    cols = ("helpdesk", "received", "duplicates", "drafted", "routed", "feedback", "skipped",
            "written", "write_failed", "refused_items")
    lines = ["  ".join(f"{c:>12}" for c in cols)]
    for r in rows:
        lines.append("  ".join(f"{str(r.get(c, '')):>12}" for c in cols))
        if r.get("skipped_reasons"):
            lines.append("    skipped: " + ", ".join(f"{k}: {v}" for k, v in
                                                     r["skipped_reasons"].items()))
        if r.get("error"):
            lines.append(f"    error: {r['error']}")
    return "\n".join(lines)
