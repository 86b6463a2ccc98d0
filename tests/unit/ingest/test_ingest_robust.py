"""Ingest defects of issue 14 (defect 8): one bad row never takes the file down, values are not
stringified into nonsense, and a CSV without its text column is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ticket_triage.ingest.readers import ingest, read_tickets
from ticket_triage.ingest.rows import IngestError


def jsonl(tmp_path: Path, rows: list[str], name: str = "t.jsonl") -> Path:
    p = tmp_path / name
    p.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return p


GOOD = [json.dumps({"id": "g1", "body": "card lost"}), json.dumps({"id": "g2", "body": "refund please"})]


def test_deeply_nested_line_is_rejected_and_the_rest_kept(tmp_path):
    deep = '{"id": "d", "body": ' + "[" * 100_000 + "]" * 100_000 + "}"
    p = jsonl(tmp_path, [GOOD[0], deep, GOOD[1]])
    tickets, rejected, rep = read_tickets(p, "jsonl")
    assert [t.id for t in tickets] == ["g1", "g2"]
    assert len(rejected) == 1 and rejected[0].reason == "malformed_row" and "nested" in rejected[0].detail
    # and the ingest stage writes all three outputs
    rep = ingest(p, "jsonl", out_dir=tmp_path / "out")
    assert rep.rows_in == 3 and rep.tickets_out == 2 and rep.rejected == 1
    assert (tmp_path / "out" / "rejected.jsonl").read_text().count("\n") == 1


def test_moderately_nested_value_is_rejected(tmp_path):
    mid = json.dumps({"id": "m", "body": "x", "extra": json.loads("[" * 200 + "]" * 200)})
    tickets, rejected, _ = read_tickets(jsonl(tmp_path, [mid, GOOD[0]]), "jsonl")
    assert [t.id for t in tickets] == ["g1"] and "nested" in rejected[0].detail


def test_deeply_nested_zendesk_document_is_a_clear_error(tmp_path):
    p = tmp_path / "z.json"
    p.write_text('{"tickets": ' + "[" * 100_000 + "]" * 100_000 + "}")
    with pytest.raises(IngestError, match="nested deeper"):
        read_tickets(p, "zendesk")


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_one_nul_byte_rejects_its_row_only(tmp_path, fmt):
    if fmt == "csv":
        p = tmp_path / "t.csv"
        p.write_bytes(b"id,body\n1,card lost\n2,bad\x00row\n3,refund please\n")
    else:
        p = tmp_path / "t.jsonl"
        p.write_bytes(b'{"id": "1", "body": "card lost"}\n{"id": "2", "body": "bad\x00row"}\n'
                      b'{"id": "3", "body": "refund please"}\n')
    tickets, rejected, rep = read_tickets(p, fmt)
    assert [t.id for t in tickets] == ["1", "3"]
    if fmt == "csv":
        assert [r.reason for r in rejected] == ["nul_byte"] and "NUL" in rejected[0].detail
    else:  # a raw NUL inside a JSON string is not JSON
        assert [r.reason for r in rejected] == ["malformed_row"] and "control character" in rejected[0].detail


def test_nan_and_infinity_are_missing_not_strings(tmp_path):
    p = jsonl(tmp_path, ['{"id": "1", "subject": NaN, "body": "card lost", "channel": Infinity}',
                         '{"id": "2", "subject": "help", "body": -Infinity}',
                         '{"id": "3", "subject": NaN, "body": NaN}'])
    tickets, rejected, _ = read_tickets(p, "jsonl")
    by = {t.id: t for t in tickets}
    assert by["1"].subject == "" and by["1"].channel is None and by["1"].body == "card lost"
    assert by["2"].body == "" and by["2"].subject == "help"
    assert [r.reason for r in rejected] == ["missing_body"]
    assert "nan" not in json.dumps([t.to_dict() for t in tickets]).lower().replace("channel", "")


@pytest.mark.parametrize("body,kind", [(["a", "b"], "list"), ({"text": "hi"}, "object")])
def test_list_or_object_body_is_rejected(tmp_path, body, kind):
    p = jsonl(tmp_path, [json.dumps({"id": "x", "body": body}), GOOD[0]])
    tickets, rejected, _ = read_tickets(p, "jsonl")
    assert [t.id for t in tickets] == ["g1"]
    assert rejected[0].reason == "invalid_field" and f"body is a JSON {kind}" in rejected[0].detail


def test_object_tags_use_their_name_or_are_rejected(tmp_path):
    p = jsonl(tmp_path, [json.dumps({"id": "1", "body": "x", "tags": [{"name": "vip"}, {"label": "billing"}]}),
                         json.dumps({"id": "2", "body": "y", "tags": [{"colour": "red"}]}),
                         json.dumps({"id": "3", "body": "z", "tags": {"a": 1}})])
    tickets, rejected, _ = read_tickets(p, "jsonl")
    assert [(t.id, t.tags) for t in tickets] == [("1", ["vip", "billing"])]
    assert [r.reason for r in rejected] == ["invalid_field", "invalid_field"]
    assert "tag object" in rejected[0].detail


@pytest.mark.parametrize("value", [-1e12, -1, 0, 4102444800 * 10, "1899-12-31T00:00:00Z", "2999-01-01"])
def test_absurd_dates_are_rejected(tmp_path, value):
    p = jsonl(tmp_path, [json.dumps({"id": "1", "body": "x", "created_at": value}), GOOD[0]])
    tickets, rejected, _ = read_tickets(p, "jsonl")
    assert [t.id for t in tickets] == ["g1"]
    assert rejected[0].reason == "implausible_date"


def test_plausible_epochs_still_read(tmp_path):
    p = jsonl(tmp_path, [json.dumps({"id": "1", "body": "x", "created_at": 1700000000}),
                         json.dumps({"id": "2", "body": "x", "created_at": 1700000000123})])
    tickets, rejected, _ = read_tickets(p, "jsonl")
    assert not rejected and all(t.created_at.year == 2023 for t in tickets)


def test_csv_without_body_column_is_refused(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("id,subject,text\n1,Card,my card is lost\n")
    with pytest.raises(IngestError, match="no body column.*'text'"):
        read_tickets(p, "csv")
    with pytest.raises(IngestError, match="mapping has no 'body'"):
        read_tickets(p, "csv", {"id": "id", "subject": "subject"})
    tickets, _, _ = read_tickets(p, "csv", {"id": "id", "subject": "subject", "body": "text"})
    assert tickets[0].body == "my card is lost"


def test_shift_jis_is_detected(tmp_path):
    p = tmp_path / "sjis.csv"
    p.write_bytes("id,body\n1,カードが届きません。至急確認してください。\n".encode("shift_jis"))
    tickets, rejected, rep = read_tickets(p, "csv")
    assert rep.encoding == "shift_jis" and tickets[0].body == "カードが届きません。至急確認してください。"
