"""Reliability suite against a real ``bentoml serve`` started the way ``make serve`` starts it
(from ``serving/``): the HTTP and webhook parts of the bad-input corpus
(``tests/fixtures/bad_inputs/http_cases.py``), the review page under that working directory
(issue 14: it answered 503), and a ``kill -9`` of the whole server during enqueue: every review
item the API acknowledged is in the queue, none twice.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace

import pytest
from helpers import kill_tree, stop_process_group

from fixtures.bad_inputs.http_cases import HTTP, WEBHOOKS
from ticket_triage.config import write_params
from ticket_triage.helpdesk.zendesk import sign

httpx = pytest.importorskip("httpx")
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 240
SECRET = "whsec-reliability"
TOKEN = "alice-token"
KEEP_ENV = ("TRIAGE_PARAMS", "TRIAGE_REVIEW_DB_URL", "TRIAGE_REVIEWERS", "TRIAGE_REVIEW_SECRET",
            "ZENDESK_WEBHOOK_SECRET", "TRIAGE_LLM_CONFIG", "TRIAGE_LLM_BASE_URL", "TRIAGE_API_KEYS")


@pytest.fixture(scope="module")
def served(tiny_bundle, base_params, tmp_path_factory, free_port):
    sys.path.insert(0, str(ROOT / "tests" / "fakes"))
    from zendesk_server import FakeZendesk

    tmp = tmp_path_factory.mktemp("reliability")
    zd = FakeZendesk().start()
    params = copy.deepcopy(base_params)
    db = tmp / "review.sqlite"
    params["review"].update({"db_url": f"sqlite:///{db}", "audit_share": 0.0, "enqueue_from_api": True,
                             "max_items_per_client_per_minute": 0})
    params["helpdesk"].update({"webhooks_enabled": True, "base_url": zd.url})
    write_params(params, tmp / "params.yaml")
    env = {k: v for k, v in os.environ.items() if k not in KEEP_ENV}
    env.update({"TRIAGE_BUNDLE": str(tiny_bundle), "TRIAGE_LLM_ENABLED": "false",
                "TRIAGE_PARAMS": str(tmp / "params.yaml"),
                "TRIAGE_REVIEWERS": f"alice=sha256:{hashlib.sha256(TOKEN.encode()).hexdigest()}",
                "ZENDESK_WEBHOOK_SECRET": SECRET, "BENTOML_HOME": str(tmp / "bentoml"),
                "HF_HUB_OFFLINE": "1", "BENTOML_DO_NOT_TRACK": "True",
                "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])})
    port = free_port()
    log_path = tmp / "serve.log"
    log = log_path.open("w")
    # exactly `make serve`: cd serving && bentoml serve service:TicketTriage
    proc = subprocess.Popen([sys.executable, "-m", "bentoml", "serve", "service:TicketTriage",
                             "--host", "127.0.0.1", "--port", str(port)],
                            cwd=ROOT / "serving", env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)
    t0 = time.monotonic()
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"bentoml serve exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
            try:
                if client.get("/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() - t0 > START_TIMEOUT_S:
                pytest.fail(f"server not ready after {START_TIMEOUT_S}s:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.5)
        yield SimpleNamespace(client=client, proc=proc, db=db, log=log_path)
    finally:
        client.close()
        stop_process_group(proc)
        log.close()
        zd.stop()


def alive(served) -> None:
    assert served.proc.poll() is None, served.log.read_text()[-3000:]
    assert served.client.get("/readyz").status_code == 200


def test_corpus_size():
    from fixtures.bad_inputs.ingest_cases import CASES

    assert len(CASES) + len(HTTP) + len(WEBHOOKS) >= 150


@pytest.mark.parametrize("case,path,body,headers,status,needle", HTTP, ids=[c[0] for c in HTTP])
def test_http_bad_input(served, case, path, body, headers, status, needle):
    c = served.client
    if body is None:
        r = c.get(path)
    else:
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        r = c.post(path, content=content, headers=headers)
    assert r.status_code == status, (case, r.status_code, r.text[:500])
    assert needle in r.text, (case, r.text[:500])
    assert "Traceback" not in r.text
    if status >= 400:
        assert len(r.text) < 5000


def _zd_headers(body: bytes, signing: str) -> dict:
    now = datetime.now(timezone.utc)
    ts = {"stale": (now - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
          "future": (now + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
          "garbage": "garbage"}.get(signing, now.strftime("%Y-%m-%dT%H:%M:%SZ"))
    h = {"Content-Type": "application/json"}
    if signing != "none":
        h["X-Zendesk-Webhook-Signature"] = sign("not-the-secret" if signing == "wrong" else SECRET, ts, body)
        h["X-Zendesk-Webhook-Signature-Timestamp"] = ts
    return h


@pytest.mark.parametrize("case,payload,signing,status,needle", WEBHOOKS, ids=[c[0] for c in WEBHOOKS])
def test_webhook_bad_input(served, case, payload, signing, status, needle):
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    r = served.client.post("/webhooks/zendesk", content=body, headers=_zd_headers(body, signing))
    assert r.status_code == status, (case, r.status_code, r.text[:500])
    assert needle in r.text and "Traceback" not in r.text, (case, r.text[:500])


def test_review_page_answers_under_make_serve(served):
    """Issue 14, defect 6: the taxonomy path was resolved against serving/ (503)."""
    r = served.client.get("/review/login")
    assert r.status_code == 200, r.text[:500]
    assert "sign" in r.text.lower()
    alive(served)


def _queued(db: Path) -> dict[str, int]:
    import sqlalchemy as sa

    from ticket_triage.storage import review_items

    engine = sa.create_engine(f"sqlite:///{db}")
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.select(review_items.c.ticket_id)).all()
    finally:
        engine.dispose()
    out: dict[str, int] = {}
    for (tid,) in rows:
        out[tid] = out.get(tid, 0) + 1
    return out


def test_kill_9_during_enqueue_loses_no_acknowledged_item(served):
    """Last in the module: 8 clients send review-band batches; after ~100 acknowledged items
    the server and its workers (in sessions of their own) get SIGKILL. Every item acknowledged with a 200 is in the
    queue, and no ticket is queued twice."""
    url = str(served.client.base_url)
    acked: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def client(k: int) -> None:
        with httpx.Client(base_url=url, timeout=30) as c:
            n = 0
            while not stop.is_set():
                ids = [f"K-{k}-{n}-{j}" for j in range(5)]
                n += 1
                batch = [{"id": i, "language": "fr", "subject": "Virement bloqué",
                          "body": f"Mon virement {i} est bloqué depuis hier."} for i in ids]
                try:
                    r = c.post("/classify_batch", json={"tickets": batch})
                except httpx.TransportError:
                    return  # the server is gone
                if r.status_code == 200:
                    bands = [d["band"] for d in r.json()["decisions"]]
                    assert bands == ["review"] * 5, bands
                    with lock:
                        acked.extend(ids)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 60
    while len(acked) < 100 and time.monotonic() < deadline:
        time.sleep(0.05)
    kill_tree(served.proc, signal.SIGKILL)  # mid-traffic, the workers too (own sessions): requests in flight
    stop.set()
    for t in threads:
        t.join(30)
    served.proc.wait(10)
    assert len(acked) >= 100, f"only {len(acked)} acknowledged before the deadline"
    queued = _queued(served.db)
    lost = sorted(set(acked) - set(queued))
    twice = sorted(t for t, n in queued.items() if n > 1)
    assert not lost, f"{len(lost)} acknowledged item(s) lost: {lost[:10]}"
    assert not twice, f"queued twice: {twice[:10]}"
    print(f"\nkill -9: {len(acked)} acknowledged, {len(queued)} queued (in-flight ones may be queued "
          "without an answer), 0 lost, 0 duplicated")
