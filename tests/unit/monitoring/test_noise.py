"""Confident learning: hand-checked joint, and injected label flips are found."""

from __future__ import annotations

import numpy as np
import pytest

from ticket_triage.monitoring.noise import audit_labels, confident_joint, cross_val_proba, overlapping_label_pairs


def test_confident_joint_hand_computed():
    proba = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.2, 0.8], [0.9, 0.1]])
    given = [0, 0, 1, 1, 1]
    # t0 = (0.9 + 0.8) / 2 = 0.85; t1 = (0.7 + 0.8 + 0.1) / 3 = 0.533
    cj, suggested = confident_joint(proba, given)
    assert suggested.tolist() == [0, -1, 1, 1, 0]  # row 1 clears no threshold
    assert cj.tolist() == [[1, 0], [1, 2]]


def test_overlapping_label_pairs_hand_computed():
    cj = np.array([[10, 2, 0], [3, 8, 1], [0, 0, 5]])
    pairs = overlapping_label_pairs(cj, ["a", "b", "c"])
    assert [(p["label_a"], p["label_b"], p["count"]) for p in pairs] == [("a", "b", 5), ("b", "c", 1)]
    assert pairs[0]["share"] == pytest.approx(5 / 29)
    assert (pairs[0]["a_to_b"], pairs[0]["b_to_a"]) == (2, 3)
    with pytest.raises(ValueError, match="labels"):
        overlapping_label_pairs(cj, ["a", "b"])


def _synthetic(n=400, flip=20, seed=0):
    rng = np.random.default_rng(seed)
    classes = ["billing", "login", "shipping", "refund"]
    vocab = {c: [f"{c[:3]}{j}" for j in range(10)] for c in classes}
    filler = [f"w{j}" for j in range(40)]
    labels = rng.choice(classes, n)
    texts = [" ".join(list(rng.choice(vocab[c], 6)) + list(rng.choice(filler, 6))) for c in labels]
    given = labels.copy()
    flipped = rng.choice(n, flip, replace=False)
    for i in flipped:
        given[i] = rng.choice([c for c in classes if c != labels[i]])
    return [f"t{i}" for i in range(n)], texts, list(given), set(f"t{i}" for i in flipped), labels


def _fast_classifier():
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    return make_pipeline(TfidfVectorizer(), LogisticRegression(C=1.0, max_iter=200))


def test_audit_finds_injected_flips():
    recalls, precisions = [], []
    for seed in range(3):
        ids, texts, given, flipped, truth = _synthetic(seed=seed)
        audit = audit_labels(ids, texts, given, folds=5, max_threads=1)  # default TF-IDF + LR
        found = set(audit.issues["id"])
        recalls.append(len(found & flipped) / len(flipped))
        precisions.append(len(found & flipped) / max(len(found), 1))
        by_id = dict(zip(ids, truth))
        top = audit.issues.head(10)
        # the top-ranked suspects are flips, and the suggestion is the original label
        assert sum(by_id[i] == s for i, s in zip(top["id"], top["suggested_label"])) >= 9
        assert audit.issues["margin"].is_monotonic_decreasing
        assert audit.estimated_noise_rate == pytest.approx(len(found) / 400)
    print(f"noise audit over 3 seeds (20 flips in 400): recall {recalls}, precision {precisions}")
    assert np.mean(recalls) >= 0.8 and min(recalls) >= 0.7
    assert min(precisions) >= 0.9
    assert set(audit.issues.columns) >= {"id", "given_label", "suggested_label", "confidence"}
    assert audit.to_dict()["n"] == 400


def test_confident_joint_method_flags_off_diagonal_only():
    ids, texts, given, flipped, _ = _synthetic(seed=0)
    audit = audit_labels(ids, texts, given, make_classifier=_fast_classifier, folds=4, max_threads=1,
                         method="confident_joint")
    off_diagonal = int(audit.confident_joint.sum() - np.trace(audit.confident_joint))
    assert audit.n_flagged == off_diagonal
    assert len(set(audit.issues["id"]) & flipped) >= 14
    with pytest.raises(ValueError, match="unknown audit method"):
        audit_labels(ids, texts, given, method="magic")


def test_cross_val_proba_accepts_a_classifier_factory():
    class Tiny:
        """ticket_triage-style classifier: .labels after fit."""

        def __init__(self):
            self.inner = _fast_classifier()
            self.labels: list[str] = []

        def fit(self, texts, labels):
            self.inner.fit(texts, labels)
            self.labels = list(self.inner.classes_)
            return self

        def predict_proba(self, texts):
            return self.inner.predict_proba(texts)

    ids, texts, given, _, _ = _synthetic(n=80, flip=0)
    proba, classes = cross_val_proba(texts, given, Tiny, folds=3)
    assert proba.shape == (80, 4) and classes == sorted(set(given))
    assert np.allclose(proba.sum(axis=1), 1.0)
    with pytest.raises(ValueError, match="single ticket"):
        cross_val_proba(["a", "b", "c"], ["x", "x", "y"])
