"""The serving stack's floor: the triage service's HTTP surface with no decision behind it.

Same BentoML options (threads, concurrency, access log), the same ASGI middlewares
(request-size limit, API guard) and the same pydantic request / response models as
``serving/service.py``, but ``/classify`` and ``/classify_batch`` answer one canned decision per
ticket: no cleaning, no model, no review queue. What the load generator measures against it
is what BentoML, the middlewares, pydantic and the load generator itself cost on this machine,
the latency no decision code can go under. ``bench_service.py --serve-floor`` runs the usual
protocol against it, so a service figure can be read against the floor of the same run.

    flock /tmp/tt-bench.lock .venv/bin/python benchmarks/bench_service.py --serve-floor --runs 3

Not part of the product: nothing imports it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any

import bentoml
from fastapi import FastAPI
from pydantic import Field

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "serving"))

from service import EXAMPLE, MAX_BATCH, BatchOut, DecisionOut, TicketIn  # noqa: E402

from ticket_triage.service.guard import ApiGuard  # noqa: E402
from ticket_triage.service.metrics import RequestSizeLimit  # noqa: E402

CANNED = {"topic": "card_payments", "confidence": 0.9912, "band": "auto_route", "urgency": "P3",
          "reason": "above_auto_threshold", "source": "model", "ticket_id": None,
          "alternatives": [{"topic": "card_payments", "p": 0.9912}, {"topic": "transfers", "p": 0.0051},
                           {"topic": "cards", "p": 0.0021}],
          "secondary_tags": [], "rule_hits": [], "out_of_scope_score": 0.0, "language": "en",
          "explanation": {"stage": "cheap", "cheap_out_of_scope_score": 0.41},
          "model_version": "floor", "taxonomy_version": "floor", "llm": None}

floor_info = FastAPI(title="floor info", docs_url=None, redoc_url=None, openapi_url=None)


@bentoml.asgi_app(floor_info, path="/info")
@bentoml.service(
    name="ticket_triage_floor",
    traffic={"timeout": 60, "max_concurrency": 128},
    threads=8,
    workers=1,
    resources={"cpu": "1"},
    logging={"access": {"enabled": os.environ.get("TRIAGE_ACCESS_LOG", "0").strip().lower() in ("1", "true", "yes")}},
)
class TicketTriageFloor:
    """The triage service's endpoints answering a canned decision (see the module docstring)."""

    @bentoml.api(route="/classify")
    def classify(self, ticket: TicketIn, /) -> DecisionOut:
        return DecisionOut.model_validate({**CANNED, "ticket_id": ticket.id})

    @bentoml.api(route="/classify_batch")
    def classify_batch(
        self,
        tickets: Annotated[list[TicketIn], Field(min_length=1, max_length=MAX_BATCH, examples=[[EXAMPLE]])],
    ) -> BatchOut:
        return BatchOut(decisions=[DecisionOut.model_validate({**CANNED, "ticket_id": t.id}) for t in tickets],
                        model_version="floor")

    @floor_info.get("/ready")
    def ready_route(self) -> dict[str, Any]:
        return {"model_version": "floor", "embedding_cache_entries": 0, "llm": {"enabled": False}}


TicketTriageFloor.add_asgi_middleware(RequestSizeLimit)
TicketTriageFloor.add_asgi_middleware(ApiGuard)
