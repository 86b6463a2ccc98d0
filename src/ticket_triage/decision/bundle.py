"""Building a model bundle at training time: :func:`build_bundle` is the training-time twin of
:class:`~ticket_triage.decision.triage.Triage`. It fits the policy (calibration, per-label
thresholds, out-of-scope cut-off, nearest-neighbour index, urgency and secondary-tag models) on
the validation split (plus cross-fitted out-of-fold scores) and writes the bundle that
:meth:`Triage.load` reads: classifier, ``policy.json``, ``taxonomy.yaml``, ``rules.yaml`` and
``clean.json`` (the cleaning options, applied again at serving time).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import yaml

from ticket_triage.config import ThresholdsConfig
from ticket_triage.decision.triage import Neighbours, POLICY_FILE, Policy, _raw_topic_proba
from ticket_triage.taxonomy import Taxonomy, parse_taxonomy

log = logging.getLogger(__name__)


def build_bundle(classifier: Any, train_rows: Sequence[Mapping[str, Any]], val_rows: Sequence[Mapping[str, Any]],
                 params: Mapping[str, Any], out_dir: str | Path, *, label_level: str = "topic",
                 model_version: str = "dev", max_neighbours: int = 5000,
                 oos_texts: Sequence[str] | None = None, progress: bool = False) -> Path:
    """Fit the decision policy on validation and write a loadable bundle to ``out_dir``.

    With ``thresholds.cross_fit_folds`` >= 2 and a family that is cheap to refit, the
    thresholds are tuned on the validation scores plus calibrated out-of-fold scores of the
    whole train split (:mod:`ticket_triage.decision.crossfit`).

    ``oos_texts``: validation tickets known to fit no topic (e.g. CLINC150's ``oos_val``); when
    given, the out-of-scope cut-off is the best separating one among those that flag at most
    ``thresholds.ood_max_in_scope_flagged`` of the in-scope validation tickets."""
    from collections import Counter

    from ticket_triage.decision.calibration import fit_calibrator
    from ticket_triage.decision.crossfit import cross_fit_topic_scores, max_train_chars
    from ticket_triage.decision.crossfit import label_of
    from ticket_triage.decision.ood import OODScorer, pick_method
    from ticket_triage.text.clean import CLEANING_VERSION
    from ticket_triage.decision.thresholds import tune_thresholds

    from ticket_triage.config import CascadeConfig, sections

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    missed_oos, n_missed_oos = None, 0
    cfg = sections(params)
    th = cfg.thresholds
    taxonomy = parse_taxonomy(params["taxonomy"], "params.yaml:taxonomy")
    th_cfg = dict(params.get("thresholds") or {})  # what decision.thresholds tunes with (its DEFAULTS: th's)
    train_topics = Counter(r["topic"] for r in train_rows)
    topics = sorted(train_topics)
    fine_to_coarse = None
    if label_level == "tag":
        fine_to_coarse = {r["label_fine"]: r["topic"] for r in train_rows}
    classifier.save(out / "classifier")
    (out / "taxonomy.yaml").write_text(yaml.safe_dump(taxonomy.to_dict(), sort_keys=False, allow_unicode=True))
    (out / "rules.yaml").write_text(yaml.safe_dump(dict(params.get("rules") or {"rules": []}), sort_keys=False,
                                                   allow_unicode=True))
    from ticket_triage.text.clean import CleanConfig

    (out / "clean.json").write_text(json.dumps(CleanConfig.from_dict(params.get("clean")).to_dict()))

    # uncalibrated topic probabilities on validation
    stub = Policy(family=classifier.family, label_level=label_level, topics=topics, fine_to_coarse=fine_to_coarse,
                  calibrator={"method": "none"}, thresholds={}, ood=None, languages=[])
    val_texts = [r["text"] for r in val_rows]
    log.info("bundle: calibrating on %d validation tickets", len(val_texts))
    raw = _raw_topic_proba(classifier, stub, val_texts)
    y_val = np.array([topics.index(r["topic"]) if r["topic"] in topics else -1 for r in val_rows])
    keep = y_val >= 0
    calibrator = fit_calibrator(raw[keep], y_val[keep], method=th.calibration)
    cal = calibrator.transform(raw)
    conf = cal.max(axis=1)
    pred = cal.argmax(axis=1)

    # out-of-scope scorer + neighbours on embeddings when the family has them
    rng = np.random.default_rng(cfg.seed)
    sample = np.arange(len(train_rows))
    if len(sample) > max_neighbours:
        sample = np.sort(rng.choice(sample, max_neighbours, replace=False))
    log.info("bundle: out-of-scope scorer and neighbours on %d training tickets", len(sample))
    train_emb = classifier.embed([train_rows[i]["text"] for i in sample])
    ood_dict = None
    if train_emb is not None:
        Neighbours(train_emb, [train_rows[i]["text"] for i in sample],
                   [train_rows[i]["topic"] for i in sample]).save(out)
        val_emb = classifier.embed(val_texts)
        oos_emb = classifier.embed(list(oos_texts)) if oos_texts else None
        # kNN or Mahalanobis (thresholds.ood_method; auto: the better AUROC on known out-of-scope
        # validation tickets, kNN without them)
        fit_labels = [label_of(train_rows[i], label_level) for i in sample]
        method, method_auroc = str(th.ood_method), {}
        if method == "auto":
            method, method_auroc = pick_method(train_emb, fit_labels, val_emb[keep], oos_emb,
                                               k=int(th.ood_k), max_train=len(sample) + 1)
        scorer = OODScorer(k=int(th.ood_k), max_train=len(sample) + 1,
                           method=method).fit(train_emb, fit_labels)
        oos_scores = None
        if oos_texts:
            oos_raw = _raw_topic_proba(classifier, stub, oos_texts)
            oos_scores = scorer.score(oos_emb, calibrator.transform(oos_raw))
        in_scores = scorer.score(val_emb[keep], cal[keep])
        ood_cut = scorer.tune(in_scores, oos_scores,
                              max_in_scope_flagged=float(th.ood_max_in_scope_flagged))
        ood_dict = scorer.to_dict()
        if method_auroc:
            ood_dict["method_auroc"] = method_auroc
        ood_share = float(ood_cut.in_scope_flagged)
        # thresholds are tuned on what reaches them: tickets the out-of-scope cut-off lets through,
        # including the known out-of-scope ones it misses (counted as errors: y = -1)
        passed = np.ones(len(val_rows), dtype=bool)
        passed[np.flatnonzero(keep)] = in_scores <= scorer.cutoff
        tune_mask = keep & passed
        tune_conf, tune_pred, tune_y = conf[tune_mask], pred[tune_mask], y_val[tune_mask]
        if oos_texts:
            missed = oos_scores <= scorer.cutoff
            missed_oos, n_missed_oos = missed, int(missed.sum())
            oos_cal = calibrator.transform(oos_raw)[missed]
            tune_conf = np.r_[tune_conf, oos_cal.max(axis=1)]
            tune_pred = np.r_[tune_pred, oos_cal.argmax(axis=1)]
            tune_y = np.r_[tune_y, np.full(int(missed.sum()), -1)]
    else:
        tune_conf, tune_pred, tune_y = conf[keep], pred[keep], y_val[keep]
        tune_mask = keep
        ood_share = 0.0
    # out-of-fold scores of the train split join the tuning set (ticket_triage.decision.crossfit); they
    # are not filtered by the out-of-scope cut-off, which can only make the bound stricter
    cf = cross_fit_topic_scores(
        classifier, train_rows, label_level, topics, val_texts, y_val,
        lambda m, texts: _raw_topic_proba(m, stub, texts),
        folds=int(th.cross_fit_folds or 0) if th.tune else 0,
        calibration=th.calibration, seed=cfg.seed,
        progress=progress, known_oos=bool(oos_texts),
        max_train_chars=max_train_chars(th), fine_tuned=bool(th.cross_fit_fine_tuned))
    if cf.probs is not None:
        tune_conf = np.r_[tune_conf, cf.probs.max(axis=1)]
        tune_pred = np.r_[tune_pred, cf.probs.argmax(axis=1)]
        tune_y = np.r_[tune_y, cf.y_idx]
    log.info("bundle: tuning thresholds on %d scores", len(tune_conf))
    th_cfg["reserved_review_share"], reserved_info = _reserved_review_share(
        th, ood_share, val_texts, params, taxonomy)
    min_lang = max(5, int(0.01 * len(train_rows)))
    languages = sorted(lang for lang, c in Counter(r.get("language") or "und" for r in train_rows).items()
                       if c >= min_lang and lang != "und")
    # the cascade's first stage (decision.cascade): which tuning tickets it decides, so the
    # full stage's thresholds are tuned on the rest; built before tune_mask is consumed
    cold = [t for t in taxonomy.topic_ids if train_topics.get(t, 0) < int(th.cold_start_min_examples)]
    cascade_cfg = CascadeConfig.from_dict(th.cascade)
    residual = None
    if (out / "cascade").exists():
        import shutil

        shutil.rmtree(out / "cascade")  # a stale first stage from an earlier build of this directory
    if cascade_cfg.enabled:
        from ticket_triage.decision.cascade import fit_cascade
        from ticket_triage.decision.rules import RuleSet

        rules = RuleSet.from_config(dict(params.get("rules") or {"rules": []}), taxonomy=taxonomy)
        cfit = fit_cascade(classifier, train_rows, val_rows, topics, fine_to_coarse, label_level, th_cfg,
                           cascade_cfg, rules=rules, languages=languages, oos_texts=oos_texts, cold_start=cold,
                           seed=cfg.seed, progress=progress)

        def residual_of(exit_val, exit_oos, exit_train):  # tuning tickets (tune_* order) that stay
            stay = [~exit_val[tune_mask]]
            if n_missed_oos:
                stay.append(~exit_oos[missed_oos])
            if cf.probs is not None:
                stay.append(~exit_train if exit_train is not None else np.ones(len(cf.y_idx), bool))
            return np.concatenate(stay)

        residual = residual_of(cfit.exit_val, cfit.exit_oos, cfit.exit_train)
    thresholds = tune_thresholds(tune_conf, tune_pred, tune_y, topics, th_cfg)
    thresholds.info.update(cf.info)
    thresholds.info["reserved_review"] = reserved_info
    (out / "threshold_report.json").write_text(json.dumps(
        thresholds.report(tune_conf, tune_pred, tune_y), indent=2, default=str))
    if residual is not None:
        # certified together with the first stage: the pooled bound is on the union of its exits
        # and the residual tickets this stage auto-routes (decision.cascade)
        from ticket_triage.decision.cascade import joint_exit_search, trade_offs

        full = tune_thresholds(tune_conf[residual], tune_pred[residual], tune_y[residual], topics, th_cfg,
                               routed_before=(cfit.exit_n, cfit.exit_correct))
        full.info.update(cf.info)
        full.info["reserved_review"] = reserved_info
        # or raised exits with the thresholds tuned on all tickets for the rest, whichever certified
        # pair routes the most tuning tickets (decision.cascade.joint_exit_search)
        exit_th, full, report = joint_exit_search(cfit, full, thresholds, tune_conf, tune_pred, tune_y, topics,
                                                  residual_of, th_cfg,
                                                  max_coverage_loss=cascade_cfg.max_coverage_loss)
        chosen = report["chosen_row"]
        log.info("bundle: cascade: exits raised by %s%g with the thresholds tuned on %s: %d exits + %d routed "
                 "by the full stage of %d tuning tickets (union lower bound %.4f)",
                 "up to " if chosen["candidate"] == "per_label" else "", chosen["exit_shift"],
                 "the residual" if chosen["candidate"] == "residual" else "all tickets", chosen["exits"],
                 chosen["full_routed"], len(tune_conf), chosen["union_precision_lower"])
        offs = trade_offs(report)
        if len(offs) > 1:  # what the one knob would buy (the choice is plotted by the train stage)
            log.info("bundle: cascade: certified choices, cheap exits / auto-routed of the tuning tickets "
                     "(thresholds.cascade.max_coverage_loss that picks each): %s", "; ".join(
                         f"{o['exit_share']:.1%} / {o['auto_share']:.1%} ({o['max_coverage_loss']:g})" for o in offs))
        cfit.stage.exit_thresholds = exit_th
        cfit.stage.info["joint_exit_search"] = report["chosen"]
        cfit.stage.full_thresholds = full
        cfit.stage.save(out)
    _fit_side_models(train_rows, cfg, out)
    lang_counts = Counter(r.get("language") for r in train_rows if r.get("language") not in (None, "", "und"))
    language_prior = cfg.data.language or (
        lang_counts.most_common(1)[0][0] if lang_counts else None)
    policy = Policy(
        family=classifier.family, label_level=label_level, topics=topics, fine_to_coarse=fine_to_coarse,
        calibrator=calibrator.to_dict(), thresholds=thresholds.to_dict(), ood=ood_dict, languages=languages,
        cold_start_topics=cold, language_prior=language_prior,
        model_version=model_version, taxonomy_version=f"{taxonomy.name}@{taxonomy.version}",
        cleaning_version=CLEANING_VERSION, dataset=str(cfg.data.name or ""))
    (out / POLICY_FILE).write_text(json.dumps(policy.to_dict(), indent=2))
    return out


def _reserved_review_share(th: Mapping[str, Any] | ThresholdsConfig, ood_share: float, val_texts: Sequence[str],
                           params: Mapping[str, Any], taxonomy: Taxonomy) -> tuple[float, dict[str, Any]]:
    """The review share the confidence cut must leave to the other ways into the review band.

    ``thresholds.reserved_review_share: auto`` (the default): the share of validation tickets
    the out-of-scope cut-off flags plus the share a rule pins to review, so that the whole
    review band, not only its low-confidence part, stays within ``review_capacity`` a day.
    A number is taken as it is."""
    from ticket_triage.decision.rules import RuleSet

    raw = ThresholdsConfig.from_dict(th).reserved_review_share
    if raw is None or str(raw).lower() != "auto":
        try:
            return float(raw or 0.0), {"mode": "fixed", "share": float(raw or 0.0)}
        except (TypeError, ValueError):
            raise ValueError(f"thresholds.reserved_review_share must be a number or 'auto', got {raw!r}") from None
    rules = RuleSet.from_config(dict(params.get("rules") or {"rules": []}), taxonomy=taxonomy)
    texts = [t for t in val_texts if t.strip()]
    pinned = sum(rules.apply(t).pinned_band == "review" for t in texts) / max(len(texts), 1)
    share = float(ood_share) + float(pinned)
    return share, {"mode": "auto", "share": share, "out_of_scope": float(ood_share), "rule_pinned": float(pinned)}


def _fit_side_models(train_rows: Sequence[Mapping[str, Any]], cfg: Any, out: Path) -> None:
    """Urgency classifier where the history carries urgency; secondary-tag tagger where tickets
    carry several tags (``cfg``: the :class:`~ticket_triage.config.ProjectConfig`). Both are
    optional parts of the bundle."""
    log.info("bundle: urgency and secondary-tag models on %d training tickets", len(train_rows))
    texts = [r["text"] for r in train_rows]
    urg = [r.get("urgency") for r in train_rows]
    have = [i for i, u in enumerate(urg) if u in ("P0", "P1", "P2", "P3")]
    if len(have) >= 0.5 * len(train_rows) and len({urg[i] for i in have}) >= 2:
        from ticket_triage.decision.urgency import UrgencyModel

        UrgencyModel(min_confidence=float(cfg.train.urgency_min_confidence),
                     seed=cfg.seed).fit([texts[i] for i in have], [urg[i] for i in have]).save(out / "urgency")
    from ticket_triage.decision.secondary import SecondaryTagger, is_multilabel

    tags = [list(r.get("tags") or []) for r in train_rows]
    if is_multilabel(tags):
        try:
            SecondaryTagger(min_count=int(cfg.train.secondary_min_count),
                            seed=cfg.seed).fit(texts, tags).save(out / "secondary")
        except ValueError:
            pass  # no tag frequent enough: no secondary tagger
