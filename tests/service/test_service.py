"""The BentoML service class, instantiated directly with the fixture bundle (no server)."""

from __future__ import annotations

import time

import pytest
from pydantic import ValidationError

from ticket_triage.decision.llm import LLMResult, combine, load_llm_config
from ticket_triage.schema import BANDS

TRANSFER = {"subject": "Transfer still pending",
            "body": "I sent money to my friend yesterday and the transfer is still pending."}


@pytest.fixture
def env(monkeypatch, tiny_bundle):
    monkeypatch.setenv("TRIAGE_BUNDLE", str(tiny_bundle))
    monkeypatch.setenv("TRIAGE_LLM_ENABLED", "false")
    for var in ("TRIAGE_LLM_CONFIG", "TRIAGE_LLM_BASE_URL", "TRIAGE_LLM_MODEL"):
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


def make_service():
    from serving.service import TicketTriage

    return TicketTriage()


def ticket_in(**kw):
    from serving.service import TicketIn

    return TicketIn(**kw)


def test_classify_and_batch(env):
    svc = make_service()
    out = svc.classify(ticket_in(**TRANSFER, id="T-1"))
    assert out.band in BANDS
    assert out.ticket_id == "T-1"
    assert out.topic in svc.triage.taxonomy.topic_ids
    assert out.model_version == svc.triage.model_version
    assert out.llm is None
    tickets = [ticket_in(**TRANSFER, id="a"), ticket_in(body="My top up failed", id="b"),
               ticket_in(subject="Card lost", id="c")]
    batch = svc.classify_batch(tickets)
    assert [d.ticket_id for d in batch.decisions] == ["a", "b", "c"]
    assert batch.model_version == svc.triage.model_version
    # the batch path and the single path agree
    assert batch.decisions[0].model_dump() == svc.classify(ticket_in(**TRANSFER, id="a")).model_dump()


def test_ready_info_reports_model_and_llm_off(env):
    svc = make_service()
    info = svc.ready_info()
    assert info["model_version"] == svc.triage.model_version
    assert info["llm"] == {"enabled": False}
    assert info["llm_fallback"] == "off"
    assert info["bundle_source"] == "env:TRIAGE_BUNDLE"
    assert svc.__is_ready__()


def test_missing_bundle_says_what_to_set(env, tmp_path):
    env.setenv("TRIAGE_BUNDLE", str(tmp_path / "nope"))
    with pytest.raises(FileNotFoundError, match="TRIAGE_BUNDLE"):
        make_service()


@pytest.mark.parametrize("payload,field", [
    ({"subject": "", "body": "   "}, "subject and body are both empty"),
    ({"body": "x" * 65_537}, "65536"),
    ({"subject": 3, "body": "text"}, "subject"),
    ({"body": "text", "tags": "not-a-list"}, "tags"),
    ({"body": "text", "created_at": "yesterday-ish"}, "created_at"),
])
def test_ticket_validation_names_the_problem(payload, field):
    from serving.service import TicketIn

    with pytest.raises(ValidationError) as err:
        TicketIn.model_validate(payload)
    assert field in str(err.value)


def test_batch_limits():
    from serving.service import TicketTriage

    spec = TicketTriage.apis["classify_batch"].input_spec
    with pytest.raises(ValidationError, match="at most 1000"):
        spec.model_validate({"tickets": [{"body": "x"}] * 1001})
    with pytest.raises(ValidationError, match="at least 1"):
        spec.model_validate({"tickets": []})
    ok = spec.model_validate({"tickets": [{"body": "x"}] * 1000})
    assert len(ok.tickets) == 1000


def test_openapi_has_examples_and_limits():
    from serving.service import TicketTriage

    spec = TicketTriage.openapi_spec.asdict()
    assert {"/classify", "/classify_batch", "/info/ready", "/readyz", "/metrics"} <= set(spec["paths"])
    ticket = spec["components"]["schemas"]["TicketIn"]
    assert ticket["properties"]["body"]["maxLength"] == 65_536
    assert ticket["example"]["subject"]


def test_llm_fallback_wired_through(env, fake_llm, tmp_path, write_llm_config, llm_timeout):
    plain = make_service().classify(ticket_in(**TRANSFER))
    other = next(t for t in plain.alternatives[1:] if t["topic"] != plain.topic)["topic"]
    cfg_path = write_llm_config(tmp_path / "llm.yaml")
    env.setenv("TRIAGE_LLM_ENABLED", "true")
    env.setenv("TRIAGE_LLM_BASE_URL", fake_llm.base_url)
    env.setenv("TRIAGE_LLM_CONFIG", str(cfg_path))
    svc = make_service()
    assert svc.ready_info()["llm"]["enabled"] is True
    cfg = load_llm_config(svc.llm.cfg)
    cold = svc.triage.policy.cold_start_topics
    if plain.band not in cfg.bands:
        pytest.fail(f"fixture bundle put the transfer ticket in {plain.band}; the LLM is never asked")

    for i, label in enumerate([plain.topic, other]):
        fake_llm.script("label", label=label)
        fake_llm.reset()
        out = svc.classify(ticket_in(subject=TRANSFER["subject"], body=TRANSFER["body"] + " " * i + f" ref {i}"))
        assert len(fake_llm.requests) == 1
        assert out.llm["label"] == label and out.llm["error"] is None
        band, topic, _, reason = combine(plain.band, plain.topic, LLMResult(label), cfg, cold)
        assert (out.band, out.topic, out.reason) == (band, topic, reason)

    fake_llm.script("hang", seconds=20)
    t0 = time.monotonic()
    out = svc.classify(ticket_in(subject="Pending transfer", body="Where is my transfer to my landlord?"))
    # generous bound (busy 2-core machine; typically ~llm_timeout): far below the 20 s hang, so the
    # LLM timeout ended the wait (the error below says so)
    assert time.monotonic() - t0 < 12
    assert out.llm["error"] == "timeout" and out.band in BANDS

    from prometheus_client import REGISTRY, generate_latest

    text = generate_latest(REGISTRY).decode()
    for name in ("triage_decisions_total", "triage_llm_calls_total", "triage_llm_cost_usd_total",
                 "triage_decide_seconds"):
        assert name in text
    assert 'triage_llm_calls_total{outcome="request"}' in text


def test_access_log_is_off_unless_asked_for(monkeypatch):
    """BentoML's per-request access log is off by default (~8% of the server's GIL time); TRIAGE_ACCESS_LOG=1 turns it on."""
    import importlib

    import serving.service as mod

    assert mod.TicketTriage.config["logging"]["access"]["enabled"] is False
    monkeypatch.setenv("TRIAGE_ACCESS_LOG", "1")
    try:
        assert importlib.reload(mod).TicketTriage.config["logging"]["access"]["enabled"] is True
    finally:
        monkeypatch.delenv("TRIAGE_ACCESS_LOG")
        importlib.reload(mod)


def test_service_caps_blas_threads(env):
    from threadpoolctl import threadpool_info, threadpool_limits

    if not any(p["user_api"] == "blas" for p in threadpool_info()):
        pytest.skip("no BLAS library visible to threadpoolctl")
    before = {p["user_api"]: p["num_threads"] for p in threadpool_info()}
    threadpool_limits(limits=2, user_api="blas")
    env.delenv("TRIAGE_BLAS_THREADS", raising=False)
    try:
        make_service()
        assert {p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"} == {1}
    finally:
        threadpool_limits(limits=before.get("blas", 1), user_api="blas")
