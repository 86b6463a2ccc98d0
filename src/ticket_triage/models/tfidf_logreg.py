"""TF-IDF (word n-grams + character n-grams within word boundaries) + logistic regression.

The cheapest family: trains on a few thousand tickets in seconds on one core, no encoder.
Saved as ``model.npz`` (:mod:`ticket_triage.models.safe_io`: arrays + a JSON manifest, never
pickle, linear in the vocabulary size) next to ``classifier.json``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

if TYPE_CHECKING:
    from ticket_triage.models.lean_sparse import LeanTfidfLogReg

from ticket_triage.models.base import (
    Classifier,
    check_training_data,
    load_sklearn,
    merged_params,
    save_sklearn,
)

WEIGHTS_FILE = "model.npz"
LEGACY_FILE = "model.skops"  # saved by versions before safe_io: still loads

# For models saved with skops by earlier versions: the types a fitted TF-IDF +
# LogisticRegression pipeline is made of. skops trusts public
# scikit-learn estimators and numpy/scipy containers by default; we still name ours so the
# trust is explicit. Anything else in the file (a function, a custom class) makes load raise.
TRUSTED_TYPES: list[str] = [
    "sklearn.pipeline.Pipeline",
    "sklearn.pipeline.FeatureUnion",
    "sklearn.feature_extraction.text.TfidfVectorizer",
    "sklearn.linear_model._logistic.LogisticRegression",
]

DEFAULTS: dict[str, Any] = {
    "word_ngrams": [1, 2],
    "char_ngrams": [2, 5],
    "max_features": 200000,
    "min_df": 1,
    "sublinear_tf": True,
    "C": 10.0,
    "max_iter": 2000,
    "class_weight": None,
    "solver": "lbfgs",
    "seed": 42,
}


class TfidfLogReg(Classifier):
    """Word + char_wb TF-IDF features, multinomial logistic regression (lbfgs or saga)."""

    family = "tfidf_logreg"
    cheap_refit = True
    refit_scales_with_text = True

    def __init__(self, **params: Any):
        super().__init__(**merged_params(DEFAULTS, params, self.family))
        if self.params["solver"] not in ("lbfgs", "saga"):
            raise ValueError(f"tfidf_logreg: solver must be 'lbfgs' or 'saga', got {self.params['solver']!r}")
        self.pipeline = None

    def _build(self):
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import FeatureUnion, Pipeline

        p = self.params
        common = {"min_df": p["min_df"], "sublinear_tf": p["sublinear_tf"], "lowercase": True,
                  "max_features": p["max_features"], "dtype": np.float64}
        features = FeatureUnion([
            ("word", TfidfVectorizer(analyzer="word", ngram_range=tuple(p["word_ngrams"]),
                                     token_pattern=r"(?u)\b\w+\b", **common)),
            ("char", TfidfVectorizer(analyzer="char_wb", ngram_range=tuple(p["char_ngrams"]), **common)),
        ])
        clf = LogisticRegression(C=float(p["C"]), max_iter=int(p["max_iter"]), solver=p["solver"],
                                 class_weight=p["class_weight"], random_state=int(p["seed"]))
        return Pipeline([("features", features), ("clf", clf)])

    def fit(self, texts: Sequence[str], labels: Sequence[str], *, progress: bool = True) -> "TfidfLogReg":
        check_training_data(texts, labels)
        self.pipeline = self._build()
        self.pipeline.fit(list(texts), [str(y) for y in labels])
        self.labels = [str(c) for c in self.pipeline.classes_]
        assert self.labels == sorted(self.labels)
        column_major_head(self.pipeline.named_steps["clf"])
        return self

    def _require_fitted(self) -> None:
        if self.pipeline is None:
            raise RuntimeError("tfidf_logreg: the model is not trained; call fit() or load_classifier() first")

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        self._require_fitted()
        if len(texts) == 0:
            return np.zeros((0, len(self.labels)))
        lean = self.lean()
        return lean.predict_proba(list(texts)) if lean is not None else self.pipeline.predict_proba(list(texts))

    def lean(self) -> "LeanTfidfLogReg | None":
        """The inference-only twin of the fitted pipeline (built once per fitted pipeline;
        None where it cannot be exact: :mod:`ticket_triage.models.lean_sparse`)."""
        from ticket_triage.models.lean_sparse import cached_lean

        self._require_fitted()
        return cached_lean(self, self.pipeline)

    def _save_weights(self, path: Path) -> None:
        self._require_fitted()
        save_sklearn(self.pipeline, path / WEIGHTS_FILE)

    @classmethod
    def _load_weights(cls, path: Path, params: dict[str, Any]) -> "TfidfLogReg":
        clf = cls(**params)
        clf.pipeline = load_sklearn(path / WEIGHTS_FILE, path / LEGACY_FILE, TRUSTED_TYPES)
        clf.labels = [str(c) for c in clf.pipeline.classes_]
        column_major_head(clf.pipeline.named_steps["clf"])
        return clf


def column_major_head(head: Any) -> Any:
    """Store a linear head's ``coef_`` column-major, so ``coef_.T`` is C-contiguous.

    scikit-learn scores sparse TF-IDF rows as ``X @ coef_.T``; scipy's sparse-times-dense
    product needs a C-contiguous right-hand side and copies ``coef_.T`` on every call
    otherwise: (n_features x n_labels) floats, e.g. 16 MB for 200k features and 10 topics,
    which made a one-ticket decision cost ~0.6 ms per head before any text was read. Same
    values, same predictions; only the memory layout changes."""
    coef = getattr(head, "coef_", None)
    if isinstance(coef, np.ndarray) and coef.ndim == 2 and not coef.flags.f_contiguous:
        head.coef_ = np.asfortranarray(coef)
    return head
