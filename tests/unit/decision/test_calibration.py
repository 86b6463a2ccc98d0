"""Unit tests for ticket_triage.decision.calibration on a synthetic over-confident model."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ticket_triage.decision.calibration import (Calibrator, choose_calibrator, expected_calibration_error,
                                       fit_calibrator, reliability_curve)


def overconfident(n: int = 3000, k: int = 5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """True class probabilities from logits z; the 'model' reports softmax(3 z): too sharp."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, k))
    true_p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    y = (true_p.cumsum(1) < rng.uniform(size=(n, 1))).sum(1).clip(0, k - 1)
    model = np.exp(3 * z) / np.exp(3 * z).sum(1, keepdims=True)
    return model, y


@pytest.mark.parametrize("method", ["temperature", "isotonic", "isotonic_per_class"])
def test_calibration_reduces_ece(method: str) -> None:
    p, y = overconfident()
    fit_p, fit_y, test_p, test_y = p[:2000], y[:2000], p[2000:], y[2000:]
    before = expected_calibration_error(test_p, test_y)
    cal = fit_calibrator(fit_p, fit_y, method)
    after = expected_calibration_error(cal.transform(test_p), test_y)
    assert before > 0.15
    assert after < before / 2
    q = cal.transform(test_p)
    assert np.allclose(q.sum(1), 1.0)


def test_temperature_recovers_known_t_and_keeps_argmax() -> None:
    p, y = overconfident(n=4000)
    cal = fit_calibrator(p, y, "temperature")
    assert 2.4 < cal.temperature < 3.6  # the model is softmax(3 z) of the truth
    assert (cal.transform(p).argmax(1) == p.argmax(1)).all()
    assert cal.metrics["nll_after"] < cal.metrics["nll_before"]


def test_isotonic_top_keeps_argmax() -> None:
    p, y = overconfident()
    q = fit_calibrator(p, y, "isotonic").transform(p)
    assert (q.argmax(1) == p.argmax(1)).all()


def test_roundtrip_json() -> None:
    p, y = overconfident(n=600)
    for m in ("none", "temperature", "isotonic", "isotonic_per_class"):
        cal = fit_calibrator(p, y, m)
        again = Calibrator.from_dict(json.loads(json.dumps(cal.to_dict())))
        assert np.allclose(again.transform(p), cal.transform(p))


def test_choose_calibrator_picks_a_calibrating_method() -> None:
    p, y = overconfident(n=1500)
    cal = choose_calibrator(p, y, methods=("none", "temperature", "isotonic"))
    assert cal.method != "none"
    assert cal.metrics["cv_ece"]["none"] > cal.metrics["cv_ece"][cal.method]


def test_perfectly_calibrated_ece_small_and_curve() -> None:
    rng = np.random.default_rng(1)
    conf = rng.uniform(0.5, 1.0, 20000)
    correct = rng.uniform(size=20000) < conf
    p = np.column_stack([conf, 1 - conf])
    y = np.where(correct, 0, 1)
    assert expected_calibration_error(p, y) < 0.02
    rc = reliability_curve(p, y, n_bins=10)
    assert sum(rc["count"]) == 20000 and len(rc["accuracy"]) == 10
    assert rc["count"][0] == 0  # no confidence below 0.5


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="2-D"):
        fit_calibrator(np.ones(3), np.zeros(3, int))
    with pytest.raises(ValueError, match="column indices"):
        fit_calibrator(np.full((2, 2), 0.5), np.array([0, 5]))
    with pytest.raises(ValueError, match="unknown calibration method"):
        fit_calibrator(np.full((2, 2), 0.5), np.array([0, 1]), "platt")
