"""An ensemble of classifier families that averages their probabilities.

The frozen MiniLM embeddings and TF-IDF n-grams make different mistakes (paraphrase vs exact
wording: "top up" and "top-up" look alike to characters, "my card got eaten" and "the ATM
kept my card" to the encoder), so their geometric mean beats either alone (BANKING77 intents:
embed_logreg 93.3%, tfidf_logreg 91.7%, the two together 94.1%; see benchmarks/README.md).

``members`` is a list of model configs, each with its ``family`` and hyperparameters (as in
``conf/model/<family>.yaml``); ``combine`` is ``geometric`` (mean log-probability,
renormalised; the default) or ``mean``; ``weights`` optionally weighs the members (default
equal). Each member is saved in ``members/<i>/`` in its own safe format and loaded through
the one registry. ``embed`` comes from the first member that has embeddings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ticket_triage.models.base import Classifier, check_training_data, merged_params

DEFAULTS: dict[str, Any] = {"members": [{"family": "embed_logreg"}, {"family": "tfidf_logreg"}],
                            "combine": "geometric", "weights": None, "seed": 42}
COMBINE = ("geometric", "mean")
MEMBERS_DIR = "members"
_EPS = 1e-12


class EnsembleClassifier(Classifier):
    """Probability-averaging ensemble of other families (see the module docstring)."""

    family = "ensemble"

    def __init__(self, **params: Any):
        from ticket_triage.models import build_classifier

        super().__init__(**merged_params(DEFAULTS, params, self.family))
        p = self.params
        members = [dict(m) for m in (p["members"] or [])]
        if len(members) < 2:
            raise ValueError("ensemble: give at least two members (each a model config with a 'family'), "
                             "see conf/model/ensemble.yaml")
        if any(not m.get("family") or m["family"] == self.family for m in members):
            raise ValueError("ensemble: every member needs a 'family' other than 'ensemble'")
        if p["combine"] not in COMBINE:
            raise ValueError(f"ensemble: combine must be one of {', '.join(COMBINE)}, got {p['combine']!r}")
        w = p["weights"]
        if w is not None and (len(w) != len(members) or min(float(x) for x in w) < 0 or sum(map(float, w)) <= 0):
            raise ValueError(f"ensemble: weights must be {len(members)} non-negative numbers with a positive sum")
        # a member inherits the ensemble's seed unless it sets its own
        self.members: list[Classifier] = [
            build_classifier(m["family"], **{"seed": p["seed"], **{k: v for k, v in m.items() if k != "family"}})
            for m in members]
        p["members"] = members  # as configured: fresh() and load rebuild the same members

    @property
    def cheap_refit(self) -> bool:  # type: ignore[override]
        return all(getattr(m, "cheap_refit", False) for m in self.members)

    @property
    def refit_scales_with_text(self) -> bool:  # type: ignore[override]
        return any(getattr(m, "refit_scales_with_text", False) for m in self.members)

    def _weights(self) -> np.ndarray:
        w = np.ones(len(self.members)) if self.params["weights"] is None else np.asarray(self.params["weights"], float)
        return w / w.sum()

    def fit(self, texts: Sequence[str], labels: Sequence[str], *, progress: bool = True) -> "EnsembleClassifier":
        check_training_data(texts, labels)
        for m in self.members:
            m.fit(texts, labels, progress=progress)
        first = self.members[0].labels
        if any(m.labels != first for m in self.members[1:]):
            raise RuntimeError("ensemble: members learned different label sets; this is a bug in a member family")
        self.labels = list(first)
        return self

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        if not self.labels:
            raise RuntimeError("ensemble: the model is not trained; call fit() or load_classifier() first")
        if len(texts) == 0:
            return np.zeros((0, len(self.labels)))
        w = self._weights()
        probs = [m.predict_proba(texts) for m in self.members]
        if self.params["combine"] == "mean":
            return sum(wi * p for wi, p in zip(w, probs))
        logp = sum(wi * np.log(np.clip(p, _EPS, 1.0)) for wi, p in zip(w, probs))
        logp -= logp.max(axis=1, keepdims=True)
        out = np.exp(logp)
        return out / out.sum(axis=1, keepdims=True)

    def embed(self, texts: Sequence[str]) -> np.ndarray | None:
        for m in self.members:
            e = m.embed(texts)
            if e is not None:
                return e
        return None

    def _save_weights(self, path: Path) -> None:
        if not self.labels:
            raise RuntimeError("ensemble: the model is not trained; nothing to save")
        for i, m in enumerate(self.members):
            m.save(path / MEMBERS_DIR / str(i))

    @classmethod
    def _load_weights(cls, path: Path, params: dict[str, Any]) -> "EnsembleClassifier":
        from ticket_triage.models import load_classifier

        clf = cls(**params)
        clf.members = [load_classifier(path / MEMBERS_DIR / str(i)) for i in range(len(clf.members))]
        clf.labels = list(clf.members[0].labels)
        return clf
