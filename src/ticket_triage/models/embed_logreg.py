"""Frozen sentence embeddings (all-MiniLM-L6-v2 by default) + logistic regression.

The encoder is not trained, so it is not copied into the saved model: ``params["encoder"]``
records which one was used ("default" = the packaged MiniLM, a local directory recorded as
an absolute path, or a hub name). Only the head is saved, as ``head.npz``
(:mod:`ticket_triage.models.safe_io`, no pickle).

``backend`` says what runs the encoder: ``torch`` (sentence-transformers), ``onnx`` (ONNX
Runtime, the same float32 weights: the same embeddings, several times faster on CPU) or
``onnx-int8`` (quantized: faster again, slightly different embeddings). It is saved with the
model, so a model is always served with the backend it was trained with
(:mod:`ticket_triage.models.onnx_encoder`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ticket_triage.models.base import (
    Classifier,
    check_training_data,
    load_sklearn,
    merged_params,
    save_sklearn,
)

HEAD_FILE = "head.npz"
LEGACY_HEAD_FILE = "head.skops"  # saved by versions before safe_io: still loads
TRUSTED_TYPES: list[str] = ["sklearn.linear_model._logistic.LogisticRegression"]

DEFAULTS: dict[str, Any] = {
    "encoder": "default",
    "backend": "torch",  # torch | onnx (same float32 weights, faster on CPU) | onnx-int8
    "batch_size": 64,
    "normalize": True,
    "C": 10.0,
    "max_iter": 3000,
    "class_weight": None,
    "seed": 42,
    "device": "cpu",
}


class EmbedLogReg(Classifier):
    """Sentence-transformer embeddings, multinomial logistic regression head."""

    family = "embed_logreg"
    cheap_refit = True

    def __init__(self, **params: Any):
        from ticket_triage.models.encoder import BACKENDS

        super().__init__(**merged_params(DEFAULTS, params, self.family))
        if self.params["backend"] not in BACKENDS:
            raise ValueError(f"embed_logreg: backend must be one of {', '.join(BACKENDS)}, "
                             f"got {self.params['backend']!r}")
        enc = self.params["encoder"]
        if enc and enc != "default" and Path(str(enc)).expanduser().is_dir():
            # record a custom local encoder by absolute path so a saved model finds it again
            self.params["encoder"] = str(Path(enc).expanduser().resolve())
        self.head = None

    # -- embeddings ------------------------------------------------------------------------
    def _encoder(self) -> Any:
        from ticket_triage.models.encoder import load_encoder

        return load_encoder(self.params["encoder"], self.params.get("device", "cpu"),
                            self.params.get("backend", "torch"))

    def embed(self, texts: Sequence[str], *, progress: bool = False) -> np.ndarray:
        """L2-normalized sentence embeddings (always normalized, whatever ``normalize`` says:
        neighbours, out-of-scope scores and drift use cosine geometry)."""
        from ticket_triage.models.encoder import encode

        return encode(texts, self._encoder(), batch_size=self.params["batch_size"], normalize=True,
                      progress=progress, cache=True)

    def _features(self, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        from ticket_triage.models.encoder import encode

        return encode(texts, self._encoder(), batch_size=self.params["batch_size"],
                      normalize=bool(self.params["normalize"]), progress=progress, cache=True)

    # -- training / prediction -------------------------------------------------------------
    def fit_embeddings(self, emb: np.ndarray, labels: Sequence[str]) -> "EmbedLogReg":
        """Fit the head on precomputed features (as ``_features`` makes them); lets sweeps
        embed a data set once and try several C / class_weight values."""
        from sklearn.linear_model import LogisticRegression

        check_training_data(emb, labels)
        p = self.params
        self.head = LogisticRegression(C=float(p["C"]), max_iter=int(p["max_iter"]),
                                       class_weight=p["class_weight"], random_state=int(p["seed"]))
        self.head.fit(np.asarray(emb, dtype=np.float64), [str(y) for y in labels])
        self.labels = [str(c) for c in self.head.classes_]
        return self

    def fit(self, texts: Sequence[str], labels: Sequence[str], *, progress: bool = True) -> "EmbedLogReg":
        check_training_data(texts, labels)
        return self.fit_embeddings(self._features(texts, progress=progress), labels)

    def predict_proba_embeddings(self, emb: np.ndarray) -> np.ndarray:
        self._require_fitted()
        return self.head.predict_proba(np.asarray(emb, dtype=np.float64))

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        self._require_fitted()
        if len(texts) == 0:
            return np.zeros((0, len(self.labels)))
        return self.predict_proba_embeddings(self._features(texts))

    def _require_fitted(self) -> None:
        if self.head is None:
            raise RuntimeError("embed_logreg: the model is not trained; call fit() or load_classifier() first")

    # -- persistence -------------------------------------------------------------------------
    def _save_weights(self, path: Path) -> None:
        self._require_fitted()
        save_sklearn(self.head, path / HEAD_FILE)

    @classmethod
    def _load_weights(cls, path: Path, params: dict[str, Any]) -> "EmbedLogReg":
        clf = cls(**params)
        clf.head = load_sklearn(path / HEAD_FILE, path / LEGACY_HEAD_FILE, TRUSTED_TYPES)
        clf.labels = [str(c) for c in clf.head.classes_]
        return clf
