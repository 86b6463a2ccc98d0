"""What the HTTP service needs besides BentoML glue: Prometheus metrics and request limits.

``serving/service.py`` only wires these in:

- :func:`get_metrics` returns the process-wide :class:`TriageMetrics` (created on first use, so
  ``prometheus_client`` is imported after BentoML has set ``PROMETHEUS_MULTIPROC_DIR``; a second
  service instance in the same process reuses the same collectors instead of failing on
  duplicate names). BentoML's ``/metrics`` exposes them next to its own request metrics.
- :class:`RequestSizeLimit` is an ASGI middleware that answers 413 with a JSON message before a
  too-large request body is read into memory.
- Where the model bundle comes from: :func:`ticket_triage.bundles.resolve_bundle` (one order).
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any, Awaitable, Callable, Iterable, Mapping, MutableMapping

log = logging.getLogger(__name__)

__all__ = [
    "MAX_BATCH",
    "MAX_BODY_CHARS",
    "MAX_SUBJECT_CHARS",
    "MAX_REQUEST_BYTES",
    "RequestSizeLimit",
    "TriageMetrics",
    "get_metrics",
    "service_workers",
]

MAX_BODY_CHARS = 65_536          # a ticket body longer than this is refused (4xx naming the field)
MAX_SUBJECT_CHARS = 4_096
MAX_TAGS = 100
MAX_BATCH = 1_000                # tickets per /classify_batch request
# Whole-request caps (bytes on the wire), checked before the body is parsed.
MAX_REQUEST_BYTES: dict[str, int] = {
    "/classify": 512 * 1024,
    "/classify_batch": 16 * 1024 * 1024,
}
DEFAULT_MAX_REQUEST_BYTES = 1024 * 1024

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


# --------------------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------------------

class TriageMetrics:
    """Custom Prometheus collectors for the triage service (names start with ``triage_``).

    ``triage_decisions_total{band,source,reason}``: decisions returned;
    ``triage_tickets_per_request`` (histogram); ``triage_decide_seconds{endpoint}`` (histogram);
    ``triage_llm_calls_total{outcome}`` with outcome in ``request`` (endpoint calls),
    ``cache_hit``, ``error``, ``skipped_budget``, ``skipped_circuit``;
    ``triage_llm_cost_usd_total``; ``triage_llm_tokens_total{kind}``;
    ``triage_errors_total{endpoint,kind}``.
    """

    _LLM_KEYS = {"calls": "request", "cache_hits": "cache_hit", "errors": "error",
                 "skipped_budget": "skipped_budget", "skipped_circuit": "skipped_circuit"}

    def __init__(self) -> None:
        from prometheus_client import Counter, Histogram

        self.decisions = Counter("triage_decisions_total", "Decisions returned, by band and source",
                                 ["band", "source", "reason"])
        self.tickets = Histogram("triage_tickets_per_request", "Tickets per classify request",
                                 buckets=(1, 2, 5, 10, 50, 100, 250, 500, 1000))
        self.decide_seconds = Histogram("triage_decide_seconds", "Time in Triage.decide per request",
                                        ["endpoint"],
                                        buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                                 1, 2.5, 5, 10, 30))
        self.llm_calls = Counter("triage_llm_calls_total", "LLM fallback calls by outcome",
                                 ["outcome"])
        self.llm_cost = Counter("triage_llm_cost_usd_total", "LLM spend in USD (tokens x price)")
        self.llm_tokens = Counter("triage_llm_tokens_total", "LLM tokens", ["kind"])
        self.errors = Counter("triage_errors_total", "Requests that failed, by endpoint and kind",
                              ["endpoint", "kind"])
        self._lock = threading.Lock()
        self._last_llm: dict[int, dict[str, float]] = {}

    def record_decisions(self, decisions: Iterable[Any], endpoint: str, seconds: float) -> None:
        n = 0
        for d in decisions:
            get = d.get if isinstance(d, Mapping) else (lambda k, _d=d: getattr(_d, k, None))
            reason = str(get("reason") or "")
            # keep label cardinality bounded: "rule_pinned:x" -> "rule_pinned", "llm_error:.." too
            reason = reason.split(":", 1)[0][:40]
            self.decisions.labels(band=str(get("band")), source=str(get("source")), reason=reason).inc()
            n += 1
        self.tickets.observe(n)
        self.decide_seconds.labels(endpoint=endpoint).observe(seconds)

    def record_llm(self, llm: Any) -> None:
        """Add what the LLM client did since the last call (from ``llm.stats()`` deltas)."""
        if llm is None:
            return
        stats = llm.stats()
        with self._lock:
            last = self._last_llm.setdefault(id(llm), {})
            for key, outcome in self._LLM_KEYS.items():
                delta = float(stats.get(key, 0)) - last.get(key, 0.0)
                if delta > 0:
                    self.llm_calls.labels(outcome=outcome).inc(delta)
            for key, kind in (("input_tokens", "input"), ("output_tokens", "output")):
                delta = float(stats.get(key, 0)) - last.get(key, 0.0)
                if delta > 0:
                    self.llm_tokens.labels(kind=kind).inc(delta)
            delta = float(stats.get("total_cost_usd", 0.0)) - last.get("total_cost_usd", 0.0)
            if delta > 0:
                self.llm_cost.inc(delta)
            self._last_llm[id(llm)] = {k: float(stats.get(k, 0)) for k in
                                       [*self._LLM_KEYS, "input_tokens", "output_tokens",
                                        "total_cost_usd"]}

    def record_error(self, endpoint: str, kind: str) -> None:
        self.errors.labels(endpoint=endpoint, kind=kind[:60]).inc()


_METRICS: TriageMetrics | None = None
_METRICS_LOCK = threading.Lock()


def get_metrics() -> TriageMetrics:
    """The process-wide metrics (created on first call)."""
    global _METRICS
    with _METRICS_LOCK:
        if _METRICS is None:
            _METRICS = TriageMetrics()
        return _METRICS


def service_workers(env: Mapping[str, str] | None = None) -> int:
    """How many service processes BentoML starts: ``TRIAGE_SERVICE_WORKERS`` (default 1).

    A decision is mostly single-threaded Python (cleaning, rules, the cascade's TF-IDF first
    stage), so where cores are to spare more processes can answer more requests at once; on two
    cores shared with a load generator two workers were worse than one (benchmarks/README.md,
    "service"). Each process loads the bundle (memory x N) and keeps its own
    embedding cache and its own per-client review quota (a client spread over N processes may
    queue up to N times ``review.max_items_per_client_per_minute``); the review queue, the
    helpdesk state and the metrics are shared (database, Prometheus multiprocess directory)."""
    import os

    raw = ((os.environ if env is None else env).get("TRIAGE_SERVICE_WORKERS") or "1").strip()
    try:
        n = int(raw)
    except ValueError:
        n = 0
    if n < 1:
        raise ValueError(f"TRIAGE_SERVICE_WORKERS={raw!r}: give a whole number of service processes, 1 or more")
    return n


# --------------------------------------------------------------------------------------
# Request size limit
# --------------------------------------------------------------------------------------

class RequestSizeLimit:
    """ASGI middleware: 413 JSON for request bodies over the per-path byte limit.

    Checks ``Content-Length`` first, then counts the bytes as they arrive (chunked uploads),
    so an oversized upload is refused without more than the limit being held in memory.
    """

    def __init__(self, app: ASGIApp, limits: Mapping[str, int] | None = None,
                 default: int = DEFAULT_MAX_REQUEST_BYTES):
        self.app = app
        self.limits = dict(MAX_REQUEST_BYTES if limits is None else limits)
        self.default = default

    def limit_for(self, path: str) -> int:
        return self.limits.get(path.rstrip("/") or "/", self.default)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") != "http" or scope.get("method") not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope.get("path", ""))
        for name, value in scope.get("headers") or []:
            if name == b"content-length":
                try:
                    size = int(value)
                except ValueError:
                    await self._reject(send, 400, "Content-Length header is not a number")
                    return
                if size > limit:
                    await self._reject(send, 413, _too_large_message(scope, size, limit))
                    return
        # Read the body here (at most ``limit`` bytes are ever held), then replay it.
        chunks: list[bytes] = []
        seen = 0
        while True:
            message = await receive()
            if message.get("type") != "http.request":  # client went away
                return
            chunk = message.get("body", b"")
            seen += len(chunk)
            if seen > limit:
                await self._reject(send, 413, _too_large_message(scope, seen, limit, partial=True))
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    @staticmethod
    async def _reject(send: Send, status: int, message: str) -> None:
        body = json.dumps({"error": message}).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


def _too_large_message(scope: Scope, size: int, limit: int, partial: bool = False) -> str:
    path = scope.get("path", "")
    hint = (f"send at most {MAX_BATCH} tickets per request and split larger batches"
            if path.rstrip("/") == "/classify_batch" else
            f"ticket bodies are limited to {MAX_BODY_CHARS} characters")
    size_s = f"more than {limit}" if partial else str(size)
    return f"request body of {size_s} bytes exceeds the {limit} byte limit for {path}: {hint}"
