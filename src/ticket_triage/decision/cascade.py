"""The cascade: a cheap first stage decides the obvious tickets, the encoder model only the rest.

This module owns the first stage of a bundle (``cascade/``): a TF-IDF + logistic regression
classifier (an ensemble's own TF-IDF member when there is one, else fitted here on the same
train split), its calibration, its exit thresholds, its out-of-scope check, and the
full-stage thresholds that replace ``policy.json``'s while the cascade is on.

A ticket *exits* at the first stage (band ``auto_route``, ``explanation["stage"] = "cheap"``)
only when all of these hold; every other ticket goes to the full stage unchanged:

* its cleaned text is not empty, no rule that pins the band fires on it (security incidents,
  public escalation: the full stage sends them where the rule says), a rule that sets the
  topic sets the topic the first stage predicts (else the full stage makes it a draft), and
  its language is one the model was trained on (``und`` passes, as in the full stage). A
  ticket that exits with a rule hit carries the rule's topic, urgency, tags and hits exactly
  as the full stage would (``source: rules``, reason ``rule_topic:<rule>+above_auto_threshold``).
  Bundles built before rule hits could exit (``rule_hits_exit`` absent from ``cascade.json``)
  send every rule hit to the full stage, as they were tuned;
* the cheap out-of-scope score ``1 - max cosine(TF-IDF vector, pruned label centroid)`` is at
  most the cut-off, tuned like :mod:`ticket_triage.decision.ood` (flags at most
  ``cascade.ood_max_in_scope_flagged`` of in-scope validation; with known out-of-scope
  validation tickets, the best Youden J among such cuts);
* its calibrated first-stage confidence reaches the exit threshold of its predicted topic,
  certified by :func:`ticket_triage.decision.thresholds.tune_thresholds` (same strategy,
  ``target_precision``, ``confidence`` and ``min_support`` as the full stage) on the eligible
  validation tickets plus cross-fitted out-of-fold scores of the train split
  (:mod:`ticket_triage.decision.crossfit`), known out-of-scope tickets counted as errors;
  pinned labels and cold-start topics never exit, nor does any ticket when the LLM fallback is
  configured for the auto-route band.

The full stage's thresholds are tuned on the residual (the validation and out-of-fold
tickets that did not exit) and certified together with the first stage: its pooled bound is
the Clopper-Pearson lower bound of the *union* of the tickets that exit and the residual
tickets it auto-routes (``tune_thresholds(..., routed_before=(n_exit, correct_exit))``), so
the guarantee holds for everything auto-routed. Certifying each set on its own at >= p
also bounds the union (correct_1 + correct_2 >= p*n_1 + p*n_2), but it wastes the first
stage's margin above p: the residual is the harder part, and on BANKING77 topics the full
stage then auto-routed its share at 99.7%, 2.3 points of coverage below the plain model.
Those exits and residual-tuned thresholds compete with exits raised by a small shift (one for
all labels, or per label until each label's exits reach a precision) and the thresholds tuned
on all tickets for the rest (:func:`joint_exit_search`): whichever certified pair auto-routes
the most tuning tickets is kept (``max_coverage_loss`` trades some of them for cheap exits).
``policy.json`` keeps the thresholds tuned on all tickets, so a bundle loaded with the cascade
off decides exactly as one built without it; so does a bundle loaded with an LLM fallback
that covers the auto-route band (no ticket may exit then, and the residual thresholds hold
only together with the exits).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ticket_triage.config import ThresholdsConfig

CASCADE_DIR = "cascade"
STATE_FILE = "cascade.json"
CENTROIDS_FILE = "centroids.npz"


def _features_and_head(classifier: Any):
    pipe = getattr(classifier, "pipeline", None)
    if pipe is None:
        raise ValueError(f"the cascade's first stage must be a fitted tfidf_logreg, got {classifier.family}")
    return pipe.named_steps["features"], pipe.named_steps["clf"]


def _row_normalise(x):
    """A copy of the sparse rows ``x`` scaled to unit l2 norm (all-zero rows stay zero)."""
    from ticket_triage.models.lean_sparse import l2_rows

    x = x.tocsr(copy=True)
    x.data = l2_rows(x.data, x.indptr).astype(x.dtype, copy=False)
    return x


def label_centroids(x, labels: Sequence[str], order: Sequence[str], keep: int):
    """Sparse (len(order), dim) matrix: each label's mean normalised TF-IDF vector, pruned to
    its ``keep`` largest weights and normalised again (small on disk, one sparse product a batch)."""
    from scipy import sparse

    xn = _row_normalise(x)
    lab = np.asarray(labels, dtype=object)
    rows, cols, vals = [], [], []
    for j, name in enumerate(order):
        c = np.asarray(xn[lab == name].mean(axis=0)).ravel()
        if keep < np.count_nonzero(c):
            top = np.argpartition(-c, keep - 1)[:keep]
        else:
            top = np.flatnonzero(c)
        v = c[top]
        v = v / max(float(np.linalg.norm(v)), 1e-12)
        rows.append(np.full(len(top), j))
        cols.append(top)
        vals.append(v)
    return sparse.csr_matrix((np.concatenate(vals).astype(np.float32),
                              (np.concatenate(rows), np.concatenate(cols))), shape=(len(order), x.shape[1]))


@dataclass
class CheapStage:
    """The first stage of a cascade bundle (see the module docstring)."""

    classifier: Any
    topics: list[str]
    fine_to_coarse: dict[str, str] | None
    calibrator: Any
    exit_thresholds: Any       # Thresholds: only auto_route matters (the exit)
    full_thresholds: Any       # Thresholds of the full stage, tuned on the residual
    centroids: Any             # scipy CSR (labels, dim)
    ood_cutoff: float
    info: dict[str, Any] = field(default_factory=dict)
    #: tickets with rule hits may exit (see the module docstring); False for bundles built before
    rule_hits_exit: bool = True

    # -- scoring -------------------------------------------------------------------------
    def score(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(calibrated topic probabilities (n, topics), cheap out-of-scope scores (n,)):
        one TF-IDF transform serves both."""
        feats, head = _features_and_head(self.classifier)
        lean = self.classifier.lean() if hasattr(self.classifier, "lean") else None
        if lean is not None:
            x = lean.transform(list(texts))
            raw = lean.proba_from_features(x)
        else:
            x = feats.transform(list(texts))
            raw = head.predict_proba(x)
        raw = raw @ self._to_topics(head)
        ood = 1.0 - self._centroid_similarities(x).max(axis=1, initial=0.0)
        return self.calibrator.transform(raw), ood

    def _centroid_similarities(self, x: Any) -> np.ndarray:
        """(n, labels) cosine similarities of the TF-IDF rows ``x`` to the label centroids. One
        row (the service's single ticket) is a gather and a product on a dense copy of the
        centroids' used columns (~20 us; the sparse product took ~200 us, most of it scipy's
        set-up); batches take the sparse product."""
        if x.shape[0] == 1:
            dense = self._centroids_dense()
            if dense is not None:
                from ticket_triage.models.lean_sparse import l2_rows

                pos, mat = dense
                x = x.tocsr()
                cols = pos[x.indices]
                keep = cols >= 0
                if not keep.any():
                    return np.zeros((1, mat.shape[1]))
                # the row normalised exactly as _row_normalise does for a batch (l2_rows' one-row path)
                xd = l2_rows(x.data, x.indptr).astype(x.dtype, copy=False)
                return (xd[keep] @ mat[cols[keep]])[None, :]
        return (_row_normalise(x) @ self._centroids_by_column()).toarray()  # (n, labels): small

    def _centroids_dense(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(feature -> row or -1, (used features, labels) dense centroids), built once; None
        when that copy would hold more than 4M values (~16 MB): then the sparse product."""
        if "_dense_centroids" not in self.__dict__:
            c = self.centroids.tocsr()
            used = np.unique(c.indices)
            dense = None
            if len(used) * c.shape[0] <= 4_000_000:
                pos = np.full(c.shape[1], -1, dtype=np.int64)
                pos[used] = np.arange(len(used))
                dense = (pos, np.ascontiguousarray(c[:, used].T.toarray()))
            self.__dict__["_dense_centroids"] = dense
        return self.__dict__["_dense_centroids"]

    def _to_topics(self, head: Any) -> np.ndarray:
        """(head's labels, topics) matrix that sums (tag level) or picks (topic level) the head's
        probabilities into topic order; built once per head (~60 us a call when rebuilt)."""
        cached = self.__dict__.get("_topic_matrix")
        if cached is None or cached[0] is not head:
            from ticket_triage.decision.triage import topic_matrix

            labels = [str(c) for c in head.classes_]
            if self.fine_to_coarse:
                m = topic_matrix(labels, self.fine_to_coarse, self.topics)
            else:
                m = np.zeros((len(labels), len(self.topics)))
                m[[labels.index(t) for t in self.topics], np.arange(len(self.topics))] = 1.0
            cached = self.__dict__["_topic_matrix"] = (head, m)
        return cached[1]

    def _centroids_by_column(self):
        """``centroids.T`` as CSR, built once: a CSR times the CSC view ``centroids.T`` converts
        the centroids on every call (~0.8 ms a batch, most of a one-ticket decision)."""
        ct = self.__dict__.get("_centroids_t")
        if ct is None or ct.shape[::-1] != self.centroids.shape:
            ct = self.__dict__["_centroids_t"] = self.centroids.T.tocsr()
        return ct

    def exits(self, probs: np.ndarray, ood: np.ndarray, eligible: np.ndarray,
              cold_start: Sequence[str] = ()) -> np.ndarray:
        """Boolean mask of the tickets the first stage decides."""
        pred = probs.argmax(axis=1)
        cold = np.array([t in cold_start for t in self.topics], dtype=bool)
        return (np.asarray(eligible, bool) & (ood <= self.ood_cutoff) & ~cold[pred]
                & self.exit_thresholds.auto_routes(self.topics, pred, probs.max(axis=1)))

    # -- persistence ---------------------------------------------------------------------
    def save(self, bundle: Path) -> Path:
        d = Path(bundle) / CASCADE_DIR
        d.mkdir(parents=True, exist_ok=True)
        self.classifier.save(d / "classifier")
        c = self.centroids
        np.savez_compressed(d / CENTROIDS_FILE, data=c.data, indices=c.indices, indptr=c.indptr,
                            shape=np.asarray(c.shape))
        (d / STATE_FILE).write_text(json.dumps({
            "first_stage": self.classifier.family, "topics": self.topics, "fine_to_coarse": self.fine_to_coarse,
            "calibrator": self.calibrator.to_dict(), "exit_thresholds": self.exit_thresholds.to_dict(),
            "full_thresholds": self.full_thresholds.to_dict(), "ood_cutoff": self.ood_cutoff,
            "rule_hits_exit": bool(self.rule_hits_exit), "info": self.info}, indent=2, default=float))
        return d

    @classmethod
    def load(cls, bundle: str | Path) -> "CheapStage | None":
        """The bundle's first stage, or None when it was built without one."""
        from scipy import sparse

        from ticket_triage.decision.calibration import Calibrator
        from ticket_triage.decision.thresholds import Thresholds
        from ticket_triage.models import load_classifier

        d = Path(bundle) / CASCADE_DIR
        if not (d / STATE_FILE).is_file():
            return None
        st = json.loads((d / STATE_FILE).read_text())
        z = np.load(d / CENTROIDS_FILE, allow_pickle=False)
        cent = sparse.csr_matrix((z["data"], z["indices"], z["indptr"]), shape=tuple(int(v) for v in z["shape"]))
        return cls(load_classifier(d / "classifier"), list(st["topics"]), st.get("fine_to_coarse"),
                   Calibrator.from_dict(st["calibrator"]), Thresholds.from_dict(st["exit_thresholds"]),
                   Thresholds.from_dict(st["full_thresholds"]), cent, float(st["ood_cutoff"]),
                   dict(st.get("info") or {}), bool(st.get("rule_hits_exit", False)))


@dataclass
class CascadeFit:
    """What :func:`fit_cascade` hands back to ``build_bundle``: the stage (full thresholds still
    to be tuned) and which tuning tickets exit, so the full stage is tuned on the rest."""

    stage: CheapStage
    exit_val: np.ndarray     # (n_val,) validation tickets the first stage decides
    exit_oos: np.ndarray     # (n_oos,) known out-of-scope validation tickets it (wrongly) decides
    exit_train: np.ndarray | None  # (n_train,) out-of-fold train tickets it decides (None: no cross-fit)
    exit_correct: int = 0    # how many of the tuning tickets that exit (all three sets) it got right
    #: the first stage's scores of the tuning sets, to recompute the exits under other exit
    #: thresholds (:func:`joint_exit_search`): name -> (probs, ood, eligible, y_idx); y_idx -1
    #: for a known out-of-scope ticket (never right)
    scored: dict[str, tuple] = field(default_factory=dict)
    cold_start: tuple[str, ...] = ()

    @property
    def exit_n(self) -> int:
        """How many tuning tickets (validation, known out-of-scope, out-of-fold) exit."""
        return int(self.exit_val.sum()) + int(self.exit_oos.sum()) + (
            0 if self.exit_train is None else int(self.exit_train.sum()))

    def exits_with(self, exit_thresholds: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, int]:
        """(exit_val, exit_oos, exit_train, correct) had the first stage these exit thresholds."""
        import dataclasses

        if not self.scored:
            raise ValueError("this CascadeFit carries no tuning scores (scored); build it with fit_cascade")
        stage = dataclasses.replace(self.stage, exit_thresholds=exit_thresholds)
        masks: dict[str, np.ndarray] = {}
        correct = 0
        for name, (probs, ood, eligible, y) in self.scored.items():
            m = stage.exits(probs, ood, eligible, self.cold_start)
            masks[name] = m
            correct += int((m & (probs.argmax(axis=1) == y)).sum())
        return (masks["val"], masks.get("oos", np.zeros(0, bool)), masks.get("train"), correct)


#: how far the joint search raises the first stage's exit thresholds (0 = as certified)
EXIT_SHIFTS = (0.0, 0.002, 0.005, 0.01, 0.015, 0.02, 0.03, 0.04, 0.05, 0.06, 0.075, 0.09, 0.1, 0.125,
               0.15, 0.2, 0.3)


def shifted(th: Any, delta: float | Mapping[str, float]) -> Any:
    """A copy of exit thresholds ``th`` with every auto-route threshold raised by ``delta``
    (one number, or one per label: labels it does not name stay as they are)."""
    from ticket_triage.decision.thresholds import Thresholds

    per = dict(delta) if isinstance(delta, Mapping) else None
    auto = {k: (None if v is None else float(v) + (per.get(k, 0.0) if per is not None else float(delta)))
            for k, v in th.auto_route.items()}
    return Thresholds(list(th.labels), auto, dict(th.review), dict(th.pinned),
                      {**th.info, "exit_shift": per if per is not None else delta})


#: the per-label exit precisions the joint search tries (:func:`per_label_shifts`)
LABEL_PRECISIONS = (0.99, 0.992, 0.994, 0.995, 0.996, 0.997, 0.998, 0.999, 1.0)


def per_label_shifts(cfit: CascadeFit, precision: float,
                     shifts: Sequence[float] | None = None) -> dict[str, float]:
    """Per label, the smallest shift of ``shifts`` at which the first stage's exits predicted as
    that label are at least ``precision`` right on the tuning tickets (the largest shift when
    none is): labels whose exits are precise keep them, where one uniform shift would raise
    every label as far as the worst one needs."""
    import dataclasses

    stage = cfit.stage
    topics = list(stage.topics)
    steps = np.asarray(EXIT_SHIFTS if shifts is None else shifts, dtype=float)
    scored = list(cfit.scored.values())  # (probs, ood, eligible, y) per tuning set
    preds = [probs.argmax(axis=1) for probs, _, _, _ in scored]
    rights = [p == np.asarray(y) for p, (_, _, _, y) in zip(preds, scored)]
    out: dict[str, float] = {}
    for k, t in enumerate(topics):
        out[t] = float(steps[-1])
        for d in steps:
            trial = dataclasses.replace(stage, exit_thresholds=shifted(stage.exit_thresholds, {t: float(d)}))
            n = right = 0
            for (probs, ood, eligible, _), p, r in zip(scored, preds, rights):
                ex = trial.exits(probs, ood, eligible, cfit.cold_start) & (p == k)
                n, right = n + int(ex.sum()), right + int(r[ex].sum())
            if n == 0 or right / n >= precision:
                out[t] = float(d)
                break
    return out


def choose(rows: Sequence[Mapping[str, Any]], max_coverage_loss: float, n_tuning: int) -> Mapping[str, Any]:
    """The joint search's pick among its candidate ``rows``: of the certified ones (the first
    row when none is) that auto-route at most ``max_coverage_loss`` (a share of the
    ``n_tuning`` tuning tickets) fewer than the best of them, the one with the most cheap
    exits, then the most auto-routed."""
    ok_rows = [r for r in rows if r["certified"]] or list(rows[:1])
    floor = max(r["auto_routed"] for r in ok_rows) - float(max_coverage_loss) * n_tuning
    return max((r for r in ok_rows if r["auto_routed"] >= floor),
               key=lambda r: (r["exits"], r["auto_routed"], r["candidate"] == "residual"))


def joint_exit_search(cfit: CascadeFit, residual_tuned: Any, all_tuned: Any, conf: np.ndarray,
                      pred_idx: np.ndarray, y_idx: np.ndarray, labels: Sequence[str],
                      residual_of: Any, cfg: Mapping[str, Any] | None = None,
                      shifts: Sequence[float] = EXIT_SHIFTS,
                      max_coverage_loss: float = 0.0,
                      label_precisions: Sequence[float] = LABEL_PRECISIONS) -> tuple[Any, Any, dict[str, Any]]:
    """Exit thresholds and full-stage thresholds chosen together: (exit, full, report).

    Candidates: the certified exits with the thresholds tuned on their residual
    (``residual_tuned``, as before), and for each shift in ``shifts`` the exits raised by it
    with the thresholds tuned on all tickets (``all_tuned``) for the rest. A raised exit keeps
    fewer, surer tickets in the first stage; the thresholds tuned on all tickets then route
    every residual ticket the plain model routes, so such a candidate's union covers at least
    what the plain model covers. Then, for each precision in ``label_precisions``, the exits
    raised per label (:func:`per_label_shifts`: each label as little as its own exits need to
    be that precise) with the thresholds tuned on all tickets. A candidate counts only when
    the union of its exits and the residual tickets it routes has a Clopper-Pearson lower bound >= ``target_precision``
    (``min_support`` tickets at least) on the tuning tickets (``conf`` / ``pred_idx`` /
    ``y_idx``: the full model's, in the order ``residual_of(exit_val, exit_oos, exit_train)``
    indexes). Among the certified candidates that auto-route at most ``max_coverage_loss``
    (a share of the tuning tickets) fewer than the best of them, the one with the most cheap
    exits wins (then the most auto-routed: :func:`choose`); the report keeps every candidate and the
    number of tuning tickets (``n_tuning``), so :func:`trade_offs` can say what each value of
    ``max_coverage_loss`` would pick. With 0, coverage comes first: on BANKING77 topics
    that raised the exits by 0.1 and matched the plain model's coverage, at the price of ~40%
    of the cascade's throughput (benchmarks/README.md)."""
    from ticket_triage.decision.thresholds import Thresholds, _cfg, cp_lower

    c = _cfg(cfg)
    target, lvl, ms = float(c["target_precision"]), float(c["confidence"]), int(c["min_support"])
    conf = np.asarray(conf, dtype=float)
    pred_idx = np.asarray(pred_idx)
    ok = pred_idx == np.asarray(y_idx)
    labels = list(labels)

    def routed_by(th: Any) -> np.ndarray:
        return th.auto_routes(labels, pred_idx, conf)

    def row(name: str, delta: float, full_routed: np.ndarray, exits: tuple) -> dict[str, Any]:
        ev, eo, et, x0 = exits
        n0 = int(ev.sum()) + int(eo.sum()) + (0 if et is None else int(et.sum()))
        res = residual_of(ev, eo, et)
        r = full_routed & res
        n, x = int(r.sum()), int((r & ok).sum())
        lb = float(cp_lower(x0 + x, n0 + n, lvl)) if n0 + n else 0.0
        return {"candidate": name, "exit_shift": delta, "exits": n0, "exits_correct": x0, "full_routed": n,
                "full_correct": x, "auto_routed": n0 + n, "union_precision_lower": round(lb, 6),
                "certified": bool(n0 + n >= ms and lb >= target)}

    base_exits = (cfit.exit_val, cfit.exit_oos, cfit.exit_train, cfit.exit_correct)
    rows = [row("residual", 0.0, routed_by(residual_tuned), base_exits)]
    plain_routed = routed_by(all_tuned)
    for delta in shifts:
        rows.append(row("all_tickets", float(delta), plain_routed, cfit.exits_with(shifted(cfit.stage.exit_thresholds, delta))))
    seen: list[dict[str, float]] = []
    for q in label_precisions:
        per_label = per_label_shifts(cfit, q, shifts)
        if per_label in seen:
            continue
        seen.append(per_label)
        rows.append({**row("per_label", max(per_label.values()), plain_routed,
                           cfit.exits_with(shifted(cfit.stage.exit_thresholds, per_label))),
                     "label_precision": q, "label_shifts": per_label})
    best = choose(rows, max_coverage_loss, len(conf))
    if best["candidate"] == "residual":
        exit_th, full = cfit.stage.exit_thresholds, residual_tuned
        full.info["tuned_on"] = ("cascade residual (tickets the first stage does not decide), certified "
                                 "with the first stage's exits")
    else:
        per_label = best.get("label_shifts")
        exit_th = shifted(cfit.stage.exit_thresholds, per_label if per_label is not None else best["exit_shift"])
        full = Thresholds(list(all_tuned.labels), dict(all_tuned.auto_route), dict(all_tuned.review),
                          dict(all_tuned.pinned), dict(all_tuned.info))
        raised = (f"raised per label (up to {best['exit_shift']:g})" if per_label is not None
                  else f"raised by {best['exit_shift']:g}")
        full.info["tuned_on"] = (f"all tuning tickets (the thresholds without the cascade), with the exits "
                                 f"{raised}; certified together with them")
    report = {"chosen": {k: best[k] for k in ("candidate", "exit_shift")}, "chosen_row": best,
              "max_coverage_loss": float(max_coverage_loss), "n_tuning": int(len(conf)), "candidates": rows}
    full.info["joint_exit_search"] = report
    return exit_th, full, report


def trade_offs(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The coverage / speed frontier of a :func:`joint_exit_search` report: the certified
    candidates that no other certified candidate beats on both cheap exits and auto-routed
    tickets, most exits first. Each with its shares of the report's tuning tickets that exit
    (speed) and that are auto-routed (coverage), and the smallest ``max_coverage_loss`` that
    chooses it (the search keeps the most exits among the candidates within that share of
    the best coverage). Empty for a report without ``n_tuning`` (bundles built before it)."""
    import math

    n = int(report.get("n_tuning") or 0)
    ok = [r for r in report.get("candidates", []) if r.get("certified")]
    if n <= 0 or not ok:
        return []
    best = max(r["auto_routed"] for r in ok)
    front: list[dict[str, Any]] = []
    for r in sorted(ok, key=lambda r: (-r["exits"], -r["auto_routed"])):
        if front and r["auto_routed"] <= front[-1]["auto_routed"]:
            continue
        front.append(r)
    return [{"candidate": r["candidate"], "exit_shift": r["exit_shift"], "exits": r["exits"],
             "auto_routed": r["auto_routed"], "exit_share": r["exits"] / n, "auto_share": r["auto_routed"] / n,
             "union_precision_lower": r["union_precision_lower"],
             # rounded up, so that the value given chooses it despite float rounding
             "max_coverage_loss": math.ceil((best - r["auto_routed"]) / n * 1e4) / 1e4} for r in front]


def search_report(bundle: str | Path) -> dict[str, Any] | None:
    """The :func:`joint_exit_search` report a bundle's first stage was chosen by (read from
    ``cascade/cascade.json`` without loading the stage), or None for a bundle without a cascade."""
    state = Path(bundle) / CASCADE_DIR / STATE_FILE
    if not state.is_file():
        return None
    return json.loads(state.read_text()).get("full_thresholds", {}).get("info", {}).get("joint_exit_search")


def _first_stage(classifier: Any, train_rows, label_level: str, cfg: Any, seed: int):
    from ticket_triage.decision.crossfit import label_of
    from ticket_triage.models.tfidf_logreg import TfidfLogReg

    if cfg.reuse_member:
        for m in getattr(classifier, "members", []) or []:
            if m.family == "tfidf_logreg":
                return m, "ensemble member (fitted with the classifier)"
    if classifier.family == "tfidf_logreg":
        return classifier, "the classifier itself"
    clf = TfidfLogReg(**{"seed": seed, **dict(cfg.params or {})})
    clf.fit([r["text"] for r in train_rows], [label_of(r, label_level) for r in train_rows], progress=False)
    return clf, "fitted on the train split"


def rule_gate(outcome: Any, topics: Sequence[str], rule_hits_exit: bool = True) -> int:
    """What a ticket's rule outcome allows the first stage: ``-1`` exit as usual (no hit, or
    hits that neither pin the band nor set the topic), ``-2`` never (a pinned band; any hit
    when ``rule_hits_exit`` is off), else the index in ``topics`` of the topic a rule sets:
    the ticket may exit only with that prediction."""
    if not outcome.hits:
        return -1
    if not rule_hits_exit or outcome.pinned_band:
        return -2
    if outcome.topic is None:
        return -1
    return topics.index(outcome.topic) if outcome.topic in topics else -2


def rule_allows(gate: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Per ticket: may it exit with predicted topic index ``pred`` under its :func:`rule_gate`?"""
    gate = np.asarray(gate)
    return (gate == -1) | (gate == np.asarray(pred))


def _eligible(texts: Sequence[str], langs: Sequence[str | None] | None, rules: Any,
              languages: Sequence[str], topics: Sequence[str], pred: np.ndarray) -> np.ndarray:
    """The tuning tickets the first stage may decide, with its predictions ``pred`` (topic
    indices): the serving-time conditions of :func:`cheap_decisions`."""
    out = np.array([bool(t.strip()) for t in texts])
    gate = np.full(len(texts), -1)
    for i, t in enumerate(texts):
        if not out[i]:
            continue
        if rules is not None:
            gate[i] = rule_gate(rules.apply(t), topics)
        if langs is not None and languages and langs[i] and langs[i] not in languages and langs[i] != "und":
            out[i] = False
    return out & rule_allows(gate, pred)


def fit_cascade(classifier: Any, train_rows: Sequence[Mapping[str, Any]], val_rows: Sequence[Mapping[str, Any]],
                topics: Sequence[str], fine_to_coarse: Mapping[str, str] | None, label_level: str,
                th_cfg: Mapping[str, Any], cfg: Any, *, rules: Any = None, languages: Sequence[str] = (),
                oos_texts: Sequence[str] | None = None, cold_start: Sequence[str] = (), seed: int = 42,
                progress: bool = False) -> CascadeFit:
    """Fit the first stage at bundle-building time (see the module docstring): calibrate it on
    validation, tune its scope cut-off and certify its exit thresholds on the eligible
    validation tickets plus cross-fitted out-of-fold train scores."""
    from ticket_triage.decision.calibration import fit_calibrator
    from ticket_triage.decision.crossfit import cross_fit_topic_scores, max_train_chars, label_of
    from ticket_triage.decision.ood import tune_cutoff
    from ticket_triage.decision.thresholds import Thresholds, tune_thresholds
    from ticket_triage.decision.triage import Policy, _raw_topic_proba

    topics = list(topics)
    cheap, origin = _first_stage(classifier, train_rows, label_level, cfg, seed)
    stub = Policy(family=cheap.family, label_level=label_level, topics=topics,
                  fine_to_coarse=dict(fine_to_coarse) if fine_to_coarse else None,
                  calibrator={"method": "none"}, thresholds={}, ood=None, languages=[])
    val_texts = [r["text"] for r in val_rows]
    y_val = np.array([topics.index(r["topic"]) if r["topic"] in topics else -1 for r in val_rows])
    keep = y_val >= 0
    raw = _raw_topic_proba(cheap, stub, val_texts)
    th = ThresholdsConfig.from_dict(th_cfg)
    calibrator = fit_calibrator(raw[keep], y_val[keep], method=th.calibration)
    feats, _ = _features_and_head(cheap)
    centroids = label_centroids(feats.transform([r["text"] for r in train_rows]),
                                [label_of(r, label_level) for r in train_rows], list(cheap.labels),
                                int(cfg.centroid_features))
    placeholder = Thresholds.fixed(topics, 1.0, 0.0)
    stage = CheapStage(cheap, topics, stub.fine_to_coarse, calibrator, placeholder, placeholder, centroids, 0.0)
    val_probs, val_ood = stage.score(val_texts)
    oos_probs = oos_ood = None
    if oos_texts:
        oos_probs, oos_ood = stage.score(list(oos_texts))
    cut = tune_cutoff(val_ood[keep], oos_ood, float(cfg.ood_max_in_scope_flagged))
    stage.ood_cutoff = float(cut.cutoff)

    # the tuning set: eligible validation tickets the scope check lets through (+ known
    # out-of-scope ones it misses, as errors) and the out-of-fold train scores
    el_val = (_eligible(val_texts, [r.get("language") for r in val_rows], rules, languages, topics,
                        val_probs.argmax(axis=1)) & (val_ood <= stage.ood_cutoff))
    conf, pred, y = val_probs.max(axis=1)[el_val], val_probs.argmax(axis=1)[el_val], y_val[el_val]
    el_oos = None
    if oos_texts:
        el_oos = (_eligible(list(oos_texts), None, rules, languages, topics, oos_probs.argmax(axis=1))
                  & (oos_ood <= stage.ood_cutoff))
        conf = np.r_[conf, oos_probs.max(axis=1)[el_oos]]
        pred = np.r_[pred, oos_probs.argmax(axis=1)[el_oos]]
        y = np.r_[y, np.full(int(el_oos.sum()), -1)]
    cf = cross_fit_topic_scores(
        cheap, train_rows, label_level, topics, val_texts, y_val, lambda m, t: _raw_topic_proba(m, stub, t),
        folds=int(th.cross_fit_folds or 0) if th.tune else 0,
        calibration=th.calibration, seed=seed, progress=progress,
        known_oos=bool(oos_texts),
        max_train_chars=max_train_chars(th))
    el_train = None
    if cf.probs is not None:
        # out-of-fold rows are not filtered by the scope check (its centroids saw them);
        # rule hits and languages are, as at serving time
        el_train = _eligible([r["text"] for r in train_rows], [r.get("language") for r in train_rows],
                             rules, languages, topics, cf.probs.argmax(axis=1))
        conf = np.r_[conf, cf.probs.max(axis=1)[el_train]]
        pred = np.r_[pred, cf.probs.argmax(axis=1)[el_train]]
        y = np.r_[y, cf.y_idx[el_train]]
    exit_cfg = {k: v for k, v in dict(th_cfg).items() if k != "cascade"}
    exit_cfg.update({"tune": True, "reserved_review_share": 0.0})
    if len(conf) == 0:
        stage.exit_thresholds = Thresholds(topics, {t: None for t in topics}, {t: 0.0 for t in topics},
                                           {}, {"strategy": "none", "why": "no eligible tuning tickets"})
    else:
        stage.exit_thresholds = tune_thresholds(conf, pred, y, topics, exit_cfg)
    # the tuning sets as the first stage scored them; a known out-of-scope ticket (y -1) and a
    # label the model does not know are never correct
    scored = {"val": (val_probs, val_ood, el_val, y_val)}
    if oos_texts:
        scored["oos"] = (oos_probs, oos_ood, el_oos, np.full(len(oos_texts), -1))
    if cf.probs is not None:
        scored["train"] = (cf.probs, np.zeros(len(train_rows)), el_train, cf.y_idx)
    fit = CascadeFit(stage, np.zeros(0, bool), np.zeros(0, bool), None, 0, scored, tuple(cold_start))
    exit_val, exit_oos, exit_train, exit_correct = fit.exits_with(stage.exit_thresholds)
    stage.info = {
        "first_stage": origin, "ood_cutoff": cut.to_dict(), **cf.info,
        "exit_share_validation": float(exit_val[keep].mean()) if keep.any() else 0.0,
        "exit_share_train_oof": None if exit_train is None else float(exit_train.mean()),
        "exit_precision_lower": stage.exit_thresholds.info.get("pooled_precision_lower"),
        "n_exit_tuning": int(len(conf)),
    }
    fit.exit_val, fit.exit_oos, fit.exit_train, fit.exit_correct = exit_val, exit_oos, exit_train, exit_correct
    return fit


def cheap_decisions(triage: Any, tickets: Sequence[Any], texts: Sequence[str],
                    language_prior: str | None = None, seen: dict[int, tuple] | None = None) -> dict[int, Any]:
    """First-stage decisions, by position in ``tickets``, for the tickets that exit; the
    caller sends every other ticket to the full stage. Languages are detected as the full
    stage does (``language_prior``: the prior for tickets without one). ``seen``, when given,
    receives ``{position: (rule outcome, language or None)}`` for every ticket looked at, so
    the full stage does not match the rules or detect the language twice."""
    from ticket_triage.decision.urgency import resolve_urgency
    from ticket_triage.schema import Decision
    from ticket_triage.text.language import detect_language

    stage: CheapStage = triage.cascade  # never set with an LLM on the auto-route band (Triage.__init__)
    cand = [i for i, x in enumerate(texts) if x.strip()]
    if not cand:
        return {}
    langs: dict[int, str] = {}
    outcomes: dict[int, Any] = {}
    gates: dict[int, int] = {}
    for i in cand:
        outcome = triage.rules.apply(texts[i])
        gate = rule_gate(outcome, stage.topics, stage.rule_hits_exit)
        if gate == -2:
            if seen is not None:
                seen[i] = (outcome, None)
            continue
        lang = tickets[i].language or detect_language(texts[i], language_prior)
        langs[i] = lang
        if seen is not None:
            seen[i] = (outcome, lang)
        if triage.policy.languages and lang not in triage.policy.languages and lang != "und":
            continue
        outcomes[i], gates[i] = outcome, gate
    if not gates:
        return {}
    sub = list(gates)
    probs, ood = stage.score([texts[i] for i in sub])
    allowed = rule_allows(np.array([gates[i] for i in sub]), probs.argmax(axis=1))
    mask = stage.exits(probs, ood, allowed, triage.policy.cold_start_topics)
    out_idx = [sub[k] for k in np.flatnonzero(mask)]
    if not out_idx:
        return {}
    rows = np.flatnonzero(mask)
    urg: list[str | None] = [None] * len(out_idx)
    tags: list[list[str]] = [[] for _ in out_idx]
    if triage.urgency_model is not None:
        urg = list(triage.urgency_model.predict([texts[i] for i in out_idx]))
    if triage.secondary_tagger is not None:
        tags = [list(t) for t in triage.secondary_tagger.predict([texts[i] for i in out_idx])]
    out: dict[int, Any] = {}
    for n, (i, r) in enumerate(zip(out_idx, rows)):
        p = probs[r]
        order = np.argsort(-p)
        topic = stage.topics[int(order[0])]
        t = tickets[i]
        rules = outcomes[i]
        explanation: dict[str, Any] = {"stage": "cheap", "cheap_out_of_scope_score": round(float(ood[r]), 4)}
        if rules.hits:  # as the full stage records them
            explanation["rules"] = [f"{h.rule_id}: '{h.text}'" for h in rules.hits]
        out[i] = Decision(
            topic=topic, confidence=round(float(p[order[0]]), 4), band="auto_route",
            urgency=resolve_urgency(rules.urgency, urg[n] or t.urgency, triage.taxonomy.urgency_for(topic)),
            reason=f"rule_topic:{rules.topic_rule}+above_auto_threshold" if rules.topic else "above_auto_threshold",
            source="rules" if rules.topic else "model", ticket_id=t.id or None,
            alternatives=[{"topic": stage.topics[j], "p": round(float(p[j]), 4)} for j in order[:3]],
            secondary_tags=list(dict.fromkeys([*rules.secondary_tags, *tags[n]])),
            rule_hits=[{"rule": h.rule_id, "kind": h.kind, "match": h.text} for h in rules.hits],
            out_of_scope_score=0.0, language=langs.get(i), explanation=explanation,
            model_version=triage.model_version, taxonomy_version=triage.policy.taxonomy_version)
    return out
