from datetime import datetime, timedelta, timezone

from ticket_triage.data import clean_tickets, iter_jsonl, split_tickets
from ticket_triage.schema import Ticket
from ticket_triage.taxonomy import load_taxonomy

from helpers import ROOT

TAX = load_taxonomy(ROOT / "conf" / "taxonomy" / "banking77.yaml")


def test_clean_conserves_counts_relabels_and_sets_aside():
    tickets = [
        Ticket("1", body="My card has not arrived yet, it has been two weeks.", tags=["card_arrival"]),
        Ticket("2", body="My card has not arrived yet, it has been two weeks.", tags=["card_arrival"]),  # dup
        Ticket("3", body="What is the weather today?", tags=["weather"]),  # unmapped
        Ticket("4", body="   ", tags=["card_arrival"]),  # empty after cleaning
        Ticket("5", body="Email me at a.b@example.com about my refund", tags=["request_refund"]),
        Ticket("6", body="no tag at all"),
    ]
    kept, aside, rejected, rep = clean_tickets(tickets, TAX)
    assert rep.conserved and rep.tickets_in == 6
    assert [r["id"] for r in kept] == ["1", "5"]
    assert kept[0]["topic"] == "card_management" and kept[0]["label_fine"] == "card_arrival"
    assert "[EMAIL]" in kept[1]["text"] and "example.com" not in kept[1]["text"]
    assert rep.duplicates == 1
    assert {r["id"]: r["reason"] for r in aside} == {"3": "unmapped_tags", "6": "no_label"}
    assert [r["reason"] for r in rejected] == ["empty_after_cleaning"]
    assert "refunds" not in rep.topics_without_history and "top_ups" in rep.topics_without_history


def _rows(n, dated=True):
    t0 = datetime(2025, 1, 1, tzinfo=timezone.utc)
    return [{"id": f"r{i}", "text": f"text {i}", "topic": "a" if i % 3 else "b",
             "created_at": (t0 + timedelta(hours=(n - i))).isoformat() if dated else None}
            for i in range(n)]


def _assert_time_ordered(splits, label=None):
    part = {k: [r["created_at"] for r in v if label is None or r["topic"] == label] for k, v in splits.items()}
    assert max(part["train"]) <= min(part["validation"])
    assert max(part["validation"]) <= min(part["test"])


def test_date_global_split_is_one_cut_through_time(tmp_path):
    splits, _, rep = split_tickets(_rows(500), {"heldout_size": 50, "strategy": "date_global"},
                                   heldout_path=tmp_path / "h.jsonl")
    assert rep["strategy"] == "date_global"
    _assert_time_ordered(splits)


def test_date_split_is_by_time_and_heldout_is_frozen(tmp_path):
    rows = _rows(500)
    held = tmp_path / "heldout.jsonl"
    splits, heldout, rep = split_tickets(rows, {"heldout_size": 50}, heldout_path=held)
    assert rep["strategy"] == "date" and rep["heldout"]["status"] == "created" and len(heldout) == 50
    assert sum(len(s) for s in splits.values()) + len(heldout) == 500
    for label in ("a", "b"):  # time order within each label
        _assert_time_ordered(splits, label)
    # second run with more data: the frozen held-out is reused and excluded by id
    more = rows + _rows(600)[500:]
    splits2, heldout2, rep2 = split_tickets(more, {"heldout_size": 50}, heldout_path=held)
    assert rep2["heldout"]["status"] == "reused"
    held_ids = {r["id"] for r in iter_jsonl(held)}
    assert held_ids == {r["id"] for r in heldout2}
    assert not held_ids & {r["id"] for s in splits2.values() for r in s}


def test_no_timestamps_falls_back_to_stratified_with_warning(tmp_path):
    rows = _rows(300, dated=False)
    splits, _, rep = split_tickets(rows, {"heldout_size": 20, "min_train_examples": 500},
                                   heldout_path=tmp_path / "h.jsonl")
    assert rep["strategy"] == "stratified" and rep["warnings"]
    for name in ("validation", "test"):
        assert {r["topic"] for r in splits[name]} == {"a", "b"}
    assert set(rep["labels_with_too_few_train_examples"]) == {"a", "b"}
