import threading

import pytest

from ticket_triage.service.batching import MicroBatcher


def test_concurrent_calls_are_coalesced_and_results_routed_back():
    calls = []
    gate = threading.Event()

    def fn(items):
        calls.append(list(items))
        gate.wait(1)  # hold the first batch so the others queue up
        return [x * 10 for x in items]

    mb = MicroBatcher(fn, max_batch=16, max_wait_s=0.05)
    out = {}

    def worker(i):
        out[i] = mb.submit(i)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    gate.set()
    for t in threads:
        t.join(5)
    assert out == {i: i * 10 for i in range(12)}
    assert sum(len(c) for c in calls) == 12 and len(calls) < 12  # some calls were batched together


def test_failure_reaches_every_caller_and_the_worker_survives():
    def fn(items):
        if "bad" in items:
            raise ValueError("boom")
        return items

    mb = MicroBatcher(fn, max_wait_s=0.0)
    with pytest.raises(ValueError, match="boom"):
        mb.submit("bad")
    assert mb.submit("good") == "good"
