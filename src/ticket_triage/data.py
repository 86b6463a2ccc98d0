"""The clean and split stages: canonical tickets -> cleaned, labelled, date-split data.

Counts are conserved at every step and written to a report:

* clean: ``in = kept + duplicates + set_aside + rejected``. Tickets whose source tags map to
  no taxonomy topic are *set aside* (kept in a file, not trained on); tickets with no text
  left after cleaning are *rejected* with a reason.
* split: ``kept = heldout + train + validation + test``. The held-out set is frozen under
  ``eval/`` the first time and excluded by id on every later run.
"""

from __future__ import annotations

import json
import logging
import random
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

from ticket_triage.schema import Ticket
from ticket_triage.taxonomy import Taxonomy

log = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")


# -- JSONL helpers ----------------------------------------------------------------------------
def write_jsonl(path: str | Path, rows: Iterable[Mapping[str, Any] | Ticket]) -> int:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with path.open("w", encoding="utf-8") as f:
        for r in rows:
            d = r.to_dict() if isinstance(r, Ticket) else r
            f.write(json.dumps(d, ensure_ascii=False, default=str) + "\n")
            n += 1
    return n


def iter_jsonl(path: str | Path) -> Iterator[dict[str, Any]]:
    with Path(path).open(encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


def read_tickets_jsonl(path: str | Path) -> list[Ticket]:
    return [Ticket.from_dict(d) for d in iter_jsonl(path)]


# -- clean ------------------------------------------------------------------------------------
@dataclass
class CleanReport:
    tickets_in: int = 0
    kept: int = 0
    duplicates: int = 0
    set_aside: int = 0
    rejected: int = 0
    set_aside_by_reason: dict[str, int] = field(default_factory=dict)
    rejected_by_reason: dict[str, int] = field(default_factory=dict)
    relabelled: int = 0
    languages: dict[str, int] = field(default_factory=dict)
    label_counts: dict[str, int] = field(default_factory=dict)
    topics_without_history: list[str] = field(default_factory=list)
    cleaning_version: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @property
    def conserved(self) -> bool:
        return self.tickets_in == self.kept + self.duplicates + self.set_aside + self.rejected


def resolve_topic(ticket: Ticket, taxonomy: Taxonomy) -> tuple[str | None, str | None]:
    """(topic, fine_label) for a ticket: an explicit topic that is a taxonomy id (or a source
    tag mapping to one) wins; otherwise the first source tag that maps. The fine label is the
    source tag that decided the topic (for training on fine labels)."""
    ids = set(taxonomy.topic_ids)
    mapping = taxonomy.tag_to_topic
    if ticket.topic:
        if ticket.topic in ids:
            fine = next((t for t in ticket.tags if mapping.get(t) == ticket.topic), ticket.topic)
            return ticket.topic, fine
        if ticket.topic in mapping:
            return mapping[ticket.topic], ticket.topic
    for tag in ticket.tags:
        if tag in mapping:
            return mapping[tag], tag
        if tag in ids:
            return tag, tag
    return None, None


def clean_tickets(
    tickets: Sequence[Ticket],
    taxonomy: Taxonomy,
    cfg: Mapping[str, Any] | None = None,
    *,
    progress: bool = False,
    language_prior: str | None = None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]], CleanReport]:
    """Clean, relabel and de-duplicate. Returns (kept, set_aside, rejected, report).

    A ticket without a language gets the detected one, with the data set's configured
    language (``data.language``) as ``language_prior`` (see ``text.language``).

    Each kept row is ``Ticket.to_dict()`` plus ``label_fine`` (the source tag behind the
    topic). ``text`` is the cleaned, redacted text from :func:`ticket_triage.text.clean.clean_text`,
    the same function the service and the LLM call use.
    """
    from ticket_triage.text.language import detect_language
    from ticket_triage.text.clean import CLEANING_VERSION, CleanConfig

    cc = CleanConfig.from_dict(cfg)
    report = CleanReport(tickets_in=len(tickets), cleaning_version=CLEANING_VERSION)
    kept: list[dict[str, Any]] = []
    aside: list[dict[str, Any]] = []
    rejected: list[dict[str, Any]] = []
    seen: dict[str, str] = {}
    iterator: Iterable[Ticket] = tickets
    if progress:  # a bar on a terminal, a log line every 30 s otherwise
        from ticket_triage.models.base import progress_bar

        iterator = progress_bar(tickets, desc="clean", unit="ticket")
    for t in iterator:
        text = cc.apply(t.subject, t.body)
        row = t.to_dict()
        row["text"] = text
        if not text.strip():
            row["reason"] = "empty_after_cleaning"
            rejected.append(row)
            continue
        if not t.language:
            row["language"] = detect_language(text, language_prior)
        topic, fine = resolve_topic(t, taxonomy)
        if topic is None:
            row["reason"] = "unmapped_tags" if (t.tags or t.topic) else "no_label"
            aside.append(row)
            continue
        if topic != t.topic:
            report.relabelled += 1
        row["topic"] = topic
        row["label_fine"] = fine
        if cc.dedupe:
            key = text.casefold()
            if key in seen:
                report.duplicates += 1
                continue
            seen[key] = t.id
        kept.append(row)
    report.kept = len(kept)
    report.set_aside = len(aside)
    report.rejected = len(rejected)
    report.set_aside_by_reason = dict(Counter(r["reason"] for r in aside))
    report.rejected_by_reason = dict(Counter(r["reason"] for r in rejected))
    report.languages = dict(Counter(r.get("language") or "und" for r in kept).most_common())
    report.label_counts = dict(sorted(Counter(r["topic"] for r in kept).items()))
    report.topics_without_history = taxonomy.missing_history(report.label_counts)
    return kept, aside, rejected, report


# -- split ------------------------------------------------------------------------------------
def _stratified_pick(rows: Sequence[dict[str, Any]], n: int, rng: random.Random, key: str = "topic") -> set[int]:
    """Indices of ~n rows drawn proportionally per label (at least one per label with >= 2)."""
    if n <= 0 or not rows:
        return set()
    by_label: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(rows):
        by_label[str(r.get(key))].append(i)
    total = len(rows)
    picked: set[int] = set()
    for label in sorted(by_label):
        idx = by_label[label][:]
        rng.shuffle(idx)
        k = round(n * len(idx) / total)
        if k == 0 and len(idx) >= 2:
            k = 1
        picked.update(idx[: min(k, len(idx) - 1 if len(idx) > 1 else 0)])
    rest = [i for i in range(total) if i not in picked]
    rng.shuffle(rest)
    while len(picked) < min(n, total) and rest:
        picked.add(rest.pop())
    while len(picked) > n:
        picked.remove(max(picked))
    return picked


def _date_range(rows: Sequence[dict[str, Any]]) -> list[str | None]:
    dates = sorted(r["created_at"] for r in rows if r.get("created_at"))
    return [dates[0], dates[-1]] if dates else [None, None]


def split_tickets(
    rows: Sequence[dict[str, Any]],
    cfg: Mapping[str, Any],
    *,
    heldout_path: str | Path,
    seed: int = 42,
    min_train_examples: int | None = None,
) -> tuple[dict[str, list[dict[str, Any]]], list[dict[str, Any]], dict[str, Any]]:
    """Split cleaned rows into train/validation/test, freezing a held-out set first.

    Returns ({"train": [...], "validation": [...], "test": [...]}, heldout_rows, report).
    """
    fractions = [float(cfg.get(s, d)) for s, d in zip(SPLITS, (0.8, 0.1, 0.1))]
    if abs(sum(fractions) - 1.0) > 1e-6 or min(fractions) < 0:
        raise ValueError(f"split fractions train/validation/test must be >= 0 and sum to 1, got {fractions}")
    rng = random.Random(seed)
    warnings: list[str] = []
    heldout_path = Path(heldout_path)
    heldout_size = int(cfg.get("heldout_size", 200))

    # 1. held-out: frozen the first time, excluded by id afterwards
    if heldout_path.is_file():
        heldout = list(iter_jsonl(heldout_path))
        held_ids = {str(r["id"]) for r in heldout}
        pool = [r for r in rows if str(r["id"]) not in held_ids]
        heldout_status = "reused"
    else:
        idx = _stratified_pick(rows, min(heldout_size, len(rows) // 5), rng)
        heldout = [rows[i] for i in sorted(idx)]
        held_ids = {str(r["id"]) for r in heldout}
        pool = [r for i, r in enumerate(rows) if i not in idx]
        write_jsonl(heldout_path, heldout)
        heldout_status = "created"

    # 2. date split, or stratified when timestamps are missing
    strategy = cfg.get("strategy", "date")
    has_dates = bool(pool) and all(r.get("created_at") for r in pool)
    if strategy == "date" and not has_dates:
        missing = sum(1 for r in pool if not r.get("created_at"))
        warnings.append(f"{missing} of {len(pool)} tickets have no created_at: fell back to a stratified "
                        "random split, which overstates accuracy on correlated tickets")
        strategy = "stratified"
    splits: dict[str, list[dict[str, Any]]]
    if strategy == "date":
        ordered = sorted(pool, key=lambda r: (r["created_at"], str(r["id"])))
        n = len(ordered)
        n_train = int(round(n * fractions[0]))
        n_val = int(round(n * fractions[1]))
        splits = {"train": ordered[:n_train], "validation": ordered[n_train:n_train + n_val],
                  "test": ordered[n_train + n_val:]}
    elif strategy == "stratified":
        val_idx = _stratified_pick(pool, int(round(len(pool) * fractions[1])), rng)
        rest = [i for i in range(len(pool)) if i not in val_idx]
        rest_rows = [pool[i] for i in rest]
        test_local = _stratified_pick(rest_rows, int(round(len(pool) * fractions[2])), rng)
        test_idx = {rest[i] for i in test_local}
        splits = {
            "train": [r for i, r in enumerate(pool) if i not in val_idx and i not in test_idx],
            "validation": [pool[i] for i in sorted(val_idx)],
            "test": [pool[i] for i in sorted(test_idx)],
        }
    else:
        raise ValueError(f"unknown split strategy {strategy!r}: use 'date' or 'stratified'")

    # 3. report
    min_train = int(min_train_examples if min_train_examples is not None else cfg.get("min_train_examples", 5))
    train_counts = Counter(r["topic"] for r in splits["train"])
    labels = sorted({r["topic"] for r in rows})
    report: dict[str, Any] = {
        "strategy": strategy,
        "requested_strategy": cfg.get("strategy", "date"),
        "fractions": dict(zip(SPLITS, fractions)),
        "seed": seed,
        "tickets": len(rows),
        "heldout": {"path": str(heldout_path), "status": heldout_status, "size": len(heldout),
                    "excluded_from_training": sum(1 for r in rows if str(r["id"]) in held_ids)},
        "splits": {
            name: {"size": len(part), "date_range": _date_range(part),
                   "label_counts": dict(sorted(Counter(r["topic"] for r in part).items()))}
            for name, part in splits.items()
        },
        "labels_with_too_few_train_examples": {
            lab: train_counts.get(lab, 0) for lab in labels if train_counts.get(lab, 0) < min_train},
        "warnings": warnings,
    }
    for w in warnings:
        log.warning(w)
    return splits, heldout, report
