"""The one implementation of the evaluation metrics (training, evaluation, continuous eval).

Everything here works on plain sequences / numpy arrays and returns floats, dicts or
DataFrames; nothing logs anywhere (``tracking.py`` is the sole MLflow caller).

* ``classification_metrics`` -- accuracy, macro F1 and per-label precision / recall / F1 / support.
* ``log_loss``, ``expected_calibration_error`` (canonical ECE; ``calibration.py`` may call it),
  ``reliability_bins`` (the data behind a reliability diagram).
* ``auto_route_metrics`` -- what the two-threshold policy does: coverage (auto-routed share),
  precision of the auto-routed, draft / review shares, and where out-of-scope tickets went.
* ``coverage_precision_curve`` -- precision of the auto-routed set as the threshold moves.
* ``bootstrap_delta`` -- a metric difference between two runs with a 95% bootstrap interval,
  paired when both runs scored the same tickets.
* ``compare_runs`` -- flags a significant drop and names the labels that caused it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

OOS_MARKERS: frozenset[Any] = frozenset({None, "", "oos", "out_of_scope"})


# -- helpers ------------------------------------------------------------------------------------
def _as_obj(a: Sequence[Any]) -> np.ndarray:
    return np.asarray(list(a) if not isinstance(a, np.ndarray) else a, dtype=object)


def _check_same_length(**arrays: Sequence[Any]) -> int:
    lens = {k: len(v) for k, v in arrays.items()}
    if len(set(lens.values())) > 1:
        raise ValueError(f"inputs must have the same length, got {lens}")
    return next(iter(lens.values())) if lens else 0


def _encode(y_true: Sequence[Any], y_pred: Sequence[Any], labels: Sequence[Any] | None
            ) -> tuple[np.ndarray, np.ndarray, list[Any]]:
    """Map labels to integer codes (``labels`` order); values outside ``labels`` get -1."""
    yt, yp = _as_obj(y_true), _as_obj(y_pred)
    if labels is None:
        seen = {v for v in np.concatenate([yt, yp]) if v is not None}
        labels = sorted(seen, key=str)
    labels = list(labels)
    index = {lab: i for i, lab in enumerate(labels)}
    t = np.fromiter((index.get(v, -1) for v in yt), dtype=np.int64, count=len(yt))
    p = np.fromiter((index.get(v, -1) for v in yp), dtype=np.int64, count=len(yp))
    return t, p, labels


def _prf_from_codes(t: np.ndarray, p: np.ndarray, k: int) -> tuple[np.ndarray, ...]:
    """Per-label precision, recall, F1, support, predicted counts from integer codes."""
    match = t == p
    tp = np.bincount(t[match & (t >= 0)], minlength=k)[:k].astype(float)
    support = np.bincount(t[t >= 0], minlength=k)[:k].astype(float)
    predicted = np.bincount(p[p >= 0], minlength=k)[:k].astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(support > 0, tp / support, 0.0)
        denom = precision + recall
        f1 = np.where(denom > 0, 2 * precision * recall / denom, 0.0)
    return precision, recall, f1, support, predicted


# -- classification --------------------------------------------------------------------------
def classification_metrics(y_true: Sequence[Any], y_pred: Sequence[Any],
                           labels: Sequence[Any] | None = None) -> dict[str, Any]:
    """Accuracy, macro F1 and per-label precision / recall / F1 / support.

    ``labels`` fixes the label set and order (default: sorted union of both inputs).
    Predictions outside ``labels`` (e.g. ``None`` for out-of-scope) count as wrong and are
    credited to no label. Macro F1 averages over the labels that occur in ``y_true`` or
    ``y_pred`` (labels absent from both do not drag it to zero); undefined precision /
    recall are 0.
    """
    n = _check_same_length(y_true=y_true, y_pred=y_pred)
    if n == 0:
        raise ValueError("classification_metrics needs at least one prediction; got empty inputs")
    t, p, labels = _encode(y_true, y_pred, labels)
    k = len(labels)
    precision, recall, f1, support, predicted = _prf_from_codes(t, p, k)
    active = (support > 0) | (predicted > 0)
    accuracy = float(np.mean(_as_obj(y_true) == _as_obj(y_pred)))
    weights = support / support.sum() if support.sum() > 0 else np.zeros(k)
    return {
        "n": int(n),
        "accuracy": accuracy,
        "macro_f1": float(f1[active].mean()) if active.any() else 0.0,
        "weighted_f1": float((f1 * weights).sum()),
        "per_label": {
            lab: {"precision": float(precision[i]), "recall": float(recall[i]),
                  "f1": float(f1[i]), "support": int(support[i])}
            for i, lab in enumerate(labels)
        },
    }


def macro_f1(y_true: Sequence[Any], y_pred: Sequence[Any]) -> float:
    """Macro F1 (same definition as ``classification_metrics``); fast for bootstrapping."""
    return float(classification_metrics(y_true, y_pred)["macro_f1"])


def accuracy(y_true: Sequence[Any], y_pred: Sequence[Any]) -> float:
    """Share of exact matches."""
    _check_same_length(y_true=y_true, y_pred=y_pred)
    return float(np.mean(_as_obj(y_true) == _as_obj(y_pred)))


def log_loss(probs: np.ndarray, y_true: Sequence[Any], labels: Sequence[Any] | None = None,
             eps: float = 1e-15) -> float:
    """Mean negative log-likelihood of the true label.

    ``probs`` has one column per label in ``labels`` order; ``y_true`` holds labels (then
    ``labels`` is required) or integer column indices.
    """
    probs = np.asarray(probs, dtype=float)
    if probs.ndim != 2:
        raise ValueError(f"probs must be 2-D (n_tickets, n_labels), got shape {probs.shape}")
    _check_same_length(probs=probs, y_true=y_true)
    if labels is not None:
        index = {lab: i for i, lab in enumerate(labels)}
        missing = sorted({str(v) for v in y_true if v not in index})
        if missing:
            raise ValueError(f"true labels not among the probability columns: {missing[:5]}; "
                             "pass the label list the model was trained on")
        idx = np.array([index[v] for v in y_true], dtype=int)
    else:
        idx = np.asarray(y_true, dtype=int)
    p = np.clip(probs[np.arange(len(idx)), idx], eps, 1.0)
    return float(-np.mean(np.log(p)))


# -- calibration ----------------------------------------------------------------------------
def reliability_bins(conf: Sequence[float], correct: Sequence[bool], n_bins: int = 15) -> pd.DataFrame:
    """Equal-width confidence bins on [0, 1]: bin edges, count, mean confidence, accuracy.

    The last bin is closed on the right (confidence 1.0 falls in it); empty bins have NaN
    means and count 0.
    """
    c = np.asarray(conf, dtype=float)
    y = np.asarray(correct, dtype=float)
    _check_same_length(conf=c, correct=y)
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    if c.size and (np.nanmin(c) < 0 or np.nanmax(c) > 1):
        raise ValueError("confidences must lie in [0, 1]; pass the top-class probability")
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    which = np.clip(np.digitize(c, edges[1:-1], right=False), 0, n_bins - 1)
    count = np.bincount(which, minlength=n_bins)
    sum_c = np.bincount(which, weights=c, minlength=n_bins)
    sum_y = np.bincount(which, weights=y, minlength=n_bins)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_c = np.where(count > 0, sum_c / np.maximum(count, 1), np.nan)
        acc = np.where(count > 0, sum_y / np.maximum(count, 1), np.nan)
    return pd.DataFrame({"bin_low": edges[:-1], "bin_high": edges[1:], "count": count,
                         "confidence": mean_c, "accuracy": acc})


def expected_calibration_error(conf: Sequence[float], correct: Sequence[bool], n_bins: int = 15) -> float:
    """ECE with ``n_bins`` equal-width bins: sum_b |acc_b - conf_b| * n_b / N.

    This is the canonical metric (reported everywhere); ``calibration.py`` should call it
    rather than keep its own copy.
    """
    bins = reliability_bins(conf, correct, n_bins)
    n = bins["count"].sum()
    if n == 0:
        raise ValueError("expected_calibration_error needs at least one prediction")
    full = bins[bins["count"] > 0]
    return float((np.abs(full["accuracy"] - full["confidence"]) * full["count"]).sum() / n)


# -- routing policy -------------------------------------------------------------------------
def _is_oos(v: Any, oos_label: Any) -> bool:
    if oos_label is not None and v == oos_label:
        return True
    try:
        return v in OOS_MARKERS or (isinstance(v, float) and np.isnan(v))
    except TypeError:
        return False


def auto_route_metrics(bands: Sequence[str], y_true: Sequence[Any], y_pred: Sequence[Any],
                       oos_label: Any = None) -> dict[str, Any]:
    """What the two-threshold policy did.

    Returns ``coverage`` (auto-routed share), ``auto_precision`` (share of auto-routed with the
    right label; out-of-scope tickets auto-routed count as wrong), ``draft_share``,
    ``draft_precision``, ``review_share``; and over out-of-scope tickets (``y_true`` is
    ``None``, empty, ``"oos"``, ``"out_of_scope"`` or ``oos_label``) ``oos_review_share``
    (sent to review, the desired outcome) and ``oos_auto_share``. Precisions are NaN when
    their band is empty, ``oos_*`` are NaN without out-of-scope tickets.
    """
    n = _check_same_length(bands=bands, y_true=y_true, y_pred=y_pred)
    if n == 0:
        raise ValueError("auto_route_metrics needs at least one decision; got empty inputs")
    b = _as_obj(bands)
    unknown = sorted({str(v) for v in b} - {"auto_route", "draft", "review"})
    if unknown:
        raise ValueError(f"unknown band(s) {unknown}; expected auto_route, draft or review")
    yt, yp = _as_obj(y_true), _as_obj(y_pred)
    oos = np.array([_is_oos(v, oos_label) for v in yt], dtype=bool)
    right = (yt == yp) & ~oos

    def _prec(mask: np.ndarray) -> float:
        return float(right[mask].mean()) if mask.any() else float("nan")

    auto, draft, review = b == "auto_route", b == "draft", b == "review"
    n_oos = int(oos.sum())
    return {
        "n": int(n),
        "coverage": float(auto.mean()),
        "auto_n": int(auto.sum()),
        "auto_precision": _prec(auto),
        "draft_share": float(draft.mean()),
        "draft_precision": _prec(draft),
        "review_share": float(review.mean()),
        "oos_n": n_oos,
        "oos_review_share": float(review[oos].mean()) if n_oos else float("nan"),
        "oos_auto_share": float(auto[oos].mean()) if n_oos else float("nan"),
    }


def coverage_precision_curve(conf: Sequence[float], correct: Sequence[bool]) -> pd.DataFrame:
    """Coverage and precision of the set ``conf >= threshold`` for every distinct threshold.

    Rows are sorted by decreasing threshold (increasing coverage); ties in confidence are
    kept together, so each row is a threshold one could actually set.
    """
    c = np.asarray(conf, dtype=float)
    y = np.asarray(correct, dtype=float)
    n = _check_same_length(conf=c, correct=y)
    if n == 0:
        raise ValueError("coverage_precision_curve needs at least one prediction")
    order = np.argsort(-c, kind="stable")
    c, y = c[order], y[order]
    cum = np.cumsum(y)
    # last index of each run of equal confidence
    last = np.r_[np.nonzero(np.diff(c))[0], n - 1]
    k = last + 1
    return pd.DataFrame({"threshold": c[last], "coverage": k / n, "precision": cum[last] / k,
                         "n_covered": k})


def coverage_at_precision(conf: Sequence[float], correct: Sequence[bool], target: float) -> float:
    """Largest coverage whose precision is still >= ``target`` (0.0 when none is)."""
    curve = coverage_precision_curve(conf, correct)
    ok = curve[curve["precision"] >= target]
    return float(ok["coverage"].max()) if len(ok) else 0.0


# -- run comparison -------------------------------------------------------------------------
@dataclass
class BootstrapResult:
    """``delta = metric(b) - metric(a)`` with a percentile bootstrap interval."""

    delta: float
    low: float
    high: float
    a: float
    b: float
    paired: bool
    n: int
    level: float = 0.95

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def bootstrap_delta(metric_fn: Callable[..., float], a_inputs: Sequence[Any],
                    b_inputs: Sequence[Any], n: int = 1000, seed: int = 0,
                    paired: bool | None = None, level: float = 0.95) -> BootstrapResult:
    """Bootstrap the difference ``metric_fn(*b_inputs) - metric_fn(*a_inputs)``.

    ``a_inputs`` / ``b_inputs`` are tuples of equally long arrays (e.g. ``(y_true, y_pred)``)
    passed positionally to ``metric_fn``. Paired resampling (the same row indices for both
    runs) is used when ``paired`` is True; when ``paired`` is None it is used if both runs
    have the same length and the same first input (the same tickets with the same truth),
    otherwise the two runs are resampled independently.
    """
    if n < 1:
        raise ValueError(f"bootstrap n must be >= 1, got {n}")
    a_inputs = [np.asarray(x) if not isinstance(x, np.ndarray) else x for x in a_inputs]
    b_inputs = [np.asarray(x) if not isinstance(x, np.ndarray) else x for x in b_inputs]
    na = _check_same_length(**{f"a{i}": x for i, x in enumerate(a_inputs)})
    nb = _check_same_length(**{f"b{i}": x for i, x in enumerate(b_inputs)})
    if na == 0 or nb == 0:
        raise ValueError("bootstrap_delta needs non-empty inputs for both runs")
    if paired is None:
        paired = na == nb and bool(np.all(a_inputs[0] == b_inputs[0]))
    if paired and na != nb:
        raise ValueError(f"paired bootstrap needs the same tickets in both runs ({na} vs {nb} rows); "
                         "align them by ticket id or pass paired=False")
    a_val, b_val = float(metric_fn(*a_inputs)), float(metric_fn(*b_inputs))
    rng = np.random.default_rng(seed)
    deltas = np.empty(n)
    for i in range(n):
        ia = rng.integers(0, na, na)
        ib = ia if paired else rng.integers(0, nb, nb)
        deltas[i] = metric_fn(*[x[ib] for x in b_inputs]) - metric_fn(*[x[ia] for x in a_inputs])
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(deltas, [tail, 100 - tail])
    return BootstrapResult(delta=b_val - a_val, low=float(low), high=float(high), a=a_val,
                           b=b_val, paired=bool(paired), n=int(n), level=level)


METRIC_FNS: dict[str, Callable[[Any, Any], float]] = {"accuracy": accuracy, "macro_f1": macro_f1}


@dataclass
class RunComparison:
    """Outcome of ``compare_runs``; ``drop`` is True for a significant drop beyond tolerance."""

    metric: str
    current: float
    previous: float
    delta: float
    ci_low: float
    ci_high: float
    paired: bool
    drop: bool
    tolerance: float
    culprits: list[dict[str, Any]] = field(default_factory=list)  # [{label, previous_f1, current_f1, delta}]
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _run_arrays(run: dict[str, Any], name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    for key in ("y_true", "y_pred"):
        if key not in run:
            raise ValueError(f"{name} run lacks {key!r}: compare_runs needs per-ticket predictions "
                             "({'y_true': [...], 'y_pred': [...], 'ids': [...] optional})")
    yt, yp = _as_obj(run["y_true"]), _as_obj(run["y_pred"])
    _check_same_length(y_true=yt, y_pred=yp)
    ids = _as_obj(run["ids"]) if run.get("ids") is not None else None
    if ids is not None and len(ids) != len(yt):
        raise ValueError(f"{name} run: {len(ids)} ids but {len(yt)} predictions")
    return yt, yp, ids


def compare_runs(current: dict[str, Any], previous: dict[str, Any], *, metric: str = "macro_f1",
                 tolerance: float = 0.01, n: int = 1000, seed: int = 0, level: float = 0.95,
                 labels: Sequence[Any] | None = None, top_k: int = 3) -> RunComparison:
    """Compare two runs' predictions and flag a significant drop.

    Each run is ``{"y_true": [...], "y_pred": [...], "ids": [...]}`` (ids optional). When both
    have ids and share the same ticket set, rows are aligned and the bootstrap is paired; with
    ids that differ it is unpaired; without ids it is paired when both runs have the same
    ``y_true`` sequence (see ``bootstrap_delta``). A drop is flagged when the interval on
    ``current - previous`` lies entirely below 0 and the point drop exceeds ``tolerance``;
    ``culprits`` then lists the ``top_k`` labels with the largest per-label F1 drop.
    """
    if metric not in METRIC_FNS:
        raise ValueError(f"unknown metric {metric!r}; choose one of {', '.join(METRIC_FNS)}")
    ct, cp, cid = _run_arrays(current, "current")
    pt, pp, pid = _run_arrays(previous, "previous")
    paired: bool | None = None  # without ids: paired when both runs hold the same truth sequence
    if cid is not None and pid is not None and len(cid) == len(pid) and set(cid) == set(pid):
        pos = {v: i for i, v in enumerate(pid)}
        if len(pos) == len(pid):
            order = np.array([pos[v] for v in cid])
            pt, pp = pt[order], pp[order]
            paired = True
        else:
            paired = False
    elif cid is not None or pid is not None:
        paired = False
    # integer codes once, so resampling is cheap
    all_labels = list(labels) if labels is not None else sorted(
        {v for v in np.concatenate([ct, cp, pt, pp]) if v is not None}, key=str)
    ct_i, cp_i, _ = _encode(ct, cp, all_labels)
    pt_i, pp_i, _ = _encode(pt, pp, all_labels)
    k = len(all_labels)

    def fn(t: np.ndarray, p: np.ndarray) -> float:
        if metric == "accuracy":
            return float(np.mean(t == p))
        _, _, f1, sup, pred = _prf_from_codes(t, p, k)
        active = (sup > 0) | (pred > 0)
        return float(f1[active].mean()) if active.any() else 0.0

    res = bootstrap_delta(fn, (pt_i, pp_i), (ct_i, cp_i), n=n, seed=seed, paired=paired, level=level)
    drop = res.high < 0 and -res.delta > tolerance
    f1_now = _prf_from_codes(ct_i, cp_i, k)[2]
    f1_before = _prf_from_codes(pt_i, pp_i, k)[2]
    diffs = f1_now - f1_before
    culprits = [
        {"label": all_labels[i], "previous_f1": float(f1_before[i]), "current_f1": float(f1_now[i]),
         "delta": float(diffs[i])}
        for i in np.argsort(diffs, kind="stable")[:top_k] if diffs[i] < 0
    ] if drop else []
    if drop:
        reason = (f"{metric} fell {-res.delta:.3f} (CI {res.low:+.3f}..{res.high:+.3f}), beyond "
                  f"tolerance {tolerance}; largest drops: "
                  + ", ".join(f"{c['label']} ({c['delta']:+.3f})" for c in culprits))
    elif res.high < 0:
        reason = f"{metric} fell {-res.delta:.3f}, significant but within tolerance {tolerance}"
    else:
        reason = f"no significant drop in {metric} (delta {res.delta:+.3f}, CI {res.low:+.3f}..{res.high:+.3f})"
    return RunComparison(metric=metric, current=res.b, previous=res.a, delta=res.delta,
                         ci_low=res.low, ci_high=res.high, paired=res.paired, drop=bool(drop),
                         tolerance=tolerance, culprits=culprits, reason=reason)
