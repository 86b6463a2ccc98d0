"""A batch that consults the LLM (issue 14, defect 3): calls run concurrently in a bounded pool
under ONE deadline; tickets whose answer is not back keep the model's decision with reason
``llm_deadline``; the batch never loses its decisions. Real HTTP to the fake OpenAI endpoint."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # tests/ (the fakes package)

from fakes.openai_server import FakeOpenAI  # noqa: E402

from ticket_triage.decision.llm import LLMConfigError, LLMFallback, load_llm_config  # noqa: E402
from ticket_triage.decision.triage import Triage  # noqa: E402
from ticket_triage.taxonomy import load_taxonomy  # noqa: E402

TICKETS = [{"id": f"T{i}", "subject": "Card payment", "body": f"My card payment number {i} is pending."}
           for i in range(12)]


@pytest.fixture
def fake():
    with FakeOpenAI() as f:
        yield f


def triage_with(bundle: Path, fake: FakeOpenAI, **over) -> Triage:
    cfg = {"enabled": True, "base_url": fake.base_url, "model": "fake-model", "timeout_s": 5,
           "max_retries": 0, "failures_to_open": 1000, "daily_budget_usd": 100.0, "cache_size": 0,
           "bands": ["auto_route", "draft", "review"], **over}
    llm = LLMFallback(load_llm_config(cfg, env={}), load_taxonomy(bundle / "taxonomy.yaml"))
    return Triage.load(bundle, llm=llm)


def test_hung_endpoint_keeps_every_decision_with_llm_deadline(tiny_bundle, fake):
    fake.script("hang", seconds=4)
    fake.reset()
    tri = triage_with(tiny_bundle, fake, batch_deadline_s=0.5, max_concurrency=4)
    baseline = Triage.load(tiny_bundle).decide(TICKETS)
    out = tri.decide(TICKETS)
    assert [d.ticket_id for d in out] == [t["id"] for t in TICKETS]
    for d, b in zip(out, baseline):
        assert d.reason == "llm_deadline"
        assert (d.band, d.topic, d.source) == (b.band, b.topic, b.source)  # the model's decision
        assert d.llm["error"] == "deadline"
    assert 1 <= len(fake.requests) <= 4  # the pool bound: queued calls were dropped, not sent


def test_calls_run_concurrently_but_bounded(tiny_bundle, fake):
    fake.script("hang", seconds=0.3, label="card_payments")
    fake.reset()
    tri = triage_with(tiny_bundle, fake, batch_deadline_s=30, max_concurrency=4)
    out = tri.decide(TICKETS)
    assert len(fake.requests) == len(TICKETS)
    assert 1 < fake.max_in_flight <= 4  # concurrent, and never more than the pool
    assert all(d.reason != "llm_deadline" and d.llm["error"] is None for d in out)


def test_some_late_some_answered(tiny_bundle, fake):
    fake.script("label", label="card_payments")
    for _ in range(2):
        fake.enqueue("hang", seconds=4)
    fake.reset()
    tri = triage_with(tiny_bundle, fake, batch_deadline_s=1.0, max_concurrency=2)
    out = tri.decide(TICKETS)
    late = [d for d in out if d.reason == "llm_deadline"]
    assert len(out) == len(TICKETS)
    # the first two calls hang and hold both pool threads: everything queued behind them is late
    assert len(late) == len(TICKETS)
    fake.script("label", label="card_payments")
    fake.reset()
    out = tri.decide(TICKETS[:3])
    assert all(d.llm["label"] for d in out)


@pytest.mark.parametrize("over,needle", [({"max_concurrency": 0}, "max_concurrency"),
                                         ({"batch_deadline_s": 60}, "batch_deadline_s"),
                                         ({"batch_deadline_s": "soon"}, "batch_deadline_s")])
def test_config_is_validated(over, needle):
    with pytest.raises(LLMConfigError, match=needle):
        load_llm_config({"enabled": True, **over}, env={})
