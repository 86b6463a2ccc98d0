"""A user's export before the pipeline sees it: its fingerprint, its profile (columns, label
counts, date range) and, for `triage init`, a draft data config and taxonomy skeleton.

* :func:`source_fingerprint` identifies the bytes of an export (a file, or every file of a
  folder): the held-out set and the registry record it, so a model is never scored on, or
  promoted over, another dataset's tickets.
* :func:`profile_export` reads the raw table (CSV, JSONL, Parquet) and guesses which column
  is the id, date, subject, body and label.
* :func:`draft_configs` writes ``conf/data/<name>.yaml`` and ``conf/taxonomy/<name>.yaml``
  (refusing to overwrite unless asked); the user edits them, then composes and runs
  ``dvc repro``.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Mapping, Sequence

FORMATS = ("csv", "jsonl", "parquet")
_GUESS = {
    "id": ("id", "ticket_id", "issue_id", "number", "key", "case_id"),
    "created_at": ("created_at", "created", "date", "opened_at", "timestamp", "created_on", "submitted_at", "time"),
    "subject": ("subject", "title", "summary", "short_description"),
    "body": ("body", "text", "description", "message", "content", "question", "comment", "details"),
    "label": ("label", "topic", "category", "queue", "type", "class", "intent", "tag", "tags", "labels"),
}
_TOPIC_ID = re.compile(r"[^a-z0-9]+")


class ProfileError(ValueError):
    """The export cannot be drafted into a config as it is; the message says what to pass."""


def source_fingerprint(path: str | Path, *, chunk: int = 1 << 20) -> str:
    """``sha256:<hex>`` of a file's bytes, or of every file under a folder (names and bytes,
    in sorted order). Linear in the size; read in 1 MiB chunks."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p} not found: check data.path in the data config (conf/data/<name>.yaml)")
    h = hashlib.sha256()
    files = [p] if p.is_file() else sorted(f for f in p.rglob("*") if f.is_file() and not f.name.startswith("."))
    for f in files:
        if p.is_dir():
            h.update(str(f.relative_to(p)).encode("utf-8") + b"\0")
        with f.open("rb") as fh:
            while block := fh.read(chunk):
                h.update(block)
    return "sha256:" + h.hexdigest()


def topic_id_for(label: str) -> str:
    """A taxonomy topic id for a source label: lower-case, words joined by ``_``."""
    tid = _TOPIC_ID.sub("_", str(label).casefold()).strip("_")
    return tid or "unlabelled"


@dataclass
class ExportProfile:
    path: str
    format: str
    rows: int
    columns: dict[str, dict[str, Any]]  # column -> {non_empty, example}
    guess: dict[str, str | None]
    label_counts: dict[str, int] = field(default_factory=dict)
    date_range: list[str | None] = field(default_factory=lambda: [None, None])
    dates_parsed: int = 0
    dates_in_future: int = 0
    examples: dict[str, list[str]] = field(default_factory=dict)

    def lines(self) -> list[str]:
        out = [f"{self.path}: {self.rows} rows, format {self.format}", "columns:"]
        for c, d in self.columns.items():
            role = next((k for k, v in self.guess.items() if v == c), "")
            ex = str(d["example"]).replace("\n", " ")[:60]
            out.append(f"  {c:<24} {d['non_empty']:>7} non-empty  {('-> ' + role) if role else '':<14} e.g. {ex!r}")
        if self.label_counts:
            out.append(f"labels in {self.guess.get('label')!r} ({len(self.label_counts)}):")
            out += [f"  {lab:<30} {n:>7}" for lab, n in self.label_counts.items()]
        if self.guess.get("created_at"):
            out.append(f"dates in {self.guess['created_at']!r}: {self.dates_parsed} parsed, "
                       f"from {self.date_range[0]} to {self.date_range[1]}")
        return out


def _read_table(path: Path, fmt: str):
    import pandas as pd

    if fmt == "csv":
        return pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    if fmt == "jsonl":
        return pd.read_json(path, lines=True, dtype=False).astype(str).replace({"None": "", "nan": ""})
    if fmt == "parquet":
        return pd.read_parquet(path).astype(str).replace({"None": "", "nan": ""})
    raise ProfileError(f"format {fmt!r} is not supported by `triage init`: use one of {', '.join(FORMATS)} "
                       "(helpdesk exports: `triage ingest` them first and init from tickets.jsonl)")


def _pick(columns: Sequence[str], role: str, given: str | None) -> str | None:
    if given is not None:
        if given not in columns:
            raise ProfileError(f"column {given!r} (--{role.replace('created_at', 'date')}) is not in the export; "
                               f"columns: {', '.join(columns)}")
        return given
    low = {c.casefold(): c for c in columns}
    return next((low[n] for n in _GUESS[role] if n in low), None)


def _first_line(text: Any) -> str:
    """The first line of a text with words (not a markdown heading or a blank), <= 200 chars."""
    for line in str(text).replace("\r", "").split("\n"):
        line = line.strip().lstrip("#").strip()
        if len(line) >= 3 and not line.endswith(":"):
            return line[:200]
    return ""


def profile_export(path: str | Path, fmt: str | None = None, *, label: str | None = None,
                   date: str | None = None, text: str | None = None, subject: str | None = None,
                   id_column: str | None = None, now: datetime | None = None) -> ExportProfile:
    """Read an export and guess its mapping; ``label``/``date``/``text``/``subject``/
    ``id_column`` override the guesses. Raises :class:`ProfileError` with what to pass."""
    from ticket_triage.ingest.rows import _parse_date

    p = Path(path)
    if not p.is_file():
        raise ProfileError(f"{p} is not a file: give the path of the export (CSV, JSONL or Parquet)")
    fmt = (fmt or p.suffix.lstrip(".").lower() or "csv").replace("ndjson", "jsonl")
    try:
        df = _read_table(p, fmt)
    except ProfileError:
        raise
    except Exception as exc:  # pandas raises many types for a malformed file
        raise ProfileError(f"cannot read {p} as {fmt}: {exc}. Check --format") from exc
    cols = [str(c) for c in df.columns]
    columns = {}
    for c in cols:
        vals = df[c].astype(str).str.strip()
        non_empty = vals[vals != ""]
        columns[c] = {"non_empty": int(len(non_empty)), "example": non_empty.iloc[0] if len(non_empty) else ""}
    guess = {"id": _pick(cols, "id", id_column), "created_at": _pick(cols, "created_at", date),
             "subject": _pick(cols, "subject", subject), "body": _pick(cols, "body", text),
             "label": _pick(cols, "label", label)}
    prof = ExportProfile(str(p), fmt, len(df), columns, guess)
    if guess["label"]:
        vals = [v.strip() for v in df[guess["label"]].astype(str) if v.strip()]
        prof.label_counts = dict(Counter(vals).most_common())
        text_col = guess["subject"] or guess["body"]  # titles make the best short examples
        if text_col:
            for lab in prof.label_counts:
                ex = [_first_line(t) for t, v in zip(df[text_col], df[guess["label"]]) if str(v).strip() == lab]
                prof.examples[lab] = [e for e in ex if e][:3]
    if guess["created_at"]:
        now = now or datetime.now(timezone.utc)
        parsed = []
        for v in df[guess["created_at"]]:
            if str(v).strip():
                try:
                    parsed.append(_parse_date(str(v)))
                except ValueError:
                    pass
        prof.dates_parsed = len(parsed)
        prof.dates_in_future = sum(1 for d in parsed if d > now + timedelta(days=1))
        if parsed:
            prof.date_range = [min(parsed).isoformat(), max(parsed).isoformat()]
    return prof


def check_profile(prof: ExportProfile, *, allow_no_dates: bool = False) -> None:
    """Raise :class:`ProfileError` for an export that cannot train a model as it is."""
    cols = ", ".join(prof.columns)
    if not prof.guess.get("body") and not prof.guess.get("subject"):
        raise ProfileError(f"no text column found (looked for {', '.join(_GUESS['body'] + _GUESS['subject'])}); "
                           f"columns: {cols}. Pass --text COLUMN (and --subject COLUMN if there is a title)")
    if not prof.guess.get("label"):
        raise ProfileError(f"no label column found (looked for {', '.join(_GUESS['label'])}); columns: {cols}. "
                           "Pass --label COLUMN: the column your team's topic, category or queue is in")
    if not prof.label_counts:
        raise ProfileError(f"the label column {prof.guess['label']!r} is empty in all {prof.rows} rows: pass "
                           f"--label with the column that holds the topic (columns: {cols})")
    if len(prof.label_counts) < 2:
        only = next(iter(prof.label_counts))
        raise ProfileError(f"the label column {prof.guess['label']!r} has one value ({only!r}, {prof.rows} rows): a "
                           "classifier needs at least two labels. Pass --label with the column that holds the topic, "
                           "or export tickets of more than one topic")
    if not prof.guess.get("created_at") and not allow_no_dates:
        raise ProfileError(f"no date column found (looked for {', '.join(_GUESS['created_at'])}); columns: {cols}. "
                           "Pass --date COLUMN (the ticket's creation time: splits are made in time order), or "
                           "--no-dates to accept a random split, which overstates accuracy on a ticket stream")
    if prof.guess.get("created_at") and prof.dates_parsed == 0:
        raise ProfileError(f"the date column {prof.guess['created_at']!r} has no readable date (ISO 8601, "
                           "'YYYY-MM-DD HH:MM:SS', epoch seconds or RFC 2822): pass --date with the creation-time "
                           "column, or --no-dates")
    if prof.dates_in_future:
        raise ProfileError(f"{prof.dates_in_future} of {prof.dates_parsed} dates in {prof.guess['created_at']!r} lie "
                           f"in the future (latest {prof.date_range[1]}): check that the column is the creation time "
                           "and how it is written (day/month order, epoch milliseconds vs seconds, time zone)")


def draft_configs(prof: ExportProfile, name: str, conf_dir: str | Path, *, path_in_config: str | None = None,
                  language: str | None = None, force: bool = False) -> tuple[Path, Path]:
    """Write ``<conf_dir>/data/<name>.yaml`` and ``<conf_dir>/taxonomy/<name>.yaml``. Both
    are checked (the taxonomy parses) before either is written; existing files are kept
    unless ``force``."""
    import yaml

    from ticket_triage.taxonomy import parse_taxonomy

    if not re.fullmatch(r"[A-Za-z0-9_-]+", name):
        raise ProfileError(f"dataset name {name!r}: use letters, digits, '_' or '-' (it names files and registry aliases)")
    conf = Path(conf_dir)
    data_path, tax_path = conf / "data" / f"{name}.yaml", conf / "taxonomy" / f"{name}.yaml"
    existing = [str(p) for p in (data_path, tax_path) if p.exists()]
    if existing and not force:
        raise ProfileError(f"{' and '.join(existing)} already exist: pick another --name, or pass --force to overwrite")
    g = prof.guess
    mapping: dict[str, str] = {}
    for key in ("id", "created_at", "subject", "body"):
        if g.get(key):
            mapping[key] = g[key]  # type: ignore[assignment]
    mapping["topic"] = g["label"]  # type: ignore[assignment]
    data_cfg: dict[str, Any] = {"name": name, "format": prof.format, "path": path_in_config or prof.path,
                                "mapping": mapping}
    if language:
        data_cfg["language"] = language
    topics, used = [], set()
    for lab, n in prof.label_counts.items():
        tid = topic_id_for(lab)
        while tid in used:
            tid += "_"
        used.add(tid)
        examples = list(prof.examples.get(lab) or [])
        examples += [f"TODO: a real '{lab}' ticket" for _ in range(3 - len(examples))]
        t: dict[str, Any] = {"id": tid, "description": f"TODO: what a '{lab}' ticket is ({n} in the export)",
                             "examples": examples}
        t["maps_from"] = [lab] if lab != tid else []
        topics.append(t)
    urgency = [{"id": "P0", "description": "TODO: outage or incident affecting many users"},
               {"id": "P1", "description": "TODO: one customer blocked or at risk now"},
               {"id": "P2", "description": "TODO: a normal problem"},
               {"id": "P3", "description": "TODO: informational, how-to"}]
    tax = {"name": name, "version": 1, "topics": topics, "urgency": urgency}
    parse_taxonomy(tax, str(tax_path))  # a skeleton that does not parse is a bug here, not the user's
    head = ("# @package _global_\n"
            f"# Drafted by `triage init` from {prof.path} ({prof.rows} rows). Check the mapping, then:\n"
            f"#   triage config compose --save-defaults data={name} taxonomy={name} && dvc repro\n"
            "# The generic rules: the demo's banking rules name banking topics your taxonomy does not have.\n"
            "defaults:\n  - override /rules: generic\n\n")
    thead = (f"# Taxonomy skeleton drafted by `triage init` from the labels in {g['label']!r}.\n"
             "# Edit it: describe each topic, keep three real examples, merge labels by listing them in a\n"
             "# topic's maps_from, add the boundary cases your team has decided.\n")
    data_path.parent.mkdir(parents=True, exist_ok=True)
    tax_path.parent.mkdir(parents=True, exist_ok=True)
    data_path.write_text(head + yaml.safe_dump({"data": data_cfg}, sort_keys=False, allow_unicode=True), encoding="utf-8")
    tax_path.write_text(thead + yaml.safe_dump(tax, sort_keys=False, allow_unicode=True, width=110), encoding="utf-8")
    return data_path, tax_path
