"""The lean TF-IDF + logistic-regression twin gives the pipeline's probabilities, and steps
aside where it could not."""

import numpy as np
import pytest
from scipy import sparse

from ticket_triage.models.lean_sparse import LeanTfidfLogReg, cached_lean
from ticket_triage.models.tfidf_logreg import TfidfLogReg

TRAIN = [
    ("my card payment is still pending", "cards"), ("card declined at the shop", "cards"),
    ("why was my card charged twice", "cards"), ("contactless card not working", "cards"),
    ("I forgot my password", "access"), ("reset my password please", "access"),
    ("cannot log in to the app", "access"), ("two factor code never arrives", "access"),
    ("transfer to my landlord has not arrived", "transfers"), ("how long does a SEPA transfer take", "transfers"),
    ("wrong IBAN on my transfer", "transfers"), ("cancel a bank transfer", "transfers"),
]
UNSEEN = ["Karte wurde abgelehnt!!", "password reset link expired", "", "   ",
          "TypeError at line 42: transfer() got an unexpected keyword", "ok", "card card card card",
          "zzzz qqqq"]


def _fit(**params):
    texts, labels = zip(*TRAIN)
    return TfidfLogReg(max_iter=500, **params).fit(list(texts), list(labels))


@pytest.mark.parametrize("params", [{}, {"sublinear_tf": False}, {"word_ngrams": [1, 1], "char_ngrams": [3, 4]}])
def test_same_features_and_probabilities_as_the_pipeline(params):
    m = _fit(**params)
    lean = m.lean()
    assert lean is not None
    feats = m.pipeline.named_steps["features"]
    for batch in (UNSEEN, UNSEEN[:1], UNSEEN[4:5], [t for t, _ in TRAIN]):
        expected = feats.transform(batch)
        got = lean.transform(batch)
        assert sparse.isspmatrix_csr(got) and got.shape == expected.shape
        np.testing.assert_allclose(got.toarray(), expected.toarray(), rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(lean.predict_proba(batch), m.pipeline.predict_proba(batch), rtol=1e-9, atol=1e-12)
    # and the classifier's own predict_proba goes through it
    np.testing.assert_allclose(m.predict_proba(UNSEEN), m.pipeline.predict_proba(UNSEEN), rtol=1e-9, atol=1e-12)


def test_binary_head_matches_sklearn():
    texts, labels = zip(*[(t, "cards" if y == "cards" else "other") for t, y in TRAIN])
    m = TfidfLogReg(max_iter=500).fit(list(texts), list(labels))
    lean = m.lean()
    assert lean is not None
    np.testing.assert_allclose(lean.predict_proba(UNSEEN), m.pipeline.predict_proba(UNSEEN), rtol=1e-9, atol=1e-12)


def test_configurations_it_cannot_reproduce_fall_back_to_the_pipeline():
    m = _fit()
    m.pipeline.named_steps["features"].transformer_weights = {"word": 2.0, "char": 1.0}
    assert LeanTfidfLogReg.from_pipeline(m.pipeline) is None
    m = _fit()
    m.pipeline.named_steps["features"].transformer_list[0][1].binary = True
    assert LeanTfidfLogReg.from_pipeline(m.pipeline) is None
    assert m.lean() is None
    # still answers, through scikit-learn
    np.testing.assert_allclose(m.predict_proba(UNSEEN), m.pipeline.predict_proba(UNSEEN))


def test_a_twin_that_disagrees_on_the_probe_is_refused(monkeypatch):
    m = _fit()
    monkeypatch.setattr(LeanTfidfLogReg, "proba_from_features", lambda self, x: np.full((x.shape[0], 3), 1 / 3))
    assert LeanTfidfLogReg.from_pipeline(m.pipeline) is None


def test_the_twin_is_built_once_per_fitted_pipeline():
    m = _fit()
    first = m.lean()
    assert m.lean() is first
    m.fit(*map(list, zip(*TRAIN)))  # a refit replaces the pipeline: a new twin
    assert m.lean() is not first and m.lean() is not None

    class Owner:
        pass

    o = Owner()
    assert cached_lean(o, m.pipeline) is cached_lean(o, m.pipeline)


def test_saved_and_loaded_model_scores_identically(tmp_path):
    from ticket_triage.models import load_classifier

    m = _fit()
    m.save(tmp_path / "clf")
    back = load_classifier(tmp_path / "clf")
    assert back.lean() is not None
    assert back.pipeline.named_steps["clf"].coef_.flags.f_contiguous  # coef_.T is C-contiguous
    np.testing.assert_allclose(back.predict_proba(UNSEEN), m.predict_proba(UNSEEN), rtol=1e-12, atol=1e-15)


def test_l2_rows_matches_sklearn_normalize_on_every_row_shape():
    """One row (the service's path), several, empty rows (first, middle, last) and an all-zero row."""
    from sklearn.preprocessing import normalize

    from ticket_triage.models.lean_sparse import l2_rows

    rng = np.random.default_rng(0)
    cases = [
        (rng.random(300), np.array([0, 300])),                         # one ticket
        (np.array([3.0, 4.0]), np.array([0, 2])),
        (np.zeros(2), np.array([0, 2])),                               # one all-zero row stays zero
        (np.zeros(0), np.array([0, 0])),                               # one empty row
        (np.array([3.0, 4.0, 0.0, 0.0, 1.0, 2.0, 2.0]), np.array([0, 0, 2, 2, 4, 7, 7])),
        (rng.random(2400), np.linspace(0, 2400, 9).astype(np.int64)),  # a micro-batch
    ]
    for data, indptr in cases:
        x = sparse.csr_matrix((data, np.arange(len(data)), indptr), shape=(len(indptr) - 1, max(1, len(data))))
        expected = normalize(x, norm="l2", copy=True).data
        got = l2_rows(data, indptr)
        assert got.dtype == np.float64 and got.shape == data.shape and got is not data
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=0)
