"""Continuous evaluation (``triage monitor``, DVC stage ``monitor``): is the deployed model still good enough?

:func:`run_continuous_eval` loads a bundle (the registry's champion by default) and, using
only the building blocks in ``evaluation`` / ``metrics`` / ``drift`` / ``noise`` / ``cost`` /
``plots`` / ``reports``:

1. scores the frozen held-out set and the recent labelled traffic (reviewer corrections and
   audit samples exported to ``data/feedback``) through ``Triage.decide``
   (:func:`ticket_triage.evaluation.score_split`);
2. decides recent unlabelled traffic and compares it with training tickets
   (:func:`ticket_triage.monitoring.drift.drift_report`: predicted topic, confidence, out-of-scope
   flag, embeddings when the model family has them, emerging vocabulary);
3. compares the held-out predictions with the previous run kept in
   ``eval/history/<UTC timestamp>.json`` (bootstrap intervals on the deltas of accuracy,
   macro-F1, auto-route coverage and precision, ECE and per-label F1; a significant drop is
   flagged with the labels that caused it);
4. writes a failure catalog, a label-noise audit of the train split, a cost report and plots
   under ``eval/continuous/`` with a ``summary.md`` for support leads, and logs everything to
   the MLflow experiment ``monitor`` (``tracking.monitor_experiment``; runs logged before the
   rename stay in ``continuous-eval``, see :func:`ticket_triage.tracking.monitor_experiment`).

Settings: the ``monitor`` section of params.yaml (conf/monitor/; an old params.yaml's ``eval``
section is still read, with a warning: :func:`ticket_triage.config.monitor_section`).

Status (``ok`` / ``watch`` / ``retrain recommended``):

* ``retrain recommended`` -- a significant held-out drop beyond tolerance
  (``metrics.compare_runs``), or the drift report recommends retraining;
* ``watch`` -- drift ``watch``; auto-route coverage, auto-route precision or calibration
  significantly worse than last run (beyond tolerance); auto-routed precision on the
  held-out set or on audit samples clearly below the target (the Clopper-Pearson upper
  bound is below it); a significant drop on the recent labelled traffic;
* ``ok`` -- none of these.

Every text is embedded at most once per run (decisions, probabilities and drift share one
cache), which keeps 10,000 recent tickets within the runtime budget for MiniLM models.

Modules: ``traffic`` (what is read and decided), ``history`` (previous runs, comparison, status
rule), ``summary`` (``summary.md``); this module runs the steps in order (one function per step
below, sharing a :class:`_Run`) and owns the label-noise audit cache.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ticket_triage.config import ContinuousConfig, PathsConfig, monitor_section, sections, target_precision
from ticket_triage.data import iter_jsonl
from ticket_triage.monitoring.history import (
    STATUSES,
    _per_ticket,
    compare_with_previous,
    decide_status,
    load_history,
)
from ticket_triage.monitoring.summary import render_summary, run_label
from ticket_triage.monitoring.traffic import (
    _sample,
    decide_frame,
    feedback_rows,
    read_tickets_file,
    reference_rows,
)

log = logging.getLogger(__name__)

@dataclass
class _Run:
    """What the steps of one run share: settings, the loaded model, and each step's results."""

    params: Mapping[str, Any]
    ev: dict[str, Any]
    cc: ContinuousConfig
    paths: PathsConfig
    seed: int
    target: float
    ece_bins: int
    out: Path
    hist_dir: Path
    stamp_dt: datetime
    stamp: str
    timings: dict[str, float] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    r: dict[str, Any] = field(default_factory=dict)  # step results, by name

    @property
    def plots_dir(self) -> Path:
        return self.out / "plots"

    def lap(self, name: str, t0: float) -> float:
        now = time.perf_counter()
        self.timings[name] = round(now - t0, 3)
        return now


def run_continuous_eval(params: Mapping[str, Any], *, bundle_dir: str | Path | None = None,
                        recent_path: str | Path | None = None, out_dir: str | Path | None = None,
                        history_dir: str | Path | None = None, track: bool = True) -> dict[str, Any]:
    """Evaluate a bundle on held-out, recent labelled and recent unlabelled traffic; compare
    with the previous run; write ``eval/continuous/`` and a history entry; log to MLflow
    (experiment ``monitor``, see :func:`ticket_triage.tracking.monitor_experiment`) when ``track``. Returns the result dict (also written as
    ``result.json``): status, reasons, metrics, comparison, drift, cost, noise, outputs."""
    t_start = time.perf_counter()
    ev = monitor_section(params)
    cc = ContinuousConfig.from_dict(ev.get("continuous"))
    stamp_dt = datetime.now(timezone.utc)
    run = _Run(params=params, ev=ev, cc=cc, paths=PathsConfig.from_dict(params.get("paths")),
               seed=sections(params).seed,
               target=target_precision(params),
               ece_bins=int((ev.get("metrics") or {}).get("ece_bins", 15)),
               out=Path(out_dir or cc.out_dir), hist_dir=Path(history_dir or cc.history_dir),
               stamp_dt=stamp_dt, stamp=stamp_dt.strftime("%Y%m%dT%H%M%S%fZ"))
    run.out.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    _load(run, bundle_dir)
    t = run.lap("load", t)
    _score_labelled(run)                      # 1. labelled sets
    t = run.lap("score_labelled", t)
    _decide_unlabelled(run, recent_path)      # 2. unlabelled recent traffic vs the reference
    t = run.lap("decide_unlabelled", t)
    _drift(run)
    t = run.lap("drift", t)
    _compare(run)                             # 3. comparison with the previous run
    t = run.lap("compare", t)
    _failure_catalog(run)                     # 4. failure catalog, noise audit, cost, plots
    t = run.lap("failure_catalog", t)
    _noise_audit(run)
    t = run.lap("noise_audit", t)
    _cost_and_plots(run)
    run.lap("cost_and_plots", t)
    result = _status_and_outputs(run)         # 5. status, history, summary
    run.timings["total"] = round(time.perf_counter() - t_start, 3)
    result["timings"] = run.timings
    flat = {k: v for k, v in run.metrics.items() if isinstance(v, float) and math.isfinite(v)}
    (run.out / "metrics.json").write_text(json.dumps(flat, indent=2, sort_keys=True), encoding="utf-8")
    (run.out / "result.json").write_text(json.dumps(result, indent=2, default=str), encoding="utf-8")
    if track:                                 # 6. tracking
        _track(run, result, flat)
    log.info("continuous eval: %s (%s) in %.1fs", result["status"], "; ".join(result["reasons"]),
             run.timings["total"])
    return result


def _load(run: _Run, bundle_dir: str | Path | None) -> None:
    from ticket_triage.bundles import resolve_bundle
    from ticket_triage.decision.triage import Triage
    from ticket_triage.models.embeddings import CachedClassifier

    winner = Path(run.paths.train) / "winner"
    bundle, source = resolve_bundle(bundle_dir, tracking_cfg=run.params.get("tracking"),
                                    local_winner=winner)
    triage = Triage.load(bundle)
    triage.classifier = CachedClassifier(triage.classifier)
    run.r.update(bundle=bundle, bundle_source=source, triage=triage, topics=list(triage.topics))


def _score_labelled(run: _Run) -> None:
    from ticket_triage.evaluation import score_split

    triage, paths = run.r["triage"], run.paths
    heldout_path = Path(paths.heldout)
    if not heldout_path.is_file():
        raise FileNotFoundError(f"held-out set {heldout_path} not found: run `dvc repro split` (it freezes "
                                "the held-out set) or set paths.heldout")
    held_rows = list(iter_jsonl(heldout_path))
    metrics, held = score_split(triage, held_rows, "heldout", target_precision=run.target)
    run.metrics.update(metrics)
    fb_rows = feedback_rows(paths.feedback)
    fb_detail = None
    if fb_rows:
        fb_metrics, fb_detail = score_split(triage, fb_rows, "recent_labelled", target_precision=run.target)
        run.metrics.update(fb_metrics)
    else:
        log.info("no reviewer corrections or audit samples with text in %s: recent labelled traffic skipped",
                 paths.feedback)
    run.r.update(held_rows=held_rows, held=held, fb_rows=fb_rows, fb_detail=fb_detail)


def _decide_unlabelled(run: _Run, recent_path: str | Path | None) -> None:
    triage, cc = run.r["triage"], run.cc
    split_dir = Path(run.paths.split)
    rp = Path(recent_path or cc.recent_path or split_dir / "test.jsonl")
    recent_rows = _sample(read_tickets_file(rp), cc.recent_max_rows, run.seed, newest=True)
    ref_rows, ref_source = reference_rows(triage, cc, split_dir, run.seed)
    if not recent_rows:
        raise ValueError(f"{rp} holds no tickets: point monitor.continuous.recent_path at recent traffic")
    from ticket_triage.monitoring.drift import DriftConfig

    # the embedding drift test uses at most this many rows a side: embed no more
    embed_max = DriftConfig.from_dict(run.ev.get("drift")).embedding.max_samples
    recent_frame, recent_decisions = decide_frame(triage, recent_rows, embed_max=embed_max, seed=run.seed)
    ref_frame, _ = decide_frame(triage, ref_rows, embed_max=embed_max, seed=run.seed)
    run.r.update(split_dir=split_dir, recent_path=rp, recent_rows=recent_rows, ref_rows=ref_rows,
                 ref_source=ref_source, recent_frame=recent_frame,
                 recent_decisions=recent_decisions, ref_frame=ref_frame)


def _drift(run: _Run) -> None:
    from ticket_triage.monitoring.drift import drift_report

    drift = drift_report(run.r["ref_frame"], run.r["recent_frame"], run.ev.get("drift"))
    drift_dict = drift.to_dict()
    (run.out / "drift.json").write_text(json.dumps(drift_dict, indent=2, default=str), encoding="utf-8")
    run.metrics.update({f"drift/{s.name}": s.value for s in drift.signals if not s.skipped})
    run.metrics["drift/status"] = float(STATUSES.index(drift.status))
    run.r.update(drift=drift, drift_dict=drift_dict)


def _compare(run: _Run) -> None:
    ev, cc, held, fb_detail = run.ev, run.cc, run.r["held"], run.r["fb_detail"]
    history = load_history(run.hist_dir, last=max(cc.history_runs, 1))
    previous = history[-1] if history else None
    current_held = _per_ticket(held)
    comparison = recent_comparison = None
    if previous is not None and previous.get("heldout"):
        comparison = compare_with_previous(current_held, previous["heldout"], ev.get("compare") or {},
                                           labels=run.r["topics"], seed=run.seed,
                                           ece_bins=run.ece_bins, top_n=cc.top_n)
        for k, d in comparison["deltas"].items():
            if d.get("delta") is not None:
                run.metrics[f"compare/{k}_delta"] = d["delta"]
        run.metrics["compare/drop"] = float(comparison["drop"])
        if fb_detail is not None and previous.get("recent_labelled"):
            from ticket_triage.metrics import compare_runs

            cfg = ev.get("compare") or {}
            prev_fb = previous["recent_labelled"]
            recent_comparison = compare_runs(
                {"y_true": fb_detail["y_true"], "y_pred": fb_detail["y_pred"], "ids": _per_ticket(fb_detail)["ids"]},
                {"y_true": prev_fb["y_true"], "y_pred": prev_fb["y_pred"], "ids": prev_fb["ids"]},
                metric=cfg.get("metric", "macro_f1"), tolerance=float(cfg.get("tolerance", 0.01)),
                n=int(cfg.get("bootstrap_n", 1000)), seed=run.seed, level=float(cfg.get("level", 0.95)),
                top_k=int(cfg.get("top_labels", 3))).to_dict()
    run.r.update(history=history, previous=previous, current_held=current_held,
                 comparison=comparison, recent_comparison=recent_comparison)


def _failure_catalog(run: _Run) -> None:
    from ticket_triage.monitoring.reports import failure_catalog, render_failure_catalog

    held, fb_rows, fb_detail = run.r["held"], run.r["fb_rows"], run.r["fb_detail"]
    current_held = run.r["current_held"]
    cat_cfg = dict(run.ev.get("catalog") or {})
    confs = [d["confidence"] for d in held["decisions"]]
    cat_rows = [{"id": i, "text": x, "true_label": yt, "predicted": yp, "confidence": c, "band": b, "source": s}
                for i, x, yt, yp, c, b, s in zip(current_held["ids"], held["texts"], held["y_true"],
                                                 held["y_pred"], confs, held["bands"], held["sources"])]
    cat_rows += [{"id": r["id"], "text": r["text"], "true_label": r["topic"],
                  "predicted": r["predicted_topic"] if r["predicted_topic"] is not None else d["topic"],
                  "confidence": d["confidence"], "band": d["band"], "source": "review", "overridden": True}
                 for r, d in zip(fb_rows, fb_detail["decisions"] if fb_detail else []) if r["overridden"]]
    catalog = failure_catalog(cat_rows, max_examples=1, max_clusters=0)  # the pairs, for summary.md
    render_failure_catalog(cat_rows, run.out, max_examples=int(cat_cfg.get("max_examples", 5)),
                           max_clusters=int(cat_cfg.get("max_clusters", 8)), seed=run.seed,
                           title="Failure catalog (held-out misclassifications and reviewer overrides)")
    run.r["catalog"] = catalog


def _noise_audit(run: _Run) -> None:
    out = run.out
    audit, audit_cached = label_noise_audit(run.r["split_dir"] / "train.jsonl", run.ev.get("noise"),
                                            run.seed, out / "noise_audit.json")
    audit.issues.to_csv(out / "noise_audit.csv", index=False, quoting=csv.QUOTE_MINIMAL)
    run.timings["noise_audit_cached"] = float(audit_cached)
    run.metrics["noise/estimated_rate"] = audit.estimated_noise_rate
    run.metrics["noise/n_flagged"] = float(audit.n_flagged)
    run.r["audit"] = audit


def _cost_and_plots(run: _Run) -> None:
    import pandas as pd

    from ticket_triage.evaluation import write_plots
    from ticket_triage.monitoring import cost as cost_mod
    from ticket_triage.monitoring import plots

    out, cc, held, topics = run.out, run.cc, run.r["held"], run.r["topics"]
    history, stamp = run.r["history"], run.stamp
    cost = cost_mod.cost_report([d.to_dict() for d in run.r["recent_decisions"]], run.ev.get("cost"))
    cost.per_path.to_csv(out / "cost_per_path.csv", index=False)
    cost.plot(out / "cost.png", data=f"recent tickets ({run.r['recent_path'].name})",
              cfg=cost_mod.CostConfig.from_dict(run.ev.get("cost")))
    run.metrics.update(cost.metrics())

    write_plots(held, topics, run.plots_dir, "heldout", target_precision=run.target)
    conf_periods, conf_values, period_kind = _confidence_periods(run.r["recent_rows"], run.r["recent_frame"],
                                                                 history, cc, stamp)
    plots.plot_confidence_over_time(conf_values, conf_periods, run.plots_dir / "confidence_over_time.png",
                                    title=f"Confidence of recent traffic ({period_kind})")
    per_label_f1 = {lab: d["f1"] for lab, d in held["per_label"].items() if lab in topics or d["support"] > 0}
    f1_rows = [{"period": run_label(h.get("run")), "label": lab, "f1": f1}
               for h in history[-cc.history_runs:] for lab, f1 in (h.get("per_label_f1") or {}).items()]
    f1_rows += [{"period": run_label(stamp), "label": lab, "f1": f1} for lab, f1 in per_label_f1.items()]
    plots.plot_f1_over_time(pd.DataFrame(f1_rows), run.plots_dir / "f1_over_time.png",
                            title="Held-out per-label F1 by evaluation run")
    run.r.update(cost=cost, per_label_f1=per_label_f1, period_kind=period_kind)


def _status_and_outputs(run: _Run) -> dict[str, Any]:
    """The status and its reasons, the history entry, ``summary.md``; returns the result."""
    r, cc, metrics, out = run.r, run.cc, run.metrics, run.out
    held, fb_rows, fb_detail, previous = r["held"], r["fb_rows"], r["fb_detail"], r["previous"]
    triage, drift, audit, catalog = r["triage"], r["drift"], r["audit"], r["catalog"]
    stamp, stamp_dt = run.stamp, run.stamp_dt
    auto = [(yt == yp) for yt, yp, b in zip(held["y_true"], held["y_pred"], held["bands"]) if b == "auto_route"]
    audits = [row for row in fb_rows if row["audit"] and row["predicted_topic"] is not None]
    audit_counts = (sum(row["predicted_topic"] == row["topic"] for row in audits), len(audits))
    status, reasons = decide_status(r["comparison"], drift, heldout_auto=(int(sum(auto)), len(auto)),
                                    audit=audit_counts, target=run.target,
                                    recent_comparison=r["recent_comparison"])
    if previous is None:
        reasons.append("first run: no previous run to compare with (the next run compares with this one)")
    metrics["status"] = float(STATUSES.index(status))

    record = {"run": stamp, "timestamp": stamp_dt.isoformat(), "model_version": triage.model_version,
              "family": triage.policy.family, "bundle": str(r["bundle"]), "status": status,
              "metrics": {k: v for k, v in metrics.items() if isinstance(v, float) and math.isfinite(v)},
              "heldout": r["current_held"], "per_label_f1": r["per_label_f1"],
              "recent_labelled": _per_ticket(fb_detail) if fb_detail else None,
              "recent_conf": [round(float(c), 3) for c in r["recent_frame"]["confidence"]]}
    run.hist_dir.mkdir(parents=True, exist_ok=True)
    history_path = run.hist_dir / f"{stamp}.json"
    history_path.write_text(json.dumps(record, default=str), encoding="utf-8")
    r["history_path"] = history_path

    drift_dict = r["drift_dict"]
    from ticket_triage.evaluation import review_loads

    r["review_load"] = review_loads(run.params, triage, {"recent": r["recent_decisions"],
                                                         "heldout": held.get("decisions") or []}, stage="monitor")
    result: dict[str, Any] = {
        "status": status, "reasons": reasons, "run": stamp, "timestamp": stamp_dt.isoformat(),
        "first_run": previous is None,
        "previous_run": previous.get("run") if previous else None,
        "bundle": str(r["bundle"]), "bundle_source": r["bundle_source"],
        "model_version": triage.model_version, "family": triage.policy.family,
        "data": {"heldout": len(r["held_rows"]), "recent_labelled": len(fb_rows),
                 "recent": len(r["recent_rows"]), "recent_path": str(r["recent_path"]),
                 "reference": len(r["ref_rows"]), "reference_source": r["ref_source"],
                 "overridden": sum(row["overridden"] for row in fb_rows), "audited": audit_counts[1],
                 "audited_correct": audit_counts[0]},
        "metrics": {k: (v if math.isfinite(v) else None) for k, v in metrics.items()},
        "comparison": r["comparison"], "recent_comparison": r["recent_comparison"],
        "drift": {"status": drift.status, "reason": drift.reason, "fired": drift.fired,
                  "signals": drift_dict["signals"], "new_term_clusters": drift_dict["new_term_clusters"]},
        "failures": {"n_failures": catalog["n_failures"], "n_rows": catalog["n_rows"],
                     "pairs": [{k: p[k] for k in ("true_label", "predicted", "count", "share")}
                               for p in catalog["pairs"][:cc.top_n]]},
        "noise": {"n": audit.n, "n_flagged": audit.n_flagged, "estimated_rate": audit.estimated_noise_rate,
                  "top": audit.issues.head(cc.top_n).to_dict(orient="records"),
                  "overlapping_pairs": audit.overlapping_pairs},
        "cost": r["cost"].to_dict(),
        "review_load": r["review_load"],
        "history_path": str(history_path), "out_dir": str(out), "confidence_periods": r["period_kind"],
    }
    (out / "summary.md").write_text(render_summary(result, target=run.target), encoding="utf-8")
    result["outputs"] = sorted(str(p) for p in out.rglob("*") if p.is_file())
    return result


def _track(run: _Run, result: dict[str, Any], flat: Mapping[str, float]) -> None:
    from ticket_triage import tracking

    triage = run.r["triage"]
    tracking.setup(run.params.get("tracking"), experiment=tracking.monitor_experiment(run.params.get("tracking")))
    with tracking.run(f"monitor-{triage.policy.family}-{tracking.git_sha(short=True)}",
                      tags={"stage": "monitor", "model_family": triage.policy.family,
                            "model_version": triage.model_version, "status": result["status"],
                            "bundle_source": run.r["bundle_source"]}) as r:
        tracking.log_metrics({**flat, **{f"seconds/{k}": v for k, v in run.timings.items()}})
        tracking.log_artifacts(run.out, "continuous")
        tracking.log_artifacts(run.r["history_path"], "history")
        result["mlflow_run_id"] = r.info.run_id
    (run.out / "result.json").write_text(json.dumps(result, indent=2, default=str), encoding="utf-8")


def label_noise_audit(train_path: str | Path, noise_cfg: Mapping[str, Any] | None, seed: int,
                      cache_path: str | Path) -> tuple[Any, bool]:
    """``noise.audit_labels`` on the train split, reused from ``cache_path`` while the split
    file and the ``monitor.noise`` settings are unchanged (the split only changes on retraining).
    Returns ``(NoiseAudit, from_cache)``."""
    import hashlib

    import pandas as pd

    from ticket_triage.monitoring import noise as noise_mod
    cfg = dict(noise_cfg or {})
    train_path, cache_path = Path(train_path), Path(cache_path)
    if not train_path.is_file():
        raise FileNotFoundError(f"train split {train_path} not found: run `dvc repro split` or set paths.split")
    h = hashlib.sha256(train_path.read_bytes())
    h.update(json.dumps({"cfg": cfg, "seed": seed, "v": 1}, sort_keys=True).encode())
    key = h.hexdigest()
    if cache_path.is_file():
        try:
            d = json.loads(cache_path.read_text(encoding="utf-8"))
            if d.get("key") == key:
                issues = pd.DataFrame(d["issues"], columns=["id", "given_label", "suggested_label", "confidence",
                                                            "self_confidence", "margin", "text"])
                return noise_mod.NoiseAudit(issues=issues, confident_joint=np.asarray(d["confident_joint"]),
                                            labels=d["labels"], overlapping_pairs=d["overlapping_pairs"],
                                            n=int(d["n"]), n_flagged=int(d["n_flagged"])), True
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            log.warning("ignoring unusable noise-audit cache %s (%s)", cache_path, exc)
    rows = [r for r in iter_jsonl(train_path) if r.get("topic")]
    audit = noise_mod.audit_labels([r.get("id") for r in rows], [r["text"] for r in rows], [r["topic"] for r in rows],
                                   folds=int(cfg.get("folds", 5)), seed=seed, max_rows=cfg.get("max_rows"),
                                   top_k=cfg.get("top_k"), top_pairs=cfg.get("top_pairs", 10),
                                   max_threads=cfg.get("max_threads"), method=cfg.get("method", "prune_by_noise_rate"))
    cache_path.parent.mkdir(parents=True, exist_ok=True)
    cache_path.write_text(json.dumps({"key": key, **audit.to_dict()}, default=str), encoding="utf-8")
    return audit, False


def _confidence_periods(recent_rows: Sequence[Mapping[str, Any]], frame: Any, history: Sequence[Mapping[str, Any]],
                        cc: ContinuousConfig, stamp: str) -> tuple[list[str], list[float], str]:
    """Periods for the confidence-over-time plot: from ``created_at`` when recent traffic spans
    at least ``min_periods`` periods, else one column per evaluation run (history + now)."""
    import pandas as pd

    created = pd.to_datetime(pd.Series([r.get("created_at") for r in recent_rows], dtype=object),
                             errors="coerce", utc=True)
    if created.notna().mean() >= 0.5:
        per = created.dt.tz_convert(None).dt.to_period(cc.period).astype(str)
        ok = created.notna().to_numpy()
        if per[ok].nunique() >= cc.min_periods:
            return list(per[ok]), list(frame["confidence"].to_numpy(float)[ok]), f"by {cc.period} period of created_at"
    periods: list[str] = []
    values: list[float] = []
    for h in history[-cc.history_runs:]:
        c = h.get("recent_conf") or []
        periods += [run_label(h.get("run"))] * len(c)
        values += [float(v) for v in c]
    now = list(frame["confidence"].to_numpy(float))
    return periods + [run_label(stamp)] * len(now), values + now, "by evaluation run"
