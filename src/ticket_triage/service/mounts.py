"""One process deploys: the review page, the helpdesk webhooks and the review-queue feed that
``serving/service.py`` mounts next to ``/classify``.

Nothing happens at import time. Each piece is built on first use, once per process:

* :func:`lazy_asgi` wraps an app factory in an ASGI callable that builds the real app on its
  first request (in a worker thread, under a lock, so concurrent first requests build it
  once). A factory that raises gives a 503 JSON answer saying why, and is retried after
  ``retry_after_s``.
* :func:`review_app` is the review page (``ticket_triage.review.app``) from
  ``params["review"]``; :func:`webhooks_app` the helpdesk webhook app from
  ``params["helpdesk"]`` with its outbox worker, or a 503 app naming the config key / env var
  to set when webhooks are off.
* :func:`enqueue_for_review` puts the API's review-band decisions, and a deterministic audit
  sample of auto-routed ones, into the review queue (:func:`ticket_triage.review.feedback.queue_for_review`).
  It never raises: failures are logged and counted in ``triage_review_enqueue_total{outcome="error"}``.

All three share one :class:`~ticket_triage.review.store.ReviewStore` per process
(:func:`shared_store`). Params come from :func:`ticket_triage.config.load_params`: the file
named by ``$TRIAGE_PARAMS`` when set, else the project's ``params.yaml``. The review database
URL can be overridden by the env var named in ``review.db_url_env`` (default
``TRIAGE_REVIEW_DB_URL``), so a URL with a password never sits in config.

The ASGI helpers (lazy apps, the 503 app) are in ``ticket_triage.service.asgi``.
"""

from __future__ import annotations

import atexit
import dataclasses
import hashlib
import logging
import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from ticket_triage.config import DEFAULT_REVIEW_DB_URL, ReviewConfig, sections
from ticket_triage.schema import Decision, Ticket
from ticket_triage.service.asgi import ASGIApp, LazyASGI, lazy_asgi, unavailable_app

if TYPE_CHECKING:
    from ticket_triage.review.store import ReviewStore

log = logging.getLogger(__name__)

__all__ = [
    "ENV_PARAMS",
    "LazyASGI",
    "ReviewFeed",
    "deploy_params",
    "enqueue_for_review",
    "lazy_asgi",
    "reset",
    "review_app",
    "service_classify",
    "shared_store",
    "unavailable_app",
    "webhooks_app",
]

ENV_PARAMS = "TRIAGE_PARAMS"
DEFAULT_DB_URL_ENV = ReviewConfig.db_url_env  # TRIAGE_REVIEW_DB_URL
DEFAULT_DB_URL = DEFAULT_REVIEW_DB_URL  # the one default: ticket_triage.config
# helpdesk keys that configure this deployment, not the adapter (HelpdeskConfig rejects them)
HELPDESK_DEPLOY_KEYS = ("webhooks_enabled", "additional")


# --------------------------------------------------------------------------------------
# Process-wide config and review store
# --------------------------------------------------------------------------------------

class _Shared:
    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.params: dict[str, Any] | None = None
        self.store: "ReviewStore | None" = None
        self.feed: "ReviewFeed | None" = None
        self.feed_error: tuple[float, str] | None = None
        self.workers: list[Any] = []


_SHARED = _Shared()
_COUNTER_LOCK = threading.Lock()
_COUNTER: Any = None


def deploy_params(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The params this process deploys with (read once): ``$TRIAGE_PARAMS`` or params.yaml."""
    with _SHARED.lock:
        if _SHARED.params is None:
            from ticket_triage.config import load_params

            env = os.environ if env is None else env
            _SHARED.params = load_params(env.get(ENV_PARAMS) or None)
        return _SHARED.params


def _review_cfg(params: Mapping[str, Any]) -> ReviewConfig:
    return ReviewConfig.from_dict(params.get("review"))


def review_db_url(cfg: Mapping[str, Any] | ReviewConfig, env: Mapping[str, str] | None = None) -> str:
    """``review.db_url``, overridden by the env var named in ``review.db_url_env``."""
    return ReviewConfig.from_dict(cfg).resolved_db_url(env)


def shared_store() -> "ReviewStore":
    """The process's one :class:`ReviewStore` (opened and migrated on first call)."""
    with _SHARED.lock:
        if _SHARED.store is None:
            from ticket_triage.review.store import ReviewStore

            cfg = _review_cfg(deploy_params())
            cfg = dataclasses.replace(cfg, db_url=cfg.resolved_db_url())
            _SHARED.store = ReviewStore.from_config(cfg)
            _SHARED.store.clean = service_clean
            log.info("review store: %s (schema v%s)", _redact_url(cfg.db_url),
                     _SHARED.store.schema_version)
        return _SHARED.store


def _redact_url(url: str) -> str:
    try:
        import sqlalchemy as sa

        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparseable url>"


def reset() -> None:
    """Forget the process-wide params, store, feed and workers (tests; after env changes)."""
    with _SHARED.lock:
        for w in _SHARED.workers:
            try:
                w.stop(timeout=2.0)
            except Exception:
                log.exception("stopping outbox worker")
        if _SHARED.store is not None:
            _SHARED.store.engine.dispose()
        _SHARED.params = None
        _SHARED.store = None
        _SHARED.feed = None
        _SHARED.feed_error = None
        _SHARED.workers = []


def _taxonomy_path(cfg: Mapping[str, Any] | ReviewConfig) -> str:
    """``review.taxonomy_path``, else the taxonomy of the bundle the running service serves."""
    cfg = ReviewConfig.from_dict(cfg)
    if cfg.taxonomy_path:
        path = Path(str(cfg.taxonomy_path))
        if not path.is_absolute():  # relative to the project root, whatever the cwd (make serve: serving/)
            from ticket_triage.config import find_root

            path = find_root() / path
        return str(path)
    svc = _current_service()
    bundle = getattr(svc, "bundle", None) if svc is not None else None
    if bundle is not None and (Path(bundle) / "taxonomy.yaml").is_file():
        return str(Path(bundle) / "taxonomy.yaml")
    raise ValueError("no taxonomy for the review page: set review.taxonomy_path in "
                     "conf/review/default.yaml (then `triage config compose`)")


def _current_service() -> Any:
    try:
        import bentoml

        return bentoml.get_current_service()
    except Exception:  # no bentoml, or no instance in this process
        return None


# --------------------------------------------------------------------------------------
# The apps
# --------------------------------------------------------------------------------------

def review_app() -> ASGIApp:
    """The review page built from ``params["review"]`` on the shared store (builds now).

    Reviewers come from ``review.reviewers`` plus the env var in ``review.reviewers_env``
    (``TRIAGE_REVIEWERS=name=hash,...``); the session key from ``review.secret_env``. Raises
    ``ValueError`` naming what to set when no reviewer is configured.
    """
    from ticket_triage.review.app import app_from_config

    cfg = _review_cfg(deploy_params())
    return app_from_config(cfg, taxonomy_path=_taxonomy_path(cfg), store=shared_store())


def webhooks_app(classify: Callable[[list[Ticket]], list[Decision]], *,
                 params: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None,
                 start_worker: bool = True) -> ASGIApp:
    """The helpdesk webhook app (``POST /<provider>`` for every configured helpdesk: the
    ``helpdesk`` section's provider and its ``additional:`` ones), built now.

    On only when ``helpdesk.webhooks_enabled`` is true *and* a provider's
    ``webhook_secret_env`` variable is set; otherwise a 503 app whose JSON message says which
    key / variable to set (a provider without its secret answers that 503 alone). Adapters
    write to the shared review store; one :class:`~ticket_triage.helpdesk.OutboxWorker`
    thread (started here) delivers their drafts.
    """
    params = deploy_params() if params is None else params
    env = os.environ if env is None else env
    section = dict(params.get("helpdesk") or {})
    from ticket_triage.helpdesk import helpdesk_configs

    configs = helpdesk_configs(section)
    problems: dict[str, str] = {}
    ready = []
    for cfg in configs:
        provider = cfg.get("provider") or "zendesk"
        secret_env = cfg.get("webhook_secret_env") or "ZENDESK_WEBHOOK_SECRET"
        missing = []
        if not section.get("webhooks_enabled", False):
            missing.append("set helpdesk.webhooks_enabled: true (conf/helpdesk/"
                           f"{section.get('provider') or 'zendesk'}.yaml, then `triage config compose`)")
        if not env.get(secret_env):
            missing.append(f"set the env var {secret_env} to the {provider} webhook signing secret")
        if missing:
            problems[provider] = f"helpdesk webhooks are off: {'; '.join(missing)}"
        else:
            ready.append(cfg)
    if not ready:
        msg = "; ".join(dict.fromkeys(problems.values())) if len(set(problems.values())) > 1 \
            else next(iter(problems.values()))
        log.info(msg)
        return unavailable_app(msg)

    from ticket_triage.helpdesk import OutboxWorker, build_adapter
    from ticket_triage.helpdesk.trust import apply_trusted_labels
    from ticket_triage.helpdesk.webhooks import create_webhook_app
    from ticket_triage.taxonomy import load_taxonomy

    try:
        taxonomy = load_taxonomy(_taxonomy_path(_review_cfg(params)))
    except ValueError:
        taxonomy = None  # agent feedback then reads only triage_* tags
    adapters = {}
    for cfg in ready:
        adapter = build_adapter(cfg, classify=classify, store=shared_store(), taxonomy=taxonomy,
                                clean=service_clean)
        apply_trusted_labels(adapter)
        for var in (adapter.cfg.email_env, adapter.cfg.api_token_env):
            if var and not env.get(var):
                log.warning("helpdesk: env var %s is not set; drafts will be refused by %s until "
                            "it is (they stay in the outbox)", var, adapter.name)
        adapters[adapter.name] = adapter
    worker = None
    if start_worker:
        first = next(iter(adapters.values()))
        worker = OutboxWorker(first.outbox, adapters).start()
        with _SHARED.lock:
            _SHARED.workers.append(worker)
        atexit.register(worker.stop, 2.0)
    log.info("helpdesk webhooks on: POST .../{%s}", ",".join(adapters))
    return create_webhook_app(adapters, worker=worker, unavailable=problems)


def service_clean(subject: str, body: str) -> str:
    """Clean a ticket the way the running service's model was trained (its bundle's
    ``clean.json``); the default :class:`~ticket_triage.text.clean.CleanConfig` outside one."""
    from ticket_triage.text.clean import CleanConfig

    svc = _current_service()
    triage = getattr(svc, "triage", None) if svc is not None else None
    return (getattr(triage, "clean_config", None) or CleanConfig()).apply(subject, body)


def service_classify(tickets: list[Ticket]) -> list[Decision]:
    """Classify with the running BentoML service's ``Triage`` (the bundle it resolved).

    Decisions are counted in the service's ``triage_*`` metrics under endpoint ``webhooks``.
    """
    svc = _current_service()
    if svc is None or getattr(svc, "triage", None) is None:
        raise RuntimeError("no running TicketTriage service in this process: mount the webhook "
                           "app in serving/service.py, or pass webhooks_app(classify=...)")
    t0 = time.perf_counter()
    decisions = svc.triage.decide(tickets)
    metrics = getattr(svc, "metrics", None)
    if metrics is not None:
        metrics.record_llm(getattr(svc, "llm", None))
        metrics.record_decisions(decisions, "webhooks", time.perf_counter() - t0)
    return decisions


# --------------------------------------------------------------------------------------
# Feeding the review queue from the API
# --------------------------------------------------------------------------------------

def _enqueue_counter() -> Any:
    """``triage_review_enqueue_total{outcome}`` (created on first use, once per process)."""
    global _COUNTER
    with _COUNTER_LOCK:
        if _COUNTER is None:
            from prometheus_client import Counter

            _COUNTER = Counter("triage_review_enqueue_total",
                               "Tickets the API put in the review queue (outcome review/audit), "
                               "and failed enqueue attempts (outcome error)", ["outcome"])
        return _COUNTER


def _ticket_of(t: Ticket | Mapping[str, Any]) -> Ticket:
    tk = t if isinstance(t, Ticket) else Ticket.from_dict(dict(t))
    if not tk.id:  # the queue dedupes on id: give an id-less ticket a stable content id
        h = hashlib.sha256(f"{tk.subject}\n{tk.body}".encode("utf-8")).hexdigest()[:16]
        tk = Ticket(**{**tk.__dict__, "id": f"api-{h}"})
    return tk


class ReviewFeed:
    """Puts the API's review-band decisions and audit picks into the review queue.

    Args:
        store: the review store, or a ``() -> ReviewStore`` called only when there is
            something to enqueue (most requests never open the database).
        bands: bands that go to the queue (``review``).
        audit_share, audit_seed: the deterministic audit sample of ``auto_route`` decisions
            (:func:`ticket_triage.review.feedback.should_audit`).
    """

    def __init__(self, store: "ReviewStore | Callable[[], ReviewStore]", *,
                 bands: Sequence[str] = ("review",), audit_share: float = 0.02,
                 audit_seed: int = 0, enabled: bool = True):
        if not 0.0 <= float(audit_share) <= 1.0:
            raise ValueError(f"review.audit_share must be within [0, 1], got {audit_share}")
        self._store = store
        self.bands = tuple(bands)
        self.audit_share = float(audit_share)
        self.audit_seed = int(audit_seed)
        self.enabled = bool(enabled)

    @classmethod
    def from_params(cls, params: Mapping[str, Any],
                    store: "ReviewStore | Callable[[], ReviewStore] | None" = None) -> "ReviewFeed":
        """From ``params["review"]``: ``enqueue_from_api``, ``audit_share``, ``audit_seed``."""
        cfg = _review_cfg(params)
        seed = cfg.audit_seed if cfg.audit_seed is not None else sections(params).seed
        return cls(store or shared_store, enabled=cfg.enqueue_from_api, audit_share=cfg.audit_share,
                   audit_seed=seed)

    @property
    def store(self) -> "ReviewStore":
        return self._store() if callable(self._store) else self._store

    def __call__(self, tickets: Sequence[Ticket | Mapping[str, Any]],
                 decisions: Sequence[Decision | Mapping[str, Any]]) -> dict[str, int]:
        """Enqueue what qualifies (at most one write per kind); raises on store errors."""
        from ticket_triage.review.feedback import queue_for_review, should_audit

        if not self.enabled:
            return {"review": 0, "audit": 0}
        if len(tickets) != len(decisions):
            raise ValueError(f"{len(tickets)} tickets but {len(decisions)} decisions")
        picked_t: list[Ticket] = []
        picked_d: list[Decision] = []
        for t, d in zip(tickets, decisions):
            band = d.band if isinstance(d, Decision) else d.get("band")
            if band in self.bands or band == "auto_route":
                tk = _ticket_of(t)
                if band == "auto_route" and not should_audit(tk.id, self.audit_share,
                                                              self.audit_seed):
                    continue
                dd = d if isinstance(d, Decision) else Decision.from_dict(dict(d))
                if not dd.ticket_id:
                    dd = Decision(**{**dd.__dict__, "ticket_id": tk.id})
                picked_t.append(tk)
                picked_d.append(dd)
        if not picked_t:  # the common case: no database work at all
            return {"review": 0, "audit": 0}
        return queue_for_review(self.store, picked_t, picked_d, bands=self.bands,
                                audit_share=self.audit_share, audit_seed=self.audit_seed)


def _process_feed() -> "ReviewFeed | None":
    with _SHARED.lock:
        if _SHARED.feed is not None:
            return _SHARED.feed
        if _SHARED.feed_error is not None and time.monotonic() < _SHARED.feed_error[0]:
            return None
        try:
            _SHARED.feed = ReviewFeed.from_params(deploy_params())
        except Exception as exc:
            _SHARED.feed_error = (time.monotonic() + 60.0, str(exc))
            raise
        if not _SHARED.feed.enabled:
            log.info("review.enqueue_from_api is false: the API does not feed the review queue")
        return _SHARED.feed


def warm_review_feed() -> bool:
    """Read the review config and import the review code now, at service start-up: the first
    request paid for both (~0.4 s, most of it importing SQLAlchemy with the review package;
    ``benchmarks/bench_first_request.py``). Opens no database. Never raises: a config error is
    logged and, as on first need, retried after a pause. True when the feed is ready."""
    try:
        feed = _process_feed()
    except Exception as exc:
        log.warning("review queue: config not usable at start-up (%s: %s); retried on first need",
                    type(exc).__name__, exc)
        return False
    if feed is not None and feed.enabled:
        import ticket_triage.review.feedback  # noqa: F401 - what the first enqueue imports
    return feed is not None


def enqueue_for_review(tickets: Sequence[Ticket | Mapping[str, Any]],
                       decisions: Sequence[Decision | Mapping[str, Any]]) -> dict[str, int]:
    """Feed the review queue from one API request; never raises.

    Review-band decisions and audit picks of ``auto_route`` ones go to the queue with the
    redacted ticket text, through the process-wide :class:`ReviewFeed` (config read and the
    store opened on first need). Returns ``{"review": n, "audit": n}`` (zeros on failure);
    failures are logged and counted as ``triage_review_enqueue_total{outcome="error"}``.
    """
    try:
        feed = _process_feed()
        if feed is None:  # config failed recently: counted then, retried after a pause
            _enqueue_counter().labels(outcome="error").inc()
            return {"review": 0, "audit": 0}
        out = feed(tickets, decisions)
        counter = _enqueue_counter()
        for outcome in ("review", "audit"):
            if out.get(outcome):
                counter.labels(outcome=outcome).inc(out[outcome])
        return out
    except Exception as exc:
        log.warning("review queue: could not enqueue %d decision(s): %s: %s (the request is "
                    "answered anyway; check review.db_url / $%s)", len(decisions),
                    type(exc).__name__, exc, DEFAULT_DB_URL_ENV, exc_info=True)
        try:
            _enqueue_counter().labels(outcome="error").inc()
        except Exception:  # metrics must not fail the request either
            log.exception("review queue: could not count the error")
        return {"review": 0, "audit": 0}
