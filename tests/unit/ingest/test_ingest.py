"""Tests for ticket_triage.ingest: every export format, every bad-input path, counts conserved."""

from __future__ import annotations

import csv
import json
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml

from ticket_triage.ingest.readers import data_config_kwargs, ingest, read_tickets
from ticket_triage.ingest.rows import IngestError, Rejected
from ticket_triage.schema import Ticket
from helpers import conserved

REPO = Path(__file__).resolve().parents[3]
EXPORTS = REPO / "tests" / "fixtures" / "exports"
CSV_MAPPING = {
    "id": "ticket_id", "subject": "title", "body": "description", "created_at": "opened",
    "tags": "labels", "urgency": "prio", "language": "lang",
}
UTC = timezone.utc


def reasons_by_position(rejected: list[Rejected]) -> dict[int, str]:
    return {r.position: r.reason for r in rejected}


# --------------------------------------------------------------------------- CSV


def test_csv_happy_path_maps_fields_dates_tags_and_urgency() -> None:
    tickets, rejected, rep = read_tickets(
        EXPORTS / "tickets.csv", "csv", CSV_MAPPING, defaults={"channel": "web"},
        urgency_map={"high": "P1", "medium": "P2", "low": "P3"})
    conserved(tickets, rejected, rep)
    assert (rep.rows_in, rep.rejected, rep.format, rep.encoding) == (6, 0, "csv", "utf-8")
    by_id = {t.id: t for t in tickets}
    assert list(by_id) == ["T-1", "T-2", "T-3", "T-4", "T-5", "T-6"]
    t1 = by_id["T-1"]
    assert t1.subject == "Card not arrived" and t1.body.startswith("I ordered a card")
    assert t1.created_at == datetime(2024, 1, 5, 10, tzinfo=UTC)
    assert (t1.tags, t1.urgency, t1.language, t1.channel) == (["card_arrival"], "P1", "en", "web")
    assert t1.source == "csv:tickets.csv" and t1.text == ""
    # "YYYY-MM-DD HH:MM:SS" is UTC; epoch seconds; explicit offsets kept; date only -> midnight
    assert by_id["T-2"].created_at == datetime(2024, 1, 6, 9, 30, tzinfo=UTC)
    assert by_id["T-3"].created_at == datetime(2024, 1, 6, 10, tzinfo=UTC)
    t4 = by_id["T-4"].created_at
    assert t4.utcoffset() == timedelta(hours=2) and t4 == datetime(2024, 1, 7, 6, 15, tzinfo=UTC)
    assert by_id["T-6"].created_at == datetime(2024, 1, 8, tzinfo=UTC)
    assert by_id["T-5"].created_at is None
    assert all(t.created_at is None or t.created_at.tzinfo is not None for t in tickets)
    # tags split on ; | , and trimmed
    assert by_id["T-2"].tags == ["refund", "merchant"]
    assert by_id["T-3"].tags == ["card", "blocked"]
    assert by_id["T-4"].tags == ["transfer", "pending"]
    # a real newline inside a quoted field is kept raw; an empty subject stays empty
    assert by_id["T-4"].body == "First line of the body.\nSecond line, after a real newline."
    assert by_id["T-3"].subject == "" and by_id["T-3"].language == "de"
    # urgency_map is case-insensitive; empty -> None; unknown -> None plus a warning
    assert by_id["T-4"].urgency == "P1" and by_id["T-3"].urgency == "P3"
    assert by_id["T-5"].urgency is None and by_id["T-6"].urgency is None
    assert any("whenever" in w and "urgency_map" in w for w in rep.warnings)


def test_csv_bad_rows_are_rejected_with_reason_and_position() -> None:
    tickets, rejected, rep = read_tickets(EXPORTS / "tickets_bad.csv", "csv")
    conserved(tickets, rejected, rep)
    assert rep.rows_in == 9
    # the unbalanced quote in row 2 costs only that row: B-3 after it is read again
    assert [t.id for t in tickets] == ["B-1", "B-3", "B-7"]
    assert reasons_by_position(rejected) == {
        2: "malformed_row", 4: "malformed_row", 5: "missing_body", 6: "unparsable_date",
        7: "duplicate_id", 8: "missing_id",
    }
    r = {x.position: x for x in rejected}
    assert "line 3" in r[2].detail and r[2].raw.startswith("B-2,Broken quote")
    assert "lines 4-10" in r[2].detail and "read again" in r[2].detail
    assert "expected 4 fields" in r[4].detail and "got 5" in r[4].detail
    assert "next tuesday" in r[6].detail and r[6].raw["created_at"] == "next tuesday"
    assert "B-1" in r[7].detail and "position 1" in r[7].detail
    assert r[7].raw["subject"] == "Duplicate"  # the first B-1 is kept, the later one rejected
    assert all(x.source.endswith("tickets_bad.csv") for x in rejected)


def test_missing_mapped_column_raises_naming_column_and_mapping_key() -> None:
    with pytest.raises(IngestError) as e:
        read_tickets(EXPORTS / "tickets.csv", "csv", {**CSV_MAPPING, "body": "desc"})
    msg = str(e.value)
    assert "'desc'" in msg and "mapping.body" in msg
    assert "ticket_id, title, description" in msg  # the columns that exist
    assert "did you mean 'description'" in msg


def test_no_mapping_and_no_text_column_raises() -> None:
    with pytest.raises(IngestError, match="no body column.*'description'"):
        read_tickets(EXPORTS / "tickets.csv", "csv")


def test_bad_mapping_key_and_unknown_format_raise() -> None:
    with pytest.raises(IngestError, match="'bdy' is not a Ticket field.*'body'"):
        read_tickets(EXPORTS / "tickets.csv", "csv", {"bdy": "description"})
    with pytest.raises(IngestError, match="unknown export format 'xlsx'"):
        read_tickets(EXPORTS / "tickets.csv", "xlsx")
    with pytest.raises(IngestError, match="export not found"):
        read_tickets(EXPORTS / "nope.csv", "csv")


def test_generated_ids_when_mapping_has_no_id_or_column_is_missing() -> None:
    no_id = {k: v for k, v in CSV_MAPPING.items() if k != "id"}
    tickets, rejected, rep = read_tickets(EXPORTS / "tickets.csv", "csv", no_id)
    conserved(tickets, rejected, rep)
    assert [t.id for t in tickets] == [f"tickets.csv:{i}" for i in range(1, 7)]
    assert any("generated stable ids" in w for w in rep.warnings)
    # mapping names an id column the file lacks -> same fallback, and the warning says so
    tickets2, _, rep2 = read_tickets(EXPORTS / "tickets.csv", "csv", {**no_id, "id": "id"})
    assert [t.id for t in tickets2] == [t.id for t in tickets]
    assert any("mapping.id" in w for w in rep2.warnings)


def test_dates_each_supported_form_and_unparsable(tmp_path: Path) -> None:
    rows = [
        ("a", "2024-01-05T10:00:00Z", datetime(2024, 1, 5, 10, tzinfo=UTC)),
        ("b", "2024-01-05 10:00:00", datetime(2024, 1, 5, 10, tzinfo=UTC)),
        ("c", "1704448800", datetime(2024, 1, 5, 10, tzinfo=UTC)),
        ("d", "1704448800.5", datetime(2024, 1, 5, 10, 0, 0, 500000, tzinfo=UTC)),
        ("e", "Fri, 05 Jan 2024 10:00:00 +0000", datetime(2024, 1, 5, 10, tzinfo=UTC)),
        ("f", "", None),
        ("g", "05/01/2024", "unparsable_date"),
        ("h", "yesterday", "unparsable_date"),
        ("i", "2024-13-45T00:00:00Z", "unparsable_date"),
    ]
    p = tmp_path / "dates.csv"
    with open(p, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["id", "body", "created_at"])
        w.writerows([(i, "text", d) for i, d, _ in rows])
    tickets, rejected, rep = read_tickets(p, "csv")
    conserved(tickets, rejected, rep)
    got = {t.id: t.created_at for t in tickets}
    bad = {r.raw["id"]: r.reason for r in rejected}
    for i, _, want in rows:
        if want == "unparsable_date":
            assert bad[i] == "unparsable_date"
        else:
            assert got[i] == want, i


def test_body_over_max_bytes_is_rejected_5mb(tmp_path: Path) -> None:
    p = tmp_path / "big.csv"
    big = "x" * (5 * 1024 * 1024)
    p.write_text(f"id,body\nok-1,short body\nbig-1,{big}\nok-2,another\n", encoding="utf-8")
    tickets, rejected, rep = read_tickets(p, "csv")
    conserved(tickets, rejected, rep)
    assert [t.id for t in tickets] == ["ok-1", "ok-2"]
    assert [(r.position, r.reason) for r in rejected] == [(2, "body_too_large")]
    assert "5,242,880 bytes" in rejected[0].detail and "max_body_bytes" in rejected[0].detail
    assert len(json.dumps(rejected[0].raw)) < 2200  # raw truncated to ~2,000 chars
    # multi-byte characters count as bytes, not characters
    p2 = tmp_path / "umlaut.csv"
    p2.write_text("id,body\nu-1," + "ü" * 600 + "\n", encoding="utf-8")
    _, rej2, _ = read_tickets(p2, "csv", max_body_bytes=1000)
    assert [r.reason for r in rej2] == ["body_too_large"]
    # raising the limit lets it through
    tickets3, rej3, _ = read_tickets(p, "csv", max_body_bytes=6_000_000)
    assert len(tickets3) == 3 and not rej3 and len(tickets3[1].body) == len(big)


# --------------------------------------------------------------------------- encodings


def test_utf16_bytes_raise_with_iconv_hint_and_encoding_override_works() -> None:
    path = EXPORTS / "tickets_utf16.csv"
    with pytest.raises(IngestError) as e:
        read_tickets(path, "csv")
    msg = str(e.value)
    assert "UTF-16" in msg and "tried utf-8" in msg and "iconv -f UTF-16 -t utf-8" in msg
    tickets, rejected, rep = read_tickets(path, "csv", encoding="utf-16")
    conserved(tickets, rejected, rep)
    assert [t.subject for t in tickets] == ["Café bill", "Reçu"] and rep.encoding == "utf-16"


def test_utf16_without_bom_and_binary_raise(tmp_path: Path) -> None:
    p = tmp_path / "nobom.csv"
    p.write_bytes("id,body\n1,hello there\n".encode("utf-16-le"))
    with pytest.raises(IngestError, match="UTF-16LE without a byte-order mark.*iconv"):
        read_tickets(p, "csv")
    b = tmp_path / "blob.csv"
    b.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(IngestError, match="binary"):
        read_tickets(b, "csv")
    g = tmp_path / "export.json"
    g.write_bytes(b"\x1f\x8b\x08\x00" + b"\x01" * 20)
    with pytest.raises(IngestError, match="gzip"):
        read_tickets(g, "zendesk")


def test_multibyte_non_utf8_is_not_mistaken_for_latin1(tmp_path: Path) -> None:
    # issue 14: Shift-JIS is detected and read as such (it used to be refused); Chinese GB18030
    # (which decodes as Shift-JIS kanji salad) and other multibyte encodings are still refused
    p = tmp_path / "sjis.csv"
    p.write_bytes(("id,body\n" + "".join(f"{i},日本語のチケットです\n" for i in range(5))).encode("shift_jis"))
    tickets, rejected, rep = read_tickets(p, "csv")
    assert rep.encoding == "shift_jis" and not rejected
    assert tickets[0].body == "日本語のチケットです"
    assert any("Shift-JIS" in w or "shift_jis" in w for w in rep.warnings)
    for enc, text in (("gb18030", "这是中文工单，订单还没有到"), ("euc-kr", "한국어 티켓입니다")):
        p = tmp_path / f"{enc}.csv"
        p.write_bytes(("id,body\n" + "".join(f"{i},{text}\n" for i in range(5))).encode(enc))
        with pytest.raises(IngestError, match="not UTF-8.*does not look like cp1252.*iconv"):
            read_tickets(p, "csv")


def test_cp1252_file_is_read_with_a_warning() -> None:
    tickets, rejected, rep = read_tickets(EXPORTS / "tickets_cp1252.csv", "csv")
    conserved(tickets, rejected, rep)
    assert rep.encoding == "cp1252"
    assert tickets[0].subject == "Café bill"
    assert tickets[0].body == "Das Gebühr für die Überweisung ist zu hoch – bitte prüfen."
    assert any("not valid UTF-8" in w and "cp1252" in w for w in rep.warnings)
    # a wrong declared encoding fails with advice, not a bare UnicodeDecodeError
    with pytest.raises(IngestError, match="cannot decode as utf-8.*encoding="):
        read_tickets(EXPORTS / "tickets_cp1252.csv", "csv", encoding="utf-8")
    # declared encoding: no detection, no warning
    t2, _, rep2 = read_tickets(EXPORTS / "tickets_cp1252.csv", "csv", encoding="cp1252")
    assert rep2.warnings == [] and t2[1].body == "Je n'ai pas reçu ma carte."


def test_latin1_bytes_undefined_in_cp1252_fall_back_to_latin1(tmp_path: Path) -> None:
    p = tmp_path / "l1.csv"
    p.write_bytes(b"id,body\n1,caf\xe9 \x81 ok\n")
    tickets, _, rep = read_tickets(p, "csv")
    assert rep.encoding == "latin-1" and tickets[0].body == "café \x81 ok"


def test_utf8_bom_is_stripped_and_header_matches() -> None:
    mapping = {"id": "id", "subject": "subject", "body": "body", "tags": "tags"}
    tickets, rejected, rep = read_tickets(EXPORTS / "tickets_bom.csv", "csv", mapping)
    conserved(tickets, rejected, rep)
    assert [t.id for t in tickets] == ["U-1", "U-2"] and rep.encoding == "utf-8-sig"
    assert tickets[0].subject == "Überweisung" and not tickets[0].subject.startswith("\ufeff")
    # also when the caller declares plain utf-8
    t2, _, _ = read_tickets(EXPORTS / "tickets_bom.csv", "csv", mapping, encoding="utf-8")
    assert [t.id for t in t2] == ["U-1", "U-2"]


# --------------------------------------------------------------------------- JSONL, Parquet


def test_jsonl_happy_and_bad_lines() -> None:
    tickets, rejected, rep = read_tickets(EXPORTS / "tickets.jsonl", "jsonl")
    conserved(tickets, rejected, rep)
    assert [t.id for t in tickets] == ["J-1", "J-2", "J-5"]
    j1, j2, j5 = tickets
    assert (j1.tags, j1.urgency, j1.channel) == (["login", "account"], "P1", "chat")
    assert j2.created_at == datetime(2024, 3, 1, 12, tzinfo=UTC)
    assert j2.tags == ["billing", "invoice"]
    assert j5.created_at == datetime(2024, 3, 3, 8, tzinfo=UTC)
    # positions are line numbers (line 3 is blank and not a row)
    assert reasons_by_position(rejected) == {4: "malformed_row", 5: "malformed_row",
                                             6: "missing_body"}


def test_jsonl_directory_with_mapping_and_cross_file_duplicates(tmp_path: Path) -> None:
    d = tmp_path / "exp"
    d.mkdir()
    (d / "a.jsonl").write_text(json.dumps({"key": 1, "msg": {"text": "one"}}) + "\n")
    (d / "b.jsonl").write_text(json.dumps({"key": 1, "msg": {"text": "dup"}}) + "\n"
                               + json.dumps({"key": 2, "msg": {"text": "two"}}) + "\n")
    (d / "notes.txt").write_text("ignored: not a .jsonl file")
    tickets, rejected, rep = read_tickets(d, "jsonl", {"id": "key", "body": "msg.text"})
    conserved(tickets, rejected, rep)
    assert [(t.id, t.body) for t in tickets] == [("1", "one"), ("2", "two")]
    assert [(Path(r.source).name, r.position, r.reason) for r in rejected] == [
        ("b.jsonl", 1, "duplicate_id")]
    assert len(rep.files) == 2


def test_parquet_with_mapping(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    p = tmp_path / "t.parquet"
    pq.write_table(pa.table({
        "tid": ["p1", "p2", "p3"],
        "text": ["hello", "", "world"],
        "labels": [["a", "b"], [], ["c"]],
        "ts": [datetime(2024, 1, 1, 12), datetime(2024, 1, 2), None],
    }), p)
    tickets, rejected, rep = read_tickets(
        p, "parquet", {"id": "tid", "body": "text", "tags": "labels", "created_at": "ts"})
    conserved(tickets, rejected, rep)
    assert [(t.id, t.tags) for t in tickets] == [("p1", ["a", "b"]), ("p3", ["c"])]
    assert tickets[0].created_at == datetime(2024, 1, 1, 12, tzinfo=UTC)
    assert tickets[1].created_at is None
    assert [(r.position, r.reason) for r in rejected] == [(2, "missing_body")]
    with pytest.raises(IngestError, match="'body_text'.*mapping.body"):
        read_tickets(p, "parquet", {"id": "tid", "body": "body_text"})
    bad = tmp_path / "bad.parquet"
    bad.write_text("id,body\n1,x\n")
    with pytest.raises(IngestError, match="not a readable Parquet file"):
        read_tickets(bad, "parquet")


# --------------------------------------------------------------------------- helpdesk exports


def test_zendesk_api_response() -> None:
    tickets, rejected, rep = read_tickets(EXPORTS / "zendesk_tickets.json", "zendesk")
    conserved(tickets, rejected, rep)
    assert [t.id for t in tickets] == ["35436", "35437", "35438"]
    t = tickets[0]
    assert (t.subject, t.body) == ("Help, my printer is on fire!", "The fire is very colorful.")
    assert t.created_at == datetime(2024, 1, 5, 10, tzinfo=UTC)
    assert (t.tags, t.urgency, t.channel, t.requester) == (
        ["enterprise", "printer"], "P0", "email", "20978392")
    assert tickets[1].subject == "Invoice question"  # raw_subject fallback
    assert tickets[1].urgency == "P2" and tickets[2].urgency is None
    assert any("next_page" in w and "paginated" in w for w in rep.warnings)


def test_zendesk_incremental_jsonl_and_directory(tmp_path: Path) -> None:
    t_inc, r_inc, rep = read_tickets(EXPORTS / "zendesk_incremental.json", "zendesk")
    conserved(t_inc, r_inc, rep)
    assert [(t.id, t.urgency) for t in t_inc] == [("501", "P1"), ("502", "P3")]
    assert rep.warnings == []  # end_of_stream: true -> complete
    t_l, r_l, rep_l = read_tickets(EXPORTS / "zendesk_tickets.jsonl", "zendesk")
    conserved(t_l, r_l, rep_l)
    assert [(t.id, t.urgency, t.channel) for t in t_l] == [("601", "P0", "phone"),
                                                           ("602", "P2", "web")]
    d = tmp_path / "zd"
    d.mkdir()
    for name in ("zendesk_tickets.json", "zendesk_incremental.json", "zendesk_tickets.jsonl"):
        shutil.copy(EXPORTS / name, d / name)
    # one page per line, as some exporters write it
    (d / "pages.ndjson").write_text(json.dumps({"tickets": [
        {"id": 900, "description": "paged one"}, {"id": 901, "description": "paged two"}]}) + "\n")
    t_d, r_d, rep_d = read_tickets(d, "zendesk")
    conserved(t_d, r_d, rep_d)
    assert len(t_d) == 9 and rep_d.rows_in == 9 and len(rep_d.files) == 4
    assert {"900", "901"} <= {t.id for t in t_d}


def test_zendesk_missing_fields_are_rejected_not_keyerrors() -> None:
    tickets, rejected, rep = read_tickets(EXPORTS / "zendesk_missing_fields.json", "zendesk")
    conserved(tickets, rejected, rep)
    assert [t.id for t in tickets] == ["701", "704"]
    t704 = tickets[1]
    assert (t704.created_at, t704.tags, t704.urgency, t704.channel, t704.requester) == (
        None, [], None, None, None)
    assert reasons_by_position(rejected) == {
        2: "missing_id", 3: "missing_body", 5: "unparsable_date", 6: "malformed_row",
        7: "duplicate_id"}
    r = {x.position: x for x in rejected}
    assert "description" in r[3].detail and "raw_subject" in r[3].detail
    assert "tickets[5]" in r[6].detail
    assert any("end_of_stream=false" in w for w in rep.warnings)


def test_zendesk_wrong_shape_and_invalid_json_raise(tmp_path: Path) -> None:
    with pytest.raises(IngestError, match="does not look like a zendesk export.*_results"):
        read_tickets(EXPORTS / "front_conversations.json", "zendesk")
    p = tmp_path / "broken.json"
    p.write_text('{"tickets": [{"id": 1,')
    with pytest.raises(IngestError, match="not valid JSON"):
        read_tickets(p, "zendesk")


def test_intercom_conversations(tmp_path: Path) -> None:
    tickets, rejected, rep = read_tickets(EXPORTS / "intercom_conversations.json", "intercom")
    conserved(tickets, rejected, rep)
    c147, c148 = tickets
    assert (c147.id, c147.subject, c147.body) == (
        "147", "Card declined", "<p>My card was declined at the shop.</p>")  # HTML kept raw
    assert c147.created_at == datetime(2024, 1, 5, 10, tzinfo=UTC)
    assert (c147.tags, c147.urgency, c147.channel, c147.requester) == (
        ["card", "declined"], "P1", "email", "5f1a")
    assert (c148.subject, c148.urgency, c148.channel) == ("Chat about fees", None, "chat")
    assert [(r.position, r.reason) for r in rejected] == [(3, "missing_body")]
    # a bare list of conversations works too
    p = tmp_path / "list.json"
    p.write_text(json.dumps(json.loads(
        (EXPORTS / "intercom_conversations.json").read_text())["conversations"]))
    t2, r2, rep2 = read_tickets(p, "intercom")
    conserved(t2, r2, rep2)
    assert [t.id for t in t2] == ["147", "148"]


def test_front_conversations() -> None:
    tickets, rejected, rep = read_tickets(EXPORTS / "front_conversations.json", "front")
    conserved(tickets, rejected, rep)
    a, b = tickets
    assert (a.id, a.subject, a.body) == (
        "cnv_55c8c149", "Order not delivered", "<p>My order has not arrived yet.</p>")
    assert a.created_at == datetime(2024, 1, 5, 10, 0, 0, 512000, tzinfo=UTC)
    assert (a.tags, a.channel, a.requester) == (["shipping", "vip"], "email", "crd_111")
    assert (b.body, b.channel, b.requester) == ("Can I change my delivery address?", "sms",
                                                "crd_222")  # blurb fallback, phone handle
    assert [(r.position, r.reason) for r in rejected] == [(3, "missing_body")]


def test_export_mapping_overrides_one_field(tmp_path: Path) -> None:
    p = tmp_path / "zd.json"
    p.write_text(json.dumps({"tickets": [
        {"id": 1, "description": "x", "custom": {"lang": "de"}}]}))
    tickets, _, _ = read_tickets(p, "zendesk", {"language": "custom.lang"})
    assert tickets[0].language == "de" and tickets[0].body == "x"


# --------------------------------------------------------------------------- ingest() outputs


def test_ingest_writes_tickets_rejected_and_report(tmp_path: Path) -> None:
    out = tmp_path / "out"
    rep = ingest(EXPORTS / "tickets_bad.csv", "csv", None, out_dir=out)
    lines = (out / "tickets.jsonl").read_text(encoding="utf-8").splitlines()
    rej = [json.loads(x) for x in (out / "rejected.jsonl").read_text().splitlines()]
    report = json.loads((out / "report.json").read_text())
    assert len(lines) == rep.tickets_out == 3 and len(rej) == rep.rejected == 6
    assert report["rows_in"] == report["tickets_out"] + report["rejected"] == 9
    assert report["rejected_by_reason"]["malformed_row"] == 2
    # each line is exactly Ticket.to_dict() of what read_tickets returns
    tickets, _, _ = read_tickets(EXPORTS / "tickets_bad.csv", "csv")
    assert [json.loads(x) for x in lines] == [json.loads(json.dumps(t.to_dict()))
                                              for t in tickets]
    back = [Ticket.from_dict(json.loads(x)) for x in lines]
    assert back[0].id == "B-1" and back[0].created_at == datetime(2024, 2, 1, 10, tzinfo=UTC)
    assert {r["reason"] for r in rej} == {"malformed_row", "missing_body", "unparsable_date",
                                          "duplicate_id", "missing_id"}
    assert all({"source", "position", "reason", "detail", "raw"} <= set(r) for r in rej)
    with pytest.raises(IngestError, match="unknown option"):
        ingest(EXPORTS / "tickets.csv", "csv", out_dir=out, max_body=1)


def test_ingest_leaves_no_partial_outputs_on_error(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with pytest.raises(IngestError, match="mapping.body"):
        ingest(EXPORTS / "tickets.csv", "csv", {"body": "nope"}, out_dir=out)
    assert not out.exists() or list(out.iterdir()) == []
    with pytest.raises(IngestError, match="UTF-16"):
        ingest(EXPORTS / "tickets_utf16.csv", "csv", out_dir=out)
    assert list(out.iterdir()) == []


def test_data_config_kwargs_reads_the_hydra_data_configs() -> None:
    kw = data_config_kwargs(yaml.safe_load((REPO / "conf/data/helpdesk_synthetic.yaml")
                                           .read_text()))
    assert kw["fmt"] == "csv" and kw["defaults"] == {"channel": "email"}
    assert kw["urgency_map"] == {"high": "P1", "medium": "P2", "low": "P3"}
    assert kw["mapping"]["tags"] == [f"tag_{i}" for i in range(1, 9)]
    with pytest.raises(IngestError, match="urgency_map.*'urgent'"):
        read_tickets(EXPORTS / "tickets.csv", "csv", CSV_MAPPING, urgency_map={"high": "urgent"})
