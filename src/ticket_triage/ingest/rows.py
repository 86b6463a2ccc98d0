"""Row builder: canonical source values -> :class:`~ticket_triage.schema.Ticket` or :class:`Rejected`.

Owns the ingest records (``IngestError``, ``Rejected``, ``IngestReport``), the canonical field
and reject-reason names, and the value coercions (ids, text, tags, dates, urgency) shared by
every reader and by the helpdesk adapters.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

from ticket_triage.schema import URGENCIES, Ticket

FIELDS: tuple[str, ...] = (
    "id", "subject", "body", "created_at", "tags", "topic", "urgency", "language", "channel",
    "requester",
)
REASONS: tuple[str, ...] = (
    "malformed_row", "missing_id", "missing_body", "body_too_large", "unparsable_date",
    "duplicate_id", "invalid_field", "nul_byte", "implausible_date",
)
# created_at outside this range is a unit or sign mistake (epoch -1e12 would read as 1938)
DATE_MIN = datetime(1990, 1, 1, tzinfo=timezone.utc)
DATE_MAX_AHEAD = timedelta(days=2)
RAW_MAX_CHARS = 2000


_INF = float("inf")
_TAG_SPLIT = re.compile(r"[,;|]")
_NUMBER = re.compile(r"[+-]?\d+(\.\d*)?")


class IngestError(ValueError):
    """The export cannot be read as a whole (encoding, header, format); the message says why
    and what to do next. Row-level problems are never raised: they become ``Rejected``."""


@dataclass
class Rejected:
    """One source row that did not become a ticket.

    ``position`` is 1-based: the data row for CSV (header excluded; a quoted multi-line field
    counts once), the line for JSONL, the record index for JSON exports and Parquet.
    ``reason`` is one of :data:`REASONS`; ``raw`` is the original row (dict or str),
    truncated to 2,000 characters.
    """

    source: str
    position: int
    reason: str
    detail: str
    raw: Any = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class IngestReport:
    """Counts and notes for one ingest run; ``rows_in == tickets_out + rejected``."""

    rows_in: int = 0
    tickets_out: int = 0
    rejected: int = 0
    rejected_by_reason: dict[str, int] = field(default_factory=dict)
    format: str = ""
    source: str = ""
    encoding: str | None = None
    warnings: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Malformed(Exception):
    """A record that is not a ticket object at all."""


def _getter(path: str) -> Callable[[Any], Any]:
    parts = path.split(".")
    if len(parts) == 1:
        return lambda o: o.get(path) if isinstance(o, dict) else None

    def get(o: Any) -> Any:
        for p in parts:
            if not isinstance(o, dict):
                return None
            o = o.get(p)
        return o

    return get


# --------------------------------------------------------------------------- values -> Ticket


class _Builder:
    """Validates canonical values and builds Tickets; remembers accepted ids."""

    def __init__(self, fmt: str, defaults: Mapping[str, Any] | None,
                 urgency_map: Mapping[str, Any] | None, max_body_bytes: int, *,
                 vendor_urgency: Mapping[str, Any] | None = None,
                 body_fields: str = "the mapped body/subject columns") -> None:
        """``vendor_urgency`` is the export's own priority -> urgency map (the data config's
        ``urgency_map`` overrides it); ``body_fields`` names where subject/body were read from,
        for the reject message."""
        self.fmt = fmt
        self.defaults = {k: v for k, v in (_plain(defaults) or {}).items() if v not in (None, "")}
        bad = sorted(set(self.defaults) - set(FIELDS))
        if bad:
            raise IngestError(f"defaults has unknown field(s) {bad}; allowed: {', '.join(FIELDS)}")
        umap: dict[str, Any] = dict(vendor_urgency or {})
        for k, v in (_plain(urgency_map) or {}).items():
            if v is not None and str(v) not in URGENCIES:
                raise IngestError(f"urgency_map[{k!r}] = {v!r} is not one of "
                                  f"{', '.join(URGENCIES)}; fix the data config's urgency_map")
            umap[str(k)] = v
        self.umap = {**{k.strip().lower(): v for k, v in umap.items()}, **umap}
        self.max_body_bytes = int(max_body_bytes)
        self._quarter_limit = self.max_body_bytes // 4  # below: under the limit in any UTF-8
        self.seen: dict[str, tuple[str, int]] = {}
        self.unknown_urgency: Counter[str] = Counter()
        self.track_fields: dict[str, int] | None = None
        self.generate_ids = False
        self.n_built = 0
        self.body_fields = body_fields
        d = self.defaults
        self._d_topic, self._d_urgency = d.get("topic"), d.get("urgency")
        self._d_language, self._d_channel = d.get("language"), d.get("channel")
        self._d_requester = d.get("requester")

    def build(self, src: str, tsource: str, position: int, v: dict,
              raw: Any) -> Ticket | Rejected:
        self.n_built += 1
        if self.track_fields is not None:
            for k in self.track_fields:
                x = v.get(k)
                if x is not None and x != [] and not (isinstance(x, list) and
                                                       all(i is None for i in x)):
                    self.track_fields[k] += 1
        rid = v.get("id")
        if self.generate_ids and rid in (None, ""):
            rid = f"{Path(src).name}:{position}"
        if rid is None or isinstance(rid, (dict, list, bool)):
            return _reject(src, position, "missing_id",
                           "no ticket id" if rid is None else f"id is not a scalar: {rid!r}"[:200],
                           raw)
        rid = rid.strip() if type(rid) is str else str(rid)
        if not rid:
            return _reject(src, position, "missing_id", "the id field is empty", raw)
        for name in ("subject", "body", "topic", "language", "channel", "requester", "urgency"):
            x = v.get(name)
            if isinstance(x, (dict, list, tuple)):
                return _reject(src, position, "invalid_field",
                               f"ticket {rid}: {name} is a JSON {'object' if isinstance(x, dict) else 'list'}"
                               f", expected text; map {name} to a text field", raw)
            if type(x) is str and "\x00" in x:
                return _reject(src, position, "nul_byte",
                               f"ticket {rid}: {name} contains a NUL byte (binary data in a text "
                               "field); fix the export row", raw)
        subject = _text(v.get("subject"))
        body = _text(v.get("body"))
        if (not body or body.isspace()) and (not subject or subject.isspace()):
            return _reject(src, position, "missing_body",
                           f"ticket {rid}: subject and body are both empty "
                           f"(read from {self.body_fields})", raw)
        quarter = self._quarter_limit
        if len(body) > quarter or len(subject) > quarter:
            limit = self.max_body_bytes
            for name, s in (("body", body), ("subject", subject)):
                size = len(s.encode("utf-8", "surrogatepass")) if len(s) > quarter else 0
                if size > limit:
                    return _reject(src, position, "body_too_large",
                                   f"ticket {rid}: {name} is {size:,} bytes, over "
                                   f"max_body_bytes={limit:,}; raise max_body_bytes or trim "
                                   "the export", raw)
        ca = v.get("created_at")
        if ca is not None and not (type(ca) is str and not ca.strip()):
            try:
                created = _parse_date(ca)
            except ValueError:
                return _reject(src, position, "unparsable_date",
                               f"ticket {rid}: created_at {str(ca)[:80]!r} is not ISO 8601, "
                               "'YYYY-MM-DD HH:MM:SS', epoch seconds or RFC 2822", raw)
            if not DATE_MIN <= created <= datetime.now(timezone.utc) + DATE_MAX_AHEAD:
                return _reject(src, position, "implausible_date",
                               f"ticket {rid}: created_at {str(ca)[:80]!r} is {created.isoformat()}, "
                               f"outside {DATE_MIN.date()} .. now: a unit or sign mistake? (epoch "
                               "seconds or milliseconds since 1970)", raw)
        else:
            created = None
        try:
            tags = _tags(v.get("tags")) if v.get("tags") else []
        except ValueError as e:
            return _reject(src, position, "invalid_field", f"ticket {rid}: {e}", raw)
        first = self.seen.get(rid)
        if first is not None:
            return _reject(src, position, "duplicate_id",
                           f"id {rid!r} already used by {Path(first[0]).name} position "
                           f"{first[1]}; the first occurrence is kept", raw)
        self.seen[rid] = (src, position)
        urgency = v.get("urgency")
        return Ticket(
            id=rid,
            subject=subject,
            body=body,
            created_at=created,
            tags=tags,
            topic=_opt(v.get("topic")) or self._d_topic,
            urgency=self._urgency(urgency) if urgency not in (None, "") else self._d_urgency,
            language=_opt(v.get("language")) or self._d_language,
            channel=_opt(v.get("channel")) or self._d_channel,
            requester=_opt(v.get("requester")) or self._d_requester,
            source=tsource,
        )

    def _urgency(self, value: Any) -> str | None:
        key = str(value).strip()
        umap = self.umap
        if key in umap:
            return umap[key]
        low = key.lower()
        if low in umap:
            return umap[low]
        up = key.upper()
        if up in URGENCIES:
            return up
        self.unknown_urgency[key] += 1
        return self._d_urgency

    def finish_warnings(self) -> list[str]:
        out = []
        if self.unknown_urgency:
            top = dict(self.unknown_urgency.most_common(10))
            out.append(f"urgency: {sum(self.unknown_urgency.values())} row(s) had values that "
                       f"are not P0..P3 and not in urgency_map ({top}); urgency left empty. "
                       "Add them to the data config's urgency_map.")
        if self.generate_ids:
            out.append("the mapping has no id key; generated stable ids '<file name>:<line>'")
        for k, n in (self.track_fields or {}).items():
            if n == 0 and self.n_built:
                out.append(f"mapping.{k}: no record had a value at that key/path; check the "
                           "mapping")
        return out


def _reject(src: str, position: int, reason: str, detail: str, raw: Any) -> Rejected:
    return Rejected(source=src, position=position, reason=reason, detail=detail,
                    raw=_truncate_raw(raw))


def _truncate_raw(raw: Any) -> Any:
    if isinstance(raw, tuple) and len(raw) == 2:  # (header, row) from the CSV reader
        raw = dict(zip(raw[0], raw[1]))
    if isinstance(raw, str):
        return raw if len(raw) <= RAW_MAX_CHARS else \
            raw[:RAW_MAX_CHARS] + f"...[truncated {len(raw) - RAW_MAX_CHARS} chars]"
    if isinstance(raw, dict):
        try:
            size = len(json.dumps(raw, ensure_ascii=False, default=str))
        except (TypeError, ValueError):
            size = RAW_MAX_CHARS + 1
        if size <= RAW_MAX_CHARS:
            return raw
        budget = RAW_MAX_CHARS
        out: dict[str, Any] = {}
        for k, val in raw.items():
            s = val if isinstance(val, str) else json.dumps(val, ensure_ascii=False, default=str)
            take = max(min(len(s), budget), 0)
            out[str(k)] = s if take == len(s) and isinstance(val, str) else (
                s[:take] + (f"...[truncated {len(s) - take} chars]" if take < len(s) else ""))
            budget -= take
        return out
    s = json.dumps(raw, ensure_ascii=False, default=str) if raw is not None else None
    return _truncate_raw(s) if s is not None else None


def _text(v: Any) -> str:
    if v is None or (type(v) is float and (v != v or v in (_INF, -_INF))):
        return ""  # NaN / Infinity (pandas, some JSON writers) is a missing value, not "nan"
    s = v if type(v) is str else str(v)
    return s[1:] if s[:1] == "\ufeff" else s


def _opt(v: Any) -> str | None:
    if v is None or (type(v) is float and (v != v or v in (_INF, -_INF))):
        return None
    s = (v if type(v) is str else str(v)).strip()
    return s or None


def _tags(v: Any) -> list[str]:
    """Tags from a string ('a, b;c|d'), a list of strings / {"name": ...} objects, or a list
    of columns; trimmed, empty ones dropped, order kept, duplicates removed."""
    out: dict[str, None] = {}
    for it in (v if type(v) is list else (v,)):
        if type(it) is not str:
            _add_tags(it, out)
        elif "," in it or ";" in it or "|" in it:
            for part in _TAG_SPLIT.split(it):
                part = part.strip()
                if part:
                    out[part] = None
        else:
            it = it.strip()
            if it:
                out[it] = None
    return list(out)


def _add_tags(v: Any, out: dict[str, None]) -> None:
    if v is None:
        return
    if isinstance(v, (list, tuple)):
        for it in v:
            _add_tags(it, out)
        return
    if isinstance(v, dict):
        name = next((v[k] for k in ("name", "label", "tag", "title") if isinstance(v.get(k), str)), None)
        if name is None:
            raise ValueError(f"tag object {json.dumps(v, default=str)[:120]} has no name/label/tag/"
                             "title text; tags are strings or {\"name\": ...} objects")
        _add_tags(name, out)
        return
    if type(v) is float and (v != v or v in (_INF, -_INF)):
        return
    s = v if type(v) is str else str(v)
    if "," in s or ";" in s or "|" in s:
        for part in _TAG_SPLIT.split(s):
            part = part.strip()
            if part:
                out[part] = None
    else:
        s = s.strip()
        if s:
            out[s] = None


def _parse_date(v: Any) -> datetime:
    """ISO 8601 (Z or offset), 'YYYY-MM-DD HH:MM:SS' (UTC), epoch seconds (milliseconds when
    > 1e11) or RFC 2822 -> timezone-aware datetime. Raises ValueError otherwise."""
    if type(v) is str:
        s = v.strip()
        try:
            dt = datetime.fromisoformat(s)  # also takes 'YYYYMMDD'
        except ValueError:
            if _NUMBER.fullmatch(s):
                return _epoch(float(s))
            try:
                dt = parsedate_to_datetime(s)
            except (TypeError, ValueError, IndexError):
                raise ValueError(f"unparsable date {s!r}") from None
        return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)
    if isinstance(v, datetime):
        return v if v.tzinfo else v.replace(tzinfo=timezone.utc)
    if isinstance(v, bool):
        raise ValueError("boolean is not a date")
    if isinstance(v, (int, float)):
        return _epoch(v)
    return _parse_date(str(v))


def _epoch(x: float) -> datetime:
    if x != x:  # NaN
        raise ValueError("NaN is not a date")
    if abs(x) > 1e11:
        x = x / 1000.0
    try:
        return datetime.fromtimestamp(x, tz=timezone.utc)
    except (OverflowError, OSError, ValueError):
        raise ValueError(f"epoch {x} out of range") from None


def _plain(obj: Any) -> Any:
    """OmegaConf containers / mappings / sequences -> plain dicts and lists."""
    if obj is None or isinstance(obj, (str, bytes, int, float, bool)):
        return obj
    if isinstance(obj, Mapping) or hasattr(obj, "items") and hasattr(obj, "keys"):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)) or (hasattr(obj, "__iter__") and hasattr(obj, "__len__")):
        return [_plain(v) for v in obj]
    return obj
