"""Label-noise audit with confident learning (Northcutt et al., 2021), in numpy.

1. ``cross_val_proba`` -- out-of-fold predicted probabilities from any classifier family
   (a factory is passed in; TF-IDF + logistic regression by default).
2. ``confident_joint`` -- per-class thresholds t_j = mean p(j | x) over tickets labelled j; a
   ticket counts towards C[given, j] for the most probable class j with p(j | x) >= t_j.
3. Off-diagonal entries are likely mislabelled tickets; ``audit_labels`` ranks them by the
   margin p(suggested) - p(given) and returns (ticket id, given label, suggested label,
   confidence) for support leads, plus ``overlapping_label_pairs`` (label pairs that are
   often confused in both directions: candidates to merge or to re-describe).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd


def default_classifier() -> Any:
    """TF-IDF (words 1-2) + logistic regression; fast and good enough for the audit."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    return make_pipeline(TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True, max_features=20000),
                         LogisticRegression(C=5.0, max_iter=300))


def _classes_of(clf: Any) -> list[Any]:
    labels = getattr(clf, "labels", None)
    if labels:
        return list(labels)
    classes = getattr(clf, "classes_", None)
    if classes is None:
        raise TypeError(f"{type(clf).__name__} exposes neither .labels nor .classes_ after fit; "
                        "the factory must build a ticket_triage Classifier or a scikit-learn classifier")
    return list(classes)


def cross_val_proba(texts: Sequence[str], labels: Sequence[Any],
                    make_classifier: Callable[[], Any] | None = None, folds: int = 5,
                    seed: int = 0) -> tuple[np.ndarray, list[Any]]:
    """Out-of-fold probabilities, shape (n, n_classes), columns in the returned class order.

    ``make_classifier()`` must return a fresh object with ``fit(texts, labels)`` and
    ``predict_proba(texts)`` (a ticket_triage ``Classifier`` or a scikit-learn estimator).
    Folds are stratified; the fold count is lowered to the smallest class size when needed.
    """
    from sklearn.model_selection import StratifiedKFold

    texts = list(texts)
    y = np.asarray(list(labels), dtype=object)
    if len(texts) != len(y):
        raise ValueError(f"{len(texts)} texts but {len(y)} labels")
    names, counts = np.unique(y.astype(str), return_counts=True)
    classes = sorted(set(y), key=str)
    if len(classes) < 2:
        raise ValueError("the noise audit needs at least two labels")
    k = min(folds, int(counts.min()))
    if k < 2:
        rare = [c for c, n in zip(names, counts) if n < 2]
        raise ValueError(f"label(s) {rare[:5]} have a single ticket; cross-validation needs two or more "
                         "per label: drop or merge them before the audit")
    make_classifier = make_classifier or default_classifier
    index = {c: i for i, c in enumerate(classes)}
    out = np.zeros((len(texts), len(classes)))
    skf = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    for tr, te in skf.split(np.zeros(len(y)), y.astype(str)):
        clf = make_classifier()
        clf.fit([texts[i] for i in tr], list(y[tr]))
        p = np.asarray(clf.predict_proba([texts[i] for i in te]), dtype=float)
        cols = [index[c] for c in _classes_of(clf)]
        out[np.ix_(te, cols)] = p
    out /= np.clip(out.sum(axis=1, keepdims=True), 1e-12, None)
    return out, classes


def per_class_thresholds(proba: np.ndarray, given: np.ndarray) -> np.ndarray:
    """t_j = mean p(j | x) over tickets whose given label is j (inf for absent classes)."""
    k = proba.shape[1]
    t = np.full(k, np.inf)
    for j in range(k):
        rows = given == j
        if rows.any():
            t[j] = proba[rows, j].mean()
    return t


def confident_joint(proba: np.ndarray, given: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Confident joint C (given x suggested counts) and each ticket's suggested class (-1: none).

    ``given`` holds integer class indices into the columns of ``proba``.
    """
    proba = np.asarray(proba, dtype=float)
    g = np.asarray(given, dtype=int)
    if proba.ndim != 2 or len(proba) != len(g):
        raise ValueError(f"proba must be (n, k) with n = len(given); got {proba.shape} and {len(g)}")
    k = proba.shape[1]
    t = per_class_thresholds(proba, g)
    above = proba >= t[None, :]
    masked = np.where(above, proba, -np.inf)
    suggested = np.where(above.any(axis=1), masked.argmax(axis=1), -1)
    cj = np.zeros((k, k), dtype=int)
    ok = suggested >= 0
    np.add.at(cj, (g[ok], suggested[ok]), 1)
    return cj, suggested


def prune_by_noise_rate(proba: np.ndarray, given: Sequence[int], cj: np.ndarray) -> np.ndarray:
    """Suggested class per ticket (-1: keep the label), cleanlab's ``prune_by_noise_rate``.

    The confident joint is calibrated so that each row sums to the number of tickets with
    that given label; for every off-diagonal cell (i, j) the round(C[i, j]) tickets labelled
    i with the largest margin p(j) - p(i) are flagged with suggestion j (a ticket picked by
    several cells keeps the largest margin). This recovers flips whose true class did not
    clear its threshold but is still clearly preferred.
    """
    proba = np.asarray(proba, dtype=float)
    g = np.asarray(given, dtype=int)
    k = proba.shape[1]
    counts = np.bincount(g, minlength=k).astype(float)
    rows = cj.sum(axis=1).astype(float)
    cal = cj * (counts / np.where(rows > 0, rows, 1.0))[:, None]
    suggested = np.full(len(g), -1)
    best = np.full(len(g), -np.inf)
    for i in range(k):
        members = np.nonzero(g == i)[0]
        for j in range(k):
            n = int(round(cal[i, j]))
            if i == j or n == 0 or len(members) == 0:
                continue
            margin = proba[members, j] - proba[members, i]
            top = members[np.argsort(-margin, kind="stable")[:n]]
            m = proba[top, j] - proba[top, i]
            take = (m > best[top]) & (m > 0)  # never flag a ticket whose given label is preferred
            suggested[top[take]] = j
            best[top[take]] = m[take]
    return suggested


def overlapping_label_pairs(confident_joint: np.ndarray, labels: Sequence[Any],
                            top_k: int | None = 10) -> list[dict[str, Any]]:
    """Label pairs ranked by confident confusions in both directions.

    ``count`` = C[a, b] + C[b, a]; ``share`` = count / total tickets in the joint;
    ``a_to_b`` / ``b_to_a`` keep the directions apart.
    """
    cj = np.asarray(confident_joint)
    labels = list(labels)
    if cj.shape != (len(labels), len(labels)):
        raise ValueError(f"confident joint is {cj.shape} but there are {len(labels)} labels")
    total = max(int(cj.sum()), 1)
    pairs = []
    for a in range(len(labels)):
        for b in range(a + 1, len(labels)):
            n = int(cj[a, b] + cj[b, a])
            if n:
                pairs.append({"label_a": labels[a], "label_b": labels[b], "count": n, "share": n / total,
                              "a_to_b": int(cj[a, b]), "b_to_a": int(cj[b, a])})
    pairs.sort(key=lambda d: (-d["count"], str(d["label_a"]), str(d["label_b"])))
    return pairs[:top_k] if top_k is not None else pairs


@dataclass
class NoiseAudit:
    issues: pd.DataFrame            # id, given_label, suggested_label, confidence, self_confidence, margin, text
    confident_joint: np.ndarray
    labels: list[Any]
    overlapping_pairs: list[dict[str, Any]] = field(default_factory=list)
    n: int = 0
    n_flagged: int = 0

    @property
    def estimated_noise_rate(self) -> float:
        """Share of tickets the confident joint puts off the diagonal."""
        return float(self.n_flagged / self.n) if self.n else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"n": self.n, "n_flagged": self.n_flagged, "estimated_noise_rate": self.estimated_noise_rate, "labels": list(self.labels),
                "issues": self.issues.to_dict(orient="records"), "confident_joint": self.confident_joint.tolist(),
                "overlapping_pairs": self.overlapping_pairs}


def audit_labels(ids: Sequence[Any], texts: Sequence[str], labels: Sequence[Any], *,
                 proba: np.ndarray | None = None, classes: Sequence[Any] | None = None,
                 make_classifier: Callable[[], Any] | None = None, folds: int = 5, seed: int = 0,
                 max_rows: int | None = None, top_k: int | None = None,
                 top_pairs: int | None = 10, max_threads: int | None = None,
                 method: str = "prune_by_noise_rate") -> NoiseAudit:
    """Find likely mislabelled tickets.

    Pass out-of-fold ``proba`` (with its ``classes`` column order) to reuse predictions from
    training, or let the audit compute them with ``cross_val_proba``. ``max_rows`` caps the
    number of tickets audited (random, seeded subsample) to bound runtime. Issues are sorted
    by margin p(suggested) - p(given), largest first; ``top_k`` keeps the first k.
    ``max_threads`` caps BLAS/OpenMP threads during the fits (small fits on a busy machine
    run many times faster single-threaded). ``method``: ``prune_by_noise_rate`` (default,
    see ``prune_by_noise_rate``) or ``confident_joint`` (flag exactly the off-diagonal
    tickets of the confident joint: fewer false alarms, lower recall).
    """
    if method not in ("prune_by_noise_rate", "confident_joint"):
        raise ValueError(f"unknown audit method {method!r}; use prune_by_noise_rate or confident_joint")
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=max_threads):
        return _audit(ids, texts, labels, proba, classes, make_classifier, folds, seed, max_rows,
                      top_k, top_pairs, method)


def _audit(ids: Sequence[Any], texts: Sequence[str], labels: Sequence[Any], proba: np.ndarray | None,
           classes: Sequence[Any] | None, make_classifier: Callable[[], Any] | None, folds: int,
           seed: int, max_rows: int | None, top_k: int | None, top_pairs: int | None,
           method: str) -> NoiseAudit:
    ids = [str(i) for i in ids]
    texts, labels = list(texts), list(labels)
    if not (len(ids) == len(texts) == len(labels)):
        raise ValueError(f"ids ({len(ids)}), texts ({len(texts)}) and labels ({len(labels)}) differ in length")
    if max_rows is not None and len(ids) > max_rows:
        if proba is not None:
            raise ValueError("max_rows subsampling cannot be combined with precomputed proba; subsample before")
        pick = np.sort(np.random.default_rng(seed).choice(len(ids), max_rows, replace=False))
        ids, texts, labels = [ids[i] for i in pick], [texts[i] for i in pick], [labels[i] for i in pick]
    if proba is None:
        proba, classes = cross_val_proba(texts, labels, make_classifier, folds=folds, seed=seed)
    elif classes is None:
        raise ValueError("pass classes (the column order of proba) together with proba")
    proba = np.asarray(proba, dtype=float)
    classes = list(classes)
    index = {c: i for i, c in enumerate(classes)}
    missing = sorted({str(v) for v in labels if v not in index})
    if missing:
        raise ValueError(f"given labels missing from the probability columns: {missing[:5]}")
    g = np.array([index[v] for v in labels], dtype=int)
    cj, suggested = confident_joint(proba, g)
    if method == "prune_by_noise_rate":
        suggested = prune_by_noise_rate(proba, g, cj)
    flagged = np.nonzero((suggested >= 0) & (suggested != g))[0]
    rows = np.arange(len(g))
    self_conf = proba[rows, g]
    sugg_conf = np.where(suggested >= 0, proba[rows, np.clip(suggested, 0, None)], np.nan)
    margin = sugg_conf - self_conf
    order = flagged[np.argsort(-margin[flagged], kind="stable")]
    if top_k is not None:
        order = order[:top_k]
    issues = pd.DataFrame({
        "id": [ids[i] for i in order],
        "given_label": [classes[g[i]] for i in order],
        "suggested_label": [classes[suggested[i]] for i in order],
        "confidence": sugg_conf[order],
        "self_confidence": self_conf[order],
        "margin": margin[order],
        "text": [texts[i][:300] for i in order],
    })
    return NoiseAudit(issues=issues, confident_joint=cj, labels=classes,
                      overlapping_pairs=overlapping_label_pairs(cj, classes, top_pairs), n=len(g),
                      n_flagged=int(len(flagged)))
