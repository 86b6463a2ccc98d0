"""LLM fallback client against a real HTTP fake of the OpenAI chat endpoint (127.0.0.1)."""

from __future__ import annotations

import socket
import sys
import threading
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # tests/ (the fakes package)

from fakes.openai_server import FakeOpenAI  # noqa: E402

from ticket_triage.decision.llm import (  # noqa: E402
    LLMConfig,
    LLMConfigError,
    LLMFallback,
    LLMResult,
    combine,
    load_llm_config,
    parse_answer,
    should_consult,
)
from ticket_triage.taxonomy import load_taxonomy  # noqa: E402

ROOT = Path(__file__).resolve().parents[3]
TIMEOUT = 1.0


@pytest.fixture(scope="module")
def taxonomy():
    return load_taxonomy(ROOT / "conf" / "taxonomy" / "banking77.yaml")


@pytest.fixture(scope="module")
def fake():
    with FakeOpenAI() as f:
        yield f


@pytest.fixture
def server(fake):
    fake.script("abstain")
    fake.reset()
    return fake


def make(server, taxonomy, **over) -> LLMFallback:
    cfg = {"enabled": True, "base_url": server.base_url, "model": "fake-model",
           "timeout_s": TIMEOUT, "max_retries": 2, "backoff_s": 0.02, "max_backoff_s": 0.1,
           "failures_to_open": 100, "reset_after_s": 60, "daily_budget_usd": 10.0,
           "price_input_per_1m": 1.0, "price_output_per_1m": 2.0, **over}
    return LLMFallback(load_llm_config(cfg, env={}), taxonomy)


TEXT = "My card payment is still pending since yesterday, will it go through?"


# -- each scripted behaviour -> a result within the timeout and the right fallback ----------

@pytest.mark.parametrize("behaviour,params,label,error", [
    ("label", {"label": "card_payments"}, "card_payments", None),
    ("abstain", {}, None, None),
    ("invalid", {"label": "pizza_delivery"}, None, "invalid_label"),
    ("malformed", {}, None, "malformed_json"),
    ("status", {"status": 500}, None, "http_500"),
    ("status", {"status": 503}, None, "http_503"),
    ("rate_limit", {"retry_after": 0}, None, "rate_limited"),
    ("hang", {"seconds": 10 * TIMEOUT}, None, "timeout"),
])
def test_behaviour_gives_result_within_timeout(server, taxonomy, behaviour, params, label, error):
    llm = make(server, taxonomy)
    server.script(behaviour, **params)
    t0 = time.monotonic()
    res = llm.classify(TEXT, "card_payments", [])
    elapsed = time.monotonic() - t0
    assert isinstance(res, LLMResult)
    assert res.label == label
    assert res.error == error
    # generous bound (a busy machine): far below the 10 s hang, so the deadline is what ended it
    assert elapsed < TIMEOUT + 4.0, f"{behaviour} took {elapsed:.2f}s"
    if behaviour in ("status", "rate_limit"):  # retried, then gave up
        assert len(server.requests) == 3
    if behaviour == "invalid":
        assert res.raw_label == "pizza_delivery"


def test_structured_output_schema_lists_taxonomy_and_abstain(server, taxonomy):
    llm = make(server, taxonomy)
    llm.classify(TEXT, None, [])
    body = server.requests[-1]
    enum = body["response_format"]["json_schema"]["schema"]["properties"]["label"]["enum"]
    assert enum == [*taxonomy.topic_ids, "abstain"]
    assert body["model"] == "fake-model"
    system = body["messages"][0]["content"]
    assert "fees_and_charges" in system and "Boundary decisions" in system
    assert taxonomy.topic("refunds").description in system


def test_candidates_restrict_the_enum(server, taxonomy):
    llm = make(server, taxonomy)
    llm.classify(TEXT, "card_payments", [], candidates=["card_payments", "refunds", "bogus"])
    enum = server.requests[-1]["response_format"]["json_schema"]["schema"]["properties"]["label"]["enum"]
    assert enum == ["card_payments", "refunds", "abstain"]
    server.script("label", label="transfers")  # outside the candidates -> invalid
    res = llm.classify(TEXT + " x", "card_payments", [], candidates=["card_payments", "refunds"])
    assert res.label is None and res.error == "invalid_label"


def test_few_shot_examples_are_sent_and_capped_at_k(server, taxonomy):
    llm = make(server, taxonomy, few_shot={"k": 2})
    shots = [("Where is my transfer?", "transfers"), ("Refund please", "refunds"),
             ("Lost card", "fraud_and_security")]
    llm.classify(TEXT, None, shots)
    user = server.requests[-1]["messages"][1]["content"]
    assert "[transfers] Where is my transfer?" in user and "[refunds] Refund please" in user
    assert "Lost card" not in user


def test_rate_limit_honours_retry_after_then_succeeds(server, taxonomy):
    llm = make(server, taxonomy)
    server.script("label", label="transfers")
    server.enqueue("rate_limit", retry_after=0.3)
    t0 = time.monotonic()
    res = llm.classify(TEXT, None, [])
    elapsed = time.monotonic() - t0
    assert res.label == "transfers" and res.error is None
    assert len(server.requests) == 2
    assert elapsed >= 0.3, "Retry-After was not honoured"


def test_retry_after_beyond_deadline_gives_up_at_once(server, taxonomy):
    llm = make(server, taxonomy)
    server.script("rate_limit", retry_after=30)
    t0 = time.monotonic()
    res = llm.classify(TEXT, None, [])
    assert res.error == "rate_limited"
    assert time.monotonic() - t0 < 10  # generous; waiting the 30 s Retry-After would exceed it
    assert len(server.requests) == 1


def test_500_then_success_is_retried(server, taxonomy):
    llm = make(server, taxonomy)
    server.script("label", label="top_ups")
    server.enqueue("status", status=502)
    res = llm.classify(TEXT, None, [])
    assert res.label == "top_ups"
    assert len(server.requests) == 2


def test_connection_refused_is_an_abstain(taxonomy):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # a long timeout, so "answered without waiting for it" has room on a busy machine: waiting
    # out the timeout even once would take 30 s, the refusal itself takes milliseconds
    llm = LLMFallback(load_llm_config({"enabled": True, "base_url": f"http://127.0.0.1:{port}/v1",
                                       "timeout_s": 30.0, "backoff_s": 0.01}, env={}), taxonomy)
    t0 = time.monotonic()
    res = llm.classify(TEXT, None, [])
    assert res.label is None and res.error == "connection_error"
    assert time.monotonic() - t0 < 10.0


def test_disabled_label_becomes_abstain(server, taxonomy):
    llm = make(server, taxonomy, disabled_labels=["fraud_and_security"])
    server.script("label", label="fraud_and_security")
    res = llm.classify(TEXT, None, [])
    assert res.label is None and res.error == "disabled_label" and res.raw_label == "fraud_and_security"


def test_disabled_config_never_calls(server, taxonomy):
    llm = make(server, taxonomy, enabled=False)
    res = llm.classify(TEXT, None, [])
    assert res.label is None and res.error == "disabled"
    assert server.requests == []


# -- cost, budget, cache, breaker --------------------------------------------------------

def test_cost_is_tokens_times_price_and_summed(server, taxonomy):
    llm = make(server, taxonomy, price_input_per_1m=1.0, price_output_per_1m=2.0)
    server.script("label", label="refunds", prompt_tokens=1000, completion_tokens=100)
    results = [llm.classify(f"{TEXT} #{i}", None, []) for i in range(3)]
    for r in results:
        assert r.input_tokens == 1000 and r.output_tokens == 100
        assert r.cost_usd == pytest.approx(1000 * 1e-6 + 100 * 2e-6)
    st = llm.stats()
    assert st["total_cost_usd"] == pytest.approx(3 * 0.0012)
    assert st["budget_left"] == pytest.approx(10.0 - 3 * 0.0012)
    assert st["calls"] == 3 and st["errors"] == 0


def test_budget_cap_stops_calls_once_reached(server, taxonomy):
    # each call costs 0.001 + 0.0002 = 0.0012 USD; a 0.002 budget allows two calls
    llm = make(server, taxonomy, daily_budget_usd=0.002)
    server.script("label", label="refunds", prompt_tokens=1000, completion_tokens=100)
    first = llm.classify("ticket one", None, [])
    second = llm.classify("ticket two", None, [])
    third = llm.classify("ticket three", None, [])
    assert first.label == second.label == "refunds"
    assert third.label is None and third.error == "budget_exhausted"
    assert len(server.requests) == 2
    assert llm.stats()["budget_left"] == 0.0


def test_budget_resets_on_a_new_day(server, taxonomy):
    day = ["2026-01-01"]
    cfg = load_llm_config({"enabled": True, "base_url": server.base_url, "timeout_s": TIMEOUT,
                           "daily_budget_usd": 0.001, "price_input_per_1m": 1.0}, env={})
    llm = LLMFallback(cfg, taxonomy, today=lambda: day[0])
    server.script("label", label="refunds", prompt_tokens=2000, completion_tokens=0)
    assert llm.classify("a", None, []).label == "refunds"
    assert llm.classify("b", None, []).error == "budget_exhausted"
    day[0] = "2026-01-02"
    assert llm.classify("c", None, []).label == "refunds"


def test_cache_hit_does_not_call_the_server(server, taxonomy):
    llm = make(server, taxonomy)
    server.script("label", label="card_payments")
    a = llm.classify(TEXT, None, [])
    b = llm.classify(TEXT, None, [])
    assert len(server.requests) == 1
    assert not a.cached and b.cached
    assert b.label == "card_payments" and b.cost_usd == 0.0
    st = llm.stats()
    assert st["cache_hits"] == 1 and st["calls"] == 1


def test_cache_key_includes_prompt_version_and_model(server, taxonomy):
    server.script("label", label="card_payments")
    make(server, taxonomy, prompt_version="v1").classify(TEXT, None, [])
    make(server, taxonomy, prompt_version="v2").classify(TEXT, None, [])
    assert len(server.requests) == 2
    llm = make(server, taxonomy, cache_size=1)
    llm.classify("one", None, [])
    llm.classify("two", None, [])   # evicts "one"
    llm.classify("one", None, [])
    assert len(server.requests) == 5


def test_errors_are_not_cached(server, taxonomy):
    llm = make(server, taxonomy, max_retries=0)
    server.script("status", status=500)
    assert llm.classify(TEXT, None, []).error == "http_500"
    server.script("label", label="refunds")
    assert llm.classify(TEXT, None, []).label == "refunds"


def test_circuit_breaker_opens_and_half_opens(server, taxonomy):
    now = [1000.0]
    cfg = load_llm_config({"enabled": True, "base_url": server.base_url, "timeout_s": TIMEOUT,
                           "max_retries": 0, "failures_to_open": 2, "reset_after_s": 30}, env={})
    # the fake clock only moves when the test moves it, so deadlines never pass
    llm = LLMFallback(cfg, taxonomy, clock=lambda: now[0])
    server.script("status", status=500)
    assert llm.classify("a", None, []).error == "http_500"
    assert llm.classify("b", None, []).error == "http_500"
    res = llm.classify("c", None, [])
    assert res.error == "circuit_open" and len(server.requests) == 2
    assert llm.stats()["circuit_open"] is True
    now[0] += 31  # half-open: one trial call goes through
    server.script("label", label="transfers")
    assert llm.classify("d", None, []).label == "transfers"
    assert llm.stats()["circuit_open"] is False and llm.stats()["consecutive_failures"] == 0


def test_bad_answers_do_not_open_the_breaker(server, taxonomy):
    llm = make(server, taxonomy, failures_to_open=1, max_retries=0)
    server.script("malformed")
    llm.classify("a", None, [])
    llm.classify("b", None, [])
    assert len(server.requests) == 2
    assert llm.stats()["circuit_open"] is False


# -- PII ---------------------------------------------------------------------------------

def test_no_pii_reaches_the_endpoint(server, taxonomy):
    llm = make(server, taxonomy)
    server.script("label", label="card_payments")
    text = ("Please call me on +44 20 7946 0958 or mail jane.doe@example.com, my card is "
            "4111 1111 1111 1111 and the payment is pending.")
    shots = [("Write to bob.smith@example.org about card 5555 5555 5555 4444", "card_payments"),
             ("Ring 020 7946 0123 about my transfer", "transfers")]
    llm.classify(text, "card_payments", shots)
    sent = server.sent_text()
    for pii in ("jane.doe@example.com", "bob.smith@example.org", "7946 0958", "7946 0123",
                "4111 1111 1111 1111", "4111111111111111", "5555 5555 5555 4444"):
        assert pii not in sent, f"{pii!r} reached the endpoint"
    assert "[EMAIL]" in sent and "[CARD]" in sent and "[PHONE]" in sent


def test_api_key_only_from_environment(server, taxonomy):
    with pytest.raises(LLMConfigError, match="TRIAGE_LLM_API_KEY"):
        load_llm_config({"enabled": True, "api_key": "sk-in-a-file"}, env={})
    cfg = load_llm_config({"enabled": False}, env={"TRIAGE_LLM_API_KEY": "sk-secret",
                                                   "TRIAGE_LLM_BASE_URL": server.base_url,
                                                   "TRIAGE_LLM_MODEL": "m2",
                                                   "TRIAGE_LLM_ENABLED": "true"})
    assert cfg.api_key == "sk-secret" and cfg.base_url == server.base_url
    assert cfg.model == "m2" and cfg.enabled
    assert "sk-secret" not in repr(cfg) and "sk-secret" not in str(cfg.to_dict())
    LLMFallback(cfg, taxonomy).classify(TEXT, None, [])
    assert server.headers[-1].get("authorization") == "Bearer sk-secret"


def test_no_key_for_openai_abstains_with_clear_error(server, taxonomy):
    llm = LLMFallback(load_llm_config({"enabled": True}, env={}), taxonomy)
    res = llm.classify(TEXT, None, [])
    assert res.label is None and res.error == "no_api_key"


def test_config_validation_names_the_key():
    with pytest.raises(LLMConfigError, match="llm.timeout_s"):
        load_llm_config({"timeout_s": 0}, env={})
    with pytest.raises(LLMConfigError, match="llm.bands"):
        load_llm_config({"bands": ["maybe"]}, env={})
    with pytest.raises(LLMConfigError, match="TRIAGE_LLM_ENABLED"):
        load_llm_config({}, env={"TRIAGE_LLM_ENABLED": "perhaps"})


def test_conf_files_load(taxonomy):
    import yaml

    for name in ("disabled", "openai", "local"):
        raw = yaml.safe_load((ROOT / "conf" / "llm" / f"{name}.yaml").read_text())
        raw.pop("defaults", None)
        assert "api_key" not in raw
        cfg = load_llm_config(raw, env={})
        assert cfg.enabled is (name != "disabled")


def test_thread_safe_counters(server, taxonomy):
    llm = make(server, taxonomy, timeout_s=30)  # counters, not deadlines: no timeouts on a busy machine
    server.script("label", label="refunds", prompt_tokens=100, completion_tokens=10)
    results: list[LLMResult] = []
    lock = threading.Lock()

    def work(i: int) -> None:
        for j in range(5):
            r = llm.classify(f"ticket {i % 4} {j}", None, [])  # 4 threads share texts -> cache
            with lock:
                results.append(r)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    st = llm.stats()
    assert len(results) == 40 and all(r.label == "refunds" for r in results)
    assert st["calls"] + st["cache_hits"] == 40
    assert st["calls"] == len(server.requests)
    assert st["total_cost_usd"] == pytest.approx(st["calls"] * (100e-6 + 10 * 2e-6))


# -- parsing and the combination rule ----------------------------------------------------

@pytest.mark.parametrize("content,expected", [
    ('{"label": "refunds", "reason": "r"}', ("refunds", None)),
    ('```json\n{"label": "refunds"}\n```', ("refunds", None)),
    ('{"label": "ABSTAIN"}', (None, None)),
    ('{"label": 3}', (None, "invalid_label")),
    ('{"reason": "no label"}', (None, "malformed_json")),
    ("[1, 2]", (None, "malformed_json")),
    ("", (None, "empty_answer")),
    (None, (None, "empty_answer")),
])
def test_parse_answer_is_defensive(content, expected):
    label, _raw, _reason, err = parse_answer(content, ["refunds", "transfers"])
    assert (label, err) == expected


def _r(label, error=None):
    return LLMResult(label=label, raw_label=label, error=error)


@pytest.mark.parametrize("band,topic,llm,allow,cold,expected", [
    ("review", "refunds", _r("refunds"), False, (), ("draft", "refunds", "llm", "llm_agrees")),
    ("draft", "refunds", _r("refunds"), False, (), ("draft", "refunds", "model", "llm_agrees")),
    ("draft", "refunds", _r("refunds"), True, (), ("auto_route", "refunds", "llm", "llm_agrees")),
    ("draft", "refunds", _r("transfers"), False, (), ("review", "refunds", "model", "llm_disagrees")),
    ("review", "refunds", _r("transfers"), True, (), ("review", "refunds", "model", "llm_disagrees")),
    ("draft", "refunds", _r(None), True, (), ("draft", "refunds", "model", "llm_abstained")),
    ("draft", "refunds", _r(None, "timeout"), True, (), ("draft", "refunds", "model", "llm_error:timeout")),
    ("review", "refunds", None, True, (), ("review", "refunds", "model", "")),
    ("review", "refunds", _r("top_ups"), True, ("top_ups",), ("draft", "top_ups", "llm", "llm_cold_start")),
    ("review", None, _r("top_ups"), True, ("top_ups",), ("draft", "top_ups", "llm", "llm_cold_start")),
    ("draft", "top_ups", _r("top_ups"), True, ("top_ups",), ("draft", "top_ups", "model", "llm_agrees")),
])
def test_combine(band, topic, llm, allow, cold, expected):
    cfg = LLMConfig(enabled=True, allow_draft_to_auto=allow)
    assert combine(band, topic, llm, cfg, cold_start_topics=cold) == expected


def test_should_consult():
    assert should_consult("draft", LLMConfig(enabled=True))
    assert not should_consult("auto_route", LLMConfig(enabled=True))
    assert not should_consult("review", LLMConfig(enabled=False))
    assert not should_consult("review", {"enabled": True, "bands": ["draft"]})


def test_serving_config_reads_the_deployed_params_file(tmp_path, monkeypatch):
    """A server deployed with TRIAGE_PARAMS takes its LLM section from that file, like its review
    queue and webhooks do (it used to read the working directory's params.yaml regardless)."""
    import yaml

    from ticket_triage.decision.llm import serving_llm_config

    deployed = tmp_path / "deploy.yaml"
    deployed.write_text(yaml.safe_dump({"llm": {"enabled": True, "base_url": "http://127.0.0.1:9/v1",
                                                "model": "deployed-model"}}))
    other = tmp_path / "project"
    (other / "conf").mkdir(parents=True)
    (other / "conf" / "config.yaml").write_text("defaults: []\n")  # the project root marker
    (other / "params.yaml").write_text(yaml.safe_dump({"llm": {"enabled": False, "model": "project-model"}}))
    monkeypatch.chdir(other)
    cfg = serving_llm_config(env={"TRIAGE_PARAMS": str(deployed)})
    assert cfg.enabled and cfg.model == "deployed-model"
    assert serving_llm_config(env={}).model == "project-model"  # without it: the working directory's
