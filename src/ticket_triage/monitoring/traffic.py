"""What continuous evaluation reads: ticket files (JSONL or CSV), reviewer corrections and audit
samples (``data/feedback``), the drift reference (training tickets), and a decided frame of a
set of tickets (topic, confidence, out-of-scope flag, embeddings).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ticket_triage.data import iter_jsonl
from ticket_triage.models.embeddings import CachedClassifier
from ticket_triage.config import ContinuousConfig


def read_tickets_file(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a JSONL or CSV ticket file (each needs ``text``, or ``subject``/``body``)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"recent traffic file {p} not found: set monitor.continuous.recent_path "
                                "to a JSONL/CSV of recent tickets (null uses the test split)")
    if p.suffix.lower() == ".csv":
        import pandas as pd

        frame = pd.read_csv(p, dtype=str, keep_default_na=False)
        rows = [{k: (v if v != "" else None) for k, v in r.items()} for r in frame.to_dict(orient="records")]
    elif p.suffix.lower() in (".jsonl", ".ndjson", ".json"):
        rows = list(iter_jsonl(p))
    else:
        raise ValueError(f"{p}: recent traffic must be .jsonl or .csv")
    if rows and not any(k in rows[0] for k in ("text", "body", "subject")):
        raise ValueError(f"{p}: rows need a 'text' column (or 'subject'/'body'); got {sorted(rows[0])}")
    for i, r in enumerate(rows):
        r["id"] = str(r.get("id") or f"row{i}")
    return rows


def feedback_rows(feedback_dir: str | Path) -> list[dict[str, Any]]:
    """Recent labelled traffic: the newest reviewer verdict per ticket (corrections and audit
    samples) that carries text, as ``{id, text, topic, predicted_topic, overridden, audit,
    corrected_at}``."""
    from ticket_triage.review.feedback import read_feedback

    rows = []
    for tid, rec in sorted(read_feedback(feedback_dir).items()):
        text = (rec.get("text") or "").strip()
        if not text:
            continue
        pred = rec.get("predicted_topic")
        overridden = rec.get("action") == "correct" or (pred is not None and pred != rec["topic"])
        rows.append({"id": tid, "text": text, "topic": rec["topic"], "predicted_topic": pred,
                     "overridden": bool(overridden), "audit": rec.get("source") == "audit",
                     "corrected_at": rec.get("corrected_at"), "language": rec.get("language")})
    return rows


def _sample(rows: list[dict[str, Any]], n: int | None, seed: int, newest: bool = False) -> list[dict[str, Any]]:
    if not n or len(rows) <= n:
        return rows
    if newest and all(r.get("created_at") for r in rows):
        return sorted(rows, key=lambda r: str(r["created_at"]))[-n:]
    pick = np.sort(np.random.default_rng(seed).choice(len(rows), n, replace=False))
    return [rows[i] for i in pick]


def reference_rows(triage: Any, cc: ContinuousConfig, split_dir: Path, seed: int) -> tuple[list[dict[str, Any]], str]:
    """Reference tickets for drift and where they came from: ``monitor.continuous.reference_path``
    when set; else the training tickets stored in the bundle with their embeddings
    (``neighbours``: a sample of the train split the model was fitted on, no encoding needed);
    else the train split file (families without embeddings). At most ``reference_max_rows``."""
    nb = getattr(triage, "neighbours", None)
    if cc.reference_path is None and nb is not None and len(nb.texts) and isinstance(triage.classifier, CachedClassifier):
        triage.classifier.seed(nb.texts, nb.emb)
        rows = [{"id": f"train-sample-{i}", "text": t} for i, t in enumerate(nb.texts)]
        return _sample(rows, cc.reference_max_rows, seed), "training tickets stored in the bundle (neighbours)"
    path = Path(cc.reference_path or split_dir / "train.jsonl")
    return _sample(read_tickets_file(path), cc.reference_max_rows, seed), str(path)


# -- scoring unlabelled traffic ---------------------------------------------------------------
def decide_frame(triage: Any, rows: Sequence[Mapping[str, Any]], *, embed_max: int | None = None,
                 seed: int = 0) -> tuple[Any, list[Any]]:
    """Decide ``rows`` and build the drift frame: id, text, predicted, confidence,
    out_of_scope (and ``embedding`` when the model family has embeddings).

    ``embed_max``: embed at most that many rows (a seeded random sample; the others get None).
    The embedding drift test subsamples each side to ``monitor.drift.embedding.max_samples``
    anyway, so embedding 100,000 recent tickets to use 2,000 of them was most of a continuous
    evaluation's time once the cascade decided most tickets without the encoder."""
    import pandas as pd

    from ticket_triage.schema import Ticket

    tickets = [Ticket.from_dict({k: v for k, v in r.items() if k != "topic"}) for r in rows]
    texts = [t.text or triage.clean(t) for t in tickets]
    for t, x in zip(tickets, texts):
        t.text = x
    decisions = triage.decide(tickets)
    frame = pd.DataFrame({"id": [t.id for t in tickets], "text": texts,
                          "predicted": [d.topic for d in decisions],
                          "confidence": [float(d.confidence) for d in decisions],
                          "out_of_scope": [d.reason == "out_of_scope" for d in decisions]})
    idx = np.arange(len(texts))
    if embed_max is not None and len(texts) > embed_max:
        idx = np.sort(np.random.default_rng(seed).choice(len(texts), int(embed_max), replace=False))
    emb = triage.classifier.embed([texts[i] for i in idx]) if len(idx) else None
    if emb is not None:
        col: list[Any] = [None] * len(texts)
        for i, e in zip(idx, emb):
            col[int(i)] = e
        frame["embedding"] = col
    return frame, decisions
