"""Continuous evaluation (``triage eval run``): is the deployed model still good enough?

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
   the MLflow experiment ``continuous-eval``.

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
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import time
from dataclasses import dataclass, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ticket_triage.data import iter_jsonl

log = logging.getLogger(__name__)

EXPERIMENT = "continuous-eval"
STATUSES: tuple[str, ...] = ("ok", "watch", "retrain recommended")
HEADLINE: tuple[tuple[str, str, bool], ...] = (  # (key, name shown, higher is better)
    ("accuracy", "accuracy", True),
    ("macro_f1", "macro-F1", True),
    ("coverage", "auto-route coverage", True),
    ("auto_precision", "auto-route precision", True),
    ("ece", "calibration error (ECE)", False),
)


# -- configuration ----------------------------------------------------------------------------
@dataclass
class ContinuousConfig:
    """``eval.continuous`` in params.yaml (see conf/eval/default.yaml)."""

    out_dir: str = "eval/continuous"
    history_dir: str = "eval/history"
    recent_path: str | None = None
    reference_path: str | None = None
    reference_max_rows: int = 2000
    recent_max_rows: int | None = None
    period: str = "W"
    min_periods: int = 2
    history_runs: int = 20
    top_n: int = 10

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> "ContinuousConfig":
        d = dict(d or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown key(s) {unknown} in eval.continuous; allowed: {sorted(known)}")
        return cls(**d)


# -- one embedding per text -------------------------------------------------------------------
class EmbeddingCache:
    """Wraps a classifier so that each distinct text is embedded once per evaluation.

    ``Triage.decide`` embeds texts for the out-of-scope score and neighbours, drift needs the
    same embeddings again, and an ``embed_logreg`` model with ``normalize: true`` classifies
    exactly those embeddings (through its public ``predict_proba_embeddings``): with the
    cache one encoder pass serves all three. Everything else is delegated unchanged.
    """

    def __init__(self, classifier: Any):
        self._clf = classifier
        self._cache: dict[str, np.ndarray] = {}
        self._no_embeddings = False
        params = getattr(classifier, "params", None) or {}
        self._via_embeddings = (callable(getattr(classifier, "predict_proba_embeddings", None))
                                and bool(params.get("normalize", False)))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._clf, name)

    @property
    def wrapped(self) -> Any:
        return self._clf

    def embed(self, texts: Sequence[str], **kwargs: Any) -> np.ndarray | None:
        texts = list(texts)
        if self._no_embeddings:
            return None
        missing = [t for t in dict.fromkeys(texts) if t not in self._cache]
        if missing:
            emb = self._clf.embed(missing)
            if emb is None:
                self._no_embeddings = True
                return None
            for t, v in zip(missing, np.asarray(emb, dtype=np.float32)):
                self._cache[t] = v
        if not texts:
            dim = next(iter(self._cache.values())).shape[0] if self._cache else 0
            return np.zeros((0, dim), dtype=np.float32)
        return np.vstack([self._cache[t] for t in texts])

    def seed(self, texts: Sequence[str], embeddings: np.ndarray) -> None:
        """Add known embeddings (e.g. the bundle's stored training-ticket embeddings)."""
        emb = np.asarray(embeddings, dtype=np.float32)
        if len(emb) != len(texts):
            raise ValueError(f"{len(texts)} texts but {len(emb)} embeddings")
        for t, v in zip(texts, emb):
            self._cache.setdefault(t, v)

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        if self._via_embeddings and texts:
            emb = self.embed(texts)
            if emb is not None:
                return self._clf.predict_proba_embeddings(emb)
        return self._clf.predict_proba(texts)


# -- inputs -----------------------------------------------------------------------------------
def resolve_bundle(params: Mapping[str, Any], bundle_dir: str | Path | None = None) -> tuple[Path, str]:
    """The bundle to evaluate and where it came from: ``bundle_dir``, else ``$TRIAGE_BUNDLE``,
    else the registry's ``champion``, else ``<paths.train>/winner`` (with a logged note)."""
    if bundle_dir:
        return Path(bundle_dir), "given"
    env = os.environ.get("TRIAGE_BUNDLE")
    if env:
        return Path(env), "TRIAGE_BUNDLE"
    from ticket_triage import tracking

    try:
        tracking.setup(params.get("tracking"))
        return Path(tracking.download_bundle("champion")), "registry champion"
    except Exception as exc:  # no store, no champion, unreachable server: fall back locally
        winner = Path((params.get("paths") or {}).get("train", "artifacts/train")) / "winner"
        note = f"no champion in the model registry ({exc}); evaluating the local sweep winner {winner}"
        log.warning(note)
        if not (winner / "policy.json").is_file():
            raise FileNotFoundError(
                f"nothing to evaluate: {note}, but {winner} holds no bundle. Run `dvc repro` "
                "(train, evaluate, promote), pass --bundle, or set TRIAGE_BUNDLE") from exc
        return winner, note


def read_tickets_file(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a JSONL or CSV ticket file (each needs ``text``, or ``subject``/``body``)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"recent traffic file {p} not found: set eval.continuous.recent_path "
                                "to a JSONL/CSV of recent tickets (null uses the test split)")
    if p.suffix.lower() == ".csv":
        import pandas as pd

        frame = pd.read_csv(p, dtype=str, keep_default_na=False)
        rows = [{k: (v if v != "" else None) for k, v in r.items()} for r in frame.to_dict(orient="records")]
    elif p.suffix.lower() in (".jsonl", ".ndjson", ".json"):
        rows = list(iter_jsonl(p))
    else:
        raise ValueError(f"{p}: recent traffic must be .jsonl or .csv")
    if rows and not any(k in rows[0] for k in ("text", "body", "subject")):
        raise ValueError(f"{p}: rows need a 'text' column (or 'subject'/'body'); got {sorted(rows[0])}")
    for i, r in enumerate(rows):
        r["id"] = str(r.get("id") or f"row{i}")
    return rows


def feedback_rows(feedback_dir: str | Path) -> list[dict[str, Any]]:
    """Recent labelled traffic: the newest reviewer verdict per ticket (corrections and audit
    samples) that carries text, as ``{id, text, topic, predicted_topic, overridden, audit,
    corrected_at}``."""
    from ticket_triage.review.feedback import read_feedback

    rows = []
    for tid, rec in sorted(read_feedback(feedback_dir).items()):
        text = (rec.get("text") or "").strip()
        if not text:
            continue
        pred = rec.get("predicted_topic")
        overridden = rec.get("action") == "correct" or (pred is not None and pred != rec["topic"])
        rows.append({"id": tid, "text": text, "topic": rec["topic"], "predicted_topic": pred,
                     "overridden": bool(overridden), "audit": rec.get("source") == "audit",
                     "corrected_at": rec.get("corrected_at"), "language": rec.get("language")})
    return rows


def _sample(rows: list[dict[str, Any]], n: int | None, seed: int, newest: bool = False) -> list[dict[str, Any]]:
    if not n or len(rows) <= n:
        return rows
    if newest and all(r.get("created_at") for r in rows):
        return sorted(rows, key=lambda r: str(r["created_at"]))[-n:]
    pick = np.sort(np.random.default_rng(seed).choice(len(rows), n, replace=False))
    return [rows[i] for i in pick]


def reference_rows(triage: Any, cc: ContinuousConfig, split_dir: Path, seed: int) -> tuple[list[dict[str, Any]], str]:
    """Reference tickets for drift and where they came from: ``eval.continuous.reference_path``
    when set; else the training tickets stored in the bundle with their embeddings
    (``neighbours``: a sample of the train split the model was fitted on, no encoding needed);
    else the train split file (families without embeddings). At most ``reference_max_rows``."""
    nb = getattr(triage, "neighbours", None)
    if cc.reference_path is None and nb is not None and len(nb.texts) and isinstance(triage.classifier, EmbeddingCache):
        triage.classifier.seed(nb.texts, nb.emb)
        rows = [{"id": f"train-sample-{i}", "text": t} for i, t in enumerate(nb.texts)]
        return _sample(rows, cc.reference_max_rows, seed), "training tickets stored in the bundle (neighbours)"
    path = Path(cc.reference_path or split_dir / "train.jsonl")
    return _sample(read_tickets_file(path), cc.reference_max_rows, seed), str(path)


# -- scoring unlabelled traffic ---------------------------------------------------------------
def decide_frame(triage: Any, rows: Sequence[Mapping[str, Any]]) -> tuple[Any, list[Any]]:
    """Decide ``rows`` and build the drift frame: id, text, predicted, confidence,
    out_of_scope (and ``embedding`` when the model family has embeddings)."""
    import pandas as pd

    from ticket_triage.schema import Ticket

    tickets = [Ticket.from_dict({k: v for k, v in r.items() if k != "topic"}) for r in rows]
    texts = [t.text or triage.clean(t) for t in tickets]
    for t, x in zip(tickets, texts):
        t.text = x
    decisions = triage.decide(tickets)
    frame = pd.DataFrame({"id": [t.id for t in tickets], "text": texts,
                          "predicted": [d.topic for d in decisions],
                          "confidence": [float(d.confidence) for d in decisions],
                          "out_of_scope": [d.reason == "out_of_scope" for d in decisions]})
    emb = triage.classifier.embed(texts) if texts else None
    if emb is not None:
        frame["embedding"] = list(emb)
    return frame, decisions


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


# -- the run ----------------------------------------------------------------------------------
def run_continuous_eval(params: Mapping[str, Any], *, bundle_dir: str | Path | None = None,
                        recent_path: str | Path | None = None, out_dir: str | Path | None = None,
                        history_dir: str | Path | None = None, track: bool = True) -> dict[str, Any]:
    """Evaluate a bundle on held-out, recent labelled and recent unlabelled traffic; compare
    with the previous run; write ``eval/continuous/`` and a history entry; log to MLflow
    (experiment ``continuous-eval``) when ``track``. Returns the result dict (also written as
    ``result.json``): status, reasons, metrics, comparison, drift, cost, noise, outputs."""
    from ticket_triage.monitoring import cost as cost_mod
    from ticket_triage.monitoring import plots
    from ticket_triage.monitoring.drift import drift_report
    from ticket_triage.evaluation import score_split, write_plots
    from ticket_triage.decision.triage import Triage
    from ticket_triage.monitoring.reports import failure_catalog, render_failure_catalog

    import pandas as pd

    t_start = time.perf_counter()
    timings: dict[str, float] = {}

    def lap(name: str, t0: float) -> float:
        now = time.perf_counter()
        timings[name] = round(now - t0, 3)
        return now

    ev = dict(params.get("eval") or {})
    cc = ContinuousConfig.from_dict(ev.get("continuous"))
    paths = dict(params.get("paths") or {})
    seed = int(params.get("seed", 0))
    target = float((params.get("train") or {}).get("target_precision", 0.99))
    ece_bins = int((ev.get("metrics") or {}).get("ece_bins", 15))
    out = Path(out_dir or cc.out_dir)
    hist_dir = Path(history_dir or cc.history_dir)
    plots_dir = out / "plots"
    out.mkdir(parents=True, exist_ok=True)
    stamp_dt = datetime.now(timezone.utc)
    stamp = stamp_dt.strftime("%Y%m%dT%H%M%S%fZ")

    t = time.perf_counter()
    bundle, bundle_source = resolve_bundle(params, bundle_dir)
    triage = Triage.load(bundle)
    triage.classifier = EmbeddingCache(triage.classifier)
    topics = list(triage.topics)
    t = lap("load", t)

    # 1. labelled sets --------------------------------------------------------------------
    heldout_path = Path(paths.get("heldout", "eval/heldout.jsonl"))
    if not heldout_path.is_file():
        raise FileNotFoundError(f"held-out set {heldout_path} not found: run `dvc repro split` (it freezes "
                                "the held-out set) or set paths.heldout")
    held_rows = list(iter_jsonl(heldout_path))
    metrics, held = score_split(triage, held_rows, "heldout", target_precision=target)
    fb_rows = feedback_rows(paths.get("feedback", "data/feedback"))
    fb_detail = None
    if fb_rows:
        fb_metrics, fb_detail = score_split(triage, fb_rows, "recent_labelled", target_precision=target)
        metrics.update(fb_metrics)
    else:
        log.info("no reviewer corrections or audit samples with text in %s: recent labelled traffic skipped",
                 paths.get("feedback", "data/feedback"))
    t = lap("score_labelled", t)

    # 2. unlabelled recent traffic vs the reference (drift) --------------------------------
    split_dir = Path(paths.get("split", "artifacts/split"))
    rp = Path(recent_path or cc.recent_path or split_dir / "test.jsonl")
    recent_rows = _sample(read_tickets_file(rp), cc.recent_max_rows, seed, newest=True)
    ref_rows, ref_source = reference_rows(triage, cc, split_dir, seed)
    if not recent_rows:
        raise ValueError(f"{rp} holds no tickets: point eval.continuous.recent_path at recent traffic")
    recent_frame, recent_decisions = decide_frame(triage, recent_rows)
    ref_frame, _ = decide_frame(triage, ref_rows)
    t = lap("decide_unlabelled", t)
    drift = drift_report(ref_frame, recent_frame, ev.get("drift"))
    drift_dict = drift.to_dict()
    (out / "drift.json").write_text(json.dumps(drift_dict, indent=2, default=str), encoding="utf-8")
    metrics.update({f"drift/{s.name}": s.value for s in drift.signals if not s.skipped})
    metrics["drift/status"] = float(STATUSES.index(drift.status))
    t = lap("drift", t)

    # 3. comparison with the previous run -------------------------------------------------
    history = load_history(hist_dir, last=max(cc.history_runs, 1))
    previous = history[-1] if history else None
    current_held = _per_ticket(held)
    comparison = recent_comparison = None
    if previous is not None and previous.get("heldout"):
        comparison = compare_with_previous(current_held, previous["heldout"], ev.get("compare") or {},
                                           labels=topics, seed=seed, ece_bins=ece_bins, top_n=cc.top_n)
        for k, d in comparison["deltas"].items():
            if d.get("delta") is not None:
                metrics[f"compare/{k}_delta"] = d["delta"]
        metrics["compare/drop"] = float(comparison["drop"])
        if fb_detail is not None and previous.get("recent_labelled"):
            from ticket_triage.metrics import compare_runs

            cfg = ev.get("compare") or {}
            prev_fb = previous["recent_labelled"]
            recent_comparison = compare_runs(
                {"y_true": fb_detail["y_true"], "y_pred": fb_detail["y_pred"], "ids": _per_ticket(fb_detail)["ids"]},
                {"y_true": prev_fb["y_true"], "y_pred": prev_fb["y_pred"], "ids": prev_fb["ids"]},
                metric=cfg.get("metric", "macro_f1"), tolerance=float(cfg.get("tolerance", 0.01)),
                n=int(cfg.get("bootstrap_n", 1000)), seed=seed, level=float(cfg.get("level", 0.95)),
                top_k=int(cfg.get("top_labels", 3))).to_dict()
    t = lap("compare", t)

    # 4. failure catalog, noise audit, cost, plots ----------------------------------------
    cat_cfg = dict(ev.get("catalog") or {})
    confs = [d["confidence"] for d in held["decisions"]]
    cat_rows = [{"id": i, "text": x, "true_label": yt, "predicted": yp, "confidence": c, "band": b, "source": s}
                for i, x, yt, yp, c, b, s in zip(current_held["ids"], held["texts"], held["y_true"],
                                                 held["y_pred"], confs, held["bands"], held["sources"])]
    cat_rows += [{"id": r["id"], "text": r["text"], "true_label": r["topic"],
                  "predicted": r["predicted_topic"] if r["predicted_topic"] is not None else d["topic"],
                  "confidence": d["confidence"], "band": d["band"], "source": "review", "overridden": True}
                 for r, d in zip(fb_rows, fb_detail["decisions"] if fb_detail else []) if r["overridden"]]
    catalog = failure_catalog(cat_rows, max_examples=1, max_clusters=0)  # the pairs, for summary.md
    render_failure_catalog(cat_rows, out, max_examples=int(cat_cfg.get("max_examples", 5)),
                           max_clusters=int(cat_cfg.get("max_clusters", 8)), seed=seed,
                           title="Failure catalog (held-out misclassifications and reviewer overrides)")
    t = lap("failure_catalog", t)

    audit, audit_cached = label_noise_audit(split_dir / "train.jsonl", ev.get("noise"), seed, out / "noise_audit.json")
    audit.issues.to_csv(out / "noise_audit.csv", index=False, quoting=csv.QUOTE_MINIMAL)
    timings["noise_audit_cached"] = float(audit_cached)
    metrics["noise/estimated_rate"] = audit.estimated_noise_rate
    metrics["noise/n_flagged"] = float(audit.n_flagged)
    t = lap("noise_audit", t)

    cost = cost_mod.cost_report([d.to_dict() for d in recent_decisions], ev.get("cost"))
    cost.per_path.to_csv(out / "cost_per_path.csv", index=False)
    cost.plot(out / "cost.png", data=f"recent tickets ({rp.name})", cfg=cost_mod.CostConfig.from_dict(ev.get("cost")))
    metrics.update(cost.metrics())

    write_plots(held, topics, plots_dir, "heldout", target_precision=target)
    conf_periods, conf_values, period_kind = _confidence_periods(recent_rows, recent_frame, history, cc, stamp)
    plots.plot_confidence_over_time(conf_values, conf_periods, plots_dir / "confidence_over_time.png",
                                    title=f"Confidence of recent traffic ({period_kind})")
    per_label_f1 = {lab: d["f1"] for lab, d in held["per_label"].items() if lab in topics or d["support"] > 0}
    f1_rows = [{"period": run_label(h.get("run")), "label": lab, "f1": f1}
               for h in history[-cc.history_runs:] for lab, f1 in (h.get("per_label_f1") or {}).items()]
    f1_rows += [{"period": run_label(stamp), "label": lab, "f1": f1} for lab, f1 in per_label_f1.items()]
    plots.plot_f1_over_time(pd.DataFrame(f1_rows), plots_dir / "f1_over_time.png",
                            title="Held-out per-label F1 by evaluation run")
    t = lap("cost_and_plots", t)

    # 5. status, history, summary, tracking -----------------------------------------------
    auto = [(yt == yp) for yt, yp, b in zip(held["y_true"], held["y_pred"], held["bands"]) if b == "auto_route"]
    audits = [r for r in fb_rows if r["audit"] and r["predicted_topic"] is not None]
    audit_counts = (sum(r["predicted_topic"] == r["topic"] for r in audits), len(audits))
    status, reasons = decide_status(comparison, drift, heldout_auto=(int(sum(auto)), len(auto)),
                                    audit=audit_counts, target=target, recent_comparison=recent_comparison)
    if previous is None:
        reasons.append("first run: no previous run to compare with (the next run compares with this one)")
    metrics["status"] = float(STATUSES.index(status))

    record = {"run": stamp, "timestamp": stamp_dt.isoformat(), "model_version": triage.model_version,
              "family": triage.policy.family, "bundle": str(bundle), "status": status,
              "metrics": {k: v for k, v in metrics.items() if isinstance(v, float) and math.isfinite(v)},
              "heldout": current_held, "per_label_f1": per_label_f1,
              "recent_labelled": _per_ticket(fb_detail) if fb_detail else None,
              "recent_conf": [round(float(c), 3) for c in recent_frame["confidence"]]}
    hist_dir.mkdir(parents=True, exist_ok=True)
    history_path = hist_dir / f"{stamp}.json"
    history_path.write_text(json.dumps(record, default=str), encoding="utf-8")

    result: dict[str, Any] = {
        "status": status, "reasons": reasons, "run": stamp, "timestamp": stamp_dt.isoformat(),
        "first_run": previous is None,
        "previous_run": previous.get("run") if previous else None,
        "bundle": str(bundle), "bundle_source": bundle_source, "model_version": triage.model_version,
        "family": triage.policy.family,
        "data": {"heldout": len(held_rows), "recent_labelled": len(fb_rows), "recent": len(recent_rows),
                 "recent_path": str(rp), "reference": len(ref_rows), "reference_source": ref_source,
                 "overridden": sum(r["overridden"] for r in fb_rows), "audited": audit_counts[1],
                 "audited_correct": audit_counts[0]},
        "metrics": {k: (v if math.isfinite(v) else None) for k, v in metrics.items()},
        "comparison": comparison, "recent_comparison": recent_comparison,
        "drift": {"status": drift.status, "reason": drift.reason, "fired": drift.fired,
                  "signals": drift_dict["signals"], "new_term_clusters": drift_dict["new_term_clusters"]},
        "failures": {"n_failures": catalog["n_failures"], "n_rows": catalog["n_rows"],
                     "pairs": [{k: p[k] for k in ("true_label", "predicted", "count", "share")}
                               for p in catalog["pairs"][:cc.top_n]]},
        "noise": {"n": audit.n, "n_flagged": audit.n_flagged, "estimated_rate": audit.estimated_noise_rate,
                  "top": audit.issues.head(cc.top_n).to_dict(orient="records"),
                  "overlapping_pairs": audit.overlapping_pairs},
        "cost": cost.to_dict(),
        "history_path": str(history_path), "out_dir": str(out), "confidence_periods": period_kind,
    }
    (out / "summary.md").write_text(render_summary(result, target=target), encoding="utf-8")
    result["outputs"] = sorted(str(p) for p in out.rglob("*") if p.is_file())
    timings["total"] = round(time.perf_counter() - t_start, 3)
    result["timings"] = timings
    flat = {k: v for k, v in metrics.items() if isinstance(v, float) and math.isfinite(v)}
    (out / "metrics.json").write_text(json.dumps(flat, indent=2, sort_keys=True), encoding="utf-8")
    (out / "result.json").write_text(json.dumps(result, indent=2, default=str), encoding="utf-8")

    if track:
        from ticket_triage import tracking

        tracking.setup(params.get("tracking"), experiment=EXPERIMENT)
        with tracking.run(f"continuous-eval-{triage.policy.family}-{tracking.git_sha(short=True)}",
                          tags={"stage": "continuous-eval", "model_family": triage.policy.family,
                                "model_version": triage.model_version, "status": status,
                                "bundle_source": bundle_source}) as r:
            tracking.log_metrics({**flat, **{f"seconds/{k}": v for k, v in timings.items()}})
            tracking.log_artifacts(out, "continuous")
            tracking.log_artifacts(history_path, "history")
            result["mlflow_run_id"] = r.info.run_id
        (out / "result.json").write_text(json.dumps(result, indent=2, default=str), encoding="utf-8")
    log.info("continuous eval: %s (%s) in %.1fs", status, "; ".join(reasons), timings["total"])
    return result


def label_noise_audit(train_path: str | Path, noise_cfg: Mapping[str, Any] | None, seed: int,
                      cache_path: str | Path) -> tuple[Any, bool]:
    """``noise.audit_labels`` on the train split, reused from ``cache_path`` while the split
    file and the ``eval.noise`` settings are unchanged (the split only changes on retraining).
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


def run_label(stamp: Any) -> str:
    """``20250131T120000123456Z`` -> ``2025-01-31 12:00:00`` (sorts like the stamp)."""
    try:
        return datetime.strptime(str(stamp), "%Y%m%dT%H%M%S%fZ").strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return str(stamp)


# -- summary.md -------------------------------------------------------------------------------
def _md(s: Any) -> str:
    import re

    return re.sub(r"([\\`*_{}\[\]<>|#])", r"\\\1", " ".join(str(s).split()))


def _pct(v: Any) -> str:
    return "n/a" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{float(v):.1%}"


def _num(v: Any, fmt: str = ".3f") -> str:
    return "n/a" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(float(v), fmt)


def render_summary(result: Mapping[str, Any], *, target: float = 0.99) -> str:
    """The support-lead summary (Markdown) of a :func:`run_continuous_eval` result."""
    m = result["metrics"]
    d = result["data"]
    lines = [f"# Continuous evaluation, {run_label(result['run'])} UTC", "",
             f"**Status: {result['status'].upper()}**", ""]
    lines += [f"- {_md(r)}" for r in result["reasons"]]
    lines += ["", f"Model `{result['model_version']}` ({result['family']}, {_md(result['bundle_source'])}). "
              f"Held-out tickets: {d['heldout']}; recent labelled tickets (reviewer corrections and audits): "
              f"{d['recent_labelled']}; recent traffic: {d['recent']} tickets from `{d['recent_path']}`.", ""]

    lines += ["## Headline metrics (frozen held-out set)", ""]
    comp = result.get("comparison")
    if comp is None:
        lines += ["First run: there is no previous run to compare with; the next run will show deltas.", "",
                  "| metric | now |", "|---|---:|"]
        for key, name, _ in HEADLINE:
            v = m.get(f"heldout/{key}")
            lines.append(f"| {name} | {_num(v)} |")
    else:
        level = round(100 * float(comp.get("level", 0.95)))
        lines += [f"Compared with the previous run of {run_label(result['previous_run'])} UTC "
                  f"({'same tickets, paired' if comp['paired'] else 'different tickets, unpaired'} bootstrap, "
                  f"{level}% intervals).", "",
                  f"| metric | now | previous | change | {level}% interval |", "|---|---:|---:|---:|---|"]
        for key, name, higher in HEADLINE:
            x = comp["deltas"].get(key) or {}
            ci = (f"{_num(x.get('ci_low'), '+.3f')} .. {_num(x.get('ci_high'), '+.3f')}"
                  if x.get("ci_low") is not None else "n/a")
            lines.append(f"| {name}{'' if higher else ' (lower is better)'} | {_num(x.get('current'))} | "
                         f"{_num(x.get('previous'))} | {_num(x.get('delta'), '+.3f')} | {ci} |")
        drops = [r for r in comp["per_label"] if r["delta"] < 0][:5]
        if drops:
            lines += ["", "Largest per-label F1 drops:", "", "| label | previous F1 | now | change | 95% interval |",
                      "|---|---:|---:|---:|---|"]
            lines += [f"| {_md(r['label'])} | {r['previous_f1']:.3f} | {r['current_f1']:.3f} | {r['delta']:+.3f} | "
                      + (f"{r['ci_low']:+.3f} .. {r['ci_high']:+.3f}" if "ci_low" in r else "n/a") + " |"
                      for r in drops]
    lines += ["", f"Auto-routed share {_pct(m.get('heldout/coverage'))} at precision "
              f"{_pct(m.get('heldout/auto_precision'))} (target {target:.0%}); draft {_pct(m.get('heldout/draft_share'))}, "
              f"review queue {_pct(m.get('heldout/review_share'))}.", ""]

    lines += ["## Recent labelled traffic", ""]
    if d["recent_labelled"]:
        lines.append(f"{d['recent_labelled']} tickets with a reviewer verdict: the current model gets "
                     f"{_pct(m.get('recent_labelled/accuracy'))} right (macro-F1 {_num(m.get('recent_labelled/macro_f1'))}); "
                     f"reviewers overrode {d['overridden']} tags. These tickets come mostly from the review queue, "
                     "so they are harder than average.")
        if d["audited"]:
            lines.append(f"Audit samples of auto-routed tickets: {d['audited_correct']}/{d['audited']} were right.")
        rc = result.get("recent_comparison")
        if rc:
            lines.append(f"Against the previous run: {_md(rc['reason'])}.")
    else:
        lines.append("No reviewer corrections or audit samples with text in the feedback folder: skipped.")

    dr = result["drift"]
    lines += ["", "## Drift: recent traffic vs training tickets", "",
              f"Drift status **{dr['status']}**: {_md(dr['reason'])}. Reference: {d['reference']} "
              f"{_md(d['reference_source'])}.", "",
              "| signal | value | threshold | fired |", "|---|---:|---:|---|"]
    for s in dr["signals"]:
        skipped = (s.get("detail") or {}).get("skipped")
        lines.append(f"| {s['name']} | {_num(s['value'])} | {_num(s['threshold'])} | "
                     f"{'skipped: ' + _md(skipped) if skipped else ('yes' if s['fired'] else 'no')} |")
    for c in dr["new_term_clusters"][:3]:
        lines.append(f"\nCandidate new category ({c['size']} tickets): {_md(', '.join(c['terms']))}; e.g. "
                     f"\"{_md(c['examples'][0]['text'][:120]) if c['examples'] else ''}\"")

    f = result["failures"]
    lines += ["", "## Where the model goes wrong", "",
              f"{f['n_failures']} failing tickets (held-out misclassifications and reviewer overrides) out of "
              f"{f['n_rows']}; see `failure_catalog.md`.", ""]
    if f["pairs"]:
        lines += ["| true topic | predicted | tickets | share |", "|---|---|---:|---:|"]
        lines += [f"| {_md(p['true_label'])} | {_md(p['predicted'])} | {p['count']} | {p['share']:.0%} |"
                  for p in f["pairs"]]

    nz = result["noise"]
    lines += ["", "## Suspected mislabelled training tickets", "",
              f"{nz['n_flagged']} of {nz['n']} audited training tickets look mislabelled "
              f"(estimated noise {nz['estimated_rate']:.1%}); the ranked list is in `noise_audit.csv`.", ""]
    if nz["top"]:
        lines += ["| ticket | labelled | suggested | confidence | text |", "|---|---|---|---:|---|"]
        lines += [f"| {_md(r['id'])} | {_md(r['given_label'])} | {_md(r['suggested_label'])} | "
                  f"{r['confidence']:.2f} | {_md(str(r['text'])[:100])} |" for r in nz["top"]]
    if nz["overlapping_pairs"]:
        pairs = ", ".join(f"{_md(p['label_a'])} / {_md(p['label_b'])} ({p['count']})" for p in nz["overlapping_pairs"][:5])
        lines += ["", f"Topics often confused with each other: {pairs}."]

    c = result["cost"]
    lines += ["", "## Cost", "", f"Over {c['n']} recent tickets (LLM fallback not consulted during evaluation):", "",
              "| path | share | cost per ticket | per month |", "|---|---:|---:|---:|"]
    lines += [f"| {r['path']} | {r['share']:.1%} | ${r['cost_per_ticket']:.4f} | ${r['monthly_cost']:,.0f} |"
              for r in c["per_path"]]
    saving = c["monthly_all_llm"] - c["monthly_cost_without_people"]
    lines += ["", f"Projected at {c['tickets_per_month']:,} tickets a month: ${c['monthly_cost']:,.0f} in total "
              f"(${c['monthly_cost_without_people']:,.0f} without reviewer time), against "
              f"${c['monthly_all_llm']:,.0f} for sending every ticket to the LLM "
              f"({'saves' if saving >= 0 else 'costs'} ${abs(saving):,.0f} a month in machine cost).",
              "", "## Files", "",
              "`summary.md`, `result.json`, `metrics.json`, `drift.json`, `failure_catalog.md`/`.html`, "
              "`noise_audit.csv`, `cost_per_path.csv`, `cost.png`, `plots/` (confusion, reliability, "
              "coverage vs precision, confidence over time, per-label F1 over time); this run's history "
              f"entry: `{result['history_path']}`.", ""]
    return "\n".join(lines)
