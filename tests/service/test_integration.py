"""One process deploys: the review page, the helpdesk webhooks and the review-queue feed
(``ticket_triage.service.mounts``) mounted in the BentoML service.

Instantiate-level tests call ``TicketTriage`` and the lazily built ASGI apps in process, with
a temp SQLite review database (``$TRIAGE_PARAMS`` points at a params file in ``tmp_path``).
The ``slow`` test starts the real ``bentoml serve`` and goes through HTTP end to end.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from helpers import stop_process_group
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.testclient import TestClient

from ticket_triage.service import mounts as deploy
from ticket_triage.config import write_params
from ticket_triage.review.feedback import should_audit
from ticket_triage.helpdesk.zendesk import sign
from ticket_triage.review.store import ReviewStore
from ticket_triage.schema import Decision

ROOT = Path(__file__).resolve().parents[2]
SECRET = "whsec-integration"
TOKEN = "alice-token"
REVIEWERS = f"alice=sha256:{hashlib.sha256(TOKEN.encode()).hexdigest()}"
# The fixture bundle was trained on English only: a French ticket goes to review
# (reason unsupported_language). Its text carries markup and PII the page must not echo raw.
REVIEW_TICKET = {"id": "R-1", "language": "fr", "subject": "Virement bloqué",
                 "body": "<script>alert(1)</script> Mon virement est bloqué, écrivez à "
                         "jane.doe@example.com"}
ENGLISH = {"subject": "Transfer still pending",
           "body": "I sent money to my friend yesterday and the transfer is still pending."}
ENV_VARS = ("TRIAGE_PARAMS", "TRIAGE_REVIEW_DB_URL", "TRIAGE_REVIEWERS", "TRIAGE_REVIEW_SECRET",
            "ZENDESK_WEBHOOK_SECRET", "ZENDESK_EMAIL", "ZENDESK_API_TOKEN", "TRIAGE_LLM_CONFIG",
            "TRIAGE_LLM_BASE_URL", "TRIAGE_LLM_MODEL")


def write_deploy_params(base_params: dict, path: Path, *, db: Path | str,
                        review: dict | None = None, helpdesk: dict | None = None) -> Path:
    params = copy.deepcopy(base_params)
    url = db if isinstance(db, str) else f"sqlite:///{db}"
    params["review"].update({"db_url": url, "audit_share": 0.0, "audit_seed": 7,
                             "enqueue_from_api": True, **(review or {})})
    params["helpdesk"].update(helpdesk or {})
    return write_params(params, path)


@pytest.fixture
def deployed(monkeypatch, tmp_path, tiny_bundle, base_params, db_url):
    """Env for an in-process service: fixture bundle, LLM off, params in tmp_path; the review
    DB is a SQLite file in tmp_path or a fresh PostgreSQL database (``db_url``, both run)."""
    for var in ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("TRIAGE_BUNDLE", str(tiny_bundle))
    monkeypatch.setenv("TRIAGE_LLM_ENABLED", "false")

    def configure(**kw) -> Path:
        deploy.reset()
        p = write_deploy_params(base_params, tmp_path / "params.yaml", db=db_url, **kw)
        monkeypatch.setenv("TRIAGE_PARAMS", str(p))
        return p

    configure()
    yield SimpleNamespace(db=db_url, configure=configure, env=monkeypatch, tmp=tmp_path,
                          opened=lambda: store_opened(db_url))
    deploy.reset()


def store_opened(db_url: str) -> bool:
    """Whether anything opened (and so migrated) the review database at ``db_url``."""
    import sqlalchemy as sa

    if db_url.startswith("sqlite:///"):
        return Path(db_url[len("sqlite:///"):]).exists()
    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as conn:
            return sa.inspect(conn).has_table("schema_version")
    finally:
        engine.dispose()


def make_service():
    from serving.service import TicketTriage

    return TicketTriage()


def ticket_in(**kw):
    from serving.service import TicketIn

    return TicketIn(**kw)


def queued(db: Path | str) -> dict[str, object]:
    """ticket_id -> QueueItem of everything in the review queue at ``db`` (read only)."""
    import sqlalchemy as sa

    from ticket_triage.storage import review_items

    engine = sa.create_engine(db if isinstance(db, str) else f"sqlite:///{db}")
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.select(review_items)).mappings().all()
        return {r["ticket_id"]: ReviewStore._to_item(r) for r in rows}
    finally:
        engine.dispose()


class AutoRouteTriage:
    """Wraps the real Triage; every decision comes back as a confident auto-route."""

    def __init__(self, real):
        self.real = real
        self.model_version = real.model_version

    def decide(self, tickets):
        out = []
        for d in self.real.decide(tickets):
            d.band, d.reason, d.confidence = "auto_route", "above_auto_threshold", 0.99
            out.append(d)
        return out


# ---- the mounts ------------------------------------------------------------------------

def test_service_mounts_lazy_apps_at_review_and_webhooks():
    from serving.service import TicketTriage

    mounts = {path: app for app, path, _ in TicketTriage.mount_apps}
    assert isinstance(mounts.get("/review"), deploy.LazyASGI)
    assert isinstance(mounts.get("/webhooks"), deploy.LazyASGI)
    assert mounts["/review"].factory is deploy.review_app


def test_importing_the_service_reads_no_params_and_opens_no_database(tmp_path):
    db = tmp_path / "never.sqlite"
    code = ("import serving.service, ticket_triage.service.mounts as d; "
            "assert d._SHARED.params is None and d._SHARED.store is None, 'work at import'")
    env = {**os.environ, "TRIAGE_PARAMS": str(tmp_path / "missing-params.yaml"),
           "TRIAGE_REVIEW_DB_URL": f"sqlite:///{db}", "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "src")]),
           "BENTOML_DO_NOT_TRACK": "True", "BENTOML_HOME": str(tmp_path / "bentoml")}
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert not db.exists()


# ---- feeding the queue -----------------------------------------------------------------

def test_review_band_decision_lands_in_store_and_others_do_not(deployed):
    svc = make_service()
    out = svc.classify(ticket_in(**REVIEW_TICKET))
    assert (out.band, out.reason) == ("review", "unsupported_language")
    draft = svc.classify(ticket_in(**ENGLISH, id="D-1"))
    assert draft.band != "review"
    batch = svc.classify_batch([ticket_in(**ENGLISH, id="D-2"),
                                ticket_in(**{**REVIEW_TICKET, "id": "R-2"})])
    assert [d.band == "review" for d in batch.decisions] == [False, True]

    items = queued(deployed.db)
    assert set(items) == {"R-1", "R-2"}
    item = items["R-1"]
    assert item.band == "review" and not item.is_audit_sample
    assert item.decision.reason == "unsupported_language"
    assert item.model_version == svc.triage.model_version
    assert "jane.doe@example.com" not in item.text, "ticket text was queued unredacted"
    assert "virement" in item.text.lower()


def test_auto_routes_are_queued_only_as_the_deterministic_audit_sample(deployed):
    deployed.configure(review={"audit_share": 0.5, "audit_seed": 7})
    svc = make_service()
    svc.triage = AutoRouteTriage(svc.triage)
    ids = [f"A-{i}" for i in range(20)]
    out = svc.classify_batch([ticket_in(**ENGLISH, id=i) for i in ids])
    assert {d.band for d in out.decisions} == {"auto_route"}
    expected = {i for i in ids if should_audit(i, 0.5, 7)}
    assert 0 < len(expected) < len(ids)  # the sample is a real subset
    items = queued(deployed.db)
    assert set(items) == expected
    assert all(it.is_audit_sample and it.band == "auto_route" for it in items.values())


def test_no_audit_share_means_no_auto_route_in_queue_and_no_database(deployed):
    svc = make_service()  # audit_share 0.0
    svc.triage = AutoRouteTriage(svc.triage)
    svc.classify_batch([ticket_in(**ENGLISH, id=f"N-{i}") for i in range(10)])
    assert not deployed.opened(), "the store was opened although nothing qualified"


def test_enqueue_from_api_false_keeps_the_queue_empty(deployed):
    deployed.configure(review={"enqueue_from_api": False})
    svc = make_service()
    assert svc.classify(ticket_in(**REVIEW_TICKET)).band == "review"
    assert not deployed.opened()


def test_id_less_tickets_get_a_stable_content_id(deployed):
    svc = make_service()
    body = {k: v for k, v in REVIEW_TICKET.items() if k != "id"}
    svc.classify(ticket_in(**body))
    svc.classify(ticket_in(**body))  # same text: same id, not queued twice
    items = queued(deployed.db)
    assert len(items) == 1 and next(iter(items)).startswith("api-")


def test_two_tickets_with_one_id_are_both_queued(deployed):
    """Issue 14, defect 1: a caller reusing an id for another ticket loses neither."""
    svc = make_service()
    svc.classify(ticket_in(**REVIEW_TICKET))
    other = {**REVIEW_TICKET, "subject": "Carte perdue", "body": "J'ai perdu ma carte hier soir."}
    assert svc.classify(ticket_in(**other)).band == "review"
    svc.classify(ticket_in(**REVIEW_TICKET))  # the first one again: already waiting
    engine = __import__("sqlalchemy").create_engine(deployed.db)
    try:
        with engine.connect() as conn:
            texts = [r[0] for r in conn.exec_driver_sql(
                "SELECT text FROM review_items WHERE ticket_id = 'R-1' ORDER BY id")]
    finally:
        engine.dispose()
    assert len(texts) == 2 and "perdu" in texts[1].lower() and "virement" in texts[0].lower()


def test_concurrent_batches_with_one_ticket_id_queue_it_once(deployed):
    """Issue 14, defect 2: 16 concurrent /classify_batch calls carrying one ticket id."""
    import threading

    svc = make_service()
    barrier = threading.Barrier(16)
    errors: list[BaseException] = []

    def call(i: int) -> None:
        try:
            barrier.wait()
            svc.classify_batch([ticket_in(**REVIEW_TICKET), ticket_in(**ENGLISH, id=f"E-{i}")])
        except BaseException as exc:  # noqa: BLE001 - asserted below
            errors.append(exc)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    engine = __import__("sqlalchemy").create_engine(deployed.db)
    try:
        with engine.connect() as conn:
            n = conn.exec_driver_sql("SELECT count(*) FROM review_items WHERE ticket_id = 'R-1'"
                                     ).scalar()
    finally:
        engine.dispose()
    assert n == 1


def test_enqueue_failure_is_counted_and_never_fails_the_request(deployed, tmp_path):
    from prometheus_client import REGISTRY

    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the database folder should be")
    deployed.env.setenv("TRIAGE_REVIEW_DB_URL", f"sqlite:///{blocker}/sub/review.sqlite")
    deploy.reset()

    def errors() -> float:
        return REGISTRY.get_sample_value("triage_review_enqueue_total", {"outcome": "error"}) or 0.0

    before = errors()
    svc = make_service()
    out = svc.classify(ticket_in(**REVIEW_TICKET))
    assert out.band == "review" and out.ticket_id == "R-1"
    assert errors() == before + 1


def test_warm_review_feed_reads_config_and_imports_but_opens_no_database(tmp_path):
    """The service's start-up warms the review feed (config read, review code imported: the
    first request paid ~0.4 s for it) without opening the database; a bad config does not
    raise there (it is retried on first need)."""
    db = tmp_path / "never.sqlite"
    code = ("import sys, ticket_triage.service.mounts as d; "
            "assert 'ticket_triage.review.feedback' not in sys.modules; "
            "ok = d.warm_review_feed(); "
            "print(ok, 'ticket_triage.review.feedback' in sys.modules, d._SHARED.store is None)")
    base = {**os.environ, "TRIAGE_REVIEW_DB_URL": f"sqlite:///{db}",
            "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "src")])}
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**base, "TRIAGE_PARAMS": str(ROOT / "params.yaml")},
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split() == ["True", "True", "True"] and not db.exists()
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT,
                       env={**base, "TRIAGE_PARAMS": str(tmp_path / "missing-params.yaml")},
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split()[0] == "False" and not db.exists()


def test_feed_rejects_a_bad_audit_share():
    with pytest.raises(ValueError, match="audit_share"):
        deploy.ReviewFeed(lambda: None, audit_share=1.5)


def test_db_url_env_overrides_config():
    cfg = {"db_url": "sqlite:///a.sqlite", "db_url_env": "MY_DB"}
    assert deploy.review_db_url(cfg, env={"MY_DB": "sqlite:///b.sqlite"}) == "sqlite:///b.sqlite"
    assert deploy.review_db_url(cfg, env={}) == "sqlite:///a.sqlite"
    assert deploy.review_db_url({}, env={}) == deploy.DEFAULT_DB_URL


# ---- lazy apps -------------------------------------------------------------------------

def test_lazy_asgi_builds_once_and_reports_a_failing_factory():
    import threading

    calls = []
    lock = threading.Lock()

    def factory():
        with lock:
            calls.append(1)
        time.sleep(0.05)
        return Starlette(routes=[Mount("/", app=deploy.unavailable_app("built", status=418))])

    lazy = deploy.lazy_asgi(factory, name="thing")
    assert not lazy.built and calls == []  # nothing at creation
    threads = [threading.Thread(target=lazy.get) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == [1]
    with TestClient(Starlette(routes=[Mount("/x", app=lazy)])) as c:
        assert c.get("/x/anything").status_code == 418

    attempts = []

    def broken():
        attempts.append(1)
        raise ValueError("no reviewers configured: set TRIAGE_REVIEWERS")

    bad = deploy.lazy_asgi(broken, name="review page", retry_after_s=3600)
    with TestClient(Starlette(routes=[Mount("/review", app=bad)])) as c:
        r = c.get("/review/")
        assert r.status_code == 503
        assert r.json()["error"].startswith("review page is unavailable")
        assert "TRIAGE_REVIEWERS" in r.json()["error"]
        assert c.post("/review/login").status_code == 503
    assert attempts == [1]  # not retried before retry_after_s


def _login(client: Any, prefix: str = "/review") -> None:
    page = client.get(f"{prefix}/login")
    assert page.status_code == 200, page.text
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    r = client.post(f"{prefix}/login", data={"reviewer": "alice", "token": TOKEN, "csrf": csrf},
                    follow_redirects=False)
    assert r.status_code == 303, r.text


def test_review_page_shows_the_queued_ticket_escaped(deployed):
    lazy = deploy.lazy_asgi(deploy.review_app, name="review page")
    app = Starlette(routes=[Mount("/review", app=lazy)])
    with TestClient(app) as c:  # no reviewers configured yet: 503 naming the variable
        r = c.get("/review/")
        assert r.status_code == 503 and "TRIAGE_REVIEWERS" in r.json()["error"]
    deployed.env.setenv("TRIAGE_REVIEWERS", REVIEWERS)
    make_service().classify(ticket_in(**REVIEW_TICKET))
    lazy = deploy.lazy_asgi(deploy.review_app, name="review page")
    with TestClient(Starlette(routes=[Mount("/review", app=lazy)])) as c:
        _login(c)
        page = c.get("/review/")
        assert page.status_code == 200
        assert 'id="ticket-id">R-1<' in page.text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
        assert "<script>alert(1)" not in page.text
        assert "jane.doe@example.com" not in page.text


# ---- webhooks --------------------------------------------------------------------------

def test_webhooks_off_answer_503_saying_what_to_set(deployed):
    lazy = deploy.lazy_asgi(lambda: deploy.webhooks_app(deploy.service_classify), name="webhooks")
    with TestClient(Starlette(routes=[Mount("/webhooks", app=lazy)])) as c:
        r = c.post("/webhooks/zendesk", json={})
        assert r.status_code == 503
        msg = r.json()["error"]
        assert "helpdesk.webhooks_enabled" in msg and "ZENDESK_WEBHOOK_SECRET" in msg
        assert c.get("/webhooks/anything/else").status_code == 503
    deployed.configure(helpdesk={"webhooks_enabled": True})
    app = deploy.webhooks_app(deploy.service_classify)  # enabled, but no secret in env
    with TestClient(Starlette(routes=[Mount("/webhooks", app=app)])) as c:
        msg = c.post("/webhooks/zendesk", json={}).json()["error"]
        assert "ZENDESK_WEBHOOK_SECRET" in msg and "webhooks_enabled" not in msg
    assert not deployed.opened()


def _event(tid: str, event_id: str) -> dict:
    return {"type": "zen:event-type:ticket.created", "id": event_id,
            "detail": {"id": tid, "subject": "Transfer still pending",
                       "description": ENGLISH["body"], "tags": [],
                       "updated_at": "2026-01-02T10:00:00Z"}}


def _signed(payload: dict, secret: str = SECRET) -> tuple[bytes, dict]:
    body = json.dumps(payload).encode()
    ts = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())  # inside the replay window
    return body, {"X-Zendesk-Webhook-Signature": sign(secret, ts, body),
                  "X-Zendesk-Webhook-Signature-Timestamp": ts,
                  "Content-Type": "application/json"}


@pytest.fixture
def fake_zendesk():
    sys.path.insert(0, str(ROOT / "tests" / "fakes"))
    from zendesk_server import FakeZendesk

    zd = FakeZendesk().start()
    yield zd
    zd.stop()


def test_webhook_round_trip_through_the_service_triage(deployed, fake_zendesk, monkeypatch):
    import bentoml

    svc = make_service()
    monkeypatch.setattr(bentoml, "get_current_service", lambda: svc)
    deployed.configure(helpdesk={"webhooks_enabled": True, "base_url": fake_zendesk.url})
    monkeypatch.setenv("ZENDESK_WEBHOOK_SECRET", SECRET)
    lazy = deploy.lazy_asgi(lambda: deploy.webhooks_app(deploy.service_classify), name="webhooks")
    with TestClient(Starlette(routes=[Mount("/webhooks", app=lazy)])) as c:
        body, headers = _signed(_event("501", "ev-1"))
        bad = dict(headers, **{"X-Zendesk-Webhook-Signature": sign("wrong", "t", body)})
        r = c.post("/webhooks/zendesk", content=body, headers=bad)
        assert r.status_code == 401
        r = c.post("/webhooks/zendesk", content=body, headers=headers)
        assert r.status_code == 200, r.text
        assert r.json()["drafted"] == 1
        expected = svc.triage.decide([{"id": "501", **ENGLISH}])[0]
        tag = f"triage_draft_{expected.topic}"
        assert fake_zendesk.wait_for(lambda: tag in fake_zendesk.tags_of("501"), timeout=10), \
            f"the outbox worker did not deliver {tag}: {fake_zendesk.tags_of('501')}"


def test_webhooks_for_every_configured_helpdesk(deployed, monkeypatch):
    """Zendesk (the section's provider) plus Intercom and Front under `additional:`: each is
    served at /webhooks/<provider> with its own secret; one without its secret answers 503
    saying which variable to set, the others work."""
    import bentoml

    sys.path.insert(0, str(ROOT / "tests" / "fakes"))
    import front_server
    import intercom_server

    svc = make_service()
    monkeypatch.setattr(bentoml, "get_current_service", lambda: svc)
    deployed.configure(helpdesk={"webhooks_enabled": True, "base_url": "http://127.0.0.1:9",
                                 "additional": [
                                     {"provider": "intercom", "base_url": "http://127.0.0.1:9"},
                                     {"provider": "front", "base_url": "http://127.0.0.1:9"}]})
    monkeypatch.setenv("ZENDESK_WEBHOOK_SECRET", SECRET)
    monkeypatch.setenv("FRONT_APP_SECRET", "front-secret")
    monkeypatch.delenv("INTERCOM_CLIENT_SECRET", raising=False)
    app = deploy.webhooks_app(deploy.service_classify, start_worker=False)
    with TestClient(Starlette(routes=[Mount("/webhooks", app=app)])) as c:
        body, headers = front_server.challenge("front-secret", "hello-front")
        r = c.post("/webhooks/front", content=body, headers=headers)
        assert r.status_code == 200 and r.text == "hello-front"
        conv = {"id": "cnv_9z", "subject": "Transfer", "status": "unassigned", "tags": [],
                "_links": {"related": {"last_message": "m1"}}}
        body, headers = front_server.webhook("front-secret", conv, message={
            "id": "msg_1", "is_inbound": True, "text": ENGLISH["body"]})
        r = c.post("/webhooks/front", content=body, headers=headers)
        assert r.status_code == 200 and r.json()["drafted"] == 1, r.text
        body, headers = intercom_server.webhook("x", intercom_server.conversation("42", "hi"))
        r = c.post("/webhooks/intercom", content=body, headers=headers)
        assert r.status_code == 503 and "INTERCOM_CLIENT_SECRET" in r.json()["error"]
        body, headers = _signed(_event("601", "ev-z"))
        assert c.post("/webhooks/zendesk", content=body, headers=headers).status_code == 200


# ---- the real server -------------------------------------------------------------------

START_TIMEOUT_S = 240


@pytest.fixture(scope="module")
def served(tiny_bundle, base_params, tmp_path_factory, free_port):
    sys.path.insert(0, str(ROOT / "tests" / "fakes"))
    from zendesk_server import FakeZendesk

    httpx = pytest.importorskip("httpx")
    tmp = tmp_path_factory.mktemp("serve-integration")
    zd = FakeZendesk().start()
    params = write_deploy_params(base_params, tmp / "params.yaml", db=tmp / "review.sqlite",
                                 helpdesk={"webhooks_enabled": True, "base_url": zd.url})
    env = {k: v for k, v in os.environ.items() if k not in ENV_VARS}
    env.update({"TRIAGE_BUNDLE": str(tiny_bundle), "TRIAGE_LLM_ENABLED": "false",
                "TRIAGE_PARAMS": str(params), "TRIAGE_REVIEWERS": REVIEWERS,
                "ZENDESK_WEBHOOK_SECRET": SECRET, "BENTOML_HOME": str(tmp / "bentoml"),
                "HF_HUB_OFFLINE": "1", "BENTOML_DO_NOT_TRACK": "True", "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "src")])})
    port = free_port()
    log_path = tmp / "serve.log"
    log = log_path.open("w")
    t0 = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "bentoml", "serve", "serving.service:TicketTriage",
         "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"bentoml serve exited with {proc.returncode}:\n"
                            f"{log_path.read_text()[-3000:]}")
            try:
                if client.get("/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() - t0 > START_TIMEOUT_S:
                pytest.fail(f"server not ready after {START_TIMEOUT_S}s:\n"
                            f"{log_path.read_text()[-3000:]}")
            time.sleep(0.5)
        startup_s = time.monotonic() - t0
        print(f"\nbentoml serve ready in {startup_s:.1f}s")
        yield SimpleNamespace(client=client, proc=proc, zd=zd, db=tmp / "review.sqlite",
                              startup_s=startup_s, log=log_path)
    finally:
        client.close()
        stop_process_group(proc)
        log.close()
        zd.stop()


@pytest.mark.slow
def test_served_review_page_webhooks_and_queue(served):
    c = served.client
    # the review page is mounted but not built until asked
    r = c.post("/classify", json=REVIEW_TICKET)
    assert r.status_code == 200, r.text
    assert r.json()["band"] == "review"
    r = c.post("/classify_batch", json={"tickets": [{**REVIEW_TICKET, "id": "R-2"},
                                                    {**ENGLISH, "id": "D-1"}]})
    assert r.status_code == 200, r.text

    _login(c)
    page = c.get("/review/")
    assert page.status_code == 200, page.text
    assert re.search(r'id="ticket-id">R-[12]<', page.text)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    assert "<script>alert(1)" not in page.text and "jane.doe@example.com" not in page.text
    stats = c.get("/review/stats.json").json()
    assert stats["queue_size"] == 2  # the draft D-1 is not queued

    body, headers = _signed(_event("777", "ev-served-1"))
    bad = dict(headers, **{"X-Zendesk-Webhook-Signature": sign("wrong", "t", body)})
    assert c.post("/webhooks/zendesk", content=body, headers=bad).status_code == 401
    r = c.post("/webhooks/zendesk", content=body, headers=headers)
    assert r.status_code == 200, r.text
    assert r.json()["drafted"] == 1
    assert served.zd.wait_for(lambda: any(t.startswith("triage_draft_")
                                          for t in served.zd.tags_of("777")), timeout=15), \
        f"no draft tag reached the fake Zendesk:\n{served.log.read_text()[-2000:]}"

    metrics = c.get("/metrics").text
    assert 'triage_review_enqueue_total{outcome="review"}' in metrics
    assert 'endpoint="webhooks"' in metrics
    assert served.proc.poll() is None and c.get("/readyz").status_code == 200


def test_review_quota_refuses_a_caller_that_filled_its_share(deployed):
    """Issue 14, defect 7: one caller filled the review queue with 3,011 items in 20 s. Now each
    caller may create review.max_items_per_client_per_minute items; then 429 before any work
    (so nothing it was answered for is dropped), other callers unaffected."""
    from bentoml.exceptions import BentoMLException

    deployed.configure(review={"max_items_per_client_per_minute": 3})
    svc = make_service()
    a = SimpleNamespace(request=SimpleNamespace(headers={"x-triage-client": "ip:10.0.0.1"}))
    b = SimpleNamespace(request=SimpleNamespace(headers={"x-triage-client": "ip:10.0.0.2"}))
    out = svc.classify_batch([ticket_in(**{**REVIEW_TICKET, "id": f"Q-{i}"}) for i in range(3)], ctx=a)
    assert [d.band for d in out.decisions] == ["review"] * 3
    assert len(queued(deployed.db)) == 3
    with pytest.raises(BentoMLException, match="quota.*retry after") as exc:
        svc.classify(ticket_in(**{**REVIEW_TICKET, "id": "Q-9"}), ctx=a)
    assert exc.value.error_code == 429
    assert svc.classify(ticket_in(**{**REVIEW_TICKET, "id": "Q-10"}), ctx=b).band == "review"
    assert set(queued(deployed.db)) == {"Q-0", "Q-1", "Q-2", "Q-10"}
