"""ticket_triage.service.metrics: request size limit, bundle resolution, metrics deltas."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ticket_triage.bundles import resolve_bundle
from ticket_triage.service.metrics import RequestSizeLimit, TriageMetrics, get_metrics


def _echo_app():
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def echo(request: Request):
        body = await request.body()
        return JSONResponse({"bytes": len(body)})

    app = Starlette(routes=[Route("/classify", echo, methods=["POST"]),
                            Route("/classify_batch", echo, methods=["POST"]),
                            Route("/other", echo, methods=["POST"])])
    return RequestSizeLimit(app, limits={"/classify": 100, "/classify_batch": 1000}, default=50)


def test_request_size_limit_by_content_length():
    from starlette.testclient import TestClient

    client = TestClient(_echo_app())
    assert client.post("/classify", content=b"x" * 100).json() == {"bytes": 100}
    r = client.post("/classify", content=b"x" * 101)
    assert r.status_code == 413
    assert "100 byte limit for /classify" in r.json()["error"]
    r = client.post("/classify_batch", content=b"x" * 1001)
    assert r.status_code == 413 and "1000 tickets per request" in r.json()["error"]
    assert client.post("/other", content=b"x" * 51).status_code == 413
    assert client.post("/classify", content=b"x" * 10, headers={"content-length": "ten"}).status_code == 400


def test_request_size_limit_counts_chunked_bodies():
    from starlette.testclient import TestClient

    client = TestClient(_echo_app())

    def chunks(n):
        for _ in range(n):
            yield b"x" * 40

    assert client.post("/classify", content=chunks(2)).json() == {"bytes": 80}
    r = client.post("/classify", content=chunks(5))
    assert r.status_code == 413


def _bundle(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "policy.json").write_text("{}")
    return path


def test_resolve_bundle_order(tmp_path):
    env_b = _bundle(tmp_path / "env")
    bento_b = _bundle(tmp_path / "bento" / "bundle")
    mlflow_b = _bundle(tmp_path / "mlflow")
    calls = []

    def download(alias):
        calls.append(alias)
        return mlflow_b

    assert resolve_bundle(env={"TRIAGE_BUNDLE": str(env_b)}, bento_model_path=lambda: tmp_path / "bento",
                          download=download) == (
        env_b, "env:TRIAGE_BUNDLE")
    assert resolve_bundle(env={}, bento_model_path=lambda: tmp_path / "bento", download=download) == (bento_b, "bento:ticket-triage:latest")
    assert calls == []

    def not_in_store():
        raise LookupError("ticket-triage:latest not found")

    assert resolve_bundle(env={}, bento_model_path=not_in_store, download=download) == (mlflow_b, "mlflow:ticket-triage@champion")
    assert calls == ["champion"]


def test_resolve_bundle_failure_lists_what_was_tried(tmp_path):
    def no_registry(alias):
        raise RuntimeError("no MLFLOW_TRACKING_URI")

    with pytest.raises(FileNotFoundError) as err:
        resolve_bundle(env={}, bento_model_path=lambda: None, download=no_registry)
    msg = str(err.value)
    assert "TRIAGE_BUNDLE" in msg and "champion" in msg and "no MLFLOW_TRACKING_URI" in msg
    with pytest.raises(FileNotFoundError, match="not a model bundle"):
        resolve_bundle(env={"TRIAGE_BUNDLE": str(tmp_path)}, download=no_registry)


class _FakeLLM:
    def __init__(self):
        self.s = {"calls": 0, "cache_hits": 0, "errors": 0, "skipped_budget": 0,
                  "skipped_circuit": 0, "input_tokens": 0, "output_tokens": 0, "total_cost_usd": 0.0}

    def stats(self):
        return dict(self.s)


def _value(metric, **labels):
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value(metric, labels) or 0.0


def test_metrics_record_llm_deltas_and_decisions():
    m = get_metrics()
    assert m is get_metrics()  # one set of collectors per process
    llm = _FakeLLM()
    before_req = _value("triage_llm_calls_total", outcome="request")
    before_cost = _value("triage_llm_cost_usd_total")
    llm.s.update(calls=3, total_cost_usd=0.25, input_tokens=100)
    m.record_llm(llm)
    m.record_llm(llm)  # no change since last read -> no increment
    assert _value("triage_llm_calls_total", outcome="request") == before_req + 3
    assert _value("triage_llm_cost_usd_total") == pytest.approx(before_cost + 0.25)
    before = _value("triage_decisions_total", band="review", source="model", reason="llm_error")
    m.record_decisions([{"band": "review", "source": "model", "reason": "llm_error:timeout"}],
                       "classify", 0.01)
    assert _value("triage_decisions_total", band="review", source="model", reason="llm_error") == before + 1
    m.record_error("classify", "ValueError")
    assert _value("triage_errors_total", endpoint="classify", kind="ValueError") >= 1
    assert isinstance(m, TriageMetrics)
    json.dumps(llm.stats())


def test_service_workers_from_the_environment():
    from ticket_triage.service.metrics import service_workers

    assert service_workers({}) == 1
    assert service_workers({"TRIAGE_SERVICE_WORKERS": " 2 "}) == 2
    for bad in ("0", "-3", "two", "1.5"):
        with pytest.raises(ValueError, match="TRIAGE_SERVICE_WORKERS=.*1 or more"):
            service_workers({"TRIAGE_SERVICE_WORKERS": bad})
