"""Webhooks of all three helpdesks: real signatures, the replay window on by default, and
every malformed signed delivery answered 4xx with the reason (never 500/504)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest
import yaml
from starlette.testclient import TestClient

from ticket_triage.helpdesk import HelpdeskConfig, build_adapter
from ticket_triage.helpdesk.outbox import Outbox
from ticket_triage.helpdesk.webhooks import create_webhook_app
from ticket_triage.helpdesk.zendesk import sign as zd_sign
from ticket_triage.review.store import ReviewStore, helpdesk_drafts, helpdesk_outbox

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "fakes"))
import front_server  # noqa: E402
import intercom_server  # noqa: E402
from test_helpdesk import FakeClassifier  # noqa: E402
from zendesk_server import FakeZendesk  # noqa: E402

ROOT = Path(__file__).resolve().parents[3]
SECRET = "whsec-test"


@pytest.fixture
def store(tmp_path):
    return ReviewStore(f"sqlite:///{tmp_path / 'review.sqlite'}")


@pytest.fixture
def app(store, monkeypatch):
    """One webhook app serving all three adapters (fake base URLs: nothing is sent)."""
    for var in ("ZD_SECRET", "IC_SECRET", "FR_SECRET"):
        monkeypatch.setenv(var, SECRET)
    clf = FakeClassifier()
    adapters = {
        "zendesk": build_adapter({"provider": "zendesk", "base_url": "http://127.0.0.1:9",
                                  "webhook_secret_env": "ZD_SECRET", "audit_share": 0},
                                 classify=clf, store=store, clean=lambda s, b: b),
        "intercom": build_adapter({"provider": "intercom", "base_url": "http://127.0.0.1:9",
                                   "webhook_secret_env": "IC_SECRET", "audit_share": 0},
                                  classify=clf, store=store, clean=lambda s, b: b),
        "front": build_adapter({"provider": "front", "base_url": "http://127.0.0.1:9",
                                "webhook_secret_env": "FR_SECRET", "audit_share": 0},
                               classify=clf, store=store, clean=lambda s, b: b),
    }
    return TestClient(create_webhook_app(adapters)), adapters, clf


def iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def zd_post(client, payload, *, ts=None, raw: bytes | None = None):
    body = raw if raw is not None else json.dumps(payload).encode()
    ts = iso(time.time()) if ts is None else ts
    return client.post("/zendesk", content=body, headers={
        "X-Zendesk-Webhook-Signature": zd_sign(SECRET, ts, body),
        "X-Zendesk-Webhook-Signature-Timestamp": ts, "Content-Type": "application/json"})


def zd_event(tid, event_id="ev-1", **detail):
    return {"type": "zen:event-type:ticket.created", "id": event_id,
            "detail": {"id": tid, "subject": "Card", "description": "my card has not arrived",
                       "tags": [], "updated_at": iso(time.time()), **detail}}


# ---- the replay window --------------------------------------------------------------------

def test_replay_window_is_on_by_default():
    assert HelpdeskConfig().webhook_max_skew_s == 300
    for name in ("zendesk", "intercom", "front"):
        cfg = yaml.safe_load((ROOT / f"conf/helpdesk/{name}.yaml").read_text())
        assert cfg["webhook_max_skew_s"] == 300, name


@pytest.mark.parametrize("ts", ["2020-01-01T00:00:00Z", "garbage", "", iso(time.time() + 3600),
                                "9" * 100])
def test_zendesk_stale_future_or_unreadable_timestamp_is_refused(app, store, ts):
    client, _, clf = app
    r = zd_post(client, zd_event(101), ts=ts)
    assert r.status_code == 401 and "refused" in r.json()["error"]
    assert not clf.calls and Outbox(store).counts() == {}


def test_zendesk_fresh_delivery_is_accepted(app):
    client, _, clf = app
    r = zd_post(client, zd_event(101))
    assert r.status_code == 200 and r.json()["drafted"] == 1


# ---- malformed signed payloads: 400 with the reason, nothing stored ------------------------

def _nested(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


@pytest.mark.parametrize("case,payload,words", [
    ("no ticket id", {"type": "zen:event-type:ticket.created", "id": "e1",
                      "detail": {"subject": "x", "description": "y"}}, "no ticket id"),
    ("null id", zd_event(None), "no ticket id"),
    ("tags as int", zd_event(5, tags=5), "tags"),
    ("subject as object", zd_event(5, subject={"a": 1}), "subject"),
    ("path traversal id", zd_event("../../users/1"), "not a valid"),
    ("id as a list", zd_event([1]), "list"),
    ("neither detail nor ticket", {"foo": 1}, "neither"),
    ("not an object", [1, 2], "object"),
])
def test_zendesk_malformed_signed_payload_is_400(app, store, case, payload, words):
    client, _, clf = app
    r = zd_post(client, payload)
    assert r.status_code == 400, (case, r.text)
    assert words in r.json()["error"], (case, r.json())
    assert not clf.calls and Outbox(store).counts() == {}
    with store.engine.connect() as conn:
        assert conn.execute(helpdesk_drafts.select()).first() is None  # no "None" id stored


@pytest.mark.parametrize("depth", [100, 100_000])
def test_deeply_nested_body_is_400(app, depth):
    client, _, _ = app
    r = zd_post(client, None, raw=_nested(depth))
    assert r.status_code == 400 and "nested" in r.json()["error"]


def test_3000_events_in_one_body_is_400_without_classifying(app, store):
    client, _, clf = app
    events = [zd_event(1000 + i, event_id=f"e{i}") for i in range(3000)]
    t0 = time.perf_counter()
    r = zd_post(client, events)
    assert r.status_code == 400 and "3000 events" in r.json()["error"]
    assert not clf.calls and Outbox(store).counts() == {}
    assert time.perf_counter() - t0 < 30  # far from the 60 s server timeout (504)


def test_not_json_and_not_utf8_are_400(app):
    client, _, _ = app
    assert zd_post(client, None, raw=b"{not json").status_code == 400
    assert zd_post(client, None, raw=b"\xff\xfe{}").status_code == 400


def test_handler_failure_is_503_not_500(app, monkeypatch):
    client, adapters, _ = app

    def boom(_):
        raise RuntimeError("database is locked")

    monkeypatch.setattr(adapters["zendesk"], "handle", boom)
    r = zd_post(client, zd_event(101))
    assert r.status_code == 503 and "retry" in r.json()["error"]


# ---- ids are validated per vendor and URL-encoded ----------------------------------------

def test_outbox_refuses_an_invalid_id_and_never_calls_another_url(store):
    with FakeZendesk() as zd:
        a = build_adapter({"provider": "zendesk", "base_url": zd.url, "audit_share": 0},
                          classify=FakeClassifier(), store=store)
        a.outbox.put("zendesk", "../../users/1", {"op": "add_tags", "ticket_id": "../../users/1",
                                                  "tags": ["x"]}, "k1")
        rep = a.drain_outbox()
        assert rep.dead == 1 and zd.requests == []
        (row,) = a.outbox.rows("dead")
        assert "not a valid zendesk id" in row.last_error


def test_path_ids_are_percent_encoded(store):
    a = build_adapter({"provider": "zendesk", "base_url": "http://127.0.0.1:9"},
                      classify=FakeClassifier(), store=store)
    import re

    a.id_pattern = re.compile(r".{1,64}")  # even a permissive pattern cannot escape the segment
    assert a.path_id("../../users/1") == "..%2F..%2Fusers%2F1"
    assert a.path_id("a b?c#d") == "a%20b%3Fc%23d"


@pytest.mark.parametrize("provider,good,bad", [
    ("zendesk", "12345", ["0", "-1", "12a", "../1", "1" * 25]),
    ("intercom", "1911149811", ["abc", "1/2", ""]),
    ("front", "cnv_55c8c149", ["cnv_", "msg_1", "cnv_1/../x", "CNV_1"]),
])
def test_ids_validated_per_vendor(store, provider, good, bad):
    from ticket_triage.helpdesk.base import PayloadError

    a = build_adapter({"provider": provider, "base_url": "http://127.0.0.1:9"},
                      classify=FakeClassifier(), store=store)
    assert a.validate_id(good) == good
    for b in bad:
        with pytest.raises(PayloadError):
            a.validate_id(b)


# ---- Intercom ------------------------------------------------------------------------------

def _ic_conv(cid="1911149811", **kw):
    return {**intercom_server.conversation(cid, "my card has not arrived"), **kw}


def test_intercom_signed_notification_is_drafted(app):
    client, _, clf = app
    body, headers = intercom_server.webhook(SECRET, _ic_conv())
    r = client.post("/intercom", content=body, headers=headers)
    assert r.status_code == 200 and r.json()["drafted"] == 1
    r = client.post("/intercom", content=body, headers=headers)  # redelivery
    assert r.status_code == 200 and r.json()["duplicates"] == 1 and len(clf.calls) == 1


def test_intercom_bad_signature_stale_and_malformed(app):
    client, _, clf = app
    body, headers = intercom_server.webhook(SECRET, _ic_conv())
    assert client.post("/intercom", content=body, headers={
        **headers, "X-Hub-Signature": "sha1=" + "0" * 40}).status_code == 401
    assert client.post("/intercom", content=body, headers={
        "Content-Type": "application/json"}).status_code == 401
    body, headers = intercom_server.webhook(SECRET, _ic_conv(), created_at=1_577_836_800)
    r = client.post("/intercom", content=body, headers=headers)
    assert r.status_code == 401 and "replay window" in r.json()["error"]
    body, headers = intercom_server.webhook(SECRET, _ic_conv(tags=5))
    r = client.post("/intercom", content=body, headers=headers)
    assert r.status_code == 400 and "tags" in r.json()["error"]
    body, headers = intercom_server.webhook(SECRET, _ic_conv(id=None))
    assert client.post("/intercom", content=body, headers=headers).status_code == 400
    assert not clf.calls


def test_intercom_ping_is_answered(app):
    client, _, clf = app
    body, headers = intercom_server.webhook(SECRET, _ic_conv(), topic="ping")
    r = client.post("/intercom", content=body, headers=headers)
    assert r.status_code == 200 and r.text == "pong" and not clf.calls


# ---- Front ---------------------------------------------------------------------------------

def _front_conv(cid="cnv_1a2b", **kw):
    return {"_links": {"related": {"last_message": "https://x/messages/msg_1"}}, "id": cid,
            "subject": "Lost", "status": "unassigned", "tags": [], "created_at": time.time(), **kw}


def test_front_challenge_handshake(app):
    client, _, clf = app
    body, headers = front_server.challenge(SECRET, "c-42")
    r = client.post("/front", content=body, headers=headers)
    assert r.status_code == 200 and r.text == "c-42"
    body, headers = front_server.challenge("wrong-secret", "c-42")
    assert client.post("/front", content=body, headers=headers).status_code == 401


def test_front_signed_inbound_is_drafted_from_the_message(app):
    client, _, clf = app
    body, headers = front_server.webhook(SECRET, _front_conv(), message={
        "id": "msg_1", "is_inbound": True, "subject": "Lost", "text": "my phone was stolen",
        "body": "<p>my phone was stolen</p>"})
    r = client.post("/front", content=body, headers=headers)
    assert r.status_code == 200 and r.json()["drafted"] == 1
    assert clf.calls == [["cnv_1a2b"]]


@pytest.mark.parametrize("ts_ms", [1_577_836_800_000, "garbage", ""])
def test_front_stale_or_unreadable_timestamp_is_refused(app, ts_ms):
    client, _, clf = app
    if ts_ms == "garbage" or ts_ms == "":
        body = json.dumps({"type": "inbound", "payload": {}}).encode()
        sig = front_server.base64.b64encode(front_server.hmac.new(
            SECRET.encode(), f"{ts_ms}:".encode() + body, front_server.hashlib.sha256).digest()).decode()
        headers = {"X-Front-Signature": sig, "X-Front-Request-Timestamp": str(ts_ms)}
    else:
        body, headers = front_server.webhook(SECRET, _front_conv(), ts_ms=ts_ms)
    r = client.post("/front", content=body, headers=headers)
    assert r.status_code == 401 and not clf.calls


@pytest.mark.parametrize("conv", [_front_conv(id=None), _front_conv(id="../../users/1"),
                                  _front_conv(tags=7), "not an object"])
def test_front_malformed_is_400(app, conv):
    client, _, clf = app
    body, headers = front_server.webhook(SECRET, conv)
    r = client.post("/front", content=body, headers=headers)
    assert r.status_code == 400, r.text
    assert not clf.calls
