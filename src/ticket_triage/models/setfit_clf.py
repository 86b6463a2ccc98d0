"""SetFit (contrastive fine-tuning of a sentence-transformer body) + logistic regression head.

Uses the setfit 1.2 ``Trainer`` / ``TrainingArguments`` API on the packaged MiniLM body by
default. Saved as ``body/`` (sentence-transformers ``save_pretrained``, safetensors) plus
``head.npz`` (the scikit-learn head through :mod:`ticket_triage.models.safe_io`, never
pickle/joblib).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ticket_triage.models.base import (
    Classifier,
    check_training_data,
    load_sklearn,
    merged_params,
    progress_enabled,
    save_sklearn,
)

BODY_DIR = "body"
HEAD_FILE = "head.npz"
LEGACY_HEAD_FILE = "head.skops"  # saved by versions before safe_io: still loads
TRUSTED_TYPES: list[str] = ["sklearn.linear_model._logistic.LogisticRegression"]

DEFAULTS: dict[str, Any] = {
    "encoder": "default",
    "num_iterations": 5,       # contrastive pairs generated per training example
    "num_epochs": 1,
    "batch_size": 32,
    "body_learning_rate": 2.0e-5,
    "head_C": 10.0,
    "head_max_iter": 3000,
    "class_weight": None,
    "max_steps": -1,           # > 0 caps the contrastive phase (a test runs a few steps)
    "normalize": False,        # SetFit's own default for head features
    "seed": 42,
    "device": "cpu",
}


class SetFitClassifier(Classifier):
    """SetFit on a sentence-transformer body; ``embed`` returns the tuned body's embeddings."""

    family = "setfit"

    def __init__(self, **params: Any):
        super().__init__(**merged_params(DEFAULTS, params, self.family))
        enc = self.params["encoder"]
        if enc and enc != "default" and Path(str(enc)).expanduser().is_dir():
            self.params["encoder"] = str(Path(enc).expanduser().resolve())
        self.body = None
        self.head = None

    def _load_body(self, path_or_name: str, *, fallback: bool = False) -> Any:
        import os

        from ticket_triage.models.encoder import configure_torch_threads, resolve_device, resolve_encoder

        if path_or_name == "default":
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
        configure_torch_threads()
        from sentence_transformers import SentenceTransformer

        # a fresh copy: training changes the weights, so never the shared cached encoder
        return SentenceTransformer(resolve_encoder(path_or_name),
                                   device=resolve_device(str(self.params["device"]), fallback=fallback))

    def fit(self, texts: Sequence[str], labels: Sequence[str], *, progress: bool = True) -> "SetFitClassifier":
        check_training_data(texts, labels)
        from datasets import Dataset
        from setfit import SetFitModel, Trainer, TrainingArguments
        from sklearn.linear_model import LogisticRegression
        from transformers import set_seed

        p = self.params
        seed = int(p["seed"])
        set_seed(seed)
        body = self._load_body(p["encoder"])
        head = LogisticRegression(C=float(p["head_C"]), max_iter=int(p["head_max_iter"]),
                                  class_weight=p["class_weight"], random_state=seed)
        model = SetFitModel(model_body=body, model_head=head, normalize_embeddings=bool(p["normalize"]))
        show = progress_enabled(progress)
        with tempfile.TemporaryDirectory(prefix="setfit-") as out:
            args = TrainingArguments(
                output_dir=out,
                batch_size=int(p["batch_size"]),
                num_epochs=int(p["num_epochs"]),
                num_iterations=int(p["num_iterations"]),
                max_steps=int(p["max_steps"]),
                body_learning_rate=float(p["body_learning_rate"]),
                seed=seed,
                report_to="none",          # tracking goes through ticket_triage.tracking only
                save_strategy="no",
                logging_strategy="no",
                show_progress_bar=show,
            )
            data = Dataset.from_dict({"text": [str(t) for t in texts], "label": [str(y) for y in labels]})
            trainer = Trainer(model=model, args=args, train_dataset=data)
            trainer.st_trainer.args.disable_tqdm = not show
            if not show:  # the bar callback is chosen at Trainer init: take it out explicitly
                from transformers.trainer_callback import ProgressCallback

                trainer.st_trainer.remove_callback(ProgressCallback)
            if str(p["device"]) == "cpu":
                trainer.st_trainer.args.dataloader_pin_memory = False
            trainer.train()
        self.body, self.head = model.model_body, model.model_head
        self.body.eval()
        self.labels = [str(c) for c in self.head.classes_]
        return self

    def _require_fitted(self) -> None:
        if self.body is None or self.head is None:
            raise RuntimeError("setfit: the model is not trained; call fit() or load_classifier() first")

    def _features(self, texts: Sequence[str], normalize: bool, progress: bool = False) -> np.ndarray:
        from ticket_triage.models.encoder import encode

        self._require_fitted()
        return encode(texts, self.body, batch_size=int(self.params["batch_size"]), normalize=normalize,
                      progress=progress)

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        self._require_fitted()
        if len(texts) == 0:
            return np.zeros((0, len(self.labels)))
        emb = self._features(texts, bool(self.params["normalize"]))
        return self.head.predict_proba(emb)

    def embed(self, texts: Sequence[str], *, progress: bool = False) -> np.ndarray:
        """L2-normalized embeddings from the fine-tuned body."""
        return self._features(texts, True, progress)

    def _save_weights(self, path: Path) -> None:
        self._require_fitted()
        self.body.save_pretrained(str(path / BODY_DIR), create_model_card=False, safe_serialization=True)
        save_sklearn(self.head, path / HEAD_FILE)

    @classmethod
    def _load_weights(cls, path: Path, params: dict[str, Any]) -> "SetFitClassifier":
        clf = cls(**params)
        body_dir = path / BODY_DIR
        if not (body_dir / "modules.json").is_file():
            raise FileNotFoundError(f"{body_dir} is missing or incomplete: the saved SetFit model has no body; save it again")
        clf.head = load_sklearn(path / HEAD_FILE, path / LEGACY_HEAD_FILE, TRUSTED_TYPES)
        clf.body = clf._load_body(str(body_dir), fallback=True)
        clf.body.eval()
        clf.labels = [str(c) for c in clf.head.classes_]
        return clf
