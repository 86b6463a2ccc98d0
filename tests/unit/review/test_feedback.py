"""Feedback loop: export -> merge changes training labels; audit sampling; precision report."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from ticket_triage.review.feedback import (clopper_pearson_interval, export_corrections, feedback_report,
                                    format_report, merge_feedback, queue_for_review, should_audit,
                                    wilson_interval)
from ticket_triage.review.store import ReviewStore
from ticket_triage.schema import Decision, Ticket


class Clock:
    def __init__(self):
        self.t = 1_800_000_000.0

    def __call__(self):
        return self.t


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def store(clock):
    return ReviewStore("sqlite:///:memory:", clock=clock)


def dec(topic, band="review", urgency="P2"):
    return Decision(topic=topic, confidence=0.5, band=band, urgency=urgency, model_version="m3")


def review(store, clock, reviewer, topic, urgency=None):
    item = store.claim_next(reviewer)
    clock.t += 5
    return store.resolve(item.id, reviewer, topic, urgency)


def test_export_writes_jsonl_and_advances_the_watermark(store, clock, tmp_path):
    store.enqueue_many([(Ticket(id="a", text="card never came"), dec("transfers")),
                        (Ticket(id="b", text="fee?"), dec("fees_and_charges"))])
    review(store, clock, "alice", "card_management", "P3")
    review(store, clock, "alice", "fees_and_charges")
    path = export_corrections(store, tmp_path / "fb")
    assert path.name.startswith("corrections-") and path.suffix == ".jsonl"
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert [x["ticket_id"] for x in lines] == ["a", "b"]
    first = lines[0]
    assert {k: first[k] for k in ("topic", "urgency", "reviewer", "model_version", "text")} == {
        "topic": "card_management", "urgency": "P3", "reviewer": "alice", "model_version": "m3",
        "text": "card never came"}
    assert datetime.fromisoformat(first["corrected_at"]).tzinfo is not None
    assert export_corrections(store, tmp_path / "fb") is None  # nothing new
    assert not list((tmp_path / "fb").glob("*.tmp"))


def test_undone_corrections_are_not_exported(store, clock, tmp_path):
    store.enqueue(Ticket(id="a", text="x"), dec("transfers"))
    review(store, clock, "alice", "refunds")
    store.undo("alice")
    assert export_corrections(store, tmp_path) is None
    review(store, clock, "alice", "top_ups")
    lines = export_corrections(store, tmp_path).read_text().splitlines()
    assert [json.loads(x)["topic"] for x in lines] == ["top_ups"]


def _write(dirpath, name, rows):
    dirpath.mkdir(parents=True, exist_ok=True)
    (dirpath / name).write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_merge_overrides_newest_wins_and_adds_new_tickets(tmp_path):
    fb = tmp_path / "fb"
    _write(fb, "corrections-20260101T000000Z.jsonl", [
        {"ticket_id": "1", "topic": "refunds", "urgency": "P2", "corrected_at": "2026-01-01T00:00:00+00:00", "text": "t1"},
        {"ticket_id": "2", "topic": "transfers", "urgency": None, "corrected_at": "2026-01-01T00:00:00+00:00", "text": "t2"},
    ])
    _write(fb, "corrections-20260102T000000Z.jsonl", [
        {"ticket_id": "1", "topic": "top_ups", "urgency": "P3", "corrected_at": "2026-01-02T00:00:00+00:00", "text": "t1"},
        {"ticket_id": "9", "topic": "fees_and_charges", "urgency": "P3", "corrected_at": "2026-01-02T00:00:00+00:00", "text": "is there a fee"},
        {"ticket_id": "10", "topic": "refunds", "corrected_at": "2026-01-02T00:00:00+00:00", "text": ""},
    ])
    tickets = [Ticket(id="1", text="t1", topic="refunds", urgency="P2"),
               Ticket(id="2", text="t2", topic="transfers", urgency="P2"),
               Ticket(id="3", text="t3", topic="refunds")]
    out, n_over, n_added = merge_feedback(tickets, fb)
    by_id = {t.id: t for t in out}
    assert by_id["1"].topic == "top_ups" and by_id["1"].urgency == "P3"   # newest wins
    assert by_id["2"].topic == "transfers" and by_id["2"].urgency == "P2"  # confirmation: unchanged
    assert by_id["3"].topic == "refunds"
    assert by_id["9"].topic == "fees_and_charges" and by_id["9"].text == "is there a fee"
    assert by_id["9"].source == "feedback"
    assert "10" not in by_id  # no text: cannot train on it
    assert (n_over, n_added) == (1, 1)
    assert tickets[0].topic == "refunds"  # inputs untouched


def test_export_then_merge_changes_training_labels(store, clock, tmp_path):
    train = [Ticket(id=str(i), text=f"text {i}", topic="transfers", urgency="P2") for i in range(4)]
    store.enqueue_many([(t, dec("transfers")) for t in train[:3]])
    review(store, clock, "alice", "transfers")           # confirm
    review(store, clock, "bob", "refunds")                # correct
    review(store, clock, "alice", "card_payments", "P1")  # correct, with urgency
    export_corrections(store, tmp_path)
    # a later correction of the same ticket (through the helpdesk) wins
    clock.t += 60
    store.record_feedback(ticket_id="1", predicted_topic="refunds", predicted_urgency="P2",
                          corrected_topic="fees_and_charges", corrected_urgency=None,
                          reviewer="zendesk:7", source="helpdesk:zendesk", text="text 1")
    store.record_feedback(ticket_id="new-1", predicted_topic="refunds", predicted_urgency="P2",
                          corrected_topic="top_ups", corrected_urgency="P3",
                          reviewer="zendesk:7", source="helpdesk:zendesk", text="top up failed")
    export_corrections(store, tmp_path)
    merged, n_over, n_added = merge_feedback(train, tmp_path)
    labels = {t.id: (t.topic, t.urgency) for t in merged}
    assert labels == {"0": ("transfers", "P2"), "1": ("fees_and_charges", "P2"),
                      "2": ("card_payments", "P1"), "3": ("transfers", "P2"),
                      "new-1": ("top_ups", "P3")}
    assert (n_over, n_added) == (2, 1)


def test_merge_reports_bad_lines(tmp_path):
    _write(tmp_path, "corrections-1.jsonl", [{"ticket_id": "1"}])
    with pytest.raises(ValueError, match="needs 'ticket_id' and 'topic'"):
        merge_feedback([], tmp_path)
    assert merge_feedback([], tmp_path / "missing") == ([], 0, 0)


def test_should_audit_is_deterministic_and_hits_the_share():
    ids = [f"ticket-{i}" for i in range(20000)]
    picks = [should_audit(i, 0.02, seed=7) for i in ids]
    assert picks == [should_audit(i, 0.02, seed=7) for i in ids]
    assert 0.015 < sum(picks) / len(ids) < 0.025
    assert picks != [should_audit(i, 0.02, seed=8) for i in ids]
    assert not any(should_audit(i, 0.0) for i in ids[:100])
    assert all(should_audit(i, 1.0) for i in ids[:100])
    with pytest.raises(ValueError):
        should_audit("x", 1.5)


def test_queue_for_review_adds_review_band_and_audit_sample(store):
    tickets = [Ticket(id=str(i), text=f"t{i}") for i in range(300)]
    decisions = [dec("transfers", band="review" if i < 10 else ("auto_route" if i < 200 else "draft"))
                 for i in range(300)]
    n = queue_for_review(store, tickets, decisions, audit_share=0.1, audit_seed=1)
    expected_audit = sum(should_audit(str(i), 0.1, 1) for i in range(10, 200))
    assert n == {"review": 10, "audit": expected_audit} and expected_audit > 5
    assert store.stats().queue_size == 10 + expected_audit


def test_feedback_report_precision_with_intervals(store, clock):
    tickets = [Ticket(id=f"a{i}", text="x") for i in range(10)] + [Ticket(id=f"b{i}", text="y") for i in range(4)]
    store.enqueue_many([(t, dec("refunds", band="auto_route")) for t in tickets[:10]], is_audit_sample=True)
    store.enqueue_many([(t, dec("top_ups", band="auto_route")) for t in tickets[10:]], is_audit_sample=True)
    store.enqueue(Ticket(id="r", text="z"), dec("refunds", band="review"))  # not an audit: ignored
    for i in range(15):
        item = store.claim_next("alice")
        wrong = item.ticket_id in ("a0", "a1", "b0")
        store.resolve(item.id, "alice", "transfers" if wrong else item.topic)
    rep = feedback_report(store)
    r = rep["labels"]["refunds"]
    assert (r["n"], r["correct"], r["precision"]) == (10, 8, 0.8)
    lo, hi = clopper_pearson_interval(8, 10)
    assert (r["low"], r["high"]) == (lo, hi)
    assert lo == pytest.approx(0.4439, abs=1e-3) and hi == pytest.approx(0.9748, abs=1e-3)
    assert rep["labels"]["top_ups"]["correct"] == 3 and rep["overall"]["n"] == 14
    w = feedback_report(store, method="wilson")["labels"]["refunds"]
    assert w["low"] == pytest.approx(0.4902, abs=1e-3) and w["high"] == pytest.approx(0.9433, abs=1e-3)
    assert "refunds" in format_report(rep) and "overall" in format_report(rep)


def test_intervals_edges():
    assert clopper_pearson_interval(10, 10)[1] == 1.0
    assert clopper_pearson_interval(10, 10)[0] == pytest.approx(0.025 ** 0.1, abs=1e-6)
    assert clopper_pearson_interval(0, 5)[0] == 0.0
    assert wilson_interval(0, 0) == (0.0, 1.0)
