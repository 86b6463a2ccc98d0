"""Per-label confidence thresholds: auto_route / draft / review bands.

A ticket predicted as label L with calibrated confidence c is

* ``auto_route`` if ``auto_route[L]`` is set and ``c >= auto_route[L]``,
* ``review``     if ``c < review[L]``,
* ``draft``      otherwise (an agent confirms the proposed tag).

``pinned`` labels always get their pinned band. ``cfg`` is a dict shaped like
``conf/thresholds/default.yaml`` (``auto_route``, ``review``, ``tune``, ``target_precision``,
``confidence``, ``min_support``, ``tickets_per_day``, ``review_capacity``, ``pinned``), plus
optional keys ``strategy`` (default ``hybrid``) and ``reserved_review_share`` (default 0).

Auto-route threshold (``tune: true``), on validation tickets, with the one-sided
Clopper-Pearson lower bound LB(x, n) of precision at ``confidence``:

* ``per_label``: the lowest t such that among tickets predicted as L with conf >= t there are
  n >= ``min_support`` tickets and LB >= ``target_precision``. Strict, but with ~300
  validation tickets per label it can only pass with zero errors (at 95% confidence,
  LB(300, 300) = 0.990), so on realistic validation sets almost nothing routes.
* ``pooled``: one global t, the lowest for which the *pooled* auto-routed set (all labels)
  has LB >= target - a micro-precision guarantee, which is what the benchmark measures
  ("share auto-routed at >= 99 % precision"). A label takes the global t only if its own data
  does not contradict the target: its one-sided Clopper-Pearson *upper* bound at t is
  >= target (n >= ``min_support``). A contradicted label is raised to the lowest t' > t where
  it is not contradicted, or never auto-routes. The pooled bound is checked on the final
  per-label thresholds (raising a label can only change the pooled set, so t is searched
  in ascending order until the final assignment passes).
* ``hybrid`` (default): a label takes the lower of its strict per-label threshold (when it
  has one) and its pooled threshold; labels without a strict one take the ``pooled``
  treatment; the pooled bound is checked over all labels together. If no global t passes,
  only the strict per-label thresholds remain.

Labels that cannot meet any of this get ``auto_route = None`` (never auto-route).

``routed_before=(n, correct)``: tickets of the same tuning population that an earlier stage
already auto-routes (the cascade's first stage, :mod:`ticket_triage.decision.cascade`) and
that are not among ``conf``. The pooled bound is then checked on the union,
LB(correct + x, n + n_t) >= target, so the guarantee holds for everything auto-routed and the
earlier stage's margin above the target is not wasted. The per-label criteria (strict and not
contradicted) stay on this stage's own tickets.

Review threshold: the review band may hold at most ``review_capacity / tickets_per_day``
(minus ``reserved_review_share``, the share the caller expects out-of-scope and pinned tickets
to take; ``build_bundle`` measures it on validation when the config says ``auto``, which
means 0 when this module is called on bare scores) of validation tickets. A single global
cut r is the highest confidence with share(conf < r) <= that budget; each label's review
threshold is min(r, its auto threshold).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from ticket_triage.config import ThresholdsConfig

#: the keys tuning reads, with the ``thresholds`` section's defaults (config.ThresholdsConfig);
#: its ``reserved_review_share: auto`` is 0 here, on bare scores (see above)
DEFAULTS: dict[str, Any] = {k: getattr(ThresholdsConfig(), k) for k in (
    "auto_route", "review", "tune", "target_precision", "confidence", "min_support", "tickets_per_day",
    "review_capacity", "pinned", "strategy", "reserved_review_share")}
STRATEGIES = ("per_label", "pooled", "hybrid")
BAND_VALUES = ("auto_route", "draft", "review")
MAX_CANDIDATES = 400


def cp_lower(x: np.ndarray | int, n: np.ndarray | int, confidence: float) -> np.ndarray:
    """One-sided Clopper-Pearson lower bound on a proportion (x successes of n) at ``confidence``."""
    from scipy.stats import beta

    x = np.asarray(x, dtype=float)
    n = np.asarray(n, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        lb = beta.ppf(1.0 - confidence, x, n - x + 1.0)
    return np.where((x <= 0) | (n <= 0), 0.0, np.nan_to_num(lb, nan=0.0))


def cp_upper(x: np.ndarray | int, n: np.ndarray | int, confidence: float) -> np.ndarray:
    """One-sided Clopper-Pearson upper bound on a proportion (x successes of n)."""
    from scipy.stats import beta

    x = np.asarray(x, dtype=float)
    n = np.asarray(n, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        ub = beta.ppf(confidence, x + 1.0, n - x)
    return np.where((x >= n) | (n <= 0), 1.0, np.nan_to_num(ub, nan=1.0))


def _cfg(cfg: Mapping[str, Any] | None) -> dict[str, Any]:
    try:
        from omegaconf import OmegaConf
        if OmegaConf.is_config(cfg):
            cfg = OmegaConf.to_container(cfg, resolve=True)  # type: ignore[assignment]
    except ImportError:  # pragma: no cover
        pass
    out = dict(DEFAULTS)
    out.update(dict(cfg or {}))
    out["pinned"] = dict(out.get("pinned") or {})
    problems = []
    if out["strategy"] not in STRATEGIES:
        problems.append(f"strategy {out['strategy']!r} is not one of {', '.join(STRATEGIES)}")
    if not 0.0 < float(out["target_precision"]) < 1.0:
        problems.append(f"target_precision must be in (0, 1), got {out['target_precision']}")
    if not 0.5 <= float(out["confidence"]) < 1.0:
        problems.append(f"confidence must be in [0.5, 1), got {out['confidence']}")
    if str(out["reserved_review_share"]).lower() == "auto":
        # measured by ticket_triage.decision.triage.build_bundle, which knows the out-of-scope cut-off
        # and the rules; on bare scores there is nothing else competing for the review band
        out["reserved_review_share"] = 0.0
    try:
        if not 0.0 <= float(out["reserved_review_share"]) < 1.0:
            problems.append(f"reserved_review_share must be in [0, 1), got {out['reserved_review_share']}")
    except (TypeError, ValueError):
        problems.append(f"reserved_review_share must be a number or 'auto', got {out['reserved_review_share']!r}")
    if float(out["tickets_per_day"]) <= 0:
        problems.append("tickets_per_day must be positive")
    for lab, band in out["pinned"].items():
        if band not in BAND_VALUES:
            problems.append(f"pinned[{lab!r}] = {band!r} is not one of {', '.join(BAND_VALUES)}")
    if problems:
        raise ValueError("invalid thresholds config: " + "; ".join(problems)
                         + " (see conf/thresholds/default.yaml)")
    return out


@dataclass
class Thresholds:
    """Per-label thresholds and the band rule. JSON-serialisable via ``to_dict``."""

    labels: list[str]
    auto_route: dict[str, float | None]
    review: dict[str, float]
    pinned: dict[str, str] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def fixed(cls, labels: Sequence[str], auto_route: float = 0.85, review: float = 0.6,
              pinned: Mapping[str, str] | None = None) -> "Thresholds":
        """The same two thresholds for every label (``tune: false``)."""
        if review > auto_route:
            raise ValueError(f"review threshold {review} is above auto_route {auto_route}")
        return cls(list(labels), {lab: float(auto_route) for lab in labels},
                   {lab: float(review) for lab in labels}, dict(pinned or {}),
                   {"strategy": "fixed"})

    def band(self, label: str | None, conf: float) -> tuple[str, str]:
        """``(band, reason)`` for a ticket predicted as ``label`` with confidence ``conf``."""
        if label is None or label not in self.review:
            return "review", "unknown_label"
        if label in self.pinned:
            return self.pinned[label], f"label_pinned:{label}"
        conf = float(conf)
        if not np.isfinite(conf):
            return "review", "invalid_confidence"
        auto = self.auto_route.get(label)
        if auto is not None and conf >= auto:
            return "auto_route", "above_auto_threshold"
        if conf < self.review[label]:
            return "review", "below_review_threshold"
        if auto is None:
            return "draft", "label_never_auto_routes"
        return "draft", "between_thresholds"

    def bands(self, pred_labels: Sequence[str | None], conf: np.ndarray) -> list[tuple[str, str]]:
        """Vectorised convenience over ``band``."""
        return [self.band(lab, c) for lab, c in zip(pred_labels, np.asarray(conf, dtype=float))]

    def auto_routes(self, labels: Sequence[str], pred_idx: np.ndarray, conf: np.ndarray) -> np.ndarray:
        """Boolean mask: ``band(labels[pred_idx[i]], conf[i])`` is ``auto_route``, in numpy (the
        cascade evaluates it on every batch and on ~10k tuning tickets per candidate)."""
        pinned_auto = np.array([self.pinned.get(lab) == "auto_route" for lab in labels] + [False])
        floor = np.array([np.inf if lab not in self.review or lab in self.pinned or self.auto_route.get(lab) is None
                          else float(self.auto_route[lab]) for lab in labels] + [np.inf])
        idx = np.asarray(pred_idx, dtype=int)
        idx = np.where((idx >= 0) & (idx < len(labels)), idx, len(labels))  # out of range: unknown label
        conf = np.asarray(conf, dtype=float)
        return pinned_auto[idx] | (np.isfinite(conf) & (conf >= floor[idx]))

    def report(self, conf: np.ndarray, pred_idx: np.ndarray, y_idx: np.ndarray,
               confidence: float | None = None) -> list[dict[str, Any]]:
        """Per-label rows (plus an ``__all__`` row) on a labelled split: thresholds, tickets
        predicted, auto-route coverage, precision of the auto-routed tickets with its
        Clopper-Pearson lower bound, and the shares going to draft and review."""
        conf = np.asarray(conf, dtype=float)
        pred_idx = np.asarray(pred_idx)
        y_idx = np.asarray(y_idx)
        c = float(confidence if confidence is not None else self.info.get("confidence", 0.95))
        n_all = max(len(conf), 1)
        bands = np.array([self.band(self.labels[p], v)[0] for p, v in zip(pred_idx, conf)], dtype=object)
        correct = pred_idx == y_idx
        rows = []
        groups = [(lab, pred_idx == j) for j, lab in enumerate(self.labels)] + [("__all__", np.ones(len(conf), bool))]
        for lab, m in groups:
            n = int(m.sum())
            auto = m & (bands == "auto_route")
            na, xa = int(auto.sum()), int((auto & correct).sum())
            rows.append({
                "label": lab,
                "auto_route": self.auto_route.get(lab) if lab != "__all__" else None,
                "review": self.review.get(lab) if lab != "__all__" else None,
                "pinned": self.pinned.get(lab),
                "n_predicted": n,
                "coverage": na / n if n else 0.0,
                "n_auto": na,
                "precision": xa / na if na else None,
                "precision_lower": float(cp_lower(xa, na, c)) if na else None,
                "draft_share": int((m & (bands == "draft")).sum()) / n_all,
                "queue_share": int((m & (bands == "review")).sum()) / n_all,
            })
        return rows

    def to_dict(self) -> dict[str, Any]:
        return {"labels": list(self.labels),
                "auto_route": {k: (None if v is None else float(v)) for k, v in self.auto_route.items()},
                "review": {k: float(v) for k, v in self.review.items()},
                "pinned": dict(self.pinned), "info": _jsonable(self.info)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Thresholds":
        labels = list(d["labels"])
        auto = {k: (None if v is None else float(v)) for k, v in d["auto_route"].items()}
        review = {k: float(v) for k, v in d["review"].items()}
        missing = [lab for lab in labels if lab not in review or lab not in auto]
        if missing:
            raise ValueError(f"thresholds in policy.json lack labels {missing}; re-run tuning")
        return cls(labels, auto, review, dict(d.get("pinned", {})), dict(d.get("info", {})))


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.generic):
        return x.item()
    return x


def _candidates(values: np.ndarray) -> np.ndarray:
    u = np.unique(values)
    if len(u) > MAX_CANDIDATES:
        u = np.unique(np.quantile(values, np.linspace(0, 1, MAX_CANDIDATES)))
    return u


class _LabelCurve:
    """One label's validation tickets sorted by confidence (descending), with the prefixes
    (= candidate thresholds) that meet the strict and the not-contradicted criteria."""

    def __init__(self, c: np.ndarray, ok: np.ndarray, target: float, conf_lvl: float, min_support: int):
        order = np.argsort(-c, kind="stable")
        self.cs = c[order]
        oks = ok[order]
        n = np.arange(1, len(self.cs) + 1)
        x = np.cumsum(oks)
        # only positions at the end of a run of equal confidences define a threshold
        last = np.r_[self.cs[1:] != self.cs[:-1], True] if len(self.cs) else np.zeros(0, bool)
        valid = last & (n >= min_support)
        strict = np.zeros(len(self.cs), bool)
        loose = np.zeros(len(self.cs), bool)
        if valid.any():
            strict[valid] = cp_lower(x[valid], n[valid], conf_lvl) >= target
            loose[valid] = cp_upper(x[valid], n[valid], conf_lvl) >= target
        idx = np.arange(len(self.cs))
        # last_loose[i] = the largest passing prefix position <= i, or -1
        self.last_loose = np.maximum.accumulate(np.where(loose, idx, -1)) if len(idx) else idx
        passing = np.nonzero(strict)[0]
        self.strict = float(self.cs[passing[-1]]) if len(passing) else None

    def not_contradicted_from(self, t: float) -> float | None:
        """Lowest t' >= t whose set (conf >= t') has n >= min_support and a CP upper bound on
        precision >= target (the data does not contradict the target)."""
        m = int(np.searchsorted(-self.cs, -t, side="right"))  # tickets with conf >= t
        if m == 0:
            return None
        p = int(self.last_loose[m - 1])
        return float(self.cs[p]) if p >= 0 else None


def tune_thresholds(conf: np.ndarray, pred_idx: np.ndarray, y_idx: np.ndarray,
                    labels: Sequence[str], cfg: Mapping[str, Any] | None = None, *,
                    routed_before: tuple[int, int] | None = None) -> Thresholds:
    """Tune per-label thresholds on validation tickets (see the module docstring).

    conf: (n,) calibrated top probability; pred_idx: (n,) predicted label index; y_idx: (n,)
    true label index (-1 or any index outside ``labels`` = a ticket whose true label the
    model does not know, always counted as an error). ``routed_before``: (n, correct) of an
    earlier stage's auto-routed tuning tickets, certified together with this stage's.
    """
    c = _cfg(cfg)
    n0, x0 = (int(routed_before[0]), int(routed_before[1])) if routed_before else (0, 0)
    if not 0 <= x0 <= n0:
        raise ValueError(f"routed_before must be (n, correct) with 0 <= correct <= n, got {routed_before}")
    labels = list(labels)
    pinned = {k: v for k, v in c["pinned"].items()}
    if not c["tune"]:
        th = Thresholds.fixed(labels, float(c["auto_route"]), float(c["review"]), pinned)
        th.info.update({"confidence": float(c["confidence"])})
        return th
    conf = np.asarray(conf, dtype=float)
    pred_idx = np.asarray(pred_idx)
    y_idx = np.asarray(y_idx)
    if not (conf.shape == pred_idx.shape == y_idx.shape) or conf.ndim != 1:
        raise ValueError(f"conf, pred_idx and y_idx must be 1-D arrays of one length, got "
                         f"{conf.shape}, {pred_idx.shape}, {y_idx.shape}")
    if len(conf) == 0:
        raise ValueError("no validation tickets to tune thresholds on; set thresholds.tune: false "
                         "or give the split a validation share")
    if not np.all(np.isfinite(conf)):
        raise ValueError("conf contains NaN or inf; check the classifier / calibrator output")
    if len(pred_idx) and (pred_idx.min() < 0 or pred_idx.max() >= len(labels)):
        raise ValueError(f"pred_idx must index into the {len(labels)} labels")
    target, lvl, ms = float(c["target_precision"]), float(c["confidence"]), int(c["min_support"])
    ok = pred_idx == y_idx
    curves = [_LabelCurve(conf[pred_idx == j], ok[pred_idx == j], target, lvl, ms)
              for j in range(len(labels))]
    strict: dict[str, float | None] = {}
    if c["strategy"] in ("per_label", "hybrid"):
        strict = {lab: cv.strict for lab, cv in zip(labels, curves)}
    auto: dict[str, float | None] = {lab: strict.get(lab) for lab in labels}
    how: dict[str, str] = {lab: ("per_label" if auto[lab] is not None else "none") for lab in labels}
    pooled_t = None
    pooled_lb = None
    if c["strategy"] in ("pooled", "hybrid"):
        pinned_mask = np.array([lab in pinned for lab in labels], bool)
        for t in _candidates(conf):
            assign: dict[str, float | None] = {}
            for lab, cv in zip(labels, curves):
                cands = [v for v in (strict.get(lab), cv.not_contradicted_from(float(t))) if v is not None]
                assign[lab] = min(cands) if cands else None
            thr = np.array([np.inf if assign[lab] is None else assign[lab] for lab in labels])
            thr[pinned_mask] = np.inf
            routed = conf >= thr[pred_idx]
            n, x = int(routed.sum()) + n0, int((routed & ok).sum()) + x0
            lb = float(cp_lower(x, n, lvl)) if n else 0.0
            if n >= ms and lb >= target:
                pooled_t, pooled_lb = float(t), lb
                for lab in labels:
                    if assign[lab] is not None and assign[lab] != strict.get(lab):
                        how[lab] = "pooled"
                auto = assign
                break
    for lab in pinned:
        if lab in auto:
            how[lab] = f"pinned:{pinned[lab]}"

    # review cut: global quantile of confidence within the review budget
    budget = max(0.0, float(c["review_capacity"]) / float(c["tickets_per_day"]) - float(c["reserved_review_share"]))
    srt = np.sort(conf)
    k = int(np.floor(budget * len(srt)))  # at most k tickets strictly below the cut
    r = float(srt[k]) if k < len(srt) else float(srt[-1]) + 1e-9
    # ties: share(conf < r) counts only values strictly below srt[k], so it is <= k / n
    review = {lab: (min(r, auto[lab]) if auto[lab] is not None else r) for lab in labels}
    info = {"strategy": c["strategy"], "target_precision": target, "confidence": lvl,
            "min_support": ms, "pooled_threshold": pooled_t, "pooled_precision_lower": pooled_lb,
            "review_budget_share": budget, "review_cut": r, "how": how,
            "n_validation": int(len(conf))}
    if routed_before:
        info["routed_before"] = {"n": n0, "correct": x0}
    return Thresholds(labels, auto, review, pinned, info)


def tune_from_probs(probs: np.ndarray, y_idx: np.ndarray, labels: Sequence[str],
                    cfg: Mapping[str, Any] | None = None) -> Thresholds:
    """``tune_thresholds`` from an (n, k) probability matrix (argmax = prediction)."""
    p = np.asarray(probs, dtype=float)
    return tune_thresholds(p.max(axis=1), p.argmax(axis=1), np.asarray(y_idx), labels, cfg)
