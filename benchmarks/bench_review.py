"""Benchmark the review queue and the helpdesk path.

Measures (median / p90 over several runs, milliseconds):
* review action: server-side time of one POST resolve (confirm/correct) on the review app
  (target <= 50 ms), and of the undo action;
* queue page: GET /review/ (claim next + stats + render) with N stored items (target <= 200 ms);
* webhook -> draft label: signed Zendesk webhook POSTed to the webhook app until the fake
  Zendesk server has received the draft tags (outbox worker woken by the webhook).

Run: ``python benchmarks/bench_review.py [--items 100000] [--runs 30] [--out results.json]``.
The apps are called in-process through Starlette's TestClient (no network hop), so the
numbers are server-side time; the fake Zendesk server is a real HTTP server on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "fakes"))


def summary(ms: list[float]) -> dict[str, float]:
    s = sorted(ms)
    return {"median_ms": round(statistics.median(s), 2),
            "p90_ms": round(s[min(len(s) - 1, int(0.9 * len(s)))], 2),
            "min_ms": round(s[0], 2), "runs": len(s)}


def seed(store, n: int, topics: list[str]) -> float:
    from ticket_triage.schema import Decision, Ticket

    t0 = time.perf_counter()
    base = datetime(2026, 1, 1, tzinfo=timezone.utc)
    urg = ["P0", "P1", "P2", "P3"]
    chunk = 10_000
    for start in range(0, n, chunk):
        pairs = []
        for i in range(start, min(n, start + chunk)):
            topic = topics[i % len(topics)]
            pairs.append((Ticket(id=f"b{i}", text=f"ticket {i}: my card payment is pending " * 3,
                                 created_at=base + timedelta(seconds=i)),
                          Decision(topic=topic, confidence=0.5, band="review", urgency=urg[i % 4],
                                   reason="below_review_threshold",
                                   alternatives=[{"topic": topics[(i + 1) % len(topics)], "p": 0.3}],
                                   explanation={"summary": "nearest neighbours disagree"},
                                   model_version="bench")))
        store.enqueue_many(pairs)
    return time.perf_counter() - t0


def bench_review(n_items: int, runs: int, tmp: Path) -> dict:
    from starlette.testclient import TestClient

    from ticket_triage.review.app import create_app, hash_token, mounted
    from ticket_triage.review.store import ReviewStore
    from ticket_triage.taxonomy import load_taxonomy

    taxonomy = load_taxonomy(ROOT / "conf/taxonomy/banking77.yaml")
    store = ReviewStore(f"sqlite:///{tmp / 'bench_review.sqlite'}")
    seed_s = seed(store, n_items, taxonomy.topic_ids)
    app = mounted(create_app(store, taxonomy, {"alice": hash_token("t", iterations=1000)},
                             secret_key="bench"))
    c = TestClient(app, follow_redirects=False)
    r = c.get("/review/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', r.text).group(1)
    r = c.post("/review/login", data={"csrf": csrf, "reviewer": "alice", "token": "t"})
    assert r.status_code == 303, r.text

    page_ms, resolve_ms, undo_ms = [], [], []
    for i in range(runs):
        t0 = time.perf_counter()
        r = c.get("/review/")
        page_ms.append((time.perf_counter() - t0) * 1000)
        assert r.status_code == 200
        csrf = re.search(r'name="csrf" value="([^"]+)"', r.text).group(1)
        item_id = re.search(r'data-item-id="(\d+)"', r.text).group(1)
        topic = taxonomy.topic_ids[i % len(taxonomy.topic_ids)]
        t0 = time.perf_counter()
        r = c.post(f"/review/items/{item_id}/resolve", data={"csrf": csrf, "topic": topic})
        resolve_ms.append((time.perf_counter() - t0) * 1000)
        assert r.status_code == 303
        if i % 5 == 4:  # undo every fifth action
            t0 = time.perf_counter()
            r = c.post("/review/undo", data={"csrf": csrf})
            undo_ms.append((time.perf_counter() - t0) * 1000)
            assert r.status_code == 303
    stats = store.stats()
    return {"items": n_items, "seed_seconds": round(seed_s, 1),
            "queue_page": summary(page_ms), "resolve_action": summary(resolve_ms),
            "undo_action": summary(undo_ms), "queue_size_after": stats.queue_size}


def bench_webhook(runs: int, tmp: Path) -> dict:
    import os

    from starlette.testclient import TestClient
    from zendesk_server import FakeZendesk

    from ticket_triage.helpdesk import OutboxWorker, build_adapter
    from ticket_triage.helpdesk.webhooks import create_webhook_app
    from ticket_triage.helpdesk.zendesk import sign
    from ticket_triage.review.store import ReviewStore
    from ticket_triage.schema import Decision

    os.environ["BENCH_ZD_SECRET"] = "bench-secret"

    def classify(tickets):  # the decision object is injected; this stands in for Triage.decide
        return [Decision("card_management", 0.8, "draft", "P3", "between_thresholds",
                         ticket_id=t.id, model_version="bench") for t in tickets]

    zd = FakeZendesk().start()
    try:
        store = ReviewStore(f"sqlite:///{tmp / 'bench_helpdesk.sqlite'}")
        adapter = build_adapter({"provider": "zendesk", "base_url": zd.url,
                                 "webhook_secret_env": "BENCH_ZD_SECRET"},
                                classify=classify, store=store,
                                clean=lambda s, b: f"{s}\n{b}")
        worker = OutboxWorker(adapter.outbox, {"zendesk": adapter}, interval_s=30).start()
        client = TestClient(create_webhook_app({"zendesk": adapter}, worker=worker))
        lat, ack = [], []
        for i in range(runs):
            tid = 5000 + i
            body = json.dumps({"type": "zen:event-type:ticket.created", "id": f"ev-{i}",
                               "detail": {"id": str(tid), "subject": "Card",
                                          "description": "my card has not arrived",
                                          "tags": [], "updated_at": "2026-01-01T00:00:00Z"}}).encode()
            ts = "2026-01-01T00:00:01Z"
            path = f"/api/v2/tickets/{tid}/tags.json"
            t0 = time.perf_counter()
            r = client.post("/zendesk", content=body, headers={
                "X-Zendesk-Webhook-Signature": sign("bench-secret", ts, body),
                "X-Zendesk-Webhook-Signature-Timestamp": ts})
            ack.append((time.perf_counter() - t0) * 1000)
            assert r.status_code == 200, r.text
            ok = zd.wait_for(lambda: any(q.path == path for q in zd.requests), timeout=10)
            lat.append((time.perf_counter() - t0) * 1000)
            assert ok, "draft tags never reached the fake Zendesk"
        worker.stop()
        return {"webhook_ack": summary(ack), "webhook_to_draft_tags": summary(lat)}
    finally:
        zd.stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as d:
        res = {"review": bench_review(args.items, args.runs, Path(d)),
               "helpdesk": bench_webhook(args.runs, Path(d))}
    res["targets"] = {"resolve_action_ms": 50, "queue_page_ms": 200}
    res["pass"] = {"resolve_action": res["review"]["resolve_action"]["median_ms"] <= 50,
                   "queue_page": res["review"]["queue_page"]["median_ms"] <= 200}
    text = json.dumps(res, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
