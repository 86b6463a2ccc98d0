"""Tabular readers: CSV, JSON Lines and Parquet with a canonical-field column mapping.

Each reader yields ``(position, values | None, raw, problem | None)``; ``problem`` set means the
row is malformed. ``values`` maps canonical fields to source values.
"""

from __future__ import annotations

import csv
import difflib
import json
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from ticket_triage.ingest.encoding import _LineFeed
from ticket_triage.ingest.rows import (
    FIELDS,
    IngestError,
    IngestReport,
    _Builder,
    _Malformed,
    _getter,
)


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
    given = mapping is not None
    if mapping is None:
        mapping = {k: k for k in FIELDS if k in index}
    if "body" not in mapping:
        hint = next((h for h in header if h.lower() in ("text", "message", "description", "content",
                                                        "comment", "body_text", "question")), None)
        raise IngestError(
            f"{path.name}: no body column: "
            + ("the mapping has no 'body' entry" if given else "the header has no 'body' column")
            + f" (columns: {', '.join(header)}); every ticket would arrive without its text. Pass "
            "mapping= (canonical field -> column), e.g. the data config's mapping: {body: "
            + (repr(hint) if hint else "<the text column>") + ", subject: ...}")
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
                obj = json.loads(line, parse_constant=_no_constant)
            except ValueError as e:
                yield line_no, None, line, f"line {line_no}: invalid JSON ({e})"
                continue
            except RecursionError:
                yield line_no, None, line, (f"line {line_no}: JSON nested deeper than the parser "
                                            "allows; a ticket is a flat object")
                continue
            if too_deep(obj):
                yield line_no, None, line, (f"line {line_no}: JSON nested more than {MAX_DEPTH} "
                                            "levels deep; a ticket is a flat object")
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


MAX_DEPTH = 32


def too_deep(obj: Any, limit: int = MAX_DEPTH) -> bool:
    """True when ``obj`` nests lists/objects more than ``limit`` levels (iterative: no recursion)."""
    stack = [(obj, 1)]
    while stack:
        o, d = stack.pop()
        if isinstance(o, dict):
            o = list(o.values())
        elif not isinstance(o, list):
            continue
        if d > limit:
            return True
        stack.extend((x, d + 1) for x in o if isinstance(x, (dict, list)))
    return False


def _no_constant(name: str) -> None:
    """NaN / Infinity / -Infinity (not JSON, but written by some exporters) read as null."""
    return None


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
