"""BentoML service: HTTP in front of ``ticket_triage.decision.triage.Triage``. Glue only.

    bentoml serve serving.service:TicketTriage --host 127.0.0.1 --port 3000 --timeout-keep-alive 75

(``make serve``; the keep-alive is ``ticket_triage.service.packaging.SERVE_OPTIONS``: uvicorn's 5-s
default races clients that keep idle connections for 5 s.)

Endpoints: POST /classify (one ticket), POST /classify_batch (up to 1,000 tickets),
GET /info/ready (model version, LLM fallback on/off; bundle path, LLM endpoint and counters only
with a valid API key), BentoML's /livez /healthz /readyz and
/metrics (with the ``triage_*`` metrics of ``ticket_triage.service.metrics``), OpenAPI docs at /.
Mounted (``ticket_triage.service.mounts``, built on first request): the review page at /review/ and
the helpdesk webhooks at /webhooks/<provider>; review-band decisions feed the review queue.

Access (``ticket_triage.service.guard``): API key from ``$TRIAGE_API_KEYS`` (without one, loopback
clients only), JSON bodies only (415), review items per caller and minute capped (429).

Speed: BentoML's per-request access log is off unless ``TRIAGE_ACCESS_LOG=1``; numpy's BLAS pools
are capped at ``TRIAGE_BLAS_THREADS`` (default 1) threads, whose idle workers otherwise spin
between requests (``ticket_triage.models.base.limit_blas_threads``).

Bundle: env ``TRIAGE_BUNDLE``, else the Bento model the Bento was built with (env ``TRIAGE_BENTO_MODEL``,
set by the package stage; ``ticket-triage:latest`` outside a built Bento), else the MLflow
alias ``champion`` (see ``ticket_triage.bundles.resolve_bundle``). LLM fallback:
``ticket_triage.decision.llm.serving_llm_config`` (``TRIAGE_LLM_CONFIG`` / params.yaml / env overrides).
"""

from __future__ import annotations

import logging
import os
import time
from datetime import datetime
from http import HTTPStatus
from pathlib import Path
from typing import Annotated, Any

import bentoml
from bentoml.exceptions import BentoMLException
from fastapi import FastAPI, Request
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ticket_triage.service.batching import MicroBatcher
from ticket_triage.service.guard import ApiGuard, ReviewQuota, client_of
from ticket_triage.service.mounts import (deploy_params, enqueue_for_review, lazy_asgi, review_app,
                                          service_classify, warm_review_feed, webhooks_app)
from ticket_triage.service.metrics import (
    MAX_BATCH,
    MAX_BODY_CHARS,
    MAX_SUBJECT_CHARS,
    MAX_TAGS,
    RequestSizeLimit,
    get_metrics,
    service_workers,
)
from ticket_triage.bundles import bento_model_tag, resolve_bundle

log = logging.getLogger("ticket_triage.service")

EXAMPLE = {"subject": "Card payment still pending",
           "body": "I paid for groceries with my card two days ago and it still shows as pending.",
           "id": "T-1001", "channel": "email", "tags": []}


class TicketIn(BaseModel):
    """One raw ticket; at least one of subject and body must be non-empty."""

    model_config = ConfigDict(extra="ignore", json_schema_extra={"example": EXAMPLE})  # BentoML: "example"

    subject: Annotated[str, Field(max_length=MAX_SUBJECT_CHARS, description="Ticket subject line",
                                  examples=[EXAMPLE["subject"]])] = ""
    body: Annotated[str, Field(max_length=MAX_BODY_CHARS,
                               description=f"Ticket body, plain text or HTML, at most {MAX_BODY_CHARS} characters",
                               examples=[EXAMPLE["body"]])] = ""
    id: Annotated[str | None, Field(max_length=200, examples=["T-1001"])] = None
    created_at: Annotated[datetime | None, Field(examples=["2026-01-15T09:30:00Z"])] = None
    tags: Annotated[list[Annotated[str, Field(max_length=200)]],
                    Field(max_length=MAX_TAGS, description="The helpdesk's own tags")] = []
    channel: Annotated[str | None, Field(max_length=50, examples=["email"])] = None
    language: Annotated[str | None, Field(max_length=16, description="ISO 639-1 if known",
                                          examples=["en"])] = None

    @field_validator("tags", mode="before")
    @classmethod
    def _none_tags(cls, v: Any) -> Any:
        return [] if v is None else v

    @model_validator(mode="after")
    def _not_empty(self) -> "TicketIn":
        if not self.subject.strip() and not self.body.strip():
            raise ValueError("subject and body are both empty: send the ticket text in at least one of them")
        return self

    def to_ticket_dict(self) -> dict[str, Any]:
        d = self.model_dump()
        d["id"] = d.get("id") or ""
        return d


class DecisionOut(BaseModel):
    """A routing decision (``ticket_triage.schema.Decision``)."""

    model_config = ConfigDict(extra="allow")

    topic: str | None = Field(description="Taxonomy topic, or null when none applies",
                              examples=["card_payments"])
    confidence: float = Field(examples=[0.93])
    band: str = Field(description="auto_route | draft | review", examples=["auto_route"])
    urgency: str = Field(examples=["P2"])
    reason: str = Field("", examples=["above_auto_threshold"])
    source: str = Field("model", description="rules | model | llm | human")
    ticket_id: str | None = None
    alternatives: list[dict[str, Any]] = []
    secondary_tags: list[str] = []
    rule_hits: list[dict[str, Any]] = []
    out_of_scope_score: float = 0.0
    language: str | None = None
    explanation: dict[str, Any] = {}
    model_version: str | None = None
    taxonomy_version: str | None = None
    llm: dict[str, Any] | None = None


class BatchOut(BaseModel):
    decisions: list[DecisionOut]
    model_version: str | None = None


info_app = FastAPI(title="ticket-triage info", docs_url=None, redoc_url=None, openapi_url=None)


# In a built Bento this file is <bento>/src/serving/service.py, beside <bento>/bento.yaml
BENTO_ROOT = Path(__file__).resolve().parents[2]


def _bento_model_path() -> str:
    """The Bento model the Bento was built with (see bento_model_tag), else ticket-triage:latest."""
    return bentoml.models.get(bento_model_tag(bento_root=BENTO_ROOT)).path


@bentoml.asgi_app(info_app, path="/info")
@bentoml.service(
    name="ticket_triage",
    traffic={"timeout": 60, "max_concurrency": 128},
    threads=8,  # sync APIs run in a pool of this size; LLM calls wait on I/O
    # processes, each with the bundle loaded; see service_workers() for what two of them share
    workers=service_workers(),
    resources={"cpu": "1"},
    # BentoML's access log writes a line per request through `logging`: ~8% of the time the server
    # held the GIL at 8 clients (py-spy, 2026-12-06). Off unless TRIAGE_ACCESS_LOG=1; /metrics counts requests.
    logging={"access": {"enabled": os.environ.get("TRIAGE_ACCESS_LOG", "0").strip().lower() in ("1", "true", "yes")}},
)
class TicketTriage:
    """Support-ticket triage: rules, calibrated classifier, two thresholds, LLM fallback."""

    def __init__(self, bundle_dir: str | None = None) -> None:
        from ticket_triage.decision.triage import Triage
        from ticket_triage.decision.llm import LLMFallback, serving_llm_config
        from ticket_triage.models.base import limit_blas_threads
        from ticket_triage.taxonomy import load_taxonomy

        limit_blas_threads()  # idle OpenBLAS workers spin between requests (TRIAGE_BLAS_THREADS)
        env = None if bundle_dir is None else {"TRIAGE_BUNDLE": str(bundle_dir)}
        bundle, where = resolve_bundle(env=env, bento_model_path=_bento_model_path, bento_root=BENTO_ROOT)
        llm_cfg = serving_llm_config()
        self.llm = LLMFallback(llm_cfg, load_taxonomy(bundle / "taxonomy.yaml")) if llm_cfg.enabled else None
        self.triage = Triage.load(bundle, llm=self.llm).warm()  # the first request does not load the encoder
        # concurrent /classify calls share one batched decide (one encoder pass). No waiting for
        # company (max_wait_s=0): a lone request goes at once (c=1 p50 6.5 -> 3.0 ms); under load the
        # requests that arrive while a batch is decided form the next one.
        self.batcher = MicroBatcher(self.triage.decide, max_batch=64, max_wait_s=0.0)
        self.bundle, self.bundle_source = bundle, where
        self.metrics = get_metrics()
        review_cfg = deploy_params().get("review") or {}
        self.review_quota = ReviewQuota(float(review_cfg.get("max_items_per_client_per_minute", 120)))
        warm_review_feed()  # the review config and code, not at the first request (no database opened)
        log.info("serving %s from %s (%s); LLM fallback %s", self.triage.model_version, bundle, where,
                 "on" if self.llm else "off")

    def __is_ready__(self) -> bool:
        return self.triage is not None

    def _decide(self, tickets: list[dict[str, Any]], endpoint: str,
                ctx: bentoml.Context | None = None) -> list[DecisionOut]:
        client = client_of(ctx.request.headers) if ctx is not None else "in-process"
        wait = self.review_quota.wait(client)
        if wait > 0:  # refused before any work: nothing this caller was answered is dropped
            self.metrics.record_error(endpoint, "review_quota")
            raise BentoMLException(
                f"review-queue quota for this client used up ({self.review_quota.per_minute:g} review "
                f"items per minute, review.max_items_per_client_per_minute); retry after {wait:.0f} s",
                error_code=HTTPStatus.TOO_MANY_REQUESTS)
        t0 = time.perf_counter()
        try:
            if len(tickets) == 1:
                decisions = [self.batcher.submit(tickets[0]).to_dict()]
            else:
                decisions = [d.to_dict() for d in self.triage.decide(tickets)]
        except Exception as exc:
            self.metrics.record_error(endpoint, type(exc).__name__)
            log.exception("decide failed on %d ticket(s)", len(tickets))
            raise
        finally:
            self.metrics.record_llm(self.llm)
        self.metrics.record_decisions(decisions, endpoint, time.perf_counter() - t0)
        queued = enqueue_for_review(tickets, decisions)  # review band + audit sample; never raises
        self.review_quota.spend(client, int(queued.get("review", 0)) + int(queued.get("audit", 0)))
        return [DecisionOut.model_validate(d) for d in decisions]

    @bentoml.api(route="/classify")
    def classify(self, ticket: TicketIn, /, ctx: bentoml.Context = None) -> DecisionOut:  # type: ignore[assignment]
        """Classify one ticket: topic, band (auto_route / draft / review), urgency, reason."""
        return self._decide([ticket.to_ticket_dict()], "classify", ctx)[0]

    @bentoml.api(route="/classify_batch")
    def classify_batch(
        self,
        tickets: Annotated[list[TicketIn], Field(min_length=1, max_length=MAX_BATCH,
                                                 description=f"1 to {MAX_BATCH} tickets",
                                                 examples=[[EXAMPLE]])],
        ctx: bentoml.Context = None,  # type: ignore[assignment]  # None: called in-process
    ) -> BatchOut:
        """Classify up to 1,000 tickets in one vectorised call (order preserved)."""
        out = self._decide([t.to_ticket_dict() for t in tickets], "classify_batch", ctx)
        return BatchOut(decisions=out, model_version=self.triage.model_version)

    @info_app.get("/ready")
    def ready_route(self, request: Request) -> dict[str, Any]:
        """Readiness details; the bundle path, LLM endpoint and counters only for a caller with
        a valid API key (``x-triage-auth`` is set by ``ApiGuard``, never by the caller)."""
        return self.ready_info(detailed=request.headers.get("x-triage-auth") == "1")

    def ready_info(self, detailed: bool = True) -> dict[str, Any]:
        """Model version, LLM fallback on/off and how many ticket embeddings the process has
        cached (a load test on texts already cached measures the cache, not the encoder); with
        ``detailed`` also the bundle path and source, and the LLM endpoint, config and counters."""
        from ticket_triage.models.encoder import EMBEDDING_CACHE

        info = dict(self.triage.describe())
        info["embedding_cache_entries"] = len(EMBEDDING_CACHE)
        if not detailed:
            info["llm"] = {"enabled": self.llm is not None}
            info["details"] = "send the API key (Authorization: Bearer <key>) for bundle, LLM endpoint, counters"
            return info
        info.update(bundle=str(self.bundle), bundle_source=self.bundle_source,
                    llm=({**self.llm.describe(), **self.llm.stats()} if self.llm else {"enabled": False}))
        return info


TicketTriage.add_asgi_middleware(RequestSizeLimit)
TicketTriage.add_asgi_middleware(ApiGuard)  # inside the size limit: key, JSON only, caller identity

# Built on first request (no database or params touched at import); see ticket_triage.service.mounts.
TicketTriage.mount_asgi_app(lazy_asgi(review_app, name="review page"), path="/review")
TicketTriage.mount_asgi_app(lazy_asgi(lambda: webhooks_app(service_classify), name="helpdesk webhooks"),
                            path="/webhooks")
