"""What is sent and how the answer is read: PII redaction of everything sent, the taxonomy
rendered for the prompt, the system prompt, and ``parse_answer`` (JSON label or abstain).
"""

from __future__ import annotations

import json
import re
from typing import Any, Sequence

from ticket_triage.decision.llm.config import ABSTAIN
from ticket_triage.taxonomy import Taxonomy


def _redact(text: str) -> str:
    """Strict redaction (``ticket_triage.text.pii``): text leaving the process loses every
    personal datum the cleaning step may have missed, and long digit runs and codes too."""
    from ticket_triage.text.pii import redact_pii

    return redact_pii(text, strict=True)


def _cut(text: str, limit: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: max(limit - 1, 0)].rstrip() + "…"


def render_taxonomy(taxonomy: Taxonomy, labels: Sequence[str]) -> str:
    """The taxonomy as prompt text: each allowed topic with description, examples; boundaries."""
    lines = []
    wanted = set(labels)
    for t in taxonomy.topics:
        if t.id not in wanted:
            continue
        lines.append(f"- {t.id}: {t.description}")
        for ex in t.examples[:3]:
            lines.append(f"    e.g. \"{_cut(ex, 200)}\"")
    if taxonomy.boundaries:
        lines.append("")
        lines.append("Boundary decisions (these override intuition):")
        for b in taxonomy.boundaries:
            lines.append(f"- {b.case} -> {b.decision}")
    return "\n".join(lines)


SYSTEM_PROMPT = """You route customer support tickets to exactly one topic of a fixed taxonomy.

Topics:
{taxonomy}

Answer with a JSON object {{"label": <topic id or "abstain">, "reason": <at most 20 words>}}.
Use "abstain" when no topic clearly fits, when the ticket mixes several topics, or when you
are unsure. Never invent a topic id. Personal data was replaced by placeholders such as [EMAIL]."""


_JSON_OBJECT = re.compile(r"\{.*\}", re.S)


def parse_answer(content: str | None, allowed: Sequence[str],
                 disabled: Sequence[str] = ()) -> tuple[str | None, str | None, str, str | None]:
    """Parse the model's message -> ``(label, raw_label, reason, error)``; never raises.

    Malformed JSON -> error ``malformed_json``; a label outside ``allowed`` -> ``invalid_label``;
    a label in ``disabled`` -> ``disabled_label``; ``abstain`` -> label None without error.
    """
    if not content or not content.strip():
        return None, None, "", "empty_answer"
    text = content.strip()
    data: Any = None
    try:
        data = json.loads(text)
    except (ValueError, TypeError):
        m = _JSON_OBJECT.search(text)  # a model wrapping its JSON in prose or ``` fences
        if m:
            try:
                data = json.loads(m.group(0))
            except (ValueError, TypeError):
                data = None
    if not isinstance(data, dict) or "label" not in data:
        return None, None, "", "malformed_json"
    raw = data.get("label")
    reason = data.get("reason")
    reason = _cut(reason, 300) if isinstance(reason, str) else ""
    if not isinstance(raw, str):
        return None, None if raw is None else str(raw)[:100], reason, "invalid_label"
    raw_label = raw.strip()
    if raw_label.lower() == ABSTAIN:
        return None, ABSTAIN, reason, None
    if raw_label not in set(allowed):
        return None, raw_label[:100], reason, "invalid_label"
    if raw_label in set(disabled):
        return None, raw_label, reason, "disabled_label"
    return raw_label, raw_label, reason, None
