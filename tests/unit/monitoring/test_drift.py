"""Drift signals on small synthetic frames, hand-checked where possible."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from ticket_triage.monitoring import drift as D
CFG = D.DriftConfig.from_dict({"max_threads": 1})


def test_label_shift_hand_values():
    same = D.label_shift(["a"] * 50 + ["b"] * 50, ["a"] * 40 + ["b"] * 40, CFG)
    assert same.value == pytest.approx(0.0, abs=1e-12) and not same.fired
    disjoint = D.label_shift(["a"] * 50, ["b"] * 50, CFG)
    assert disjoint.value == pytest.approx(1.0)  # JS distance base 2 of disjoint supports
    assert disjoint.fired and disjoint.detail["p_value"] < 1e-10
    # shares 0.5/0.5 vs 0.9/0.1: PSI = sum (q - p) ln(q / p)
    s = D.label_shift(["a"] * 100 + ["b"] * 100, ["a"] * 180 + ["b"] * 20, CFG)
    assert s.detail["psi"] == pytest.approx(0.4 * math.log(0.9 / 0.5) + (-0.4) * math.log(0.1 / 0.5))
    assert s.fired and s.detail["top_movers"][0]["recent_share"] in (0.9, 0.1)


def test_confidence_and_oos_signals():
    rng = np.random.default_rng(0)
    a = rng.uniform(0.5, 1.0, 500)
    assert not D.confidence_shift(a, rng.uniform(0.5, 1.0, 500), CFG).fired
    shifted = D.confidence_shift(a, rng.uniform(0.3, 0.8, 500), CFG)
    assert shifted.fired and shifted.value > 0.3
    oos = D.oos_rate_shift([False] * 100, [True] * 20 + [False] * 80, CFG)
    assert oos.value == pytest.approx(0.2) and oos.fired
    assert oos.detail["recent_rate"] == pytest.approx(0.2)
    fewer = D.oos_rate_shift([True] * 20 + [False] * 80, [False] * 100, CFG)
    assert fewer.value == pytest.approx(-0.2) and not fewer.fired


def test_embedding_drift_domain_classifier():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(300, 8))
    same = D.embedding_drift(base, rng.normal(size=(300, 8)), CFG)
    assert not same.fired and same.value < 0.6
    moved = rng.normal(size=(300, 8)) + np.r_[1.0, np.zeros(7)]
    s = D.embedding_drift(base, moved, CFG)
    assert s.fired and s.value > 0.7 and s.detail["n_per_side"] == 300
    capped = D.embedding_drift(base, moved, D.DriftConfig.from_dict({"embedding": {"max_samples": 100}}))
    assert capped.detail["n_per_side"] == 100
    with pytest.raises(ValueError, match="same width"):
        D.embedding_drift(base, rng.normal(size=(10, 3)), CFG)


def test_emerging_terms_and_clusters():
    rng = np.random.default_rng(1)
    words = [f"word{i}" for i in range(60)]
    old = [" ".join(rng.choice(words, 8)) for _ in range(200)]
    recent = [" ".join(rng.choice(words, 8)) for _ in range(170)]
    recent += [f"invoice refund subscription {w}" for w in rng.choice(words, 30)]
    terms, _, _ = D.emerging_terms(old, recent, CFG)
    assert set(terms["term"]) == {"invoice", "refund", "subscription"}
    assert (terms["train_df"] == 0).all() and (terms["recent_df"] == 30).all()
    none, _, _ = D.emerging_terms(old, [" ".join(rng.choice(words, 8)) for _ in range(200)], CFG)
    assert none.empty
    clusters = D.new_term_clusters(recent[-30:] + recent[:30], [f"r{i}" for i in range(60)],
                                   ["invoice", "refund", "subscription"], CFG)
    assert clusters and clusters[0].size == 30 and clusters[0].novelty == 1.0
    assert set(clusters[0].emerging_terms) == {"invoice", "refund", "subscription"}
    assert all(e["id"] in {f"r{i}" for i in range(30)} for e in clusters[0].examples)


def _frame(rng, n, labels, conf_low=0.6, text_words=None):
    words = text_words or [f"word{i}" for i in range(60)]
    return pd.DataFrame({
        "id": [f"t{i}" for i in range(n)],
        "text": [" ".join(rng.choice(words, 8)) for _ in range(n)],
        "predicted": rng.choice(labels, n),
        "confidence": rng.uniform(conf_low, 1.0, n),
        "out_of_scope": rng.random(n) < 0.05,
        "embedding": list(rng.normal(size=(n, 6))),
    })


def test_status_rule():
    rng = np.random.default_rng(2)
    train = _frame(rng, 300, ["a", "b", "c"])
    ok = D.drift_report(train, _frame(rng, 300, ["a", "b", "c"]), CFG)
    assert ok.status == "ok" and ok.fired == []
    watch = D.drift_report(train, _frame(rng, 300, ["a"]), CFG)  # only the topic mix moved
    assert watch.fired == ["label_shift"] and watch.status == "watch"
    both = D.drift_report(train, _frame(rng, 300, ["a"], conf_low=0.2), CFG)
    assert set(both.fired) == {"label_shift", "confidence"} and both.status == "retrain recommended"
    strict = D.drift_report(train, _frame(rng, 300, ["a"], conf_low=0.2), {"retrain_min_signals": 3})
    assert strict.status == "watch"
    json.dumps(both.to_dict())  # JSON-safe


def test_missing_columns_are_skipped_not_fired():
    rng = np.random.default_rng(3)
    train = _frame(rng, 100, ["a", "b"])[["id", "text"]]
    rep = D.drift_report(train, _frame(rng, 100, ["a"])[["id", "text"]], CFG)
    skipped = {s.name for s in rep.signals if s.skipped}
    assert skipped == {"label_shift", "confidence", "oos_rate", "embedding"}
    assert rep.status == "ok" and "skipped" in rep.reason
    assert math.isnan(rep.signal("embedding").value) and rep.to_dict()["signals"][3]["value"] is None


def test_config_errors():
    with pytest.raises(ValueError, match="unknown key"):
        D.DriftConfig.from_dict({"label_shift": {"js": 0.1}})
    with pytest.raises(ValueError, match="mapping"):
        D.DriftConfig.from_dict({"embedding": 3})
    with pytest.raises(ValueError, match="rows in both"):
        D.drift_report(pd.DataFrame({"text": []}), pd.DataFrame({"text": ["x"]}), CFG)
