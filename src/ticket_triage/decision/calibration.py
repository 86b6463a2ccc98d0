"""Probability calibration: temperature scaling and isotonic regression, plus ECE.

All functions take and return numpy arrays: ``probs`` is (n, k) with rows summing to 1,
``y_idx`` is (n,) integer column indices of the true labels.

Methods (``fit_calibrator(..., method=...)``):

* ``none`` - identity.
* ``temperature`` - one scalar T fitted by minimising the negative log-likelihood of
  ``softmax(log(p) / T)`` (scipy, bounded search over log T). Keeps the argmax.
* ``isotonic`` - top-label isotonic regression: a monotone map from the top probability to the
  observed accuracy; the other classes are rescaled to fill the remaining mass. The new top
  probability is floored so the argmax never changes. Data-efficient (one curve for all
  classes), which is what the auto-route thresholds read.
* ``isotonic_per_class`` - one-vs-rest isotonic per class, then rows renormalised (needs many
  validation examples per class; may change the argmax).

``choose_calibrator`` picks the method with the lowest top-label ECE measured by K-fold
cross-validation *within* the validation split: for each method, fit on K-1 folds, transform
the held-out fold, pool the out-of-fold probabilities, compute ECE; the winner (ties within
``tol`` go to the earlier method in ``methods``) is refitted on the whole validation split.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

METHODS: tuple[str, ...] = ("none", "temperature", "isotonic", "isotonic_per_class")
_EPS = 1e-12


def _check(probs: np.ndarray, y_idx: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] < 2:
        raise ValueError(f"probs must be a 2-D array (n_tickets, n_labels>=2), got shape {p.shape}")
    if not np.all(np.isfinite(p)):
        raise ValueError("probs contains NaN or inf; check the classifier output")
    if y_idx is None:
        return p, None
    y = np.asarray(y_idx)
    if y.shape != (p.shape[0],):
        raise ValueError(f"y_idx must have shape ({p.shape[0]},) to match probs, got {y.shape}")
    if len(y) and (y.min() < 0 or y.max() >= p.shape[1]):
        raise ValueError(f"y_idx values must be column indices in [0, {p.shape[1]}); "
                         "map labels with classifier.labels.index(label)")
    return p, y.astype(np.int64)


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _nll(logp: np.ndarray, y: np.ndarray, t: float) -> float:
    z = logp / t
    z = z - z.max(axis=1, keepdims=True)
    lse = np.log(np.exp(z).sum(axis=1))
    return float(np.mean(lse - z[np.arange(len(y)), y]))


@dataclass
class Calibrator:
    """A fitted calibration map. ``transform(probs)`` returns calibrated probabilities."""

    method: str = "none"
    temperature: float = 1.0
    # isotonic: knots of piecewise-linear monotone maps (x ascending) - one for "isotonic",
    # one per class for "isotonic_per_class"
    knots_x: list[list[float]] = field(default_factory=list)
    knots_y: list[list[float]] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)

    def transform(self, probs: np.ndarray) -> np.ndarray:
        p, _ = _check(probs)
        if self.method == "none" or len(p) == 0:
            return p.copy()
        if self.method == "temperature":
            return _softmax(np.log(np.clip(p, _EPS, 1.0)) / self.temperature)
        if self.method == "isotonic":
            return self._transform_top(p)
        if self.method == "isotonic_per_class":
            if len(self.knots_x) != p.shape[1]:
                raise ValueError(f"calibrator was fitted on {len(self.knots_x)} classes, got {p.shape[1]}")
            q = np.column_stack([np.interp(p[:, j], self.knots_x[j], self.knots_y[j])
                                 for j in range(p.shape[1])])
            q = np.clip(q, _EPS, None)
            return q / q.sum(axis=1, keepdims=True)
        raise ValueError(f"unknown calibration method {self.method!r}; expected one of {', '.join(METHODS)}")

    def _transform_top(self, p: np.ndarray) -> np.ndarray:
        n = len(p)
        top = p.argmax(axis=1)
        ptop = p[np.arange(n), top]
        srt = np.sort(p, axis=1)
        p2 = srt[:, -2]
        q_top = np.interp(ptop, self.knots_x[0], self.knots_y[0])
        # floor so the old argmax stays the argmax after rescaling the rest
        floor = p2 / np.maximum(1.0 - ptop + p2, _EPS)
        q_top = np.clip(np.maximum(q_top, floor + 1e-9), 0.0, 1.0)
        rest = 1.0 - ptop
        scale = np.where(rest > _EPS, (1.0 - q_top) / np.maximum(rest, _EPS), 0.0)
        q = p * scale[:, None]
        q[np.arange(n), top] = q_top
        # rows where all mass sat on the top class: spread the rest evenly over the others
        flat = rest <= _EPS
        if flat.any() and p.shape[1] > 1:
            k = p.shape[1]
            q[flat] = ((1.0 - q_top[flat]) / (k - 1))[:, None]
            q[flat, top[flat]] = q_top[flat]
        return q

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "temperature": float(self.temperature),
                "knots_x": [[float(v) for v in k] for k in self.knots_x],
                "knots_y": [[float(v) for v in k] for k in self.knots_y],
                "metrics": self.metrics}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Calibrator":
        method = d.get("method", "none")
        if method not in METHODS:
            raise ValueError(f"unknown calibration method {method!r} in policy; expected one of {', '.join(METHODS)}")
        return cls(method=method, temperature=float(d.get("temperature", 1.0)),
                   knots_x=[list(map(float, k)) for k in d.get("knots_x", [])],
                   knots_y=[list(map(float, k)) for k in d.get("knots_y", [])],
                   metrics=dict(d.get("metrics", {})))


def _isotonic_knots(x: np.ndarray, y: np.ndarray) -> tuple[list[float], list[float]]:
    from sklearn.isotonic import IsotonicRegression

    if len(x) == 0:
        return [0.0, 1.0], [0.0, 1.0]
    ir = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip")
    ir.fit(x, y)
    kx = np.asarray(ir.X_thresholds_, dtype=float)
    ky = np.asarray(ir.y_thresholds_, dtype=float)
    if len(kx) == 1:
        kx, ky = np.array([0.0, 1.0]), np.array([ky[0], ky[0]])
    return kx.tolist(), ky.tolist()


def fit_calibrator(probs: np.ndarray, y_idx: np.ndarray, method: str = "temperature") -> Calibrator:
    """Fit a calibrator on held-out (validation) probabilities and true label indices."""
    if method not in METHODS:
        raise ValueError(f"unknown calibration method {method!r}; expected one of {', '.join(METHODS)} "
                         "(set thresholds.calibration in conf/thresholds/)")
    p, y = _check(probs, y_idx)
    assert y is not None
    if method == "none":
        return Calibrator("none")
    if len(y) == 0:
        raise ValueError("cannot fit a calibrator on zero validation tickets; use method='none' "
                         "or give the split a validation share")
    if method == "temperature":
        from scipy.optimize import minimize_scalar

        logp = np.log(np.clip(p, _EPS, 1.0))
        res = minimize_scalar(lambda lt: _nll(logp, y, float(np.exp(lt))),
                              bounds=(np.log(0.02), np.log(50.0)), method="bounded",
                              options={"xatol": 1e-4})
        t = float(np.exp(res.x))
        return Calibrator("temperature", temperature=t,
                          metrics={"nll_before": _nll(logp, y, 1.0), "nll_after": _nll(logp, y, t)})
    if method == "isotonic":
        top = p.argmax(axis=1)
        kx, ky = _isotonic_knots(p[np.arange(len(y)), top], (top == y).astype(float))
        return Calibrator("isotonic", knots_x=[kx], knots_y=[ky])
    kxs, kys = [], []
    for j in range(p.shape[1]):
        kx, ky = _isotonic_knots(p[:, j], (y == j).astype(float))
        kxs.append(kx)
        kys.append(ky)
    return Calibrator("isotonic_per_class", knots_x=kxs, knots_y=kys)


def reliability_curve(probs: np.ndarray, y_idx: np.ndarray, n_bins: int = 15) -> dict[str, list[float]]:
    """Top-label reliability data: per equal-width confidence bin, its edges, mean confidence,
    accuracy and count (empty bins have count 0 and NaN-free zeros). For plots and ECE."""
    p, y = _check(probs, y_idx)
    assert y is not None
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    conf = p.max(axis=1) if len(p) else np.zeros(0)
    correct = (p.argmax(axis=1) == y).astype(float) if len(p) else np.zeros(0)
    b = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, n_bins - 1)
    count = np.bincount(b, minlength=n_bins).astype(float)
    s_conf = np.bincount(b, weights=conf, minlength=n_bins)
    s_acc = np.bincount(b, weights=correct, minlength=n_bins)
    nz = np.maximum(count, 1.0)
    return {"bin_lower": edges[:-1].tolist(), "bin_upper": edges[1:].tolist(),
            "confidence": (s_conf / nz).tolist(), "accuracy": (s_acc / nz).tolist(),
            "count": count.astype(int).tolist()}


def expected_calibration_error(probs: np.ndarray, y_idx: np.ndarray, n_bins: int = 15) -> float:
    """Top-label ECE of a probability matrix (the one implementation lives in
    :func:`ticket_triage.metrics.expected_calibration_error`)."""
    from ticket_triage.metrics import expected_calibration_error as ece

    p, y = _check(probs, y_idx)
    if len(p) == 0:
        return 0.0
    return ece(p.max(axis=1), p.argmax(axis=1) == y, n_bins)


def choose_calibrator(probs: np.ndarray, y_idx: np.ndarray,
                      methods: Sequence[str] = ("none", "temperature", "isotonic"),
                      n_folds: int = 5, n_bins: int = 15, seed: int = 0,
                      tol: float = 1e-3) -> Calibrator:
    """Pick the method with the lowest cross-validated top-label ECE on the validation split
    (see the module docstring), refit it on all of it and record the CV scores in
    ``calibrator.metrics``."""
    p, y = _check(probs, y_idx)
    assert y is not None
    bad = [m for m in methods if m not in METHODS]
    if bad or not methods:
        raise ValueError(f"unknown calibration method(s) {bad}; expected some of {', '.join(METHODS)}")
    n = len(y)
    if n < 2 * n_folds:
        cal = fit_calibrator(p, y, methods[0])
        cal.metrics.update({"chosen_by": f"too few validation tickets ({n}) for {n_folds}-fold CV: "
                                         f"used the first method"})
        return cal
    rng = np.random.default_rng(seed)
    folds = np.array_split(rng.permutation(n), n_folds)
    scores: dict[str, float] = {}
    for m in methods:
        oof = np.empty_like(p)
        for f in folds:
            mask = np.ones(n, dtype=bool)
            mask[f] = False
            oof[f] = fit_calibrator(p[mask], y[mask], m).transform(p[f])
        scores[m] = expected_calibration_error(oof, y, n_bins)
    best = min(scores.values())
    chosen = next(m for m in methods if scores[m] <= best + tol)
    cal = fit_calibrator(p, y, chosen)
    cal.metrics.update({"cv_ece": scores, "chosen_by": f"lowest {n_folds}-fold CV top-label ECE",
                        "ece_before": expected_calibration_error(p, y, n_bins),
                        "ece_after_in_sample": expected_calibration_error(cal.transform(p), y, n_bins)})
    return cal
