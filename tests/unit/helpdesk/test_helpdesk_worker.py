"""The helpdesk worker and the vendor flows it drives, against the fake vendor servers:
polling with pagination and rate limits, drafts written once, corrections read back, closed
tickets skipped, the Zendesk topic dropdown, and per-label trust."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from ticket_triage.helpdesk import build_adapter
from ticket_triage.helpdesk.trust import apply_trust, current_modes, trust_report
from ticket_triage.helpdesk.worker import HelpdeskWorker, format_summary
from ticket_triage.review.store import ReviewStore
from ticket_triage.schema import Decision
from ticket_triage.taxonomy import load_taxonomy

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "fakes"))
from front_server import FakeFront  # noqa: E402
from intercom_server import FakeIntercom  # noqa: E402
from test_helpdesk import FakeClassifier  # noqa: E402
from zendesk_server import FakeZendesk  # noqa: E402

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def taxonomy():
    return load_taxonomy(ROOT / "conf/taxonomy/banking77.yaml")


@pytest.fixture
def store(tmp_path):
    return ReviewStore(f"sqlite:///{tmp_path / 'review.sqlite'}")


def zendesk(zd, store, taxonomy, clf=None, **cfg):
    base = {"provider": "zendesk", "base_url": zd.url, "audit_share": 0,
            "backoff_base_s": 0.05, "poll": {"max_pages": 20}}
    base.update(cfg)
    return build_adapter(base, classify=clf or FakeClassifier(), store=store, taxonomy=taxonomy,
                         clean=lambda s, b: f"{s}\n{b}".strip())


def refs(notes):
    return [n["body"].rsplit("triage-ref:", 1)[-1] for n in notes]


def test_sync_once_under_rate_limits_drafts_every_ticket_once(store, taxonomy, tmp_path):
    with FakeZendesk(page_size=3) as zd:
        for i in range(5):
            zd.add_ticket(200 + i, "Card", f"my card {i} has not arrived",
                          updated_at=f"2026-01-02T10:00:0{i}Z")
        zd.rate_limit(8, per_s=1.0)  # Zendesk answers 429 + Retry-After past 8 requests/s
        a = zendesk(zd, store, taxonomy)
        w = HelpdeskWorker([a], health_file=tmp_path / "health.json", max_wait_s=5)
        (p,) = w.run_pass(wait=True)
        assert zd.rate_limited > 0, "the fake must have rate-limited for this test to mean much"
        assert p.handled.drafted == 5 and p.error is None
        assert a.outbox.counts() == {"sent": 10}  # tags + note per ticket, all delivered
        for i in range(5):
            assert "triage_draft_card_management" in zd.tags_of(200 + i)
            assert len(zd.notes_of(200 + i)) == 1 and zd.notes_of(200 + i)[0]["public"] is False
        health = json.loads((tmp_path / "health.json").read_text())
        assert health["status"] == "idle" or health["status"] == "running"
        assert health["last_pass"][0]["drafted"] == 5 and health["outbox"]["zendesk"] == {"sent": 10}
        # a second pass finds nothing new and writes nothing
        (p2,) = w.run_pass(wait=True)
        assert p2.handled.drafted == 0 and p2.drained.sent == 0
        assert "drafted" in format_summary(w.summary())


def test_rate_limited_poll_pauses_the_helpdesk_without_losing_the_cursor(store, taxonomy):
    with FakeZendesk() as zd:
        zd.add_ticket(300, "Card", "my card has not arrived")
        a = zendesk(zd, store, taxonomy)
        zd.fail_next(429, headers={"Retry-After": "30"}, path_contains="incremental")
        w = HelpdeskWorker([a], max_wait_s=1)
        (p,) = w.run_pass(wait=False)
        assert "429" in p.error and p.paused_until and p.paused_until > time.time() + 20
        assert a.get_state("cursor") is None and zd.tags_of(300) == []
        (p,) = w.run_pass(wait=False)  # still paused: the helpdesk is not called
        assert p.paused_until and len(zd.calls("GET", "incremental")) == 1
        w._paused.clear()
        (p,) = w.run_pass()
        assert p.handled.drafted == 1


def test_closed_tickets_are_skipped_with_a_reason(store, taxonomy):
    with FakeZendesk() as zd:
        zd.add_ticket(400, "Card", "my card has not arrived", status="closed")
        zd.add_ticket(401, "Card", "my card has not arrived", status="open")
        a = zendesk(zd, store, taxonomy)
        rep = a.sync()
        assert rep.drafted == 1 and rep.skipped_reasons == {
            "closed (Zendesk refuses updates to closed tickets)": 1}
        assert a.drain_outbox().sent == 2 and zd.tags_of(400) == []
        # a ticket closed after its draft was queued: the write is skipped, not retried 20 times
        zd.add_ticket(402, "Card", "my card has not arrived")
        a.sync()
        zd.tickets["402"]["status"] = "closed"
        rep = a.drain_outbox()
        assert rep.skipped == 2 and rep.dead == 0 and a.outbox.counts()["skipped"] == 2
        assert "closed" in a.outbox.rows("skipped")[0].last_error


def test_zendesk_topic_dropdown_written_and_agent_change_read_back(store, taxonomy):
    with FakeZendesk() as zd:
        zd.add_ticket(500, "Card", "my card has not arrived")
        a = zendesk(zd, store, taxonomy, topic_field_id=360001, topic_field_prefix="topic_")
        a.sync()
        assert a.drain_outbox().sent == 3
        assert zd.field_of(500, 360001) == "topic_card_management"
        put = [c for c in zd.calls("PUT", "/api/v2/tickets/500.json") if "custom_fields" in c.json["ticket"]]
        assert put[0].json == {"ticket": {"custom_fields": [{"id": 360001,
                                                             "value": "topic_card_management"}]}}
        zd.set_field(500, 360001, "topic_card_payments")  # the agent picks another topic
        rep = a.sync()
        assert rep.feedback == 1
        (c,) = store.corrections_since(0)
        assert (c.predicted_topic, c.corrected_topic, c.action) == (
            "card_management", "card_payments", "correct")


def test_a_note_cut_off_mid_call_is_not_posted_twice(store, taxonomy):
    """The helpdesk applied the note but the answer never came (crash / timeout): the retry
    finds the note by its reference and does not post it again."""
    with FakeZendesk() as zd:
        zd.add_ticket(600, "Card", "my card has not arrived")
        a = zendesk(zd, store, taxonomy, outbox={"lease_s": 0.2}, timeout_s=0.5)
        a.sync()
        zd.stall_after("PUT", r"/api/v2/tickets/600\.json$")
        rep = a.drain_outbox()
        assert rep.retried == 1 and len(zd.notes_of(600)) == 1  # applied, not acknowledged
        zd.release.set()
        time.sleep(0.3)
        rep = a.drain_outbox(now=time.time() + 5)
        assert rep.sent == 1 and len(zd.notes_of(600)) == 1
        assert a.outbox.counts() == {"sent": 2}


def test_intercom_polling_pages_and_corrections(store, taxonomy, monkeypatch):
    monkeypatch.setenv("IC_TOKEN", "ic-token")
    with FakeIntercom(page_size=2) as ic:
        for i in range(5):
            ic.add_conversation(7000 + i, f"my card {i} has not arrived", updated_at=1_700_000_000 + i)
        ic.add_conversation(7100, "my card never came", state="closed", updated_at=1_700_000_010)
        a = build_adapter({"provider": "intercom", "base_url": ic.url, "admin_id": "991",
                           "api_token_env": "IC_TOKEN", "audit_share": 0},
                          classify=FakeClassifier(), store=store, taxonomy=taxonomy,
                          clean=lambda s, b: b)
        rep = HelpdeskWorker([a]).run_pass(wait=True)[0]
        assert len(ic.calls("POST", "/conversations/search")) == 3 and ic.auth_failures == 0
        assert rep.handled.drafted == 5 and rep.handled.skipped_reasons == {"closed": 1}
        assert rep.drained.sent == 10 and a.get_state("since") == "1700000010"
        assert "triage_draft_card_management" in ic.tag_names(7000)
        assert len(ic.notes(7000)) == 1
        ic.agent_tags(7001, "triage_confirmed_card_management")
        ic.agent_tags(7002, "triage_draft_card_payments")  # replaced the draft's topic
        ic.conversations["7002"]["tags"]["tags"] = [
            t for t in ic.conversations["7002"]["tags"]["tags"]
            if t["name"] != "triage_draft_card_management"]
        rep = a.sync()
        assert rep.feedback == 2
        got = {c.ticket_id: (c.action, c.corrected_topic) for c in store.corrections_since(0)}
        assert got == {"7001": ("confirm", "card_management"), "7002": ("correct", "card_payments")}


def test_front_tag_change_is_a_new_version_and_reads_back(store, taxonomy, monkeypatch):
    monkeypatch.setenv("FR_TOKEN", "front-token")
    with FakeFront() as fr:
        fr.add_conversation("cnv_a1", [(True, "my card has not arrived")], created_at=time.time())
        a = build_adapter({"provider": "front", "base_url": fr.url, "api_token_env": "FR_TOKEN",
                           "audit_share": 0}, classify=FakeClassifier(), store=store,
                          taxonomy=taxonomy, clean=lambda s, b: b)
        a.set_state({"since": str(int(time.time()) - 100)})
        assert a.sync().drafted == 1 and a.drain_outbox().sent == 2
        before = len(fr.calls("GET", "/messages"))
        rep = a.sync()  # our own tags changed the version once: no verdict in them
        assert rep.feedback == 0 and rep.drafted == 0
        fr.agent_tags("cnv_a1", "triage_confirmed_card_management")
        rep = a.sync()
        assert rep.feedback == 1 and len(fr.calls("GET", "/messages")) == before  # not re-read
        (c,) = store.corrections_since(0)
        assert c.action == "confirm" and c.reviewer.startswith("front:")


# ---- trust ---------------------------------------------------------------------------------

class ScriptedClassifier:
    """card_management drafts in the auto_route band (the band trust needs)."""

    def __call__(self, tickets):
        return [Decision("card_management", 0.97, "auto_route", "P3", "above_auto_threshold",
                         ticket_id=t.id) for t in tickets]


def test_trust_switches_a_label_to_auto_route_and_back(store, taxonomy):
    with FakeZendesk() as zd:
        a = zendesk(zd, store, taxonomy, ScriptedClassifier(), mode="auto",
                    routing={"card_management": {"group_id": 77}},
                    trust={"min_confirmations": 10, "target_precision": 0.6})
        for i in range(12):
            zd.add_ticket(800 + i, "Card", "my card", updated_at=f"2026-01-03T10:{i:02d}:00Z")
        a.sync()
        a.drain_outbox()
        assert not zd.calls("PUT", "/api/v2/tickets/800.json") or \
            zd.tickets["800"]["group_id"] is None  # drafts only: not trusted yet
        (r,) = trust_report(a)
        assert (r.drafts, r.verdicts, r.mode, r.meets) == (12, 0, "draft", False)
        for i in range(12):  # agents confirm 11 drafts, correct one
            tag = "triage_confirmed_card_management" if i else "triage_draft_card_payments"
            zd.tickets[str(800 + i)]["tags"] = [t for t in zd.tags_of(800 + i)
                                                 if t != "triage_draft_card_management"] + [tag]
            zd.touch(800 + i)
        assert a.sync().feedback == 12
        (r,) = trust_report(a)
        assert (r.verdicts, r.confirmations) == (12, 11) and r.meets and r.action == "to auto"
        assert r.lower == pytest.approx(0.6461, abs=1e-3)  # Wilson 95% lower bound of 11/12
        changed = apply_trust(a, by="alice")
        assert [c.label for c in changed] == ["card_management"]
        row = current_modes(store, "zendesk")["card_management"]
        assert row["mode"] == "auto" and row["changed_by"] == "alice" and row["changed_at"] > 0
        # new tickets of the label now auto-route
        zd.add_ticket(900, "Card", "my card", updated_at="2026-01-05T10:00:00Z")
        assert a.sync().routed == 1
        a.drain_outbox()
        assert zd.tickets["900"]["group_id"] == 77 and "triage_auto_card_management" in zd.tags_of(900)
        # agents start correcting it: the lower bound falls, the label goes back to draft
        for i in range(10):
            tid = 1000 + i
            zd.add_ticket(tid, "Card", "my card", updated_at=f"2026-01-06T10:{i:02d}:00Z")
        assert a.sync().routed == 10
        a.drain_outbox()
        for i in range(10):  # the agents re-tag them: another topic replaces the draft's
            tid = str(1000 + i)
            zd.tickets[tid]["tags"].remove("triage_draft_card_management")
            zd.tickets[tid]["tags"].append("triage_draft_card_payments")
            zd.touch(tid)
        assert a.sync().feedback == 10
        (r,) = trust_report(a)
        assert r.mode == "auto" and r.action == "to draft" and r.lower < 0.6
        apply_trust(a, by="bob")
        assert current_modes(store, "zendesk")["card_management"]["mode"] == "draft"
        zd.add_ticket(1100, "Card", "my card", updated_at="2026-01-08T10:00:00Z")
        assert a.sync().routed == 0


def test_intercom_429_waits_for_x_ratelimit_reset(store, taxonomy, monkeypatch):
    """Intercom answers 429 with X-RateLimit-Reset (epoch seconds), not Retry-After."""
    from ticket_triage.helpdesk.outbox import RetryableError

    monkeypatch.setenv("IC_TOKEN", "ic-token")
    with FakeIntercom() as ic:
        ic.add_conversation(7300, "my card has not arrived")
        a = build_adapter({"provider": "intercom", "base_url": ic.url, "admin_id": "991",
                           "api_token_env": "IC_TOKEN", "audit_share": 0},
                          classify=FakeClassifier(), store=store, clean=lambda s, b: b)
        ic.fail_next(429, headers={"X-RateLimit-Reset": str(int(time.time()) + 3)})
        with pytest.raises(RetryableError) as exc:
            a.sync()
        assert exc.value.status == 429 and 1 <= exc.value.retry_after <= 3.5
        assert a.get_state("since") is None  # nothing handled, the cursor did not move


def test_front_rate_limit_and_company_tag_clash(store, taxonomy, monkeypatch):
    """Front's 429 + Retry-After pauses the writes; a tag created by someone else between our
    lookup and our create (409) is looked up again, never retried 20 times."""
    monkeypatch.setenv("FR_TOKEN", "front-token")
    with FakeFront() as fr:
        for i in range(3):
            fr.add_conversation(f"cnv_b{i}", [(True, "my card has not arrived")])
        a = build_adapter({"provider": "front", "base_url": fr.url, "api_token_env": "FR_TOKEN",
                           "audit_share": 0}, classify=FakeClassifier(), store=store,
                          taxonomy=taxonomy, clean=lambda s, b: b)
        a.set_state({"since": str(int(time.time()) - 100)})
        real_find = a._find_tag
        raced = {"n": 0}

        def find_then_race(name):
            got = real_find(name)
            if got is None and name == "triage_band_draft" and not raced["n"]:
                raced["n"] += 1
                fr.add_tag(name)  # another client creates it right now
            return got

        a._find_tag = find_then_race
        fr.rate_limit(6, per_s=1.0)
        (p,) = HelpdeskWorker([a], max_wait_s=5).run_pass(wait=True)
        assert p.handled.drafted == 3 and p.drained.dead == 0 and fr.rate_limited > 0
        assert a.outbox.counts() == {"sent": 6}
        assert raced["n"] == 1 and [t["name"] for t in fr.tags].count("triage_band_draft") == 1
        assert any(c.path == "/company/tags" and c.method == "POST" for c in fr.requests)


def test_sync_without_credentials_exits_2_saying_what_to_set(monkeypatch, capsys):
    from ticket_triage.cli import main

    for var in ("ZENDESK_EMAIL", "ZENDESK_API_TOKEN", "TRIAGE_PARAMS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(ROOT)
    assert main(["helpdesk", "sync", "--once", "--db", "sqlite:///:memory:"]) == 2
    err = capsys.readouterr().err
    assert "set the env var ZENDESK_API_TOKEN" in err and "still the example" in err
