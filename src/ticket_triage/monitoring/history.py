"""Run history and comparison: ``eval/history/<stamp>.json`` entries, held-out predictions compared
with the previous run (bootstrap intervals on the deltas of the headline metrics and per-label
F1), and the status rule (``ok`` / ``watch`` / ``retrain recommended``).
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

log = logging.getLogger(__name__)

STATUSES: tuple[str, ...] = ("ok", "watch", "retrain recommended")
HEADLINE: tuple[tuple[str, str, bool], ...] = (  # (key, name shown, higher is better)
    ("accuracy", "accuracy", True),
    ("macro_f1", "macro-F1", True),
    ("coverage", "auto-route coverage", True),
    ("auto_precision", "auto-route precision", True),
    ("ece", "calibration error (ECE)", False),
)


# -- comparison with the previous run ---------------------------------------------------------
def _run_view(run: Mapping[str, Any]) -> dict[str, np.ndarray]:
    return {"ids": np.asarray([str(i) for i in run["ids"]], dtype=object),
            "y_true": np.asarray(run["y_true"], dtype=object), "y_pred": np.asarray(run["y_pred"], dtype=object),
            "bands": np.asarray(run["bands"], dtype=object), "conf": np.asarray(run["conf"], dtype=float),
            "correct": np.asarray(run["correct"], dtype=bool)}


def _align(prev: dict[str, np.ndarray], cur: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], bool]:
    """Reorder ``prev`` to ``cur``'s ticket order when both hold the same unique ids."""
    pi, ci = prev["ids"], cur["ids"]
    if len(pi) == len(ci) and len(set(pi)) == len(pi) and set(pi) == set(ci):
        pos = {v: i for i, v in enumerate(pi)}
        order = np.array([pos[v] for v in ci])
        return {k: v[order] for k, v in prev.items()}, True
    return prev, False


def _auto_precision(auto: np.ndarray, right: np.ndarray) -> float:
    return float(right[auto].mean()) if auto.any() else float("nan")


def _finite(x: float) -> float | None:
    return float(x) if x is not None and math.isfinite(float(x)) else None


def compare_with_previous(current: Mapping[str, Any], previous: Mapping[str, Any],
                          compare_cfg: Mapping[str, Any], *, labels: Sequence[str], seed: int = 0,
                          ece_bins: int = 15, top_n: int = 10) -> dict[str, Any]:
    """Bootstrap the held-out deltas ``current - previous`` (see the module docstring).

    ``current`` / ``previous`` hold per-ticket arrays ``ids, y_true, y_pred, bands, conf,
    correct`` (as ``score_split``'s detail). Returns ``{"main": RunComparison dict, "deltas":
    {metric: {...}}, "per_label": [...], "drop": bool, "worse": [...]}``.
    """
    from ticket_triage.metrics import bootstrap_delta, compare_runs, expected_calibration_error

    cfg = {"metric": "macro_f1", "bootstrap_n": 1000, "level": 0.95, "tolerance": 0.01, "top_labels": 3,
           **dict(compare_cfg or {})}
    n, level, tol = int(cfg["bootstrap_n"]), float(cfg["level"]), float(cfg["tolerance"])
    runs = {k: {"y_true": list(r["y_true"]), "y_pred": list(r["y_pred"]), "ids": [str(i) for i in r["ids"]]}
            for k, r in (("cur", current), ("prev", previous))}
    by_metric = {}
    for m in ("accuracy", "macro_f1"):
        by_metric[m] = compare_runs(runs["cur"], runs["prev"], metric=m, tolerance=tol, n=n, seed=seed,
                                    level=level, labels=sorted(set(labels) | {y for r in runs.values()
                                                                              for y in r["y_true"] if y is not None}),
                                    top_k=int(cfg["top_labels"]))
    main = by_metric[cfg["metric"]]
    cur = _run_view(current)
    prev, paired = _align(_run_view(previous), cur)

    def inputs(r: dict[str, np.ndarray], name: str) -> tuple[np.ndarray, ...]:
        auto = r["bands"] == "auto_route"
        if name == "coverage":
            return (auto,)
        if name == "auto_precision":
            return auto, r["y_true"] == r["y_pred"]
        return r["conf"], r["correct"]

    fns: dict[str, Callable[..., float]] = {
        "coverage": lambda a: float(np.mean(a)),
        "auto_precision": _auto_precision,
        "ece": lambda c, ok: expected_calibration_error(c, ok, ece_bins),
    }
    deltas: dict[str, dict[str, Any]] = {}
    for m in ("accuracy", "macro_f1"):
        r = by_metric[m]
        deltas[m] = {"previous": r.previous, "current": r.current, "delta": r.delta, "ci_low": r.ci_low,
                     "ci_high": r.ci_high, "paired": r.paired}
    for m, fn in fns.items():
        a_in, b_in = inputs(prev, m), inputs(cur, m)
        try:
            with np.errstate(all="ignore"):
                res = bootstrap_delta(fn, a_in, b_in, n=n, seed=seed, paired=paired, level=level)
            deltas[m] = {"previous": _finite(res.a), "current": _finite(res.b), "delta": _finite(res.delta),
                         "ci_low": _finite(res.low), "ci_high": _finite(res.high), "paired": res.paired}
        except ValueError as exc:
            deltas[m] = {"previous": None, "current": None, "delta": None, "ci_low": None, "ci_high": None,
                         "paired": paired, "note": str(exc)}
    worse = []
    for key, name, higher in HEADLINE[2:]:
        d = deltas[key]
        if d["delta"] is None or d["ci_low"] is None or d["ci_high"] is None:
            continue
        bad = (d["ci_high"] < 0 and -d["delta"] > tol) if higher else (d["ci_low"] > 0 and d["delta"] > tol)
        if bad:
            worse.append(f"{name} went from {d['previous']:.3f} to {d['current']:.3f} "
                         f"(CI {d['ci_low']:+.3f}..{d['ci_high']:+.3f})")
    # per-label F1: point deltas for all labels, bootstrap intervals for the largest drops
    per_label = _per_label_deltas(prev, cur, labels, paired, n, seed, level, top_n)
    return {"main": main.to_dict(), "deltas": deltas, "per_label": per_label, "paired": paired,
            "level": level, "drop": bool(main.drop), "worse": worse}


def _label_f1(label: str) -> Callable[[np.ndarray, np.ndarray], float]:
    def f1(t: np.ndarray, p: np.ndarray) -> float:
        tp = float(np.sum((t == label) & (p == label)))
        denom = float(np.sum(t == label) + np.sum(p == label))
        return 2 * tp / denom if denom else 0.0
    return f1


def _per_label_deltas(prev: dict[str, np.ndarray], cur: dict[str, np.ndarray], labels: Sequence[str],
                      paired: bool, n: int, seed: int, level: float, top_n: int) -> list[dict[str, Any]]:
    from ticket_triage.metrics import bootstrap_delta, classification_metrics

    labs = sorted(set(labels) | {y for y in cur["y_true"] if y is not None} | {y for y in prev["y_true"] if y is not None})
    a = classification_metrics(prev["y_true"], prev["y_pred"], labels=labs)["per_label"]
    b = classification_metrics(cur["y_true"], cur["y_pred"], labels=labs)["per_label"]
    rows = [{"label": lab, "previous_f1": a[lab]["f1"], "current_f1": b[lab]["f1"],
             "delta": b[lab]["f1"] - a[lab]["f1"], "support": b[lab]["support"]} for lab in labs]
    rows.sort(key=lambda r: (r["delta"], r["label"]))
    for r in rows[:top_n]:
        if r["delta"] < 0:
            res = bootstrap_delta(_label_f1(r["label"]), (prev["y_true"], prev["y_pred"]),
                                  (cur["y_true"], cur["y_pred"]), n=n, seed=seed, paired=paired, level=level)
            r["ci_low"], r["ci_high"] = res.low, res.high
    return rows


# -- history ----------------------------------------------------------------------------------
def load_history(history_dir: str | Path, last: int | None = None) -> list[dict[str, Any]]:
    """Past runs, oldest first (``<UTC timestamp>.json`` sorts chronologically); only the
    ``last`` most recent when given."""
    d = Path(history_dir)
    out = []
    files = sorted(d.glob("*.json")) if d.is_dir() else []
    for p in files[-last:] if last else files:
        try:
            rec = json.loads(p.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            log.warning("skipping unreadable history file %s (%s): delete or fix it", p, exc)
            continue
        rec.setdefault("run", p.stem)
        out.append(rec)
    return out


def _per_ticket(detail: Mapping[str, Any]) -> dict[str, list[Any]]:
    return {"ids": [str(i) if i is not None else f"row{k}" for k, i in enumerate(detail["ids"])],
            "y_true": list(detail["y_true"]), "y_pred": list(detail["y_pred"]), "bands": list(detail["bands"]),
            "conf": [round(float(c), 4) for c in detail["conf"]], "correct": [bool(c) for c in detail["correct"]]}


# -- status -----------------------------------------------------------------------------------
def decide_status(comparison: Mapping[str, Any] | None, drift: Any, *, heldout_auto: tuple[int, int],
                  audit: tuple[int, int], target: float, confidence: float = 0.95,
                  recent_comparison: Mapping[str, Any] | None = None) -> tuple[str, list[str]]:
    """``(status, reasons)`` from the rules in the module docstring. ``heldout_auto`` and
    ``audit`` are ``(correct, n)`` counts of auto-routed tickets."""
    from ticket_triage.review.feedback import clopper_pearson_interval

    retrain, watch = [], []
    if comparison is not None:
        if comparison["drop"]:
            retrain.append(f"held-out performance dropped since the last run: {comparison['main']['reason']}")
        watch += [f"{w} since the last run" for w in comparison["worse"]]
    if drift is not None:
        if drift.status == "retrain recommended":
            retrain.append(f"recent traffic has drifted from the training tickets ({drift.reason})")
        elif drift.status == "watch":
            watch.append(f"recent traffic shows some drift ({drift.reason})")
    for (k, n), what in ((heldout_auto, "held-out set"), (audit, "audited production tickets")):
        if n:
            hi = clopper_pearson_interval(k, n, confidence)[1]
            if hi < target:
                watch.append(f"auto-routed precision on the {what} is {k / n:.3f} ({k}/{n}), clearly below "
                             f"the target {target:g} (upper bound {hi:.3f})")
    if recent_comparison is not None and recent_comparison.get("drop"):
        watch.append(f"recent labelled traffic got worse since the last run: {recent_comparison['reason']}")
    if retrain:
        return "retrain recommended", retrain + watch
    if watch:
        return "watch", watch
    return "ok", ["no significant drop, no drift signal, auto-routed precision on target"]
