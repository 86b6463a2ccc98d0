"""The train stage: run a sweep of candidates, track each in MLflow, pick the winner.

A sweep (``conf/sweep/*.yaml``) is a list of candidates; each names a model config
(``conf/model/<name>.yaml``) and may override its hyperparameters, the label level
(``topic`` or ``tag``: train on fine source tags, route on summed topic probabilities) and
threshold settings. Every candidate is a nested MLflow run under one parent run per sweep.
The winner is picked on validation by :func:`ticket_triage.evaluation.objective`.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from ticket_triage.config import flatten, model_config, sections, target_precision
from ticket_triage.data import iter_jsonl

log = logging.getLogger(__name__)

CANDIDATE_KEYS = {"model", "label_level", "thresholds", "name"}


@dataclass
class Candidate:
    name: str
    model: dict[str, Any]
    label_level: str
    thresholds: dict[str, Any]

    @property
    def family(self) -> str:
        return self.model["family"]


@dataclass
class SweepResult:
    candidates: list[dict[str, Any]] = field(default_factory=list)
    winner: str | None = None
    winner_dir: str | None = None
    parent_run_id: str | None = None
    winner_run_id: str | None = None


def resolve_candidates(params: Mapping[str, Any]) -> list[Candidate]:
    """Expand ``params['sweep']['candidates']`` into concrete candidate configs."""
    cfg = sections(params)
    base_th = dict(params.get("thresholds") or {})
    raw = list(cfg.sweep.candidates)
    out: list[Candidate] = []
    device = cfg.train.device  # fine-tuned families on a GPU: dvc exp run -S '+train.device=cuda'
    if not raw:  # single: the composed model (dvc exp run -S sweep=single -S model=...)
        m = dict(params["model"])
        if device and "device" in m:
            m["device"] = device
        level = cfg.train.label_level
        out.append(Candidate(f"{m['family']}-{level}", m, level, base_th))
        return out
    for c in raw:
        c = dict(c)
        name = c.get("model")
        if not name:
            raise ValueError(f"sweep candidate {c} has no 'model'")
        overrides = {k: v for k, v in c.items() if k not in CANDIDATE_KEYS}
        m = model_config(name, overrides)
        if device and "device" in m and "device" not in overrides:  # fine-tuned families: train.device
            m["device"] = device
        if device and m.get("members") and "members" not in overrides:  # and an ensemble's fine-tuned members
            m["members"] = [{**mem, "device": device} if "device" in mem else mem for mem in m["members"]]
        level = c.get("label_level", cfg.train.label_level)
        th = {**base_th, **dict(c.get("thresholds") or {})}
        tag = f"{name}-{level}"
        if overrides or c.get("thresholds"):
            tag += "-" + hashlib.sha1(json.dumps([overrides, c.get("thresholds")], sort_keys=True,
                                                 default=str).encode()).hexdigest()[:6]
        out.append(Candidate(c.get("name", tag), m, level, th))
    return out


def _labels(rows: Sequence[Mapping[str, Any]], level: str) -> list[str]:
    from ticket_triage.decision.crossfit import label_of

    return [label_of(r, level) for r in rows]


def train_candidate(cand: Candidate, params: Mapping[str, Any], train_rows: Sequence[Mapping[str, Any]],
                    val_rows: Sequence[Mapping[str, Any]], out_dir: Path, *, progress: bool = True
                    ) -> tuple[Path, dict[str, float], dict[str, Any]]:
    """Fit one candidate, build its bundle, score it on validation through Triage.decide."""
    from ticket_triage.evaluation import score_split
    from ticket_triage.decision.bundle import build_bundle
    from ticket_triage.decision.triage import Triage
    from ticket_triage.models import build_classifier
    from ticket_triage.models.base import check_training_data, heartbeat

    texts = [r["text"] for r in train_rows]
    labels = _labels(train_rows, cand.label_level)
    cfg = sections(params)
    check_training_data(texts, labels, int(cfg.train.min_examples_per_label))
    hp = {k: v for k, v in cand.model.items() if k != "family"}
    hp.setdefault("seed", cfg.seed)
    clf = build_classifier(cand.family, **hp)
    log.info("%s: fitting on %d tickets, %d %s labels", cand.name, len(texts), len(set(labels)), cand.label_level)
    t0 = time.perf_counter()
    kw = {}
    if getattr(clf, "uses_validation", False):  # early stopping on the validation split
        kw["validation"] = ([r["text"] for r in val_rows], _labels(val_rows, cand.label_level))
    with heartbeat(f"{cand.name}: fit"):
        clf.fit(texts, labels, progress=progress, **kw)
    train_s = time.perf_counter() - t0
    log.info("%s: fitted in %.0f s; building the bundle (calibration, cross-fit, thresholds, urgency)",
             cand.name, train_s)
    p = copy.copy(params)  # shallow: only the thresholds section is replaced (by the candidate's)
    p["thresholds"] = cand.thresholds
    with heartbeat(f"{cand.name}: bundle"):
        bundle = build_bundle(clf, train_rows, val_rows, p, out_dir, label_level=cand.label_level,
                              model_version=cand.name, progress=progress)
    triage = Triage.load(bundle)
    target = target_precision(params)
    log.info("%s: bundle built (%.0f s in all); scoring %d validation tickets", cand.name,
             time.perf_counter() - t0, len(val_rows))
    metrics, detail = score_split(triage, val_rows, "val", target_precision=target)
    metrics["train/seconds"] = train_s
    t1 = time.perf_counter()
    for r in val_rows[:50]:
        triage.decide([{"text": r["text"], "subject": "", "body": ""}])
    metrics["val/single_latency_ms"] = 1000 * (time.perf_counter() - t1) / max(1, min(50, len(val_rows)))
    return bundle, metrics, detail


def write_rule_report(params: Mapping[str, Any], train_rows: Sequence[Mapping[str, Any]], out: Path) -> dict:
    """How the configured rules fit the training split (``rules.report``): written to
    ``<out>/rule_report.json``, summarised on the console (warnings for over-firing rules)."""
    from ticket_triage.decision.rules import RuleSet
    from ticket_triage.decision.rules.report import rule_report, summary_lines

    report = rule_report(RuleSet.from_config(params.get("rules")), train_rows)
    (out / "rule_report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False, default=str))
    for line in summary_lines(report):
        print(f"[train] {line}", flush=True)
    for w in report["warnings"]:
        log.warning(w)
    return report


def run_sweep(params: Mapping[str, Any], *, out_dir: str | Path | None = None,
              metrics_path: str | Path = "eval/metrics/train.json", track: bool = True,
              progress: bool = True) -> SweepResult:
    from ticket_triage import tracking
    from ticket_triage.bundles import copy_bundle
    from ticket_triage.evaluation import headline, objective, write_cascade_plot, write_plots

    cfg = sections(params)
    paths = cfg.paths
    split_dir = Path(paths.split)
    train_rows = list(iter_jsonl(split_dir / "train.jsonl"))
    val_rows = list(iter_jsonl(split_dir / "validation.jsonl"))
    if not train_rows:
        raise ValueError(f"{split_dir / 'train.jsonl'} is empty: check artifacts/split/report.json and the clean report")
    if not val_rows:
        raise ValueError(f"{split_dir / 'validation.jsonl'} is empty: raise split.validation or add data")
    no_val = sorted({str(r["topic"]) for r in train_rows} - {str(r["topic"]) for r in val_rows})
    if no_val:  # the winner and the thresholds must be chosen on a split that has every label
        raise ValueError(f"validation has no tickets of {', '.join(no_val)}: the sweep's winner and the thresholds "
                         "would be chosen without them. Rerun the split stage (split.strategy=date keeps every label "
                         "in validation) or add tickets of these labels")
    out = Path(out_dir or paths.train)
    out.mkdir(parents=True, exist_ok=True)
    write_rule_report(params, train_rows, out)
    cands = resolve_candidates(params)
    target = target_precision(params)
    result = SweepResult()
    scored: list[tuple[tuple[float, float, float], Candidate, Path, dict[str, float], str | None]] = []

    sweep_name = cfg.sweep.name
    data_name = str(cfg.data.name or "data")
    parent_run = contextlib.ExitStack()  # a crash in the sweep marks the parent run FAILED
    if track:
        tracking.setup(cfg.tracking)
        parent = parent_run.enter_context(tracking.run(
            tracking.run_name("train", sweep_name), tags={"stage": "train", "sweep": sweep_name},
            params={"sweep.candidates": len(cands), "seed": params.get("seed")},
            description=(f"Sweep `{sweep_name}`: {len(cands)} candidate(s) ({', '.join(c.name for c in cands)}) "
                         f"trained on {len(train_rows):,} `{data_name}` tickets and compared on "
                         f"{len(val_rows):,} validation tickets. The winner has the largest auto-routed share "
                         f"at auto-routed precision >= {target:g} (then macro-F1, then latency); its validation "
                         "metrics are this run's `winner/*` metrics.")))
        result.parent_run_id = parent.info.run_id
    with parent_run:
        for i, cand in enumerate(cands, 1):
            log.info("candidate %d/%d: %s", i, len(cands), cand.name)
            print(f"[train] candidate {i}/{len(cands)}: {cand.name}", flush=True)
            cdir = out / "candidates" / cand.name
            run_id = None
            if track:
                flat = flatten({"model": cand.model, "thresholds": cand.thresholds, "train": params.get("train", {}),
                                "data": {"name": params.get("data", {}).get("name")},
                                "label_level": cand.label_level, "seed": params.get("seed")})
                hp = ", ".join(f"{k}={v}" for k, v in cand.model.items() if k != "family")
                with tracking.run(tracking.run_name("train", cand.name), nested=True,
                                  tags={"stage": "train", "model_family": cand.family,
                                        "label_level": cand.label_level, "sweep": sweep_name,
                                        "thresholds": json.dumps(cand.thresholds, default=str)[:500]},
                                  params=flat,
                                  description=(f"Candidate {i}/{len(cands)} of sweep `{sweep_name}`: "
                                               f"`{cand.family}` trained on {cand.label_level} labels ({hp}). "
                                               "Metrics `val/*` are on the validation split, through the full "
                                               "decision policy (rules, calibration, tuned thresholds).")) as r:
                    run_id = r.info.run_id
                    tracking.log_dataset(train_rows, split_dir / "train.jsonl", "training", name=f"{data_name}-train")
                    tracking.log_dataset(val_rows, split_dir / "validation.jsonl", "validation",
                                         name=f"{data_name}-validation")
                    bundle, metrics, detail = train_candidate(cand, params, train_rows, val_rows, cdir, progress=progress)
                    tracking.log_metrics(metrics)
                    info_file = Path(bundle) / "classifier" / "train_info.json"  # fine-tuned families
                    if info_file.is_file():
                        tracking.log_training_curve(json.loads(info_file.read_text()))
                    plot_dir = cdir.parent / f"{cand.name}-plots"
                    write_plots(detail, sorted({r_["topic"] for r_ in train_rows}), plot_dir, "val")
                    write_cascade_plot(bundle, plot_dir)  # only when the cascade is on
                    (plot_dir / "val_per_label.json").write_text(json.dumps(detail["per_label"], indent=2))
                    tracking.log_artifacts(plot_dir, "plots")
                    tracking.log_bundle_model(bundle, [{"subject": "", "body": val_rows[0]["text"]}])
            else:
                bundle, metrics, detail = train_candidate(cand, params, train_rows, val_rows, cdir, progress=progress)
            key = objective(metrics, "val", target)
            scored.append((key, cand, bundle, metrics, run_id))
            result.candidates.append({"name": cand.name, "family": cand.family, "label_level": cand.label_level,
                                      "run_id": run_id, "objective": list(key),
                                      "metrics": {k: v for k, v in metrics.items() if k.count("/") == 1}})
            print(f"[train]   val accuracy {metrics['val/accuracy']:.4f}  macro-F1 {metrics['val/macro_f1']:.4f}  "
                  f"auto-routed {metrics['val/coverage']:.3f} at precision {metrics['val/auto_precision']:.4f}", flush=True)
        best = max(scored, key=lambda s: s[0])
        result.winner, result.winner_run_id = best[1].name, best[4]
        result.winner_dir = str(copy_bundle(best[2], out / "winner"))
        if track:
            tracking.log_metrics({f"winner/{k}": v for k, v in best[3].items() if k.count("/") == 1})
            tracking.set_tag("winner", best[1].name)
            if best[4]:
                tracking.set_tag("sweep_winner", "true", run_id=best[4])
    (out / "sweep.json").write_text(json.dumps(result.__dict__, indent=2, default=str))
    Path(metrics_path).parent.mkdir(parents=True, exist_ok=True)
    Path(metrics_path).write_text(json.dumps({**headline(best[3]), "winner": best[1].name}, indent=2,
                                             sort_keys=True, default=str) + "\n")
    print(f"[train] winner: {best[1].name}", flush=True)
    return result
