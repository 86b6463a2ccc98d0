"""Classifier families behind one interface, and the single registry that builds and loads them."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

from ticket_triage.models.base import META_FILE, Classifier, TrainingDataError

# family name -> "module:Class"; imported lazily so that importing this package stays cheap.
FAMILIES: dict[str, str] = {
    "tfidf_logreg": "ticket_triage.models.tfidf_logreg:TfidfLogReg",
    "embed_logreg": "ticket_triage.models.embed_logreg:EmbedLogReg",
    "setfit": "ticket_triage.models.setfit_clf:SetFitClassifier",
    "transformer": "ticket_triage.models.transformer:TransformerClassifier",
    "ensemble": "ticket_triage.models.ensemble:EnsembleClassifier",
}


def _cls(family: str) -> type[Classifier]:
    if family not in FAMILIES:
        raise ValueError(f"unknown model family {family!r}; choose one of {', '.join(FAMILIES)}")
    mod, name = FAMILIES[family].split(":")
    return getattr(importlib.import_module(mod), name)


def build_classifier(family: str, **params: Any) -> Classifier:
    return _cls(family)(**params)


def load_classifier(path: str | Path) -> Classifier:
    path = Path(path)
    meta_path = path / META_FILE
    if not meta_path.is_file():
        raise FileNotFoundError(f"{meta_path} not found: not a saved ticket-triage classifier")
    meta = json.loads(meta_path.read_text())
    clf = _cls(meta["family"])._load_weights(path, meta.get("params", {}))
    clf.labels = list(meta["labels"])
    clf.params = dict(meta.get("params", {}))
    return clf


__all__ = ["Classifier", "TrainingDataError", "FAMILIES", "build_classifier", "load_classifier"]
