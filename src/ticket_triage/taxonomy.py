"""The locked taxonomy: topics, urgency levels and boundary decisions, loaded and validated.

A taxonomy file is YAML (see ``conf/taxonomy/banking77.yaml``)::

    name: banking-support
    version: 1
    topics:
      - id: card_management
        description: "..."
        examples: ["...", "...", "..."]       # at least three
        maps_from: ["card_arrival", ...]      # source tags this topic takes over
        default_urgency: P3                   # optional
    urgency:
      - {id: P0, description: "..."}          # P0..P3
    boundaries:
      - {case: "...", decision: "..."}

Validation errors name the topic and the field; ``TaxonomyError.problems`` lists them all.
Warnings (topic count outside 5-12) never stop a load.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

URGENCY_LEVELS = ("P0", "P1", "P2", "P3")
MIN_EXAMPLES = 3
EXPECTED_TOPICS = (5, 12)


class TaxonomyError(ValueError):
    """The taxonomy file is not usable; ``problems`` lists every problem found."""

    def __init__(self, path: str | Path, problems: list[str]):
        self.path = str(path)
        self.problems = problems
        super().__init__(f"invalid taxonomy {path}:\n  - " + "\n  - ".join(problems))


@dataclass(frozen=True)
class Topic:
    id: str
    description: str
    examples: tuple[str, ...]
    maps_from: tuple[str, ...] = ()
    default_urgency: str | None = None


@dataclass(frozen=True)
class UrgencyLevel:
    id: str
    description: str


@dataclass(frozen=True)
class Boundary:
    case: str
    decision: str


@dataclass(frozen=True)
class Taxonomy:
    name: str
    version: str
    topics: tuple[Topic, ...]
    urgency: tuple[UrgencyLevel, ...]
    boundaries: tuple[Boundary, ...] = ()
    default_urgency: str = "P3"
    warnings: tuple[str, ...] = field(default=(), compare=False)
    source_path: str | None = field(default=None, compare=False)

    @property
    def topic_ids(self) -> list[str]:
        return [t.id for t in self.topics]

    def topic(self, topic_id: str) -> Topic:
        for t in self.topics:
            if t.id == topic_id:
                return t
        raise KeyError(f"unknown topic {topic_id!r}; known: {', '.join(self.topic_ids)}")

    @property
    def tag_to_topic(self) -> dict[str, str]:
        """Source tag -> topic id (the bulk relabel)."""
        return {tag: t.id for t in self.topics for tag in t.maps_from}

    def map_tags(self, tags: list[str] | tuple[str, ...]) -> str | None:
        """The topic the first mappable source tag (or a tag equal to a topic id) maps to."""
        mapping = self.tag_to_topic
        ids = set(self.topic_ids)
        for tag in tags:
            if tag in mapping:
                return mapping[tag]
            if tag in ids:
                return tag
        return None

    def urgency_for(self, topic_id: str | None) -> str:
        if topic_id is not None:
            for t in self.topics:
                if t.id == topic_id and t.default_urgency:
                    return t.default_urgency
        return self.default_urgency

    def missing_history(self, label_counts: dict[str, int]) -> list[str]:
        """Topics with no labelled history yet (new categories): reported, not an error."""
        return [t for t in self.topic_ids if label_counts.get(t, 0) == 0]

    def summary(self) -> str:
        lines = [f"taxonomy {self.name} v{self.version}: {len(self.topics)} topics, "
                 f"{sum(len(t.maps_from) for t in self.topics)} source tags, "
                 f"{len(self.urgency)} urgency levels, {len(self.boundaries)} boundary decisions"]
        for t in self.topics:
            lines.append(f"  {t.id:<28} {len(t.examples)} examples, {len(t.maps_from):>2} source tags")
        lines += [f"  {u.id}: {u.description}" for u in self.urgency]
        lines += [f"warning: {w}" for w in self.warnings]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "default_urgency": self.default_urgency,
            "topics": [
                {"id": t.id, "description": t.description, "examples": list(t.examples),
                 "maps_from": list(t.maps_from),
                 **({"default_urgency": t.default_urgency} if t.default_urgency else {})}
                for t in self.topics
            ],
            "urgency": [{"id": u.id, "description": u.description} for u in self.urgency],
            "boundaries": [{"case": b.case, "decision": b.decision} for b in self.boundaries],
        }


def _as_str_list(value: Any) -> list[str] | None:
    if value is None:
        return []
    if isinstance(value, (list, tuple)) and all(isinstance(v, (str, int, float)) for v in value):
        return [str(v) for v in value]
    return None


def parse_taxonomy(raw: Any, path: str | Path = "<memory>") -> Taxonomy:
    """Validate a parsed YAML document and build a :class:`Taxonomy`."""
    problems: list[str] = []
    warnings: list[str] = []
    if not isinstance(raw, dict):
        raise TaxonomyError(path, ["the file must be a mapping with keys name, version, topics, urgency"])
    topics_raw = raw.get("topics")
    if not isinstance(topics_raw, list) or not topics_raw:
        raise TaxonomyError(path, ["'topics' must be a non-empty list"])

    topics: list[Topic] = []
    seen_ids: dict[str, int] = {}
    tag_owner: dict[str, str] = {}
    for i, t in enumerate(topics_raw):
        where = f"topic #{i + 1}"
        if not isinstance(t, dict):
            problems.append(f"{where}: must be a mapping")
            continue
        tid = t.get("id")
        if not isinstance(tid, str) or not tid.strip():
            problems.append(f"{where}: field 'id' is missing or empty")
            continue
        where = f"topic '{tid}'"
        if tid in seen_ids:
            problems.append(f"{where}: duplicate id (also topic #{seen_ids[tid] + 1})")
        seen_ids.setdefault(tid, i)
        desc = t.get("description")
        if not isinstance(desc, str) or not desc.strip():
            problems.append(f"{where}: field 'description' is missing or empty")
            desc = ""
        examples = _as_str_list(t.get("examples"))
        if examples is None:
            problems.append(f"{where}: field 'examples' must be a list of strings")
            examples = []
        examples = [e for e in examples if e.strip()]
        if len(examples) < MIN_EXAMPLES:
            problems.append(f"{where}: field 'examples' has {len(examples)}, needs at least {MIN_EXAMPLES}")
        maps_from = _as_str_list(t.get("maps_from"))
        if maps_from is None:
            problems.append(f"{where}: field 'maps_from' must be a list of source tags")
            maps_from = []
        for tag in maps_from:
            owner = tag_owner.get(tag)
            if owner is not None and owner != tid:
                problems.append(f"{where}: field 'maps_from': source tag '{tag}' is already mapped to topic '{owner}'")
            tag_owner.setdefault(tag, tid)
        du = t.get("default_urgency")
        if du is not None and du not in URGENCY_LEVELS:
            problems.append(f"{where}: field 'default_urgency' is {du!r}, expected one of {', '.join(URGENCY_LEVELS)}")
        topics.append(Topic(tid, desc, tuple(examples), tuple(maps_from), du))

    urgency_raw = raw.get("urgency") or []
    urgency: list[UrgencyLevel] = []
    if not isinstance(urgency_raw, list):
        problems.append("'urgency' must be a list of {id, description}")
        urgency_raw = []
    for u in urgency_raw:
        uid = u.get("id") if isinstance(u, dict) else None
        if uid not in URGENCY_LEVELS:
            problems.append(f"urgency level {uid!r}: id must be one of {', '.join(URGENCY_LEVELS)}")
            continue
        udesc = u.get("description")
        if not isinstance(udesc, str) or not udesc.strip():
            problems.append(f"urgency level '{uid}': field 'description' is missing or empty")
            udesc = ""
        urgency.append(UrgencyLevel(uid, udesc))
    missing_levels = [lvl for lvl in URGENCY_LEVELS if lvl not in {u.id for u in urgency}]
    if missing_levels:
        problems.append(f"urgency: levels {', '.join(missing_levels)} are not defined")

    boundaries: list[Boundary] = []
    for b in raw.get("boundaries") or []:
        if isinstance(b, dict) and b.get("case") and b.get("decision"):
            boundaries.append(Boundary(str(b["case"]), str(b["decision"])))
        else:
            problems.append(f"boundary {b!r}: needs 'case' and 'decision'")

    default_urgency = str(raw.get("default_urgency", "P3"))
    if default_urgency not in URGENCY_LEVELS:
        problems.append(f"default_urgency {default_urgency!r} is not one of {', '.join(URGENCY_LEVELS)}")

    lo, hi = EXPECTED_TOPICS
    if not lo <= len(topics) <= hi:
        warnings.append(f"{len(topics)} topics: a lockable taxonomy usually has {lo}-{hi}")
    if problems:
        raise TaxonomyError(path, problems)
    return Taxonomy(
        name=str(raw.get("name", Path(str(path)).stem)),
        version=str(raw.get("version", "1")),
        topics=tuple(topics),
        urgency=tuple(urgency),
        boundaries=tuple(boundaries),
        default_urgency=default_urgency,
        warnings=tuple(warnings),
        source_path=str(path),
    )


def load_taxonomy(path: str | Path) -> Taxonomy:
    path = Path(path)
    if not path.is_file():
        raise TaxonomyError(path, [f"file not found: {path}"])
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise TaxonomyError(path, [f"not valid YAML: {exc}"]) from exc
    return parse_taxonomy(raw, path)
