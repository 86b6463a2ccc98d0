"""The clean and split stages: canonical tickets -> cleaned, labelled, date-split data.

Counts are conserved at every step and written to a report:

* clean: ``in = kept + duplicates + set_aside + rejected``. Tickets whose source tags map to
  no taxonomy topic are *set aside* (kept in a file, not trained on); tickets with no text
  left after cleaning are *rejected* with a reason.
* split: ``kept = heldout + train + validation + test``. The held-out set belongs to a
  dataset: it is frozen the first time under ``eval/heldout/<dataset>.jsonl`` with a sidecar
  ``<dataset>.json`` (dataset name, source fingerprint) and excluded by id on every later run;
  a held-out set frozen from another source is refused, never silently reused.

Problems a user must fix in their data or config raise :class:`DataError` (the stage scripts
print it and exit 2, before writing any output).
"""

from __future__ import annotations

import json
import logging
import random
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Mapping, Sequence

from ticket_triage.config import SplitConfig
from ticket_triage.schema import Ticket
from ticket_triage.taxonomy import Taxonomy

if TYPE_CHECKING:
    from ticket_triage.text.clean import CleanConfig

log = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")


class DataError(ValueError):
    """The data or its config cannot give a trustworthy model; the message says what to fix."""


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
    unmapped_tags: dict[str, int] = field(default_factory=dict)
    maps_from_suggestions: dict[str, str] = field(default_factory=dict)
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
    unmapped: Counter[str] = Counter()
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
            if t.topic or t.tags:
                unmapped.update([t.topic] if t.topic else list(dict.fromkeys(t.tags)))
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
    report.unmapped_tags = dict(unmapped.most_common())
    report.maps_from_suggestions = suggest_maps_from(report.unmapped_tags, taxonomy.topic_ids)
    return kept, aside, rejected, report


def _norm_label(s: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in s.casefold()).strip("_")


def suggest_maps_from(tags: Iterable[str], topic_ids: Sequence[str]) -> dict[str, str]:
    """Unmapped source tag -> the topic id it looks like (same words up to case and
    punctuation, one containing the other, or a close spelling): a ``maps_from`` suggestion."""
    import difflib

    norm_ids = {_norm_label(t): t for t in topic_ids}
    out: dict[str, str] = {}
    for tag in tags:
        n = _norm_label(tag)
        if not n:
            continue
        hit = norm_ids.get(n)
        if hit is None:
            contained = [t for k, t in norm_ids.items() if len(k) >= 3 and len(n) >= 3 and (k in n or n in k)]
            hit = contained[0] if len(contained) == 1 else None
        if hit is None:
            close = difflib.get_close_matches(n, list(norm_ids), n=1, cutoff=0.8)
            hit = norm_ids[close[0]] if close else None
        if hit is not None:
            out[tag] = hit
    return out


def check_clean(report: CleanReport, cfg: "Mapping[str, Any] | CleanConfig | None", taxonomy: Taxonomy) -> None:
    """Raise :class:`DataError` when the cleaned data cannot train a trustworthy model: the
    taxonomy maps nothing, fewer than two labels are left, or more than
    ``clean.max_unmapped_share`` of the tickets were set aside."""
    from ticket_triage.text.clean import CleanConfig

    cfg = CleanConfig.from_dict(cfg)
    where = (f"the taxonomy '{taxonomy.name}' (conf/taxonomy/<file>.yaml: a topic's `id`, or its "
             "`maps_from` list of source tags)")

    def tags_line(limit: int = 15) -> str:
        items = list(report.unmapped_tags.items())
        shown = ", ".join(f"{t!r} ({n})" for t, n in items[:limit])
        more = f", ... {len(items) - limit} more" if len(items) > limit else ""
        sugg = "; ".join(f"add {t!r} to maps_from of topic {tid!r}" for t, tid in report.maps_from_suggestions.items())
        return shown + more + (f". Suggestions: {sugg}" if sugg else "")

    if report.tickets_in and report.kept == 0:
        if report.unmapped_tags:
            raise DataError(f"the taxonomy maps nothing: none of the {report.tickets_in} tickets has a label that is "
                            f"a topic of {where}. Labels found: {tags_line()}. Edit the taxonomy so its topics "
                            "cover these labels (`triage init` drafts one from the export)")
        raise DataError(f"none of the {report.tickets_in} tickets has a label (set aside: "
                        f"{report.set_aside_by_reason}, rejected: {report.rejected_by_reason}): map the export's "
                        "label column as mapping.topic or mapping.tags in the data config (conf/data/<name>.yaml)")
    if report.tickets_in and len(report.label_counts) < 2:
        raise DataError(f"only one label is left after cleaning ({report.label_counts}): a classifier needs at "
                        "least two. Check the label column in the data config (mapping.topic / mapping.tags) and "
                        f"that {where} maps the other labels" + (f"; unmapped: {tags_line()}" if report.unmapped_tags else ""))
    limit = float(cfg.max_unmapped_share)
    share = report.set_aside / report.tickets_in if report.tickets_in else 0.0
    if share > limit:
        reasons = ", ".join(f"{k}: {v}" for k, v in report.set_aside_by_reason.items())
        msg = (f"{report.set_aside} of {report.tickets_in} tickets ({share:.1%}) were set aside ({reasons}), more than "
               f"clean.max_unmapped_share={limit:g}.")
        if report.unmapped_tags:
            msg += f" Unmapped source tags: {tags_line()}. Map them in {where}, or add a topic for them"
        else:
            msg += " They have no label: check the label column (mapping.topic / mapping.tags) in conf/data/<name>.yaml"
        raise DataError(msg + "; or raise clean.max_unmapped_share if setting them aside is intended")


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


def _label_counts(rows: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    return dict(sorted(Counter(str(r["topic"]) for r in rows).items()))


def _fmt_counts(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{k} ({v})" for k, v in counts.items())


def _load_heldout(heldout_path: Path, rows: Sequence[dict[str, Any]],
                  dataset: Mapping[str, Any] | None) -> tuple[list[dict[str, Any]], str]:
    """The frozen held-out set at ``heldout_path``, checked against ``dataset`` (name,
    fingerprint): reused when it was frozen from this source, or when the source changed but
    >= 90% of its tickets are still in the data (an export that grew); refused otherwise."""
    heldout = list(iter_jsonl(heldout_path))
    meta_path = heldout_path.with_suffix(".json")
    meta = json.loads(meta_path.read_text(encoding="utf-8")) if meta_path.is_file() else {}
    if not dataset:
        return heldout, "reused"
    name, fp = dataset.get("name"), dataset.get("fingerprint")
    if meta.get("dataset") not in (None, name):
        raise DataError(f"the held-out set {heldout_path} belongs to dataset {meta.get('dataset')!r}, not {name!r}: "
                        f"set paths.heldout to eval/heldout/{name}.jsonl (the default `eval/heldout/${{data.name}}.jsonl` "
                        "does this), or delete the file to freeze a new one")
    if meta.get("source_fingerprint") == fp and meta.get("dataset") == name:
        return heldout, "reused"
    by_id = {str(r["id"]): r for r in rows}
    found = sum(1 for h in heldout if (r := by_id.get(str(h["id"]))) is not None
                and (r.get("text") == h.get("text") or r.get("topic") == h.get("topic")))
    if heldout and found < 0.9 * len(heldout):
        raise DataError(f"the held-out set {heldout_path} was frozen from another source "
                        f"(dataset {meta.get('dataset', 'unknown')!r}, fingerprint {meta.get('source_fingerprint', 'unknown')}); "
                        f"only {found} of its {len(heldout)} tickets are in this data ({name!r}, fingerprint {fp}). "
                        "Scoring a model on another dataset's tickets means nothing: give this data its own "
                        f"data.name, or delete {heldout_path} (and {meta_path.name}) to freeze a new held-out set")
    return heldout, "reused (the source changed since it was frozen; " f"{found} of {len(heldout)} tickets still in it)"


def _split_by_date_per_label(pool: Sequence[dict[str, Any]], fractions: Sequence[float]) -> dict[str, list[dict[str, Any]]]:
    """Time order within each label: each label's oldest tickets train, the next validate,
    the newest test, so every label is in every split however the labels cluster in time."""
    by_label: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in pool:
        by_label[str(r["topic"])].append(r)
    out: dict[str, list[dict[str, Any]]] = {s: [] for s in SPLITS}
    for lab in sorted(by_label):
        items = sorted(by_label[lab], key=lambda r: (r["created_at"], str(r["id"])))
        n = len(items)
        n_val = max(1, round(n * fractions[1])) if fractions[1] > 0 else 0
        n_test = max(1, round(n * fractions[2])) if fractions[2] > 0 else 0
        n_train = n - n_val - n_test
        out["train"] += items[:n_train]
        out["validation"] += items[n_train:n_train + n_val]
        out["test"] += items[n_train + n_val:]
    for name in SPLITS:
        out[name].sort(key=lambda r: (r["created_at"], str(r["id"])))
    return out


def split_warnings(splits: Mapping[str, Sequence[Mapping[str, Any]]], cfg: "Mapping[str, Any] | SplitConfig"
                   ) -> list[str]:
    """Validation sets that make the winner and thresholds untrustworthy: one label above
    ``split.max_label_share`` of validation, labels below ``split.min_validation_per_label``."""
    val = splits["validation"]
    counts = Counter(str(r["topic"]) for r in val)
    labels = sorted({str(r["topic"]) for part in splits.values() for r in part})
    cfg = SplitConfig.from_dict(cfg)
    max_share = float(cfg.max_label_share)
    min_val = int(cfg.min_validation_per_label)
    out = []
    for lab, c in counts.most_common():
        if val and c / len(val) > max_share:
            out.append(f"label {lab!r} is {c / len(val):.0%} of validation ({c} of {len(val)}, over "
                       f"split.max_label_share={max_share:g}): the sweep's winner and the thresholds are chosen "
                       "mostly on it; add tickets of the other labels")
    low = {lab: counts.get(lab, 0) for lab in labels if counts.get(lab, 0) < min_val}
    if low:
        out.append(f"labels with fewer than {min_val} validation tickets (split.min_validation_per_label): "
                   f"{_fmt_counts(low)}: their validation metrics and thresholds are noisy; add labelled tickets "
                   "or raise split.validation")
    return out


def split_tickets(
    rows: Sequence[dict[str, Any]],
    cfg: "Mapping[str, Any] | SplitConfig",
    *,
    heldout_path: str | Path,
    seed: int = 42,
    min_train_examples: int | None = None,
    dataset: Mapping[str, Any] | None = None,
) -> tuple[dict[str, list[dict[str, Any]]], list[dict[str, Any]], dict[str, Any]]:
    """Split cleaned rows into train/validation/test, freezing a held-out set first.

    Strategies: ``date`` (time order within each label: every label in every split),
    ``date_global`` (one cut through time for all labels; refused when it leaves a label out
    of validation or test), ``stratified`` (random, per label). ``dataset`` (``name``,
    ``fingerprint``) ties the held-out set to its source (see :func:`_load_heldout`).
    Raises :class:`DataError` before writing anything when a split would miss a label.

    Returns ({"train": [...], "validation": [...], "test": [...]}, heldout_rows, report).
    """
    cfg = SplitConfig.from_dict(cfg)
    fractions = [float(getattr(cfg, s)) for s in SPLITS]
    if abs(sum(fractions) - 1.0) > 1e-6 or min(fractions) < 0:
        raise ValueError(f"split fractions train/validation/test must be >= 0 and sum to 1, got {fractions}")
    rng = random.Random(seed)
    warnings: list[str] = []
    heldout_path = Path(heldout_path)
    heldout_size = int(cfg.heldout_size)

    # 1. held-out: frozen the first time (per dataset), excluded by id afterwards
    if heldout_path.is_file():
        heldout, heldout_status = _load_heldout(heldout_path, rows, dataset)
        held_ids = {str(r["id"]) for r in heldout}
        pool = [r for r in rows if str(r["id"]) not in held_ids]
    else:
        idx = _stratified_pick(rows, min(heldout_size, len(rows) // 5), rng)
        heldout = [rows[i] for i in sorted(idx)]
        held_ids = {str(r["id"]) for r in heldout}
        pool = [r for i, r in enumerate(rows) if i not in idx]
        heldout_status = "created"

    # 2. every label needs a ticket in train, validation and test
    pool_counts = _label_counts(pool)
    thin = {lab: c for lab, c in pool_counts.items() if c < 3}
    if thin:
        raise DataError(f"labels with fewer than 3 tickets besides the held-out set (one each is needed for train, "
                        f"validation and test): {_fmt_counts(thin)}. Label more tickets of them, fold them into "
                        "another topic (add the source tag to that topic's maps_from in the taxonomy), or remove "
                        "the topic from the taxonomy")

    # 3. date split, or stratified when timestamps are missing
    strategy = cfg.strategy
    has_dates = bool(pool) and all(r.get("created_at") for r in pool)
    if strategy in ("date", "date_global") and not has_dates:
        missing = sum(1 for r in pool if not r.get("created_at"))
        warnings.append(f"{missing} of {len(pool)} tickets have no created_at: fell back to a stratified "
                        "random split, which overstates accuracy on correlated tickets")
        strategy = "stratified"
    splits: dict[str, list[dict[str, Any]]]
    if strategy == "date":
        splits = _split_by_date_per_label(pool, fractions)
    elif strategy == "date_global":
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
        raise ValueError(f"unknown split strategy {strategy!r}: use 'date', 'date_global' or 'stratified'")
    for name, frac in zip(SPLITS, fractions):
        if frac == 0:  # a split asked to be empty (e.g. no test set in a notebook) misses nothing
            continue
        missing_labels = {lab: c for lab, c in pool_counts.items() if lab not in {str(r["topic"]) for r in splits[name]}}
        if missing_labels:
            raise DataError(f"the {strategy} split leaves labels out of {name}: {_fmt_counts(missing_labels)} "
                            f"(tickets per label; {name} has {_fmt_counts(_label_counts(splits[name]))}). "
                            "Use split.strategy=date (time order within each label), or add tickets of these labels")
    warnings += split_warnings(splits, cfg)

    # 4. report; the held-out set is written only now, when the split is known to be sound
    if heldout_status == "created":
        write_jsonl(heldout_path, heldout)
    if heldout_status == "created" or dataset:
        meta_path = heldout_path.with_suffix(".json")
        old = json.loads(meta_path.read_text(encoding="utf-8")) if meta_path.is_file() else {}
        meta = {"dataset": (dataset or {}).get("name", old.get("dataset")),
                "source_fingerprint": old.get("source_fingerprint") or (dataset or {}).get("fingerprint"),
                "last_source_fingerprint": (dataset or {}).get("fingerprint"),
                "size": len(heldout), "label_counts": _label_counts(heldout)}
        if meta != old:
            meta_path.parent.mkdir(parents=True, exist_ok=True)
            meta_path.write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    min_train = int(min_train_examples if min_train_examples is not None else cfg.min_train_examples)
    train_counts = Counter(r["topic"] for r in splits["train"])
    labels = sorted({r["topic"] for r in rows})
    report: dict[str, Any] = {
        "strategy": strategy,
        "requested_strategy": cfg.strategy,
        "fractions": dict(zip(SPLITS, fractions)),
        "seed": seed,
        "tickets": len(rows),
        "dataset": dict(dataset or {}),
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
