"""A user's own export: labels that map nothing, splits that keep every label, a held-out set
that belongs to one dataset, and bad input refused before anything is written."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from ticket_triage.data import DataError, check_clean, clean_tickets, split_tickets, suggest_maps_from
from ticket_triage.schema import Ticket
from ticket_triage.taxonomy import parse_taxonomy

TAX = parse_taxonomy({
    "name": "gh", "version": 1,
    "topics": [{"id": t, "description": t, "examples": ["x", "y", "z"], "maps_from": []}
               for t in ("bug", "feature", "question")],
    "urgency": [{"id": u, "description": u} for u in ("P0", "P1", "P2", "P3")]})


def _tickets(labels):
    return [Ticket(str(i), body=f"ticket number {i} about {lab}", topic=lab) for i, lab in enumerate(labels)]


def test_clean_lists_unmapped_tags_with_counts_and_suggestions():
    labels = ["bug"] * 10 + ["question"] * 5 + ["Feature"] * 3 + ["enhancement"] * 2
    _, aside, _, rep = clean_tickets(_tickets(labels), TAX)
    assert rep.unmapped_tags == {"Feature": 3, "enhancement": 2}
    assert rep.maps_from_suggestions == {"Feature": "feature"}  # looks like a topic id; 'enhancement' does not
    assert len(aside) == 5 and rep.conserved
    with pytest.raises(DataError) as e:
        check_clean(rep, {"max_unmapped_share": 0.05}, TAX)
    msg = str(e.value)
    assert "5 of 20 tickets (25.0%)" in msg and "'Feature' (3)" in msg and "'enhancement' (2)" in msg
    assert "maps_from" in msg and "add 'Feature' to maps_from of topic 'feature'" in msg
    check_clean(rep, {"max_unmapped_share": 0.3}, TAX)  # allowed when the user raises the limit


def test_suggest_maps_from_matches_case_punctuation_and_spelling():
    assert suggest_maps_from(["Bug", "feature-request", "questoin", "docs"], ["bug", "feature", "question"]) == {
        "Bug": "bug", "feature-request": "feature", "questoin": "question"}


def test_taxonomy_that_maps_nothing_and_one_label_are_refused():
    _, _, _, rep = clean_tickets(_tickets(["defect"] * 4 + ["wish"] * 4), TAX)
    with pytest.raises(DataError, match="the taxonomy maps nothing.*'defect' \\(4\\)"):
        check_clean(rep, {}, TAX)
    _, _, _, rep = clean_tickets(_tickets(["bug"] * 8), TAX)
    with pytest.raises(DataError, match="only one label"):
        check_clean(rep, {}, TAX)


def _stream(counts_by_period):
    """Rows whose labels cluster in time, like a real issue stream (bugs first, questions last)."""
    t0 = datetime(2024, 1, 1, tzinfo=timezone.utc)
    rows, i = [], 0
    for label, n in counts_by_period:
        for _ in range(n):
            rows.append({"id": f"r{i}", "text": f"t{i}", "topic": label,
                         "created_at": (t0 + timedelta(hours=i)).isoformat()})
            i += 1
    return rows


def test_date_split_keeps_every_label_where_a_global_cut_loses_one(tmp_path):
    rows = _stream([("feature", 60), ("bug", 100), ("question", 40)])  # questions only at the end
    with pytest.raises(DataError, match="leaves labels out of (train|validation)"):
        split_tickets(rows, {"heldout_size": 0, "strategy": "date_global"}, heldout_path=tmp_path / "g.jsonl")
    assert not (tmp_path / "g.jsonl").exists()  # nothing half-written
    splits, _, rep = split_tickets(rows, {"heldout_size": 20}, heldout_path=tmp_path / "h.jsonl")
    for name in ("train", "validation", "test"):
        assert set(rep["splits"][name]["label_counts"]) == {"bug", "feature", "question"}, name
    assert sum(len(s) for s in splits.values()) + rep["heldout"]["size"] == 200
    # 180 left after the held-out set: validation has ~10% of each label, all below 20 -> a warning
    assert any("fewer than 20 validation tickets" in w and "question" in w for w in rep["warnings"])


def test_split_warns_when_one_label_dominates_validation(tmp_path):
    rows = _stream([("bug", 400), ("feature", 30), ("question", 30)])
    _, _, rep = split_tickets(rows, {"heldout_size": 0}, heldout_path=tmp_path / "h.jsonl")
    assert any("label 'bug' is 87% of validation" in w for w in rep["warnings"]), rep["warnings"]


def test_thin_label_is_an_error_naming_labels_and_counts(tmp_path):
    rows = _stream([("bug", 50), ("feature", 50), ("question", 2)])
    with pytest.raises(DataError, match=r"fewer than 3 tickets.*question \(2\).*maps_from"):
        split_tickets(rows, {"heldout_size": 0}, heldout_path=tmp_path / "h.jsonl")
    assert not (tmp_path / "h.jsonl").exists()


def test_heldout_belongs_to_its_dataset(tmp_path):
    held = tmp_path / "heldout" / "gh.jsonl"
    rows = _stream([("bug", 60), ("feature", 60), ("question", 60)])
    ds = {"name": "gh", "fingerprint": "sha256:aaa"}
    _, h1, rep = split_tickets(rows, {"heldout_size": 30}, heldout_path=held, dataset=ds)
    meta = json.loads(held.with_suffix(".json").read_text())
    assert rep["heldout"]["status"] == "created" and meta["dataset"] == "gh" and meta["source_fingerprint"] == "sha256:aaa"
    # the export grew (new fingerprint) but holds the frozen tickets: reused, not refrozen
    grown = rows + [dict(r, id=f"n{i}") for i, r in enumerate(rows[:30])]
    _, h2, rep2 = split_tickets(grown, {"heldout_size": 30}, heldout_path=held,
                                dataset={"name": "gh", "fingerprint": "sha256:bbb"})
    assert rep2["heldout"]["status"].startswith("reused") and [r["id"] for r in h2] == [r["id"] for r in h1]
    # another source under the same file: refused, file untouched
    other = [dict(r, text=f"other {r['id']}", topic={"bug": "x", "feature": "y", "question": "z"}[r["topic"]])
             for r in rows]
    before = held.read_text()
    with pytest.raises(DataError, match="frozen from another source"):
        split_tickets(other, {"heldout_size": 30}, heldout_path=held, dataset={"name": "gh", "fingerprint": "sha256:ccc"})
    with pytest.raises(DataError, match="belongs to dataset 'gh', not 'banking'"):
        split_tickets(rows, {"heldout_size": 30}, heldout_path=held, dataset={"name": "banking", "fingerprint": "x"})
    assert held.read_text() == before


def test_sweep_refuses_a_validation_split_without_every_label(tmp_path, base_params):
    import copy

    from ticket_triage.training import run_sweep

    params = copy.deepcopy(base_params)
    params["paths"]["split"] = str(tmp_path / "split")
    (tmp_path / "split").mkdir()
    rows = {"train": ["bug", "feature", "question"] * 4, "validation": ["bug"] * 3, "test": ["bug", "feature", "question"]}
    for name, labels in rows.items():
        (tmp_path / "split" / f"{name}.jsonl").write_text("".join(
            json.dumps({"id": f"{name}{i}", "text": f"ticket {i}", "topic": lab}) + "\n" for i, lab in enumerate(labels)))
    with pytest.raises(ValueError, match="validation has no tickets of feature, question"):
        run_sweep(params, out_dir=tmp_path / "train", track=False, metrics_path=tmp_path / "m.json")
    assert not (tmp_path / "train").exists()
