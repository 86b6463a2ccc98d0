"""Helpdesk export maps (Zendesk, Intercom, Front): vendor JSON -> canonical values.

The one copy of each vendor's field mapping: the ``zendesk`` / ``intercom`` / ``front`` ingest
formats use it, and so do the helpdesk adapters (``ticket_triage.helpdesk``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from ticket_triage.ingest.rows import (
    IngestError,
    IngestReport,
    _Builder,
    _getter,
    _Malformed,
    _tags,
)
from ticket_triage.schema import Ticket
from ticket_triage.ingest.tabular import MAX_DEPTH, _iter_jsonl, _no_constant, too_deep

ZENDESK_PRIORITY: dict[str, str] = {"urgent": "P0", "high": "P1", "normal": "P2", "low": "P3"}
INTERCOM_PRIORITY: dict[str, str | None] = {"priority": "P1", "not_priority": None}
INTERCOM_CHANNEL: dict[str, str] = {"conversation": "chat"}
VENDOR_URGENCY: dict[str, dict[str, str | None]] = {
    "zendesk": ZENDESK_PRIORITY, "intercom": INTERCOM_PRIORITY,
}


def _iter_json_export(path: Path, fmt: str, enc: str, mapping: dict | None,
                      builder: "_Builder", report: IngestReport) -> Iterator:
    extract = _EXPORT_EXTRACTORS[fmt](mapping, builder)
    if path.name.lower().endswith((".jsonl", ".ndjson")):
        yield from _iter_jsonl(path, enc, extract, report)
        return
    with open(path, encoding=enc, newline="") as f:
        text = f.read().lstrip("\ufeff")
    try:
        doc = json.loads(text, parse_constant=_no_constant)
    except RecursionError:
        raise IngestError(f"{path.name}: JSON nested deeper than the parser allows; an export "
                          "is a list of flat ticket records: re-export it") from None
    except json.JSONDecodeError as e:
        if e.msg.startswith("Extra data"):  # several JSON values: it is JSON Lines
            yield from _iter_jsonl(path, enc, extract, report, text=text)
            return
        raise IngestError(f"{path.name} is not valid JSON ({e.msg} at line {e.lineno}, column "
                          f"{e.colno}); re-export it or fix the file") from None
    records = extract.records(doc, path, report, strict=True)
    key = _RECORD_KEYS[fmt][0]
    for i, obj in enumerate(records):
        if too_deep(obj):
            yield i + 1, None, f"<record nested more than {MAX_DEPTH} levels deep>", (
                f"{key}[{i}]: nested more than {MAX_DEPTH} levels deep; a ticket is a flat record")
            continue
        try:
            yield i + 1, extract(obj), obj, None
        except _Malformed as e:
            yield i + 1, None, obj, f"{key}[{i}]: {e}"


_RECORD_KEYS: dict[str, tuple[str, ...]] = {
    "zendesk": ("tickets", "ticket", "results"),
    "intercom": ("conversations", "data"),
    "front": ("_results", "results"),
}


def _records_finder(fmt: str) -> Callable[..., list | None]:
    keys = _RECORD_KEYS[fmt]

    def records(doc: Any, path: Path, report: IngestReport, strict: bool) -> list | None:
        if isinstance(doc, list):
            return doc
        if isinstance(doc, dict):
            for k in keys:
                if k in doc:
                    recs = doc[k]
                    if isinstance(recs, dict):  # single object response, e.g. {"ticket": {}}
                        recs = [recs]
                    if not isinstance(recs, list):
                        raise IngestError(f"{path.name}: '{k}' should be a list of records, got "
                                          f"{type(recs).__name__}")
                    _pagination_warning(fmt, doc, path, report)
                    return recs
        if not strict:
            return None
        found = sorted(doc) if isinstance(doc, dict) else type(doc).__name__
        raise IngestError(f"{path.name} does not look like a {fmt} export: expected a list or "
                          f"an object with '{keys[0]}', found {found}. Check the format "
                          "argument.")

    return records


def _pagination_warning(fmt: str, doc: dict, path: Path, report: IngestReport) -> None:
    more = None
    if fmt == "zendesk":
        if doc.get("next_page"):
            more = f"next_page={doc['next_page']}"
        elif doc.get("end_of_stream") is False:
            more = f"end_of_stream=false, after_cursor={doc.get('after_cursor')}"
    elif fmt == "intercom":
        nxt = (doc.get("pages") or {}).get("next") if isinstance(doc.get("pages"), dict) else None
        if nxt:
            more = f"pages.next={nxt}"
    elif fmt == "front":
        nxt = (doc.get("_pagination") or {}).get("next") \
            if isinstance(doc.get("_pagination"), dict) else None
        if nxt:
            more = f"_pagination.next={nxt}"
    if more:
        msg = (f"{path.name}: this is one page of a paginated {fmt} export ({more}); fetch the "
               "remaining pages and ingest the directory holding all of them")
        if msg not in report.warnings:
            report.warnings.append(msg)


def _with_overrides(base: Callable[[dict], dict], mapping: dict | None,
                    builder: "_Builder") -> Callable[[Any], dict]:
    overrides = [(k, [_getter(c) for c in ([v] if isinstance(v, str) else v)])
                 for k, v in (mapping or {}).items()]
    if overrides and builder.track_fields is None:
        builder.track_fields = {k: 0 for k, _ in overrides}

    def extract(obj: Any) -> dict:
        if not isinstance(obj, dict):
            raise _Malformed(f"expected a ticket object, got {type(obj).__name__}: "
                             f"{str(obj)[:80]!r}")
        values = base(obj)
        for k, gs in overrides:
            values[k] = gs[0](obj) if len(gs) == 1 else [g(obj) for g in gs]
        return values

    return extract


def zendesk_tags(v: Any) -> list[str]:
    """Zendesk tags as a list: the API gives a list, a trigger's ``{{ticket.tags}}`` placeholder
    one string of space-separated tags (a Zendesk tag holds no spaces)."""
    return _tags(v.split() if isinstance(v, str) else v) if v else []


def zendesk_ticket(obj: Mapping[str, Any], *, source: str = "zendesk",
                   max_body_bytes: int = 1_000_000) -> Ticket:
    """One Zendesk ticket object (export record, API response or webhook detail) -> ``Ticket``,
    with exactly the field map, tag splitting and priority -> urgency of the ``zendesk`` ingest
    format. Raises ``ValueError`` saying what is wrong when it is not a usable ticket (no id,
    neither subject nor description, an unreadable ``created_at``)."""
    builder = _Builder("zendesk", None, None, max_body_bytes, vendor_urgency=ZENDESK_PRIORITY,
                       body_fields=BODY_FIELDS["zendesk"])
    item = builder.build(source, source, 1, _zendesk(dict(obj)), None)
    if not isinstance(item, Ticket):
        raise ValueError(f"zendesk ticket: {item.detail} ({item.reason})")
    return item


def _zendesk(obj: dict) -> dict:
    via = obj.get("via")
    return {
        "id": obj.get("id"),
        "created_at": obj.get("created_at"),
        "subject": obj.get("subject") or obj.get("raw_subject"),
        "body": obj.get("description"),
        # split only: the builder reads the tags (and rejects a nameless tag object, invalid_field)
        "tags": obj["tags"].split() if isinstance(obj.get("tags"), str) else obj.get("tags"),
        "urgency": obj.get("priority"),
        "channel": via.get("channel") if isinstance(via, dict) else via,
        "requester": obj.get("requester_id"),
    }


def _intercom(obj: dict) -> dict:
    src = obj.get("source") if isinstance(obj.get("source"), dict) else {}
    tags = obj.get("tags")
    if isinstance(tags, dict):
        tags = tags.get("tags")
    channel = src.get("type") or src.get("delivered_as")
    if isinstance(channel, str):
        channel = INTERCOM_CHANNEL.get(channel, channel)
    author = src.get("author") if isinstance(src.get("author"), dict) else {}
    requester = author.get("id") if author.get("type") in ("user", "lead", "contact") else None
    if requester is None:
        contacts = obj.get("contacts")
        if isinstance(contacts, dict):
            contacts = contacts.get("contacts")
        if isinstance(contacts, list) and contacts and isinstance(contacts[0], dict):
            requester = contacts[0].get("id")
    return {
        "id": obj.get("id"),
        "created_at": obj.get("created_at"),
        "subject": src.get("subject") or obj.get("title"),
        "body": src.get("body"),
        "tags": tags,
        "urgency": obj.get("priority"),
        "channel": channel,
        "requester": requester,
    }


def _front(obj: dict) -> dict:
    last = obj.get("last_message") if isinstance(obj.get("last_message"), dict) else {}
    recipient = obj.get("recipient") if isinstance(obj.get("recipient"), dict) else {}
    channel = last.get("type")
    handle = recipient.get("handle")
    if not channel and isinstance(handle, str):
        channel = "email" if "@" in handle else (
            "sms" if handle.lstrip("+").replace(" ", "").isdigit() else None)
    contact = _getter("_links.related.contact")(recipient)
    requester = contact.rstrip("/").rsplit("/", 1)[-1] if isinstance(contact, str) else None
    return {
        "id": obj.get("id"),
        "created_at": obj.get("created_at"),
        "subject": obj.get("subject") or last.get("subject"),
        "body": last.get("body") or last.get("blurb") or obj.get("blurb"),
        "tags": obj.get("tags"),
        "urgency": None,
        "channel": channel,
        "requester": requester,
    }


def _make_export_extractor(fmt: str, base: Callable[[dict], dict]) -> Callable[..., Any]:
    def factory(mapping: dict | None, builder: "_Builder") -> Callable[[Any], dict]:
        extract = _with_overrides(base, mapping, builder)
        extract.records = _records_finder(fmt)  # type: ignore[attr-defined]
        return extract

    return factory


_EXPORT_EXTRACTORS = {
    "zendesk": _make_export_extractor("zendesk", _zendesk),
    "intercom": _make_export_extractor("intercom", _intercom),
    "front": _make_export_extractor("front", _front),
}
BODY_FIELDS = {  # where each format's subject/body come from (reject messages)
    "csv": "the mapped body/subject columns",
    "parquet": "the mapped body/subject columns",
    "jsonl": "the mapped body/subject keys",
    "zendesk": "'description', 'subject' and 'raw_subject'",
    "intercom": "'source.body', 'source.subject' and 'title'",
    "front": "'last_message.body', 'last_message.blurb' and 'subject'",
}
