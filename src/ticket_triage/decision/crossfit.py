"""Out-of-fold scores of the train split, for tuning thresholds on more than validation.

Why: the auto-route threshold must certify precision >= 99% with a one-sided Clopper-Pearson
lower bound. On ~1,000 validation tickets that bound is loose (it allows ~0.4% observed
errors where the target allows 1%), so tuning settles for a high threshold and routes far
fewer tickets than the model could. Cross-fitting adds every training ticket as a tuning
example scored by a model that never saw it:

1. split the train split into ``folds`` stratified folds (label at the classifier's level);
2. for each fold, fit a fresh classifier (same family and hyperparameters) on the other
   folds, score the held-out fold and the validation split;
3. calibrate each fold model on validation (which none of them saw) with the same method as
   the final model, and apply that calibration to its held-out fold.

The result is one calibrated topic-probability row per training ticket, on the same scale
as the final model's calibrated validation scores; ``build_bundle`` pools the two for
threshold tuning. Each fold model sees (folds-1)/folds of the train split, so it is a little
weaker than the final model: the bound it certifies is, if anything, conservative.

Only families that declare ``cheap_refit`` (TF-IDF, frozen embeddings + linear head: the
encoder's embeddings are cached, so a refit is a logistic regression) are cross-fitted by
default; SetFit and the fine-tuned transformer (and an ensemble with one of them) train
``folds`` more times, so they are cross-fitted only with ``thresholds.cross_fit_fine_tuned:
true``: each fold fine-tunes a fresh encoder from the pretrained weights with the family's own
hyperparameters and budget (``max_train_minutes`` per fold), holding out its own early-stopping
split as a fit without a validation split does. A family whose refit
cost grows with the text it reads (``refit_scales_with_text``: TF-IDF, and an ensemble with a
TF-IDF member) is not cross-fitted when the train split holds more than ``max_train_chars``
characters (``thresholds.cross_fit_max_train_chars``): on 16,000 long tickets (~39M characters)
the five fold refits cost five more fits of minutes each, while the validation split that large
(~2,000 tickets) already bounds precision closely enough on its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ticket_triage.config import ThresholdsConfig


@dataclass
class CrossFit:
    """Calibrated out-of-fold topic probabilities of the train split (or why there are none)."""

    probs: np.ndarray | None
    y_idx: np.ndarray | None
    info: dict[str, Any] = field(default_factory=dict)


#: ``thresholds.cross_fit_max_train_chars`` when a params file predates it: ~10M characters is
#: BANKING77's train split 16 times over, and a quarter of 16,000 long (~2,450-character) tickets
DEFAULT_MAX_TRAIN_CHARS = ThresholdsConfig.cross_fit_max_train_chars


def max_train_chars(th_cfg: Mapping[str, Any] | ThresholdsConfig) -> int | None:
    """The configured cap (``thresholds.cross_fit_max_train_chars``; null or 0 = no cap)."""
    value = ThresholdsConfig.from_dict(th_cfg).cross_fit_max_train_chars
    return int(value) if value else None


def label_of(row: Mapping[str, Any], level: str) -> str:
    """The label a classifier trains on: the fine source tag at ``tag`` level, else the topic."""
    return str(row.get("label_fine") or row["topic"]) if level == "tag" else str(row["topic"])


def skip_reason(classifier: Any, labels: Sequence[str], folds: int, known_oos: bool = False, *,
                train_chars: int = 0, max_train_chars: int | None = None,
                fine_tuned: bool = False) -> str | None:
    """Why cross-fitting does not apply here, or None when it does. ``known_oos``: the tuning
    set holds known out-of-scope validation tickets, whose share (and so the errors they stand
    for) thousands of in-scope out-of-fold rows would dilute. ``train_chars`` /
    ``max_train_chars``: the train split's size in characters and the cap above which a family
    whose refit cost grows with text is not refitted ``folds`` times (None: no cap).
    ``fine_tuned`` (``thresholds.cross_fit_fine_tuned``): cross-fit a family that is not cheap to
    refit too (one fine-tune per fold)."""
    if folds < 2:
        return "off (thresholds.cross_fit_folds < 2)"
    if known_oos:
        return ("skipped: known out-of-scope validation tickets keep their observed share only in a "
                "validation-only tuning set")
    cheap = bool(getattr(classifier, "cheap_refit", False))
    if not cheap and not fine_tuned:
        return (f"family {classifier.family} is not cheap to refit: thresholds tuned on validation only "
                f"(thresholds.cross_fit_fine_tuned: true fine-tunes it once per fold, about {folds}x its "
                "training time; thresholds.cross_fit_folds: 0 silences this)")
    if (max_train_chars is not None and train_chars > max_train_chars
            and getattr(classifier, "refit_scales_with_text", False)):
        return (f"skipped: the train split holds {train_chars:,} characters > thresholds.cross_fit_max_train_chars "
                f"{max_train_chars:,}; {folds} more fits of {classifier.family} would cost about {folds}x its own fit, "
                "and a split this large tunes on validation alone (raise the cap to cross-fit anyway)")
    _, counts = np.unique(np.asarray(labels, dtype=object), return_counts=True)
    need = 2 * folds
    if len(counts) < 2 or counts.min() < need:
        return (f"a label has {int(counts.min()) if len(counts) else 0} training tickets; cross-fitting "
                f"{folds} folds needs >= {need} per label: thresholds tuned on validation only")
    return None


def cross_fit_topic_scores(classifier: Any, train_rows: Sequence[Mapping[str, Any]], label_level: str,
                           topics: Sequence[str], val_texts: Sequence[str], y_val: np.ndarray,
                           to_topics: Callable[[Any, Sequence[str]], np.ndarray], *,
                           folds: int = 5, calibration: str = "temperature", seed: int = 42,
                           progress: bool = False, known_oos: bool = False,
                           max_train_chars: int | None = None, fine_tuned: bool = False) -> CrossFit:
    """Calibrated out-of-fold topic probabilities for every training ticket (module docstring).

    ``to_topics(model, texts)`` returns a model's raw (n, len(topics)) topic probabilities
    (fine labels summed into topics where the model is fine-grained); ``y_val`` holds the
    validation tickets' topic indices (-1 = not a known topic, left out of calibration).
    """
    from sklearn.model_selection import StratifiedKFold
    from ticket_triage.decision.calibration import fit_calibrator
    from ticket_triage.models.base import progress_bar

    labels = [label_of(r, label_level) for r in train_rows]
    texts = [r["text"] for r in train_rows]
    why = skip_reason(classifier, labels, folds, known_oos, train_chars=sum(len(t) for t in texts),
                      max_train_chars=max_train_chars, fine_tuned=fine_tuned)
    if why is not None:
        return CrossFit(None, None, {"cross_fit": why})
    # a fold of a fine-tuned family takes minutes: its own progress (steps, validation) is shown
    fold_progress = progress and not getattr(classifier, "cheap_refit", False)
    y_train = np.array([list(topics).index(r["topic"]) for r in train_rows])
    keep = np.asarray(y_val) >= 0
    oof = np.zeros((len(train_rows), len(topics)))
    temps: list[float] = []
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    bar = progress_bar(total=folds, desc="cross-fit", unit="fold", progress=progress)
    for fit_idx, held_idx in splitter.split(np.zeros(len(labels)), labels):
        model = classifier.fresh()
        model.fit([texts[i] for i in fit_idx], [labels[i] for i in fit_idx], progress=fold_progress)
        raw_val = to_topics(model, list(val_texts))
        cal = fit_calibrator(raw_val[keep], np.asarray(y_val)[keep], method=calibration)
        oof[held_idx] = cal.transform(to_topics(model, [texts[i] for i in held_idx]))
        temps.append(float(cal.temperature))
        bar.update(1)
    bar.close()
    acc = float(np.mean(oof.argmax(axis=1) == y_train))
    return CrossFit(oof, y_train, {"cross_fit": f"{folds} folds", "cross_fit_folds": folds,
                                   "n_cross_fit": int(len(train_rows)), "cross_fit_accuracy": acc,
                                   "cross_fit_temperatures": temps})
