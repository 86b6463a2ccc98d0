"""Scoring a bundle on labelled tickets through the real decision code (scoring only; the
evaluate and promote stages are in ``ticket_triage.stages``). Training (validation), the
evaluate stage (test, held-out) and continuous evaluation all call :func:`score_split`, so every
number comes from ``Triage.decide``."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ticket_triage.config import DEFAULT_TARGET_PRECISION

log = logging.getLogger(__name__)


def score_split(triage: Any, rows: Sequence[Mapping[str, Any]], prefix: str, *,
                target_precision: float = DEFAULT_TARGET_PRECISION) -> tuple[dict[str, float], dict[str, Any]]:
    """Decide every row, then compute flat metrics ``{prefix}/...`` and a detail dict with
    per-row arrays (for plots, reports and bootstrap comparisons)."""
    from ticket_triage.metrics import (
        auto_route_metrics,
        classification_metrics,
        coverage_at_precision,
        expected_calibration_error,
        log_loss,
    )

    rows = list(rows)
    if not rows:
        raise ValueError(f"no labelled tickets to score for {prefix!r}")
    t0 = time.perf_counter()
    decisions = triage.decide([{"id": r.get("id"), "subject": "", "body": "", "text": r["text"],
                                "language": r.get("language")} for r in rows])
    seconds = time.perf_counter() - t0
    y_true = [r["topic"] for r in rows]
    y_pred = [d.topic for d in decisions]
    bands = [d.band for d in decisions]
    texts = [r["text"] for r in rows]
    probs_raw = triage.topic_proba(texts, calibrated=False)
    probs_cal = triage.calibrator.transform(probs_raw)
    topics = triage.topics
    in_model = np.array([y in topics for y in y_true])
    y_idx = np.array([topics.index(y) if y in topics else -1 for y in y_true])
    cls = classification_metrics(y_true, y_pred, labels=sorted(set(topics) | set(y_true)))
    ar = auto_route_metrics(bands, y_true, y_pred)
    conf_model = probs_cal.max(axis=1)
    correct_model = probs_cal.argmax(axis=1) == y_idx
    m: dict[str, float] = {
        "accuracy": cls["accuracy"],
        "macro_f1": cls["macro_f1"],
        "model_accuracy": float(correct_model.mean()),
        "ece": expected_calibration_error(conf_model, correct_model),
        "ece_uncalibrated": expected_calibration_error(probs_raw.max(axis=1), probs_raw.argmax(axis=1) == y_idx),
        "coverage": ar["coverage"],
        "auto_precision": ar["auto_precision"],
        "draft_share": ar["draft_share"],
        "review_share": ar["review_share"],
        "coverage_at_target_precision": coverage_at_precision(conf_model, correct_model, target_precision),
        "latency_ms_per_ticket": 1000 * seconds / len(rows),
        "n": float(len(rows)),
    }
    if in_model.all():
        m["log_loss"] = log_loss(probs_cal, y_idx, labels=list(range(len(topics))))
    for lab, d in cls["per_label"].items():
        for k in ("precision", "recall", "f1"):
            m[f"{lab}/{k}"] = d[k]
    flat = {f"{prefix}/{k}": float(v) for k, v in m.items() if v is not None}
    detail = {"y_true": y_true, "y_pred": y_pred, "bands": bands, "conf": conf_model.tolist(),
              "correct": correct_model.tolist(), "sources": [d.source for d in decisions],
              "decisions": [d.to_dict() for d in decisions], "per_label": cls["per_label"],
              "ids": [r.get("id") for r in rows], "texts": texts}
    return flat, detail


#: Metric names that are wall-clock timings: logged to MLflow, kept out of the files DVC hashes
#: (eval/metrics*.json), so a rerun on the same data leaves dvc.lock and the metrics diff unchanged.
TIMING_SUFFIXES = ("/seconds", "latency_ms_per_ticket", "latency_ms")


def headline(metrics: Mapping[str, float]) -> dict[str, float]:
    """The metrics a DVC metrics file holds: ``split/metric`` keys (not per label), no timings."""
    return {k: v for k, v in metrics.items() if k.count("/") == 1 and not k.endswith(TIMING_SUFFIXES)}


def objective(metrics: Mapping[str, float], split: str = "val", target: float = 0.99) -> tuple[float, float, float]:
    """Sort key (higher is better): auto-routed share if the auto-routed precision meets the
    target (else 0), then macro-F1, then lower latency."""
    prec = metrics.get(f"{split}/auto_precision", float("nan"))
    cov = metrics.get(f"{split}/coverage", 0.0)
    ok = prec == prec and prec >= target
    return (cov if ok else 0.0, metrics.get(f"{split}/macro_f1", 0.0), -metrics.get(f"{split}/latency_ms_per_ticket", 0.0))


def write_plots(detail: Mapping[str, Any], topics: Sequence[str], out_dir: str | Path, prefix: str,
                target_precision: float | None = 0.99) -> list[Path]:
    """Confusion matrix, reliability diagram and coverage-vs-precision curve: PNGs, each with
    the CSV beside it (``<name>.csv``) that ``dvc plots`` reads."""
    from ticket_triage.monitoring import plots
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    labels = sorted(set(topics) | set(detail["y_true"]))
    y_pred = [p if p is not None else "(none)" for p in detail["y_pred"]]
    if "(none)" in y_pred:
        labels.append("(none)")
    return [
        plots.plot_confusion_matrix(detail["y_true"], y_pred, labels, out / f"{prefix}_confusion.png",
                                    title=f"Confusion matrix ({prefix})"),
        plots.plot_reliability(detail["conf"], detail["correct"], out / f"{prefix}_reliability.png",
                               title=f"Reliability ({prefix})"),
        plots.plot_coverage_precision(detail["conf"], detail["correct"], out / f"{prefix}_coverage_precision.png",
                                      target_precision=target_precision, title=f"Coverage vs precision ({prefix})"),
    ]


def write_cascade_plot(bundle: str | Path, out_dir: str | Path, name: str = "cascade_tradeoff.png") -> Path | None:
    """The cascade's choice between cheap exits and coverage (``plots.plot_cascade_tradeoff``)
    for a bundle built with the cascade on; None for a bundle without one (or built before
    the search recorded its tuning-ticket count)."""
    from ticket_triage.decision.cascade import search_report
    from ticket_triage.monitoring import plots

    report = search_report(bundle)
    return plots.plot_cascade_tradeoff(report, Path(out_dir) / name) if report else None


def review_loads(params: Mapping[str, Any], triage: Any, decisions: Mapping[str, Sequence[Any]], *,
                 stage: str = "evaluate") -> dict[str, Any]:
    """The review band of each scored split against the configured capacity, by reason
    (``monitoring.review_load``); each is printed, and logged as a warning when over capacity."""
    from ticket_triage.config import sections
    from ticket_triage.monitoring.review_load import planned_shares, review_load

    th = sections(params).thresholds
    planned = planned_shares(triage.policy.thresholds)
    out = {}
    for name, ds in decisions.items():
        load = review_load(ds, review_capacity=float(th.review_capacity),
                           tickets_per_day=float(th.tickets_per_day), planned=planned)
        out[name] = load
        print(f"[{stage}] {name}: {load['message']}", flush=True)
        if not load["within_capacity"]:
            log.warning("%s: %s", name, load["message"])
    return out
