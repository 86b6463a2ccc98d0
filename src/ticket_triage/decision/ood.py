"""Out-of-scope score: how far a ticket is from anything the model was trained on.

Score (higher = more out of scope)::

    score = knn_distance + prob_weight * (1 - max_prob)

``knn_distance`` is 1 - the mean cosine similarity of the ticket embedding to its ``k`` nearest
training embeddings (a capped random sample of at most ``max_train`` of them, held as a
float32 matrix; one matmul per batch). Energy (logsumexp of logits) is not used: the
classifier interface exposes normalised probabilities, whose logsumexp is always 0, so the
probability term is the top-probability deficit, weighted by ``prob_weight`` (0 = embedding
only, the default: the top probability alone is what thresholds already use).

``method="mahalanobis"`` scores instead the smallest Mahalanobis distance to a class mean of the
(normalised) training embeddings, one covariance shared by all classes and shrunk towards a
multiple of the identity (Lee et al. 2018; Podolskiy et al. 2021): it needs the training labels,
kept in ``to_dict()`` so that the bundle restores it from the same sample. On an encoder
fine-tuned on the labels the classes are tight clusters, which this score uses;
:func:`pick_method` chooses between the two on validation (AUROC against known out-of-scope
tickets) when some are given.

``tune_cutoff`` picks the cut-off on validation: without out-of-scope examples, the
(1 - max_in_scope_flagged) quantile of in-scope scores; with them, among cuts that flag at most
``max_in_scope_flagged`` of in-scope tickets, the one with the best Youden J (oos flagged share
minus in-scope flagged share).

State: ``to_dict()`` holds the parameters and cut-off (for policy.json); the training sample
itself ships separately (bundle ``neighbours.npz``): ``sample_idx`` says which training rows
it holds, and ``OODScorer.from_dict(d, embeddings)`` restores the scorer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

_BATCH = 1024
METHODS = ("knn", "mahalanobis")


def _normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"embeddings must be a 2-D array (n, dim), got shape {x.shape}")
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norm, 1e-12)


@dataclass
class OODCutoff:
    cutoff: float
    in_scope_flagged: float
    oos_flagged: float | None = None
    n_in: int = 0
    n_oos: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class OODScorer:
    """kNN-cosine out-of-scope scorer (see the module docstring)."""

    def __init__(self, k: int = 10, max_train: int = 20000, prob_weight: float = 0.0, seed: int = 0,
                 method: str = "knn", shrinkage: float = 0.1):
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if method not in METHODS:
            raise ValueError(f"out-of-scope method must be one of {', '.join(METHODS)}, got {method!r}")
        self.method = method
        self.shrinkage = float(shrinkage)
        self.fit_labels: list[str] | None = None
        self._maha: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # (L, mu @ L, |mu @ L|^2)
        self.k = int(k)
        self.max_train = int(max_train)
        self.prob_weight = float(prob_weight)
        self.seed = int(seed)
        self.cutoff: float | None = None
        self.sample_idx: np.ndarray | None = None
        self._train: np.ndarray | None = None

    def fit(self, train_emb: np.ndarray, train_labels: Any = None) -> "OODScorer":
        """Keep (a random sample of at most ``max_train``) normalised training embeddings.
        ``train_labels`` is accepted for a stratified-looking API and used to keep every label
        represented in the sample."""
        x = _normalise(train_emb)
        if len(x) == 0:
            raise ValueError("no training embeddings: the out-of-scope scorer needs the train split")
        n = len(x)
        rng = np.random.default_rng(self.seed)
        if n <= self.max_train:
            idx = np.arange(n)
        elif train_labels is not None:
            lab = np.asarray(train_labels)
            # one per label first, then fill at random
            firsts = np.unique(lab, return_index=True)[1]
            rest = np.setdiff1d(np.arange(n), firsts)
            fill = rng.choice(rest, size=max(self.max_train - len(firsts), 0), replace=False)
            idx = np.sort(np.r_[firsts, fill])[: self.max_train]
        else:
            idx = np.sort(rng.choice(n, size=self.max_train, replace=False))
        self.sample_idx = idx
        self._train = x[idx]
        if self.method == "mahalanobis":
            if train_labels is None:
                raise ValueError("the mahalanobis out-of-scope score needs the training labels: fit(emb, labels)")
            self.fit_labels = [str(v) for v in np.asarray(train_labels, dtype=object)[idx]]
            self._fit_mahalanobis()
        return self

    def _fit_mahalanobis(self) -> None:
        x, lab = self._train.astype(np.float64), np.asarray(self.fit_labels, dtype=object)
        if len(lab) != len(x):
            raise ValueError(f"{len(lab)} labels for {len(x)} training embeddings")
        classes, inv = np.unique(lab, return_inverse=True)
        mu = np.zeros((len(classes), x.shape[1]))
        np.add.at(mu, inv, x)
        mu /= np.bincount(inv, minlength=len(classes))[:, None]
        c = x - mu[inv]
        cov = c.T @ c / max(1, len(c))
        cov = (1 - self.shrinkage) * cov + self.shrinkage * np.trace(cov) / cov.shape[0] * np.eye(cov.shape[0])
        # precision = L L^T: distances are squared norms after one projection (a single matmul per batch)
        chol = np.linalg.cholesky(np.linalg.inv(cov))
        mz = mu @ chol
        self._maha = (chol.astype(np.float32), mz.astype(np.float32), (mz ** 2).sum(1).astype(np.float32))

    def mahalanobis(self, emb: np.ndarray) -> np.ndarray:
        """Smallest squared Mahalanobis distance of each (normalised) embedding to a class mean."""
        if self._maha is None:
            raise RuntimeError("the mahalanobis scorer is not fitted: fit(emb, labels) or from_dict(d, embeddings)")
        chol, mz, mz2 = self._maha
        q = _normalise(emb)
        out = np.empty(len(q), dtype=np.float64)
        for s in range(0, len(q), _BATCH):
            z = q[s:s + _BATCH] @ chol
            d = (z ** 2).sum(1, keepdims=True) - 2 * z @ mz.T + mz2[None]
            out[s:s + _BATCH] = d.min(axis=1)
        return out

    @property
    def fitted(self) -> bool:
        return self._train is not None

    def knn_distance(self, emb: np.ndarray, sims: np.ndarray | None = None) -> np.ndarray:
        """1 - mean cosine similarity to the k nearest training embeddings. ``sims``: the
        (n, n_train) similarities to this scorer's training sample, when the caller has them."""
        if self._train is None:
            raise RuntimeError("OODScorer is not fitted: call fit(train_emb) or from_dict(d, embeddings)")
        k = min(self.k, len(self._train))
        if sims is not None:
            if sims.shape[1] != len(self._train):
                raise ValueError(f"sims has {sims.shape[1]} columns, the training sample {len(self._train)}")
            return 1.0 - np.partition(sims, sims.shape[1] - k, axis=1)[:, -k:].mean(axis=1).astype(np.float64)
        q = _normalise(emb)
        if q.shape[1] != self._train.shape[1]:
            raise ValueError(f"embedding dim {q.shape[1]} != training dim {self._train.shape[1]}; "
                             "score with the same encoder the scorer was fitted with")
        out = np.empty(len(q), dtype=np.float64)
        for s in range(0, len(q), _BATCH):
            sims = q[s:s + _BATCH] @ self._train.T
            top = np.partition(sims, sims.shape[1] - k, axis=1)[:, -k:]
            out[s:s + _BATCH] = 1.0 - top.mean(axis=1)
        return out

    def score(self, emb: np.ndarray, probs: np.ndarray | None = None, sims: np.ndarray | None = None) -> np.ndarray:
        """(n,) out-of-scope scores, higher = more out of scope (``sims``: see knn_distance)."""
        s = self.mahalanobis(emb) if self.method == "mahalanobis" else self.knn_distance(emb, sims)
        if probs is not None and self.prob_weight:
            p = np.asarray(probs, dtype=float)
            if p.shape[0] != len(s):
                raise ValueError(f"probs has {p.shape[0]} rows, embeddings {len(s)}")
            s = s + self.prob_weight * (1.0 - p.max(axis=1))
        return s

    def tune(self, in_scores: np.ndarray, ood_scores: np.ndarray | None = None,
             max_in_scope_flagged: float = 0.02) -> OODCutoff:
        """Tune and store the cut-off (see :func:`tune_cutoff`)."""
        res = tune_cutoff(in_scores, ood_scores, max_in_scope_flagged)
        self.cutoff = res.cutoff
        return res

    def is_out_of_scope(self, scores: np.ndarray) -> np.ndarray:
        if self.cutoff is None:
            raise RuntimeError("no cut-off: call tune(in_scores, ood_scores) first")
        return np.asarray(scores) > self.cutoff

    def to_dict(self) -> dict[str, Any]:
        return {"k": self.k, "max_train": self.max_train, "prob_weight": self.prob_weight,
                "seed": self.seed, "cutoff": self.cutoff, "method": self.method, "shrinkage": self.shrinkage,
                "fit_labels": self.fit_labels,
                "sample_idx": None if self.sample_idx is None else [int(i) for i in self.sample_idx]}

    @classmethod
    def from_dict(cls, d: dict[str, Any], embeddings: np.ndarray | None = None) -> "OODScorer":
        """Restore; ``embeddings`` are the sampled training embeddings (neighbours.npz)."""
        sc = cls(k=int(d.get("k", 10)), max_train=int(d.get("max_train", 20000)),
                 prob_weight=float(d.get("prob_weight", 0.0)), seed=int(d.get("seed", 0)),
                 method=str(d.get("method", "knn")), shrinkage=float(d.get("shrinkage", 0.1)))
        sc.fit_labels = None if d.get("fit_labels") is None else [str(v) for v in d["fit_labels"]]
        sc.cutoff = None if d.get("cutoff") is None else float(d["cutoff"])
        if d.get("sample_idx") is not None:
            sc.sample_idx = np.asarray(d["sample_idx"], dtype=np.int64)
        if embeddings is not None:
            sc._train = _normalise(embeddings)
            if sc.method == "mahalanobis":
                if sc.fit_labels is None:
                    raise ValueError("a mahalanobis out-of-scope scorer needs its fit_labels: rebuild the bundle")
                sc._fit_mahalanobis()
        return sc


def auroc(in_scores: np.ndarray, ood_scores: np.ndarray) -> float:
    """Probability that a known out-of-scope ticket scores above an in-scope one (ties half)."""
    from scipy.stats import rankdata

    a, b = np.asarray(in_scores, dtype=float), np.asarray(ood_scores, dtype=float)
    r = rankdata(np.r_[a, b])
    return float((r[len(a):].sum() - len(b) * (len(b) + 1) / 2) / (len(a) * len(b)))


def pick_method(train_emb: np.ndarray, train_labels: Any, val_in_emb: np.ndarray,
                val_oos_emb: np.ndarray | None, *, k: int = 10, max_train: int = 20000,
                seed: int = 0) -> tuple[str, dict[str, float]]:
    """``knn`` or ``mahalanobis``, whichever separates the known out-of-scope validation tickets
    from the in-scope ones better (AUROC); ``knn`` without out-of-scope examples or labels."""
    if val_oos_emb is None or len(val_oos_emb) == 0 or train_labels is None or len(val_in_emb) == 0:
        return "knn", {}
    res = {}
    for m in METHODS:
        sc = OODScorer(k=k, max_train=max_train, seed=seed, method=m).fit(train_emb, train_labels)
        res[m] = round(auroc(sc.score(val_in_emb), sc.score(val_oos_emb)), 4)
    return max(METHODS, key=lambda m: res[m]), res


def tune_cutoff(in_scores: np.ndarray, ood_scores: np.ndarray | None = None,
                max_in_scope_flagged: float = 0.02) -> OODCutoff:
    """A cut-off (flag score > cutoff) that flags at most ``max_in_scope_flagged`` of the
    in-scope validation scores; with out-of-scope scores, the best Youden J among such cuts."""
    ins = np.asarray(in_scores, dtype=float)
    if ins.ndim != 1 or len(ins) == 0:
        raise ValueError("in_scores must be a non-empty 1-D array of validation scores")
    if not 0.0 <= max_in_scope_flagged < 1.0:
        raise ValueError(f"max_in_scope_flagged must be in [0, 1), got {max_in_scope_flagged}")
    srt = np.sort(ins)
    n = len(srt)
    allowed = int(np.floor(max_in_scope_flagged * n))  # in-scope tickets that may be flagged
    base = float(srt[n - allowed - 1])  # flags exactly the values above it (ties stay in)
    if ood_scores is None or len(ood_scores) == 0:
        return OODCutoff(base, float(np.mean(ins > base)), None, n, 0)
    oos = np.asarray(ood_scores, dtype=float)
    cands = np.unique(srt[srt >= base])
    fpr = 1.0 - np.searchsorted(srt, cands, side="right") / n
    oos_sorted = np.sort(oos)
    tpr = 1.0 - np.searchsorted(oos_sorted, cands, side="right") / len(oos)
    best = int(np.argmax(tpr - fpr))
    cut = float(cands[best])
    return OODCutoff(cut, float(fpr[best]), float(tpr[best]), n, len(oos))
