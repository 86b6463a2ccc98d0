"""Unit tests for ticket_triage.decision.thresholds with synthetic scores whose answer is known."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ticket_triage.decision.thresholds import Thresholds, cp_lower, cp_upper, tune_thresholds

CFG = {"tune": True, "target_precision": 0.99, "confidence": 0.95, "min_support": 10,
       "tickets_per_day": 10000, "review_capacity": 100, "pinned": {}}


def crossing_at_09(n_hi: int = 2000, n_lo: int = 2000, seed: int = 0):
    """Label 0: every ticket with conf >= 0.9 is right; below 0.9 half are wrong.
    Precision of {conf >= t} crosses 99 % (even its CP bound) exactly at t = 0.9."""
    rng = np.random.default_rng(seed)
    hi = rng.uniform(0.9, 1.0, n_hi)
    lo = rng.uniform(0.3, 0.9, n_lo)
    conf = np.r_[hi, lo]
    y = np.r_[np.zeros(n_hi, int), np.where(rng.uniform(size=n_lo) < 0.5, 0, 1)]
    return conf, np.zeros(len(conf), int), y


def test_per_label_threshold_found_at_crossing() -> None:
    conf, pred, y = crossing_at_09()
    th = tune_thresholds(conf, pred, y, ["a", "b"], {**CFG, "strategy": "per_label"})
    t = th.auto_route["a"]
    assert t is not None and 0.88 < t <= 0.9 + 1e-3
    # nothing predicted as b -> b never auto-routes
    assert th.auto_route["b"] is None
    assert th.band("a", 0.95) == ("auto_route", "above_auto_threshold")
    assert th.band("b", 0.99)[0] == "draft"


def test_min_support_and_never_route() -> None:
    conf = np.array([0.99] * 5)
    th = tune_thresholds(conf, np.zeros(5, int), np.zeros(5, int), ["a"], {**CFG, "strategy": "per_label"})
    assert th.auto_route["a"] is None  # 5 < min_support


def test_pooled_routes_where_per_label_cannot() -> None:
    # 10 labels x 150 tickets, 1 error each at low confidence: per-label CP (n=150) cannot
    # reach 0.99, pooled over 1500 can
    rng = np.random.default_rng(0)
    confs, preds, ys = [], [], []
    for j in range(10):
        c = rng.uniform(0.5, 1.0, 150)
        yy = np.full(150, j)
        yy[np.argmin(c)] = (j + 1) % 10
        confs.append(c); preds.append(np.full(150, j)); ys.append(yy)
    conf, pred, y = np.concatenate(confs), np.concatenate(preds), np.concatenate(ys)
    labels = [f"l{j}" for j in range(10)]
    strict = tune_thresholds(conf, pred, y, labels, {**CFG, "strategy": "per_label"})
    assert all(v is None for v in strict.auto_route.values())
    hyb = tune_thresholds(conf, pred, y, labels, {**CFG, "strategy": "hybrid"})
    assert all(v is not None for v in hyb.auto_route.values())
    rows = {r["label"]: r for r in hyb.report(conf, pred, y)}
    assert rows["__all__"]["precision_lower"] >= 0.99
    assert rows["__all__"]["coverage"] > 0.9


def test_pooled_excludes_contradicting_label() -> None:
    rng = np.random.default_rng(1)
    good = rng.uniform(0.5, 1.0, 3000)
    bad = rng.uniform(0.5, 1.0, 200)  # label 1: 30 % wrong at every confidence
    conf = np.r_[good, bad]
    pred = np.r_[np.zeros(3000, int), np.ones(200, int)]
    y = np.r_[np.zeros(3000, int), np.where(rng.uniform(size=200) < 0.3, 0, 1)]
    th = tune_thresholds(conf, pred, y, ["good", "bad"], {**CFG, "strategy": "pooled"})
    assert th.auto_route["good"] is not None
    assert th.auto_route["bad"] is None


def test_review_threshold_respects_capacity() -> None:
    conf, pred, y = crossing_at_09()
    cfg = {**CFG, "tickets_per_day": 1000, "review_capacity": 50}  # 5 % budget
    th = tune_thresholds(conf, pred, y, ["a", "b"], cfg)
    share = np.mean([th.band("a", c)[0] == "review" for c in conf])
    assert 0.04 <= share <= 0.05
    assert all(th.review[lab] <= (th.auto_route[lab] or 1.0) for lab in th.labels)
    # a share reserved for out-of-scope and pinned tickets comes off the confidence cut's budget
    th = tune_thresholds(conf, pred, y, ["a", "b"], {**cfg, "reserved_review_share": 0.03})
    share = np.mean([th.band("a", c)[0] == "review" for c in conf])
    assert 0.01 <= share <= 0.02 and th.info["review_budget_share"] == pytest.approx(0.02)
    # 'auto' is measured by build_bundle; on bare scores nothing else competes for the band
    auto = tune_thresholds(conf, pred, y, ["a", "b"], {**cfg, "reserved_review_share": "auto"})
    assert auto.info["review_budget_share"] == pytest.approx(0.05)
    with pytest.raises(ValueError, match="number or 'auto'"):
        tune_thresholds(conf, pred, y, ["a", "b"], {**cfg, "reserved_review_share": "lots"})
    with pytest.raises(ValueError, match=r"in \[0, 1\)"):
        tune_thresholds(conf, pred, y, ["a", "b"], {**cfg, "reserved_review_share": 1.5})


def test_pinned_and_fixed_and_unknown() -> None:
    th = tune_thresholds(np.array([0.5]), np.array([0]), np.array([0]), ["a", "fraud"],
                         {"tune": False, "auto_route": 0.85, "review": 0.6, "pinned": {"fraud": "review"}})
    assert th.band("a", 0.9)[0] == "auto_route" and th.band("a", 0.7)[0] == "draft"
    assert th.band("a", 0.5) == ("review", "below_review_threshold")
    assert th.band("fraud", 0.999) == ("review", "label_pinned:fraud")
    assert th.band("zzz", 0.99) == ("review", "unknown_label")


def test_roundtrip_and_bad_config() -> None:
    conf, pred, y = crossing_at_09(500, 500)
    th = tune_thresholds(conf, pred, y, ["a", "b"], CFG)
    again = Thresholds.from_dict(json.loads(json.dumps(th.to_dict())))
    assert again.auto_route == th.auto_route and again.review == th.review
    with pytest.raises(ValueError, match="strategy"):
        tune_thresholds(conf, pred, y, ["a", "b"], {**CFG, "strategy": "magic"})
    with pytest.raises(ValueError, match="no validation tickets"):
        tune_thresholds(np.zeros(0), np.zeros(0, int), np.zeros(0, int), ["a"], CFG)


def test_clopper_pearson_known_values() -> None:
    assert cp_lower(300, 300, 0.95) == pytest.approx(0.05 ** (1 / 300), rel=1e-9)
    assert cp_lower(0, 10, 0.95) == 0.0 and cp_upper(10, 10, 0.95) == 1.0
    assert cp_upper(0, 10, 0.95) == pytest.approx(1 - 0.05 ** (1 / 10), rel=1e-9)


def test_routed_before_certifies_the_union() -> None:
    # a residual 98.5% right at every confidence (1 error in 67): its own data does not
    # contradict 0.99, but no pooled threshold reaches a 0.99 lower bound on it alone; joined
    # with 5,000 tickets an earlier stage routed with 1 error, the union does, and the bound
    # reported is the union's
    rng = np.random.default_rng(2)
    conf = np.sort(rng.uniform(0.5, 1.0, 600))
    pred = np.zeros(600, int)
    y = np.where(np.arange(600) % 67 == 33, 1, 0)
    cfg = {**CFG, "strategy": "pooled", "min_support": 10}
    alone = tune_thresholds(conf, pred, y, ["a", "b"], cfg)
    assert alone.auto_route["a"] is None and alone.info["pooled_threshold"] is None
    union = tune_thresholds(conf, pred, y, ["a", "b"], cfg, routed_before=(5000, 4999))
    t = union.auto_route["a"]
    assert t is not None and union.info["routed_before"] == {"n": 5000, "correct": 4999}
    routed = conf >= t
    n, x = 5000 + int(routed.sum()), 4999 + int((routed & (y == 0)).sum())
    assert float(cp_lower(x, n, 0.95)) >= 0.99
    assert union.info["pooled_precision_lower"] == pytest.approx(float(cp_lower(x, n, 0.95)))
    # an earlier stage with many errors uses the margin up: the union fails where the residual
    # alone would pass
    clean = np.zeros(600, int)
    assert tune_thresholds(conf, pred, clean, ["a", "b"], cfg).auto_route["a"] is not None
    worse = tune_thresholds(conf, pred, clean, ["a", "b"], cfg, routed_before=(1000, 900))
    assert worse.auto_route["a"] is None
    with pytest.raises(ValueError, match="routed_before"):
        tune_thresholds(conf, pred, y, ["a", "b"], cfg, routed_before=(10, 11))


def test_auto_routes_agrees_with_band():
    """The numpy mask the cascade uses is ``band(...) == "auto_route"`` ticket by ticket:
    pinned labels (to auto_route and to review), a label that never auto-routes, NaN and
    infinite confidences, an index outside the labels."""
    import numpy as np

    from ticket_triage.decision.thresholds import Thresholds

    labels = ["a", "b", "c", "d", "e"]
    th = Thresholds(labels[:4], {"a": 0.8, "b": None, "c": 0.6, "d": 0.5}, {lab: 0.3 for lab in labels[:4]},
                    {"c": "review", "d": "auto_route"})
    rng = np.random.default_rng(0)
    conf = rng.uniform(0, 1, 400)
    conf[:8] = [np.nan, np.inf, -np.inf, 0.8, 0.79999, 1.0, 0.0, np.nan]
    pred = rng.integers(0, len(labels) + 1, 400)  # index 5 is outside the labels
    expected = [th.band(labels[p] if p < len(labels) else None, c)[0] == "auto_route" for p, c in zip(pred, conf)]
    assert th.auto_routes(labels, pred, conf).tolist() == expected
    assert any(expected) and not all(expected)
