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

This module owns the public entry points and the orchestration (files, formats, counts); the
parts live beside it: ``encoding`` (byte-level detection), ``tabular`` (CSV, JSONL, Parquet),
``vendors`` (the Zendesk / Intercom / Front export maps) and ``rows`` (values -> Ticket).
"""

from __future__ import annotations

import codecs
import json
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from ticket_triage.ingest.encoding import _decode_guard, _detect_encoding
from ticket_triage.ingest.rows import (
    FIELDS,
    IngestError,
    IngestReport,
    Rejected,
    _Builder,
    _plain,
    _reject,
)
from ticket_triage.ingest.tabular import (
    _generic_extractor,
    _iter_csv,
    _iter_jsonl,
    _iter_parquet,
    _suggest,
)
from ticket_triage.ingest.vendors import BODY_FIELDS, VENDOR_URGENCY, _iter_json_export
from ticket_triage.schema import Ticket

FORMATS: tuple[str, ...] = ("csv", "jsonl", "parquet", "zendesk", "intercom", "front")


_EXTENSIONS: dict[str, tuple[str, ...]] = {
    "csv": (".csv",),
    "jsonl": (".jsonl", ".ndjson"),
    "parquet": (".parquet", ".pq"),
    "zendesk": (".json", ".jsonl", ".ndjson"),
    "intercom": (".json", ".jsonl", ".ndjson"),
    "front": (".json", ".jsonl", ".ndjson"),
}


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
    from ticket_triage.config import DataConfig

    c = _plain(cfg)
    if "path" not in c:
        raise IngestError(f"data config has no 'path' (keys: {sorted(c)}); add path: <export>")
    d = DataConfig.from_dict(c)
    defaults = {k: getattr(d, k) for k in ("channel", "language", "topic", "urgency") if getattr(d, k)}
    return {
        "path": d.path,
        "fmt": d.format,
        "mapping": d.mapping or None,
        "defaults": defaults or None,
        "urgency_map": d.urgency_map or None,
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
    builder = _Builder(fmt, defaults, urgency_map, max_body_bytes,
                       vendor_urgency=VENDOR_URGENCY.get(fmt), body_fields=BODY_FIELDS[fmt])
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
