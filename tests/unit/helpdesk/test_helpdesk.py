"""Helpdesk adapters against a real fake HTTP server on 127.0.0.1 (tests/fakes)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from ticket_triage.helpdesk import HelpdeskConfig, build_adapter
from ticket_triage.helpdesk.front import FrontAdapter
from ticket_triage.helpdesk.intercom import IntercomAdapter
from ticket_triage.helpdesk.outbox import Outbox
from ticket_triage.helpdesk.routing import RoutingMap
from ticket_triage.helpdesk.webhooks import create_webhook_app
from ticket_triage.helpdesk.zendesk import ZendeskAdapter, sign
from ticket_triage.review.store import ReviewStore
from ticket_triage.schema import Decision, Ticket
from ticket_triage.taxonomy import load_taxonomy

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "fakes"))
from zendesk_server import FakeServer, FakeZendesk  # noqa: E402

ROOT = Path(__file__).resolve().parents[3]
SECRET = "whsec-test"


@pytest.fixture(scope="module")
def taxonomy():
    return load_taxonomy(ROOT / "conf/taxonomy/banking77.yaml")


class FakeClassifier:
    """Keyword 'model': fraud -> auto_route, card -> draft, anything else -> review."""

    def __init__(self):
        self.calls: list[list[str]] = []

    def __call__(self, tickets: list[Ticket]) -> list[Decision]:
        self.calls.append([t.id for t in tickets])
        out = []
        for t in tickets:
            text = f"{t.subject} {t.body}".lower()
            if "stolen" in text:
                d = Decision("fraud_and_security", 0.99, "auto_route", "P1", "above_auto_threshold")
            elif "card" in text:
                d = Decision("card_management", 0.81, "draft", "P3", "between_thresholds",
                             alternatives=[{"topic": "card_payments", "p": 0.12}],
                             explanation={"summary": "similar to 'card not arrived'"},
                             model_version="m-7")
            else:
                d = Decision("transfers", 0.40, "review", "P2", "below_review_threshold")
            d.ticket_id = t.id
            out.append(d)
        return out


@pytest.fixture
def zd():
    server = FakeZendesk().start()
    yield server
    server.stop()


@pytest.fixture
def store(db_url):
    return ReviewStore(db_url)  # SQLite file and PostgreSQL (tests/conftest.py)


def make_adapter(zd, store, taxonomy, classify=None, **cfg):
    base = {"provider": "zendesk", "base_url": zd.url, "webhook_secret_env": "TEST_ZD_SECRET",
            "backoff_base_s": 1.0, "audit_share": 0.0}
    base.update(cfg)
    return build_adapter(base, classify=classify or FakeClassifier(), store=store,
                         taxonomy=taxonomy, clean=lambda s, b: f"{s}\n{b}".strip())


def event(tid, *, event_id, subject="Card", description="my card has not arrived",
          tags=(), etype="ticket.created", updated_at="2026-01-02T10:00:00Z"):
    return {"type": f"zen:event-type:{etype}", "id": event_id, "account_id": 1,
            "time": updated_at, "subject": f"zen:ticket:{tid}",
            "detail": {"id": str(tid), "subject": subject, "description": description,
                       "tags": list(tags), "updated_at": updated_at, "actor_id": "42"},
            "event": {}}


def now_ts() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def post(client, payload, secret=SECRET, ts=None, sig=None):
    ts = ts or now_ts()
    body = json.dumps(payload).encode()
    return client.post("/zendesk", content=body, headers={
        "X-Zendesk-Webhook-Signature": sig if sig is not None else sign(secret, ts, body),
        "X-Zendesk-Webhook-Signature-Timestamp": ts, "Content-Type": "application/json"})


@pytest.fixture
def webhook(zd, store, taxonomy, monkeypatch):
    monkeypatch.setenv("TEST_ZD_SECRET", SECRET)
    clf = FakeClassifier()
    adapter = make_adapter(zd, store, taxonomy, clf)
    client = TestClient(create_webhook_app({"zendesk": adapter}))
    return adapter, client, clf


def test_signed_webhook_drafts_tags_and_private_note_without_overwriting_agent_tags(webhook, zd):
    adapter, client, clf = webhook
    zd.add_ticket(101, "Card", "my card has not arrived", tags=["vip", "card_arrival"])
    r = post(client, event(101, event_id="ev-1", tags=["vip", "card_arrival"]))
    assert r.status_code == 200 and r.json()["drafted"] == 1
    assert zd.calls() == []  # nothing is written before the outbox is drained
    rep = adapter.drain_outbox()
    assert rep.sent == 2 and rep.dead == 0
    assert zd.tags_of(101) == ["vip", "card_arrival", "triage_draft_card_management",
                               "triage_band_draft", "triage_urgency_p3"]
    tag_calls = zd.calls("PUT", "/tags.json")
    assert len(tag_calls) == 1 and tag_calls[0].path == "/api/v2/tickets/101/tags.json"
    assert all("tags" not in (c.json or {}).get("ticket", {}) for c in zd.calls("PUT", "/101.json"))
    (note,) = zd.notes_of(101)
    assert note["public"] is False
    assert "card_management" in note["body"] and "confidence 0.81" in note["body"]
    assert "similar to 'card not arrived'" in note["body"]
    assert "triage_confirmed_card_management" in note["body"]
    assert clf.calls == [["101"]]


def test_bad_or_missing_signature_is_rejected_with_401(webhook, zd):
    adapter, client, clf = webhook
    payload = event(102, event_id="ev-2")
    assert post(client, payload, secret="wrong-secret").status_code == 401
    assert post(client, payload, sig="").status_code == 401
    body = json.dumps(payload).encode()
    tampered = body.replace(b"arrived", b"arrivEd")
    r = client.post("/zendesk", content=tampered, headers={
        "X-Zendesk-Webhook-Signature": sign(SECRET, "t", body),
        "X-Zendesk-Webhook-Signature-Timestamp": "t"})
    assert r.status_code == 401
    assert clf.calls == [] and adapter.outbox.counts() == {}


def test_redelivered_webhook_is_applied_once(webhook, zd):
    adapter, client, clf = webhook
    payload = event(103, event_id="ev-3")
    assert post(client, payload).json()["drafted"] == 1
    again = post(client, payload).json()
    assert again["duplicates"] == 1 and again["drafted"] == 0
    adapter.drain_outbox()
    post(client, payload)
    adapter.drain_outbox()
    assert len(clf.calls) == 1
    assert len(zd.calls("PUT", "/tickets/103/tags.json")) == 1
    assert len(zd.notes_of(103)) == 1


def test_429_retry_after_is_honoured(zd, store, taxonomy):
    adapter = make_adapter(zd, store, taxonomy)
    adapter.handle([adapter.parse_webhook(json.dumps(event(104, event_id="ev-4")).encode())[0]])
    zd.fail_next(429, headers={"Retry-After": "30"})
    t0 = time.time()
    rep = adapter.drain_outbox(now=t0)
    assert rep.sent == 0 and rep.retried == 1 and rep.paused["zendesk"] == pytest.approx(t0 + 30)
    assert len(zd.calls()) == 1  # the adapter paused: the note was not tried in the same pass
    assert adapter.drain_outbox(now=t0 + 29).sent == 0
    assert len(zd.calls()) == 1  # nothing is due before Retry-After
    rep = adapter.drain_outbox(now=t0 + 31)
    assert rep.sent == 2
    assert "triage_draft_card_management" in zd.tags_of(104)


def test_outbox_survives_failures_and_a_restart(zd, store, taxonomy, tmp_path):
    adapter = make_adapter(zd, store, taxonomy)
    adapter.handle(adapter.parse_webhook(json.dumps(event(105, event_id="ev-5")).encode()))
    zd.fail_next(500, times=5)
    t0 = time.time()
    rep = adapter.drain_outbox(now=t0)
    assert rep.retried == 2 and rep.sent == 0
    rows = adapter.outbox.rows("pending")
    assert len(rows) == 2 and all(r.attempts == 1 and "500" in r.last_error for r in rows)
    assert all(r.next_attempt_at == pytest.approx(t0 + 1.0) for r in rows)  # backoff base
    zd.drop_next()  # and a dropped connection
    adapter.drain_outbox(now=t0 + 2)
    # "restart": a new store + adapter on the same database file delivers what is left
    store2 = ReviewStore(store.db_url)
    adapter2 = make_adapter(zd, store2, taxonomy)
    sent = 0
    for k in range(3, 12):
        sent += adapter2.drain_outbox(now=t0 + 2 ** k).sent
    assert sent == 2 and adapter2.outbox.counts() == {"sent": 2}
    assert "triage_draft_card_management" in zd.tags_of(105) and len(zd.notes_of(105)) == 1


def test_permanent_error_is_kept_as_dead_and_can_be_requeued(zd, store, taxonomy):
    adapter = make_adapter(zd, store, taxonomy)
    adapter.handle(adapter.parse_webhook(json.dumps(event(106, event_id="ev-6")).encode()))
    zd.fail_next(422, times=2)
    rep = adapter.drain_outbox()
    assert rep.dead == 2 and adapter.outbox.counts() == {"dead": 2}
    assert adapter.outbox.requeue_dead() == 2
    assert adapter.drain_outbox().sent == 2


def test_polling_uses_the_incremental_cursor(zd, store, taxonomy):
    clf = FakeClassifier()
    adapter = make_adapter(zd, store, taxonomy, clf)
    zd.page_size = 2
    for i, text in enumerate(["card lost in post", "money transfer", "phone stolen"]):
        zd.add_ticket(200 + i, "hi", text, updated_at=f"2026-01-0{i + 1}T00:00:00Z")
    rep = adapter.sync()
    assert rep.classified == 3 and sorted(sum(clf.calls, [])) == ["200", "201", "202"]
    first = zd.calls("GET", "/incremental/")
    assert "start_time" in first[0].query and first[1].query["cursor"] == ["2"]
    assert adapter.get_state("cursor") == "3"
    adapter.drain_outbox()
    # our own tag writes do not come back as new tickets; a new ticket is picked up once
    zd.add_ticket(210, "hi", "card question", updated_at="2026-02-01T00:00:00Z")
    before = len(zd.calls("GET", "/incremental/"))
    rep = adapter.sync()
    assert rep.classified == 1 and clf.calls[-1] == ["210"]
    # the pass resumed from the stored cursor (our own writes since then are listed too, as
    # Zendesk lists every update, and are not re-classified)
    assert zd.calls("GET", "/incremental/")[before].query["cursor"] == ["3"]
    assert adapter.sync().classified == 0


def test_review_band_goes_to_the_review_queue(zd, store, taxonomy):
    adapter = make_adapter(zd, store, taxonomy)
    adapter.handle(adapter.parse_webhook(json.dumps(
        event(107, event_id="ev-7", subject="Hi", description="where is my transfer")).encode()))
    item = store.claim_next("alice")
    assert item is not None and item.ticket_id == "107" and item.band == "review"
    assert "where is my transfer" in item.text


def test_auto_mode_routes_only_enabled_labels(zd, store, taxonomy):
    adapter = make_adapter(zd, store, taxonomy, mode="auto", auto_labels=["fraud_and_security"],
                           routing={"fraud_and_security": {"group_id": 77, "assignee_id": None},
                                    "card_management": {"group_id": 88}})
    adapter.handle(adapter.parse_webhook(json.dumps(
        [event(108, event_id="ev-8a", description="my phone was stolen"),
         event(109, event_id="ev-8b", description="card question")]).encode()))
    adapter.drain_outbox()
    assert zd.tickets["108"]["group_id"] == 77
    assert "triage_auto_fraud_and_security" in zd.tags_of(108)
    assert "109" not in zd.tickets or zd.tickets["109"].get("group_id") is None  # draft band
    # draft mode (the default) never routes, even an auto_route decision
    adapter2 = make_adapter(zd, store, taxonomy, auto_labels=["fraud_and_security"],
                            routing={"fraud_and_security": {"group_id": 77}})
    adapter2.handle(adapter2.parse_webhook(json.dumps(
        event(110, event_id="ev-8c", description="stolen card")).encode()))
    adapter2.drain_outbox()
    assert zd.tickets["110"].get("group_id") is None
    assert "triage_draft_fraud_and_security" in zd.tags_of(110)


def test_routing_map_refuses_auto_labels_without_a_target():
    with pytest.raises(ValueError, match="no entry in helpdesk.routing"):
        RoutingMap.from_config({}, ["refunds"], "auto")
    with pytest.raises(ValueError, match="mode"):
        HelpdeskConfig.from_dict({"mode": "yolo"})


def test_agent_tag_changes_flow_back_as_corrections(webhook, zd, store):
    adapter, client, clf = webhook
    post(client, event(111, event_id="ev-9", tags=["vip"]))
    post(client, event(112, event_id="ev-10"))
    post(client, event(113, event_id="ev-11", tags=["card_arrival"]))
    adapter.drain_outbox()
    # 111: agent confirms with another topic; 112: agent swaps the draft tag;
    # 113: agent adds a source tag that maps to another topic (the initial card_arrival doesn't count)
    post(client, event(111, event_id="ev-12", etype="ticket.tags_changed",
                       tags=["vip", "triage_confirmed_card_payments", "triage_band_draft"]))
    post(client, event(112, event_id="ev-13", etype="ticket.tags_changed",
                       tags=["triage_draft_refunds", "triage_band_draft"]))
    post(client, event(113, event_id="ev-14", etype="ticket.tags_changed",
                       tags=["card_arrival", "triage_draft_card_management", "request_refund"]))
    # re-delivery and an unrelated update do not add corrections
    post(client, event(111, event_id="ev-12", etype="ticket.tags_changed",
                       tags=["vip", "triage_confirmed_card_payments"]))
    post(client, event(111, event_id="ev-15", etype="ticket.updated",
                       tags=["vip", "triage_confirmed_card_payments"]))
    got = {c.ticket_id: c for c in store.corrections_since(0)}
    assert set(got) == {"111", "112", "113"}
    assert got["111"].corrected_topic == "card_payments" and got["111"].action == "correct"
    assert got["111"].predicted_topic == "card_management" and got["111"].reviewer == "zendesk:42"
    assert got["112"].corrected_topic == "refunds"
    assert got["113"].corrected_topic == "refunds"
    assert got["111"].source == "helpdesk:zendesk" and got["111"].model_version == "m-7"
    assert len(clf.calls) == 3  # updates are never re-classified


def test_intercom_request_shapes(store, taxonomy, monkeypatch):
    monkeypatch.setenv("TEST_IC_TOKEN", "ic-token")
    srv = FakeServer()
    srv.route("POST", r"/tags", lambda r, m: (200, {"type": "tag", "id": f"t-{r.json['name']}",
                                                    "name": r.json["name"]}))
    srv.route("POST", r"/conversations/(\w+)/(tags|reply|parts)", lambda r, m: (200, {"ok": 1}))
    srv.route("POST", r"/conversations/search", lambda r, m: (200, {
        "conversations": [{"id": "1911149811", "updated_at": 1700000100,
                           "source": {"subject": "", "body": "<p>my card is broken</p>"},
                           "tags": {"tags": []}}], "pages": {}}))
    with srv:
        a = IntercomAdapter({"provider": "intercom", "base_url": srv.url, "admin_id": "9",
                             "api_token_env": "TEST_IC_TOKEN", "audit_share": 0},
                            classify=FakeClassifier(), store=store, taxonomy=taxonomy,
                            clean=lambda s, b: b)
        rep = a.sync()
        assert rep.drafted == 1 and a.get_state("since") == "1700000100"
        assert a.drain_outbox().sent == 2
        search = srv.calls("POST", "/conversations/search")[0]
        assert search.json["query"] == {"field": "updated_at", "operator": ">", "value": 0}
        assert search.headers["Authorization"] == "Bearer ic-token"
        assert search.headers["Intercom-Version"]
        tag_posts = srv.calls("POST", "/conversations/1911149811/tags")
        assert [c.json for c in tag_posts] == [
            {"id": "t-triage_draft_card_management", "admin_id": "9"},
            {"id": "t-triage_band_draft", "admin_id": "9"}, {"id": "t-triage_urgency_p3", "admin_id": "9"}]
        (note,) = srv.calls("POST", "/conversations/1911149811/reply")
        assert note.json["message_type"] == "note" and note.json["type"] == "admin"
        assert "card_management" in note.json["body"]


def test_front_request_shapes(store, taxonomy, monkeypatch):
    """Company tags looked up by name (one exists, two are created), the customer's first
    message read from the paginated messages (newest first), comment and assignee."""
    from front_server import FakeFront

    monkeypatch.setenv("TEST_FRONT_TOKEN", "front-token")
    with FakeFront() as srv:
        existing = srv.add_tag("triage_band_auto_route")
        srv.add_tag("unrelated")
        srv.add_conversation("cnv_1", [(True, "my phone was stolen"), (False, "we are on it"),
                                       (True, "any news?"), (False, "yes")], subject="Lost",
                             created_at=time.time() - 10)
        a = FrontAdapter({"provider": "front", "base_url": srv.url, "mode": "auto",
                          "api_token_env": "TEST_FRONT_TOKEN",
                          "auto_labels": ["fraud_and_security"], "audit_share": 0,
                          "routing": {"fraud_and_security": {"assignee_id": "tea_5"}}},
                         classify=FakeClassifier(), store=store, taxonomy=taxonomy,
                         clean=lambda s, b: b)
        rep = a.sync()
        assert rep.drafted == 1 and rep.decisions["cnv_1"].topic == "fraud_and_security"
        assert len(srv.calls("GET", "/conversations/cnv_1/messages")) == 2  # followed the pages
        assert a.drain_outbox().sent == 3
        assert not [c for c in srv.requests if c.path == "/tags"]  # legacy endpoint never used
        assert len(srv.calls("POST", "/company/tags")) == 3  # three new names, not the existing one
        assert existing["id"] in srv.calls("POST", "/conversations/cnv_1/tags")[0].json["tag_ids"]
        assert sorted(srv.tag_names("cnv_1")) == sorted([
            "triage_draft_fraud_and_security", "triage_band_auto_route", "triage_urgency_p1",
            "triage_auto_fraud_and_security"])
        assert "fraud_and_security" in srv.comments["cnv_1"][0]["body"]
        assert srv.conversations["cnv_1"]["assignee"] == {"id": "tea_5"}
        # nothing changed: the next pass sees the conversation again, as a duplicate
        assert a.sync().drafted == 0


def test_webhook_ticket_uses_the_zendesk_export_map(tmp_path, store, taxonomy):
    """A Zendesk ticket reaching the adapter maps exactly as the same ticket in a `zendesk`
    export: tags split the Zendesk way (space-separated placeholder), priority -> urgency."""
    from ticket_triage.ingest.readers import read_tickets

    raw = {"id": 901, "subject": "Card stuck", "description": "my card is stuck in the ATM",
           "tags": "card atm_issue", "priority": "urgent", "created_at": "2026-01-02T10:00:00Z",
           "via": {"channel": "email"}, "requester_id": 77, "updated_at": "2026-01-02T10:00:00Z"}
    (tmp_path / "export.json").write_text(json.dumps({"tickets": [raw]}))
    exported, rejected, _ = read_tickets(tmp_path / "export.json", "zendesk")
    assert not rejected
    adapter = make_adapter(type("S", (), {"url": "http://127.0.0.1:9"})(), store, taxonomy)
    [inc] = adapter.parse_webhook(json.dumps({"ticket": raw, "event": "created"}).encode())
    got, want = inc.ticket.to_dict(), exported[0].to_dict()
    assert got.pop("source") == "zendesk" and want.pop("source").startswith("zendesk:")
    assert got == want
    assert got["tags"] == ["card", "atm_issue"] and got["urgency"] == "P0"
    assert inc.tags == ["card", "atm_issue"]
    with pytest.raises(ValueError, match="no ticket id"):
        adapter.parse_webhook(json.dumps({"ticket": {"subject": "x"}, "event": "created"}).encode())
