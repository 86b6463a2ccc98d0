"""Secondary tags: multi-label (one-vs-rest) tagging for search and analytics.

The primary topic stays single-label for routing; where the training history carries several
tags per ticket (e.g. "Security", "Outage", "Data Breach"), this model proposes the tags whose
probability clears ``threshold`` (at most ``max_tags``). Saved as ``secondary.npz`` through
:mod:`ticket_triage.models.safe_io` (no pickle, linear in size); ``secondary.skops`` files
saved by earlier versions still load with skops' trusted types.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

import numpy as np

TRUSTED = [
    "sklearn.pipeline.Pipeline",
    "sklearn.feature_extraction.text.TfidfVectorizer",
    "sklearn.multiclass.OneVsRestClassifier",
    "sklearn.linear_model._logistic.LogisticRegression",
    "sklearn.preprocessing._label.LabelBinarizer",
]


def is_multilabel(tag_lists: Sequence[Sequence[str]], min_share: float = 0.1) -> bool:
    """True when at least ``min_share`` of tickets carry two or more tags."""
    if not tag_lists:
        return False
    return sum(1 for t in tag_lists if len(set(t)) >= 2) / len(tag_lists) >= min_share


class SecondaryTagger:
    def __init__(self, min_count: int = 20, threshold: float = 0.5, max_tags: int = 3, C: float = 4.0,
                 seed: int = 0):
        self.min_count, self.threshold, self.max_tags, self.C, self.seed = min_count, threshold, max_tags, C, seed
        self.tags: list[str] = []
        self.pipeline: Any = None

    def fit(self, texts: Sequence[str], tag_lists: Sequence[Sequence[str]]) -> "SecondaryTagger":
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.multiclass import OneVsRestClassifier
        from sklearn.pipeline import Pipeline

        counts = Counter(t for tl in tag_lists for t in set(tl))
        self.tags = sorted(t for t, c in counts.items() if c >= self.min_count and c < len(texts))
        if len(self.tags) < 1:
            raise ValueError(f"no tag occurs in at least {self.min_count} (and not all) training tickets")
        y = np.array([[t in set(tl) for t in self.tags] for tl in tag_lists], dtype=int)
        self.pipeline = Pipeline([
            ("tfidf", TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True, max_features=50000)),
            ("ovr", OneVsRestClassifier(LogisticRegression(C=self.C, max_iter=2000, class_weight="balanced",
                                                           random_state=self.seed))),
        ])
        self.pipeline.fit(list(texts), y)
        return self

    def predict(self, texts: Sequence[str]) -> list[list[str]]:
        if not len(texts):
            return []
        p = np.atleast_2d(self.pipeline.predict_proba(list(texts)))
        out = []
        for row in p:
            idx = [i for i in np.argsort(-row) if row[i] >= self.threshold][: self.max_tags]
            out.append([self.tags[i] for i in idx])
        return out

    def save(self, path: str | Path) -> Path:
        from ticket_triage.models.base import save_sklearn

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        save_sklearn(self.pipeline, path / "secondary.npz")
        (path / "secondary.json").write_text(json.dumps(
            {"tags": self.tags, "threshold": self.threshold, "max_tags": self.max_tags, "min_count": self.min_count,
             "C": self.C, "seed": self.seed}, indent=2))
        return path

    @classmethod
    def load(cls, path: str | Path) -> "SecondaryTagger":
        from ticket_triage.models.base import load_sklearn

        path = Path(path)
        meta = json.loads((path / "secondary.json").read_text())
        m = cls(meta["min_count"], meta["threshold"], meta["max_tags"], meta["C"], meta["seed"])
        m.tags = list(meta["tags"])
        m.pipeline = load_sklearn(path / "secondary.npz", path / "secondary.skops", TRUSTED)
        return m
