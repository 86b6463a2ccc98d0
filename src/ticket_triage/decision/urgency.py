"""Ticket urgency (P0..P3): rules first, then an optional model, then the taxonomy default.

``resolve_urgency(rule_urgency, model_urgency, taxonomy_default)``: the model's level (when it
has one) replaces the taxonomy default; a rule level can only make the result *more* urgent
("raise_urgency": the decision takes the more urgent of the rule's level and the rest), so a
rule can never be talked down by the model.

``UrgencyModel`` is optional, for data that carries an urgency/priority column (e.g.
helpdesk-synthetic ``priority`` high/medium/low): TF-IDF (word + char n-grams) + logistic
regression, with ``label_map`` translating source values to P-levels and ``min_confidence``
below which it abstains (returns None, so the taxonomy default applies).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

URGENCY_ORDER: tuple[str, ...] = ("P0", "P1", "P2", "P3")
DEFAULT_LABEL_MAP: dict[str, str] = {"critical": "P0", "urgent": "P0", "high": "P1",
                                     "medium": "P2", "normal": "P2", "low": "P3"}


def _valid(level: Any) -> str | None:
    return level if isinstance(level, str) and level in URGENCY_ORDER else None


def resolve_urgency(rule_urgency: str | None, model_urgency: str | None,
                    taxonomy_default: str | None = "P3") -> str:
    """Rules first (can only raise), then the model, then the taxonomy default (then P3)."""
    base = _valid(model_urgency) or _valid(taxonomy_default) or "P3"
    rule = _valid(rule_urgency)
    if rule is None:
        return base
    return rule if URGENCY_ORDER.index(rule) <= URGENCY_ORDER.index(base) else base


class UrgencyModel:
    """TF-IDF + logistic regression urgency classifier with an abstain threshold."""

    def __init__(self, label_map: Mapping[str, str] | None = None, min_confidence: float = 0.0,
                 C: float = 4.0, max_features: int = 50000, seed: int = 0):
        self.label_map = {str(k).lower(): v for k, v in (label_map or DEFAULT_LABEL_MAP).items()}
        bad = {k: v for k, v in self.label_map.items() if v not in URGENCY_ORDER}
        if bad:
            raise ValueError(f"label_map values must be P0..P3, got {bad}")
        self.min_confidence = float(min_confidence)
        self.C = float(C)
        self.max_features = int(max_features)
        self.seed = int(seed)
        self.pipeline: Any = None
        self.labels: list[str] = []

    def _map(self, labels: Sequence[Any]) -> list[str]:
        out = []
        for v in labels:
            s = str(v).strip()
            lvl = s if s in URGENCY_ORDER else self.label_map.get(s.lower())
            if lvl is None:
                raise ValueError(f"urgency label {v!r} is neither P0..P3 nor in label_map "
                                 f"({', '.join(self.label_map)}); extend label_map")
            out.append(lvl)
        return out

    def fit(self, texts: Sequence[str], labels: Sequence[Any]) -> "UrgencyModel":
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import FeatureUnion, Pipeline

        y = self._map(labels)
        if len(texts) != len(y):
            raise ValueError(f"{len(texts)} texts but {len(y)} urgency labels")
        if len(set(y)) < 2:
            raise ValueError("urgency training data has fewer than two levels; the model needs two or more "
                             "(or skip it: the taxonomy default applies)")
        feats = FeatureUnion([
            ("word", TfidfVectorizer(ngram_range=(1, 2), min_df=1, sublinear_tf=True,
                                     max_features=self.max_features)),
            ("char", TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), min_df=2, sublinear_tf=True,
                                     max_features=self.max_features)),
        ])
        self.pipeline = Pipeline([("tfidf", feats),
                                  ("lr", LogisticRegression(C=self.C, max_iter=2000,
                                                            class_weight="balanced", random_state=self.seed))])
        self.pipeline.fit(list(texts), y)
        self.labels = [str(c) for c in self.pipeline.classes_]
        return self

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        if self.pipeline is None:
            raise RuntimeError("UrgencyModel is not fitted: call fit(texts, labels) or load(path)")
        from ticket_triage.models.lean_sparse import cached_lean

        lean = cached_lean(self, self.pipeline)  # same probabilities without sklearn's per-call overhead
        return lean.predict_proba(list(texts)) if lean is not None else self.pipeline.predict_proba(list(texts))

    def predict(self, texts: Sequence[str]) -> list[str | None]:
        """P-level per text, or None where the model's confidence is below ``min_confidence``."""
        if len(texts) == 0:
            return []
        p = self.predict_proba(texts)
        idx = p.argmax(axis=1)
        return [self.labels[i] if p[r, i] >= self.min_confidence else None for r, i in enumerate(idx)]

    def save(self, path: str | Path) -> Path:
        from ticket_triage.models.base import save_sklearn

        if self.pipeline is None:
            raise RuntimeError("nothing to save: the urgency model is not fitted")
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        save_sklearn(self.pipeline, path / "urgency.npz")
        (path / "urgency.json").write_text(json.dumps(
            {"label_map": self.label_map, "min_confidence": self.min_confidence, "C": self.C,
             "max_features": self.max_features, "seed": self.seed, "labels": self.labels}, indent=2))
        return path

    @classmethod
    def load(cls, path: str | Path) -> "UrgencyModel":
        path = Path(path)
        meta_file = path / "urgency.json"
        if not meta_file.is_file():
            raise FileNotFoundError(f"no urgency model at {path} (expected urgency.json + urgency.npz)")
        meta = json.loads(meta_file.read_text())
        m = cls(meta["label_map"], meta["min_confidence"], meta["C"], meta["max_features"], meta["seed"])
        if (path / "urgency.npz").is_file() or not (path / "urgency.skops").is_file():
            from ticket_triage.models.base import load_sklearn

            m.pipeline = load_sklearn(path / "urgency.npz")
        else:  # saved by an earlier version with skops
            import skops.io as sio

            untrusted = sio.get_untrusted_types(file=path / "urgency.skops")
            allowed = [t for t in untrusted if t.startswith(("sklearn.", "numpy.", "scipy."))]
            unknown = sorted(set(untrusted) - set(allowed))
            if unknown:
                raise ValueError(f"urgency.skops contains types that are not trusted: {unknown}")
            m.pipeline = sio.load(path / "urgency.skops", trusted=allowed)
        m.labels = list(meta["labels"])
        return m
