"""Unit tests for ticket_triage.decision.ood on synthetic clusters."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ticket_triage.decision.ood import OODScorer, tune_cutoff


def clusters(seed: int = 0, dim: int = 32):
    """5 in-scope clusters; out-of-scope points come from 3 other cluster centres."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(8, dim))
    def draw(ids, n):
        lab = rng.choice(ids, size=n)
        return centres[lab] + 0.35 * rng.normal(size=(n, dim)), lab
    train, ytr = draw([0, 1, 2, 3, 4], 1000)
    val_in, _ = draw([0, 1, 2, 3, 4], 300)
    val_oos, _ = draw([5, 6, 7], 100)
    test_in, _ = draw([0, 1, 2, 3, 4], 300)
    test_oos, _ = draw([5, 6, 7], 100)
    return train, ytr, val_in, val_oos, test_in, test_oos


def test_ood_separates_clusters() -> None:
    train, ytr, val_in, val_oos, test_in, test_oos = clusters()
    sc = OODScorer(k=5).fit(train, ytr)
    res = sc.tune(sc.score(val_in), sc.score(val_oos), max_in_scope_flagged=0.02)
    assert res.in_scope_flagged <= 0.02
    assert res.oos_flagged is not None and res.oos_flagged > 0.95
    assert np.mean(sc.is_out_of_scope(sc.score(test_oos))) > 0.95
    assert np.mean(sc.is_out_of_scope(sc.score(test_in))) < 0.05


def test_cutoff_without_oos_is_quantile() -> None:
    scores = np.arange(1000) / 1000.0
    res = tune_cutoff(scores, None, max_in_scope_flagged=0.02)
    assert res.in_scope_flagged <= 0.02 and res.in_scope_flagged >= 0.019
    assert res.oos_flagged is None


def test_sampling_cap_keeps_every_label_and_roundtrip() -> None:
    train, ytr, val_in, *_ = clusters()
    sc = OODScorer(k=3, max_train=50, seed=1).fit(train, ytr)
    assert sc.sample_idx is not None and len(sc.sample_idx) == 50
    assert set(ytr[sc.sample_idx]) == set(ytr)
    sc.tune(sc.score(val_in))
    d = json.loads(json.dumps(sc.to_dict()))
    again = OODScorer.from_dict(d, train[np.asarray(d["sample_idx"])])
    assert np.allclose(again.score(val_in), sc.score(val_in), atol=1e-5)
    assert again.cutoff == sc.cutoff


def test_prob_term_and_errors() -> None:
    train, ytr, val_in, *_ = clusters()
    sc = OODScorer(k=3, prob_weight=1.0).fit(train)
    unsure = np.full((len(val_in), 5), 0.2)
    sure = np.eye(5)[np.zeros(len(val_in), int)]
    assert (sc.score(val_in, unsure) > sc.score(val_in, sure)).all()
    with pytest.raises(ValueError, match="embedding dim"):
        sc.score(np.ones((2, 3)))
    with pytest.raises(RuntimeError, match="not fitted"):
        OODScorer().score(val_in)
    with pytest.raises(ValueError, match="non-empty"):
        tune_cutoff(np.zeros(0))


def test_precomputed_similarities_give_the_same_scores():
    """Triage.decide computes one similarity matrix for explanations and the scorer."""
    import numpy as np

    from ticket_triage.decision.ood import OODScorer

    rng = np.random.default_rng(0)
    train = rng.normal(size=(300, 16)).astype(np.float32)
    train /= np.linalg.norm(train, axis=1, keepdims=True)
    q = rng.normal(size=(7, 16)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    sc = OODScorer(k=5).fit(train)
    np.testing.assert_allclose(sc.score(q, sims=q @ train.T), sc.score(q), atol=1e-6)
    with pytest.raises(ValueError, match="columns"):
        sc.knn_distance(q, sims=(q @ train.T)[:, :10])


def _anisotropic(seed: int = 0, dim: int = 16):
    """Elongated in-scope classes (large spread along one shared axis, tight elsewhere) and
    out-of-scope points just off that axis: near in cosine terms, far in Mahalanobis terms."""
    rng = np.random.default_rng(seed)
    axis = np.zeros(dim)
    axis[0] = 1.0
    centres = 3.0 * np.eye(dim)[1:4]
    def draw(n, off=0.0):
        lab = rng.integers(0, 3, size=n)
        x = centres[lab] + rng.normal(size=(n, 1)) * 2.0 * axis + 0.05 * rng.normal(size=(n, dim))
        x[:, 5] += off
        return x, lab.astype(str)
    return draw(60), draw(200)[0], draw(200, off=0.6)[0]


def test_mahalanobis_scorer_roundtrips_and_pick_method_measures() -> None:
    from ticket_triage.decision.ood import auroc, pick_method

    (train, ytr), val_in, val_oos = _anisotropic()
    with pytest.raises(ValueError, match="labels"):
        OODScorer(method="mahalanobis").fit(train)
    with pytest.raises(ValueError, match="method"):
        OODScorer(method="energy")
    sc = OODScorer(k=10, method="mahalanobis").fit(train, ytr)
    s_in, s_oos = sc.score(val_in), sc.score(val_oos)
    # the squared distance in the whitened space equals the explicit formula
    x = train / np.linalg.norm(train, axis=1, keepdims=True)
    mu = np.stack([x[ytr == c].mean(0) for c in np.unique(ytr)])
    c = x - mu[np.searchsorted(np.unique(ytr), ytr)]
    cov = c.T @ c / len(c)
    cov = 0.9 * cov + 0.1 * np.trace(cov) / cov.shape[0] * np.eye(cov.shape[0])
    q = val_in[:5] / np.linalg.norm(val_in[:5], axis=1, keepdims=True)
    d = q[:, None] - mu[None]
    want = np.einsum("nkd,de,nke->nk", d, np.linalg.inv(cov), d).min(1)
    np.testing.assert_allclose(s_in[:5], want, rtol=1e-3)
    # restored from its dict and the sample it was fitted on: identical scores
    sc.tune(s_in, s_oos)
    d_ = json.loads(json.dumps(sc.to_dict()))
    back = OODScorer.from_dict(d_, embeddings=train)
    np.testing.assert_allclose(back.score(val_oos), s_oos, rtol=1e-6)
    assert back.method == "mahalanobis" and back.cutoff == sc.cutoff
    # kNN vs Mahalanobis: pick_method reports both AUROCs and picks the larger
    method, res = pick_method(train, ytr, val_in, val_oos, k=10)
    knn = OODScorer(k=10).fit(train)
    assert res["knn"] == round(auroc(knn.score(val_in), knn.score(val_oos)), 4)
    assert res["mahalanobis"] > res["knn"] + 0.1 and method == "mahalanobis"
    assert pick_method(train, ytr, val_in, None) == ("knn", {})
    assert auroc(np.array([0.0, 1.0]), np.array([2.0, 3.0])) == 1.0
    assert auroc(np.array([1.0]), np.array([1.0])) == 0.5
