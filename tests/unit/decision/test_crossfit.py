"""Cross-fitted tuning scores (ticket_triage.decision.crossfit) and their use in build_bundle."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from ticket_triage.decision.crossfit import (
    DEFAULT_MAX_TRAIN_CHARS,
    cross_fit_topic_scores,
    max_train_chars,
    skip_reason,
)
from ticket_triage.decision.bundle import build_bundle
from ticket_triage.decision.triage import Policy, _raw_topic_proba
from ticket_triage.models import build_classifier


def _to_topics(topics):
    stub = Policy(family="", label_level="topic", topics=list(topics), fine_to_coarse=None,
                  calibrator={"method": "none"}, thresholds={}, ood=None, languages=[])
    return lambda m, texts: _raw_topic_proba(m, stub, texts)


def test_skip_reasons_name_the_cause():
    tfidf = build_classifier("tfidf_logreg")
    assert skip_reason(tfidf, ["a"] * 10 + ["b"] * 10, 5) is None
    assert "off" in skip_reason(tfidf, ["a"] * 10 + ["b"] * 10, 0)
    assert "needs >= 10 per label" in skip_reason(tfidf, ["a"] * 10 + ["b"] * 9, 5)
    assert "known out-of-scope" in skip_reason(tfidf, ["a"] * 10 + ["b"] * 10, 5, known_oos=True)
    setfit = build_classifier("setfit")
    why = skip_reason(setfit, ["a"] * 10 + ["b"] * 10, 5)
    assert "not cheap to refit" in why and "thresholds.cross_fit_fine_tuned: true" in why


def test_fine_tuned_families_cross_fit_only_when_asked():
    """thresholds.cross_fit_fine_tuned opts SetFit, the transformer and an ensemble holding one
    of them into one fine-tune per fold; the other reasons (folds, labels, the cost cap) still hold."""
    labels = ["a"] * 10 + ["b"] * 10
    for family in ("setfit", "transformer", "transformer_tfidf"):
        clf = build_classifier("ensemble", members=[{"family": "transformer"}, {"family": "tfidf_logreg"}]) \
            if family == "transformer_tfidf" else build_classifier(family)
        assert not clf.cheap_refit
        assert "not cheap to refit" in skip_reason(clf, labels, 5)
        assert skip_reason(clf, labels, 5, fine_tuned=True) is None
        assert "needs >= 10 per label" in skip_reason(clf, ["a"] * 10 + ["b"] * 9, 5, fine_tuned=True)
        assert "off" in skip_reason(clf, labels, 0, fine_tuned=True)
    combined = build_classifier("ensemble", members=[{"family": "transformer"}, {"family": "tfidf_logreg"}])
    assert "cross_fit_max_train_chars" in skip_reason(combined, labels, 5, train_chars=39_000_000,
                                                      max_train_chars=10_000_000, fine_tuned=True)


def test_cost_cap_stops_text_bound_refits_only():
    """Above thresholds.cross_fit_max_train_chars a TF-IDF family (and an ensemble with a TF-IDF
    member) is not refitted per fold; a frozen-encoder head (cached embeddings) still is."""
    labels = ["a"] * 10 + ["b"] * 10
    tfidf = build_classifier("tfidf_logreg")
    why = skip_reason(tfidf, labels, 5, train_chars=39_000_000, max_train_chars=10_000_000)
    assert "39,000,000 characters > thresholds.cross_fit_max_train_chars 10,000,000" in why
    assert skip_reason(tfidf, labels, 5, train_chars=9_000_000, max_train_chars=10_000_000) is None
    assert skip_reason(tfidf, labels, 5, train_chars=39_000_000, max_train_chars=None) is None
    assert skip_reason(build_classifier("embed_logreg"), labels, 5, train_chars=39_000_000,
                       max_train_chars=10_000_000) is None
    ensemble = build_classifier("ensemble")
    assert ensemble.refit_scales_with_text
    assert "cross_fit_max_train_chars" in skip_reason(ensemble, labels, 5, train_chars=39_000_000,
                                                      max_train_chars=10_000_000)
    assert max_train_chars({"cross_fit_max_train_chars": None}) is None
    assert max_train_chars({}) == DEFAULT_MAX_TRAIN_CHARS


def test_build_bundle_honours_the_cost_cap(tmp_path, base_params, small_rows):
    params = copy.deepcopy(base_params)
    params["thresholds"].update({"tune": True, "cross_fit_folds": 4, "min_support": 5})
    train, val = small_rows[:40], small_rows[40:]
    params["thresholds"]["cross_fit_max_train_chars"] = sum(len(r["text"]) for r in train) - 1
    clf = build_classifier("tfidf_logreg").fit([r["text"] for r in train], [r["topic"] for r in train], progress=False)
    th = json.loads((build_bundle(clf, train, val, params, tmp_path / "cap") / "policy.json").read_text())
    assert "cross_fit_max_train_chars" in th["thresholds"]["info"]["cross_fit"]
    assert th["thresholds"]["info"]["n_validation"] == len(val)


def test_scores_are_out_of_fold(small_rows):
    """Flip the label of a few training tickets: a model that saw them repeats the wrong label
    (it memorised them); the out-of-fold scores must not - they come from models that never
    saw those tickets."""
    rows = copy.deepcopy(small_rows)
    topics = sorted({r["topic"] for r in rows})
    flipped = []
    for r in rows[::12][:4]:
        r["topic"] = next(t for t in topics if t != r["topic"])
        flipped.append(r["id"])
    clf = build_classifier("tfidf_logreg")
    val = [r["text"] for r in small_rows]
    y_val = np.array([topics.index(r["topic"]) for r in small_rows])
    cf = cross_fit_topic_scores(clf, rows, "topic", topics, val, y_val, _to_topics(topics), folds=4, seed=0)
    assert cf.probs.shape == (len(rows), len(topics))
    np.testing.assert_allclose(cf.probs.sum(axis=1), 1.0, atol=1e-9)
    assert cf.info["n_cross_fit"] == len(rows) and len(cf.info["cross_fit_temperatures"]) == 4
    idx = [i for i, r in enumerate(rows) if r["id"] in flipped]
    in_sample = build_classifier("tfidf_logreg").fit([r["text"] for r in rows], [r["topic"] for r in rows],
                                                     progress=False)
    seen = _to_topics(topics)(in_sample, [rows[i]["text"] for i in idx]).argmax(axis=1)
    assert all(seen == cf.y_idx[idx])              # the memorised, wrong label
    assert not np.any(cf.probs[idx].argmax(axis=1) == cf.y_idx[idx])  # out of fold: never repeated
    assert cf.info["cross_fit_accuracy"] < 1.0


def test_build_bundle_tunes_on_validation_plus_out_of_fold(tmp_path, base_params, small_rows):
    params = copy.deepcopy(base_params)
    params["thresholds"].update({"tune": True, "cross_fit_folds": 4, "min_support": 5})
    train, val = small_rows[:40], small_rows[40:]
    # 40 training rows, 10 per topic: 4 folds need >= 8 per label
    assert min(sum(r["topic"] == t for r in train) for t in {r["topic"] for r in train}) >= 8
    clf = build_classifier("tfidf_logreg").fit([r["text"] for r in train], [r["topic"] for r in train], progress=False)
    info = json.loads((build_bundle(clf, train, val, params, tmp_path / "cf") / "policy.json").read_text())
    th = info["thresholds"]["info"]
    assert th["cross_fit"] == "4 folds" and th["n_cross_fit"] == len(train)
    assert th["n_validation"] == len(train) + len(val)
    params["thresholds"]["cross_fit_folds"] = 0
    info = json.loads((build_bundle(clf, train, val, params, tmp_path / "val") / "policy.json").read_text())
    assert info["thresholds"]["info"]["n_validation"] == len(val)
    assert "off" in info["thresholds"]["info"]["cross_fit"]


@pytest.mark.parametrize("level", ["topic", "tag"])
def test_cross_fit_works_at_both_label_levels(level, base_params, small_rows):
    topics = sorted({r["topic"] for r in small_rows})
    val = [r["text"] for r in small_rows]
    y_val = np.array([topics.index(r["topic"]) for r in small_rows])
    f2c = {r["label_fine"]: r["topic"] for r in small_rows}
    stub = Policy(family="", label_level=level, topics=topics, fine_to_coarse=f2c if level == "tag" else None,
                  calibrator={"method": "none"}, thresholds={}, ood=None, languages=[])
    cf = cross_fit_topic_scores(build_classifier("tfidf_logreg"), small_rows, level, topics, val, y_val,
                                lambda m, t: _raw_topic_proba(m, stub, t), folds=3)
    assert cf.probs is not None and cf.probs.shape == (len(small_rows), len(topics))
