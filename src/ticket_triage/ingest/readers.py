"""Export readers: every helpdesk export into canonical :class:`~ticket_triage.schema.Ticket`s.

Formats: ``csv``, ``jsonl``, ``parquet`` (column mapping from ``conf/data/*.yaml``) and the
helpdesk exports ``zendesk``, ``intercom`` and ``front`` (built-in field mapping; a ``mapping``
of canonical field -> dotted path overrides single fields). ``path`` is a file or a directory
of files of that format.

Nothing is dropped silently: every source row becomes either a ``Ticket`` or a ``Rejected``
(source file, 1-based position, machine reason, human detail, raw row), and the
``IngestReport`` keeps ``rows_in == tickets_out + rejected``. Problems that make the whole
file unusable (undecodable bytes, a mapped column missing from the header, an unknown
format) raise :class:`IngestError` with what to do next.

Text is kept raw (only a leading BOM is stripped): cleaning and redaction belong to the
clean stage (``ticket_triage.text.clean``). The readers stream (csv / json modules, pyarrow
batches), so ``ingest`` writes its outputs without holding the export in memory.
"""

from __future__ import annotations

import codecs
import csv
import difflib
import json
import re
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator, Mapping
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

from ticket_triage.schema import URGENCIES, Ticket

FORMATS: tuple[str, ...] = ("csv", "jsonl", "parquet", "zendesk", "intercom", "front")
FIELDS: tuple[str, ...] = (
    "id", "subject", "body", "created_at", "tags", "topic", "urgency", "language", "channel",
    "requester",
)
REASONS: tuple[str, ...] = (
    "malformed_row", "missing_id", "missing_body", "body_too_large", "unparsable_date",
    "duplicate_id",
)
RAW_MAX_CHARS = 2000

ZENDESK_PRIORITY: dict[str, str] = {"urgent": "P0", "high": "P1", "normal": "P2", "low": "P3"}
INTERCOM_PRIORITY: dict[str, str | None] = {"priority": "P1", "not_priority": None}
INTERCOM_CHANNEL: dict[str, str] = {"conversation": "chat"}

_EXTENSIONS: dict[str, tuple[str, ...]] = {
    "csv": (".csv",),
    "jsonl": (".jsonl", ".ndjson"),
    "parquet": (".parquet", ".pq"),
    "zendesk": (".json", ".jsonl", ".ndjson"),
    "intercom": (".json", ".jsonl", ".ndjson"),
    "front": (".json", ".jsonl", ".ndjson"),
}
_TAG_SPLIT = re.compile(r"[,;|]")
_NUMBER = re.compile(r"[+-]?\d+(\.\d*)?")
_MAGIC = {b"PAR1": "Parquet", b"\x1f\x8b": "gzip", b"PK\x03\x04": "zip", b"%PDF": "PDF"}
_CONTROL_BYTES = bytes(b for b in range(32) if b not in (9, 10, 12, 13)) + b"\x7f"
_CP1252_UNDEFINED = b"\x81\x8d\x8f\x90\x9d"


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


# --------------------------------------------------------------------------- public API


def read_tickets(
    path: str | Path,
    fmt: str,
    mapping: Mapping[str, Any] | None = None,
    *,
    defaults: Mapping[str, Any] | None = None,
    urgency_map: Mapping[str, Any] | None = None,
    max_body_bytes: int = 1_000_000,
    encoding: str | None = None,
) -> tuple[list[Ticket], list[Rejected], IngestReport]:
    """Read an export into tickets, rejected rows and a report.

    ``mapping``: canonical field -> source column (CSV/Parquet), key or dotted path
    (JSONL/Zendesk/Intercom/Front); for ``tags`` a column or a list of columns. ``None`` means
    the source already uses canonical names (or, for helpdesk formats, the built-in mapping).
    ``defaults``: constant values for fields the source leaves empty (``channel``,
    ``language``, ...). ``urgency_map``: source value -> P0..P3 (case-insensitive).
    ``encoding`` overrides detection (UTF-8, UTF-8 with BOM, cp1252/Latin-1 fallback).
    """
    tickets: list[Ticket] = []
    rejected: list[Rejected] = []
    report = IngestReport()
    for item in _iter_results(path, fmt, mapping, defaults, urgency_map, max_body_bytes,
                              encoding, report):
        (tickets if type(item) is Ticket else rejected).append(item)
    return tickets, rejected, report


def ingest(
    path: str | Path,
    fmt: str,
    mapping: Mapping[str, Any] | None = None,
    out_dir: str | Path = "artifacts/ingest",
    **kw: Any,
) -> IngestReport:
    """Stream an export into ``out_dir/tickets.jsonl`` (``Ticket.to_dict`` per line),
    ``out_dir/rejected.jsonl`` and ``out_dir/report.json``; returns the report.

    ``kw`` are :func:`read_tickets`' keyword arguments.
    """
    allowed = {"defaults", "urgency_map", "max_body_bytes", "encoding"}
    unknown = sorted(set(kw) - allowed)
    if unknown:
        raise IngestError(f"ingest() got unknown option(s) {unknown}; allowed: {sorted(allowed)}")
    report = IngestReport()
    items = _iter_results(path, fmt, mapping, kw.get("defaults"), kw.get("urgency_map"),
                          kw.get("max_body_bytes", 1_000_000), kw.get("encoding"), report)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    names = ("tickets.jsonl", "rejected.jsonl", "report.json")
    tmp = [out / f".{n}.partial" for n in names]
    dumps = json.dumps
    try:
        # backslashreplace keeps lone surrogates from JSON sources as valid \uXXXX escapes
        with open(tmp[0], "w", encoding="utf-8", errors="backslashreplace") as ft, \
                open(tmp[1], "w", encoding="utf-8", errors="backslashreplace") as fr:
            for item in items:
                if type(item) is Ticket:
                    ft.write(dumps(_ticket_dict(item), ensure_ascii=False))
                    ft.write("\n")
                else:
                    fr.write(dumps(item.to_dict(), ensure_ascii=False, default=str))
                    fr.write("\n")
        tmp[2].write_text(json.dumps(report.to_dict(), indent=2, ensure_ascii=False) + "\n",
                          encoding="utf-8")
        for t, n in zip(tmp, names):  # outputs appear together, only when complete
            t.replace(out / n)
    finally:
        for t in tmp:
            t.unlink(missing_ok=True)
    return report


_TICKET_FIELDS = tuple(Ticket.__dataclass_fields__)


def _ticket_dict(t: Ticket) -> dict[str, Any]:
    """Same dict as ``Ticket.to_dict()`` (tested), without ``asdict``'s deep copy (10x
    faster; the ticket's fields are flat)."""
    d = {f: getattr(t, f) for f in _TICKET_FIELDS}
    d["tags"] = list(t.tags)
    ca = t.created_at
    d["created_at"] = ca.isoformat() if ca else None
    return d


def data_config_kwargs(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Turn a ``conf/data/*.yaml`` section into ``read_tickets`` / ``ingest`` arguments:
    ``{"path", "fmt", "mapping", "defaults", "urgency_map"}`` (plain dicts/lists)."""
    c = _plain(cfg)
    if "path" not in c:
        raise IngestError(f"data config has no 'path' (keys: {sorted(c)}); add path: <export>")
    defaults = {k: c[k] for k in ("channel", "language", "topic", "urgency") if c.get(k)}
    return {
        "path": c["path"],
        "fmt": c.get("format", "csv"),
        "mapping": c.get("mapping") or None,
        "defaults": defaults or None,
        "urgency_map": c.get("urgency_map") or None,
    }


# --------------------------------------------------------------------------- orchestration


def _iter_results(path, fmt, mapping, defaults, urgency_map, max_body_bytes, encoding,
                  report: IngestReport) -> Iterator[Ticket | Rejected]:
    """Check the arguments now (IngestError before any output is opened), then return an
    iterator yielding a Ticket or Rejected per source row and filling ``report``."""
    t0 = time.perf_counter()
    if fmt not in FORMATS:
        raise IngestError(f"unknown export format {fmt!r}; use one of {', '.join(FORMATS)}")
    if encoding is not None:
        try:
            codecs.lookup(encoding)
        except LookupError:
            raise IngestError(f"unknown encoding {encoding!r}; use a Python codec name such as "
                              "'utf-8', 'cp1252' or 'utf-16'") from None
    mapping = _check_mapping(mapping)
    files = _list_files(Path(path), fmt)
    report.format, report.source = fmt, str(path)
    report.files = [str(f) for f in files]
    builder = _Builder(fmt, defaults, urgency_map, max_body_bytes)
    return _results(files, fmt, mapping, encoding, builder, report, t0)


def _results(files: list[Path], fmt: str, mapping: dict | None, encoding: str | None,
             builder: "_Builder", report: IngestReport, t0: float
             ) -> Iterator[Ticket | Rejected]:
    encodings: list[str] = []
    reasons: Counter[str] = Counter()
    for file in files:
        if fmt == "parquet":
            rows = _iter_parquet(file, mapping, report)
            encodings.append("parquet")
        else:
            enc, warning = _detect_encoding(file, encoding)
            encodings.append(enc)
            if warning:
                report.warnings.append(warning)
            if fmt == "csv":
                rows = _iter_csv(file, mapping, enc, report)
            elif fmt == "jsonl":
                rows = _iter_jsonl(file, enc, _generic_extractor(mapping, builder), report)
            else:
                rows = _iter_json_export(file, fmt, enc, mapping, builder, report)
        src = str(file)
        tsource = f"{fmt}:{file.name}"
        for position, values, raw, problem in _decode_guard(rows, file, encodings[-1]):
            report.rows_in += 1
            if problem is not None:
                item: Ticket | Rejected = _reject(src, position, "malformed_row", problem, raw)
            else:
                item = builder.build(src, tsource, position, values, raw)
            if type(item) is Ticket:
                report.tickets_out += 1
            else:
                report.rejected += 1
                reasons[item.reason] += 1
            yield item
    report.rejected_by_reason = dict(reasons.most_common())
    uniq = list(dict.fromkeys(encodings))
    report.encoding = uniq[0] if len(uniq) == 1 else ",".join(uniq)
    report.warnings.extend(builder.finish_warnings())
    report.seconds = round(time.perf_counter() - t0, 4)
    if report.rows_in != report.tickets_out + report.rejected:  # pragma: no cover - invariant
        raise RuntimeError(f"ingest lost rows: {report.to_dict()}")


def _decode_guard(rows: Iterator, file: Path, enc: str) -> Iterator:
    """Turn a decode failure half-way through a file (a wrong ``encoding=``) into an
    IngestError that says what to do."""
    try:
        yield from rows
    except UnicodeError as e:
        raise IngestError(f"{file.name}: cannot decode as {enc} ({e}); pass the file's real "
                          f"encoding as encoding=..., or leave encoding unset to detect it, or "
                          f"convert it: `iconv -f ENCODING -t utf-8 {file.name}`") from None


def _check_mapping(mapping: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if mapping is None:
        return None
    m = _plain(mapping)
    if not isinstance(m, dict):
        raise IngestError(f"mapping must be a dict of canonical field -> source column, "
                          f"got {type(mapping).__name__}")
    for key, col in m.items():
        if key not in FIELDS:
            hint = _suggest(str(key), FIELDS)
            raise IngestError(
                f"mapping key {key!r} is not a Ticket field"
                + (f" (did you mean {hint!r}?)" if hint else "")
                + f"; allowed keys: {', '.join(FIELDS)}")
        ok = isinstance(col, str) and col or (
            key == "tags" and isinstance(col, list) and col
            and all(isinstance(c, str) and c for c in col))
        if not ok:
            raise IngestError(f"mapping.{key} must be a column name"
                              + (" or a list of column names" if key == "tags" else "")
                              + f", got {col!r}")
    return m


def _suggest(name: str, options: list[str] | tuple[str, ...]) -> str | None:
    """The option the user most likely meant: same name ignoring case, then a name that
    contains it (or is contained in it), then the closest spelling."""
    low = name.lower()
    for opt in options:
        if opt.lower() == low:
            return opt
    for opt in options:
        if low and (low in opt.lower() or opt.lower() in low) and opt:
            return opt
    close = difflib.get_close_matches(name, list(options), n=1)
    return close[0] if close else None


def _list_files(path: Path, fmt: str) -> list[Path]:
    if path.is_file():
        return [path]
    if path.is_dir():
        exts = _EXTENSIONS[fmt]
        files = sorted(p for p in path.iterdir()
                       if p.is_file() and not p.name.startswith(".")
                       and p.name.lower().endswith(exts))
        if not files:
            found = sorted(p.name for p in path.iterdir())[:10]
            raise IngestError(f"directory {path} has no {fmt} files (looked for "
                              f"{', '.join(exts)}; found {found or 'nothing'})")
        return files
    raise IngestError(f"export not found: {path} (no such file or directory); check the data "
                      "config's path, which is relative to the repository root")


# --------------------------------------------------------------------------- encodings


def _detect_encoding(path: Path, declared: str | None = None) -> tuple[str, str | None]:
    """Return (encoding, warning or None). UTF-8 (BOM stripped) first, then cp1252/Latin-1
    when the bytes look like Latin-1 text; anything else raises IngestError."""
    name = path.name
    with open(path, "rb") as f:
        head = f.read(65536)
    if declared is not None:
        if codecs.lookup(declared).name == "utf-8" and head.startswith(codecs.BOM_UTF8):
            return "utf-8-sig", None
        return declared, None
    how = (f"Convert it with `iconv -f <ENCODING> -t utf-8 {name} > {path.stem}.utf8"
           f"{path.suffix}` or pass encoding='<ENCODING>'.")
    for bom, enc in ((codecs.BOM_UTF32_LE, "UTF-32LE"), (codecs.BOM_UTF32_BE, "UTF-32BE"),
                     (codecs.BOM_UTF16_LE, "UTF-16LE"), (codecs.BOM_UTF16_BE, "UTF-16BE")):
        if head.startswith(bom):
            raise IngestError(
                f"{name} is {enc} (byte-order mark {bom.hex(' ')}), not UTF-8; tried utf-8. "
                + how.replace("<ENCODING>", enc.replace("LE", "").replace("BE", "")
                              if enc.startswith("UTF-16") else enc))
    for magic, kind in _MAGIC.items():
        if head.startswith(magic):
            raise IngestError(f"{name} is a {kind} file, not text; "
                              + ("read it with fmt='parquet'." if kind == "Parquet"
                                 else f"extract it first ({kind}) and ingest the text export."))
    if b"\x00" in head:
        even, odd = head[0::2].count(0), head[1::2].count(0)
        if max(even, odd) > 0.3 * (len(head) / 2):
            guess = "UTF-16LE" if odd > even else "UTF-16BE"
            raise IngestError(
                f"{name} looks like {guess} without a byte-order mark (every other byte is "
                f"NUL), not UTF-8; tried utf-8, and cp1252/latin-1 do not fit NUL bytes. "
                + how.replace("<ENCODING>", guess))
        raise IngestError(f"{name} contains NUL bytes: it is binary, not a text export; tried "
                          "utf-8 and cp1252/latin-1. Export the tickets as UTF-8 CSV/JSON.")
    enc = "utf-8-sig" if head.startswith(codecs.BOM_UTF8) else "utf-8"
    bad = _first_utf8_error(path)
    if bad is None:
        return enc, None
    offset, byte = bad
    stats = _byte_stats(path)
    total, high, control, undefined = stats
    if control == 0 and total and high / total <= 0.25:
        enc = "latin-1" if undefined else "cp1252"
        return enc, (f"{name}: not valid UTF-8 (byte 0x{byte:02x} at offset {offset}); read as "
                     f"{enc}. If accents look wrong, pass encoding=... or convert the file: "
                     f"`iconv -f {enc.upper()} -t utf-8 {name}`.")
    raise IngestError(
        f"{name} is not UTF-8 (byte 0x{byte:02x} at offset {offset}) and does not look like "
        f"cp1252/latin-1 text either ({control} control bytes, {high} of {total} bytes >= 0x80). "
        + f"Find its encoding (`file -i {name}`), then convert it with `iconv -f ENCODING -t "
        f"utf-8 {name} > {path.stem}.utf8{path.suffix}` or pass encoding='ENCODING'.")


def _first_utf8_error(path: Path) -> tuple[int, int] | None:
    """Offset and value of the first byte that is not valid UTF-8, or None."""
    dec = codecs.getincrementaldecoder("utf-8")("strict")
    pos = 0  # bytes fed to the decoder so far
    with open(path, "rb") as f:
        while True:
            chunk = f.read(1 << 20)
            pending = dec.getstate()[0]
            try:
                dec.decode(chunk, final=not chunk)
            except UnicodeDecodeError as e:
                data = pending + chunk
                return pos - len(pending) + e.start, data[e.start]
            if not chunk:
                return None
            pos += len(chunk)


def _byte_stats(path: Path) -> tuple[int, int, int, bool]:
    """(bytes, bytes >= 0x80, C0 control bytes, has cp1252-undefined bytes) of the file."""
    total = high = control = 0
    undefined = False
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            total += len(chunk)
            ascii_only = chunk.translate(None, bytes(range(128, 256)))
            high += len(chunk) - len(ascii_only)
            control += len(ascii_only) - len(ascii_only.translate(None, _CONTROL_BYTES))
            undefined = undefined or any(b in chunk for b in
                                         (bytes([c]) for c in _CP1252_UNDEFINED))
    return total, high, control, undefined


# --------------------------------------------------------------------------- readers
# Each reader yields (position, values | None, raw, problem | None); problem set means the row
# is malformed. ``values`` maps canonical fields to source values.


class _LineFeed:
    """Line iterator for csv.reader that remembers which physical lines made up a record and
    can push lines back, so a broken record only costs its first line."""

    __slots__ = ("_it", "_pending", "buf", "_next_no")

    def __init__(self, f: Any) -> None:
        self._it = iter(f)
        self._pending: deque[tuple[int, str]] = deque()
        self.buf: list[tuple[int, str]] = []
        self._next_no = 1

    def __iter__(self) -> "_LineFeed":
        return self

    def __next__(self) -> str:
        if self._pending:
            item = self._pending.popleft()
        else:
            item = (self._next_no, next(self._it))
            self._next_no += 1
        self.buf.append(item)
        return item[1]

    def recover(self) -> tuple[int, str, str]:
        """Drop the current record's first line and re-read the rest; returns (line_no, line,
        a note on the re-read lines for the reject detail)."""
        buf, self.buf = self.buf, []
        self._pending.extendleft(reversed(buf[1:]))
        if not buf:
            return self._next_no, "", ""
        note = (f"; lines {buf[1][0]}-{buf[-1][0]} that it swallowed are read again"
                if len(buf) > 1 else "")
        return buf[0][0], buf[0][1], note


def _iter_csv(path: Path, mapping: dict | None, enc: str, report: IngestReport) -> Iterator:
    old_limit = csv.field_size_limit()
    csv.field_size_limit(2**31 - 1)  # size limits are ours (max_body_bytes), not csv's
    try:
        with open(path, encoding=enc, newline="") as f:
            feed = _LineFeed(f)
            reader = csv.reader(feed, strict=True)
            try:
                header = next(reader)
            except StopIteration:
                raise IngestError(f"{path.name} is empty: expected a header row") from None
            except csv.Error as e:
                raise IngestError(f"{path.name}: cannot parse the header row ({e})") from None
            header = [h.strip() for h in header]
            if header:
                header[0] = header[0].lstrip("\ufeff")
            singles, tag_cols, gen_ids = _resolve_columns(path, header, mapping, report)
            width = len(header)
            row_no = blank = 0
            name = path.name
            while True:
                feed.buf.clear()
                try:
                    row = next(reader)
                except StopIteration:
                    break
                except csv.Error as e:
                    row_no += 1
                    line_no, line, note = feed.recover()
                    yield row_no, None, line, f"line {line_no}: {e} (unbalanced quote?){note}"
                    continue
                if len(row) != width:
                    if not row or (len(row) == 1 and not row[0].strip()):
                        blank += 1
                        continue
                    row_no += 1
                    line_no, line, note = feed.recover()
                    yield row_no, None, line, (f"line {line_no}: expected {width} fields (the "
                                               f"header's), got {len(row)}{note}")
                    continue
                row_no += 1
                values = {k: row[i] for k, i in singles}
                if tag_cols:
                    values["tags"] = [row[i] for i in tag_cols]
                if gen_ids:
                    values["id"] = f"{name}:{row_no}"
                yield row_no, values, (header, row), None
            if blank:
                report.warnings.append(f"{name}: skipped {blank} blank line(s)")
    finally:
        csv.field_size_limit(old_limit)


def _resolve_columns(path: Path, header: list[str], mapping: dict | None,
                     report: IngestReport) -> tuple[list[tuple[str, int]], list[int], bool]:
    index: dict[str, int] = {}
    for i, h in enumerate(header):
        if h in index:
            report.warnings.append(f"{path.name}: duplicate column {h!r}; the first one is used")
        index.setdefault(h, i)
    if mapping is None:
        mapping = {k: k for k in FIELDS if k in index}
        if "subject" not in mapping and "body" not in mapping:
            raise IngestError(
                f"{path.name}: no mapping given and the header has neither a 'body' nor a "
                f"'subject' column (columns: {', '.join(header)}). Pass mapping= (canonical "
                "field -> column), e.g. the data config's mapping: {body: text, tags: category}")
    singles: list[tuple[str, int]] = []
    tag_cols: list[int] = []
    gen_ids = False
    for key, cols in mapping.items():
        for col in [cols] if isinstance(cols, str) else cols:
            if col in index:
                if key == "tags":
                    tag_cols.append(index[col])
                else:
                    singles.append((key, index[col]))
                continue
            if key == "id":
                gen_ids = True
                report.warnings.append(
                    f"{path.name}: id column {col!r} (mapping.id) is not in the header; "
                    f"generated stable ids '<file name>:<row>' (e.g. {path.name}:1)")
                continue
            hint = _suggest(col, header)
            raise IngestError(
                f"{path.name}: column {col!r} (mapping.{key}) is not in the header"
                + (f"; did you mean {hint!r}?" if hint else ".")
                + f" Columns found: {', '.join(header)}. Fix mapping.{key} in the data config "
                "(conf/data/*.yaml) or the mapping argument.")
    if "id" not in mapping:
        gen_ids = True
        report.warnings.append(f"{path.name}: the mapping has no id column; generated stable "
                               f"ids '<file name>:<row>' (e.g. {path.name}:1)")
    return singles, tag_cols, gen_ids


def _iter_parquet(path: Path, mapping: dict | None, report: IngestReport) -> Iterator:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as e:  # pyarrow raises ArrowInvalid / OSError subclasses
        raise IngestError(f"{path.name} is not a readable Parquet file ({e}); check the format "
                          "argument (csv/jsonl/...) or re-export it") from None
    names = list(pf.schema_arrow.names)
    singles, tag_cols, gen_ids = _resolve_columns(path, names, mapping, report)
    cols = sorted({names[i] for _, i in singles} | {names[i] for i in tag_cols})
    single_names = [(k, names[i]) for k, i in singles]
    tag_names = [names[i] for i in tag_cols]
    pos = 0
    for batch in pf.iter_batches(batch_size=8192, columns=cols or None):
        for rec in batch.to_pylist():
            pos += 1
            values = {k: rec.get(c) for k, c in single_names}
            if tag_names:
                values["tags"] = [rec.get(c) for c in tag_names]
            if gen_ids:
                values["id"] = f"{path.name}:{pos}"
            yield pos, values, rec, None


def _iter_jsonl(path: Path, enc: str, extract: Callable[[Any], dict], report: IngestReport,
                text: str | None = None) -> Iterator:
    """Lines of JSON objects; ``extract`` turns one object into canonical values (raising
    _Malformed for a non-ticket object). A line holding a page (``{"tickets": [...]}``) is
    expanded by the extractor's ``records`` attribute when it has one."""
    records_of = getattr(extract, "records", None)
    ctx = open(path, encoding=enc, newline="") if text is None else nullcontext(None)
    with ctx as f:
        lines = f if text is None else text.split("\n")
        for line_no, line in enumerate(lines, 1):
            if line_no == 1:
                line = line.lstrip("\ufeff")
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError as e:
                yield line_no, None, line, f"line {line_no}: invalid JSON ({e})"
                continue
            objs = [obj]
            if records_of is not None and isinstance(obj, dict):
                recs = records_of(obj, path, report, strict=False)
                if recs is not None:
                    objs = recs
            for obj in objs:
                try:
                    yield line_no, extract(obj), obj, None
                except _Malformed as e:
                    yield line_no, None, obj, f"line {line_no}: {e}"


def _iter_json_export(path: Path, fmt: str, enc: str, mapping: dict | None,
                      builder: "_Builder", report: IngestReport) -> Iterator:
    extract = _EXPORT_EXTRACTORS[fmt](mapping, builder)
    if path.name.lower().endswith((".jsonl", ".ndjson")):
        yield from _iter_jsonl(path, enc, extract, report)
        return
    with open(path, encoding=enc, newline="") as f:
        text = f.read().lstrip("\ufeff")
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        if e.msg.startswith("Extra data"):  # several JSON values: it is JSON Lines
            yield from _iter_jsonl(path, enc, extract, report, text=text)
            return
        raise IngestError(f"{path.name} is not valid JSON ({e.msg} at line {e.lineno}, column "
                          f"{e.colno}); re-export it or fix the file") from None
    records = extract.records(doc, path, report, strict=True)
    key = _RECORD_KEYS[fmt][0]
    for i, obj in enumerate(records):
        try:
            yield i + 1, extract(obj), obj, None
        except _Malformed as e:
            yield i + 1, None, obj, f"{key}[{i}]: {e}"


# --------------------------------------------------------------------------- field extraction


class _Malformed(Exception):
    """A record that is not a ticket object at all."""


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


def _generic_extractor(mapping: dict | None, builder: "_Builder") -> Callable[[Any], dict]:
    """JSONL: canonical keys, or mapping field -> key / dotted path."""
    m = mapping or {k: k for k in FIELDS}
    getters = [(k, [_getter(c) for c in ([v] if isinstance(v, str) else v)]) for k, v in m.items()]
    if mapping and builder.track_fields is None:
        builder.track_fields = {k: 0 for k in m}
    if mapping and "id" not in mapping:
        builder.generate_ids = True

    def extract(obj: Any) -> dict:
        if not isinstance(obj, dict):
            raise _Malformed(f"expected a JSON object, got {type(obj).__name__}")
        values: dict[str, Any] = {}
        for k, gs in getters:
            if len(gs) == 1:
                v = gs[0](obj)
            else:
                v = [g(obj) for g in gs]
            values[k] = v
        return values

    return extract


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


def _zendesk(obj: dict) -> dict:
    via = obj.get("via")
    return {
        "id": obj.get("id"),
        "created_at": obj.get("created_at"),
        "subject": obj.get("subject") or obj.get("raw_subject"),
        "body": obj.get("description"),
        "tags": obj.get("tags"),
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
_BODY_FIELDS = {
    "csv": "the mapped body/subject columns",
    "parquet": "the mapped body/subject columns",
    "jsonl": "the mapped body/subject keys",
    "zendesk": "'description', 'subject' and 'raw_subject'",
    "intercom": "'source.body', 'source.subject' and 'title'",
    "front": "'last_message.body', 'last_message.blurb' and 'subject'",
}


# --------------------------------------------------------------------------- values -> Ticket


class _Builder:
    """Validates canonical values and builds Tickets; remembers accepted ids."""

    def __init__(self, fmt: str, defaults: Mapping[str, Any] | None,
                 urgency_map: Mapping[str, Any] | None, max_body_bytes: int) -> None:
        self.fmt = fmt
        self.defaults = {k: v for k, v in (_plain(defaults) or {}).items() if v not in (None, "")}
        bad = sorted(set(self.defaults) - set(FIELDS))
        if bad:
            raise IngestError(f"defaults has unknown field(s) {bad}; allowed: {', '.join(FIELDS)}")
        umap: dict[str, Any] = {}
        if fmt == "zendesk":
            umap.update(ZENDESK_PRIORITY)
        elif fmt == "intercom":
            umap.update(INTERCOM_PRIORITY)
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
        self.body_fields = _BODY_FIELDS[fmt]
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
        else:
            created = None
        first = self.seen.get(rid)
        if first is not None:
            return _reject(src, position, "duplicate_id",
                           f"id {rid!r} already used by {Path(first[0]).name} position "
                           f"{first[1]}; the first occurrence is kept", raw)
        self.seen[rid] = (src, position)
        tags = v.get("tags")
        urgency = v.get("urgency")
        return Ticket(
            id=rid,
            subject=subject,
            body=body,
            created_at=created,
            tags=_tags(tags) if tags else [],
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
    if v is None:
        return ""
    s = v if type(v) is str else str(v)
    return s[1:] if s[:1] == "\ufeff" else s


def _opt(v: Any) -> str | None:
    if v is None:
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
        _add_tags(v.get("name"), out)
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
