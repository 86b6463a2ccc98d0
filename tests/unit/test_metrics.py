"""Metrics against hand-computed values; bootstrap coverage and drop detection."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ticket_triage import metrics as M


def test_classification_metrics_hand_computed():
    y_true = ["a", "a", "b", "b", "c"]
    y_pred = ["a", "b", "b", "b", "a"]
    m = M.classification_metrics(y_true, y_pred)
    assert m["n"] == 5
    assert m["accuracy"] == pytest.approx(0.6)
    pl = m["per_label"]
    assert pl["a"] == pytest.approx({"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2})
    assert pl["b"] == pytest.approx({"precision": 2 / 3, "recall": 1.0, "f1": 0.8, "support": 2})
    assert pl["c"] == pytest.approx({"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1})
    assert m["macro_f1"] == pytest.approx((0.5 + 0.8 + 0.0) / 3)
    assert m["weighted_f1"] == pytest.approx((0.5 * 2 + 0.8 * 2 + 0 * 1) / 5)


def _reference_macro_f1(y, p):
    f1s = []
    for lab in sorted(set(y) | set(p)):
        tp = sum(1 for t, q in zip(y, p) if t == q == lab)
        prec = tp / max(sum(1 for q in p if q == lab), 1)
        rec = tp / max(sum(1 for t in y if t == lab), 1)
        f1s.append(2 * prec * rec / (prec + rec) if prec + rec else 0.0)
    return sum(f1s) / len(f1s)


def test_classification_metrics_matches_reference_and_ignores_absent_labels():
    rng = np.random.default_rng(0)
    y = rng.choice(list("abcd"), 300)
    p = np.where(rng.random(300) < 0.7, y, rng.choice(list("abcd"), 300))
    m = M.classification_metrics(y, p, labels=list("abcde"))  # "e" never occurs
    assert m["macro_f1"] == pytest.approx(_reference_macro_f1(list(y), list(p)))
    assert m["per_label"]["e"]["support"] == 0


def test_out_of_scope_predictions_count_as_wrong():
    m = M.classification_metrics(["a", "b"], ["a", None], labels=["a", "b"])
    assert m["accuracy"] == 0.5
    assert m["per_label"]["b"]["recall"] == 0.0
    assert m["per_label"]["a"]["precision"] == 1.0


def test_length_mismatch_is_an_error():
    with pytest.raises(ValueError, match="same length"):
        M.classification_metrics(["a"], ["a", "b"])


def test_log_loss_hand_computed():
    probs = np.array([[0.8, 0.2], [0.3, 0.7]])
    assert M.log_loss(probs, ["a", "a"], labels=["a", "b"]) == pytest.approx(-(math.log(0.8) + math.log(0.3)) / 2)
    assert M.log_loss(probs, [0, 1]) == pytest.approx(-(math.log(0.8) + math.log(0.7)) / 2)
    with pytest.raises(ValueError, match="not among"):
        M.log_loss(probs, ["a", "z"], labels=["a", "b"])


def test_expected_calibration_error_hand_computed():
    conf = [0.95, 0.95, 0.65, 0.65]
    correct = [1, 0, 1, 1]
    # bin [0.9,1): acc 0.5 vs 0.95 -> 0.45 * 2/4; bin [0.6,0.7): acc 1 vs 0.65 -> 0.35 * 2/4
    assert M.expected_calibration_error(conf, correct, n_bins=10) == pytest.approx(0.45 / 2 + 0.35 / 2)
    assert M.expected_calibration_error([0.7] * 10, [1] * 7 + [0] * 3) == pytest.approx(0.0)
    bins = M.reliability_bins([1.0, 0.0], [1, 0], n_bins=4)
    assert bins["count"].tolist() == [1, 0, 0, 1]  # 1.0 falls into the last bin
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        M.expected_calibration_error([1.5], [1])


def test_auto_route_metrics_hand_computed():
    bands = ["auto_route", "auto_route", "draft", "review", "review", "auto_route"]
    y_true = ["a", "b", "a", None, "b", "oos"]
    y_pred = ["a", "a", "a", "b", "b", "a"]
    m = M.auto_route_metrics(bands, y_true, y_pred)
    assert m["coverage"] == pytest.approx(0.5)
    assert m["auto_precision"] == pytest.approx(1 / 3)  # the auto-routed out-of-scope ticket is wrong
    assert m["draft_share"] == pytest.approx(1 / 6)
    assert m["draft_precision"] == 1.0
    assert m["review_share"] == pytest.approx(2 / 6)
    assert m["oos_n"] == 2
    assert m["oos_review_share"] == 0.5
    assert m["oos_auto_share"] == 0.5
    none = M.auto_route_metrics(["review"], ["a"], ["a"])
    assert math.isnan(none["auto_precision"]) and math.isnan(none["oos_review_share"])
    with pytest.raises(ValueError, match="unknown band"):
        M.auto_route_metrics(["auto"], ["a"], ["a"])


def test_coverage_precision_curve_hand_computed():
    curve = M.coverage_precision_curve([0.9, 0.8, 0.8, 0.5], [1, 1, 0, 1])
    assert curve["threshold"].tolist() == [0.9, 0.8, 0.5]
    assert curve["coverage"].tolist() == pytest.approx([0.25, 0.75, 1.0])
    assert curve["precision"].tolist() == pytest.approx([1.0, 2 / 3, 0.75])
    assert M.coverage_at_precision([0.9, 0.8, 0.8, 0.5], [1, 1, 0, 1], 0.75) == 1.0
    assert M.coverage_at_precision([0.9, 0.8, 0.8, 0.5], [1, 1, 0, 1], 0.8) == 0.25


def _synthetic_run(rng, y, p_correct, labels):
    wrong = rng.choice(labels, len(y))
    return np.where(rng.random(len(y)) < p_correct, y, wrong)


def test_bootstrap_ci_covers_true_delta_and_detects_drop():
    labels = np.arange(4)
    true_delta = 0.72 - 0.80  # accuracy of b minus a; wrong draws hit the right label 1/4 of the time
    true_delta *= 1 - 1 / 4
    covered, excluded_zero = 0, 0
    for seed in range(20):
        rng = np.random.default_rng(seed)
        y = rng.choice(labels, 1500)
        a = _synthetic_run(rng, y, 0.80, labels)
        b = _synthetic_run(rng, y, 0.72, labels)
        res = M.bootstrap_delta(lambda t, q: float(np.mean(t == q)), (y, a), (y, b), n=300, seed=seed)
        assert res.paired  # same tickets, same truth
        covered += res.low <= true_delta <= res.high
        excluded_zero += res.high < 0
    assert covered >= 16  # nominal 95%: 19/20 expected
    assert excluded_zero == 20  # a 6-point drop on 1,500 tickets is always detected


def test_bootstrap_unpaired_and_no_difference():
    rng = np.random.default_rng(1)
    labels = np.array(list("abc"))
    ya, yb = rng.choice(labels, 800), rng.choice(labels, 900)
    res = M.bootstrap_delta(M.accuracy, (ya, _synthetic_run(rng, ya, 0.8, labels)),
                            (yb, _synthetic_run(rng, yb, 0.8, labels)), n=300, seed=0)
    assert not res.paired
    assert res.low < 0 < res.high
    with pytest.raises(ValueError, match="paired"):
        M.bootstrap_delta(M.accuracy, (ya, ya), (yb, yb), n=10, paired=True)


def _runs(seed=0, drop_label="c"):
    rng = np.random.default_rng(seed)
    labels = np.array(list("abcd"))
    y = rng.choice(labels, 1200)
    prev = _synthetic_run(rng, y, 0.9, labels)
    cur = _synthetic_run(rng, y, 0.9, labels)
    hurt = (y == drop_label) & (rng.random(len(y)) < 0.6)
    cur[hurt] = "a"
    ids = [f"t{i}" for i in range(len(y))]
    return y, prev, cur, ids


def test_compare_runs_flags_drop_and_names_the_label():
    y, prev, cur, ids = _runs()
    order = np.random.default_rng(5).permutation(len(y))  # current run in another order: aligned by id
    current = {"y_true": y[order], "y_pred": cur[order], "ids": [ids[i] for i in order]}
    previous = {"y_true": y, "y_pred": prev, "ids": ids}
    res = M.compare_runs(current, previous, metric="macro_f1", tolerance=0.01, n=300, seed=0)
    assert res.paired
    assert res.drop
    assert res.ci_high < 0
    assert res.culprits[0]["label"] == "c"
    assert res.culprits[0]["delta"] < -0.2
    assert "c" in res.reason


def test_compare_runs_no_drop_and_tolerance():
    y, prev, _, ids = _runs()
    same = M.compare_runs({"y_true": y, "y_pred": prev, "ids": ids}, {"y_true": y, "y_pred": prev, "ids": ids},
                          n=200, seed=0)
    assert not same.drop and same.delta == 0 and same.culprits == []
    y, prev, cur, ids = _runs()
    lenient = M.compare_runs({"y_true": y, "y_pred": cur}, {"y_true": y, "y_pred": prev}, tolerance=0.5, n=200)
    assert not lenient.drop and "within tolerance" in lenient.reason
    assert lenient.paired  # no ids, same truth sequence
    other = M.compare_runs({"y_true": y[:600], "y_pred": cur[:600], "ids": ids[:600]},
                           {"y_true": y[600:], "y_pred": prev[600:], "ids": ids[600:]}, n=200)
    assert not other.paired  # different tickets
    with pytest.raises(ValueError, match="y_pred"):
        M.compare_runs({"y_true": y}, {"y_true": y, "y_pred": prev})
