"""Scoring a bundle on labelled tickets through the real decision code, and the evaluate /
promote stages. Training (validation), the evaluate stage (test, held-out) and continuous
evaluation all call :func:`score_split`, so every number comes from ``Triage.decide``."""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ticket_triage.data import iter_jsonl

log = logging.getLogger(__name__)


def score_split(triage: Any, rows: Sequence[Mapping[str, Any]], prefix: str, *,
                target_precision: float = 0.99) -> tuple[dict[str, float], dict[str, Any]]:
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


# -- evaluate stage ----------------------------------------------------------------------------
def run_evaluate(params: Mapping[str, Any], *, bundle_dir: str | Path | None = None,
                 out_dir: str | Path | None = None, metrics_path: str | Path = "eval/metrics.json",
                 plots_dir: str | Path = "eval/plots", register: bool = True) -> dict[str, Any]:
    """Evaluate the sweep winner once on the test split and on the frozen held-out set, log
    it to MLflow and register it as ``ticket-triage`` with alias ``challenger``."""
    from ticket_triage import tracking
    from ticket_triage.decision.triage import Triage

    paths = params["paths"]
    bundle = Path(bundle_dir or Path(paths["train"]) / "winner")
    out = Path(out_dir or paths["evaluate"])
    out.mkdir(parents=True, exist_ok=True)
    triage = Triage.load(bundle)
    target = float(params.get("train", {}).get("target_precision", 0.99))
    test_rows = list(iter_jsonl(Path(paths["split"]) / "test.jsonl"))
    held_rows = list(iter_jsonl(paths["heldout"]))
    metrics: dict[str, float] = {}
    details = {}
    for prefix, rows in (("test", test_rows), ("heldout", held_rows)):
        if rows:
            flat, det = score_split(triage, rows, prefix, target_precision=target)
            metrics.update(flat)
            details[prefix] = det
            write_plots(det, triage.topics, plots_dir, prefix)
    head_metrics = headline(metrics)
    Path(metrics_path).parent.mkdir(parents=True, exist_ok=True)
    Path(metrics_path).write_text(json.dumps(head_metrics, indent=2, sort_keys=True) + "\n")
    (out / "per_label.json").write_text(json.dumps({p: d["per_label"] for p, d in details.items()}, indent=2))
    result: dict[str, Any] = {"metrics": head_metrics, "bundle": str(bundle)}
    if register:
        tracking.setup(params.get("tracking"))
        sweep = json.loads((Path(paths["train"]) / "sweep.json").read_text()) if (Path(paths["train"]) / "sweep.json").is_file() else {}
        data_name = str((params.get("data") or {}).get("name", "data"))
        family = triage.policy.family
        winner = sweep.get("winner") or triage.model_version
        summary = (f"held-out accuracy {head_metrics.get('heldout/accuracy', float('nan')):.4f}, "
                   f"test accuracy {head_metrics.get('test/accuracy', float('nan')):.4f}, test auto-routed "
                   f"{head_metrics.get('test/coverage', float('nan')):.1%} at precision "
                   f"{head_metrics.get('test/auto_precision', float('nan')):.4f}")
        with tracking.run(tracking.run_name("evaluate", family),
                          tags={"stage": "evaluate", "model_family": family, "winner": winner,
                                "winner_run_id": sweep.get("winner_run_id", "")},
                          description=(f"The sweep winner `{winner}` ({family}) scored once on the `{data_name}` "
                                       f"test split ({len(test_rows):,} tickets) and the frozen held-out set "
                                       f"({len(held_rows):,} tickets): {summary}. Its model is registered as "
                                       "`ticket-triage` with alias `challenger`.")) as run:
            if test_rows:
                tracking.log_dataset(test_rows, Path(paths["split"]) / "test.jsonl", "test", name=f"{data_name}-test")
            if held_rows:
                tracking.log_dataset(held_rows, paths["heldout"], "heldout", name=f"{data_name}-heldout")
            tracking.log_metrics(metrics)
            tracking.log_artifacts(plots_dir, "plots")
            tracking.log_artifacts(out / "per_label.json")
            uri = tracking.log_bundle_model(bundle, [{"subject": "Card not arrived", "body": "I ordered a card two weeks ago and it has not arrived."}])
        version = tracking.register(uri, "challenger", tags={
            "heldout_accuracy": head_metrics.get("heldout/accuracy", float("nan")),
            "heldout_macro_f1": head_metrics.get("heldout/macro_f1", float("nan")),
            "test_accuracy": head_metrics.get("test/accuracy", float("nan")),
            "family": family, "git_sha": tracking.git_sha(), "evaluate_run_id": run.info.run_id},
            description=(f"`{winner}` ({family}, {triage.policy.label_level} "
                         f"labels) from sweep run {sweep.get('parent_run_id', '?')}, trained on `{data_name}` at git "
                         f"{tracking.git_sha(short=True)} (data md5 {tracking.data_hash()}); {summary}. "
                         f"Evaluation run {run.info.run_id}."))
        result["registered_version"] = version
    (out / "result.json").write_text(json.dumps(result, indent=2, default=str))
    return result


# -- promote stage -----------------------------------------------------------------------------
def decide_promotion(challenger: Mapping[str, float], champion: Mapping[str, float] | None,
                     metric: str, tolerance: float) -> tuple[bool, str]:
    """Promote unless the challenger is worse than the champion by more than ``tolerance``."""
    c = float(challenger.get(metric, float("nan")))
    if c != c:
        return False, f"challenger has no {metric}: keep the champion"
    if champion is None:
        return True, "no champion yet: the challenger becomes champion"
    b = float(champion.get(metric, float("nan")))
    if b != b:
        return True, f"champion has no {metric}: promote"
    if c + tolerance >= b:
        return True, f"challenger {metric}={c:.4f} vs champion {b:.4f} (tolerance {tolerance}): promote"
    return False, f"challenger {metric}={c:.4f} is worse than champion {b:.4f} by more than {tolerance}: keep champion"


def run_promote(params: Mapping[str, Any], *, out_path: str | Path | None = None) -> dict[str, Any]:
    from ticket_triage import tracking

    cfg = dict(params.get("promote") or {})
    metric = cfg.get("metric", "heldout/accuracy")
    tag = metric.replace("/", "_")
    tracking.setup(params.get("tracking"))
    chal = tracking.alias_version("challenger")
    if chal is None:
        raise LookupError("no challenger registered: run the evaluate stage first")
    champ = tracking.alias_version("champion")
    chal_tags = tracking.version_tags(chal)
    champ_tags = tracking.version_tags(champ) if champ is not None else None
    to_num = lambda t: {tag: float(t[tag])} if t and tag in t else {}  # noqa: E731
    ok, why = decide_promotion({metric: to_num(chal_tags).get(tag, float("nan"))},
                               {metric: to_num(champ_tags).get(tag, float("nan"))} if champ is not None else None,
                               metric, float(cfg.get("tolerance", 0.01)))
    chal_v = str(chal.version)
    champ_v = str(champ.version) if champ is not None else None
    if ok and champ_v != chal_v:
        tracking.set_alias(chal_v, "champion")
    result = {"promoted": ok, "reason": why, "challenger_version": chal_v,
              "champion_version": chal_v if ok else champ_v, "previous_champion": champ_v}
    _log_promotion(tracking, result, chal_tags, champ_tags, metric, float(cfg.get("tolerance", 0.01)))
    out = Path(out_path or Path(params["paths"]["promote"]) / "decision.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    log.info("promote: %s", why)
    return result


COMPARED_TAGS = ("heldout_accuracy", "heldout_macro_f1", "test_accuracy")


def _log_promotion(tracking: Any, result: Mapping[str, Any], chal_tags: Mapping[str, str],
                   champ_tags: Mapping[str, str] | None, metric: str, tolerance: float) -> None:
    """One MLflow run per promotion decision: challenger and champion side by side (metrics
    ``challenger/*`` and ``champion/*``, a comparison table artifact), the decision as tags
    and description; the challenger version gets the decision as its ``promotion`` tag."""
    def num(tags: Mapping[str, str] | None, key: str) -> float:
        try:
            return float((tags or {})[key])
        except (KeyError, TypeError, ValueError):
            return float("nan")

    chal_v, prev = result["challenger_version"], result["previous_champion"]
    rows = [f"| {k} | {num(chal_tags, k):.4f} | " + (f"{num(champ_tags, k):.4f} |" if champ_tags is not None else "- |")
            for k in COMPARED_TAGS]
    table = "\n".join([f"| metric | challenger v{chal_v} | champion " + (f"v{prev}" if prev else "(none)") + " |",
                        "|---|---:|---:|", *rows])
    with tracking.run(tracking.run_name("promote", f"v{chal_v}-vs-" + (f"v{prev}" if prev else "none")),
                      tags={"stage": "promote", "promoted": str(result["promoted"]).lower(),
                            "challenger_version": chal_v, "champion_version": str(result["champion_version"]),
                            "previous_champion": str(prev), "challenger_family": chal_tags.get("family", ""),
                            "champion_family": (champ_tags or {}).get("family", "")},
                      params={"metric": metric, "tolerance": tolerance},
                      description=f"{result['reason']}.\n\n{table}"):
        tracking.log_metrics({f"challenger/{k}": num(chal_tags, k) for k in COMPARED_TAGS}
                             | ({f"champion/{k}": num(champ_tags, k) for k in COMPARED_TAGS} if champ_tags is not None else {}))
        tracking.log_text(table + "\n", "comparison.md")
    tracking.set_version_tag(chal_v, "promotion", result["reason"])


def copy_bundle(src: str | Path, dst: str | Path) -> Path:
    dst = Path(dst)
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst)
    return dst
