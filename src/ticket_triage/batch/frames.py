"""One chunk of input rows -> one chunk of decision rows: the function both engines run.

``triage score --engine local`` calls :func:`decide_chunk` on pandas chunks in-process;
``--engine spark`` calls the very same function inside ``mapInPandas`` on each executor, so
the two engines give the same decisions by construction (and a test checks it).

A row is a ticket when it has a ``subject``, ``body`` (aliases ``description``, ``message``)
or already-cleaned ``text``; an ``id`` column is used as given, and a row without one gets a
stable content id (``row-<sha1 of subject and body>``). A row with no text at all is not
dropped: it comes out with band ``rejected`` and reason ``missing_body``, so the output has
exactly one row per input row.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any, Iterable, Mapping

import numpy as np

# The decision columns written by `triage score` (Parquet), in this order.
DECISION_COLUMNS = ("id", "topic", "band", "confidence", "urgency", "reason", "source",
                    "model_version")
TICKET_FIELDS = ("id", "subject", "body", "text", "language", "channel", "created_at", "tags",
                 "urgency", "requester")
BODY_ALIASES = ("body", "description", "message")


def spark_schema_ddl() -> str:
    """The decision columns as a Spark DDL schema string (for ``mapInPandas``)."""
    return ("id string, topic string, band string, confidence double, urgency string, "
            "reason string, source string, model_version string")


def _scalar(v: Any) -> Any:
    """pandas / Arrow missing values -> None; numpy scalars -> Python."""
    if v is None:
        return None
    if isinstance(v, float) and math.isnan(v):
        return None
    if isinstance(v, np.generic):
        v = v.item()
        if isinstance(v, float) and math.isnan(v):
            return None
    try:
        import pandas as pd

        if v is pd.NaT or (not isinstance(v, (list, tuple, np.ndarray)) and pd.isna(v)):
            return None
    except (TypeError, ValueError):
        pass
    return v


def _text(v: Any) -> str:
    v = _scalar(v)
    if v is None:
        return ""
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def row_to_ticket(row: Mapping[str, Any]) -> dict[str, Any] | None:
    """A ticket dict for ``Triage.decide`` from one input row, or ``None`` when it has no text."""
    subject = _text(row.get("subject"))
    body = next((_text(row[a]) for a in BODY_ALIASES if _text(row.get(a))), "")
    text = _text(row.get("text"))
    if not (subject.strip() or body.strip() or text.strip()):
        return None
    rid = _text(row.get("id")).strip()
    if not rid:
        rid = "row-" + hashlib.sha1(f"{subject}\n{body}\n{text}".encode("utf-8")).hexdigest()[:16]
    t: dict[str, Any] = {"id": rid, "subject": subject, "body": body, "text": text}
    for k in ("language", "channel", "urgency", "requester"):
        v = _scalar(row.get(k))
        if v not in (None, ""):
            t[k] = str(v)
    ca = _scalar(row.get("created_at"))
    if ca not in (None, ""):
        t["created_at"] = ca.isoformat() if hasattr(ca, "isoformat") else str(ca)
    tags = row.get("tags")
    if isinstance(tags, str) and tags:
        t["tags"] = [x for x in tags.replace(";", ",").split(",") if x.strip()]
    elif isinstance(tags, (list, tuple, np.ndarray)):
        t["tags"] = [str(x) for x in tags if x is not None]
    return t


def _safe_created(t: dict[str, Any]) -> dict[str, Any]:
    """``Ticket.from_dict`` parses ISO dates; an unparsable one is dropped (not a decision input
    worth failing a batch for)."""
    from datetime import datetime

    ca = t.get("created_at")
    if isinstance(ca, str):
        try:
            datetime.fromisoformat(ca)
        except ValueError:
            t = {k: v for k, v in t.items() if k != "created_at"}
    return t


def decide_records(triage: Any, records: Iterable[Mapping[str, Any]],
                   batch_size: int = 256) -> list[dict[str, Any]]:
    """Decision rows (:data:`DECISION_COLUMNS`) for input rows, one per row, in order."""
    rows = list(records)
    tickets = [row_to_ticket(r) for r in rows]
    out: list[dict[str, Any] | None] = [None] * len(rows)
    todo = [(i, _safe_created(t)) for i, t in enumerate(tickets) if t is not None]
    version = getattr(triage, "model_version", None)
    for s in range(0, len(todo), batch_size):
        part = todo[s:s + batch_size]
        for (i, t), d in zip(part, triage.decide([t for _, t in part])):
            out[i] = {"id": t["id"], "topic": d.topic, "band": d.band,
                      "confidence": float(d.confidence), "urgency": d.urgency,
                      "reason": d.reason, "source": d.source,
                      "model_version": d.model_version or version}
    for i, r in enumerate(rows):
        if out[i] is None:
            out[i] = {"id": _text(r.get("id")) or None, "topic": None, "band": "rejected",
                      "confidence": 0.0, "urgency": None, "reason": "missing_body",
                      "source": "input", "model_version": version}
    return out  # type: ignore[return-value]


def decide_chunk(triage: Any, frame: Any, batch_size: int = 256) -> Any:
    """A pandas frame of input rows -> a pandas frame of decision rows (same length)."""
    import pandas as pd

    cols = [c for c in frame.columns if c in TICKET_FIELDS or c in BODY_ALIASES]
    records = frame[cols].to_dict("records") if len(frame) else []
    rows = decide_records(triage, records, batch_size)
    out = pd.DataFrame(rows, columns=list(DECISION_COLUMNS))
    out["confidence"] = out["confidence"].astype("float64")
    return out
